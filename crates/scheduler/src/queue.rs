//! The scheduling queue, as upstream's `PriorityQueue`: an active queue ordered by priority
//! then arrival, a back-off queue (1 s doubling per attempt up to 10 s), and the unschedulable
//! pods, which wait for a cluster change (`move_all`) or 5 minutes. Time is passed in, so the
//! queue is a pure data structure.

use crate::snapshot::PodInfo;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Upstream's `podInitialBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Upstream's `podMaxBackoffDuration`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`: unschedulable pods are retried at least this often.
pub const MAX_UNSCHEDULABLE_WAIT: Duration = Duration::from_secs(300);

/// The back-off after `attempts` failed attempts: 1 s doubled per further attempt, at most 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Where a queued pod waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
}

#[derive(Debug)]
struct Entry {
    pod: PodInfo,
    attempts: u32,
    place: Place,
    /// When the pod last failed (back-off and the unschedulable timeout count from here).
    failed_at: Option<Instant>,
    /// Identifies this entry's current heap item; heap items with another stamp are stale.
    stamp: u64,
}

/// An active-queue item: higher priority first, then earlier arrival.
#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    stamp: u64,
    uid: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.stamp.cmp(&self.stamp))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A pod taken off the queue for one scheduling attempt.
#[derive(Debug)]
pub struct Popped {
    /// The pod.
    pub pod: PodInfo,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The scheduling cycle of this attempt.
    pub cycle: u64,
}

/// The scheduling queue.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_stamp: u64,
    cycle: u64,
    /// The cycle during which the cluster last changed; a pod that failed in that cycle or
    /// earlier missed the change and is retried after back-off instead of waiting.
    move_request_cycle: u64,
}

impl SchedulingQueue {
    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// How many pods are queued (active, backing off or unschedulable).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pod is queued.
    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// Adds a new pod, or updates a queued one; an unschedulable pod whose spec or metadata
    /// changed is retried (after its back-off).
    pub fn add_or_update(&mut self, pod: PodInfo, now: Instant) {
        let uid = pod.uid.clone();
        match self.entries.get_mut(&uid) {
            Some(entry) => {
                let changed = entry.pod.pod.spec != pod.pod.spec
                    || entry.pod.pod.metadata.labels != pod.pod.metadata.labels
                    || entry.pod.pod.metadata.annotations != pod.pod.metadata.annotations;
                let priority_changed = entry.pod.priority != pod.priority;
                entry.pod = pod;
                if entry.place == Place::Unschedulable && changed {
                    self.requeue(&uid, now);
                } else if entry.place == Place::Active && priority_changed {
                    self.push_active(&uid);
                }
            }
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        attempts: 0,
                        place: Place::Active,
                        failed_at: None,
                        stamp: 0,
                    },
                );
                self.push_active(&uid);
            }
        }
    }

    /// Forgets a pod (deleted, or bound elsewhere).
    pub fn delete(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    /// Drops every queued pod not in `keep` (after the pending-pods watch relisted).
    pub fn retain(&mut self, keep: &std::collections::HashSet<String>) {
        self.entries.retain(|uid, _| keep.contains(uid));
    }

    fn push_active(&mut self, uid: &str) {
        let stamp = self.stamp();
        let entry = self.entries.get_mut(uid).expect("queued");
        entry.place = Place::Active;
        entry.stamp = stamp;
        self.active.push(ActiveItem {
            priority: entry.pod.priority,
            stamp,
            uid: uid.to_string(),
        });
    }

    fn push_backoff(&mut self, uid: &str, until: Instant) {
        let stamp = self.stamp();
        let entry = self.entries.get_mut(uid).expect("queued");
        entry.place = Place::Backoff;
        entry.stamp = stamp;
        self.backoff.push(Reverse((until, stamp, uid.to_string())));
    }

    /// Moves a waiting pod to the active queue, or to back-off while its back-off lasts.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let entry = &self.entries[uid];
        match entry.failed_at.map(|t| t + backoff(entry.attempts)) {
            Some(until) if until > now => self.push_backoff(uid, until),
            _ => self.push_active(uid),
        }
    }

    /// Moves pods whose back-off is over to the active queue.
    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, stamp, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.stamp == stamp && e.place == Place::Backoff)
            {
                self.push_active(&uid);
            }
        }
    }

    /// Takes the next pod to schedule, if one is ready.
    pub fn pop(&mut self, now: Instant) -> Option<Popped> {
        self.flush_backoff(now);
        while let Some(item) = self.active.pop() {
            if !self
                .entries
                .get(&item.uid)
                .is_some_and(|e| e.stamp == item.stamp && e.place == Place::Active)
            {
                continue;
            }
            let entry = self.entries.remove(&item.uid).expect("checked");
            self.cycle += 1;
            return Some(Popped {
                pod: entry.pod,
                attempts: entry.attempts + 1,
                cycle: self.cycle,
            });
        }
        None
    }

    /// Puts back a pod that fits nowhere: it waits for a cluster change, unless one happened
    /// while it was being scheduled, in which case it only backs off.
    pub fn add_unschedulable(&mut self, popped: Popped, now: Instant) {
        let missed_change = self.move_request_cycle >= popped.cycle;
        let uid = self.put_back(popped, now);
        if missed_change {
            let until = now + backoff(self.entries[&uid].attempts);
            self.push_backoff(&uid, until);
        } else {
            let stamp = self.stamp();
            let entry = self.entries.get_mut(&uid).expect("queued");
            entry.place = Place::Unschedulable;
            entry.stamp = stamp;
        }
    }

    /// Puts back a pod whose attempt failed for another reason (binding, API errors): it is
    /// retried after back-off.
    pub fn add_backoff(&mut self, popped: Popped, now: Instant) {
        let uid = self.put_back(popped, now);
        let until = now + backoff(self.entries[&uid].attempts);
        self.push_backoff(&uid, until);
    }

    /// Re-enters a popped pod (placed by the caller); returns its uid.
    fn put_back(&mut self, popped: Popped, now: Instant) -> String {
        let uid = popped.pod.uid.clone();
        self.entries.insert(
            uid.clone(),
            Entry {
                pod: popped.pod,
                attempts: popped.attempts,
                place: Place::Unschedulable,
                failed_at: Some(now),
                stamp: 0,
            },
        );
        uid
    }

    /// The cluster changed (a node was added or changed, a pod went away): every
    /// unschedulable pod is retried, after its back-off.
    pub fn move_all(&mut self, now: Instant) {
        self.move_request_cycle = self.cycle;
        let waiting: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in waiting {
            self.requeue(&uid, now);
        }
    }

    /// Retries pods that have waited as unschedulable for longer than 5 minutes.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Place::Unschedulable
                    && e.failed_at
                        .is_some_and(|t| now.duration_since(t) >= MAX_UNSCHEDULABLE_WAIT)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.requeue(&uid, now);
        }
    }

    /// When the next backing-off pod becomes ready, if any backs off.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;
    use std::sync::Arc;

    fn pod(uid: &str, priority: i32) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid}, "spec": {"priority": priority, "containers": []}})).unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now))
            .map(|p| p.pod.uid)
            .collect()
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn priority_then_arrival() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), now);
        q.add_or_update(pod("b", 10), now);
        q.add_or_update(pod("c", 0), now);
        q.add_or_update(pod("a", 0), now);
        assert_eq!(names(&mut q, now), ["b", "a", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_back_off() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        let popped = q.pop(t0).unwrap();
        assert_eq!(popped.attempts, 1);
        q.add_unschedulable(popped, t0);
        // No change: it waits, however long (short of five minutes).
        assert!(q.pop(t0 + Duration::from_secs(60)).is_none());
        // A change during its 1 s back-off: ready once the back-off is over.
        q.move_all(t0 + Duration::from_millis(500));
        assert!(q.pop(t0 + Duration::from_millis(900)).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(t0 + Duration::from_secs(1)));
        let popped = q.pop(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(popped.attempts, 2);
        // Second failure: 2 s back-off.
        let t1 = t0 + Duration::from_secs(5);
        q.add_unschedulable(popped, t1);
        q.move_all(t1 + Duration::from_secs(3));
        assert_eq!(names(&mut q, t1 + Duration::from_secs(3)), ["a"]);
    }

    #[test]
    fn a_change_during_the_attempt_is_not_missed() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        let popped = q.pop(t0).unwrap();
        q.move_all(t0);
        q.add_unschedulable(popped, t0);
        assert!(q.pop(t0).is_none());
        assert_eq!(names(&mut q, t0 + Duration::from_secs(1)), ["a"]);
    }

    #[test]
    fn updates_and_leftovers_retry_unschedulable_pods() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        q.add_or_update(pod("b", 0), t0);
        let a = q.pop(t0).unwrap();
        let b = q.pop(t0).unwrap();
        q.add_unschedulable(a, t0);
        q.add_unschedulable(b, t0);
        // The same object again changes nothing; a changed spec retries the pod.
        q.add_or_update(pod("a", 0), t0 + Duration::from_secs(2));
        assert!(q.pop(t0 + Duration::from_secs(2)).is_none());
        q.add_or_update(pod("a", 5), t0 + Duration::from_secs(2));
        assert_eq!(names(&mut q, t0 + Duration::from_secs(2)), ["a"]);
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(299));
        assert!(q.pop(t0 + Duration::from_secs(299)).is_none());
        q.flush_unschedulable_leftover(t0 + MAX_UNSCHEDULABLE_WAIT);
        assert_eq!(names(&mut q, t0 + MAX_UNSCHEDULABLE_WAIT), ["b"]);
    }

    #[test]
    fn errors_back_off_and_deleted_pods_vanish() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        let a = q.pop(t0).unwrap();
        q.add_backoff(a, t0);
        assert!(q.pop(t0).is_none());
        q.delete("a");
        assert!(q.pop(t0 + Duration::from_secs(1)).is_none());
    }
}

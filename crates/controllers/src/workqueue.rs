//! A work queue as client-go's `workqueue` with its rate-limiting and delaying layers: a key
//! added while waiting is queued once, a key added while a worker holds it is handled again
//! afterwards (never by two workers at once), and keys can come back after a delay or after a
//! per-key exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The queue key of a namespaced object: `namespace/name` (client-go's
/// `MetaNamespaceKeyFunc`).
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The first back-off of a failing key (client-go's `DefaultControllerRateLimiter`: 5 ms).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest back-off (client-go's: 1,000 s).
const MAX_DELAY: Duration = Duration::from_secs(1000);

/// Keys waiting for a worker. Cloning gives another handle on the same queue.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    ready: Notify,
}

struct State<K> {
    /// Keys in the order they became ready.
    order: VecDeque<K>,
    /// Keys waiting to be handled (in `order`, or re-added while a worker holds them).
    dirty: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// When each delayed key is due; a later `add_after` never postpones an earlier one.
    delayed: HashMap<K, Instant>,
    /// Consecutive failures per key, for the back-off.
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    order: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: HashMap::new(),
                    failures: HashMap::new(),
                }),
                ready: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A worker that panicked cannot leave the sets half-updated: every change is one step.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.order.push_back(key);
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed (at once if it is zero). Must be called within a
    /// Tokio runtime.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        {
            let mut state = self.lock();
            match state.delayed.get(&key) {
                Some(&earlier) if earlier <= due => return,
                _ => state.delayed.insert(key.clone(), due),
            };
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let mut state = queue.lock();
            // A sooner `add_after` for the same key replaced this one and fires by itself.
            if state.delayed.get(&key) == Some(&due) {
                state.delayed.remove(&key);
                drop(state);
                queue.add(key);
            }
        });
    }

    /// Queues `key` after its back-off, which doubles with each call until [`WorkQueue::forget`].
    pub fn add_rate_limited(&self, key: K) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        self.add_after(key, backoff(failures));
    }

    /// Clears `key`'s back-off: its last handling succeeded.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.inner.ready.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.order.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    // Another key may be waiting for another idle worker.
                    if !state.order.is_empty() {
                        self.inner.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Releases `key`, queueing it again if it was added while being handled.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.order.push_back(key.clone());
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// How many keys wait for a worker now (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no key waits for a worker now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WorkQueue<String> {
    /// Runs `workers` workers that hand each key to `sync` until the process ends, as
    /// upstream's `processNextWorkItem`: success clears the key's back-off (and
    /// `Ok(Some(delay))` brings it back after `delay`), failure queues it again after its
    /// back-off.
    pub async fn run_workers<F, Fut>(&self, workers: usize, what: &'static str, sync: F)
    where
        F: Fn(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = anyhow::Result<Option<Duration>>> + Send,
    {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (queue, sync) = (self.clone(), sync.clone());
                tokio::spawn(async move {
                    loop {
                        let key = queue.next().await;
                        match sync(key.clone()).await {
                            Ok(requeue) => {
                                queue.forget(&key);
                                if let Some(after) = requeue {
                                    queue.add_after(key.clone(), after);
                                }
                            }
                            Err(err) => {
                                tracing::debug!(%key, err = %format!("{err:#}"), "{what} sync failed; retrying");
                                queue.add_rate_limited(key.clone());
                            }
                        }
                        queue.done(&key);
                    }
                })
            })
            .collect();
        futures::future::join_all(handles).await;
    }
}

/// The back-off after `failures` consecutive failures: 5 ms, 10 ms, 20 ms, ... up to 1,000 s.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    BASE_DELAY.saturating_mul(1u32 << exponent).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_after_processing() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(first, "a");
        queue.add("a");
        assert_eq!(queue.next().await, "b", "a is held by a worker");
        queue.done(&"a");
        assert_eq!(queue.next().await, "a", "re-added while processing");
        queue.done(&"a");
        queue.done(&"b");
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_when_due_and_the_earliest_delay_wins() {
        let queue = WorkQueue::new();
        queue.add_after("late", Duration::from_secs(10));
        queue.add_after("late", Duration::from_secs(20));
        queue.add_after("soon", Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(queue.next().await, "soon");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(queue.next().await, "late");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        queue.done(&"late");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.is_empty(), "the postponed duplicate was dropped");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(5), Duration::from_millis(80));
        assert_eq!(backoff(30), MAX_DELAY);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_resets_the_backoff() {
        let queue = WorkQueue::new();
        for _ in 0..4 {
            queue.add_rate_limited("k");
            queue.next().await;
            queue.done(&"k");
        }
        queue.forget(&"k");
        let start = Instant::now();
        queue.add_rate_limited("k");
        queue.next().await;
        assert_eq!(start.elapsed(), BASE_DELAY);
    }
}

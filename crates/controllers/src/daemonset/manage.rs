//! One daemon pod per eligible node (upstream's `manage` and `podsShouldBeOnNode`): which
//! nodes need a pod and which pods must go, given the nodes and the pods on them.

use super::eligibility::Placement;
use crate::history::REVISION_HASH_LABEL;
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// The daemon pods of one DaemonSet by the node they are for.
pub type PodsByNode<'a> = BTreeMap<String, Vec<&'a Pod>>;

/// What the manage step should do.
#[derive(Debug, Default, PartialEq)]
pub struct ManagePlan {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// Failed pods found, as `(pod, node)`, each worth a `FailedDaemonPod` event.
    pub failed: Vec<(String, String)>,
    /// When to look again at failed pods still in back-off.
    pub retry_after: Option<Duration>,
}

/// Back-off between replacing failed daemon pods on one node (upstream's `failedPodsBackoff`:
/// 1 s doubling to 15 min, reset after 30 min without failures).
#[derive(Default)]
pub struct FailedPodBackoff {
    /// By `<daemon set uid>/<node>`: the current delay and when it was last raised.
    entries: HashMap<String, (Duration, Instant)>,
}

impl FailedPodBackoff {
    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(15 * 60);

    /// The rest of the delay if `key` is still backing off at `now`.
    fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, since) = self.entries.get(key)?;
        (now - *since < *delay).then(|| *delay - (now - *since))
    }

    /// Records a failure of `key` at `now`: the delay doubles, or starts over after a quiet
    /// spell twice the maximum long.
    fn raise(&mut self, key: &str, now: Instant) {
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_insert((Duration::ZERO, now));
        entry.0 = if entry.0.is_zero() || now - entry.1 > 2 * Self::MAX {
            Self::INITIAL
        } else {
            (entry.0 * 2).min(Self::MAX)
        };
        entry.1 = now;
    }
}

/// Upstream's `podByCreationTimestampAndPhase`: scheduled pods first, then oldest, then by name.
pub fn by_age(a: &&Pod, b: &&Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Whether the pod was made from the revision with `hash`.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// What the DaemonSet's pods need, node by node. `nodes` are every node with its placement;
/// `pods` the DaemonSet's pods by target node (nodes may be missing from `nodes`); `surge`
/// whether the update strategy may run two pods on a node; `backoff_scope` keys the failed-pod
/// back-off (the DaemonSet's uid).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    nodes: &[(String, Placement)],
    pods: &PodsByNode,
    hash: &str,
    surge: bool,
    min_ready_seconds: i32,
    now: Timestamp,
    backoff: &mut FailedPodBackoff,
    backoff_scope: &str,
    clock: Instant,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    for (node, placement) in nodes {
        let on_node = pods.get(node).map(Vec::as_slice).unwrap_or_default();
        if placement.should_run && on_node.is_empty() {
            plan.create_on.push(node.clone());
            continue;
        }
        if !placement.should_continue_running {
            plan.delete.extend(
                on_node
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| name(p)),
            );
            continue;
        }
        let mut running: Vec<&Pod> = Vec::new();
        for pod in on_node
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Failed") => {
                    let key = format!("{backoff_scope}/{node}");
                    if let Some(wait) = backoff.remaining(&key, clock) {
                        plan.retry_after = Some(plan.retry_after.map_or(wait, |w| w.min(wait)));
                        continue;
                    }
                    backoff.raise(&key, clock);
                    plan.failed.push((name(pod), node.clone()));
                    plan.delete.push(name(pod));
                }
                Some("Succeeded") => plan.delete.push(name(pod)),
                _ => running.push(pod),
            }
        }
        running.sort_by(by_age);
        if !surge {
            if running.is_empty() && placement.should_run {
                // Every pod here is going away: make the next one now.
                plan.create_on.push(node.clone());
            }
            plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
            continue;
        }
        if running.len() <= 1 {
            if running.is_empty() && placement.should_run {
                plan.create_on.push(node.clone());
            }
            continue;
        }
        // With surge, an old and a new pod may share a node until the new one is available
        // (or the old one is not ready); any others go.
        let (mut oldest_new, mut oldest_old) = (None, None);
        for pod in running {
            let slot = if is_updated(pod, hash) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                plan.delete.push(name(pod));
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old)
            && (!podutil::is_ready(old) || podutil::is_available(new, min_ready_seconds, now))
        {
            plan.delete.push(name(old));
        }
    }
    // Unscheduled pods waiting for a node that is gone will never run.
    for (node, on_node) in pods {
        if nodes.iter().any(|(n, _)| n == node) {
            continue;
        }
        plan.delete.extend(
            on_node
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                })
                .map(|p| name(p)),
        );
    }
    plan
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use jiff::SignedDuration;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    pub const NOW: &str = "2026-06-01T12:00:00Z";

    /// A daemon pod bound to `node`, made from revision `hash`, created `age` seconds ago, in
    /// `phase`, ready (for as long as it exists) when `ready`.
    pub fn daemon_pod(
        name: &str,
        node: &str,
        hash: &str,
        age: i64,
        phase: &str,
        ready: bool,
    ) -> Pod {
        let created = NOW.parse::<Timestamp>().unwrap() - SignedDuration::from_secs(age);
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(created)),
                labels: Some([(REVISION_HASH_LABEL.to_owned(), hash.to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(created)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn placed(should_run: bool, should_continue_running: bool) -> Placement {
        Placement {
            should_run,
            should_continue_running,
        }
    }

    fn by_node<'a>(pods: &'a [Pod]) -> PodsByNode<'a> {
        let mut map = PodsByNode::new();
        for pod in pods {
            let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
            map.entry(node).or_default().push(pod);
        }
        map
    }

    fn run(nodes: &[(String, Placement)], pods: &[Pod], surge: bool) -> ManagePlan {
        let mut backoff = FailedPodBackoff::default();
        let now = NOW.parse().unwrap();
        plan(
            nodes,
            &by_node(pods),
            "new",
            surge,
            0,
            now,
            &mut backoff,
            "ds",
            Instant::now(),
        )
    }

    #[test]
    fn nodes_get_one_pod_each() {
        let nodes = vec![
            ("empty".to_owned(), placed(true, true)),
            ("doubled".to_owned(), placed(true, true)),
            ("excluded".to_owned(), placed(false, false)),
            ("tainted-noschedule".to_owned(), placed(false, true)),
        ];
        let pods = [
            daemon_pod("keep", "doubled", "new", 100, "Running", true),
            daemon_pod("younger", "doubled", "new", 10, "Running", true),
            daemon_pod("misplaced", "excluded", "new", 10, "Running", true),
            daemon_pod(
                "tolerated",
                "tainted-noschedule",
                "new",
                10,
                "Running",
                true,
            ),
            daemon_pod("done", "gone-node", "new", 10, "Pending", false),
        ];
        let mut unscheduled = pods[4].clone();
        unscheduled.spec.as_mut().unwrap().node_name = None;
        let mut pods = pods.to_vec();
        pods[4] = unscheduled;
        let mut map = by_node(&pods[..4]);
        map.insert("gone-node".into(), vec![&pods[4]]);
        let mut backoff = FailedPodBackoff::default();
        let now = NOW.parse().unwrap();
        let plan = plan(
            &nodes,
            &map,
            "new",
            false,
            0,
            now,
            &mut backoff,
            "ds",
            Instant::now(),
        );
        assert_eq!(plan.create_on, ["empty"]);
        assert_eq!(plan.delete, ["younger", "misplaced", "done"]);
    }

    #[test]
    fn failed_pods_are_replaced_with_backoff() {
        let nodes = vec![("n1".to_owned(), placed(true, true))];
        let pods = [daemon_pod("crashed", "n1", "new", 10, "Failed", false)];
        let map = by_node(&pods);
        let mut backoff = FailedPodBackoff::default();
        let now = NOW.parse().unwrap();
        let clock = Instant::now();
        let first = plan(
            &nodes,
            &map,
            "new",
            false,
            0,
            now,
            &mut backoff,
            "ds",
            clock,
        );
        assert_eq!(first.delete, ["crashed"]);
        assert_eq!(first.failed, [("crashed".to_owned(), "n1".to_owned())]);
        assert_eq!(first.create_on, ["n1"], "the replacement is made at once");
        let second = plan(
            &nodes,
            &map,
            "new",
            false,
            0,
            now,
            &mut backoff,
            "ds",
            clock,
        );
        assert!(second.delete.is_empty(), "within the back-off");
        assert_eq!(second.retry_after, Some(Duration::from_secs(1)));
        let later = clock + Duration::from_secs(1);
        let third = plan(
            &nodes,
            &map,
            "new",
            false,
            0,
            now,
            &mut backoff,
            "ds",
            later,
        );
        assert_eq!(third.delete, ["crashed"]);
        let fourth = plan(
            &nodes,
            &map,
            "new",
            false,
            0,
            now,
            &mut backoff,
            "ds",
            later,
        );
        assert_eq!(fourth.retry_after, Some(Duration::from_secs(2)), "doubled");
    }

    #[test]
    fn surge_keeps_old_until_new_is_available() {
        let nodes = vec![("n1".to_owned(), placed(true, true))];
        let waiting = [
            daemon_pod("old", "n1", "old", 100, "Running", true),
            daemon_pod("new", "n1", "new", 10, "Running", false),
        ];
        assert!(run(&nodes, &waiting, true).delete.is_empty());
        assert_eq!(
            run(&nodes, &waiting, false).delete,
            ["new"],
            "no surge: oldest stays"
        );
        let available = [
            daemon_pod("old", "n1", "old", 100, "Running", true),
            daemon_pod("new", "n1", "new", 10, "Running", true),
        ];
        assert_eq!(run(&nodes, &available, true).delete, ["old"]);
    }
}

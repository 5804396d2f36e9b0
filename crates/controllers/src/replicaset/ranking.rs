//! Which pods a ReplicaSet deletes first when it has too many (upstream's
//! `ActivePodsWithRanks`, with PodDeletionCost and LogarithmicScaleDown on, as in 1.33).

use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::cmp::Reverse;
use std::collections::HashMap;

/// The annotation that lets users say which pods are cheaper to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The `count` pods of `pods` to delete, best candidates first. `related` are the active pods
/// of every ReplicaSet that shares this one's owner (including its own): pods on nodes crowded
/// with related pods go first, which spreads what survives.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        if let Some(node) = node_name(pod) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let crowding = |pod: &Pod| node_name(pod).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    let mut ranked = pods.to_vec();
    ranked.sort_by_cached_key(|pod| DeletionKey::new(pod, crowding(pod), now));
    ranked.truncate(count);
    ranked
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A pod's place in the deletion order; smaller goes first. Fields compare in upstream's
/// order of rules, each deciding only when the earlier ones tie.
///
/// A sort key rather than upstream's pairwise comparison, whose bucketed time rules are not
/// transitive (Rust's sort requires a total order). It differs in one corner: two ready pods
/// whose ready times differ but fall in one bucket are told apart by the later rules
/// (restarts, age) before the uid, where upstream goes to the uid at once.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct DeletionKey<'a> {
    /// 1. Unscheduled before scheduled.
    scheduled: bool,
    /// 2. Pending before Unknown before Running.
    phase: u8,
    /// 3. Not ready before ready.
    ready: bool,
    /// 4. Cheaper to delete first.
    cost: i32,
    /// 5. On more crowded nodes first.
    crowding: Reverse<usize>,
    /// 6. Of ready pods, ready more recently first (0 for pods that are not ready).
    ready_age: i64,
    /// 7. More container restarts first.
    restarts: Reverse<i32>,
    /// 8. Newer first.
    age: i64,
    /// The last tie-breaker.
    uid: &'a str,
}

impl<'a> DeletionKey<'a> {
    fn new(pod: &'a Pod, crowding: usize, now: Timestamp) -> Self {
        let ready = podutil::is_ready(pod);
        Self {
            scheduled: node_name(pod).is_some(),
            phase: phase_order(pod),
            ready,
            cost: deletion_cost(pod),
            crowding: Reverse(crowding),
            ready_age: if ready {
                age_bucket(podutil::ready_since(pod), now)
            } else {
                0
            },
            restarts: Reverse(max_restarts(pod)),
            age: age_bucket(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
            uid: uid(pod),
        }
    }
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn phase_order(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

/// The pod's deletion cost; a missing or malformed annotation counts as 0, as upstream.
fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// The power-of-two bucket of a time's age at `now`, so that pods of about the same age count
/// as equal (upstream's `logarithmicRankDiff`); a time not yet passed is -1 and a missing one
/// -2, the newest.
fn age_bucket(time: Option<Timestamp>, now: Timestamp) -> i64 {
    let Some(time) = time else { return -2 };
    let age = now.duration_since(time).as_nanos();
    if age > 0 {
        (age as f64).log2() as i64
    } else {
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::ResourceExt;
    use std::collections::BTreeMap;

    const NOW: &str = "2026-06-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn ago(secs: i64) -> Timestamp {
        now() - SignedDuration::from_secs(secs)
    }

    /// A running, ready pod created and ready an hour ago on `node`.
    fn pod(name: &str, node: &str) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(ago(3600))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(ago(3600))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn first_deleted(pods: &[Pod], related: &[Pod]) -> String {
        let pods: Vec<&Pod> = pods.iter().collect();
        let related: Vec<&Pod> = related.iter().collect();
        pods_to_delete(&pods, &related, 1, now())[0].name_any()
    }

    #[test]
    fn each_rule_decides_when_the_earlier_ones_tie() {
        let base = pod("keep", "n1");
        type Edit = Box<dyn Fn(&mut Pod)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "unscheduled",
                Box::new(|p| p.spec.as_mut().unwrap().node_name = None),
            ),
            (
                "pending",
                Box::new(|p| p.status.as_mut().unwrap().phase = Some("Pending".into())),
            ),
            (
                "unknown",
                Box::new(|p| p.status.as_mut().unwrap().phase = Some("Unknown".into())),
            ),
            (
                "not-ready",
                Box::new(|p| p.status.as_mut().unwrap().conditions = None),
            ),
            (
                "cheap",
                Box::new(|p| {
                    p.metadata.annotations =
                        Some(BTreeMap::from([(POD_DELETION_COST.into(), "-5".into())]))
                }),
            ),
            (
                "recently-ready",
                Box::new(|p| {
                    let conditions = p.status.as_mut().unwrap().conditions.as_mut().unwrap();
                    conditions[0].last_transition_time = Some(Time(ago(60)));
                }),
            ),
            (
                "restarted",
                Box::new(|p| {
                    p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                        restart_count: 3,
                        ..Default::default()
                    }])
                }),
            ),
            (
                "young",
                Box::new(|p| p.metadata.creation_timestamp = Some(Time(ago(60)))),
            ),
        ];
        for (name, edit) in cases {
            let mut candidate = pod(name, "n1");
            edit(&mut candidate);
            let pods = [base.clone(), candidate.clone()];
            assert_eq!(first_deleted(&pods, &pods), name, "rule for {name}");
            let reversed = [candidate, base.clone()];
            assert_eq!(
                first_deleted(&reversed, &reversed),
                name,
                "rule for {name}, reversed"
            );
        }
    }

    #[test]
    fn pods_on_crowded_nodes_go_first() {
        let pods = [pod("alone", "n1"), pod("crowded", "n2")];
        let related = [pods[0].clone(), pods[1].clone(), pod("sibling", "n2")];
        assert_eq!(first_deleted(&pods, &related), "crowded");
    }

    #[test]
    fn ready_times_in_the_same_power_of_two_bucket_are_ordered_by_uid() {
        // Ready 100 s and 120 s ago: both ages fall in the 2^36 ns bucket.
        let mut a = pod("a", "n1");
        let mut b = pod("b", "n1");
        a.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(ago(100)));
        b.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(ago(120)));
        assert_eq!(first_deleted(&[b.clone(), a.clone()], &[]), "a");
    }

    #[test]
    fn deleting_everything_needs_no_ranking() {
        let pods = [pod("a", "n1"), pod("b", "n1")];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(pods_to_delete(&refs, &[], 5, now()).len(), 2);
    }
}

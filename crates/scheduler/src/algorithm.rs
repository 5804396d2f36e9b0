//! One scheduling decision, as upstream's `schedulePod`: pre-filter, filter nodes round-robin
//! from where the previous pod stopped until enough feasible ones are found
//! (`percentageOfNodesToScore`), score those, pick the best (ties at random). A pod that fits
//! nowhere gets upstream's `FitError` message.

use crate::plugins::{Candidates, filter, pre_filter, score};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use rand::Rng;
use std::collections::BTreeMap;

/// Upstream's `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring (upstream's `numFeasibleNodesToFind` with
/// the adaptive percentage: 50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
pub fn num_feasible_nodes_to_find(
    num_all_nodes: usize,
    percentage_of_nodes_to_score: Option<u32>,
) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let percentage = match percentage_of_nodes_to_score {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod fits on no node: what upstream's `FitError` and the preemption post-filter report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes exist.
    pub num_all_nodes: usize,
    /// The pre-filter's message, when a pre-filter rejected the pod outright.
    pub pre_filter: Option<String>,
    /// How many nodes gave each reason.
    pub reasons: BTreeMap<String, usize>,
    /// How many nodes were rejected for reasons removing pods could fix.
    pub resolvable_nodes: usize,
    /// The pod's `preemptionPolicy` is Never.
    pub never_preempts: bool,
}

impl std::fmt::Display for FitError {
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 node(s) didn't match
    /// Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not
    /// helpful for scheduling.` Reasons are "<count> <reason>" sorted as strings, as upstream.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.num_all_nodes;
        write!(f, "0/{n} nodes are available:")?;
        match &self.pre_filter {
            Some(message) => write!(f, " {message}.")?,
            None => {
                let mut counted: Vec<String> = self
                    .reasons
                    .iter()
                    .map(|(reason, count)| format!("{count} {reason}"))
                    .collect();
                counted.sort();
                if !counted.is_empty() {
                    write!(f, " {}.", counted.join(", "))?;
                }
            }
        }
        if self.never_preempts {
            return write!(
                f,
                " preemption: not eligible due to preemptionPolicy=Never."
            );
        }
        // Preemption is tried only where the rejection was resolvable; without lower-priority
        // pods to evict (skiff does not preempt) it finds no victims there.
        let mut preemption = Vec::new();
        if n > self.resolvable_nodes {
            preemption.push(format!(
                "{} Preemption is not helpful for scheduling",
                n - self.resolvable_nodes
            ));
        }
        if self.resolvable_nodes > 0 {
            preemption.push(format!(
                "{} No preemption victims found for incoming pod",
                self.resolvable_nodes
            ));
        }
        preemption.sort();
        write!(
            f,
            " preemption: 0/{n} nodes are available: {}.",
            preemption.join(", ")
        )
    }
}

/// The outcome of scheduling one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The node to bind to.
    Node(String),
    /// No node fits.
    Unschedulable(FitError),
    /// There are no nodes at all (upstream's `ErrNoNodesAvailable`).
    NoNodes,
}

/// Where the round-robin node search starts next (upstream's `nextStartNodeIndex`).
#[derive(Debug, Default)]
pub struct Cursor {
    next_start: usize,
}

/// Picks a node for `pod`. Reads the snapshot only; the caller assumes the pod on the node.
pub fn schedule(
    pod: &PodInfo,
    snapshot: &Snapshot,
    cursor: &mut Cursor,
    percentage_of_nodes_to_score: Option<u32>,
) -> Decision {
    let num_all_nodes = snapshot.num_nodes();
    if num_all_nodes == 0 {
        return Decision::NoNodes;
    }
    let mut fit_error = FitError {
        num_all_nodes,
        pre_filter: None,
        reasons: BTreeMap::new(),
        resolvable_nodes: 0,
        never_preempts: pod.never_preempts,
    };
    let named = match pre_filter(pod, &snapshot.volumes) {
        Err(message) => {
            fit_error.pre_filter = Some(message);
            return Decision::Unschedulable(fit_error);
        }
        Ok(Candidates::All) => None,
        Ok(Candidates::Named(names)) => Some(names),
    };
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let record = |info: &NodeInfo, fit_error: &mut FitError| match filter(pod, info, snapshot) {
        Ok(()) => true,
        Err(rejection) => {
            for reason in rejection.reasons {
                *fit_error.reasons.entry(reason.into_owned()).or_default() += 1;
            }
            fit_error.resolvable_nodes += usize::from(rejection.resolvable);
            false
        }
    };
    match &named {
        Some(names) => {
            // Only the named nodes are candidates; the rest did not satisfy NodeAffinity.
            let mut names: Vec<&String> = names.iter().collect();
            names.sort();
            let infos: Vec<&NodeInfo> =
                names.into_iter().filter_map(|n| snapshot.node(n)).collect();
            let absent = num_all_nodes - infos.len();
            if absent > 0 {
                fit_error.reasons.insert(
                    "node(s) didn't satisfy plugin(s) [NodeAffinity]".into(),
                    absent,
                );
            }
            let wanted = num_feasible_nodes_to_find(infos.len(), percentage_of_nodes_to_score);
            for info in infos {
                if feasible.len() >= wanted {
                    break;
                }
                if record(info, &mut fit_error) {
                    feasible.push(info);
                }
            }
        }
        None => {
            let wanted = num_feasible_nodes_to_find(num_all_nodes, percentage_of_nodes_to_score);
            let start = cursor.next_start % num_all_nodes;
            let mut processed = 0;
            while processed < num_all_nodes && feasible.len() < wanted {
                let info = snapshot.node_at((start + processed) % num_all_nodes);
                processed += 1;
                if record(info, &mut fit_error) {
                    feasible.push(info);
                }
            }
            cursor.next_start = (start + processed) % num_all_nodes;
        }
    }
    match feasible.len() {
        0 => Decision::Unschedulable(fit_error),
        1 => Decision::Node(feasible[0].facts().name.clone()),
        _ => Decision::Node(
            feasible[select_host(&score(pod, &feasible))]
                .facts()
                .name
                .clone(),
        ),
    }
}

/// The index of the highest score; ties broken uniformly at random (reservoir sampling, as
/// upstream's `selectHost`).
fn select_host(scores: &[i64]) -> usize {
    let mut rng = rand::rng();
    let mut best = 0;
    let mut ties = 0u32;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
            ties = 1;
        } else if s == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use crate::snapshot::NodeFacts;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};
    use std::sync::Arc;

    #[test]
    fn feasible_nodes_to_find() {
        let cases = [
            (50, None, 50),
            (100, None, 100),
            (1000, None, 420),
            (5000, None, 500),
            (6000, None, 300),
            (10_000, None, 500),
            (1000, Some(10), 100),
            (5000, Some(100), 5000),
        ];
        for (nodes, percentage, want) in cases {
            assert_eq!(
                num_feasible_nodes_to_find(nodes, percentage),
                want,
                "{nodes} nodes, {percentage:?}"
            );
        }
    }

    fn pod(spec: Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec}),
        )
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn snapshot(nodes: &[(&str, Value, Value)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (name, labels, taints) in nodes {
            s.upsert_node(NodeFacts {
                name: name.to_string(),
                labels: serde_json::from_value(labels.clone()).unwrap(),
                taints: serde_json::from_value(taints.clone()).unwrap(),
                unschedulable: false,
                allocatable: Resources {
                    milli_cpu: 1000,
                    memory: 1 << 30,
                    ephemeral_storage: 0,
                },
                allowed_pods: 110,
            });
        }
        s
    }

    #[test]
    fn failure_messages_as_upstream() {
        let s = snapshot(&[
            (
                "a",
                json!({}),
                json!([{"key": "key", "value": "value", "effect": "NoSchedule"}]),
            ),
            ("b", json!({"disk": "hdd"}), json!([])),
            ("c", json!({"disk": "hdd"}), json!([])),
        ]);
        let message = |spec: Value| match schedule(&pod(spec), &s, &mut Cursor::default(), None) {
            Decision::Unschedulable(e) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(json!({"nodeSelector": {"disk": "ssd"}})),
            "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            message(json!({"nodeSelector": {"disk": "ssd"}, "preemptionPolicy": "Never"})),
            "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 node(s) didn't match Pod's node affinity/selector. preemption: not eligible due to preemptionPolicy=Never."
        );
        assert_eq!(
            message(
                json!({"containers": [], "tolerations": [{"operator": "Exists"}], "overhead": {"cpu": "2"}})
            ),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
        let daemon = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}});
        assert_eq!(
            message(daemon),
            "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            message(
                json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]})
            ),
            "0/3 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn reasons_sort_as_strings() {
        let e = FitError {
            num_all_nodes: 12,
            pre_filter: None,
            reasons: [
                ("Insufficient cpu".to_string(), 2),
                ("node(s) were unschedulable".to_string(), 10),
            ]
            .into(),
            resolvable_nodes: 2,
            never_preempts: false,
        };
        assert_eq!(
            e.to_string(),
            "0/12 nodes are available: 10 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/12 nodes are available: 10 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn picks_a_feasible_node_and_moves_the_cursor() {
        let s = snapshot(&[
            ("a", json!({}), json!([])),
            ("b", json!({"disk": "ssd"}), json!([])),
            ("c", json!({}), json!([])),
        ]);
        let mut cursor = Cursor::default();
        assert_eq!(
            schedule(
                &pod(json!({"nodeSelector": {"disk": "ssd"}})),
                &s,
                &mut cursor,
                None
            ),
            Decision::Node("b".into())
        );
        assert_eq!(cursor.next_start, 0, "all three nodes were processed");
        assert_eq!(
            schedule(&pod(json!({})), &Snapshot::default(), &mut cursor, None),
            Decision::NoNodes
        );
    }
}

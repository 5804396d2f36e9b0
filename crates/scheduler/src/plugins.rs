//! The filters and scores of upstream's default profile that skiff implements, as pure
//! functions of a pod and a node (and, for volumes, the snapshot's claims).
//!
//! Filters run in the default profile's order (NodeUnschedulable, NodeName, TaintToleration,
//! NodeAffinity, NodeResourcesFit, VolumeBinding) and stop at the first rejection, as
//! upstream's framework does; their reasons are upstream's words, which the failure message
//! counts per node.

use crate::affinity::{selector_matches, term_matches, tolerated, tolerates};
use crate::snapshot::{NodeFacts, NodeInfo, PodInfo, Snapshot, Volumes};
use k8s_openapi::api::core::v1::{Taint, Toleration};
use std::borrow::Cow;
use std::collections::HashSet;

/// Why a node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Upstream's reasons, each counted in the failure message.
    pub reasons: Vec<Cow<'static, str>>,
    /// Whether removing pods from the node could help (upstream's `Unschedulable`, as opposed
    /// to `UnschedulableAndUnresolvable`); decides the preemption part of the message.
    pub resolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// The NodeName filter's reason.
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// The NodeUnschedulable filter's reason.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The NodeAffinity filter's reason.
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// The VolumeBinding filter's reason for a bound volume whose node affinity excludes the node.
pub const REASON_VOLUME_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// The VolumeBinding filter's reason for an unbound claim whose volume is being made for
/// another node (upstream's `ErrReasonBindConflict`).
pub const REASON_VOLUME_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
/// The VolumeBinding filter's reason for a claim bound to a volume that does not exist.
pub const REASON_VOLUME_MISSING: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The taint that `spec.unschedulable` stands for.
fn unschedulable_taint() -> Taint {
    Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    }
}

/// NodeUnschedulable: a cordoned node takes only pods that tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeFacts) -> Result<(), Rejection> {
    if node.unschedulable && !tolerated(&pod.tolerations, &unschedulable_taint()) {
        return Err(Rejection::unresolvable(REASON_UNSCHEDULABLE));
    }
    Ok(())
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(pod: &PodInfo, node: &NodeFacts) -> Result<(), Rejection> {
    match &pod.node_name {
        Some(name) if *name != node.name => Err(Rejection::unresolvable(REASON_NODE_NAME)),
        _ => Ok(()),
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated; the first one
/// that is not is named.
pub fn taint_toleration(pod: &PodInfo, node: &NodeFacts) -> Result<(), Rejection> {
    let untolerated = node.taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(&pod.tolerations, t)
    });
    match untolerated {
        Some(t) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        ))),
        None => Ok(()),
    }
}

/// NodeAffinity: `spec.nodeSelector` and the required node affinity must both match.
pub fn node_affinity(pod: &PodInfo, node: &NodeFacts) -> Result<(), Rejection> {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_affinity
        .as_ref()
        .is_none_or(|s| selector_matches(s, node));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_NODE_AFFINITY))
    }
}

/// NodeResourcesFit: the pod count, cpu, memory and ephemeral storage requested must fit in
/// what is allocatable minus what the node's pods request. Every shortage is a reason.
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let facts = node.facts();
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    if node.pod_count + 1 > facts.allowed_pods {
        reasons.push("Too many pods".into());
    }
    let want = pod.requests.requested;
    let free = |allocatable: i64, requested: i64| allocatable - requested;
    if want.milli_cpu > 0
        && want.milli_cpu > free(facts.allocatable.milli_cpu, node.requested.milli_cpu)
    {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && want.memory > free(facts.allocatable.memory, node.requested.memory) {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage
            > free(
                facts.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            )
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            resolvable: true,
        })
    }
}

/// VolumeBinding: a bound claim's volume must exist and its node affinity must match the
/// node; an unbound claim whose volume is being made for a selected node (it waits for its
/// first consumer) allows only that node. Other unbound claims do not restrict nodes.
pub fn volume_binding(pod: &PodInfo, node: &NodeFacts, volumes: &Volumes) -> Result<(), Rejection> {
    for claim in &pod.claims {
        let Some(facts) = volumes.claims.get(&format!("{}/{claim}", pod.namespace)) else {
            continue;
        };
        let Some(volume_name) = facts.volume_name.as_ref() else {
            if facts
                .selected_node
                .as_ref()
                .is_some_and(|n| *n != node.name)
            {
                return Err(Rejection::unresolvable(REASON_VOLUME_BIND_CONFLICT));
            }
            continue;
        };
        match volumes.volumes.get(volume_name) {
            None => return Err(Rejection::unresolvable(REASON_VOLUME_MISSING)),
            Some(Some(affinity)) if !selector_matches(affinity, node) => {
                return Err(Rejection::unresolvable(REASON_VOLUME_NODE_CONFLICT));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// All filters, in the default profile's order, stopping at the first rejection.
pub fn filter(pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Result<(), Rejection> {
    let facts = node.facts();
    node_unschedulable(pod, facts)?;
    node_name(pod, facts)?;
    taint_toleration(pod, facts)?;
    node_affinity(pod, facts)?;
    resources_fit(pod, node)?;
    volume_binding(pod, facts, &snapshot.volumes)
}

/// The nodes the pre-filters narrow the search to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// Every node.
    All,
    /// Only these nodes (NodeAffinity's `matchFields` on `metadata.name`, as DaemonSet pods
    /// use); the others are reported as not satisfying the plugin.
    Named(HashSet<String>),
}

/// Pre-filters: NodeAffinity narrows the nodes when every required term names nodes
/// (`matchFields` `metadata.name In`), and VolumeBinding rejects the pod outright when a claim
/// is missing, lost or being deleted. `Err` is upstream's pre-filter message.
pub fn pre_filter(pod: &PodInfo, volumes: &Volumes) -> Result<Candidates, String> {
    let candidates = named_nodes(pod)?;
    for claim in &pod.claims {
        match volumes.claims.get(&format!("{}/{claim}", pod.namespace)) {
            None => return Err(format!("persistentvolumeclaim \"{claim}\" not found")),
            Some(c) if c.lost => {
                return Err(format!(
                    "persistentvolumeclaim \"{claim}\" bound to non-existent persistentvolume \"{}\"",
                    c.volume_name.as_deref().unwrap_or("")
                ));
            }
            Some(c) if c.deleting => {
                return Err(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(candidates)
}

fn named_nodes(pod: &PodInfo) -> Result<Candidates, String> {
    let Some(required) = &pod.required_affinity else {
        return Ok(Candidates::All);
    };
    if required.node_selector_terms.is_empty() {
        return Ok(Candidates::All);
    }
    let mut names = HashSet::new();
    for term in &required.node_selector_terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in term
            .match_fields
            .iter()
            .flatten()
            .filter(|r| r.key == "metadata.name" && r.operator == "In")
        {
            let values: HashSet<String> = r.values.iter().flatten().cloned().collect();
            // Requirements of one term are ANDed: intersect.
            term_names = Some(match term_names {
                None => values,
                Some(previous) => previous.intersection(&values).cloned().collect(),
            });
        }
        // A term that names no node lets every node through, as terms are ORed.
        let Some(term_names) = term_names else {
            return Ok(Candidates::All);
        };
        names.extend(term_names);
    }
    if names.is_empty() {
        Err("pod affinity terms conflict".into())
    } else {
        Ok(Candidates::Named(names))
    }
}

/// Upstream's `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;
/// Weights of the default profile's score plugins.
const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_RESOURCES_FIT: i64 = 1;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

/// NodeResourcesFit's LeastAllocated score: the mean over cpu and memory (weight 1 each) of
/// the free share after placing the pod, counting requests with the scoring defaults.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let allocatable = node.facts().allocatable;
    let pairs = [
        (
            node.non_zero_requested.milli_cpu + pod.requests.non_zero.milli_cpu,
            allocatable.milli_cpu,
        ),
        (
            node.non_zero_requested.memory + pod.requests.non_zero.memory,
            allocatable.memory,
        ),
    ];
    let (sum, count) = pairs
        .iter()
        .filter(|(_, capacity)| *capacity != 0)
        .map(|&(requested, capacity)| {
            if requested > capacity {
                0
            } else {
                (capacity - requested) * MAX_NODE_SCORE / capacity
            }
        })
        .fold((0, 0), |(sum, count), score| (sum + score, count + 1));
    if count == 0 { 0 } else { sum / count }
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the standard deviation of the cpu and memory
/// fractions requested after placing the pod); `None` (skipped) for a pod requesting neither.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> Option<i64> {
    let want = pod.requests.requested;
    if want.milli_cpu == 0 && want.memory == 0 {
        return None;
    }
    let allocatable = node.facts().allocatable;
    let fractions: Vec<f64> = [
        (
            node.requested.milli_cpu + want.milli_cpu,
            allocatable.milli_cpu,
        ),
        (node.requested.memory + want.memory, allocatable.memory),
    ]
    .iter()
    .filter(|(_, capacity)| *capacity != 0)
    .map(|&(requested, capacity)| (requested as f64 / capacity as f64).min(1.0))
    .collect();
    let std = match fractions[..] {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    Some(((1.0 - std) * MAX_NODE_SCORE as f64) as i64)
}

/// TaintToleration's raw score: how many PreferNoSchedule taints the pod does not tolerate
/// (only tolerations with an empty or PreferNoSchedule effect count).
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeFacts) -> i64 {
    let counts = |t: &&Toleration| {
        matches!(
            t.effect.as_deref(),
            None | Some("") | Some("PreferNoSchedule")
        )
    };
    let tolerated = |taint: &Taint| {
        pod.tolerations
            .iter()
            .filter(counts)
            .any(|t| tolerates(t, taint))
    };
    node.taints
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule" && !tolerated(taint))
        .count() as i64
}

/// NodeAffinity's raw score: the summed weights of the preferred terms the node matches.
pub fn preferred_affinity(pod: &PodInfo, node: &NodeFacts) -> i64 {
    pod.preferred_affinity
        .iter()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// Upstream's `DefaultNormalizeScore`: scales to 0..=100 by the highest score, reversed
/// (100 − score) when lower raw scores are better.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    for score in scores.iter_mut() {
        *score = match (max, reverse) {
            (0, true) => MAX_NODE_SCORE,
            (0, false) => *score,
            (max, _) => {
                let scaled = MAX_NODE_SCORE * *score / max;
                if reverse {
                    MAX_NODE_SCORE - scaled
                } else {
                    scaled
                }
            }
        };
    }
}

/// The weighted total score of each node, as the default profile's score plugins sum them.
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut taints: Vec<i64> = nodes
        .iter()
        .map(|n| intolerable_prefer_no_schedule(pod, n.facts()))
        .collect();
    normalize(&mut taints, true);
    let mut affinity: Vec<i64> = nodes
        .iter()
        .map(|n| preferred_affinity(pod, n.facts()))
        .collect();
    normalize(&mut affinity, false);
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            WEIGHT_TAINT_TOLERATION * taints[i]
                + WEIGHT_NODE_AFFINITY * affinity[i]
                + WEIGHT_RESOURCES_FIT * least_allocated(pod, n)
                + WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, n).unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use crate::snapshot::ClaimFacts;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn pod(spec: Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i", "resources": spec.get("resources").cloned().unwrap_or(json!({}))}]);
        spec.as_object_mut().unwrap().remove("resources");
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec}),
        )
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(labels: &[(&str, &str)], taints: Value, unschedulable: bool) -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: serde_json::from_value(taints).unwrap(),
            unschedulable,
            allocatable: Resources {
                milli_cpu: 4000,
                memory: 8 << 30,
                ephemeral_storage: 100 << 30,
            },
            allowed_pods: 110,
        }
    }

    fn plain() -> NodeFacts {
        node(&[], json!([]), false)
    }

    fn rejected(reason: &str) -> Result<(), Rejection> {
        Err(Rejection::unresolvable(reason.to_string()))
    }

    #[test]
    fn node_unschedulable_filter() {
        let cordoned = node(&[], json!([]), true);
        let tolerating = json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]});
        let cases = [
            (json!({}), plain(), Ok(())),
            (json!({}), cordoned.clone(), rejected(REASON_UNSCHEDULABLE)),
            (tolerating, cordoned, Ok(())),
        ];
        for (spec, node, want) in cases {
            assert_eq!(
                node_unschedulable(&pod(spec.clone()), &node),
                want,
                "{spec}"
            );
        }
    }

    #[test]
    fn node_name_filter() {
        let cases = [
            (json!({}), Ok(())),
            (json!({"nodeName": "n1"}), Ok(())),
            (json!({"nodeName": "n2"}), rejected(REASON_NODE_NAME)),
        ];
        for (spec, want) in cases {
            assert_eq!(node_name(&pod(spec.clone()), &plain()), want, "{spec}");
        }
    }

    #[test]
    fn taint_toleration_filter() {
        let tainted = node(
            &[],
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}, {"key": "soft", "effect": "PreferNoSchedule"}]),
            false,
        );
        let no_execute = node(
            &[],
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
            false,
        );
        let cases = [
            (json!({}), plain(), Ok(())),
            (
                json!({}),
                tainted.clone(),
                rejected("node(s) had untolerated taint {dedicated: gpu}"),
            ),
            (
                json!({"tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                tainted.clone(),
                Ok(()),
            ),
            (
                json!({"tolerations": [{"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}]}),
                tainted,
                rejected("node(s) had untolerated taint {dedicated: gpu}"),
            ),
            (
                json!({}),
                no_execute.clone(),
                rejected("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            ),
            (
                json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}),
                no_execute,
                Ok(()),
            ),
        ];
        for (spec, node, want) in cases {
            assert_eq!(taint_toleration(&pod(spec.clone()), &node), want, "{spec}");
        }
    }

    #[test]
    fn node_affinity_filter() {
        let labelled = node(&[("disk", "ssd"), ("zone", "a")], json!([]), false);
        let required = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let cases = [
            (json!({}), Ok(())),
            (json!({"nodeSelector": {"disk": "ssd"}}), Ok(())),
            (
                json!({"nodeSelector": {"disk": "hdd"}}),
                rejected(REASON_NODE_AFFINITY),
            ),
            (
                json!({"nodeSelector": {"disk": "ssd", "gpu": "yes"}}),
                rejected(REASON_NODE_AFFINITY),
            ),
            (
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]),
                ),
                rejected(REASON_NODE_AFFINITY),
            ),
            // Terms are ORed.
            (
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}, {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]),
                ),
                Ok(()),
            ),
            (
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                Ok(()),
            ),
            (
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                rejected(REASON_NODE_AFFINITY),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(node_affinity(&pod(spec.clone()), &labelled), want, "{spec}");
        }
    }

    #[test]
    fn resources_fit_filter() {
        let mut busy = NodeInfo::new(plain());
        busy.requested = Resources {
            milli_cpu: 3500,
            memory: 7 << 30,
            ephemeral_storage: 0,
        };
        busy.pod_count = 5;
        let mut full = NodeInfo::new(plain());
        full.pod_count = 110;
        let requests =
            |cpu: &str, mem: &str| json!({"resources": {"requests": {"cpu": cpu, "memory": mem}}});
        let fail = |reasons: &[&'static str]| {
            Err(Rejection {
                reasons: reasons.iter().map(|r| Cow::Borrowed(*r)).collect(),
                resolvable: true,
            })
        };
        let cases = [
            (requests("500m", "1Gi"), busy.clone(), Ok(())),
            (
                requests("501m", "1Gi"),
                busy.clone(),
                fail(&["Insufficient cpu"]),
            ),
            (
                requests("1", "2Gi"),
                busy.clone(),
                fail(&["Insufficient cpu", "Insufficient memory"]),
            ),
            (json!({}), full.clone(), fail(&["Too many pods"])),
            (
                requests("5", "1Gi"),
                full,
                fail(&["Too many pods", "Insufficient cpu"]),
            ),
            (
                json!({"resources": {"requests": {"ephemeral-storage": "200Gi"}}}),
                busy,
                fail(&["Insufficient ephemeral-storage"]),
            ),
        ];
        for (spec, node, want) in cases {
            assert_eq!(resources_fit(&pod(spec.clone()), &node), want, "{spec}");
        }
    }

    #[test]
    fn volume_filter_and_pre_filter() {
        let mut volumes = Volumes::default();
        let bound = |name: &str| ClaimFacts {
            volume_name: Some(name.into()),
            ..Default::default()
        };
        volumes.claims.insert("ns/local".into(), bound("pv-local"));
        volumes
            .claims
            .insert("ns/anywhere".into(), bound("pv-anywhere"));
        volumes
            .claims
            .insert("ns/dangling".into(), bound("pv-gone"));
        volumes
            .claims
            .insert("ns/unbound".into(), ClaimFacts::default());
        let selected = |node: &str| ClaimFacts {
            selected_node: Some(node.into()),
            ..Default::default()
        };
        volumes.claims.insert("ns/for-n1".into(), selected("n1"));
        volumes.claims.insert("ns/for-n2".into(), selected("n2"));
        volumes.claims.insert(
            "ns/going".into(),
            ClaimFacts {
                deleting: true,
                ..Default::default()
            },
        );
        let on_n2 = json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]});
        volumes.volumes.insert(
            "pv-local".into(),
            Some(serde_json::from_value(on_n2).unwrap()),
        );
        volumes.volumes.insert("pv-anywhere".into(), None);
        let claiming = |claim: &str| json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]});
        let n1 = node(&[("kubernetes.io/hostname", "n1")], json!([]), false);
        let cases = [
            (json!({}), Ok(Candidates::All), Ok(())),
            (claiming("anywhere"), Ok(Candidates::All), Ok(())),
            (claiming("unbound"), Ok(Candidates::All), Ok(())),
            (claiming("for-n1"), Ok(Candidates::All), Ok(())),
            (
                claiming("for-n2"),
                Ok(Candidates::All),
                rejected(REASON_VOLUME_BIND_CONFLICT),
            ),
            (
                claiming("local"),
                Ok(Candidates::All),
                rejected(REASON_VOLUME_NODE_CONFLICT),
            ),
            (
                claiming("dangling"),
                Ok(Candidates::All),
                rejected(REASON_VOLUME_MISSING),
            ),
            (
                claiming("missing"),
                Err("persistentvolumeclaim \"missing\" not found".to_string()),
                Ok(()),
            ),
            (
                claiming("going"),
                Err("persistentvolumeclaim \"going\" is being deleted".to_string()),
                Ok(()),
            ),
            (
                json!({"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}),
                Err("persistentvolumeclaim \"p-scratch\" not found".to_string()),
                Ok(()),
            ),
        ];
        for (spec, want_pre, want) in cases {
            let p = pod(spec.clone());
            assert_eq!(pre_filter(&p, &volumes), want_pre, "{spec}");
            assert_eq!(volume_binding(&p, &n1, &volumes), want, "{spec}");
        }
    }

    #[test]
    fn node_affinity_pre_filter_names_nodes() {
        let fields = |values: &[&str]| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": values}]});
        let required = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let named = |names: &[&str]| {
            Ok(Candidates::Named(
                names.iter().map(|n| n.to_string()).collect(),
            ))
        };
        let both = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}, {"key": "metadata.name", "operator": "In", "values": ["b", "c"]}]});
        let disjoint = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}, {"key": "metadata.name", "operator": "In", "values": ["b"]}]});
        let cases = [
            (required(json!([fields(&["a"])])), named(&["a"])),
            (
                required(json!([fields(&["a"]), fields(&["b"])])),
                named(&["a", "b"]),
            ),
            (required(json!([both])), named(&["b"])),
            (
                required(
                    json!([fields(&["a"]), {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]),
                ),
                Ok(Candidates::All),
            ),
            (
                required(json!([disjoint])),
                Err("pod affinity terms conflict".to_string()),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                pre_filter(&pod(spec.clone()), &Volumes::default()),
                want,
                "{spec}"
            );
        }
    }

    #[test]
    fn least_allocated_score() {
        // The node already has 3 cpu and 4Gi requested (scoring view) of 4 cpu and 8Gi.
        let mut info = NodeInfo::new(plain());
        info.non_zero_requested = Resources {
            milli_cpu: 3000,
            memory: 4 << 30,
            ephemeral_storage: 0,
        };
        let cases = [
            (
                // cpu full (0); memory (8Gi-6Gi)*100/8Gi = 25.
                json!({"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}),
                25 / 2,
            ),
            // Defaults: 100m and 200Mi. cpu (4000-3100)*100/4000 = 22; memory (8Gi-4Gi-200Mi)*100/8Gi = 47.
            (json!({}), (22 + 47) / 2),
            (
                // cpu over capacity (0); memory (8Gi-5Gi)*100/8Gi = 37.
                json!({"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}),
                37 / 2,
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(least_allocated(&pod(spec.clone()), &info), want, "{spec}");
        }
    }

    #[test]
    fn balanced_allocation_score() {
        let mut info = NodeInfo::new(plain());
        info.requested = Resources {
            milli_cpu: 1000,
            memory: 2 << 30,
            ephemeral_storage: 0,
        };
        let cases = [
            // cpu 2000/4000 = 0.5, memory 4Gi/8Gi = 0.5: perfectly balanced.
            (
                json!({"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}),
                Some(100),
            ),
            // cpu 3000/4000 = 0.75, memory 2.5Gi/8Gi = 0.3125: std 0.21875 → 78.
            (
                json!({"resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}),
                Some(78),
            ),
            // Over capacity counts as 1: cpu 1, memory 0.25 → std 0.375 → 62.
            (json!({"resources": {"requests": {"cpu": "8"}}}), Some(62)),
            // A best-effort pod is not scored.
            (json!({}), None),
        ];
        for (spec, want) in cases {
            assert_eq!(
                balanced_allocation(&pod(spec.clone()), &info),
                want,
                "{spec}"
            );
        }
    }

    #[test]
    fn taint_and_affinity_raw_scores() {
        let soft = node(
            &[("zone", "a")],
            json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "value": "x", "effect": "PreferNoSchedule"}, {"key": "c", "effect": "NoSchedule"}]),
            false,
        );
        let cases = [
            (json!({}), 2),
            (
                json!({"tolerations": [{"key": "a", "operator": "Exists"}]}),
                1,
            ),
            // A toleration for another effect does not count.
            (
                json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}),
                2,
            ),
            (
                json!({"tolerations": [{"operator": "Exists", "effect": "PreferNoSchedule"}]}),
                0,
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                intolerable_prefer_no_schedule(&pod(spec.clone()), &soft),
                want,
                "{spec}"
            );
        }
        let preferred = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 7, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
            {"weight": 11, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}},
        ]}}});
        assert_eq!(preferred_affinity(&pod(preferred), &soft), 16);
    }

    #[test]
    fn normalization() {
        let cases = [
            (vec![0, 0], true, vec![100, 100]),
            (vec![0, 0], false, vec![0, 0]),
            (vec![1, 2, 4], true, vec![75, 50, 0]),
            (vec![3, 6, 0], false, vec![50, 100, 0]),
        ];
        for (mut scores, reverse, want) in cases {
            normalize(&mut scores, reverse);
            assert_eq!(scores, want);
        }
    }

    #[test]
    fn total_score_prefers_untainted_and_preferred_nodes() {
        let preferred = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}});
        let a = NodeInfo::new(node(&[("zone", "a")], json!([]), false));
        let b = NodeInfo::new(node(
            &[("zone", "b")],
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
            false,
        ));
        let p = pod(preferred);
        // Empty nodes: LeastAllocated (97 + 97) / 2 = 97 for both (defaults 100m, 200Mi).
        assert_eq!(score(&p, &[&a, &b]), vec![3 * 100 + 2 * 100 + 97, 97]);
    }
}

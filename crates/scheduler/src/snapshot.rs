//! What scheduling decisions read: the nodes with the pods placed on them (their summed
//! requests and count), the volumes pods claim, and each pending pod's scheduling-relevant
//! spec, parsed once.

use crate::resources::{PodRequests, Resources, pod_requests};
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod, PreferredSchedulingTerm,
    Taint, Toleration,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The facts about a Node that filters and scores read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable` cpu, memory and ephemeral storage.
    pub allocatable: Resources,
    /// `status.allocatable.pods`.
    pub allowed_pods: i64,
}

impl NodeFacts {
    /// Extracts the facts from a Node object.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resources::from_list(allocatable),
            allowed_pods: allocatable
                .and_then(|a| a.get("pods"))
                .and_then(|q| skiff_api::quantity::parse_int(&q.0, false))
                .unwrap_or(0),
        }
    }
}

/// A node and the pods placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node; `None` while pods still point at a node that was deleted.
    pub node: Option<NodeFacts>,
    /// The summed requests of the pods on the node.
    pub requested: Resources,
    /// The summed requests as scoring counts them (with the per-container defaults).
    pub non_zero_requested: Resources,
    /// How many pods are on the node.
    pub pod_count: i64,
    /// This node's position in [`Snapshot::order`], when it has a node.
    position: Option<usize>,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(facts: NodeFacts) -> Self {
        NodeInfo {
            node: Some(facts),
            ..Default::default()
        }
    }

    /// The node's facts (nodes in [`Snapshot::order`] always have them).
    pub fn facts(&self) -> &NodeFacts {
        self.node.as_ref().expect("listed nodes have facts")
    }

    /// Accounts for a pod placed on this node.
    pub fn add_pod(&mut self, requests: &PodRequests) {
        self.requested.plus(requests.requested);
        self.non_zero_requested.plus(requests.non_zero);
        self.pod_count += 1;
    }

    fn remove_pod(&mut self, requests: &PodRequests) {
        self.requested.minus(requests.requested);
        self.non_zero_requested.minus(requests.non_zero);
        self.pod_count -= 1;
    }
}

/// The claims and volumes that the volume filter reads.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    /// Claims by `namespace/name`.
    pub claims: HashMap<String, ClaimFacts>,
    /// The required node affinity of each persistent volume, by name.
    pub volumes: HashMap<String, Option<NodeSelector>>,
}

impl Volumes {
    /// Records that a pod's unbound claims get their volumes on `node` (upstream's assumed
    /// claims), so that pods sharing them are placed there too before the claims' own
    /// `selected-node` annotations are seen.
    pub fn assume_selected_node(&mut self, namespace: &str, claims: &[String], node: &str) {
        for claim in claims {
            if let Some(facts) = self.claims.get_mut(&format!("{namespace}/{claim}"))
                && facts.volume_name.is_none()
                && facts.selected_node.is_none()
            {
                facts.selected_node = Some(node.to_owned());
            }
        }
    }
}

/// What the volume filter needs from a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaimFacts {
    /// `spec.volumeName`: the volume the claim is bound to.
    pub volume_name: Option<String>,
    /// Whether the claim is being deleted.
    pub deleting: bool,
    /// `status.phase` is Lost.
    pub lost: bool,
    /// The node chosen for the claim's volume while it is unbound
    /// (`volume.kubernetes.io/selected-node`), or assumed by this scheduler for a pod it is
    /// binding.
    pub selected_node: Option<String>,
}

impl ClaimFacts {
    /// Extracts the facts from a claim.
    pub fn from_claim(claim: &PersistentVolumeClaim) -> Self {
        ClaimFacts {
            volume_name: claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty()),
            deleting: claim.metadata.deletion_timestamp.is_some(),
            lost: claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost"),
            selected_node: claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::prebind::SELECTED_NODE_ANNOTATION))
                .cloned(),
        }
    }
}

/// A volume's required node affinity.
pub fn volume_node_affinity(volume: &PersistentVolume) -> Option<NodeSelector> {
    volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .clone()
}

/// A pending pod, parsed once for all the nodes it is checked against.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod object as last seen.
    pub pod: Arc<Pod>,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.priority`.
    pub priority: i32,
    /// The requests, as filtering and scoring count them.
    pub requests: PodRequests,
    /// `spec.nodeName`, when set.
    pub node_name: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<NodeSelector>,
    /// `spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<PreferredSchedulingTerm>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// The names of the claims the pod's volumes use (generic ephemeral volumes included).
    pub claims: Vec<String>,
    /// `spec.preemptionPolicy` is Never.
    pub never_preempts: bool,
}

impl PodInfo {
    /// Parses the scheduling-relevant parts of `pod`.
    pub fn new(pod: Arc<Pod>) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
                (Some(claim), _) => Some(claim.claim_name.clone()),
                // A generic ephemeral volume's claim is named after the pod and the volume.
                (None, Some(_)) => Some(format!("{name}-{}", v.name)),
                _ => None,
            })
            .collect();
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name,
            priority: spec.priority.unwrap_or(0),
            requests: pod_requests(&spec),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_affinity: node_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred_affinity: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            claims,
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            pod,
        }
    }
}

/// Where a pod is placed, for taking it off its node again.
#[derive(Debug, Clone)]
struct Placement {
    node: String,
    requests: PodRequests,
    /// Seen bound by the assigned-pods watch (not only assumed by this scheduler).
    confirmed: bool,
}

/// The cluster as the scheduler sees it: nodes in a stable order (for round-robin sampling),
/// the pods placed on them, and the volumes. Updated in place by the watches and by the
/// scheduler's own assumptions; never cloned per pod.
#[derive(Debug, Default)]
pub struct Snapshot {
    infos: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    free: Vec<usize>,
    order: Vec<usize>,
    pods: HashMap<String, Placement>,
    /// Claims and volumes.
    pub volumes: Volumes,
}

impl Snapshot {
    /// How many nodes exist.
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// The `i`-th node in sampling order.
    pub fn node_at(&self, i: usize) -> &NodeInfo {
        &self.infos[self.order[i]]
    }

    /// The node named `name`, if it exists.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name
            .get(name)
            .map(|&slot| &self.infos[slot])
            .filter(|info| info.node.is_some())
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.by_name.get(name) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.infos.push(NodeInfo::default());
                self.infos.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), slot);
        slot
    }

    /// Frees a slot that has neither a node nor pods.
    fn release_if_empty(&mut self, name: &str) {
        if let Some(&slot) = self.by_name.get(name) {
            let info = &self.infos[slot];
            if info.node.is_none() && info.pod_count == 0 {
                self.infos[slot] = NodeInfo::default();
                self.by_name.remove(name);
                self.free.push(slot);
            }
        }
    }

    /// Adds or updates a node; returns whether anything a filter reads changed (so pods it
    /// rejected may now fit).
    pub fn upsert_node(&mut self, facts: NodeFacts) -> bool {
        let slot = self.slot(&facts.name);
        let info = &mut self.infos[slot];
        let changed = info.node.as_ref() != Some(&facts);
        if info.position.is_none() {
            info.position = Some(self.order.len());
            self.order.push(slot);
        }
        info.node = Some(facts);
        changed
    }

    /// Removes a node; pods still bound to it stay accounted until they go.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&slot) = self.by_name.get(name) else {
            return;
        };
        let Some(position) = self.infos[slot].position.take() else {
            return;
        };
        self.infos[slot].node = None;
        self.order.swap_remove(position);
        if let Some(&moved) = self.order.get(position) {
            self.infos[moved].position = Some(position);
        }
        self.release_if_empty(name);
    }

    /// Places a pod on `node` (a bound pod seen by the watch when `confirmed`, otherwise this
    /// scheduler's assumption), replacing an earlier placement of the same pod.
    pub fn place_pod(&mut self, uid: &str, node: &str, requests: PodRequests, confirmed: bool) {
        self.remove_pod(uid);
        let slot = self.slot(node);
        self.infos[slot].add_pod(&requests);
        self.pods.insert(
            uid.to_string(),
            Placement {
                node: node.to_string(),
                requests,
                confirmed,
            },
        );
    }

    /// Takes a pod off its node.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(placement) = self.pods.remove(uid) else {
            return false;
        };
        if let Some(&slot) = self.by_name.get(&placement.node) {
            self.infos[slot].remove_pod(&placement.requests);
        }
        self.release_if_empty(&placement.node);
        true
    }

    /// After the assigned-pods watch relisted: drops confirmed pods it no longer lists
    /// (assumed ones stay until their binding is seen or fails).
    pub fn retain_confirmed_pods(&mut self, listed: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, p)| p.confirmed && !listed.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
    }

    /// After the node watch relisted: drops nodes it no longer lists.
    pub fn retain_nodes(&mut self, listed: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .order
            .iter()
            .map(|&slot| self.infos[slot].facts().name.clone())
            .filter(|n| !listed.contains(n))
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            allowed_pods: 110,
            ..Default::default()
        }
    }

    fn requests(milli_cpu: i64) -> PodRequests {
        let r = Resources {
            milli_cpu,
            ..Default::default()
        };
        PodRequests {
            requested: r,
            non_zero: r,
        }
    }

    #[test]
    fn pods_are_accounted_on_their_nodes() {
        let mut s = Snapshot::default();
        assert!(s.upsert_node(facts("a")));
        assert!(
            !s.upsert_node(facts("a")),
            "an identical update changes nothing"
        );
        s.upsert_node(facts("b"));
        s.place_pod("p1", "a", requests(100), false);
        s.place_pod("p1", "a", requests(100), true);
        s.place_pod("p2", "a", requests(200), true);
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 300);
        assert_eq!(s.node("a").unwrap().pod_count, 2);
        s.remove_pod("p1");
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 200);
        // A deleted node keeps its pods' accounting until they go, and gets it back.
        s.remove_node("a");
        assert_eq!(s.num_nodes(), 1);
        assert!(s.node("a").is_none());
        s.upsert_node(facts("a"));
        assert_eq!(s.node("a").unwrap().pod_count, 1);
        s.remove_node("a");
        s.remove_pod("p2");
        s.upsert_node(facts("a"));
        assert_eq!(s.node("a").unwrap().pod_count, 0);
        let names: Vec<_> = (0..s.num_nodes())
            .map(|i| s.node_at(i).facts().name.clone())
            .collect();
        assert_eq!(names, ["b", "a"]);
    }
}

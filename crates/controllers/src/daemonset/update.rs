//! Rolling updates of daemon pods (upstream's `rollingUpdate`): without surge, old pods are
//! deleted while no more than maxUnavailable desired nodes lack an available pod (the manage
//! step then creates the replacements); with surge, new pods start next to old ones on up to
//! maxSurge nodes, and each old pod goes once its node's new pod is available.

use super::manage::{PodsByNode, is_updated};
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// What one rolling-update step should do.
#[derive(Debug, Default, PartialEq)]
pub struct UpdatePlan {
    /// Names of old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to start a new pod on next to the old one.
    pub create_on: Vec<String>,
}

/// The one new and one old non-deleting pod on a node, or `None` if there are more (the
/// manage step cleans those nodes up first; upstream's `findUpdatedPodsOnNode`).
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for &pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// One step of a rolling update. `desired` are the nodes that should run a daemon pod (each
/// with whether it exists in `pods`); `pods` are the DaemonSet's pods by node, including nodes
/// that should no longer run one.
pub fn plan(
    desired: &[&str],
    pods: &PodsByNode,
    hash: &str,
    max_surge: usize,
    max_unavailable: usize,
    min_ready_seconds: i32,
    now: Timestamp,
) -> UpdatePlan {
    let available = |p: &Pod| podutil::is_available(p, min_ready_seconds, now);
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    // Every desired node takes part, with or without pods.
    let mut nodes: Vec<(&str, &[&Pod])> = pods
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    for node in desired {
        if !pods.contains_key(*node) {
            nodes.push((node, &[]));
        }
    }
    nodes.sort_by_key(|(n, _)| *n);
    let mut plan = UpdatePlan::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_at_once = Vec::new();
        let mut candidates = Vec::new();
        for (_, on_node) in &nodes {
            match updated_and_old(on_node, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += usize::from(!available(new)),
                Some((None, Some(old))) if !available(old) => replace_at_once.push(name(old)),
                Some((None, Some(_))) if unavailable >= max_unavailable => {}
                Some((None, Some(old))) => candidates.push(name(old)),
            }
        }
        let room = max_unavailable
            .saturating_sub(unavailable)
            .min(candidates.len());
        plan.delete = replace_at_once;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let mut surging = 0;
    let mut available_nodes: usize = 0;
    let mut replace_at_once = Vec::new();
    let mut candidates = Vec::new();
    let mut old_on_unwanted_nodes = Vec::new();
    for (node, on_node) in &nodes {
        let Some((new, old)) = updated_and_old(on_node, hash) else {
            // The manage step cleans this node up; count it as surging meanwhile.
            surging += 1;
            continue;
        };
        if old.is_some_and(available) || new.is_some_and(available) {
            available_nodes += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if desired.contains(node) {
                    replace_at_once.push(node.to_string());
                } else {
                    old_on_unwanted_nodes.push(name(old));
                }
            }
            (None, Some(_)) if surging >= max_surge => {}
            (None, Some(_)) => candidates.push(node.to_string()),
            (Some(new), Some(_)) if !available(new) => surging += 1,
            (Some(_), Some(old)) => plan.delete.push(name(old)),
        }
    }
    // Old pods on nodes that no longer want one go only while enough others are available,
    // so moving a DaemonSet between nodes never leaves it with no available pod.
    let deletable = available_nodes.saturating_sub(desired.len());
    plan.delete
        .extend(old_on_unwanted_nodes.into_iter().take(deletable));
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    plan.create_on = replace_at_once;
    plan.create_on.extend(candidates.into_iter().take(room));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemonset::manage::tests::{NOW, daemon_pod};

    fn by_node(pods: &[Pod]) -> PodsByNode<'_> {
        let mut map = PodsByNode::new();
        for pod in pods {
            let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
            map.entry(node).or_default().push(pod);
        }
        map
    }

    fn old_everywhere(count: usize) -> Vec<Pod> {
        (0..count)
            .map(|i| {
                daemon_pod(
                    &format!("old-{i}"),
                    &format!("n{i}"),
                    "old",
                    100,
                    "Running",
                    true,
                )
            })
            .collect()
    }

    #[test]
    fn without_surge_at_most_max_unavailable_old_pods_go() {
        let pods = old_everywhere(5);
        let desired = ["n0", "n1", "n2", "n3", "n4"];
        let now = NOW.parse().unwrap();
        let step = plan(&desired, &by_node(&pods), "new", 0, 2, 0, now);
        assert_eq!(step.delete, ["old-0", "old-1"]);
        assert!(step.create_on.is_empty());

        // n0 has a new pod that is not available yet, n1 has none yet: both count.
        let mut pods = old_everywhere(5);
        pods[0] = daemon_pod("new-0", "n0", "new", 1, "Running", false);
        pods.remove(1);
        let step = plan(&desired, &by_node(&pods), "new", 0, 2, 0, now);
        assert!(step.delete.is_empty(), "two nodes are already unavailable");
        let step = plan(&desired, &by_node(&pods), "new", 0, 3, 0, now);
        assert_eq!(step.delete, ["old-2"]);

        // An old pod that is not available is replaced regardless.
        let mut pods = old_everywhere(3);
        pods[2] = daemon_pod("sick", "n2", "old", 100, "Running", false);
        let step = plan(&desired[..3], &by_node(&pods), "new", 0, 1, 0, now);
        assert_eq!(step.delete, ["sick", "old-0"]);
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones() {
        let desired = ["n0", "n1", "n2"];
        let now = NOW.parse().unwrap();
        let pods = old_everywhere(3);
        let step = plan(&desired, &by_node(&pods), "new", 1, 0, 0, now);
        assert_eq!(step.create_on, ["n0"]);
        assert!(step.delete.is_empty());

        let mut pods = old_everywhere(3);
        pods.push(daemon_pod("new-0", "n0", "new", 1, "Running", false));
        let step = plan(&desired, &by_node(&pods), "new", 1, 0, 0, now);
        assert_eq!(step, UpdatePlan::default(), "waiting for the surge pod");

        let mut pods = old_everywhere(3);
        pods.push(daemon_pod("new-0", "n0", "new", 1, "Running", true));
        let step = plan(&desired, &by_node(&pods), "new", 1, 0, 0, now);
        assert_eq!(step.delete, ["old-0"]);
        assert_eq!(step.create_on, ["n1"]);
    }
}

//! A DaemonSet's status from its nodes and pods (upstream's `updateDaemonSetStatus`): each
//! node that should run a pod counts once, by its oldest pod.

use super::eligibility::Placement;
use super::manage::{PodsByNode, by_age, is_updated};
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSetStatus;

/// The counts of the status; the caller adds `observedGeneration` and `collisionCount`.
pub fn calculate(
    nodes: &[(String, Placement)],
    pods: &PodsByNode,
    hash: &str,
    min_ready_seconds: i32,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut status = DaemonSetStatus::default();
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for (node, placement) in nodes {
        let on_node = pods.get(node).filter(|p| !p.is_empty());
        if !placement.should_run {
            status.number_misscheduled += i32::from(on_node.is_some());
            continue;
        }
        status.desired_number_scheduled += 1;
        let Some(on_node) = on_node else { continue };
        status.current_number_scheduled += 1;
        let oldest = on_node
            .iter()
            .min_by(|a, b| by_age(a, b))
            .expect("not empty");
        if podutil::is_ready(oldest) {
            ready += 1;
            if podutil::is_available(oldest, min_ready_seconds, now) {
                available += 1;
            }
        }
        if is_updated(oldest, hash) {
            updated += 1;
        }
    }
    // Upstream omits these three when they are 0.
    let non_zero = |n: i32| (n != 0).then_some(n);
    status.number_ready = ready;
    status.number_available = non_zero(available);
    status.updated_number_scheduled = non_zero(updated);
    status.number_unavailable = non_zero(status.desired_number_scheduled - available);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemonset::manage::tests::{NOW, daemon_pod};

    #[test]
    fn counts_nodes_by_their_oldest_pod() {
        let run = Placement {
            should_run: true,
            should_continue_running: true,
        };
        let excluded = Placement {
            should_run: false,
            should_continue_running: false,
        };
        let nodes = vec![
            ("ready-new".to_owned(), run),
            ("ready-old".to_owned(), run),
            ("starting".to_owned(), run),
            ("empty".to_owned(), run),
            ("misplaced".to_owned(), excluded),
            ("unselected".to_owned(), excluded),
        ];
        let pods = [
            daemon_pod("a", "ready-new", "new", 100, "Running", true),
            daemon_pod("b", "ready-old", "old", 100, "Running", true),
            daemon_pod("b2", "ready-old", "new", 5, "Running", false),
            daemon_pod("c", "starting", "new", 1, "Pending", false),
            daemon_pod("d", "misplaced", "new", 100, "Running", true),
        ];
        let mut by_node = PodsByNode::new();
        for pod in &pods {
            let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
            by_node.entry(node).or_default().push(pod);
        }
        let status = calculate(&nodes, &by_node, "new", 0, NOW.parse().unwrap());
        assert_eq!(status.desired_number_scheduled, 4);
        assert_eq!(status.current_number_scheduled, 3);
        assert_eq!(status.number_misscheduled, 1);
        assert_eq!(status.number_ready, 2);
        assert_eq!(status.number_available, Some(2));
        assert_eq!(status.updated_number_scheduled, Some(2));
        assert_eq!(status.number_unavailable, Some(2));
    }
}

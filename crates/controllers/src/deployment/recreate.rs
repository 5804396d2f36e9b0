//! The Recreate strategy (upstream's `recreate.go`): every old pod goes before any new pod is
//! created.

use super::sync::{Plan, Sync};
use super::util;
use k8s_openapi::api::apps::v1::ReplicaSet;
use std::collections::HashSet;

/// Plans one Recreate step (upstream's `rolloutRecreate`): scale the old ReplicaSets to 0;
/// once none of their pods is left (`rs_with_live_pods` holds the uids of ReplicaSets with
/// pods not in a terminal phase), create the new ReplicaSet and scale it to `spec.replicas`.
pub(super) fn rollout(mut sync: Sync, rs_with_live_pods: &HashSet<String>) -> Plan {
    let active_old: Vec<ReplicaSet> = sync
        .old()
        .filter(|rs| util::is_active(rs))
        .cloned()
        .collect();
    let mut scaled_down = false;
    for rs in active_old {
        scaled_down |= sync.scale_and_record(rs, 0);
    }
    if scaled_down || old_pods_running(&sync, rs_with_live_pods) {
        return sync.finish_rollout();
    }
    let new = match sync.new {
        Some(index) => index,
        None => sync.create_new_replica_set(),
    };
    let desired = sync.replicas();
    sync.scale_and_record(sync.replica_sets[new].clone(), desired);
    let status = sync.deployment.status.clone().unwrap_or_default();
    if super::progress::deployment_complete(&sync.deployment, &status) {
        sync.cleanup();
    }
    sync.finish_rollout()
}

/// Whether an old ReplicaSet still reports pods, or has any pod not in a terminal phase
/// (upstream's `oldPodsRunning`; terminating pods count).
fn old_pods_running(sync: &Sync, rs_with_live_pods: &HashSet<String>) -> bool {
    sync.old().any(|rs| {
        util::rs_actual(rs) > 0
            || rs
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| rs_with_live_pods.contains(uid))
    })
}

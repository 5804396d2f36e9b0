//! The RollingUpdate strategy (upstream's `rolling.go`): one step per sync — surge the new
//! ReplicaSet up within `replicas + maxSurge`, or else take old ReplicaSets down while at least
//! `replicas - maxUnavailable` pods stay available.

use super::sync::{Plan, Sync};
use super::util::{self, rs_available, rs_replicas};
use k8s_openapi::api::apps::v1::ReplicaSet;

/// Plans one RollingUpdate step (upstream's `rolloutRolling`).
pub(super) fn rollout(mut sync: Sync) -> Plan {
    let new = match sync.new {
        Some(index) => index,
        None => sync.create_new_replica_set(),
    };
    if reconcile_new_replica_set(&mut sync, new) {
        return sync.finish_rollout();
    }
    match reconcile_old_replica_sets(&mut sync, new) {
        Err(Invalid(name)) => {
            let failure = format!(
                "when cleaning up unhealthy replicas, got invalid request to scale down {name}: it has more available pods than replicas"
            );
            return sync.fail(failure);
        }
        Ok(true) => return sync.finish_rollout(),
        Ok(false) => {}
    }
    let status = sync.deployment.status.clone().unwrap_or_default();
    if super::progress::deployment_complete(&sync.deployment, &status) {
        sync.cleanup();
    }
    sync.finish_rollout()
}

/// Scales the new ReplicaSet towards `spec.replicas` as far as the surge allows, or down to
/// `spec.replicas` if it has more (upstream's `reconcileNewReplicaSet`); whether it scales.
fn reconcile_new_replica_set(sync: &mut Sync, new: usize) -> bool {
    let desired = sync.replicas();
    let new_rs = sync.replica_sets[new].clone();
    let target = match rs_replicas(&new_rs) {
        current if current == desired => return false,
        current if current > desired => desired,
        _ => util::new_rs_new_replicas(&sync.deployment, sync.replica_sets.iter(), &new_rs),
    };
    sync.scale_and_record(new_rs, target)
}

/// An old ReplicaSet (named) reports more available pods than it wants, which upstream refuses
/// to scale: the sync fails and is retried once the ReplicaSet's status catches up.
struct Invalid(String);

/// Scales old ReplicaSets down as far as availability allows (upstream's
/// `reconcileOldReplicaSets`): first the pods that are not available anyway, then available
/// ones down to `replicas - maxUnavailable`, counting the new ReplicaSet's missing pods as
/// unavailable. Whether anything scales.
fn reconcile_old_replica_sets(sync: &mut Sync, new: usize) -> Result<bool, Invalid> {
    let old: Vec<ReplicaSet> = sync
        .old()
        .filter(|rs| util::is_active(rs))
        .cloned()
        .collect();
    if util::total_replicas(&old) == 0 {
        return Ok(false);
    }
    let all_pods = util::total_replicas(&sync.replica_sets);
    let min_available = min_available(sync);
    let new_rs = &sync.replica_sets[new];
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(false);
    }
    let (old, cleaned_up) = cleanup_unhealthy_replicas(sync, old, max_scaled_down)?;
    let scaled_down = scale_down_for_rolling_update(sync, new, &old);
    Ok(cleaned_up + scaled_down > 0)
}

/// `spec.replicas - maxUnavailable`.
fn min_available(sync: &Sync) -> i32 {
    sync.replicas() - util::max_unavailable(&sync.deployment)
}

/// Takes up to `max_cleanup` unavailable pods off old ReplicaSets, oldest first (upstream's
/// `cleanupUnhealthyReplicas`): the ReplicaSet controller deletes not-ready pods first, so this
/// costs no availability and unblocks rollouts stuck on broken old pods. Returns the old
/// ReplicaSets as scaled and how many replicas went.
fn cleanup_unhealthy_replicas(
    sync: &mut Sync,
    mut old: Vec<ReplicaSet>,
    max_cleanup: i32,
) -> Result<(Vec<ReplicaSet>, i32), Invalid> {
    let mut total = 0;
    for rs in &mut old {
        if total >= max_cleanup {
            break;
        }
        let (replicas, available) = (rs_replicas(rs), rs_available(rs));
        if replicas == 0 || replicas == available {
            continue;
        }
        if replicas < available {
            return Err(Invalid(rs.metadata.name.clone().unwrap_or_default()));
        }
        let count = (max_cleanup - total).min(replicas - available);
        sync.scale_and_record(rs.clone(), replicas - count);
        rs.spec.get_or_insert_default().replicas = Some(replicas - count);
        total += count;
    }
    Ok((old, total))
}

/// Scales old ReplicaSets down, oldest first, by as many pods as are available beyond
/// `replicas - maxUnavailable` (upstream's `scaleDownOldReplicaSetsForRollingUpdate`); how
/// many replicas went.
fn scale_down_for_rolling_update(sync: &mut Sync, new: usize, old: &[ReplicaSet]) -> i32 {
    let min_available = min_available(sync);
    let available: i32 = old
        .iter()
        .chain([&sync.replica_sets[new]])
        .map(rs_available)
        .sum();
    if available <= min_available {
        return 0;
    }
    let budget = available - min_available;
    let mut total = 0;
    for rs in old {
        if total >= budget {
            break;
        }
        let replicas = rs_replicas(rs);
        if replicas == 0 {
            continue;
        }
        let count = replicas.min(budget - total);
        sync.scale_and_record(rs.clone(), replicas - count);
        total += count;
    }
    total
}

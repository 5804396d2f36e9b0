//! A Deployment's status and conditions, as upstream's `progress.go`, `calculateStatus` and
//! the condition helpers of `deployment_util.go`: the counts summed over its ReplicaSets, the
//! Available condition, and the Progressing condition that reports progress, completion and
//! missed deadlines.

use super::util::{self, rs_actual, rs_available};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// The condition type that reports whether the rollout makes progress.
pub const PROGRESSING: &str = "Progressing";
/// The condition type that reports whether enough pods are available.
pub const AVAILABLE: &str = "Available";
/// The condition type copied from a ReplicaSet that failed to create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Progressing: a ReplicaSet was scaled in the rollout.
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing: the new ReplicaSet could not be created.
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
/// Progressing: the new ReplicaSet was created.
pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
/// Progressing: an existing ReplicaSet was found to be the new one.
pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
/// Progressing: the rollout completed.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing: no progress within `progressDeadlineSeconds`.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing: the Deployment is paused, so progress is not estimated.
pub const PAUSED: &str = "DeploymentPaused";
/// Progressing: the Deployment was resumed, which restarts the deadline.
pub const RESUMED: &str = "DeploymentResumed";
/// Available: at least `replicas - maxUnavailable` pods are available.
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Available: fewer than `replicas - maxUnavailable` pods are available.
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// A condition that changed at `now` (upstream's `NewDeploymentCondition`).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of that type, if any.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn reason(condition: &DeploymentCondition) -> &str {
    condition.reason.as_deref().unwrap_or_default()
}

/// Sets a condition as upstream's `SetDeploymentCondition`: nothing changes when one with the
/// same status and reason exists; the transition time is kept when only the reason changes;
/// the condition moves to the end of the list.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = self::condition(status, &condition.type_) {
        if current.status == condition.status && reason(current) == reason(&condition) {
            return;
        }
        if current.status == condition.status {
            condition
                .last_transition_time
                .clone_from(&current.last_transition_time);
        }
    }
    remove_condition(status, &condition.type_);
    status.conditions.get_or_insert_default().push(condition);
}

/// Removes the condition of that type; an emptied list is absent, as upstream serializes it.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
    status.conditions.take_if(|c| c.is_empty());
}

/// Whether the Deployment reports ProgressDeadlineExceeded (upstream's `HasProgressDeadline`):
/// a deadline is set and is not MaxInt32.
pub fn has_progress_deadline(deployment: &Deployment) -> bool {
    progress_deadline(deployment).is_some()
}

fn progress_deadline(deployment: &Deployment) -> Option<i32> {
    deployment
        .spec
        .as_ref()?
        .progress_deadline_seconds
        .filter(|&seconds| seconds != i32::MAX)
}

/// Upstream's omitted-when-zero counts.
fn count(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The status the ReplicaSets give the Deployment (upstream's `calculateStatus`): counts over
/// all its ReplicaSets, the conditions it had, and the Available condition brought up to date.
pub fn calculate_status<'a>(
    deployment: &Deployment,
    all: impl IntoIterator<Item = &'a ReplicaSet> + Clone,
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSet) -> i32| all.clone().into_iter().map(f).sum::<i32>();
    let available = sum(rs_available);
    let unavailable = (sum(util::rs_replicas) - available).max(0);
    let previous = deployment.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation.filter(|&g| g != 0),
        replicas: count(sum(rs_actual)),
        updated_replicas: count(new.map_or(0, rs_actual)),
        ready_replicas: count(sum(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })),
        available_replicas: count(available),
        unavailable_replicas: count(unavailable),
        terminating_replicas: terminating_replicas(all.clone()),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
    };
    let minimum = util::replicas(deployment) - util::max_unavailable(deployment);
    let availability = if available >= minimum {
        new_condition(
            AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, availability);
    status
}

/// The pods of the ReplicaSets that are being deleted; unknown when a ReplicaSet does not
/// report its own (upstream's `GetTerminatingReplicaCountForReplicaSets`).
fn terminating_replicas<'a>(all: impl IntoIterator<Item = &'a ReplicaSet>) -> Option<i32> {
    all.into_iter()
        .map(|rs| rs.status.as_ref().and_then(|s| s.terminating_replicas))
        .sum()
}

/// Whether every replica is updated and available and no old pod remains, for the current
/// generation (upstream's `DeploymentComplete`).
pub fn deployment_complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = util::replicas(deployment);
    status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the Deployment's current status (upstream's
/// `DeploymentProgressing`): more updated, ready or available pods, or fewer old ones.
pub fn deployment_progressing(deployment: &Deployment, new: &DeploymentStatus) -> bool {
    let old = deployment.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old_replicas = n(old.replicas) - n(old.updated_replicas);
    let new_old_replicas = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old_replicas < old_old_replicas
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Whether the rollout has made no progress for `progressDeadlineSeconds` (upstream's
/// `DeploymentTimedOut`), judged from the Progressing condition's last update.
pub fn deployment_timed_out(
    deployment: &Deployment,
    status: &DeploymentStatus,
    now: Timestamp,
) -> bool {
    let (Some(deadline), Some(progressing)) = (
        progress_deadline(deployment),
        condition(status, PROGRESSING),
    ) else {
        return false;
    };
    match reason(progressing) {
        // A completed rollout may look stale before the cache shows the next one's start.
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => progressing
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(deadline)) < now),
    }
}

/// The status to write after a rollout step (upstream's `syncRolloutStatus`): the calculated
/// status with the Progressing condition estimated — complete, progressing, or timed out —
/// and the ReplicaSets' failures copied. With when to look again at a rollout that might still
/// time out, when there is nothing to write.
pub fn rollout_status(
    deployment: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let mut status = calculate_status(deployment, all.iter().copied(), new, now);
    if !has_progress_deadline(deployment) {
        remove_condition(&mut status, PROGRESSING);
    }
    let current_status = deployment.status.clone().unwrap_or_default();
    let current = condition(&current_status, PROGRESSING);
    // A finished rollout that is only being resynced needs no estimate.
    let complete_already = status.replicas == status.updated_replicas
        && current.is_some_and(|c| reason(c) == NEW_RS_AVAILABLE);
    if has_progress_deadline(deployment) && !complete_already {
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        let subject = match new {
            Some(rs) => format!(
                "ReplicaSet {:?}",
                rs.metadata.name.as_deref().unwrap_or_default()
            ),
            None => format!("Deployment {name:?}"),
        };
        if deployment_complete(deployment, &status) {
            let message = format!("{subject} has successfully progressed.");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now),
            );
        } else if deployment_progressing(deployment, &status) {
            // Progress refreshes lastUpdateTime even under the same reason, which the
            // setter would not do, so the old condition is replaced here.
            let mut progressing = new_condition(
                PROGRESSING,
                "True",
                REPLICA_SET_UPDATED,
                format!("{subject} is progressing."),
                now,
            );
            if let Some(current) = current.filter(|c| c.status == "True") {
                progressing
                    .last_transition_time
                    .clone_from(&current.last_transition_time);
            }
            remove_condition(&mut status, PROGRESSING);
            set_condition(&mut status, progressing);
        } else if deployment_timed_out(deployment, &status, now) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "False", TIMED_OUT, message, now),
            );
        }
    }
    match replica_failure(all, new) {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    if status == current_status {
        let requeue = stuck_requeue(deployment, &status, now);
        return (status, requeue);
    }
    (status, None)
}

/// The ReplicaFailure condition of the new ReplicaSet, else of any ReplicaSet, as a Deployment
/// condition (upstream's `getReplicaFailures` and `ReplicaSetToDeploymentCondition`).
fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    new.into_iter()
        .chain(all.iter().copied())
        .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
        .find(|c| c.type_ == REPLICA_FAILURE)
        .map(|c| DeploymentCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
}

/// When to look at a rollout again to see whether it timed out (upstream's
/// `requeueStuckDeployment`): at the deadline plus a second against clock skew; never for
/// complete, timed-out or deadline-less rollouts. Upstream retries with the queue's back-off
/// when less than a second is left; a second is the floor here, so that a rollout stuck past
/// a deadline it does not count (its condition says it completed before) is not synced in a
/// tight loop.
pub fn stuck_requeue(
    deployment: &Deployment,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = progress_deadline(deployment)?;
    let current_status = deployment.status.clone().unwrap_or_default();
    let current = condition(&current_status, PROGRESSING)?;
    if deployment_complete(deployment, status) || reason(current) == TIMED_OUT {
        return None;
    }
    let last_update = current.last_update_time.as_ref()?.0;
    let left = (last_update + SignedDuration::from_secs(i64::from(deadline))).duration_since(now);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(left + Duration::from_secs(1))
}

/// The Deployment's status after checking its paused state (upstream's
/// `checkPausedConditions`): Progressing becomes Unknown/DeploymentPaused when paused and
/// Unknown/DeploymentResumed when resumed, so time spent paused never counts against the
/// deadline; a ProgressDeadlineExceeded report is left alone.
pub fn check_paused_conditions(deployment: &mut Deployment, now: Timestamp) {
    if !has_progress_deadline(deployment) {
        return;
    }
    let paused = deployment
        .spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false);
    let status = deployment.status.get_or_insert_default();
    let current = condition(status, PROGRESSING).map(reason);
    if current == Some(TIMED_OUT) {
        return;
    }
    let paused_condition_exists = current == Some(PAUSED);
    if paused && !paused_condition_exists {
        let paused = new_condition(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        );
        set_condition(status, paused);
    } else if !paused && paused_condition_exists {
        let resumed = new_condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed".into(),
            now,
        );
        set_condition(status, resumed);
    }
}

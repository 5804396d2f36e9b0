//! One sync of a StatefulSet as a plan (upstream's `defaultStatefulSetControl.updateStatefulSet`):
//! which pods to create, fix or delete, in order, and the status the set should then report.
//!
//! Under `OrderedReady` the plan stops where upstream's sync returns: at the first pod created,
//! or at the first pod that is not yet Running, Ready and available; scale-down and updates
//! delete one pod per sync from the highest ordinal. `Parallel` takes every step at once.

use super::identity::{self, member_ordinal, new_pod, start_ordinal};
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};

/// The label naming the revision a StatefulSet pod was made from (the revision's full name).
pub use crate::history::REVISION_HASH_LABEL as REVISION_LABEL;

/// The set's current and update revisions: their names and the templates they record.
pub struct Revisions<'a> {
    /// `status.currentRevision`: what pods below the partition are made from.
    pub current: (&'a str, &'a PodTemplateSpec),
    /// The revision of the set's template now.
    pub update: (&'a str, &'a PodTemplateSpec),
}

/// One step of a sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod's missing claims, then the pod.
    CreatePod(Box<Pod>),
    /// Create the missing claims of a pending pod (a claim deleted under it comes back).
    CreateMissingClaims {
        /// The pod.
        pod: String,
        /// Its ordinal.
        ordinal: i32,
    },
    /// Delete the pod: failed, condemned by a scale-down, or outdated.
    DeletePod(String),
    /// Put the identity labels back on the pod.
    FixIdentity {
        /// The pod.
        pod: String,
        /// Its ordinal.
        ordinal: i32,
    },
    /// Make the owner references of the pod's claims follow the retention policy.
    SyncClaimOwners {
        /// The pod.
        pod: String,
        /// Its ordinal.
        ordinal: i32,
        /// Whether the pod is condemned by a scale-down.
        condemned: bool,
    },
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Created pods have a phase; a planned one has none yet.
fn is_created(pod: &Pod) -> bool {
    phase(pod).is_some()
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && podutil::is_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    is_running_and_ready(pod)
        && (min_ready_seconds <= 0 || podutil::is_available(pod, min_ready_seconds, now))
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// The revision label of the pod.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The status counts over `pods` (upstream's `computeReplicaStatus`).
fn count(
    status: &mut StatefulSetStatus,
    pods: &[&Pod],
    revisions: &Revisions,
    min_ready_seconds: i32,
    now: Timestamp,
) {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready_seconds, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = revision_of(pod);
            current += i32::from(revision == Some(revisions.current.0));
            updated += i32::from(revision == Some(revisions.update.0));
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
}

/// The plan of one sync over the set's member `pods`, and the status to report.
pub fn plan(
    set: &StatefulSet,
    revisions: &Revisions,
    pods: &[&Pod],
    now: Timestamp,
) -> (Vec<Action>, StatefulSetStatus) {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
    let start = start_ordinal(set);
    let replica_count = identity::replicas(set).max(0);
    let end = start + replica_count; // exclusive
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy
        .type_
        .as_deref()
        .is_none_or(|t| t == "RollingUpdate");
    let partition = strategy
        .rolling_update
        .as_ref()
        .map(|r| r.partition.unwrap_or(0));
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");

    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(revisions.current.0.to_owned()),
        update_revision: Some(revisions.update.0.to_owned()),
        collision_count: Some(
            set.status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0),
        ),
        ..Default::default()
    };

    // Slots in range by ordinal, each filled with the pod there or a new one to create.
    let mut slots: Vec<Option<&Pod>> = vec![None; replica_count as usize];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for &pod in pods {
        match member_ordinal(set, pod) {
            Some(ordinal) if (start..end).contains(&ordinal) => {
                slots[(ordinal - start) as usize] = Some(pod);
            }
            Some(ordinal) => condemned.push((ordinal, pod)),
            None => {}
        }
    }
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let planned: Vec<Pod> = (start..end)
        .filter(|o| slots[(o - start) as usize].is_none())
        .map(|ordinal| {
            // Below the partition (or, without one, the pods not yet updated) stay current.
            let stays_current = rolling
                && match partition {
                    Some(partition) => ordinal < start + partition,
                    None => ordinal < start + current_replicas,
                };
            let (revision, template) = if stays_current {
                revisions.current
            } else {
                revisions.update
            };
            let mut pod = new_pod(set, template, ordinal);
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(REVISION_LABEL.into(), revision.to_owned());
            pod
        })
        .collect();
    let mut planned_iter = planned.iter();
    let replicas: Vec<(i32, &Pod)> = (start..end)
        .map(|ordinal| {
            let pod = slots[(ordinal - start) as usize]
                .unwrap_or_else(|| planned_iter.next().expect("one planned pod per empty slot"));
            (ordinal, pod)
        })
        .collect();
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));

    let first_unhealthy = replicas
        .iter()
        .chain(condemned.iter().rev())
        .find(|(_, p)| !is_healthy(p))
        .map(|(_, p)| name(p));

    let all: Vec<&Pod> = replicas
        .iter()
        .chain(condemned.iter())
        .map(|(_, p)| *p)
        .collect();
    count(&mut status, &all, revisions, min_ready_seconds, now);

    let mut actions = Vec::new();
    if set.metadata.deletion_timestamp.is_some() {
        return (actions, status);
    }

    // Living replicas, in ascending order.
    for &(ordinal, pod) in &replicas {
        if matches!(phase(pod), Some("Failed" | "Succeeded")) {
            if !is_terminating(pod) {
                actions.push(Action::DeletePod(name(pod)));
            }
            // The pod is recreated once it is gone; nothing more can happen in this sync.
            return (actions, status);
        }
        if !is_created(pod) {
            actions.push(Action::CreatePod(Box::new(pod.clone())));
            if monotonic {
                return (actions, status);
            }
            continue;
        }
        if phase(pod) == Some("Pending") {
            actions.push(Action::CreateMissingClaims {
                pod: name(pod),
                ordinal,
            });
        }
        if monotonic
            && (is_terminating(pod) || !is_running_and_available(pod, min_ready_seconds, now))
        {
            return (actions, status);
        }
        if !identity::identity_matches(set, pod) {
            actions.push(Action::FixIdentity {
                pod: name(pod),
                ordinal,
            });
        }
        actions.push(Action::SyncClaimOwners {
            pod: name(pod),
            ordinal,
            condemned: false,
        });
    }
    for &(ordinal, pod) in &condemned {
        actions.push(Action::SyncClaimOwners {
            pod: name(pod),
            ordinal,
            condemned: true,
        });
    }

    // Scale-down from the highest ordinal; under OrderedReady one healthy pod at a time.
    for &(_, pod) in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return (actions, status);
            }
            continue;
        }
        let first_unhealthy = first_unhealthy.as_deref() == Some(name(pod).as_str());
        if monotonic && !is_running_and_available(pod, min_ready_seconds, now) && !first_unhealthy {
            return (actions, status);
        }
        actions.push(Action::DeletePod(name(pod)));
        if monotonic {
            return (actions, status);
        }
    }

    if !rolling {
        return (actions, status);
    }
    // Rolling update: the highest outdated pod at or above the partition goes; unhealthy pods
    // in that range hold the update.
    let lowest = partition.unwrap_or(0).max(0) as usize;
    for &(_, pod) in replicas.iter().skip(lowest).rev() {
        if revision_of(pod) != Some(revisions.update.0) && !is_terminating(pod) {
            actions.push(Action::DeletePod(name(pod)));
            status.current_replicas = status.current_replicas.map(|c| c - 1);
            return (actions, status);
        }
        if !is_healthy(pod) {
            return (actions, status);
        }
    }
    (actions, status)
}

/// Finishes a rolling update in the status once every pod is updated and ready (upstream's
/// `completeRollingUpdate`).
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn set(replicas: i32, extra: serde_json::Value) -> StatefulSet {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 2},
            "spec": {
                "serviceName": "nginx",
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                             "spec": {"containers": [{"name": "c", "image": "v2"}]}}
            }
        });
        if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    fn template() -> PodTemplateSpec {
        PodTemplateSpec::default()
    }

    /// A pod of ordinal `ordinal` from `revision`, in `phase`, ready when `ready`.
    fn pod(ordinal: i32, revision: &str, phase: &str, ready: bool) -> Pod {
        let set = set(0, json!({}));
        let mut pod = new_pod(&set, &template(), ordinal);
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(REVISION_LABEL.into(), revision.into());
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn run(set: &StatefulSet, pods: &[Pod]) -> (Vec<String>, StatefulSetStatus) {
        let t = template();
        let revisions = Revisions {
            current: ("web-1", &t),
            update: ("web-2", &t),
        };
        let refs: Vec<&Pod> = pods.iter().collect();
        let (actions, status) = plan(set, &revisions, &refs, Timestamp::now());
        let described = actions
            .iter()
            .map(|a| match a {
                Action::CreatePod(p) => format!("create {}", name(p)),
                Action::CreateMissingClaims { pod, .. } => format!("claims {pod}"),
                Action::DeletePod(p) => format!("delete {p}"),
                Action::FixIdentity { pod, .. } => format!("fix {pod}"),
                Action::SyncClaimOwners { pod, .. } => format!("owners {pod}"),
            })
            .collect();
        (described, status)
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time() {
        let web = set(3, json!({}));
        assert_eq!(run(&web, &[]).0, ["create web-0"]);
        let starting = [pod(0, "web-2", "Pending", false)];
        assert_eq!(run(&web, &starting).0, ["claims web-0"]);
        let running = [pod(0, "web-2", "Running", true)];
        assert_eq!(run(&web, &running).0, ["owners web-0", "create web-1"]);
    }

    #[test]
    fn parallel_creates_every_pod() {
        let web = set(3, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(
            run(&web, &[]).0,
            ["create web-0", "create web-1", "create web-2"]
        );
    }

    #[test]
    fn failed_pods_are_deleted_to_be_recreated() {
        let web = set(2, json!({}));
        let pods = [pod(0, "web-2", "Failed", false)];
        assert_eq!(run(&web, &pods).0, ["delete web-0"]);
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let web = set(1, json!({}));
        let pods = [
            pod(0, "web-2", "Running", true),
            pod(1, "web-2", "Running", true),
            pod(2, "web-2", "Running", true),
        ];
        let (actions, status) = run(&web, &pods);
        assert_eq!(
            actions,
            [
                "owners web-0",
                "owners web-2",
                "owners web-1",
                "delete web-2"
            ]
        );
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.current_replicas, Some(0));
    }

    #[test]
    fn an_unhealthy_condemned_pod_blocks_unless_it_is_the_first_unhealthy() {
        let web = set(1, json!({}));
        let pods = [
            pod(0, "web-2", "Running", true),
            pod(1, "web-2", "Running", false),
            pod(2, "web-2", "Running", false),
        ];
        // web-1 is the first unhealthy pod; web-2 (scaled down first) is not, so it blocks.
        let actions = run(&web, &pods).0;
        assert_eq!(actions.last().unwrap(), "owners web-1");
        let pods = [
            pod(0, "web-2", "Running", true),
            pod(1, "web-2", "Running", false),
        ];
        assert_eq!(run(&web, &pods).0.last().unwrap(), "delete web-1");
    }

    #[test]
    fn rolling_updates_go_from_the_top_down_to_the_partition() {
        let web = set(3, json!({}));
        let old = [
            pod(0, "web-1", "Running", true),
            pod(1, "web-1", "Running", true),
            pod(2, "web-1", "Running", true),
        ];
        let (actions, status) = run(&web, &old);
        assert_eq!(actions.last().unwrap(), "delete web-2");
        assert_eq!(status.current_replicas, Some(2));

        let partitioned = set(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 2}}}),
        );
        let half = [
            pod(0, "web-1", "Running", true),
            pod(1, "web-1", "Running", true),
            pod(2, "web-2", "Running", true),
        ];
        assert!(
            !run(&partitioned, &half)
                .0
                .iter()
                .any(|a| a.starts_with("delete")),
            "below the partition pods stay"
        );
        // A missing pod below the partition comes back at the current revision.
        let (actions, _) = {
            let t = template();
            let revisions = Revisions {
                current: ("web-1", &t),
                update: ("web-2", &t),
            };
            let refs: Vec<&Pod> = vec![&half[0], &half[2]];
            plan(&partitioned, &revisions, &refs, Timestamp::now())
        };
        let Action::CreatePod(created) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert_eq!(created.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(revision_of(created), Some("web-1"));

        let on_delete = set(3, json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(
            !run(&on_delete, &old)
                .0
                .iter()
                .any(|a| a.starts_with("delete"))
        );
    }

    #[test]
    fn a_finished_rolling_update_becomes_current() {
        let web = set(2, json!({}));
        let pods = [
            pod(0, "web-2", "Running", true),
            pod(1, "web-2", "Running", true),
        ];
        let (_, mut status) = run(&web, &pods);
        assert_eq!(status.current_revision.as_deref(), Some("web-1"));
        complete_rolling_update(&web, &mut status);
        assert_eq!(status.current_revision.as_deref(), Some("web-2"));
        assert_eq!(status.current_replicas, Some(2));
    }
}

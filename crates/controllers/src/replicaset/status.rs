//! A ReplicaSet's status, from the pods it controls (upstream's `replica_set_utils.go`).

use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition type that reports failed creates or deletes.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What went wrong while creating or deleting pods in the last sync.
#[derive(Clone, Debug, PartialEq)]
pub enum ManageError {
    /// Too few pods, and creating more failed.
    Create(String),
    /// Too many pods, and deleting some failed.
    Delete(String),
}

/// The status `rs` should have, given the active pods it controls and the error of the last
/// attempt to create or delete pods (upstream's `calculateStatus`).
pub fn calculate(
    rs: &ReplicaSet,
    pods: &[&Pod],
    manage_error: Option<&ManageError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready_seconds = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let fully_labeled = |pod: &Pod| {
        template_labels.is_none_or(|wanted| {
            let labels = pod.metadata.labels.as_ref();
            wanted
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
    };
    let count = |keep: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| keep(p)).count() as i32;

    let old = rs.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let failure = conditions.iter().position(|c| c.type_ == REPLICA_FAILURE);
    match (manage_error, failure) {
        (Some(error), None) => {
            let (reason, message) = match error {
                ManageError::Create(m) => ("FailedCreate", m),
                ManageError::Delete(m) => ("FailedDelete", m),
            };
            conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.clone()),
                last_transition_time: Some(Time(now)),
            });
        }
        (None, Some(index)) => {
            conditions.remove(index);
        }
        _ => {}
    }

    ReplicaSetStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: Some(count(&fully_labeled)),
        ready_replicas: Some(count(&podutil::is_ready)),
        available_replicas: Some(count(&|p| podutil::is_available(p, min_ready_seconds, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn pod(pod_labels: &[(&str, &str)], ready_for_secs: Option<i64>, now: Timestamp) -> Pod {
        let conditions = ready_for_secs.map(|secs| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(now - jiff::SignedDuration::from_secs(secs))),
                ..Default::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                labels: labels(pod_labels),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn counts_labeled_ready_and_available_pods() {
        let now = Timestamp::now();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(10),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("app", "web"), ("tier", "front")]),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        };
        let pods = [
            pod(&[("app", "web"), ("tier", "front")], Some(60), now),
            pod(&[("app", "web"), ("tier", "front")], Some(5), now),
            pod(&[("app", "web")], None, now),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = calculate(&rs, &refs, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.conditions, None);
    }

    #[test]
    fn replica_failure_is_set_once_and_cleared_after_success() {
        let now = Timestamp::now();
        let mut rs = ReplicaSet::default();
        let error = ManageError::Create("pods \"x\" is forbidden: exceeded quota".into());
        let status = calculate(&rs, &[], Some(&error), now);
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(condition.type_, "ReplicaFailure");
        assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(condition.status, "True");

        rs.status = Some(status.clone());
        let later = now + jiff::SignedDuration::from_secs(5);
        let again = calculate(&rs, &[], Some(&ManageError::Delete("x".into())), later);
        assert_eq!(
            again.conditions, status.conditions,
            "an existing failure is kept"
        );

        let cleared = calculate(&rs, &[], None, later);
        assert_eq!(cleared.conditions, None);
    }
}

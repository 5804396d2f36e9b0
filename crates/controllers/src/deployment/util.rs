//! What the Deployment controller's planners share, as upstream's
//! `pkg/controller/deployment/util`: the rollout's fenceposts (maxSurge / maxUnavailable), the
//! pod-template-hash, the annotations kept on ReplicaSets, and which ReplicaSet is "new".

use crate::{hash, intstr};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The revision of a ReplicaSet (and, copied, of its Deployment): the rollout sequence number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet served before it was rolled back to, comma separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last wrote the ReplicaSet; a Deployment whose
/// replicas differ from an active ReplicaSet's is being scaled, not rolled out.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the Deployment last wrote the ReplicaSet: the base of
/// proportional scaling.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The legacy server-side rollback request (`extensions/v1beta1` `rollbackTo`).
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// kubectl's record of the last applied configuration.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The label that tells the ReplicaSets (and pods) of one Deployment apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Upstream's `maxRevHistoryLengthInChars`: the revision-history annotation is trimmed from the
/// front to stay within it.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations the controller never copies onto its ReplicaSets (upstream's
/// `annotationsToSkip`): its own bookkeeping and kubectl's apply record.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// `spec.replicas` of a Deployment (defaulted to 1 by the API server).
pub fn replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (defaulted to 1 by the API server).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// `status.replicas` of a ReplicaSet: its pods that exist and are not terminating.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// Whether the ReplicaSet is meant to have pods (upstream's `FilterActiveReplicaSets`).
pub fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// The sum of `spec.replicas` (upstream's `GetReplicaCountForReplicaSets`).
pub fn total_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

/// Whether the Deployment rolls with the RollingUpdate strategy (the API's default).
pub fn is_rolling_update(deployment: &Deployment) -> bool {
    strategy_type(deployment) != "Recreate"
}

/// `spec.strategy.type`, RollingUpdate when absent.
pub fn strategy_type(deployment: &Deployment) -> &str {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// Resolves maxSurge (rounded up) and maxUnavailable (rounded down) against `desired` replicas
/// (upstream's `ResolveFenceposts`). When both come to 0, maxUnavailable is 1: validation
/// forbids both being literally 0, but rounding down can still get there, and surging might be
/// impossible (quota), so the rollout proceeds by taking one pod down at a time.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let resolve = |value: Option<&IntOrString>, round_up| {
        value.map_or(Some(0), |v| intstr::scaled_value(v, desired, round_up))
    };
    let surge = resolve(max_surge, true).unwrap_or(0);
    let unavailable = resolve(max_unavailable, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The Deployment's resolved `(maxSurge, maxUnavailable)`; `None` for Recreate.
fn fenceposts(deployment: &Deployment) -> Option<(i32, i32)> {
    if !is_rolling_update(deployment) {
        return None;
    }
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    Some(resolve_fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas(deployment),
    ))
}

/// How many pods above `spec.replicas` a rollout may run (upstream's `MaxSurge`); 0 for
/// Recreate.
pub fn max_surge(deployment: &Deployment) -> i32 {
    fenceposts(deployment).map_or(0, |(surge, _)| surge)
}

/// How many of `spec.replicas` may be unavailable during a rollout (upstream's
/// `MaxUnavailable`), at most `spec.replicas`; 0 for Recreate and for 0 replicas.
pub fn max_unavailable(deployment: &Deployment) -> i32 {
    let desired = replicas(deployment);
    match fenceposts(deployment) {
        Some((_, unavailable)) if desired > 0 => unavailable.min(desired),
        _ => 0,
    }
}

/// The pod-template-hash of a template (upstream's `controller.ComputeHash`), which moves to
/// another value when the Deployment's `status.collisionCount` is raised.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    hash::compute_hash(template, collision_count)
}

/// The template with the pod-template-hash label removed and empty maps as absent ones, which
/// upstream's semantic equality does not tell apart.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        meta.labels.take_if(|labels| labels.is_empty());
        meta.annotations
            .take_if(|annotations| annotations.is_empty());
    }
    template
}

/// Whether two templates are equal but for their pod-template-hash labels (upstream's
/// `EqualIgnoreHash`): a Deployment's template never carries the label, its ReplicaSets' do.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The template of a Deployment or ReplicaSet (always present on served objects).
pub fn template_of_deployment(deployment: &Deployment) -> PodTemplateSpec {
    deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// The template of a ReplicaSet.
fn template_of_rs(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref().and_then(|s| s.template.as_ref())
}

/// The ordering of upstream's `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The ordering of upstream's `ReplicaSetsByRevision`: lowest revision first; ties and
/// unreadable revisions by creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(&a.metadata), revision(&b.metadata)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

/// Of the Deployment's ReplicaSets, sorted by [`by_creation`], the index of the "new" one:
/// the oldest whose template equals the Deployment's (upstream's `FindNewReplicaSet`; there can
/// be more than one after upgrades changed defaults).
pub fn find_new_replica_set(deployment: &Deployment, sorted: &[ReplicaSet]) -> Option<usize> {
    let template = template_of_deployment(deployment);
    sorted
        .iter()
        .position(|rs| template_of_rs(rs).is_some_and(|t| equal_ignoring_hash(t, &template)))
}

/// The revision recorded on an object: 0 without the annotation, `None` when unreadable
/// (upstream's `Revision`).
pub fn revision(meta: &ObjectMeta) -> Option<i64> {
    match annotation(meta, REVISION_ANNOTATION) {
        None => Some(0),
        Some(value) => value.parse().ok(),
    }
}

/// The highest readable revision among `rss` (upstream's `MaxRevision`).
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(|rs| revision(&rs.metadata))
        .max()
        .unwrap_or(0)
        .max(0)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// An integer annotation of a ReplicaSet (upstream's `getIntFromAnnotation`).
fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// The desired-replicas annotation of a ReplicaSet.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// The max-replicas annotation of a ReplicaSet.
pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, MAX_REPLICAS_ANNOTATION)
}

/// The values the desired- and max-replicas annotations should have for `deployment`.
fn replicas_annotations(deployment: &Deployment) -> [(&'static str, String); 2] {
    let desired = replicas(deployment);
    [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (
            MAX_REPLICAS_ANNOTATION,
            (desired + max_surge(deployment)).to_string(),
        ),
    ]
}

/// Whether the ReplicaSet's desired- and max-replicas annotations are out of date (upstream's
/// `ReplicasAnnotationsNeedUpdate`).
pub fn replicas_annotations_need_update(rs: &ReplicaSet, deployment: &Deployment) -> bool {
    replicas_annotations(deployment)
        .iter()
        .any(|(key, value)| annotation(&rs.metadata, key) != Some(value))
}

/// Writes the desired- and max-replicas annotations (upstream's `SetReplicasAnnotations`);
/// whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, deployment: &Deployment) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in replicas_annotations(deployment) {
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// Brings the new ReplicaSet's annotations up to date (upstream's
/// `SetNewReplicaSetAnnotations`): copies the Deployment's annotations but the skipped ones,
/// raises its revision to `new_revision` when lower (a rollback: the old number goes to the
/// revision history), and, for a ReplicaSet about to be created, sets the replicas
/// annotations. Whether anything changed.
pub fn set_new_replica_set_annotations(
    deployment: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in deployment.metadata.annotations.iter().flatten() {
        if !skip_copy_annotation(key) && annotations.get(key) != Some(value) {
            annotations.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    let old_revision = annotations.get(REVISION_ANNOTATION).cloned();
    let old_number = match old_revision.as_deref() {
        None => 0,
        Some(value) => match value.parse::<i64>() {
            Ok(number) => number,
            // Upstream leaves a ReplicaSet with an unreadable revision alone.
            Err(_) => return false,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old_revision {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .map(String::as_str)
                .unwrap_or_default();
            if let Some(history) = append_revision_history(history, &old) {
                annotations.insert(REVISION_HISTORY_ANNOTATION.to_owned(), history);
            }
        }
    }
    if !exists && set_replicas_annotations(rs, deployment) {
        changed = true;
    }
    changed
}

/// `history` (a comma list) with `revision` appended, dropping the oldest entries to stay
/// within [`MAX_REVISION_HISTORY_CHARS`]; `None` when even that cannot make it fit.
fn append_revision_history(history: &str, revision: &str) -> Option<String> {
    if history.is_empty() {
        return Some(revision.to_owned());
    }
    let entries: Vec<&str> = history.split(',').collect();
    let mut length = history.len() + revision.len() + 1;
    let mut start = 0;
    while length > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
        length -= entries[start].len() + 1;
        start += 1;
    }
    (length <= MAX_REVISION_HISTORY_CHARS).then(|| {
        let mut kept = entries[start..].to_vec();
        kept.push(revision);
        kept.join(",")
    })
}

/// Sets the Deployment's revision annotation (upstream's `SetDeploymentRevision`); whether it
/// changed.
pub fn set_deployment_revision(deployment: &mut Deployment, revision: &str) -> bool {
    let annotations = deployment
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_owned());
    true
}

/// The revision a legacy rollback asks for (upstream's `getRollbackTo`): the
/// [`ROLLBACK_TO_ANNOTATION`], `None` without it or when unreadable.
pub fn rollback_to(deployment: &Deployment) -> Option<i64> {
    annotation(&deployment.metadata, ROLLBACK_TO_ANNOTATION)?
        .parse()
        .ok()
}

/// The second-highest readable revision among `rss`, the one before the current (upstream's
/// `LastRevision`); 0 when there is none.
pub fn last_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    let (mut max, mut second) = (0, 0);
    for revision in rss.into_iter().filter_map(|rs| revision(&rs.metadata)) {
        if revision >= max {
            (max, second) = (revision, max);
        } else if revision > second {
            second = revision;
        }
    }
    second
}

/// Rolls the Deployment's template and annotations back to those of `rs` (upstream's
/// `SetFromReplicaSetTemplate` and `SetDeploymentAnnotationsTo`): the template without the
/// pod-template-hash label; the Deployment keeps its skipped annotations and takes all others
/// from the ReplicaSet, so that the change-cause of that revision comes back with it.
pub fn set_from_replica_set(deployment: &mut Deployment, rs: &ReplicaSet) {
    if let Some(template) = template_of_rs(rs) {
        let mut template = template.clone();
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        deployment.spec.get_or_insert_default().template = template;
    }
    let annotations = deployment.metadata.annotations.get_or_insert_default();
    annotations.retain(|key, _| skip_copy_annotation(key));
    for (key, value) in rs.metadata.annotations.iter().flatten() {
        if !skip_copy_annotation(key) {
            annotations.insert(key.clone(), value.clone());
        }
    }
}

/// How many replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`): for
/// RollingUpdate, as many more as the surge allows without exceeding `spec.replicas`; for
/// Recreate, all of them.
///
/// Unlike upstream, each ReplicaSet counts with the larger of its `spec.replicas` and the pods
/// it still has (`status.replicas`): an old ReplicaSet just scaled down may not have deleted
/// its pods yet, and counting only its spec would let new pods start before the old ones go,
/// briefly exceeding `replicas + maxSurge`.
pub fn new_rs_new_replicas<'a>(
    deployment: &Deployment,
    all: impl IntoIterator<Item = &'a ReplicaSet>,
    new: &ReplicaSet,
) -> i32 {
    let desired = replicas(deployment);
    if !is_rolling_update(deployment) {
        return desired;
    }
    let current: i32 = all
        .into_iter()
        .map(|rs| rs_replicas(rs).max(rs_actual(rs)))
        .sum();
    let max_total = desired + max_surge(deployment);
    let new_replicas = rs_replicas(new);
    if current >= max_total {
        return new_replicas;
    }
    new_replicas + (max_total - current).min(desired - new_replicas)
}

/// Whether the new ReplicaSet holds the whole Deployment (upstream's `IsSaturated`): its
/// replicas, its desired-replicas annotation and its available pods all equal
/// `spec.replicas`.
pub fn is_saturated(deployment: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = replicas(deployment);
    rs_replicas(rs) == desired
        && desired_replicas_annotation(rs) == Some(desired)
        && rs_available(rs) == desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn percent(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn rolling(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        // Upstream's TestResolveFenceposts and the documented 10-replica example.
        let cases = [
            ("0%", "0%", 0, (0, 1)),
            ("39%", "39%", 10, (4, 3)),
            ("oops", "39%", 10, (0, 3)),
            ("55%", "urg", 10, (6, 0)),
            ("5", "1", 10, (5, 1)),
            ("25%", "25%", 10, (3, 2)),
            ("1%", "1%", 2, (1, 0)),
            ("0%", "1%", 2, (0, 1)),
            ("0", "0", 5, (0, 1)),
        ];
        for (surge, unavailable, desired, expected) in cases {
            let parse = |s: &str| match s.parse() {
                Ok(n) => IntOrString::Int(n),
                Err(_) => percent(s),
            };
            assert_eq!(
                resolve_fenceposts(Some(&parse(surge)), Some(&parse(unavailable)), desired),
                expected,
                "{surge}/{unavailable} of {desired}"
            );
        }
    }

    #[test]
    fn max_unavailable_is_capped_and_zero_without_replicas_or_for_recreate() {
        assert_eq!(
            max_unavailable(&rolling(10, IntOrString::Int(0), IntOrString::Int(20))),
            10
        );
        assert_eq!(
            max_unavailable(&rolling(0, IntOrString::Int(1), IntOrString::Int(1))),
            0
        );
        assert_eq!(
            max_surge(&rolling(0, IntOrString::Int(1), IntOrString::Int(1))),
            1
        );
        let mut recreate = rolling(10, percent("25%"), percent("25%"));
        recreate.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_hash_follows_the_template_and_the_collision_count() {
        let hash = pod_template_hash(&template("nginx"), None);
        assert_eq!(hash, pod_template_hash(&template("nginx"), None));
        assert_ne!(hash, pod_template_hash(&template("nginx:2"), None));
        assert_ne!(hash, pod_template_hash(&template("nginx"), Some(1)));
    }

    #[test]
    fn templates_compare_equal_ignoring_the_hash_label() {
        let mut hashed = template("nginx");
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        assert!(equal_ignoring_hash(&hashed, &template("nginx")));
        assert!(!equal_ignoring_hash(&hashed, &template("nginx:2")));
    }

    fn rs_with_annotations(annotations: &[(&str, &str)]) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        rs
    }

    #[test]
    fn new_replica_sets_get_copied_annotations_revision_and_replicas() {
        let mut deployment = rolling(10, percent("25%"), percent("25%"));
        deployment.metadata.annotations = Some(BTreeMap::from([
            (
                "kubernetes.io/change-cause".into(),
                "kubectl set image".into(),
            ),
            (LAST_APPLIED_ANNOTATION.into(), "{}".into()),
            (REVISION_ANNOTATION.into(), "7".into()),
        ]));
        let mut rs = ReplicaSet::default();
        assert!(set_new_replica_set_annotations(
            &deployment,
            &mut rs,
            3,
            false
        ));
        assert_eq!(
            rs.metadata.annotations.unwrap(),
            BTreeMap::from([
                (
                    "deployment.kubernetes.io/desired-replicas".into(),
                    "10".into()
                ),
                ("deployment.kubernetes.io/max-replicas".into(), "13".into()),
                ("deployment.kubernetes.io/revision".into(), "3".into()),
                (
                    "kubernetes.io/change-cause".into(),
                    "kubectl set image".into()
                ),
            ])
        );
    }

    #[test]
    fn a_rolled_back_replica_set_keeps_its_old_revisions() {
        let deployment = rolling(1, percent("25%"), percent("25%"));
        let mut rs = rs_with_annotations(&[(REVISION_ANNOTATION, "2")]);
        assert!(set_new_replica_set_annotations(
            &deployment,
            &mut rs,
            5,
            true
        ));
        let mut rs_again = rs.clone();
        assert!(set_new_replica_set_annotations(
            &deployment,
            &mut rs_again,
            7,
            true
        ));
        let annotations = rs_again.metadata.annotations.unwrap();
        assert_eq!(annotations[REVISION_ANNOTATION], "7");
        assert_eq!(annotations[REVISION_HISTORY_ANNOTATION], "2,5");
        assert!(
            !annotations.contains_key(DESIRED_REPLICAS_ANNOTATION),
            "existing ReplicaSets get their replicas annotations when scaled"
        );
        // A higher revision is never lowered.
        assert!(!set_new_replica_set_annotations(
            &deployment,
            &mut rs,
            3,
            true
        ));
    }

    #[test]
    fn revision_history_is_trimmed_from_the_front() {
        let long = vec!["1234567890"; 182].join(",");
        assert_eq!(long.len(), 2001);
        let appended = append_revision_history(&long, "99999").unwrap();
        assert!(appended.ends_with(",99999"));
        assert_eq!(
            appended.len(),
            2001 - 11 + 6,
            "only the first entry is dropped"
        );
        assert_eq!(append_revision_history("", "4").as_deref(), Some("4"));
        assert_eq!(
            append_revision_history("1,2", "4").as_deref(),
            Some("1,2,4")
        );
    }

    #[test]
    fn new_replicas_surge_up_to_the_limit() {
        let deployment = rolling(10, IntOrString::Int(3), IntOrString::Int(2));
        let old = {
            let mut rs = ReplicaSet::default();
            rs.spec.get_or_insert_default().replicas = Some(10);
            rs
        };
        let mut new = ReplicaSet::default();
        new.spec.get_or_insert_default().replicas = Some(0);
        assert_eq!(new_rs_new_replicas(&deployment, [&old, &new], &new), 3);
        new.spec.get_or_insert_default().replicas = Some(3);
        assert_eq!(new_rs_new_replicas(&deployment, [&old, &new], &new), 3);
        let mut shrunk = old.clone();
        shrunk.spec.get_or_insert_default().replicas = Some(2);
        assert_eq!(new_rs_new_replicas(&deployment, [&shrunk, &new], &new), 10);
    }
}

//! ControllerRevisions, the recorded history of DaemonSets and StatefulSets (upstream's
//! `pkg/controller/history` and the DaemonSet controller's `constructHistory`).
//!
//! A revision holds a strategic-merge patch that puts a pod template back
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), so `kubectl rollout undo` can apply it
//! as it is. Revisions are named `<owner>-<hash of the template>` and labelled with that hash;
//! pods carry the hash of the revision they were made from.

use crate::apierror;
use crate::controller_ref::{ControllerRefManager, owner_reference, plan_claims};
use crate::hash::compute_hash;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_api::selector::LabelSelector;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The label that names the revision an object was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The data of a revision of `template`: a strategic-merge patch that restores it.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).expect("templates serialize");
    if let Value::Object(fields) = &mut template {
        fields.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": template}})
}

/// Whether `revision` records `data`.
pub fn records(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().is_some_and(|raw| &raw.0 == data)
}

/// The hash label of a revision (its name's suffix for revisions made before the label).
pub fn hash_of(revision: &ControllerRevision) -> &str {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map_or_else(
            || revision.metadata.name.as_deref().unwrap_or_default(),
            String::as_str,
        )
}

/// The highest revision number among `revisions`, 0 if none.
pub fn max_revision<'a>(revisions: impl IntoIterator<Item = &'a ControllerRevision>) -> i64 {
    revisions.into_iter().map(|r| r.revision).max().unwrap_or(0)
}

/// What an owner (a DaemonSet or StatefulSet) tells the history about itself.
pub struct Owner<'a, K> {
    /// The owner.
    pub object: &'a K,
    /// Its selector (revisions carry the template's labels, which it selects).
    pub selector: &'a LabelSelector,
    /// Its pod template.
    pub template: &'a PodTemplateSpec,
    /// Its `status.collisionCount`.
    pub collision_count: Option<i32>,
}

/// The history of one owner after [`construct`]: the revision of its current template and the
/// others.
pub struct History {
    /// The revision of the current template.
    pub current: ControllerRevision,
    /// Every other revision the owner controls.
    pub old: Vec<ControllerRevision>,
}

/// Why the history could not be constructed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A revision of another template already has the current template's name: the owner's
    /// collision count must grow (the caller bumps it in the status) and the sync retried.
    #[error("revision {0} exists with another template; the collision count must grow")]
    Collision(String),
    /// Claiming or writing revisions failed.
    #[error(transparent)]
    Claim(#[from] crate::controller_ref::ClaimError),
}

impl From<kube::Error> for HistoryError {
    fn from(error: kube::Error) -> Self {
        Self::Claim(error.into())
    }
}

/// Finds or makes the revision of the owner's current template (upstream's
/// `constructHistory`). `revisions` are the namespace's revisions from a cache; the owner
/// adopts those it selects. An older revision of the same template becomes current again with
/// the next revision number, which is how a rollback shows in the history.
pub async fn construct<K>(
    api: &Api<ControllerRevision>,
    owners: &Api<K>,
    owner: Owner<'_, K>,
    revisions: &[&ControllerRevision],
) -> Result<History, HistoryError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let uid = owner.object.meta().uid.clone().unwrap_or_default();
    let deleting = owner.object.meta().deletion_timestamp.is_some();
    let manager = ControllerRefManager {
        children: api,
        owner: owner_reference(owner.object),
    };
    let name = owner.object.name_any();
    let owned = manager
        .claim(
            plan_claims(&uid, deleting, owner.selector, revisions.iter().copied()),
            || async {
                let fresh = owners.get_opt(&name).await?;
                Ok(fresh
                    .filter(|o| o.meta().deletion_timestamp.is_none())
                    .and_then(|o| o.meta().uid.clone()))
            },
        )
        .await?;

    let data = template_patch(owner.template);
    let (mut current, old): (Vec<ControllerRevision>, Vec<ControllerRevision>) =
        owned.into_iter().cloned().partition(|r| records(r, &data));
    let next = max_revision(&old) + 1;
    // Equal revisions can exist after a collision; the newest one stays.
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let mut duplicates = current.split_off(current.len().min(1));
    for duplicate in duplicates.drain(..) {
        match api
            .delete(&duplicate.name_any(), &DeleteParams::default())
            .await
        {
            Err(e) if !apierror::is_not_found(&e) => return Err(e.into()),
            _ => {}
        }
    }
    let current = match current.pop() {
        Some(mut revision) if revision.revision < next => {
            revision.revision = next;
            api.replace(&revision.name_any(), &PostParams::default(), &revision)
                .await?
        }
        Some(revision) => revision,
        None => {
            let hash = compute_hash(owner.template, owner.collision_count);
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{hash}")),
                    namespace: owner.object.meta().namespace.clone(),
                    labels: Some(with_hash(owner.template, &hash)),
                    annotations: owner.object.meta().annotations.clone(),
                    owner_references: Some(vec![manager.owner.clone()]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: next,
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(created) => created,
                Err(e) if apierror::is_already_exists(&e) => {
                    let existing = api.get(&revision.name_any()).await?;
                    if !records(&existing, &data) {
                        return Err(HistoryError::Collision(revision.name_any()));
                    }
                    existing
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(History { current, old })
}

/// The template's labels plus the revision hash.
fn with_hash(template: &PodTemplateSpec, hash: &str) -> BTreeMap<String, String> {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels
}

/// Deletes the oldest of `old` that are not `live` (used by a pod, or current) until at most
/// `limit` remain (upstream's `cleanupHistory` and `truncateHistory`).
pub async fn truncate(
    api: &Api<ControllerRevision>,
    mut old: Vec<ControllerRevision>,
    live: impl Fn(&ControllerRevision) -> bool,
    limit: usize,
) -> Result<(), kube::Error> {
    let mut excess = old.len().saturating_sub(limit);
    old.sort_by_key(|r| r.revision);
    for revision in &old {
        if excess == 0 {
            break;
        }
        if live(revision) {
            continue;
        }
        match api
            .delete(&revision.name_any(), &DeleteParams::default())
            .await
        {
            Err(e) if !apierror::is_not_found(&e) => return Err(e),
            _ => excess -= 1,
        }
    }
    Ok(())
}

/// The template a revision records, if its data is a template patch.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_replaces_the_whole_template() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "fluentd"}},
            "spec": {"containers": [{"name": "c", "image": "fluentd:1"}]}
        }))
        .unwrap();
        let patch = template_patch(&template);
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            patch["spec"]["template"]["metadata"]["labels"]["app"],
            "fluentd"
        );
        let revision = ControllerRevision {
            data: Some(RawExtension(patch.clone())),
            ..Default::default()
        };
        assert!(records(&revision, &patch));
        assert_eq!(template_of(&revision), Some(template.clone()));
        assert!(!records(&revision, &json!({})));
        let labels = with_hash(&template, "abc");
        assert_eq!(labels["controller-revision-hash"], "abc");
        assert_eq!(labels["app"], "fluentd");
    }
}

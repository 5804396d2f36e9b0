//! Controller references, as upstream's `controller_ref_manager.go`: which owner controls a
//! child, and claiming children (adopting matching orphans, releasing owned children that stop
//! matching).
//!
//! Deciding is pure ([`plan_claims`]); [`ControllerRefManager`] carries the plan out with
//! strategic-merge patches that name the child's uid, so a child replaced under the same name is
//! never touched.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_api::selector::LabelSelector;
use std::fmt::Debug;
use std::sync::Arc;

/// A reference to `owner` that marks it as the controller and blocks its deletion in the
/// foreground until the child is gone, as every workload controller sets on its children.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The reference to the object's controller, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The owner of kind `K` in `owners` (a cache) that controls the child, if it is there with the
/// uid the reference names (upstream's `resolveControllerRef`).
pub fn resolve_controller<K>(owners: &Store<K>, child: &ObjectMeta) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let reference = controller_of(child)?;
    if reference.kind != K::kind(&()) || reference.api_version != K::api_version(&()) {
        return None;
    }
    let mut key = ObjectRef::new(&reference.name);
    if let Some(namespace) = &child.namespace {
        key = key.within(namespace);
    }
    owners
        .get(&key)
        .filter(|owner| owner.meta().uid.as_deref() == Some(reference.uid.as_str()))
}

/// What claiming means for a set of children.
pub struct ClaimPlan<'a, K> {
    /// Children the owner controls and still selects.
    pub owned: Vec<&'a K>,
    /// Orphans the owner selects and should adopt.
    pub adopt: Vec<&'a K>,
    /// Children the owner controls but no longer selects, to release.
    pub release: Vec<&'a K>,
}

/// Upstream's `ClaimObject` over `children`, for an owner with uid `owner_uid` that selects
/// with `selector`; an owner being deleted neither adopts nor releases.
pub fn plan_claims<'a, K: Resource + 'a>(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    children: impl IntoIterator<Item = &'a K>,
) -> ClaimPlan<'a, K> {
    let mut plan = ClaimPlan {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for child in children {
        let meta = child.meta();
        let selected =
            selector.matches_with(|key| meta.labels.as_ref()?.get(key).map(String::as_str));
        match controller_of(meta) {
            Some(controller) if controller.uid != owner_uid => {}
            Some(_) if selected => plan.owned.push(child),
            Some(_) if !owner_deleting => plan.release.push(child),
            Some(_) => {}
            None if selected && !owner_deleting && meta.deletion_timestamp.is_none() => {
                plan.adopt.push(child)
            }
            None => {}
        }
    }
    plan
}

/// Carries out claims for one owner against the API server.
pub struct ControllerRefManager<'a, K> {
    /// Where the children live (the owner's namespace).
    pub children: &'a Api<K>,
    /// The reference adopted children get.
    pub owner: OwnerReference,
}

/// Why a claim could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The owner changed (deleted, or replaced under its name) since it was read, so it must
    /// not adopt (upstream's `RecheckDeletionTimestamp`).
    #[error("original {kind} {name} is gone or being deleted: got uid {found}, wanted {wanted}")]
    OwnerChanged {
        /// The owner's kind.
        kind: String,
        /// The owner's name.
        name: String,
        /// The uid now under that name, or empty if none.
        found: String,
        /// The uid the owner had.
        wanted: String,
    },
    /// The API server refused a request.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl<K> ControllerRefManager<'_, K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    /// Adopts `plan.adopt` and releases `plan.release`, returning the children the owner
    /// controls afterwards. `fresh_owner_uid` reads the owner without a cache and gives its uid
    /// if it exists and is not being deleted; it is called once, before the first adoption.
    /// Children that vanished meanwhile are skipped; other errors end the claim.
    pub async fn claim<'c, F, Fut>(
        &self,
        plan: ClaimPlan<'c, K>,
        fresh_owner_uid: F,
    ) -> Result<Vec<&'c K>, ClaimError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, kube::Error>>,
    {
        let mut owned = plan.owned;
        if !plan.adopt.is_empty() {
            let found = fresh_owner_uid().await?.unwrap_or_default();
            if found != self.owner.uid {
                return Err(ClaimError::OwnerChanged {
                    kind: self.owner.kind.clone(),
                    name: self.owner.name.clone(),
                    found,
                    wanted: self.owner.uid.clone(),
                });
            }
        }
        for child in plan.adopt {
            let patch = json!({"metadata": {
                "ownerReferences": [self.owner],
                "uid": child.meta().uid,
            }});
            match self.patch(child, patch).await {
                Ok(()) => owned.push(child),
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for child in plan.release {
            let patch = json!({"metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": self.owner.uid}],
                "uid": child.meta().uid,
            }});
            match self.patch(child, patch).await {
                Ok(()) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(owned)
    }

    async fn patch(&self, child: &K, patch: serde_json::Value) -> Result<(), kube::Error> {
        self.children
            .patch(
                &child.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
            .map(drop)
    }
}

/// Whether the child is gone or was replaced under its name (the uid precondition failed),
/// which ends nothing: the informer will show the change.
fn is_gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404 || status.code == 409 || status.code == 422)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    fn pod(name: &str, app: &str, controller: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        pod.metadata.owner_references = controller.map(|uid| {
            vec![OwnerReference {
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        pod
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn claims_follow_upstream_rules() {
        let mut deleting_orphan = pod("deleting-orphan", "web", None);
        deleting_orphan.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let pods = [
            pod("mine", "web", Some("owner")),
            pod("mine-relabelled", "db", Some("owner")),
            pod("orphan", "web", None),
            pod("orphan-other-labels", "db", None),
            pod("someone-elses", "web", Some("other")),
            deleting_orphan,
        ];
        let selector = LabelSelector::parse("app=web").unwrap();

        let plan = plan_claims("owner", false, &selector, &pods);
        assert_eq!(names(&plan.owned), ["mine"]);
        assert_eq!(names(&plan.adopt), ["orphan"]);
        assert_eq!(names(&plan.release), ["mine-relabelled"]);

        let plan = plan_claims("owner", true, &selector, &pods);
        assert_eq!(
            names(&plan.owned),
            ["mine"],
            "a deleting owner keeps what it has"
        );
        assert!(plan.adopt.is_empty() && plan.release.is_empty());
    }

    #[test]
    fn the_reference_marks_the_controller() {
        let mut owner = k8s_openapi::api::apps::v1::ReplicaSet::default();
        owner.metadata.name = Some("web".into());
        owner.metadata.uid = Some("u1".into());
        let reference = owner_reference(&owner);
        assert_eq!(reference.api_version, "apps/v1");
        assert_eq!(reference.kind, "ReplicaSet");
        assert_eq!(
            (reference.name.as_str(), reference.uid.as_str()),
            ("web", "u1")
        );
        assert_eq!(reference.controller, Some(true));
        assert_eq!(reference.block_owner_deletion, Some(true));
        let mut child = ObjectMeta::default();
        assert!(controller_of(&child).is_none());
        child.owner_references = Some(vec![reference.clone()]);
        assert_eq!(controller_of(&child), Some(&reference));
    }
}

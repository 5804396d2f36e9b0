//! Storage object in-use protection (upstream `pkg/controller/volume/pvcprotection` and
//! `pvprotection`, with the `StorageObjectInUseProtection` admission plugin adding the
//! finalizers): a claim that a pod still uses, or a volume still bound to a claim, is not
//! removed when deleted. It stays `Terminating` until the last pod using it is shut down, or
//! the volume is no longer `Bound`; then its finalizer is removed and the deletion completes.

use crate::sharedpods::SharedPods;
use crate::workqueue::{WorkQueue, key_of};
use crate::{apierror, informer};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The finalizer that keeps a claim in use (`kubernetes.io/pvc-protection`).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a bound volume (`kubernetes.io/pv-protection`).
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Whether a pod can no longer use its volumes (upstream's `podIsShutDown`): it finished, or
/// its kubelet completed its deletion (a zero grace period is set only then).
pub fn is_shut_down(pod: &Pod) -> bool {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let deleted_by_kubelet = pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0);
    finished || deleted_by_kubelet
}

/// The claims a pod mounts, by name (in the pod's namespace).
pub fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// Whether an object is deleted and still held by `finalizer`.
fn awaits(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.deletion_timestamp.is_some() && has_finalizer(meta, finalizer)
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// A merge patch that sets the object's finalizers to `finalizers`, guarded by the resource
/// version the decision was made on.
fn finalizers_patch(meta: &ObjectMeta, finalizers: Vec<&str>) -> serde_json::Value {
    json!({"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}})
}

/// The patch that removes `finalizer`.
fn without(meta: &ObjectMeta, finalizer: &str) -> serde_json::Value {
    let rest = meta.finalizers.iter().flatten().map(String::as_str);
    finalizers_patch(meta, rest.filter(|f| *f != finalizer).collect())
}

/// The patch that adds `finalizer`.
fn with(meta: &ObjectMeta, finalizer: &str) -> serde_json::Value {
    let existing = meta.finalizers.iter().flatten().map(String::as_str);
    finalizers_patch(meta, existing.chain([finalizer]).collect())
}

/// Runs both protection controllers until the process ends, on the shared pod informer `pods`.
pub async fn run(client: Client, pods: SharedPods) {
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let controller = Arc::new(Protection {
        client: client.clone(),
        claims,
        volumes,
        pods: pods.store(),
        claim_queue: WorkQueue::new(),
        volume_queue: WorkQueue::new(),
    });
    let queue = controller.claim_queue.clone();
    informer::spawn(
        Api::all(client.clone()),
        claim_writer,
        informer::keep_all,
        move |event| {
            if let watcher::Event::Apply(claim) | watcher::Event::InitApply(claim) = event {
                queue.add(key_of(&claim.metadata));
            }
        },
    );
    let queue = controller.volume_queue.clone();
    informer::spawn(
        Api::all(client),
        volume_writer,
        informer::keep_all,
        move |event| {
            if let watcher::Event::Apply(volume) | watcher::Event::InitApply(volume) = event {
                queue.add(volume.name_any());
            }
        },
    );
    // A pod that shuts down or goes may free the claims it used (upstream's `podAddedDeletedUpdated`).
    let queue = controller.claim_queue.clone();
    pods.subscribe(move |event, _| {
        let pod = match event {
            watcher::Event::Delete(pod) => pod,
            watcher::Event::Apply(pod) if is_shut_down(pod) => pod,
            _ => return,
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        for claim in claims_of(pod) {
            queue.add(format!("{namespace}/{claim}"));
        }
    });
    if !(informer::synced(&controller.claims).await
        && informer::synced(&controller.volumes).await
        && pods.synced().await)
    {
        return;
    }
    let (claim_queue, volume_queue) = (
        controller.claim_queue.clone(),
        controller.volume_queue.clone(),
    );
    let c = controller.clone();
    tokio::join!(
        claim_queue.run_workers(1, "pvc protection", move |key| {
            let controller = c.clone();
            async move { controller.sync_claim(&key).await }
        }),
        volume_queue.run_workers(1, "pv protection", move |key| {
            let controller = controller.clone();
            async move { controller.sync_volume(&key).await }
        }),
    );
}

struct Protection {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Store<Pod>,
    claim_queue: WorkQueue<String>,
    volume_queue: WorkQueue<String>,
}

impl Protection {
    async fn sync_claim(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let patch = if awaits(&claim.metadata, PVC_PROTECTION_FINALIZER) {
            if self.claim_in_use(namespace, name).await? {
                return Ok(None);
            }
            without(&claim.metadata, PVC_PROTECTION_FINALIZER)
        } else if claim.metadata.deletion_timestamp.is_none()
            && !has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER)
        {
            with(&claim.metadata, PVC_PROTECTION_FINALIZER)
        } else {
            return Ok(None);
        };
        patch_finalizers(&api, name, &patch).await
    }

    /// Whether a pod that is not shut down mounts the claim: the cache first, then, before
    /// letting the claim go, a live list, as upstream asks the API server too (a pod created a
    /// moment ago may not be cached yet).
    async fn claim_in_use(&self, namespace: &str, name: &str) -> kube::Result<bool> {
        let uses = |pod: &Pod| !is_shut_down(pod) && claims_of(pod).any(|c| c == name);
        let cached = self
            .pods
            .state()
            .iter()
            .any(|pod| pod.metadata.namespace.as_deref() == Some(namespace) && uses(pod));
        if cached {
            return Ok(true);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let live = api.list(&ListParams::default()).await?;
        Ok(live.items.iter().any(uses))
    }

    async fn sync_volume(&self, name: &str) -> anyhow::Result<Option<Duration>> {
        let Some(volume) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(None);
        };
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let patch = if awaits(&volume.metadata, PV_PROTECTION_FINALIZER) {
            if bound {
                return Ok(None);
            }
            without(&volume.metadata, PV_PROTECTION_FINALIZER)
        } else if volume.metadata.deletion_timestamp.is_none()
            && !has_finalizer(&volume.metadata, PV_PROTECTION_FINALIZER)
        {
            with(&volume.metadata, PV_PROTECTION_FINALIZER)
        } else {
            return Ok(None);
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        patch_finalizers(&api, name, &patch).await
    }
}

/// Applies a finalizer patch; a conflict (the object changed meanwhile) retries on the
/// newer copy the informer will bring, and an object already gone needs nothing.
async fn patch_finalizers<K>(
    api: &Api<K>,
    name: &str,
    patch: &serde_json::Value,
) -> anyhow::Result<Option<Duration>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if apierror::is_not_found(&e) => Ok(None),
        Err(e) if apierror::is_conflict(&e) => Ok(Some(Duration::from_millis(100))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_pod_is_shut_down_once_finished_or_deleted_by_its_kubelet() {
        let running = pod(json!({"status": {"phase": "Running"}}));
        assert!(!is_shut_down(&running));
        for phase in ["Succeeded", "Failed"] {
            assert!(is_shut_down(&pod(json!({"status": {"phase": phase}}))));
        }
        let terminating = pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 30}, "status": {"phase": "Running"}}),
        );
        assert!(!is_shut_down(&terminating), "still stopping: it may write");
        let stopped = pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0}, "status": {"phase": "Running"}}),
        );
        assert!(is_shut_down(&stopped));
    }

    #[test]
    fn claims_of_lists_claim_volumes_only() {
        let p = pod(json!({"spec": {"containers": [], "volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "b", "emptyDir": {}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "logs", "readOnly": true}},
        ]}}));
        assert_eq!(claims_of(&p).collect::<Vec<_>>(), ["data", "logs"]);
    }

    #[test]
    fn finalizer_patches_keep_the_others_and_guard_the_version() {
        let meta: ObjectMeta = serde_json::from_value(json!({
            "resourceVersion": "42", "finalizers": ["example.com/keep", PVC_PROTECTION_FINALIZER]
        }))
        .unwrap();
        assert_eq!(
            without(&meta, PVC_PROTECTION_FINALIZER),
            json!({"metadata": {"finalizers": ["example.com/keep"], "resourceVersion": "42"}})
        );
        assert_eq!(
            with(&meta, PV_PROTECTION_FINALIZER)["metadata"]["finalizers"],
            json!([
                "example.com/keep",
                PVC_PROTECTION_FINALIZER,
                PV_PROTECTION_FINALIZER
            ])
        );
    }
}

//! VolumeBinding's PreBind, as far as skiff needs it: before a pod is bound, each of its
//! claims that is still unbound and whose StorageClass waits for the first consumer is
//! annotated with the chosen node (`volume.kubernetes.io/selected-node`), which tells the
//! class's provisioner where to create the volume. Then, as upstream, the pod waits until
//! every claim is bound (up to `bindTimeoutSeconds`, 600 s), so that its node agent finds the
//! volumes to mount when the pod arrives.

use crate::api_message;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

/// The annotation naming the node chosen for a claim (upstream's `AnnSelectedNode`).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The beta annotation that, when present, names a claim's class.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// How long a pod waits for its claims to be bound (upstream VolumeBinding's
/// `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// The PreBind step for a pod with `claims` in `namespace` going to `node`: selects the node
/// for claims that wait for a consumer, then waits until all are bound. The error is the
/// message of upstream's failure (`binding volumes: ...`).
pub async fn bind_claims(
    client: &Client,
    namespace: &str,
    claims: &[String],
    node: &str,
    timeout: Duration,
) -> Result<(), String> {
    if claims.is_empty() {
        return Ok(());
    }
    let failed = |e: kube::Error| format!("binding volumes: {}", api_message(&e));
    select_node_for_claims(client, namespace, claims, node)
        .await
        .map_err(failed)?;
    tokio::time::timeout(timeout, wait_bound(client, namespace, claims))
        .await
        .map_err(|_| "binding volumes: context deadline exceeded".to_owned())?
        .map_err(failed)
}

/// Polls `claims` until each is bound to a volume: quickly at first, as a local provisioner
/// answers in milliseconds, then once a second as upstream polls its cache.
async fn wait_bound(client: &Client, namespace: &str, claims: &[String]) -> kube::Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut pause = Duration::from_millis(20);
    for name in claims {
        loop {
            let claim = api.get(name).await?;
            let bound = claim.status.and_then(|s| s.phase).as_deref() == Some("Bound")
                && claim
                    .spec
                    .and_then(|s| s.volume_name)
                    .is_some_and(|v| !v.is_empty());
            if bound {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    Ok(())
}

/// Annotates `namespace`'s `claims` that wait for a consumer with `node`. Claims already
/// bound or already given a node are left alone.
async fn select_node_for_claims(
    client: &Client,
    namespace: &str,
    claims: &[String],
    node: &str,
) -> Result<(), kube::Error> {
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let classes: Api<StorageClass> = Api::all(client.clone());
    for name in claims {
        let claim = claims_api.get(name).await?;
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        let spec = claim.spec.unwrap_or_default();
        let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
        if bound || annotations.contains_key(SELECTED_NODE_ANNOTATION) {
            continue;
        }
        let class = annotations
            .get(BETA_STORAGE_CLASS_ANNOTATION)
            .or(spec.storage_class_name.as_ref())
            .filter(|c| !c.is_empty());
        let Some(class) = class else { continue };
        let Some(class) = classes.get_opt(class).await? else {
            continue;
        };
        if class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
            continue;
        }
        let patch = json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
        claims_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

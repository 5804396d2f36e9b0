//! VolumeBinding's PreBind, as far as skiff needs it: before a pod is bound, each of its
//! claims that is still unbound and whose StorageClass waits for the first consumer is
//! annotated with the chosen node (`volume.kubernetes.io/selected-node`), which tells the
//! class's provisioner where to create the volume.
//!
//! Unlike upstream, the pod is bound without waiting for the claims to be bound: the node
//! agent does not mount volumes, and the volume's node affinity keeps the pod's later
//! incarnations on that node once the claim is bound.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The annotation naming the node chosen for a claim (upstream's `AnnSelectedNode`).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The beta annotation that, when present, names a claim's class.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Annotates `namespace`'s `claims` that wait for a consumer with `node`. Claims already
/// bound or already given a node are left alone.
pub async fn select_node_for_claims(
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

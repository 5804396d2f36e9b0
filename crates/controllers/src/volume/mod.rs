//! Persistent storage, as upstream's `pkg/controller/volume` plus the local-path provisioner
//! kind and minikube ship: the PersistentVolume controller binds claims to volumes and
//! reclaims released volumes ([`persistentvolume`]); the built-in provisioner makes one
//! directory per volume under the data directory ([`localpath`]).
//!
//! Claims in use and bound volumes are protected from deletion by finalizers
//! ([`protection`]).
//!
//! The binder and the provisioner talk only through the API, as upstream's controller and an external provisioner
//! do: the binder marks a claim with `volume.kubernetes.io/storage-provisioner`, the
//! provisioner creates a volume pre-bound to the claim, the binder binds them; once the claim
//! is gone the binder marks the volume `Released` and the provisioner deletes it.

pub mod localpath;
pub mod persistentvolume;
pub mod protection;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use std::path::PathBuf;

/// Set on a claim once the binder has bound it (`AnnBindCompleted`).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side of a binding the binder, not the user, filled in
/// (`AnnBoundByController`).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner that created a volume (`AnnDynamicallyProvisioned`).
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner asked to create a volume for a claim (`AnnStorageProvisioner`).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`], which upstream still writes too.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The node the scheduler chose for a claim of a WaitForFirstConsumer class
/// (`AnnSelectedNode`).
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The beta annotation that, when present, names the class instead of `storageClassName`.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The label the local-path volumes' node affinity requires.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The binding mode that waits for the scheduler to choose a node.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// Settings of the storage controllers.
#[derive(Clone, Debug, Default)]
pub struct StorageConfig {
    /// The server's data directory: local-path volumes live in its `volumes` directory.
    /// `None` provisions volumes without touching any disk (as for simulated nodes).
    pub data_dir: Option<PathBuf>,
    /// The node running in this process, whose volume directories the provisioner creates
    /// and removes; volumes of other nodes are only API objects here.
    pub local_node: Option<String>,
}

/// Upstream's `GetPersistentVolumeClaimClass`: the beta annotation, else
/// `spec.storageClassName`, else `""` (no class).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_ref())
        .map_or("", String::as_str)
}

/// Upstream's `GetPersistentVolumeClass`, the same for a volume.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
        .or_else(|| volume.spec.as_ref()?.storage_class_name.as_ref())
        .map_or("", String::as_str)
}

/// The value of annotation `key`, if set.
fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// `spec.volumeName`, or `""`.
fn claim_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// The requested storage, as a number of bytes (`0` when none is requested).
fn requested_bytes(claim: &PersistentVolumeClaim) -> f64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .and_then(|q| skiff_api::quantity::parse(&q.0))
        .unwrap_or(0.0)
}

/// `status.phase`, or `""`.
fn volume_phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The `namespace/name` key of the claim a volume points at.
fn claim_ref_key(volume: &PersistentVolume) -> Option<String> {
    let claim_ref = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{}/{}",
        claim_ref.namespace.as_deref().unwrap_or_default(),
        claim_ref.name.as_deref().unwrap_or_default()
    ))
}

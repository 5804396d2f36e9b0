//! The built-in local-path provisioner, an external provisioner as upstream's
//! sig-storage-lib-external-provisioner runs them (and as rancher's local-path-provisioner
//! behaves): for each claim the binder hands to [`PROVISIONER`] it creates a volume
//! `pvc-<claim uid>` backed by the directory `<data dir>/volumes/<volume>` on the chosen node,
//! pinned there by node affinity; it deletes released volumes of the `Delete` policy, their
//! directory first.
//!
//! Only directories of the node in this process ([`super::StorageConfig::local_node`]) are
//! created and removed; other (simulated) nodes' volumes exist as API objects only.

use super::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER,
    HOSTNAME_LABEL, StorageConfig, WAIT_FOR_FIRST_CONSUMER, annotation, claim_class,
    claim_volume_name, volume_phase,
};
use crate::events::{self, EventRecorder, EventType};
use crate::workqueue::{WorkQueue, key_of};
use crate::{apierror, volume::persistentvolume::binder::claim_reference};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The provisioner name StorageClasses use for these volumes (the default class's).
pub const PROVISIONER: &str = "skiff.dev/local-path";
/// Where volumes are said to live when no data directory is configured (nothing is created
/// on disk then).
const DEFAULT_DATA_DIR: &str = "/var/lib/skiff";
/// Concurrent provisioning and deleting syncs.
const WORKERS: usize = 4;

/// Where the volume named `volume` lives: `<data dir>/volumes/<volume>`.
pub fn volume_dir(data_dir: &Path, volume: &str) -> PathBuf {
    data_dir.join("volumes").join(volume)
}

/// Why a claim gets no volume from this provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not this provisioner's claim, already bound, or not yet asked for (upstream's
    /// `shouldProvision` is false): nothing to report.
    NotOurs,
    /// A failure to report as `ProvisioningFailed`.
    Failed(String),
}

/// Upstream's `shouldProvision` and local-path's `Provision`: the volume to create for
/// `claim` of `class`. An Immediate class has no node chosen by the scheduler, so its volumes
/// go to `default_node` (the local node), when there is one.
pub fn plan_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    data_dir: &Path,
    default_node: Option<&str>,
) -> Result<PersistentVolume, Skip> {
    let asked = [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER]
        .iter()
        .any(|key| annotation(&claim.metadata, key) == Some(PROVISIONER));
    if !asked
        || class.provisioner != PROVISIONER
        || !claim_volume_name(claim).is_empty()
        || claim.metadata.deletion_timestamp.is_some()
    {
        return Err(Skip::NotOurs);
    }
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE).filter(|n| !n.is_empty());
    let waits = class.volume_binding_mode.as_deref() == Some(WAIT_FOR_FIRST_CONSUMER);
    let node = match (selected, waits) {
        (Some(node), _) => node,
        (None, true) => return Err(Skip::NotOurs),
        (None, false) => default_node.ok_or_else(|| {
            Skip::Failed(format!(
                "failed to provision volume with StorageClass \"{}\": configuration error, no node was specified",
                class.name_any()
            ))
        })?,
    };
    let spec = claim.spec.clone().unwrap_or_default();
    let name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref()?.get("storage").cloned())
        .ok_or_else(|| {
            Skip::Failed(format!(
                "failed to provision volume with StorageClass \"{}\": claim requests no storage",
                class.name_any()
            ))
        })?;
    let path = volume_dir(data_dir, &name).to_string_lossy().into_owned();
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some([(ANN_PROVISIONED_BY.into(), PROVISIONER.into())].into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes,
            capacity: Some([("storage".into(), storage)].into()),
            claim_ref: Some(claim_reference(claim)),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(claim_class(claim).into()),
            volume_mode: spec.volume_mode,
            ..Default::default()
        }),
        status: None,
    })
}

/// Upstream's `shouldDelete`: a released volume of the `Delete` policy this provisioner made.
pub fn should_delete(volume: &PersistentVolume) -> bool {
    volume_phase(volume) == "Released"
        && volume.metadata.deletion_timestamp.is_none()
        && annotation(&volume.metadata, ANN_PROVISIONED_BY) == Some(PROVISIONER)
        && volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete")
}

/// The node a local-path volume's affinity pins it to.
pub fn volume_node(volume: &PersistentVolume) -> Option<&str> {
    let terms = &volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == HOSTNAME_LABEL && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

/// Runs the provisioner until the process ends.
pub async fn run(client: Client, config: StorageConfig) {
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let identity = format!(
        "{PROVISIONER}_{}",
        config.local_node.as_deref().unwrap_or("skiff")
    );
    let provisioner = Arc::new(Provisioner {
        recorder: EventRecorder::new(client.clone(), &identity),
        client: client.clone(),
        config,
        claims,
        volumes,
        classes,
        queue: WorkQueue::new(),
    });
    let p = provisioner.clone();
    tokio::spawn(
        watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(claim_writer)
        .for_each(move |event| {
            if let Ok(watcher::Event::Apply(claim)) = event {
                p.queue.add(format!("claim:{}", key_of(&claim.metadata)));
            }
            futures::future::ready(())
        }),
    );
    let p = provisioner.clone();
    tokio::spawn(
        watcher(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(volume_writer)
        .for_each(move |event| {
            if let Ok(watcher::Event::Apply(volume)) = event {
                p.queue.add(format!("volume:{}", volume.name_any()));
            }
            futures::future::ready(())
        }),
    );
    tokio::spawn(
        watcher(Api::<StorageClass>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(class_writer)
            .for_each(|_| futures::future::ready(())),
    );
    let ready = (
        provisioner.claims.wait_until_ready().await,
        provisioner.volumes.wait_until_ready().await,
        provisioner.classes.wait_until_ready().await,
    );
    if ready.0.is_err() || ready.1.is_err() || ready.2.is_err() {
        return;
    }
    for claim in provisioner.claims.state() {
        provisioner
            .queue
            .add(format!("claim:{}", key_of(&claim.metadata)));
    }
    for volume in provisioner.volumes.state() {
        provisioner
            .queue
            .add(format!("volume:{}", volume.name_any()));
    }
    let queue = provisioner.queue.clone();
    queue
        .run_workers(WORKERS, "local-path provisioner", move |key| {
            let provisioner = provisioner.clone();
            async move {
                match key.split_once(':') {
                    Some(("claim", claim)) => provisioner.sync_claim(claim).await,
                    Some(("volume", volume)) => provisioner.sync_volume(volume).await,
                    _ => Ok(None),
                }
            }
        })
        .await;
}

struct Provisioner {
    client: Client,
    recorder: EventRecorder,
    config: StorageConfig,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    queue: WorkQueue<String>,
}

impl Provisioner {
    /// The data directory, when this node's volumes are on this machine's disk.
    fn local_data_dir(&self, node: Option<&str>) -> Option<&Path> {
        let local = self.config.local_node.as_deref()?;
        (node == Some(local))
            .then_some(self.config.data_dir.as_deref())
            .flatten()
    }

    /// Provisions a volume for the claim `key` if it is this provisioner's to make.
    async fn sync_claim(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let Some(class) = self.classes.get(&ObjectRef::new(claim_class(&claim))) else {
            return Ok(None);
        };
        // Volumes' paths are the same on every node; only the local node's exist here.
        let data_dir = self
            .config
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let volume = match plan_volume(&claim, &class, &data_dir, self.config.local_node.as_deref())
        {
            Ok(volume) => volume,
            Err(Skip::NotOurs) => return Ok(None),
            Err(Skip::Failed(message)) => {
                self.record_claim(&claim, EventType::Warning, "ProvisioningFailed", message);
                return Ok(None);
            }
        };
        let volume_name = volume.name_any();
        // Provisioned before (the binder has not bound it yet): nothing more to do.
        if self.volumes.get(&ObjectRef::new(&volume_name)).is_some() {
            return Ok(None);
        }
        self.record_claim(
            &claim,
            EventType::Normal,
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{key}\""),
        );
        let fail = |message: String| {
            let message = format!(
                "failed to provision volume with StorageClass \"{}\": {message}",
                class.name_any()
            );
            self.record_claim(&claim, EventType::Warning, "ProvisioningFailed", message);
        };
        if let Some(data_dir) = self.local_data_dir(volume_node(&volume)) {
            let dir = volume_dir(data_dir, &volume_name);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                fail(format!("creating {}: {e}", dir.display()));
                return Err(e.into());
            }
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &volume).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => {
                fail(apierror::message(&e));
                return Err(e.into());
            }
        }
        self.record_claim(
            &claim,
            EventType::Normal,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {volume_name}"),
        );
        Ok(None)
    }

    /// Deletes a released volume of the `Delete` policy: its directory, then the object.
    async fn sync_volume(&self, name: &str) -> anyhow::Result<Option<Duration>> {
        let Some(volume) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(None);
        };
        if !should_delete(&volume) {
            return Ok(None);
        }
        let fail = |message: String| {
            self.recorder.record(
                &events::reference(volume.as_ref()),
                EventType::Warning,
                "VolumeFailedDelete",
                message,
            );
        };
        if let Some(data_dir) = self.local_data_dir(volume_node(&volume)) {
            let dir = volume_dir(data_dir, name);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    fail(format!("removing {}: {e}", dir.display()));
                    return Err(e.into());
                }
            }
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(None),
            Err(e) if apierror::is_not_found(&e) => Ok(None),
            Err(e) => {
                fail(apierror::message(&e));
                Err(e.into())
            }
        }
    }

    fn record_claim(
        &self,
        claim: &PersistentVolumeClaim,
        event_type: EventType,
        reason: &str,
        message: String,
    ) {
        self.recorder
            .record(&events::reference(claim), event_type, reason, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(mode: &str) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "standard"}, "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": mode
        }))
        .unwrap()
    }

    fn claim(annotations: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "demo", "uid": "3f1c", "resourceVersion": "12",
                         "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "standard", "volumeMode": "Filesystem"}
        }))
        .unwrap()
    }

    #[test]
    fn a_volume_on_the_selected_node() {
        let asked = json!({ANN_STORAGE_PROVISIONER: PROVISIONER, ANN_SELECTED_NODE: "node-2"});
        let volume = plan_volume(
            &claim(asked),
            &class(WAIT_FOR_FIRST_CONSUMER),
            Path::new("/srv/skiff"),
            Some("node-1"),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&volume).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pvc-3f1c", "annotations": {"pv.kubernetes.io/provisioned-by": "skiff.dev/local-path"}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "1Gi"},
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "www-web-0",
                                 "namespace": "demo", "resourceVersion": "12", "uid": "3f1c"},
                    "hostPath": {"path": "/srv/skiff/volumes/pvc-3f1c", "type": "DirectoryOrCreate"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-2"]}
                    ]}]}},
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "standard",
                    "volumeMode": "Filesystem"
                }
            })
        );
        assert_eq!(volume_node(&volume), Some("node-2"));
    }

    #[test]
    fn claims_not_handed_over_are_left_alone() {
        let data_dir = Path::new("/srv/skiff");
        let wffc = class(WAIT_FOR_FIRST_CONSUMER);
        // Not asked by the binder, or asked but the scheduler has not chosen a node.
        let node_only = claim(json!({ANN_SELECTED_NODE: "node-1"}));
        assert_eq!(
            plan_volume(&node_only, &wffc, data_dir, None),
            Err(Skip::NotOurs)
        );
        let asked = claim(json!({ANN_BETA_STORAGE_PROVISIONER: PROVISIONER}));
        assert_eq!(
            plan_volume(&asked, &wffc, data_dir, Some("n")),
            Err(Skip::NotOurs)
        );
        // Another provisioner's claim.
        let theirs =
            claim(json!({ANN_STORAGE_PROVISIONER: "ebs.csi.aws.com", ANN_SELECTED_NODE: "n"}));
        assert_eq!(
            plan_volume(&theirs, &wffc, data_dir, Some("n")),
            Err(Skip::NotOurs)
        );
        // An Immediate class uses the local node, and fails without one.
        let immediate = class("Immediate");
        let volume = plan_volume(&asked, &immediate, data_dir, Some("local")).unwrap();
        assert_eq!(volume_node(&volume), Some("local"));
        assert_eq!(
            plan_volume(&asked, &immediate, data_dir, None),
            Err(Skip::Failed(
                "failed to provision volume with StorageClass \"standard\": configuration error, no node was specified"
                    .into()
            ))
        );
    }

    #[test]
    fn only_released_volumes_of_ours_with_delete_are_deleted() {
        let volume = |phase: &str, policy: &str, provisioner: &str| -> PersistentVolume {
            serde_json::from_value(json!({
                "metadata": {"name": "pvc-1", "annotations": {ANN_PROVISIONED_BY: provisioner}},
                "spec": {"persistentVolumeReclaimPolicy": policy},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        assert!(should_delete(&volume("Released", "Delete", PROVISIONER)));
        assert!(!should_delete(&volume("Bound", "Delete", PROVISIONER)));
        assert!(!should_delete(&volume("Released", "Retain", PROVISIONER)));
        assert!(!should_delete(&volume(
            "Released",
            "Delete",
            "other.dev/csi"
        )));
    }
}

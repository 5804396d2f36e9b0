//! The PersistentVolume controller and the local-path provisioner against an in-process API
//! server (which starts with the default `standard` class, WaitForFirstConsumer): static
//! binding and `Retain`, provisioning once a node is selected with the directory on the local
//! node, deletion of the volume and its directory under `Delete`, Immediate classes, and the
//! protection of claims in use and bound volumes.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::sharedpods::SharedPods;
use skiff_controllers::volume::{StorageConfig, localpath, persistentvolume, protection};
use std::path::PathBuf;

/// The node the provisioner treats as its own.
const LOCAL_NODE: &str = "node-1";

/// An API server with the storage controllers, keeping volumes under a fresh directory.
async fn start() -> (Client, PathBuf) {
    let client = api_server().await;
    let data_dir = std::env::temp_dir().join(format!("skiff-volumes-{}", uuid_like()));
    tokio::spawn(persistentvolume::run(client.clone()));
    tokio::spawn(protection::run(
        client.clone(),
        SharedPods::start(client.clone()),
    ));
    tokio::spawn(localpath::run(
        client.clone(),
        StorageConfig {
            data_dir: Some(data_dir.clone()),
            local_node: Some(LOCAL_NODE.into()),
        },
    ));
    (client, data_dir)
}

/// A name unique to this test process and moment.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

fn claim(name: &str, spec: serde_json::Value) -> PersistentVolumeClaim {
    let mut claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    for (key, value) in spec.as_object().unwrap() {
        claim["spec"][key] = value.clone();
    }
    serde_json::from_value(claim).unwrap()
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.status.as_ref()?.phase.as_deref()
}

fn phase_of_volume(volume: &PersistentVolume) -> Option<&str> {
    volume.status.as_ref()?.phase.as_deref()
}

async fn wait_for_claim_phase(
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    phase: &str,
) -> PersistentVolumeClaim {
    eventually(&format!("claim {name} {phase}"), || async {
        let claim = claims.get(name).await.ok()?;
        (phase_of_claim(&claim) == Some(phase)).then_some(claim)
    })
    .await
}

async fn wait_for_volume_phase(
    volumes: &Api<PersistentVolume>,
    name: &str,
    phase: &str,
) -> PersistentVolume {
    eventually(&format!("volume {name} {phase}"), || async {
        let volume = volumes.get(name).await.ok()?;
        (phase_of_volume(&volume) == Some(phase)).then_some(volume)
    })
    .await
}

/// The first event about `name` in `default` with `reason`, once there is one.
async fn wait_for_event(client: &Client, name: &str, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(&format!("event {reason} about {name}"), || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
    })
    .await
}

#[tokio::test]
async fn a_claim_binds_the_smallest_fitting_volume_and_retain_keeps_it() {
    let (client, _) = start().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for (name, size) in [("large", "10Gi"), ("small", "2Gi")] {
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": format!("/data/{name}")}}
        }))
        .unwrap();
        volumes
            .create(&PostParams::default(), &volume)
            .await
            .unwrap();
        wait_for_volume_phase(&volumes, name, "Available").await;
    }
    // `storageClassName: ""` asks for no class, so no default is given.
    let created = claims
        .create(
            &PostParams::default(),
            &claim("data", json!({"storageClassName": ""})),
        )
        .await
        .unwrap();
    let bound = wait_for_claim_phase(&claims, "data", "Bound").await;
    let spec = bound.spec.as_ref().unwrap();
    assert_eq!(spec.volume_name.as_deref(), Some("small"));
    assert_eq!(
        serde_json::to_value(bound.metadata.annotations.as_ref().unwrap()).unwrap(),
        json!({"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
    );
    assert_eq!(
        serde_json::to_value(bound.status.as_ref().unwrap()).unwrap(),
        json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}, "phase": "Bound"})
    );
    let volume = wait_for_volume_phase(&volumes, "small", "Bound").await;
    let claim_ref = volume.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.uid, created.metadata.uid);
    assert_eq!(claim_ref.namespace.as_deref(), Some("default"));
    assert_eq!(
        volume.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    assert_eq!(
        phase_of_volume(&volumes.get("large").await.unwrap()),
        Some("Available")
    );

    // The default reclaim policy of a hand-made volume is Retain: released, kept.
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let released = wait_for_volume_phase(&volumes, "small", "Released").await;
    assert!(released.spec.unwrap().claim_ref.is_some());
}

#[tokio::test]
async fn wait_for_first_consumer_provisions_on_the_selected_node_and_delete_cleans_up() {
    let (client, data_dir) = start().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let created = claims
        .create(&PostParams::default(), &claim("www", json!({})))
        .await
        .unwrap();
    // The DefaultStorageClass admission gave it the default class.
    assert_eq!(
        created.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let waiting = wait_for_event(&client, "www", "WaitForFirstConsumer").await;
    assert_eq!(
        waiting.message.as_deref(),
        Some("waiting for first consumer to be created before binding")
    );
    assert_eq!(
        waiting.source.unwrap().component.as_deref(),
        Some("persistentvolume-controller")
    );

    // What the scheduler does once it has placed a consumer.
    let selected =
        json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": LOCAL_NODE}}});
    claims
        .patch("www", &PatchParams::default(), &Patch::Merge(&selected))
        .await
        .unwrap();
    let bound = wait_for_claim_phase(&claims, "www", "Bound").await;
    let volume_name = format!("pvc-{}", created.uid().unwrap());
    assert_eq!(
        bound.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(volume_name.as_str())
    );
    assert_eq!(
        bound.annotations()["volume.kubernetes.io/storage-provisioner"],
        "skiff.dev/local-path"
    );
    assert_eq!(
        bound.annotations()["volume.beta.kubernetes.io/storage-provisioner"],
        "skiff.dev/local-path"
    );
    let volume = wait_for_volume_phase(&volumes, &volume_name, "Bound").await;
    let dir = data_dir.join("volumes").join(&volume_name);
    let spec = serde_json::to_value(volume.spec.as_ref().unwrap()).unwrap();
    assert_eq!(spec["hostPath"]["path"], dir.to_string_lossy().as_ref());
    assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(spec["storageClassName"], "standard");
    assert_eq!(
        spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [LOCAL_NODE]})
    );
    assert_eq!(
        volume.annotations()["pv.kubernetes.io/provisioned-by"],
        "skiff.dev/local-path"
    );
    assert!(dir.is_dir(), "{} was created", dir.display());
    let external = wait_for_event(&client, "www", "ExternalProvisioning").await;
    assert_eq!(
        external.message.as_deref(),
        Some(
            "Waiting for a volume to be created either by the external provisioner 'skiff.dev/local-path' \
             or manually by the system administrator. If volume creation is delayed, please verify that \
             the provisioner is running and correctly registered."
        )
    );
    let provisioning = wait_for_event(&client, "www", "Provisioning").await;
    assert_eq!(
        provisioning.message.as_deref(),
        Some("External provisioner is provisioning volume for claim \"default/www\"")
    );
    let succeeded = wait_for_event(&client, "www", "ProvisioningSucceeded").await;
    assert_eq!(
        succeeded.message,
        Some(format!("Successfully provisioned volume {volume_name}"))
    );
    assert_eq!(
        succeeded.source.unwrap().component,
        Some(format!("skiff.dev/local-path_{LOCAL_NODE}"))
    );

    // Deleting the claim releases the volume; Delete removes it and its directory.
    claims
        .delete("www", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the provisioned volume to be deleted", || async {
        volumes
            .get_opt(&volume_name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!dir.exists(), "{} was removed", dir.display());
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[tokio::test]
async fn immediate_classes_provision_at_once_and_retain_keeps_the_directory() {
    let (client, data_dir) = start().await;
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    let class = serde_json::from_value(json!({
        "metadata": {"name": "keep"}, "provisioner": "skiff.dev/local-path",
        "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let created = claims
        .create(
            &PostParams::default(),
            &claim("logs", json!({"storageClassName": "keep"})),
        )
        .await
        .unwrap();
    // No node is selected: the class's volumes go to the local node.
    let bound = wait_for_claim_phase(&claims, "logs", "Bound").await;
    assert!(
        bound
            .annotations()
            .get("volume.kubernetes.io/selected-node")
            .is_none()
    );
    let volume_name = format!("pvc-{}", created.uid().unwrap());
    let volume = wait_for_volume_phase(&volumes, &volume_name, "Bound").await;
    assert_eq!(localpath::volume_node(&volume), Some(LOCAL_NODE));
    let dir = data_dir.join("volumes").join(&volume_name);
    assert!(dir.is_dir());

    claims
        .delete("logs", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_volume_phase(&volumes, &volume_name, "Released").await;
    assert!(dir.is_dir(), "Retain keeps {}", dir.display());
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[tokio::test]
async fn a_class_that_does_not_exist_is_reported() {
    let (client, _) = start().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .create(
            &PostParams::default(),
            &claim("lost", json!({"storageClassName": "gold"})),
        )
        .await
        .unwrap();
    let failed = wait_for_event(&client, "lost", "ProvisioningFailed").await;
    assert_eq!(
        failed.message.as_deref(),
        Some("storageclass.storage.k8s.io \"gold\" not found")
    );
    assert_eq!(
        phase_of_claim(&claims.get("lost").await.unwrap()),
        Some("Pending")
    );
}

#[tokio::test]
async fn a_claim_naming_its_volume_binds_it_and_is_lost_without_it() {
    let (client, _) = start().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "chosen"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data/chosen"}}
    }))
    .unwrap();
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();
    claims
        .create(
            &PostParams::default(),
            &claim(
                "picky",
                json!({"storageClassName": "", "volumeName": "chosen"}),
            ),
        )
        .await
        .unwrap();
    let bound = wait_for_claim_phase(&claims, "picky", "Bound").await;
    // The user chose the volume: only bind-completed is added to the claim.
    assert_eq!(
        serde_json::to_value(bound.metadata.annotations.as_ref().unwrap()).unwrap(),
        json!({"pv.kubernetes.io/bind-completed": "yes"})
    );
    let volume = wait_for_volume_phase(&volumes, "chosen", "Bound").await;
    assert_eq!(
        volume.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );

    // A bound volume is protected from deletion; an administrator who removes the finalizer
    // takes it away under the claim: Lost, said once.
    volumes
        .delete("chosen", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let kept = volumes.get("chosen").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    volumes
        .patch(
            "chosen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_for_claim_phase(&claims, "picky", "Lost").await;
    let lost = wait_for_event(&client, "picky", "ClaimLost").await;
    assert_eq!(
        lost.message.as_deref(),
        Some("Bound claim has lost its PersistentVolume. Data on the volume is lost!")
    );
    assert_eq!(lost.type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn a_claim_in_use_and_its_bound_volume_wait_for_their_users() {
    let (client, _data_dir) = start().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-kept"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": "/tmp/pv-kept"}}
    }))
    .unwrap();
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "used"},
        "spec": {"storageClassName": "", "volumeName": "pv-kept", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "used"}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the claim bound", || async {
        let claim = claims.get("used").await.unwrap();
        let phase = claim.status.and_then(|s| s.phase);
        (phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    assert_eq!(
        claims.get("used").await.unwrap().finalizers(),
        ["kubernetes.io/pvc-protection"]
    );
    assert_eq!(
        volumes.get("pv-kept").await.unwrap().finalizers(),
        ["kubernetes.io/pv-protection"]
    );

    // Deleting both while the pod runs: they stay, marked for deletion.
    claims
        .delete("used", &DeleteParams::default())
        .await
        .unwrap();
    volumes
        .delete("pv-kept", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let claim = claims.get("used").await.unwrap();
    assert!(claim.metadata.deletion_timestamp.is_some());
    assert_eq!(claim.finalizers(), ["kubernetes.io/pvc-protection"]);
    assert!(volumes.get("pv-kept").await.is_ok(), "a bound volume stays");

    // The pod goes: the claim goes, the volume is released and goes too.
    pods.delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("the claim and the volume gone", || async {
        let claim = claims.get_opt("used").await.unwrap();
        let volume = volumes.get_opt("pv-kept").await.unwrap();
        (claim.is_none() && volume.is_none()).then_some(())
    })
    .await;
}

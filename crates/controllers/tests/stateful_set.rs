//! The StatefulSet controller against an in-process API server. With no node agent, the test
//! plays the kubelet: it reports pods Running and Ready when it wants the set to move on.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::sharedpods::SharedPods;
use skiff_controllers::statefulset;

async fn start() -> Client {
    let client = api_server().await;
    let pods = SharedPods::start(client.clone());
    tokio::spawn(statefulset::run(client.clone(), pods));
    client
}

/// Names of the live pods, sorted.
async fn pod_names(pods: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

/// Reports the pod Running and Ready, as a kubelet would.
async fn make_ready(pods: &Api<Pod>, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
    )
    .await
    .unwrap();
}

/// Waits until exactly `want` exist and run, making each ready as it appears.
async fn run_pods(pods: &Api<Pod>, want: &[&str]) {
    eventually(&format!("pods {want:?} running"), || async {
        let mut all_running = true;
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Running");
            if !running && pod.metadata.deletion_timestamp.is_none() {
                make_ready(pods, &pod.name_any()).await;
                all_running = false;
            }
        }
        (all_running && pod_names(pods).await == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn pods_come_in_order_with_their_claims_and_keep_them() {
    let client = start().await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "nginx",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();

    // Only web-0 exists until it is ready.
    eventually("web-0", || async {
        (pod_names(&pods).await == ["web-0"]).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pod_names(&pods).await, ["web-0"], "web-1 waits for web-0");
    let web0 = pods.get("web-0").await.unwrap();
    assert_eq!(
        web0.spec.as_ref().unwrap().hostname.as_deref(),
        Some("web-0")
    );
    assert_eq!(
        web0.spec.as_ref().unwrap().subdomain.as_deref(),
        Some("nginx")
    );
    assert_eq!(web0.labels()["apps.kubernetes.io/pod-index"], "0");
    assert!(
        claims.get("www-web-0").await.is_ok(),
        "the claim comes first"
    );

    run_pods(&pods, &["web-0", "web-1", "web-2"]).await;
    let status = eventually("three ready replicas", || async {
        let status = sets.get("web").await.unwrap().status?;
        (status.ready_replicas == Some(3)).then_some(status)
    })
    .await;
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.current_replicas, Some(3));

    // A deleted pod comes back with the same name and the same claim.
    let uid = web0.uid();
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    let back = eventually("web-0 to come back", || async {
        let pod = pods.get_opt("web-0").await.unwrap()?;
        (pod.uid() != uid).then_some(pod)
    })
    .await;
    let volume = &back.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-0"
    );
    run_pods(&pods, &["web-0", "web-1", "web-2"]).await;

    // Scaling down removes the highest ordinals; the claims stay (Retain).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    run_pods(&pods, &["web-0"]).await;
    let claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(claim_names.len(), 3, "{claim_names:?}");

    // A template change rolls web-0 onto the new revision.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:2"}]}}}})),
    )
    .await
    .unwrap();
    let status = eventually("the update to finish", || async {
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                make_ready(&pods, &pod.name_any()).await;
            }
        }
        let set = sets.get("web").await.unwrap();
        let status = set.status?;
        // A status written by a sync of the old template does not count.
        (status.observed_generation == set.metadata.generation
            && status.updated_replicas == Some(1)
            && status.ready_replicas == Some(1)
            && status.current_revision == status.update_revision)
            .then_some(status)
    })
    .await;
    let web0 = pods.get("web-0").await.unwrap();
    assert_eq!(
        web0.labels().get("controller-revision-hash"),
        status.update_revision.as_ref()
    );
}

#[tokio::test]
async fn claims_follow_the_retention_policy() {
    let client = start().await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "postgres"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap();
    let set = sets.create(&PostParams::default(), &set).await.unwrap();
    run_pods(&pods, &["db-0", "db-1"]).await;
    eventually("claims owned by the set", || async {
        let claim = claims.get("data-db-1").await.ok()?;
        let owners = claim.owner_references();
        (owners.len() == 1 && owners[0].uid == set.uid().unwrap()).then_some(())
    })
    .await;

    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    // The condemned pod's claim passes to the pod (the garbage collector then deletes it).
    eventually("db-1's claim owned by db-1", || async {
        let claim = claims.get_opt("data-db-1").await.unwrap()?;
        claim
            .owner_references()
            .iter()
            .any(|o| o.kind == "Pod" && o.name == "db-1")
            .then_some(())
    })
    .await;
}

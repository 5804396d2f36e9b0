//! The ReplicaSet controller against an in-process API server (no node agent, so pods stay
//! Pending unless a test reports them ready): replica counts, scaling both ways, replacing
//! deleted pods, adopting orphans, releasing pods that stop matching, status and events.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::replicaset;
use skiff_controllers::sharedpods::SharedPods;

async fn start() -> Client {
    let client = api_server().await;
    let pods = SharedPods::start(client.clone());
    tokio::spawn(replicaset::run(client.clone(), pods));
    client
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"note": "from template"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
    .unwrap()
}

/// The active pods that `rs` controls.
async fn owned_pods(pods: &Api<Pod>, rs: &ReplicaSet) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == rs.metadata.uid.as_ref() && o.controller == Some(true))
        })
        .collect()
}

async fn wait_for_pods(pods: &Api<Pod>, rs: &ReplicaSet, count: usize) -> Vec<Pod> {
    eventually(&format!("{count} pods of {}", rs.name_any()), || async {
        let owned = owned_pods(pods, rs).await;
        (owned.len() == count).then_some(owned)
    })
    .await
}

#[tokio::test]
async fn creates_scales_and_replaces_pods() {
    let client = start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs = sets
        .create(&PostParams::default(), &replica_set("web", 3))
        .await
        .unwrap();

    let created = wait_for_pods(&pods, &rs, 3).await;
    for pod in &created {
        assert!(pod.name_any().starts_with("web-"), "{}", pod.name_any());
        assert_eq!(pod.labels()["app"], "web");
        assert_eq!(pod.annotations()["note"], "from template");
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", "web")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    eventually("status of 3 replicas", || async {
        let status = sets.get("web").await.unwrap().status?;
        (status.replicas == 3 && status.observed_generation == Some(1)).then_some(())
    })
    .await;

    // A deleted pod is replaced.
    pods.delete(&created[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let replaced = wait_for_pods(&pods, &rs, 3).await;
    assert!(replaced.iter().all(|p| p.uid() != created[0].uid()));

    for replicas in [1, 5, 0] {
        sets.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
        wait_for_pods(&pods, &rs, replicas as usize).await;
    }
    let status = eventually("status after scaling to 0", || async {
        let rs = sets.get("web").await.unwrap();
        let status = rs.status?;
        (status.replicas == 0 && status.observed_generation == rs.metadata.generation)
            .then_some(status)
    })
    .await;
    assert_eq!(status.ready_replicas, Some(0));

    let events: Api<Event> = Api::namespaced(client, "default");
    let reasons = eventually("create and delete events", || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("web"))
            .filter_map(|e| e.reason)
            .collect();
        (reasons.iter().any(|r| r == "SuccessfulCreate")
            && reasons.iter().any(|r| r == "SuccessfulDelete"))
        .then_some(reasons)
    })
    .await;
    assert!(reasons.iter().all(|r| r.starts_with("Successful")));
}

#[tokio::test]
async fn adopts_orphans_and_releases_pods_that_stop_matching() {
    let client = start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "postgres"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();

    let rs = sets
        .create(&PostParams::default(), &replica_set("db", 2))
        .await
        .unwrap();
    let owned = wait_for_pods(&pods, &rs, 2).await;
    assert!(
        owned.iter().any(|p| p.name_any() == "orphan"),
        "the orphan was adopted, so only one pod was created"
    );

    // Relabelled, the orphan is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .unwrap();
    let owned = eventually("the relabelled pod to be released and replaced", || async {
        let owned = owned_pods(&pods, &rs).await;
        (owned.len() == 2 && owned.iter().all(|p| p.name_any() != "orphan")).then_some(owned)
    })
    .await;
    assert_eq!(owned.len(), 2);
    eventually("the released pod to lose its owner reference", || async {
        let released = pods.get("orphan").await.unwrap();
        released.owner_references().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn status_counts_ready_and_fully_labeled_pods() {
    let client = start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs = sets
        .create(&PostParams::default(), &replica_set("api", 2))
        .await
        .unwrap();
    let owned = wait_for_pods(&pods, &rs, 2).await;

    // Report one pod ready, as a kubelet would.
    let now = jiff::Timestamp::now().to_string();
    pods.patch_status(
        &owned[0].name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}
        ]}})),
    )
    .await
    .unwrap();
    let status = eventually("one ready replica", || async {
        let status = sets.get("api").await.unwrap().status?;
        (status.ready_replicas == Some(1)).then_some(status)
    })
    .await;
    assert_eq!(status.replicas, 2);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(1));
}

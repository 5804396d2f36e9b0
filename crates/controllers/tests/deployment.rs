//! The Deployment controller with the ReplicaSet controller against an in-process API server.
//! No node agent runs, so the test reports pods ready itself, as a kubelet would: a rollout
//! with every pod count observed against its bounds, revisions, events, and scaling.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::sharedpods::SharedPods;
use skiff_controllers::{deployment, replicaset};
use std::time::Duration;

async fn start() -> Client {
    let client = api_server().await;
    let pods = SharedPods::start(client.clone());
    tokio::spawn(deployment::run(client.clone(), pods.clone()));
    tokio::spawn(replicaset::run(client.clone(), pods));
    client
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Reports every pod that is not yet ready as ready, now and until the test ends.
fn make_pods_ready(pods: Api<Pod>) {
    tokio::spawn(async move {
        loop {
            for pod in pods.list(&ListParams::default()).await.unwrap().items {
                if is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = jiff::Timestamp::now().to_string();
                let ready = json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}
                ]}});
                // The pod may be gone meanwhile.
                let _ = pods
                    .patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(ready),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn web(replicas: i32, image: &str, cause: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"kubernetes.io/change-cause": cause}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .unwrap()
}

/// Waits until the Deployment's current generation is rolled out and returns it.
async fn wait_complete(deployments: &Api<Deployment>) -> Deployment {
    eventually("the rollout to complete", || async {
        let d = deployments.get("web").await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        let progressing = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing")?;
        let replicas = d.spec.as_ref()?.replicas;
        (status.observed_generation == d.metadata.generation
            && progressing.reason.as_deref() == Some("NewReplicaSetAvailable")
            && status.updated_replicas == replicas
            && status.available_replicas == replicas
            && status.replicas == replicas)
            .then_some(d)
    })
    .await
}

fn revision(object: &impl ResourceExt) -> Option<String> {
    object
        .annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

async fn scaling_events(events: &Api<Event>) -> Vec<String> {
    let mut events = events.list(&ListParams::default()).await.unwrap().items;
    events.retain(|e| e.reason.as_deref() == Some("ScalingReplicaSet"));
    events.sort_by_key(|e| e.first_timestamp.as_ref().map(|t| t.0));
    events.into_iter().filter_map(|e| e.message).collect()
}

#[tokio::test]
async fn a_rolling_update_stays_within_its_bounds_and_records_its_revisions() {
    let client = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    make_pods_ready(pods.clone());

    deployments
        .create(&PostParams::default(), &web(4, "nginx:1", "first"))
        .await
        .unwrap();
    let first = wait_complete(&deployments).await;
    assert_eq!(revision(&first).as_deref(), Some("1"));
    let old = sets.list(&ListParams::default()).await.unwrap().items;
    let [old] = old.as_slice() else {
        panic!("one replica set: {old:?}")
    };
    let hash = &old.labels()["pod-template-hash"];
    assert_eq!(old.name_any(), format!("web-{hash}"));
    assert_eq!(old.annotations()["kubernetes.io/change-cause"], "first");

    // Roll out a new image, counting pods all along: never more than 4 + 1, never fewer than
    // 4 - 1 ready.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"kubernetes.io/change-cause": "second"}},
                "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}
            })),
        )
        .await
        .unwrap();
    let second = loop {
        let live: Vec<Pod> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        assert!(live.len() <= 5, "{} pods exceed 4 + maxSurge 1", live.len());
        let ready = live.iter().filter(|p| is_ready(p)).count();
        assert!(
            ready >= 3,
            "{ready} ready pods are below 4 - maxUnavailable 1"
        );
        let d = deployments.get("web").await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        if status.observed_generation == d.metadata.generation
            && status.updated_replicas == Some(4)
            && status.available_replicas == Some(4)
            && status.replicas == Some(4)
        {
            break wait_complete(&deployments).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(revision(&second).as_deref(), Some("2"));
    let sets_now = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets_now.len(), 2);
    let new = sets_now.iter().find(|rs| rs.uid() != old.uid()).unwrap();
    assert_eq!(revision(new).as_deref(), Some("2"));
    assert_eq!(new.annotations()["kubernetes.io/change-cause"], "second");
    let old_now = sets.get(&old.name_any()).await.unwrap();
    assert_eq!(old_now.spec.unwrap().replicas, Some(0));
    let (old_name, new_name) = (old.name_any(), new.name_any());
    let expected = [
        format!("Scaled up replica set {old_name} from 0 to 4"),
        format!("Scaled up replica set {new_name} from 0 to 1"),
        format!("Scaled down replica set {old_name} from 4 to 3"),
    ];
    let recorded = eventually("the scaling events", || async {
        let recorded = scaling_events(&events).await;
        (recorded.len() >= 3).then_some(recorded)
    })
    .await;
    assert_eq!(recorded[..3], expected);

    // Scaling a finished rollout scales the new ReplicaSet alone.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    wait_complete(&deployments).await;
    let scaled = sets.get(&new_name).await.unwrap();
    assert_eq!(scaled.spec.as_ref().unwrap().replicas, Some(6));
    assert_eq!(
        scaled.annotations()["deployment.kubernetes.io/desired-replicas"],
        "6"
    );
    eventually("the scale-up event", || async {
        // The tenth distinct message within ten minutes is written as
        // "(combined from similar events): ...", as client-go's recorder does.
        let wanted = format!("Scaled up replica set {new_name} from 4 to 6");
        let recorded = scaling_events(&events).await;
        recorded.iter().any(|m| m.ends_with(&wanted)).then_some(())
    })
    .await;
}

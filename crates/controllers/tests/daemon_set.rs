//! The DaemonSet controller against an in-process API server, with nodes but no scheduler or
//! node agent: daemon pods name their node through node affinity and stay Pending, which is
//! all placement needs. Nodes coming, going, relabelled and tainted; revisions on update.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::daemonset::{self, eligibility};
use skiff_controllers::sharedpods::SharedPods;
use std::collections::BTreeMap;

async fn start() -> Client {
    let client = api_server().await;
    let pods = SharedPods::start(client.clone());
    tokio::spawn(daemonset::run(client.clone(), pods));
    client
}

async fn add_node(client: &Client, name: &str, labels: serde_json::Value) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

/// The DaemonSet's live pods by the node they are for.
async fn pods_by_node(pods: &Api<Pod>) -> BTreeMap<String, Vec<Pod>> {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = eligibility::target_node(&pod).expect("daemon pods name their node");
        by_node.entry(node.to_owned()).or_default().push(pod);
    }
    by_node
}

async fn wait_for_nodes(pods: &Api<Pod>, want: &[&str]) -> BTreeMap<String, Vec<Pod>> {
    eventually(&format!("daemon pods on exactly {want:?}"), || async {
        let by_node = pods_by_node(pods).await;
        let nodes: Vec<&str> = by_node.keys().map(String::as_str).collect();
        (nodes == want && by_node.values().all(|p| p.len() == 1)).then_some(by_node)
    })
    .await
}

#[tokio::test]
async fn follows_nodes_as_they_come_change_and_go() {
    let client = start().await;
    add_node(&client, "n1", json!({"log-enabled": "true"})).await;
    add_node(&client, "n2", json!({})).await;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "fluentd"},
        "spec": {
            "selector": {"matchLabels": {"app": "fluentd"}},
            "template": {
                "metadata": {"labels": {"app": "fluentd"}},
                "spec": {
                    "nodeSelector": {"log-enabled": "true"},
                    "containers": [{"name": "fluentd", "image": "fluentd:1"}]
                }
            }
        }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &ds).await.unwrap();

    let placed = wait_for_nodes(&pods, &["n1"]).await;
    let pod = &placed["n1"][0];
    assert!(pod.name_any().starts_with("fluentd-"));
    let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
    );
    let hash = pod.labels()["controller-revision-hash"].clone();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let revision = revisions.get(&format!("fluentd-{hash}")).await.unwrap();
    assert_eq!(revision.revision, 1);

    // Labelled, n2 gets a pod; a new node with the label too.
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"log-enabled": "true"}}})),
        )
        .await
        .unwrap();
    add_node(&client, "n3", json!({"log-enabled": "true"})).await;
    wait_for_nodes(&pods, &["n1", "n2", "n3"]).await;
    let status = eventually("status of three nodes", || async {
        let status = sets.get("fluentd").await.unwrap().status?;
        (status.desired_number_scheduled == 3 && status.current_number_scheduled == 3)
            .then_some(status)
    })
    .await;
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(
        status.number_unavailable,
        Some(3),
        "nothing runs the pods here"
    );

    // An untolerated NoExecute taint removes n2's pod; a cordon (tolerated) changes nothing.
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "n3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true, "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    wait_for_nodes(&pods, &["n1", "n3"]).await;

    // A deleted node's unbound pod is removed.
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    wait_for_nodes(&pods, &["n3"]).await;

    // The tutorial's stop: a nodeSelector no node has.
    sets.patch(
        "fluentd",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"non-existent-nodeselector": "NA"}}}}})),
    )
    .await
    .unwrap();
    wait_for_nodes(&pods, &[]).await;
}

#[tokio::test]
async fn template_changes_roll_out_as_new_revisions() {
    let client = start().await;
    for node in ["n1", "n2", "n3"] {
        add_node(&client, node, json!({})).await;
    }
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}
            }
        }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &ds).await.unwrap();
    let first = wait_for_nodes(&pods, &["n1", "n2", "n3"]).await;
    let old_hash = first["n1"][0].labels()["controller-revision-hash"].clone();

    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    // The old pods never became available, so all are replaced at once.
    let updated = eventually("every node on the new revision", || async {
        let by_node = pods_by_node(&pods).await;
        let hashes: Vec<String> = by_node
            .values()
            .flatten()
            .map(|p| p.labels()["controller-revision-hash"].clone())
            .collect();
        (hashes.len() == 3 && hashes.iter().all(|h| *h != old_hash)).then_some(hashes)
    })
    .await;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let current = revisions
        .get(&format!("agent-{}", updated[0]))
        .await
        .unwrap();
    assert_eq!(current.revision, 2);
    let old = revisions.get(&format!("agent-{old_hash}")).await.unwrap();
    assert_eq!(old.revision, 1);
    let image =
        &current.data.as_ref().unwrap().0["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "agent:2");
}

//! The node lifecycle, taint eviction and pod GC controllers against an in-process API server:
//! a node whose Lease stops being renewed goes Unknown and tainted, its pods are evicted as
//! their tolerations say, it loses the taints when it comes back; pods of deleted nodes and
//! terminated pods over the threshold are collected; repeated events are counted.

mod common;

use common::{api_server, eventually};
use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_controllers::events::{EventRecorder, EventType, reference};
use skiff_controllers::nodelifecycle::{self, NodeLifecycleConfig};
use skiff_controllers::podgc::{self, PodGcConfig};
use skiff_controllers::sharedpods::SharedPods;
use skiff_controllers::tainteviction;
use std::time::Duration;

fn now_micro() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S.%6fZ", Timestamp::now()).unwrap()
}

fn now_seconds() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", Timestamp::now()).unwrap()
}

/// Registers a node with a Ready condition and a Lease, as a kubelet does.
async fn register_node(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("creating node");
    post_ready(client, name, "True").await;
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await
        .expect("creating lease");
}

/// Posts the node's Ready condition with a fresh heartbeat, as the kubelet does.
async fn post_ready(client: &Client, name: &str, status: &str) {
    let now = now_seconds();
    let condition = json!({
        "type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    });
    let patch = json!({"status": {"conditions": [condition]}});
    Api::<Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("posting node status");
}

async fn renew_lease(client: &Client, name: &str) {
    let patch = json!({"spec": {"renewTime": now_micro()}});
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("renewing lease");
}

/// Keeps `name`'s Lease renewed until the test ends.
fn keep_alive(client: &Client, name: &str) {
    let (client, name) = (client.clone(), name.to_owned());
    tokio::spawn(async move {
        loop {
            renew_lease(&client, &name).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

/// Creates a running, ready pod bound to `node` with `tolerations`.
async fn running_pod(client: &Client, name: &str, node: &str, tolerations: Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}], "tolerations": tolerations},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating pod");
    let now = now_seconds();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status")
}

async fn events_about(client: &Client, namespace: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("listing events")
        .items
}

fn taint_keys(node: &Node) -> Vec<(String, String, bool)> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut keys: Vec<_> = taints
        .into_iter()
        .map(|t| (t.key, t.effect, t.time_added.is_some()))
        .collect();
    keys.sort();
    keys
}

fn is_terminating(pod: &Option<Pod>) -> bool {
    pod.as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

#[tokio::test]
async fn a_silent_node_goes_unknown_is_tainted_its_pods_evicted_and_it_recovers() {
    let client = api_server().await;
    register_node(&client, "healthy").await;
    register_node(&client, "silent").await;
    // One healthy node keeps the zone out of full disruption, in which upstream stops tainting.
    keep_alive(&client, "healthy");
    let unreachable = |seconds: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = s.into();
        }
        json!([t])
    };
    running_pod(&client, "zero", "silent", unreachable(Some(0))).await;
    running_pod(&client, "three-seconds", "silent", unreachable(Some(3))).await;
    running_pod(&client, "forever", "silent", unreachable(None)).await;

    let config = NodeLifecycleConfig {
        node_monitor_period: Duration::from_millis(200),
        node_monitor_grace_period: Duration::from_secs(2),
        node_startup_grace_period: Duration::from_secs(2),
        ..Default::default()
    };
    tokio::spawn(nodelifecycle::run(client.clone(), config));
    tokio::spawn(tainteviction::run(client.clone()));

    let nodes: Api<Node> = Api::all(client.clone());
    let silent = eventually("the silent node to be tainted unreachable", || {
        nodes.get("silent").map(|n| {
            let n = n.unwrap();
            let wanted = vec![
                (
                    "node.kubernetes.io/unreachable".to_owned(),
                    "NoExecute".to_owned(),
                    true,
                ),
                (
                    "node.kubernetes.io/unreachable".to_owned(),
                    "NoSchedule".to_owned(),
                    true,
                ),
            ];
            (taint_keys(&n) == wanted).then_some(n)
        })
    })
    .await;
    let tainted_at = tokio::time::Instant::now();
    let ready = silent
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let kinds: Vec<(String, String)> = silent
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(
            kinds.contains(&(kind.to_owned(), "Unknown".to_owned())),
            "{kind} is Unknown: {kinds:?}"
        );
    }
    assert_eq!(taint_keys(&nodes.get("healthy").await.unwrap()), vec![]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("the pod tolerating 0 s to be evicted", || {
        pods.get_opt("zero")
            .map(|p| is_terminating(&p.unwrap()).then_some(()))
    })
    .await;
    let forever = pods.get("forever").await.unwrap();
    let forever_ready = forever
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        forever_ready.status, "False",
        "pods on an unreachable node are not ready"
    );
    eventually("the pod tolerating 3 s to be evicted", || {
        pods.get_opt("three-seconds")
            .map(|p| is_terminating(&p.unwrap()).then_some(()))
    })
    .await;
    assert!(
        tainted_at.elapsed() >= Duration::from_millis(2500),
        "evicted after its tolerationSeconds, not before"
    );
    let evicted = pods.get("zero").await.unwrap();
    let disruption = evicted
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(disruption.reason.as_deref(), Some("DeletionByTaintManager"));
    assert_eq!(
        disruption.message.as_deref(),
        Some("Taint manager: deleting due to NoExecute taint")
    );

    let node_events = eventually("the NodeNotReady event", || {
        events_about(&client, "default", "silent").map(|events| {
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("NodeNotReady"))
                .then_some(events)
        })
    })
    .await;
    let not_ready = node_events
        .iter()
        .find(|e| e.reason.as_deref() == Some("NodeNotReady"))
        .unwrap();
    assert_eq!(
        not_ready.message.as_deref(),
        Some("Node silent status is now: NodeNotReady")
    );
    assert_eq!(not_ready.type_.as_deref(), Some("Normal"));
    assert_eq!(
        not_ready.source.as_ref().unwrap().component.as_deref(),
        Some("node-controller")
    );
    assert_eq!(not_ready.involved_object.kind.as_deref(), Some("Node"));
    let registered = node_events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RegisteredNode"))
        .expect("RegisteredNode event");
    assert_eq!(
        registered.message.as_deref(),
        Some("Node silent event: Registered Node silent in Controller")
    );
    let eviction = eventually("the TaintManagerEviction event", || {
        events_about(&client, "default", "zero").map(|events| {
            events
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("TaintManagerEviction"))
        })
    })
    .await;
    assert_eq!(
        eviction.message.as_deref(),
        Some("Marking for deletion Pod default/zero")
    );
    assert_eq!(
        eviction.reporting_component.as_deref(),
        Some("taint-eviction-controller")
    );
    let pod_not_ready = eventually("the pod's NodeNotReady event", || {
        events_about(&client, "default", "forever").map(|events| {
            events
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("NodeNotReady"))
        })
    })
    .await;
    assert_eq!(
        (
            pod_not_ready.type_.as_deref(),
            pod_not_ready.message.as_deref()
        ),
        (Some("Warning"), Some("Node is not ready"))
    );

    // The kubelet comes back: Lease renewed, Ready posted.
    keep_alive(&client, "silent");
    post_ready(&client, "silent", "True").await;
    eventually("the taints to go", || {
        nodes
            .get("silent")
            .map(|n| taint_keys(&n.unwrap()).is_empty().then_some(()))
    })
    .await;
    assert!(
        !is_terminating(&pods.get_opt("forever").await.unwrap()),
        "a pod tolerating for ever stays"
    );
}

#[tokio::test]
async fn pods_that_do_not_tolerate_a_no_execute_taint_are_evicted_at_once() {
    let client = api_server().await;
    register_node(&client, "n1").await;
    running_pod(&client, "intolerant", "n1", json!([])).await;
    running_pod(
        &client,
        "tolerant",
        "n1",
        json!([{"key": "example.com/maintenance", "operator": "Exists"}]),
    )
    .await;
    tokio::spawn(tainteviction::run(client.clone()));
    let patch =
        json!({"spec": {"taints": [{"key": "example.com/maintenance", "effect": "NoExecute"}]}});
    Api::<Node>::all(client.clone())
        .patch("n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("the intolerant pod to be evicted", || {
        pods.get_opt("intolerant")
            .map(|p| is_terminating(&p.unwrap()).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!is_terminating(&pods.get_opt("tolerant").await.unwrap()));
}

#[tokio::test]
async fn pods_of_deleted_nodes_and_terminated_pods_over_the_threshold_are_collected() {
    let client = api_server().await;
    register_node(&client, "doomed").await;
    running_pod(&client, "orphan", "doomed", json!([])).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all = ListParams::default();
    for name in ["done-a", "done-b", "done-c", "done-d"] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    }
    let config = PodGcConfig {
        terminated_pod_gc_threshold: 2,
        gc_check_period: Duration::from_millis(200),
        quarantine_time: Duration::from_millis(500),
    };
    tokio::spawn(podgc::run(
        client.clone(),
        SharedPods::start(client.clone()),
        config,
    ));

    // Same creation second: the names break the tie, so the first two go.
    eventually("the two oldest terminated pods to go", || {
        pods.list(&all).map(|list| {
            let mut names: Vec<String> = list
                .unwrap()
                .items
                .iter()
                .map(|p| p.name_any())
                .filter(|n| n.starts_with("done-"))
                .collect();
            names.sort();
            (names == ["done-c", "done-d"]).then_some(())
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        pods.get_opt("orphan").await.unwrap().is_some(),
        "pods of existing nodes stay"
    );

    Api::<Node>::all(client.clone())
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the orphaned pod to be force-deleted", || {
        pods.get_opt("orphan")
            .map(|p| p.unwrap().is_none().then_some(()))
    })
    .await;
}

#[tokio::test]
async fn repeated_events_are_counted_on_one_event() {
    let client = api_server().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let recorder = EventRecorder::new(client.clone(), "test-controller");
    for _ in 0..3 {
        recorder.record(
            &reference(&pod),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container",
        );
    }
    recorder.record(
        &reference(&pod),
        EventType::Normal,
        "Pulled",
        "Container image \"nginx\" already present on machine",
    );
    let events = eventually("the events to be written", || {
        events_about(&client, "default", "p").map(|events| {
            let counted = events
                .iter()
                .any(|e| e.reason.as_deref() == Some("BackOff") && e.count == Some(3));
            (counted && events.len() == 2).then_some(events)
        })
    })
    .await;
    let back_off = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackOff"))
        .unwrap();
    assert!(back_off.metadata.name.as_deref().unwrap().starts_with("p."));
    assert_eq!(back_off.involved_object.uid, pod.metadata.uid);
    assert_eq!(back_off.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(
        back_off.reporting_component.as_deref(),
        Some("test-controller")
    );
    assert_eq!(back_off.type_.as_deref(), Some("Warning"));
}

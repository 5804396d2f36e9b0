//! The scheduler against a real API server in-process (router transport, in-memory store):
//! binding, the unschedulable condition and event, and rescheduling after a node change.

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_apiserver::ApiServer;
use skiff_scheduler::SchedulerConfig;
use skiff_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

async fn client() -> Client {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let api = ApiServer::new(store, "127.0.0.1:6443".into())
        .await
        .unwrap();
    Client::new(api.router(), "default")
}

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap()
}

fn node(name: &str, labels: Value, taints: Value) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    })
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// Polls `check` until it returns `Some`, for up to 10 seconds.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.unwrap().spec.and_then(|s| s.node_name)
}

async fn events_for(events: &Api<Event>, pod: &str, reason: &str) -> Vec<Event> {
    let all = events.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test]
async fn schedules_reports_unschedulable_and_retries_on_node_change() {
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    create(&nodes, node("node-a", json!({"disk": "hdd"}), json!([]))).await;
    create(
        &nodes,
        node(
            "node-b",
            json!({}),
            json!([{"key": "key", "value": "value", "effect": "NoSchedule"}]),
        ),
    )
    .await;
    create(&nodes, node("node-c", json!({"disk": "hdd"}), json!([]))).await;
    let config = SchedulerConfig {
        host: "test-host".into(),
        ..Default::default()
    };
    let scheduler = tokio::spawn(skiff_scheduler::run(client.clone(), config));

    // A plain pod lands on an untainted node, with a Scheduled event.
    create(&pods, pod("plain", json!({}))).await;
    let node = eventually("plain to be bound", || node_of(&pods, "plain")).await;
    assert!(node == "node-a" || node == "node-c", "{node}");
    let scheduled = eventually("the Scheduled event", || async {
        events_for(&events, "plain", "Scheduled").await.pop()
    })
    .await;
    assert_eq!(
        scheduled.message.as_deref(),
        Some(format!("Successfully assigned default/plain to {node}").as_str())
    );
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(
        scheduled.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(
        scheduled.reporting_instance.as_deref(),
        Some("default-scheduler-test-host")
    );
    assert_eq!(
        scheduled.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );
    let bound = pods.get("plain").await.unwrap();
    let condition = bound
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(condition.status, "True");

    // A pod no node fits: the condition and a FailedScheduling event, worded as upstream.
    create(
        &pods,
        pod("picky", json!({"nodeSelector": {"disk": "ssd"}})),
    )
    .await;
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let condition = eventually("the Unschedulable condition", || async {
        let pod = pods.get("picky").await.unwrap();
        pod.status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
    })
    .await;
    assert_eq!(
        (
            condition.status.as_str(),
            condition.reason.as_deref(),
            condition.message.as_deref()
        ),
        ("False", Some("Unschedulable"), Some(want))
    );
    let failed = eventually("the FailedScheduling event", || async {
        events_for(&events, "picky", "FailedScheduling").await.pop()
    })
    .await;
    assert_eq!(
        (failed.type_.as_deref(), failed.message.as_deref()),
        (Some("Warning"), Some(want))
    );
    // It waits for a change rather than retrying in a loop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        events_for(&events, "picky", "FailedScheduling").await.len(),
        1
    );

    // Labelling a node makes it schedulable there.
    let label = json!({"metadata": {"labels": {"disk": "ssd"}}});
    nodes
        .patch("node-c", &PatchParams::default(), &Patch::Merge(label))
        .await
        .unwrap();
    let node = eventually("picky to be bound", || node_of(&pods, "picky")).await;
    assert_eq!(node, "node-c");
    scheduler.abort();
}

#[tokio::test]
async fn daemon_pods_go_to_their_node_and_resources_are_counted() {
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["node-a", "node-b"] {
        create(&nodes, node(name, json!({}), json!([]))).await;
    }
    let scheduler = tokio::spawn(skiff_scheduler::run(
        client.clone(),
        SchedulerConfig::default(),
    ));
    let on_b = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}]}}}});
    create(&pods, pod("daemon", on_b)).await;
    assert_eq!(
        eventually("daemon to be bound", || node_of(&pods, "daemon")).await,
        "node-b"
    );

    // Two pods of 3 cpu each cannot share a 4-cpu node: assumed placements count at once.
    let big = json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "3"}}}]});
    create(&pods, pod("big-1", big.clone())).await;
    create(&pods, pod("big-2", big.clone())).await;
    let first = eventually("big-1 to be bound", || node_of(&pods, "big-1")).await;
    let second = eventually("big-2 to be bound", || node_of(&pods, "big-2")).await;
    assert_ne!(first, second);
    create(&pods, pod("big-3", big)).await;
    let condition = eventually("big-3 to be unschedulable", || async {
        let pod = pods.get("big-3").await.unwrap();
        pod.status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
    })
    .await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        )
    );
    // Deleting a pod frees its node.
    pods.delete("big-1", &Default::default()).await.unwrap();
    pods.delete(
        "big-1",
        &kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .ok();
    assert_eq!(
        eventually("big-3 to be bound", || node_of(&pods, "big-3")).await,
        first
    );
    scheduler.abort();
}

/// The scheduler benchmark in-process: `SKIFF_BENCH_NODES` nodes (default 5000) and
/// `SKIFF_BENCH_PODS` pods (default 50000). Run with
/// `cargo test --release -p skiff-scheduler --test in_process bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench() {
    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let client = client().await;
    let report = skiff_scheduler::bench::bench(
        client,
        "default",
        size("SKIFF_BENCH_NODES", 5000),
        size("SKIFF_BENCH_PODS", 50_000),
        SchedulerConfig::default(),
    )
    .await
    .unwrap();
    println!("{report:?}");
}

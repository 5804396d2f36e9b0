//! The agent and the simulator against an in-process API server (in-memory store, kube client
//! over the router): registration, heartbeats, pod lifecycles, scripted behaviour, adoption,
//! simulated failures and restarts.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_agent::{
    AgentConfig, HeartbeatTimings, SimConfig, SimRuntime, SimTiming, run_node_agent,
    run_pod_cidr_allocator, run_simulator,
};
use skiff_apiserver::ApiServer;
use skiff_store::sqlite::SqliteStore;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Fast heartbeats so tests see several renewals in a few seconds.
fn fast_heartbeats() -> HeartbeatTimings {
    HeartbeatTimings {
        lease_duration: Duration::from_secs(40),
        renew_interval: Duration::from_millis(500),
        status_report_interval: Duration::from_secs(2),
    }
}

/// An API server with the pod CIDR allocator; the server lives as long as the client is used.
async fn cluster() -> kube::Client {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let api = ApiServer::new(store, "127.0.0.1:6443".into())
        .await
        .unwrap();
    let client = kube::Client::new(api.router(), "default");
    tokio::spawn(run_pod_cidr_allocator(
        client.clone(),
        "10.244.0.0/16".parse().unwrap(),
    ));
    client
}

fn simulator(client: &kube::Client, nodes: usize) -> tokio::task::JoinHandle<()> {
    let config = SimConfig {
        nodes,
        heartbeat: fast_heartbeats(),
        ..SimConfig::default()
    };
    let client = client.clone();
    tokio::spawn(async move { run_simulator(client, config).await.unwrap() })
}

/// Polls `probe` until it returns `Some`, failing the test after [`TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// The node once the agent posted Ready=True.
async fn ready_node(client: &kube::Client, name: &str) -> Value {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(&format!("node {name} Ready"), || async {
        let node = get_json(&nodes, name).await?;
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && node["spec"]["podCIDR"].is_string()).then_some(node)
    })
    .await
}

async fn lease_renew_time(client: &kube::Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    get_json(&leases, name)
        .await
        .and_then(|l| l["spec"]["renewTime"].as_str().map(String::from))
}

async fn create_pod(
    client: &kube::Client,
    name: &str,
    node: &str,
    restart_policy: &str,
    annotations: Value,
) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"nodeName": node, "restartPolicy": restart_policy, "containers": [{"name": "c", "image": "nginx:1.27"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// Waits until `check` accepts the pod's JSON, and returns it.
async fn pod_where(
    client: &kube::Client,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(&format!("pod {name}: {what}"), || async {
        get_json(&pods, name).await.filter(|p| check(p))
    })
    .await
}

fn condition<'a>(pod: &'a Value, type_: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready")["status"] == "True"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_register_and_heartbeat_as_upstream() {
    let client = cluster().await;
    simulator(&client, 2);
    let node = ready_node(&client, "sim-0002").await;
    assert_eq!(
        node["metadata"]["annotations"]["skiff.dev/simulated"],
        "true"
    );
    for (label, value) in [
        ("kubernetes.io/hostname", "sim-0002"),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "skiff-sim"),
    ] {
        assert_eq!(node["metadata"]["labels"][label], value, "{label}");
    }
    assert!(node["metadata"]["labels"]["kubernetes.io/arch"].is_string());
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert_eq!(node["status"]["capacity"]["cpu"], "32");
    assert_eq!(node["status"]["allocatable"]["memory"], "256Gi");
    assert!(node["status"]["capacity"]["ephemeral-storage"].is_string());
    let conditions: Vec<(&str, &str, &str, &str)> = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
                c["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"
            ),
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure"
            ),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available"
            ),
            (
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status"
            ),
        ]
    );
    let cidr = node["spec"]["podCIDR"].as_str().unwrap();
    assert!(
        cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
        "{cidr}"
    );
    assert_eq!(node["spec"]["podCIDRs"], json!([cidr]));
    assert_eq!(node["status"]["addresses"][0]["type"], "InternalIP");
    assert_eq!(
        node["status"]["addresses"][1],
        json!({"type": "Hostname", "address": "sim-0002"})
    );
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.33.0");
    assert_eq!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"],
        "skiff-sim://0.1.0"
    );
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    let other = ready_node(&client, "sim-0001").await;
    assert_ne!(
        other["spec"]["podCIDR"], node["spec"]["podCIDR"],
        "each node has its own pod CIDR"
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually("the node lease", || get_json(&leases, "sim-0002")).await;
    assert_eq!(lease["spec"]["holderIdentity"], "sim-0002");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    eventually("a lease renewal", || async {
        lease_renew_time(&client, "sim-0002")
            .await
            .filter(|t| *t != first)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_runs_and_graceful_deletion_removes_it() {
    let client = cluster().await;
    simulator(&client, 1);
    let node = ready_node(&client, "sim-0001").await;
    let created = create_pod(&client, "web", "sim-0001", "Always", json!({})).await;
    let pod = pod_where(&client, "web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && is_ready(p)
    })
    .await;
    let status = &pod["status"];
    let cidr: skiff_agent::Ipv4Cidr = node["spec"]["podCIDR"].as_str().unwrap().parse().unwrap();
    let pod_ip: std::net::Ipv4Addr = status["podIP"].as_str().unwrap().parse().unwrap();
    assert!(cidr.contains(pod_ip), "{pod_ip} in {cidr}");
    assert_eq!(status["podIPs"], json!([{"ip": pod_ip.to_string()}]));
    assert_eq!(status["hostIP"], node["status"]["addresses"][0]["address"]);
    assert_eq!(status["hostIPs"], json!([{"ip": status["hostIP"]}]));
    assert!(status["startTime"].is_string());
    assert_eq!(
        status["qosClass"],
        created
            .status
            .unwrap()
            .qos_class
            .map_or(Value::Null, Value::from),
        "qosClass kept"
    );
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "True")
    );
    let container = &status["containerStatuses"][0];
    assert_eq!(container["name"], "c");
    assert_eq!(container["image"], "nginx:1.27");
    assert!(
        container["imageID"]
            .as_str()
            .unwrap()
            .starts_with("nginx@sha256:")
    );
    assert!(
        container["containerID"]
            .as_str()
            .unwrap()
            .starts_with("skiff-sim://")
    );
    assert_eq!(
        (
            container["ready"].clone(),
            container["started"].clone(),
            container["restartCount"].clone()
        ),
        (json!(true), json!(true), json!(0))
    );
    assert!(container["state"]["running"]["startedAt"].is_string());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the pod to be removed", || async {
        pods.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_annotations_script_readiness_and_exits() {
    let client = cluster().await;
    simulator(&client, 1);
    ready_node(&client, "sim-0001").await;
    create_pod(
        &client,
        "never",
        "sim-0001",
        "Always",
        json!({"skiff.dev/sim-ready-after": "never"}),
    )
    .await;
    create_pod(
        &client,
        "flaky",
        "sim-0001",
        "Always",
        json!({"skiff.dev/sim-unready-after": "1s"}),
    )
    .await;
    create_pod(
        &client,
        "fails",
        "sim-0001",
        "Never",
        json!({"skiff.dev/sim-exit-after": "500ms", "skiff.dev/sim-exit-code": "3"}),
    )
    .await;
    create_pod(
        &client,
        "job",
        "sim-0001",
        "OnFailure",
        json!({"skiff.dev/sim-exit-after": "0s"}),
    )
    .await;
    let crasher = create_pod(
        &client,
        "crasher",
        "sim-0001",
        "Always",
        json!({"skiff.dev/sim-exit-after": "0s", "skiff.dev/sim-exit-code": "1"}),
    )
    .await;

    let never = pod_where(&client, "never", "Running", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    assert_eq!(condition(&never, "Ready")["status"], "False");
    assert_eq!(condition(&never, "Ready")["reason"], "ContainersNotReady");
    assert_eq!(
        condition(&never, "Ready")["message"],
        "containers with unready status: [c]"
    );
    assert_eq!(never["status"]["containerStatuses"][0]["started"], true);

    pod_where(&client, "flaky", "Ready", is_ready).await;
    pod_where(&client, "flaky", "unready again", |p| {
        condition(p, "Ready")["status"] == "False" && p["status"]["phase"] == "Running"
    })
    .await;

    let failed = pod_where(&client, "fails", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    })
    .await;
    let terminated = &failed["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (terminated["exitCode"].clone(), terminated["reason"].clone()),
        (json!(3), json!("Error"))
    );
    assert_eq!(condition(&failed, "Ready")["reason"], "PodCompleted");

    let job = pod_where(&client, "job", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await;
    assert_eq!(
        job["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(job["status"]["containerStatuses"][0]["restartCount"], 0);

    let backing_off = pod_where(&client, "crasher", "CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let container = &backing_off["status"]["containerStatuses"][0];
    let uid = crasher.metadata.uid.unwrap();
    assert_eq!(
        container["state"]["waiting"]["message"],
        format!("back-off 10s restarting failed container=c pod=crasher_default({uid})")
    );
    assert_eq!(
        container["restartCount"], 1,
        "the first restart is immediate"
    );
    assert_eq!(container["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(container["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(backing_off["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stopping_pod_is_removed_after_it_stops() {
    let client = cluster().await;
    simulator(&client, 1);
    ready_node(&client, "sim-0001").await;
    create_pod(
        &client,
        "slow",
        "sim-0001",
        "Always",
        json!({"skiff.dev/sim-stop-after": "1s"}),
    )
    .await;
    pod_where(&client, "slow", "Ready", is_ready).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = std::time::Instant::now();
    pods.delete("slow", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("slow").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "a bound pod stays while it stops"
    );
    eventually("the pod to be removed", || async {
        pods.get_opt("slow").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "removed only once its container stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_nodes_are_adopted_and_dropped() {
    let client = cluster().await;
    simulator(&client, 0);
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "handmade", "annotations": {"skiff.dev/simulated": "true"}}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let plain: Node = serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap();
    nodes.create(&PostParams::default(), &plain).await.unwrap();
    ready_node(&client, "handmade").await;
    // Labels of an adopted node are added by their own write, which may land after Ready.
    eventually("the adopted node's labels", || async {
        let node = get_json(&nodes, "handmade").await?;
        (node["metadata"]["labels"]["kubernetes.io/hostname"] == "handmade").then_some(())
    })
    .await;
    eventually("the lease", || lease_renew_time(&client, "handmade")).await;

    nodes
        .delete("handmade", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last = lease_renew_time(&client, "handmade").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        lease_renew_time(&client, "handmade").await,
        last,
        "a deleted node's lease is no longer renewed"
    );
    assert!(
        get_json(&nodes, "plain").await.unwrap()["status"]["conditions"].is_null(),
        "nodes without the annotation are not simulated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_annotation_stops_and_restores_heartbeats() {
    let client = cluster().await;
    simulator(&client, 1);
    ready_node(&client, "sim-0001").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let annotate = |value: Value| {
        let nodes = nodes.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"skiff.dev/heartbeat": value}}});
            nodes
                .patch("sim-0001", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    annotate(json!("stopped")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = lease_renew_time(&client, "sim-0001").await;
    // What the node lifecycle controller does to a silent node.
    let unknown = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]}});
    nodes
        .patch_status(
            "sim-0001",
            &PatchParams::default(),
            &Patch::Strategic(&unknown),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        lease_renew_time(&client, "sim-0001").await,
        stopped_at,
        "no renewals while stopped"
    );
    let node = get_json(&nodes, "sim-0001").await.unwrap();
    assert_eq!(
        condition(&node, "Ready")["status"],
        "Unknown",
        "no status writes while stopped"
    );

    annotate(Value::Null).await;
    ready_node(&client, "sim-0001").await;
    eventually("renewals again", || async {
        lease_renew_time(&client, "sim-0001")
            .await
            .filter(|t| Some(t) != stopped_at.as_ref())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_simulator_resumes_its_pods() {
    let client = cluster().await;
    let first = simulator(&client, 1);
    ready_node(&client, "sim-0001").await;
    create_pod(&client, "web", "sim-0001", "Always", json!({})).await;
    let before = pod_where(&client, "web", "Ready", is_ready).await;
    first.abort();
    let _ = first.await;
    simulator(&client, 1);
    // A new pod shows the restarted simulator is at work; the old one is left as it ran.
    create_pod(&client, "after", "sim-0001", "Always", json!({})).await;
    let after = pod_where(&client, "after", "Ready", is_ready).await;
    let web = pod_where(&client, "web", "still Ready", is_ready).await;
    assert_eq!(
        web["status"]["containerStatuses"],
        before["status"]["containerStatuses"]
    );
    assert_eq!(web["status"]["podIP"], before["status"]["podIP"]);
    assert_ne!(
        after["status"]["podIP"], web["status"]["podIP"],
        "pod IPs in use are not given again"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_registers_its_node_and_runs_its_pods() {
    let client = cluster().await;
    let mut config = AgentConfig::new(
        "Local-Node",
        Arc::new(SimRuntime::new(SimTiming::default())),
    );
    config.node_ip = Some("192.168.1.5".parse().unwrap());
    config.heartbeat = fast_heartbeats();
    let agent_client = client.clone();
    tokio::spawn(async move { run_node_agent(agent_client, config).await.unwrap() });
    let node = ready_node(&client, "local-node").await;
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "local-node"
    );
    assert!(node["metadata"]["labels"]["node.kubernetes.io/instance-type"].is_null());
    assert_eq!(
        node["status"]["addresses"][0],
        json!({"type": "InternalIP", "address": "192.168.1.5"})
    );
    assert!(
        node["status"]["capacity"]["memory"]
            .as_str()
            .unwrap()
            .ends_with("Ki")
    );
    create_pod(&client, "web", "local-node", "Always", json!({})).await;
    let pod = pod_where(&client, "web", "Ready", is_ready).await;
    assert_eq!(pod["status"]["hostIP"], "192.168.1.5");
}

/// A scale probe (run with `--ignored --nocapture`): nodes registered and pods Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_probe() {
    let nodes: usize = std::env::var("SIM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(250);
    let pods_per_node: usize = std::env::var("SIM_PODS_PER_NODE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let client = cluster().await;
    let started = std::time::Instant::now();
    simulator(&client, nodes);
    ready_node(&client, &format!("sim-{nodes:04}")).await;
    let node_api: Api<Node> = Api::all(client.clone());
    eventually("all nodes Ready", || async {
        let list = node_api.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .all(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| !c.is_empty())
            })
            .then_some(())
    })
    .await;
    println!("{nodes} nodes Ready after {:?}", started.elapsed());
    let started = std::time::Instant::now();
    for n in 1..=nodes {
        for p in 0..pods_per_node {
            create_pod(
                &client,
                &format!("p-{n}-{p}"),
                &format!("sim-{n:04}"),
                "Always",
                json!({}),
            )
            .await;
        }
    }
    println!(
        "{} pods created after {:?}",
        nodes * pods_per_node,
        started.elapsed()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("all pods Running", || async {
        let list = pods
            .list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap();
        (list.items.len() == nodes * pods_per_node).then_some(())
    })
    .await;
    println!(
        "{} pods Running after {:?}",
        nodes * pods_per_node,
        started.elapsed()
    );
}

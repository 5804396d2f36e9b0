//! The kubelet server of `run_node_agent` with a fake runtime (log files the test writes, exec
//! as local processes), reached the way kubectl reaches it: logs through the API server's
//! `pods/log` (which proxies to the kubelet), exec over the WebSocket streaming protocol.

use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, Node, Pod,
};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use skiff_agent::process::child;
use skiff_agent::{
    AgentConfig, PodSandboxConfig, Runtime, RuntimePodStatus, StatusChanges, run_node_agent,
};
use skiff_apiserver::ApiServer;
use skiff_store::sqlite::SqliteStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

const NODE: &str = "kubelet-node";
const TOKEN: &str = "kubelet-test-token";

/// Containers named `waiting*` stay `ContainerCreating`; the others run, with their log in
/// `<dir>/<pod uid>-<container>.log` and exec as a local process.
struct FakeRuntime {
    dir: PathBuf,
    pods: Mutex<HashMap<String, Vec<String>>>,
}

impl Runtime for FakeRuntime {
    fn version(&self) -> &str {
        "fake://1"
    }

    fn start_pod(&self, pod: &Pod, _sandbox: PodSandboxConfig, changes: &StatusChanges) {
        let uid = pod.metadata.uid.clone().unwrap();
        let names = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        self.pods.lock().unwrap().insert(uid.clone(), names);
        changes.notify(&uid);
    }

    fn stop_pod(&self, _pod_uid: &str, _grace: Duration) {}

    fn remove_pod(&self, pod_uid: &str) {
        self.pods.lock().unwrap().remove(pod_uid);
    }

    fn pod_status(&self, pod_uid: &str) -> Option<RuntimePodStatus> {
        let names = self.pods.lock().unwrap().get(pod_uid)?.clone();
        let container_statuses = names
            .into_iter()
            .map(|name| {
                let state = if name.starts_with("waiting") {
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ContainerCreating".into()),
                            message: None,
                        }),
                        ..Default::default()
                    }
                } else {
                    ContainerState {
                        running: Some(ContainerStateRunning::default()),
                        ..Default::default()
                    }
                };
                ContainerStatus {
                    container_id: Some(format!("fake://{pod_uid}/{name}")),
                    name,
                    state: Some(state),
                    ..Default::default()
                }
            })
            .collect();
        Some(RuntimePodStatus {
            sandbox_ready: true,
            container_statuses,
            ..Default::default()
        })
    }

    fn container_log(&self, pod_uid: &str, container: &str, previous: bool) -> Option<PathBuf> {
        (!previous).then(|| self.dir.join(format!("{pod_uid}-{container}.log")))
    }

    fn exec(
        &self,
        _pod_uid: &str,
        _container: &str,
        command: &[String],
        _tty: bool,
    ) -> Result<child::Child, String> {
        child::start(child::Command {
            program: command[0].clone(),
            args: command[1..].to_vec(),
            env: vec![],
            steps: vec![],
            stdio: [
                child::Stdio::Piped,
                child::Stdio::Piped,
                child::Stdio::Piped,
            ],
            namespaces: 0,
        })
        .map_err(|e| e.to_string())
    }
}

struct Cluster {
    api: ApiServer,
    client: kube::Client,
    dir: tempfile::TempDir,
}

/// An in-process API server and one node agent on loopback running the fake runtime.
async fn cluster() -> Cluster {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let api = ApiServer::new(store, "127.0.0.1:6443".into())
        .await
        .unwrap();
    api.set_kubelet_token(TOKEN.into());
    let client = kube::Client::new(api.router(), "default");
    tokio::spawn(skiff_agent::run_pod_cidr_allocator(
        client.clone(),
        "10.244.0.0/16".parse().unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime {
        dir: dir.path().to_path_buf(),
        pods: Mutex::default(),
    });
    let config = AgentConfig {
        node_ip: Some(std::net::Ipv4Addr::LOCALHOST),
        kubelet_token: Some(TOKEN.into()),
        ..AgentConfig::new(NODE, runtime)
    };
    let agent_client = client.clone();
    tokio::spawn(async move { run_node_agent(agent_client, config).await.unwrap() });
    Cluster { api, client, dir }
}

/// Polls until `probe` answers, failing after 30 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

impl Cluster {
    /// Creates a pod bound to the node with these containers and waits until the agent
    /// reported its statuses; returns its uid.
    async fn pod(&self, name: &str, containers: &[&str]) -> String {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox"}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": containers},
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        pods.create(&PostParams::default(), &pod).await.unwrap();
        eventually("the pod's container statuses", || async {
            let pod = pods.get(name).await.ok()?;
            let status = pod.status?;
            status.container_statuses?;
            pod.metadata.uid
        })
        .await
    }

    /// `GET <path>` on the API, returning the status and the body.
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .api
            .router()
            .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The kubelet server's address, as the Node reports it.
    async fn kubelet(&self) -> String {
        let nodes: Api<Node> = Api::all(self.client.clone());
        eventually("the kubelet port in the node status", || async {
            let node = nodes.get(NODE).await.ok()?;
            let port = node.status?.daemon_endpoints?.kubelet_endpoint?.port;
            (port != 10250).then(|| format!("127.0.0.1:{port}"))
        })
        .await
    }
}

#[tokio::test]
async fn logs_stream_through_the_api_server() {
    let cluster = cluster().await;
    let uid = cluster.pod("web", &["app"]).await;
    let log = cluster.dir.path().join(format!("{uid}-app.log"));
    std::fs::write(
        &log,
        "2026-11-28T03:24:01.5Z stdout F one\n\
         2026-11-28T03:24:02Z stderr P tw\n\
         2026-11-28T03:24:03Z stderr F o\n\
         2026-11-28T03:24:04Z stdout F three\n",
    )
    .unwrap();
    cluster.kubelet().await;
    let base = "/api/v1/namespaces/default/pods/web/log";
    assert_eq!(
        cluster.get(base).await,
        (StatusCode::OK, "one\ntwo\nthree\n".into())
    );
    assert_eq!(
        cluster
            .get(&format!("{base}?container=app&tailLines=1"))
            .await,
        (StatusCode::OK, "three\n".into())
    );
    assert_eq!(
        cluster
            .get(&format!("{base}?timestamps=true&limitBytes=36"))
            .await,
        (
            StatusCode::OK,
            "2026-11-28T03:24:01.500000000Z one\n2".into()
        )
    );
    let (status, body) = cluster.get(&format!("{base}?container=nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "container nope is not valid for pod web"
    );
}

#[tokio::test]
async fn log_errors_are_upstream_s() {
    let cluster = cluster().await;
    cluster.pod("two", &["app", "waiting"]).await;
    cluster.kubelet().await;
    let base = "/api/v1/namespaces/default/pods/two/log";
    let (status, body) = cluster.get(base).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["message"],
        "a container name must be specified for pod two, choose one of: [app waiting]"
    );
    let (status, body) = cluster.get(&format!("{base}?container=waiting")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "BadRequest");
    assert_eq!(
        body["message"],
        "container \"waiting\" in pod \"two\" is waiting to start: ContainerCreating"
    );
    let (status, body) = cluster
        .get(&format!("{base}?container=app&previous=true"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "previous terminated container \"app\" in pod \"two\" not found"
    );
}

#[tokio::test]
async fn a_pod_without_a_node_has_no_logs_and_no_exec() {
    let cluster = cluster().await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pending", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(
        cluster
            .get("/api/v1/namespaces/default/pods/pending/log")
            .await,
        (StatusCode::OK, String::new())
    );
    let (status, body) = cluster
        .get("/api/v1/namespaces/default/pods/pending/exec?command=ls&stdout=true")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "pod pending does not have a host assigned"
    );
    let (status, body) = cluster
        .get("/api/v1/namespaces/default/pods/missing/log")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "pods \"missing\" not found"
    );
}

/// Runs `command` through the kubelet's exec endpoint over WebSocket; returns stdout, stderr
/// and the error channel's Status.
async fn exec(
    kubelet: &str,
    pod: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
) -> (String, String, Value) {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for part in command {
        query.append_pair("command", part);
    }
    query.append_pair("stdout", "1").append_pair("stderr", "1");
    if stdin.is_some() {
        query.append_pair("stdin", "1");
    }
    let url = format!("ws://{kubelet}/exec/default/{pod}/app?{}", query.finish());
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(kubelet).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input);
        socket.send(Message::binary(frame)).await.unwrap();
        socket.send(Message::binary(vec![255u8, 0])).await.unwrap();
    }
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), Value::Null);
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Binary(data) => match data[0] {
                1 => stdout.extend_from_slice(&data[1..]),
                2 => stderr.extend_from_slice(&data[1..]),
                3 => status = serde_json::from_slice(&data[1..]).unwrap(),
                other => panic!("unexpected channel {other}"),
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    (
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
        status,
    )
}

#[tokio::test]
async fn exec_streams_output_input_and_the_exit_code() {
    let cluster = cluster().await;
    cluster.pod("shell", &["app"]).await;
    let kubelet = cluster.kubelet().await;
    let (stdout, stderr, status) = exec(
        &kubelet,
        "shell",
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
        None,
    )
    .await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hi\n", "oops\n"));
    assert_eq!(
        status,
        json!({"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command [sh -c echo hi; echo oops >&2; exit 3], exit code 3",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})
    );
    let (stdout, _, status) = exec(&kubelet, "shell", &["cat"], Some(b"piped\n")).await;
    assert_eq!(stdout, "piped\n");
    assert_eq!(status, json!({"metadata": {}, "status": "Success"}));
}

#[tokio::test]
async fn the_kubelet_answers_only_the_api_server() {
    let cluster = cluster().await;
    cluster.pod("private", &["app"]).await;
    let kubelet = cluster.kubelet().await;
    let tcp = tokio::net::TcpStream::connect(&kubelet).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("/containerLogs/default/private/app")
                .header("Authorization", "Bearer wrong")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

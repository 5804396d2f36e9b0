//! The process runtime driven directly (no API server): real processes, their exit codes and
//! signals, restart policies, init containers, limits, namespaces, volumes, logs, exec and
//! re-adoption by a new runtime on the same root. Isolation needs root on Linux; where it is
//! missing those tests return early.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::{Value, json};
use skiff_agent::process::ProcessConfig;
use skiff_agent::{PodSandboxConfig, ProcessRuntime, Runtime, RuntimePodStatus, StatusChanges};
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A runtime root directory that, when a failed test drops it with pods left, kills their
/// processes (so that no test leaks processes, whatever happens).
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let pods = std::fs::read_dir(self.path().join("pods"))
            .into_iter()
            .flatten();
        for pod in pods.flatten() {
            let Ok(state) = std::fs::read(pod.path().join("state.json")) else {
                continue;
            };
            let state: Value = serde_json::from_slice(&state).unwrap_or_default();
            let runs = state["runs"].as_object().cloned().unwrap_or_default();
            let processes = runs
                .values()
                .map(|r| &r["process"])
                .chain([&state["sandbox"]]);
            for process in processes {
                let (Some(pid), Some(started)) =
                    (process["pid"].as_i64(), process["start_time"].as_u64())
                else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let start_time = stat
                    .rsplit_once(')')
                    .and_then(|(_, f)| f.split_whitespace().nth(19)?.parse().ok());
                if start_time == Some(started) {
                    // SAFETY: kill has no memory-safety preconditions; the pid is checked above.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

fn runtime(root: &Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessConfig {
        root: root.to_path_buf(),
        client: None,
        node_ip: Some("127.0.0.1".parse().unwrap()),
    })
}

/// A pod with a fresh uid; `spec` is merged over one container named `c`.
fn pod(name: &str, spec: Value) -> Pod {
    let uid = format!(
        "{name}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "c", "image": "busybox"}]},
    });
    merge(&mut pod["spec"], spec);
    serde_json::from_value(pod).unwrap()
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap()
}

fn start(runtime: &ProcessRuntime, pod: &Pod) {
    runtime.start_pod(
        pod,
        PodSandboxConfig::default(),
        &StatusChanges::unobserved(),
    );
}

/// Polls the pod's status until `done` holds for it.
async fn wait_for(
    runtime: &ProcessRuntime,
    pod: &Pod,
    what: &str,
    done: impl Fn(&RuntimePodStatus) -> bool,
) -> RuntimePodStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = runtime.pod_status(&uid(pod)).expect("a known pod");
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(status: &ContainerStatus) -> Value {
    serde_json::to_value(status.state.clone().unwrap_or_default()).unwrap()
}

fn terminated(status: &RuntimePodStatus) -> Option<Value> {
    let state = state(&status.container_statuses[0]);
    (!state["terminated"].is_null()).then(|| state["terminated"].clone())
}

fn running(status: &RuntimePodStatus) -> bool {
    !state(&status.container_statuses[0])["running"].is_null()
}

/// The text of the container's log (without timestamps).
fn log_lines(runtime: &ProcessRuntime, pod: &Pod, container: &str, previous: bool) -> Vec<String> {
    let path = runtime
        .container_log(&uid(pod), container, previous)
        .expect("a log file");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect()
}

/// Removes the pod and waits until the runtime cleaned up after it.
async fn remove(runtime: &ProcessRuntime, root: &Path, pod: &Pod) {
    runtime.remove_pod(&uid(pod));
    let dir = root.join("pods").join(uid(pod));
    let deadline = Instant::now() + TIMEOUT;
    while dir.exists() {
        assert!(Instant::now() < deadline, "pod directory not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_command_runs_and_reports_its_exit_code_and_output() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let pod = pod(
        "exits",
        json!({"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c"],
            "args": ["echo hello $(WHO); echo oops >&2; exit 3"], "env": [{"name": "WHO", "value": "world"}]}]}),
    );
    start(&runtime, &pod);
    let status = wait_for(&runtime, &pod, "exit", |s| terminated(s).is_some()).await;
    let terminated = terminated(&status).unwrap();
    assert_eq!(terminated["exitCode"], 3);
    assert_eq!(terminated["reason"], "Error");
    let container = &status.container_statuses[0];
    assert!(
        container
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("skiff://")
    );
    assert_eq!(
        terminated["containerID"],
        container.container_id.as_deref().unwrap()
    );
    assert_eq!((container.restart_count, container.ready), (0, false));
    assert_eq!(container.image, "busybox");
    let mut lines = log_lines(&runtime, &pod, "c", false);
    lines.sort();
    assert_eq!(lines, ["stderr F oops", "stdout F hello world"]);
    assert_eq!(runtime.container_log(&uid(&pod), "c", true), None);
    remove(&runtime, root.path(), &pod).await;
}

#[tokio::test]
async fn a_container_without_command_waits_with_create_container_error() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let pod = pod("nginx", json!({}));
    start(&runtime, &pod);
    let status = wait_for(&runtime, &pod, "an error", |s| {
        state(&s.container_statuses[0])["waiting"]["reason"] == "CreateContainerError"
    })
    .await;
    assert_eq!(
        state(&status.container_statuses[0])["waiting"]["message"],
        "the process runtime runs a command from the host's filesystem and container \"c\" has no command (image \"busybox\" is not run)"
    );
    runtime.stop_pod(&uid(&pod), Duration::from_secs(1));
    let status = wait_for(&runtime, &pod, "stopped", |s| terminated(s).is_some()).await;
    assert_eq!(
        terminated(&status).unwrap()["reason"],
        "ContainerStatusUnknown"
    );
    remove(&runtime, root.path(), &pod).await;
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let polite = pod(
        "polite",
        json!({"containers": [{"name": "c", "command": ["sh", "-c", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"]}]}),
    );
    let stubborn = pod(
        "stubborn",
        json!({"containers": [{"name": "c", "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]}]}),
    );
    for pod in [&polite, &stubborn] {
        start(&runtime, pod);
        wait_for(&runtime, pod, "running", running).await;
    }
    // Let the shells install their traps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    runtime.stop_pod(&uid(&polite), Duration::from_secs(5));
    runtime.stop_pod(&uid(&stubborn), Duration::from_secs(3));
    let status = wait_for(&runtime, &polite, "polite exit", |s| {
        terminated(s).is_some()
    })
    .await;
    assert_eq!(terminated(&status).unwrap()["exitCode"], 0);
    assert_eq!(terminated(&status).unwrap()["reason"], "Completed");
    assert!(stopped.elapsed() < Duration::from_secs(2));
    // The shell's `sleep` got the group's SIGTERM too.
    assert!(log_lines(&runtime, &polite, "c", false).contains(&"stdout F bye".to_string()));
    let status = wait_for(&runtime, &stubborn, "killed", |s| terminated(s).is_some()).await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(3),
        "waited the grace period"
    );
    assert_eq!(terminated(&status).unwrap()["exitCode"], 137);
    assert_eq!(terminated(&status).unwrap()["reason"], "Error");
    assert!(!status.sandbox_ready);
    for pod in [&polite, &stubborn] {
        remove(&runtime, root.path(), pod).await;
    }
}

#[tokio::test]
async fn restart_policy_always_crash_loops_with_back_off() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let pod = pod(
        "crash",
        json!({"restartPolicy": "Always", "containers": [{"name": "c", "command": ["sh", "-c", "echo run; exit 1"]}]}),
    );
    start(&runtime, &pod);
    let status = wait_for(&runtime, &pod, "back-off", |s| {
        state(&s.container_statuses[0])["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let container = &status.container_statuses[0];
    assert_eq!(container.restart_count, 1, "the first restart is immediate");
    assert_eq!(
        state(container)["waiting"]["message"],
        format!(
            "back-off 10s restarting failed container=c pod=crash_default({})",
            uid(&pod)
        )
    );
    let last = serde_json::to_value(container.last_state.clone().unwrap()).unwrap();
    assert_eq!(last["terminated"]["exitCode"], 1);
    assert_eq!(last["terminated"]["reason"], "Error");
    assert_eq!(log_lines(&runtime, &pod, "c", true), ["stdout F run"]);
    assert_eq!(log_lines(&runtime, &pod, "c", false), ["stdout F run"]);
    remove(&runtime, root.path(), &pod).await;
}

#[tokio::test]
async fn on_failure_restarts_until_success() {
    let root = Root::new();
    let runtime = runtime(root.path());
    // The first run fails, the second (restartCount 1) finds the marker and succeeds.
    let marker = root.path().join("ran-once");
    let script = format!("test -e {0} && exit 0; touch {0}; exit 2", marker.display());
    let pod = pod(
        "onfailure",
        json!({"restartPolicy": "OnFailure", "containers": [{"name": "c", "command": ["sh", "-c", script]}]}),
    );
    start(&runtime, &pod);
    let status = wait_for(&runtime, &pod, "success", |s| {
        terminated(s).is_some_and(|t| t["exitCode"] == 0)
    })
    .await;
    assert_eq!(status.container_statuses[0].restart_count, 1);
    remove(&runtime, root.path(), &pod).await;
}

#[tokio::test]
async fn init_containers_run_in_order_before_app_containers() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let file = shared.join("order");
    let append = |word: &str| json!(["sh", "-c", format!("echo {word} >> {}", file.display())]);
    let pod = pod(
        "init",
        json!({
            "initContainers": [{"name": "first", "command": append("first")}, {"name": "second", "command": append("second")}],
            "containers": [{"name": "c", "command": ["cat", file.display().to_string()]}],
        }),
    );
    start(&runtime, &pod);
    let initial = runtime.pod_status(&uid(&pod)).unwrap();
    assert_eq!(
        state(&initial.container_statuses[0])["waiting"]["reason"],
        "PodInitializing"
    );
    let status = wait_for(&runtime, &pod, "app exit", |s| terminated(s).is_some()).await;
    for init in &status.init_container_statuses {
        assert_eq!(state(init)["terminated"]["reason"], "Completed");
        assert!(init.ready);
    }
    assert_eq!(
        log_lines(&runtime, &pod, "c", false),
        ["stdout F first", "stdout F second"]
    );
    remove(&runtime, root.path(), &pod).await;

    let failing = self::pod(
        "init-fails",
        json!({
            "initContainers": [{"name": "bad", "command": ["false"]}],
            "containers": [{"name": "c", "command": ["true"]}],
        }),
    );
    start(&runtime, &failing);
    let status = wait_for(&runtime, &failing, "init failure", |s| {
        terminated(s).is_some()
    })
    .await;
    assert_eq!(
        state(&status.init_container_statuses[0])["terminated"]["exitCode"],
        1
    );
    assert_eq!(
        terminated(&status).unwrap()["reason"],
        "ContainerStatusUnknown",
        "never ran"
    );
    remove(&runtime, root.path(), &failing).await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let root = Root::new();
    let runtime = runtime(root.path());
    if !runtime.is_isolated() {
        return;
    }
    let pod = pod(
        "oom",
        json!({"containers": [{"name": "c", "command": ["python3", "-c", "x = bytearray(200 * 1024 * 1024)"],
            "resources": {"limits": {"memory": "50Mi"}}}]}),
    );
    start(&runtime, &pod);
    let status = wait_for(&runtime, &pod, "OOM kill", |s| terminated(s).is_some()).await;
    let terminated = terminated(&status).unwrap();
    assert_eq!(
        (terminated["exitCode"].clone(), terminated["reason"].clone()),
        (json!(137), json!("OOMKilled"))
    );
    remove(&runtime, root.path(), &pod).await;
}

/// A network namespace pinned on the host for a test, removed when dropped.
struct Pin(String);

impl Pin {
    fn new(name: &str) -> Self {
        skiff_agent::podnet::netns::create(name).unwrap();
        Pin(name.to_string())
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = skiff_agent::podnet::netns::remove(&self.0);
    }
}

#[tokio::test]
async fn pods_have_their_own_hostname_pids_and_volumes() {
    let root = Root::new();
    let runtime = runtime(root.path());
    if !runtime.is_isolated() {
        return;
    }
    let mount_path = format!("/tmp/skiff-test-podinfo-{}", std::process::id());
    // Another pod's network namespace, pinned on the host: the pod's mounts must not hold it.
    let pin = Pin::new(&format!("skiff-test-pin-{}", std::process::id()));
    let pod = pod(
        "web-0",
        json!({
            "containers": [{"name": "c", "command": ["sh", "-c",
                format!("hostname; echo pid $$$$; cat {mount_path}/name; echo; (echo x > {mount_path}/x) 2>/dev/null || echo read-only; grep -c {} /proc/self/mountinfo", pin.0)],
                "volumeMounts": [{"name": "info", "mountPath": mount_path}]}],
            "volumes": [{"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
        }),
    );
    start(&runtime, &pod);
    wait_for(&runtime, &pod, "exit", |s| terminated(s).is_some()).await;
    assert_eq!(
        log_lines(&runtime, &pod, "c", false),
        [
            "stdout F web-0",
            "stdout F pid 2",
            "stdout F web-0",
            "stdout F read-only",
            "stdout F 0",
        ]
    );
    assert!(
        !Path::new(&mount_path).join("name").exists(),
        "the volume is mounted in the pod's mount namespace only"
    );
    remove(&runtime, root.path(), &pod).await;
    let _ = std::fs::remove_dir(&mount_path);
}

#[tokio::test]
async fn exec_runs_inside_the_container() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let pod = pod(
        "shell",
        json!({"hostname": "box", "containers": [{"name": "c", "command": ["sleep", "30"], "workingDir": "/tmp",
            "env": [{"name": "GREETING", "value": "hi"}]}]}),
    );
    start(&runtime, &pod);
    wait_for(&runtime, &pod, "running", running).await;
    let command = ["sh", "-c", "echo $GREETING $(pwd) $(hostname)"].map(String::from);
    let mut child = runtime.exec(&uid(&pod), "c", &command, false).unwrap();
    let mut stdout = String::new();
    let mut pipe = child.stdout.take().unwrap();
    tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stdout)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    let hostname = if runtime.is_isolated() {
        "box".to_string()
    } else {
        String::from_utf8(
            std::process::Command::new("hostname")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(stdout, format!("hi /tmp {hostname}\n"));

    // With a terminal: stdin and stdout are the terminal, and it is the container's.
    let on_terminal = [
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo $GREETING $(hostname)",
    ];
    let mut child = runtime
        .exec(&uid(&pod), "c", &on_terminal.map(String::from), true)
        .unwrap();
    assert!(child.stderr.is_none());
    let mut output = Vec::new();
    let mut terminal = child.stdout.take().unwrap();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut terminal, &mut output).await;
    assert!(child.wait().await.unwrap().success());
    assert_eq!(
        String::from_utf8_lossy(&output),
        format!("hi {hostname}\r\n")
    );

    assert_eq!(
        runtime
            .exec(&uid(&pod), "nope", &command, false)
            .unwrap_err(),
        "container not found (\"nope\")"
    );
    remove(&runtime, root.path(), &pod).await;
}

#[tokio::test]
async fn a_new_runtime_on_the_same_root_adopts_running_pods() {
    let root = Root::new();
    let pod = pod(
        "adopted",
        json!({"restartPolicy": "Always", "containers": [{"name": "c", "command": ["sh", "-c", "echo started; sleep 30"]}]}),
    );
    let first = runtime(root.path());
    start(&first, &pod);
    let before = wait_for(&first, &pod, "running", running).await;
    let state_file = root.path().join("pods").join(uid(&pod)).join("state.json");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let pid = saved["runs"]["c"]["process"]["pid"].as_u64().unwrap() as i32;
    drop(first);

    let second = runtime(root.path());
    start(&second, &pod);
    let after = wait_for(&second, &pod, "adopted", running).await;
    assert_eq!(
        after.container_statuses[0].container_id,
        before.container_statuses[0].container_id
    );
    assert_eq!(after.container_statuses[0].restart_count, 0);
    assert_eq!(
        state(&after.container_statuses[0]),
        state(&before.container_statuses[0])
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        saved["runs"]["c"]["process"]["pid"], pid,
        "the same process, not a second one"
    );
    assert_eq!(log_lines(&second, &pod, "c", false), ["stdout F started"]);
    drop(second);

    if saved["sandbox"].is_object() {
        // A sandbox that died while no agent ran (a reboot): the pod starts again, counting
        // the lost run as a restart.
        let holder = saved["sandbox"]["pid"].as_i64().unwrap() as i32;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(holder, libc::SIGKILL) };
        while is_running(holder) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let third = runtime(root.path());
        start(&third, &pod);
        let restarted = wait_for(&third, &pod, "a new run", |s| {
            running(s) && s.container_statuses[0].restart_count == 1
        })
        .await;
        assert_ne!(
            restarted.container_statuses[0].container_id,
            before.container_statuses[0].container_id
        );
        remove(&third, root.path(), &pod).await;
    } else {
        let third = runtime(root.path());
        start(&third, &pod);
        wait_for(&third, &pod, "adopted", running).await;
        remove(&third, root.path(), &pod).await;
    }
    assert!(!is_running(pid), "the adopted process is gone");
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
    })
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn readiness_probes_drive_ready_and_failed_liveness_restarts() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let port = free_port();
    let server = pod(
        "ready",
        json!({"restartPolicy": "Always", "containers": [{"name": "c",
            "command": ["python3", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
            "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}}]}),
    );
    start(&runtime, &server);
    let running_status = wait_for(&runtime, &server, "running", running).await;
    assert!(
        !running_status.container_statuses[0].ready,
        "not ready before the probe succeeds"
    );
    wait_for(&runtime, &server, "ready", |s| {
        s.container_statuses[0].ready
    })
    .await;

    let unhealthy = pod(
        "unhealthy",
        json!({"restartPolicy": "Always", "containers": [{"name": "c", "command": ["sleep", "30"],
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}}]}),
    );
    start(&runtime, &unhealthy);
    let status = wait_for(&runtime, &unhealthy, "a restart", |s| {
        s.container_statuses[0].restart_count == 1
    })
    .await;
    let last =
        serde_json::to_value(status.container_statuses[0].last_state.clone().unwrap()).unwrap();
    assert_eq!(last["terminated"]["exitCode"], 143, "SIGTERM ended it");
    assert_eq!(last["terminated"]["reason"], "Error");
    for pod in [&server, &unhealthy] {
        remove(&runtime, root.path(), pod).await;
    }
}

#[tokio::test]
async fn pre_stop_hooks_run_before_sigterm_and_failed_post_start_hooks_kill() {
    let root = Root::new();
    let runtime = runtime(root.path());
    let marker = root.path().join("pre-stop");
    let pod = pod(
        "hooked",
        json!({"containers": [{"name": "c", "command": ["sleep", "30"],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", format!("echo $HOSTNAME > {}", marker.display())]}}}}]}),
    );
    start(&runtime, &pod);
    wait_for(&runtime, &pod, "running", running).await;
    runtime.stop_pod(&uid(&pod), Duration::from_secs(5));
    let status = wait_for(&runtime, &pod, "stopped", |s| terminated(s).is_some()).await;
    assert_eq!(terminated(&status).unwrap()["exitCode"], 143);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "hooked\n");
    remove(&runtime, root.path(), &pod).await;

    let failing = self::pod(
        "post-start",
        json!({"containers": [{"name": "c", "command": ["sleep", "30"],
            "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}),
    );
    start(&runtime, &failing);
    let status = wait_for(&runtime, &failing, "killed", |s| terminated(s).is_some()).await;
    assert_eq!(
        terminated(&status).unwrap()["exitCode"],
        143,
        "killed as its hook failed"
    );
    assert_eq!(
        status.container_statuses[0].restart_count, 0,
        "restartPolicy Never"
    );
    remove(&runtime, root.path(), &failing).await;
}

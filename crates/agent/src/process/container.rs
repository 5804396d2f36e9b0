//! A pod's lifecycle: sandbox, volumes, init containers in order, then app containers, each
//! supervised through its runs (restart policy, back-off, probes, graceful stop).

use super::cgroup::{self, ContainerCgroup, Limits};
use super::child::{self, Stdio};
use super::env::{self, EnvSources};
use super::logs::{self, LogFile};
use super::probes::{self, ProbeEvent, ProbeTarget};
use super::spawn;
use super::state::{ProcessRef, RunRecord};
use super::{MINIMUM_GRACE, PodContext, StopRequest, pod_hostname};
use super::{hosts, volumes};
use crate::podnet::PodNetwork;
use crate::runtime::{CrashLoopBackOff, PodSandboxConfig, RuntimePodStatus, go_duration, waiting};
use crate::sim::{hex_id, now_time};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Lifecycle, LifecycleHandler,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a container whose configuration is not ready waits before the next try.
const CONFIG_RETRY: Duration = Duration::from_secs(5);

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Init,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
    App,
}

/// How a container's supervision ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Exited 0 and is not restarted.
    Completed,
    /// Exited non-zero and is not restarted.
    Failed,
    /// The pod is stopping.
    Stopped,
}

/// Waits until a stop is requested (forever once nobody can request one).
async fn stop_requested(stop: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    loop {
        if let Some(request) = *stop.borrow_and_update() {
            return request;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Sleeps for `duration`; false when a stop came first.
async fn sleep_unless_stopped(
    duration: Duration,
    stop: &mut watch::Receiver<Option<StopRequest>>,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = stop_requested(stop) => false,
    }
}

impl PodContext {
    fn container_spec(&self, kind: Kind, index: usize) -> Container {
        let spec = self.pod.spec.as_ref().expect("a started pod has a spec");
        match kind {
            Kind::App => spec.containers[index].clone(),
            Kind::Init | Kind::Sidecar => {
                spec.init_containers.as_ref().expect("listed")[index].clone()
            }
        }
    }

    /// Changes one container's status and tells the agent.
    fn update_container(
        &self,
        kind: Kind,
        index: usize,
        change: impl FnOnce(&mut ContainerStatus),
    ) {
        self.update(|status: &mut RuntimePodStatus| {
            let list = match kind {
                Kind::App => &mut status.container_statuses,
                Kind::Init | Kind::Sidecar => &mut status.init_container_statuses,
            };
            change(&mut list[index]);
        });
    }

    fn pod_grace(&self) -> Duration {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }

    pub(super) fn sandbox_pid(&self) -> Option<u32> {
        self.state.lock().unwrap().sandbox.map(|s| s.pid)
    }
}

/// Runs the whole pod until it ends or is stopped; see the module documentation.
pub(super) async fn run_pod(
    pod: Arc<PodContext>,
    sandbox: PodSandboxConfig,
    mut stop: watch::Receiver<Option<StopRequest>>,
) {
    if let Err(err) = std::fs::create_dir_all(&pod.dir) {
        tracing::warn!(pod = %pod.display, %err, "creating the pod directory");
    }
    // Runs of a pod without a sandbox (degraded) are adopted one by one; those of a sandbox
    // that died died with it.
    let recorded = pod.state.lock().unwrap().sandbox;
    let adopted = recorded.filter(ProcessRef::is_alive);
    if recorded.is_some() && adopted.is_none() {
        discard_stale_runs(&pod);
    }
    let netns = set_up_network(&pod, sandbox, adopted.is_some()).await;
    loop {
        let addresses = *pod.addresses.lock().unwrap();
        match volumes::prepare(pod.settings.client.as_ref(), &pod.pod, &pod.dir, addresses).await {
            Ok(paths) => {
                *pod.volumes.lock().unwrap() = paths;
                break;
            }
            Err(volumes::VolumeError(message)) => {
                tracing::info!(pod = %pod.display, %message, "volumes not ready");
                if !sleep_unless_stopped(Duration::from_secs(2), &mut stop).await {
                    return finish(&pod).await;
                }
            }
        }
    }
    if adopted.is_none() && pod.settings.isolated {
        let (hostname, netns_path) = (pod_hostname(&pod.pod), netns.clone());
        // Starting a process waits for its exec: off the async workers, or a hundred pods
        // starting at once stall every other task (status writes included) meanwhile.
        let created = tokio::task::spawn_blocking(move || {
            spawn::create_sandbox(&hostname, netns_path.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match created {
            Ok(holder) => {
                let reference = ProcessRef::of(holder.id());
                pod.persist(|state| state.sandbox = reference);
                *pod.holder.lock().unwrap() = Some(holder);
            }
            Err(err) => tracing::warn!(pod = %pod.display, %err,
                "creating the pod sandbox failed: its containers run without namespaces"),
        }
    }
    pod.update(|status| status.sandbox_ready = true);

    let spec = pod.pod.spec.clone().unwrap_or_default();
    // Sidecars are stopped after the app containers end, or with the pod.
    let (sidecar_stop, sidecar_stop_requests) = watch::channel(None);
    let mut sidecars = tokio::task::JoinSet::new();
    let mut initialized = true;
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.spawn(supervise(
                pod.clone(),
                Kind::Sidecar,
                index,
                sidecar_stop_requests.clone(),
            ));
            continue;
        }
        let done_before = pod
            .state
            .lock()
            .unwrap()
            .finished_init
            .contains(&container.name);
        if done_before {
            pod.update_container(Kind::Init, index, |status| {
                status.state = Some(terminated_state(0, "Completed", None, None, None));
                status.ready = true;
            });
            continue;
        }
        if supervise(pod.clone(), Kind::Init, index, stop.clone()).await != Outcome::Completed {
            initialized = false;
            break;
        }
        pod.persist(|state| {
            state.finished_init.insert(container.name.clone());
        });
    }
    if initialized {
        let apps: Vec<_> = (0..spec.containers.len())
            .map(|index| supervise(pod.clone(), Kind::App, index, stop.clone()))
            .collect();
        let forward = async {
            let request = stop_requested(&mut stop).await;
            sidecar_stop.send_replace(Some(request));
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = futures::future::join_all(apps) => {}
            () = forward => {}
        }
    }
    let request = (*stop.borrow()).unwrap_or(StopRequest {
        grace: pod.pod_grace(),
        hooks: true,
    });
    sidecar_stop.send_replace(Some(request));
    while sidecars.join_next().await.is_some() {}
    finish(&pod).await;
}

/// Kills what is left of runs recorded before a sandbox that no longer exists (a reboot, or
/// the holder was killed): their restart counts carry on.
fn discard_stale_runs(pod: &PodContext) {
    pod.persist(|state| {
        for (name, run) in std::mem::take(&mut state.runs) {
            if run.process.is_alive() {
                spawn::signal_group(run.process.pid, libc::SIGKILL);
            }
            state.restart_counts.insert(name, run.restart_count + 1);
        }
        state.sandbox = None;
    });
}

/// Gives the pod its network: its own namespace on the node's bridge ([`PodNetwork`]) when
/// it has an IP and the machine allows it, else the host's (with a warning, and the pod's IP
/// is then the node's). Returns the network namespace for a new sandbox to join. An adopted
/// sandbox keeps the network it has.
async fn set_up_network(
    pod: &PodContext,
    sandbox: PodSandboxConfig,
    adopted: bool,
) -> Option<PathBuf> {
    let host_network = pod
        .pod
        .spec
        .as_ref()
        .is_some_and(|s| s.host_network == Some(true));
    let node_ip = pod.settings.node_ip;
    let mut own = None;
    if !host_network {
        let fallback = pod.state.lock().unwrap().host_network_fallback;
        own = match (sandbox.ip, sandbox.cidr) {
            (Some(ip), Some(_)) if adopted && !fallback => Some((ip, None)),
            (Some(ip), Some(cidr)) if !adopted && pod.settings.isolated => {
                let uid = pod.uid.clone();
                let setup =
                    tokio::task::spawn_blocking(move || PodNetwork::setup(&uid, ip, cidr)).await;
                match setup {
                    Ok(Ok(network)) => Some((ip, Some(network.netns_path().to_path_buf()))),
                    Ok(Err(err)) => {
                        tracing::warn!(pod = %pod.display, %err,
                            "no network of its own for the pod: it shares the host's");
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let fallback = own.is_none();
        pod.persist(|state| state.host_network_fallback = fallback);
        pod.update(|status| status.host_network = fallback);
    }
    *pod.addresses.lock().unwrap() = env::PodAddresses {
        pod_ip: own.as_ref().map(|(ip, _)| *ip).or(node_ip),
        host_ip: node_ip,
    };
    own.and_then(|(_, netns)| netns)
}

/// Ends the pod: containers that never ran (or wait between runs) are reported terminated as
/// upstream does, and the sandbox goes.
async fn finish(pod: &PodContext) {
    pod.update(|status| {
        for container in status
            .init_container_statuses
            .iter_mut()
            .chain(status.container_statuses.iter_mut())
        {
            if container
                .state
                .as_ref()
                .is_some_and(|s| s.waiting.is_some())
            {
                let last = container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.clone());
                let terminated = last.unwrap_or_else(|| ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    ..Default::default()
                });
                container.state = Some(ContainerState {
                    terminated: Some(terminated),
                    ..Default::default()
                });
            }
        }
        status.sandbox_ready = false;
    });
    if let Some(pid) = pod.sandbox_pid() {
        // PID 1 of the pod going takes every process of the pod with it.
        spawn::signal_process(pid, libc::SIGKILL);
        let holder = pod.holder.lock().unwrap().take();
        match holder {
            Some(mut holder) => {
                let _ = holder.wait().await;
            }
            None => {
                spawn::wait_adopted(pid).await;
            }
        }
    }
    cgroup::remove_pod(&pod.settings.cgroups, &pod.uid);
    let own_network = !pod.state.lock().unwrap().host_network_fallback;
    if own_network {
        let uid = pod.uid.clone();
        let _ = tokio::task::spawn_blocking(move || PodNetwork::teardown(&uid)).await;
    }
    pod.persist(|state| {
        state.sandbox = None;
        state.runs.clear();
    });
}

/// A running container process.
struct Run {
    record: RunRecord,
    /// Resolves to the exit code (`None`: unknown) once the process exits.
    exit: Pin<Box<dyn Future<Output = Option<i32>> + Send>>,
    /// The copiers of its stdout and stderr into its log.
    copies: Vec<tokio::task::JoinHandle<()>>,
    cgroup: ContainerCgroup,
}

/// Why a container could not start.
enum StartError {
    /// Waits as `reason` (`CreateContainerConfigError`, `CreateContainerError`) and retries.
    Blocked {
        reason: &'static str,
        message: String,
    },
    /// The process could not be started: a terminated run (`StartError`, exit code 128).
    Failed(String),
}

fn fifo_paths(dir: &Path, restart_count: i32) -> [PathBuf; 2] {
    ["stdout", "stderr"].map(|stream| dir.join(format!("{restart_count}.{stream}.fifo")))
}

/// Opens the run's output pipes for reading and copies them into its log file.
fn copy_logs(
    dir: &Path,
    log: &Path,
    restart_count: i32,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let log = LogFile::open(log)?;
    let [stdout, stderr] = fifo_paths(dir, restart_count);
    [(stdout, "stdout"), (stderr, "stderr")]
        .into_iter()
        .map(|(path, stream)| {
            let receiver = tokio::net::unix::pipe::OpenOptions::new().open_receiver(path)?;
            Ok(tokio::spawn(logs::copy_stream(
                receiver,
                stream,
                log.clone(),
            )))
        })
        .collect()
}

/// Makes a fresh FIFO and opens it read-write for the container (so it never sees a broken
/// pipe while no agent reads).
fn container_fifo(path: &Path) -> std::io::Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    let c_path = super::child::c_string(path)?;
    // SAFETY: c_path is a valid C string.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// Starts a run of `container`.
async fn start(
    pod: &PodContext,
    container: &Container,
    restart_count: i32,
) -> Result<Run, StartError> {
    let config_error = |message: String| StartError::Blocked {
        reason: "CreateContainerConfigError",
        message,
    };
    let addresses = *pod.addresses.lock().unwrap();
    let namespace = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut sources = EnvSources::new(pod.settings.client.clone(), namespace);
    let mut env = env::container_env(&pod.pod, container, addresses, &mut sources)
        .await
        .map_err(config_error)?;
    for (name, value) in [
        ("PATH", child::DEFAULT_PATH.to_string()),
        ("HOSTNAME", pod_hostname(&pod.pod)),
    ] {
        if !env.iter().any(|(n, _)| n == name) {
            env.insert(0, (name.to_string(), value));
        }
    }
    if container.command.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(StartError::Blocked {
            reason: "CreateContainerError",
            message: format!(
                "the process runtime runs a command from the host's filesystem and container {:?} has no command (image {:?} is not run)",
                container.name,
                container.image.as_deref().unwrap_or_default()
            ),
        });
    }
    let argv = env::command_line(container, &env);
    let sandbox = pod.sandbox_pid();
    let mounts = match sandbox {
        Some(_) => {
            let volumes = pod.volumes.lock().unwrap().clone();
            let mut mounts =
                volumes::mounts_of(&pod.pod, container, &volumes).map_err(config_error)?;
            if let Some(hosts) = hosts_mount(pod, &mounts) {
                mounts.push(hosts);
            }
            for mount in &mounts {
                mount
                    .prepare()
                    .map_err(|e| config_error(format!("{}: {e}", mount.target.display())))?;
            }
            mounts
        }
        None => {
            if container
                .volume_mounts
                .as_ref()
                .is_some_and(|m| !m.is_empty())
            {
                tracing::warn!(pod = %pod.display, container = %container.name,
                    "no mount namespace: the container's volumes are not mounted");
            }
            vec![]
        }
    };
    let cgroup = pod.cgroup(&container.name);
    if let Err(err) = cgroup.apply(&Limits::of(container)) {
        tracing::warn!(pod = %pod.display, container = %container.name, %err, "limits not enforced");
    }
    let failed = |e: std::io::Error| StartError::Failed(e.to_string());
    let dir = logs::container_dir(&pod.settings.root, &pod.uid, &container.name);
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let [stdout_path, stderr_path] = fifo_paths(&dir, restart_count);
    let stdout = container_fifo(&stdout_path).map_err(failed)?;
    let stderr = container_fifo(&stderr_path).map_err(failed)?;
    let log = logs::log_path(&pod.settings.root, &pod.uid, &container.name, restart_count);
    let copies = copy_logs(&dir, &log, restart_count).map_err(failed)?;
    let working_dir = PathBuf::from(container.working_dir.as_deref().unwrap_or("/"));
    let namespaces = sandbox
        .map(spawn::Namespaces::of_process)
        .transpose()
        .map_err(failed)?;
    let oom_kills_before = cgroup.oom_kills();
    let launch = spawn::Launch {
        argv: argv.clone(),
        env: env.clone(),
        working_dir: working_dir.clone(),
        namespaces,
        mounts,
        cgroup_procs: cgroup.procs_files().unwrap_or_default(),
        stdio: [Stdio::Null, stdout.into(), stderr.into()],
    };
    let handle = pod.settings.handle.clone();
    let spawned = tokio::task::spawn_blocking(move || spawn::spawn(launch, &handle))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            for copy in copies {
                copy.abort();
            }
            return Err(StartError::Failed(format!("exec: {:?}: {err}", argv[0])));
        }
    };
    let pid = child.id();
    let started_at = now_time();
    let name = &container.name;
    pod.event(name, false, "Created", format!("Created container: {name}"));
    pod.event(name, false, "Started", format!("Started container {name}"));
    let record = RunRecord {
        process: ProcessRef::of(pid).unwrap_or(ProcessRef { pid, start_time: 0 }),
        id: hex_id(&[
            &pod.uid,
            &container.name,
            &restart_count.to_string(),
            &jiff::Timestamp::now().as_nanosecond().to_string(),
        ]),
        restart_count,
        started_at: started_at.0.to_string(),
        oom_kills_before,
        env,
        working_dir,
    };
    pod.persist(|state| {
        state.runs.insert(container.name.clone(), record.clone());
    });
    Ok(Run {
        record,
        exit: Box::pin(async move { child.wait().await.ok().map(spawn::exit_code) }),
        copies,
        cgroup,
    })
}

/// Takes over a run started by an earlier agent.
fn adopt(pod: &PodContext, container: &Container, record: RunRecord) -> Run {
    let dir = logs::container_dir(&pod.settings.root, &pod.uid, &container.name);
    let log = logs::log_path(
        &pod.settings.root,
        &pod.uid,
        &container.name,
        record.restart_count,
    );
    let copies = copy_logs(&dir, &log, record.restart_count).unwrap_or_else(|err| {
        tracing::warn!(pod = %pod.display, container = %container.name, %err, "resuming logs");
        vec![]
    });
    let pid = record.process.pid;
    Run {
        record,
        exit: Box::pin(async move { spawn::wait_adopted(pid).await.map(spawn::exit_code) }),
        copies,
        cgroup: pod.cgroup(&container.name),
    }
}

fn terminated_state(
    exit_code: i32,
    reason: &str,
    message: Option<String>,
    started_at: Option<Time>,
    container_id: Option<String>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason.into()),
            message,
            started_at,
            finished_at: Some(now_time()),
            container_id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How a run ended.
struct Ended {
    /// The exit code; `None` when unknown (the process ended while no agent watched).
    code: Option<i32>,
    /// Ended by a stop of the pod.
    stopped: bool,
    /// Killed by the runtime: a startup or liveness probe or the postStart hook failed.
    killed: bool,
}

/// The command of the container's exec hook that `hook` picks (other handlers are not run).
fn hook_command(
    container: &Container,
    hook: impl Fn(&Lifecycle) -> Option<&LifecycleHandler>,
) -> Option<Vec<String>> {
    let handler = hook(container.lifecycle.as_ref()?)?;
    handler.exec.as_ref()?.command.clone()
}

/// Runs the container's postStart exec hook to its end; false when it failed.
async fn post_start(pod: &PodContext, container: &Container) -> bool {
    let Some(command) = hook_command(container, |l| l.post_start.as_ref()) else {
        return true;
    };
    let status = match pod.exec_in(
        &container.name,
        &command,
        [Stdio::Null, Stdio::Null, Stdio::Null],
    ) {
        Ok(mut hook) => hook.wait().await.map_err(|e| e.to_string()),
        Err(err) => Err(err),
    };
    match status {
        Ok(status) if status.success() => true,
        outcome => {
            tracing::info!(pod = %pod.display, container = %container.name, ?outcome,
                "postStart hook failed, the container is killed");
            false
        }
    }
}

/// Stops a run: the `preStop` hook, SIGTERM to its group, SIGKILL after the grace period.
async fn terminate(
    pod: &PodContext,
    container: &Container,
    run: &mut Run,
    request: StopRequest,
) -> Option<i32> {
    let pgid = run.record.process.pid;
    let name = &container.name;
    pod.event(name, false, "Killing", format!("Stopping container {name}"));
    if request.grace.is_zero() {
        spawn::signal_group(pgid, libc::SIGKILL);
        return (&mut run.exit).await;
    }
    let started = Instant::now();
    let pre_stop = hook_command(container, |l| l.pre_stop.as_ref());
    if request.hooks
        && let Some(command) = pre_stop
    {
        match pod.exec_in(
            &container.name,
            &command,
            [Stdio::Null, Stdio::Null, Stdio::Null],
        ) {
            Ok(mut hook) => {
                if tokio::time::timeout(request.grace, hook.wait())
                    .await
                    .is_err()
                {
                    let _ = hook.start_kill();
                }
            }
            Err(err) => {
                tracing::info!(pod = %pod.display, container = %container.name, %err, "preStop hook")
            }
        }
    }
    // Upstream gives the process at least the minimum grace period after its hook.
    let remaining = request
        .grace
        .saturating_sub(started.elapsed())
        .max(MINIMUM_GRACE);
    spawn::signal_group(pgid, libc::SIGTERM);
    match tokio::time::timeout(remaining, &mut run.exit).await {
        Ok(code) => code,
        Err(_) => {
            spawn::signal_group(pgid, libc::SIGKILL);
            (&mut run.exit).await
        }
    }
}

/// Follows a run until it ends: its probes, a stop of the pod, its exit.
async fn watch_run(
    pod: &Arc<PodContext>,
    kind: Kind,
    index: usize,
    container: &Container,
    run: &mut Run,
    stop: &mut watch::Receiver<Option<StopRequest>>,
) -> Ended {
    let has_probes = container.startup_probe.is_some()
        || container.readiness_probe.is_some()
        || container.liveness_probe.is_some();
    let record = run.record.clone();
    pod.update_container(kind, index, |status| {
        status.container_id = Some(format!("skiff://{}", record.id));
        status.restart_count = record.restart_count;
        status.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: record.started_at.parse().ok().map(Time),
            }),
            ..Default::default()
        });
        status.started = Some(!has_probes || container.startup_probe.is_none());
        // An init container is never ready while it runs; others are once started, unless a
        // readiness probe says otherwise.
        status.ready = kind != Kind::Init && !has_probes;
    });
    let (events, mut probe_events) = mpsc::channel(4);
    let probe_task = has_probes.then(|| {
        let target = probe_target(pod, &container.name);
        tokio::spawn(probes::run(container.clone(), target, events))
    });
    let ended = if !post_start(pod, container).await {
        let request = StopRequest {
            grace: pod.pod_grace(),
            hooks: false,
        };
        let code = terminate(pod, container, run, request).await;
        Ended {
            code,
            stopped: false,
            killed: true,
        }
    } else {
        loop {
            tokio::select! {
                code = &mut run.exit => break Ended { code, stopped: false, killed: false },
                request = stop_requested(stop) => {
                    let code = terminate(pod, container, run, request).await;
                    break Ended { code, stopped: true, killed: false };
                }
                Some(event) = probe_events.recv() => match event {
                    ProbeEvent::Started => pod.update_container(kind, index, |s| s.started = Some(true)),
                    ProbeEvent::Ready(ready) => {
                        pod.update_container(kind, index, |s| s.ready = ready && kind != Kind::Init)
                    }
                    ProbeEvent::Failed { probe, message } => {
                        let event = format!("{} probe failed: {message}", capitalized(probe));
                        pod.event(&container.name, true, "Unhealthy", event);
                        tracing::info!(pod = %pod.display, container = %container.name, probe, %message,
                            "probe failed, the container will be restarted");
                        let grace = [&container.liveness_probe, &container.startup_probe]
                            .into_iter()
                            .flatten()
                            .find_map(|p| p.termination_grace_period_seconds)
                            .map(|s| Duration::from_secs(s.max(0) as u64))
                            .unwrap_or_else(|| pod.pod_grace());
                        let code = terminate(pod, container, run, StopRequest { grace, hooks: true }).await;
                        break Ended { code, stopped: false, killed: true };
                    }
                },
            }
        }
    };
    if let Some(task) = probe_task {
        task.abort();
    }
    // Whatever the main process left in its group ends with it, as in a container.
    spawn::signal_group(record.process.pid, libc::SIGKILL);
    for copy in run.copies.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(2), copy).await;
    }
    let dir = logs::container_dir(&pod.settings.root, &pod.uid, &container.name);
    for fifo in fifo_paths(&dir, record.restart_count) {
        let _ = std::fs::remove_file(fifo);
    }
    pod.persist(|state| {
        state.runs.remove(&container.name);
    });
    ended
}

/// Where probes of the container connect and exec.
fn probe_target(pod: &Arc<PodContext>, container: &str) -> ProbeTarget {
    let own_ip = !pod.status.lock().unwrap().host_network;
    let pod_ip = pod.addresses.lock().unwrap().pod_ip.filter(|_| own_ip);
    let exec_pod = pod.clone();
    let name = container.to_string();
    ProbeTarget {
        host: pod_ip.map_or(probes::LOCALHOST, std::net::IpAddr::V4),
        exec: Box::new(move |command| {
            let child = exec_pod.exec_in(&name, &command, [Stdio::Null, Stdio::Null, Stdio::Null]);
            Box::pin(async move {
                let status = child?.wait().await.map_err(|e| e.to_string())?;
                Ok(spawn::exit_code(status))
            })
        }),
    }
}

/// Runs a container through its runs until the pod stops or its restart policy ends it.
async fn supervise(
    pod: Arc<PodContext>,
    kind: Kind,
    index: usize,
    mut stop: watch::Receiver<Option<StopRequest>>,
) -> Outcome {
    let container = pod.container_spec(kind, index);
    let name = container.name.clone();
    let (mut adopted, mut restart_count) = {
        let state = pod.state.lock().unwrap();
        let adopted = state.runs.get(&name).cloned();
        let count = adopted
            .as_ref()
            .map(|r| r.restart_count)
            .or(state.restart_counts.get(&name).copied())
            .unwrap_or(0);
        (adopted, count)
    };
    let mut backoff = CrashLoopBackOff::default();
    loop {
        if stop.borrow().is_some() {
            return Outcome::Stopped;
        }
        let started = match adopted.take() {
            Some(record) => Ok(adopt(&pod, &container, record)),
            None => start(&pod, &container, restart_count).await,
        };
        let (code, killed) = match started {
            Ok(mut run) => {
                let ended = watch_run(&pod, kind, index, &container, &mut run, &mut stop).await;
                let code = record_exit(&pod, kind, index, &run, ended.code);
                if ended.stopped {
                    return Outcome::Stopped;
                }
                (code, ended.killed)
            }
            Err(StartError::Blocked { reason, message }) => {
                pod.update_container(kind, index, |s| {
                    s.state = Some(waiting(reason, Some(message)));
                });
                if !sleep_unless_stopped(CONFIG_RETRY, &mut stop).await {
                    return Outcome::Stopped;
                }
                continue;
            }
            Err(StartError::Failed(message)) => {
                pod.update_container(kind, index, |s| {
                    s.restart_count = restart_count;
                    let state = terminated_state(128, "StartError", Some(message), None, None);
                    s.state = Some(state);
                    s.started = Some(false);
                    s.ready = false;
                });
                (128, false)
            }
        };
        if let Some(outcome) = restart_or_end(&pod.restart_policy, kind, code, killed) {
            return outcome;
        }
        if !back_off(&pod, kind, index, &mut backoff, &mut stop).await {
            return Outcome::Stopped;
        }
        restart_count += 1;
        pod.persist(|state| {
            state.restart_counts.insert(name.clone(), restart_count);
        });
    }
}

/// The exit code, reason and message upstream reports for a run that ended with `code`
/// (`None`: unknown), `oom_killed` when its cgroup's OOM killer struck.
fn exit_reason(code: Option<i32>, oom_killed: bool) -> (i32, &'static str, Option<String>) {
    match code {
        Some(137) if oom_killed => (137, "OOMKilled", None),
        Some(0) => (0, "Completed", None),
        Some(code) => (code, "Error", None),
        None => (
            137,
            "ContainerStatusUnknown",
            Some("The container exited while no agent watched it: its exit code is unknown".into()),
        ),
    }
}

/// Reports a run's end as upstream does (`Completed`, `Error`, `OOMKilled` when the cgroup's
/// OOM killer struck) and returns the exit code shown.
fn record_exit(pod: &PodContext, kind: Kind, index: usize, run: &Run, code: Option<i32>) -> i32 {
    let oom_killed = run.cgroup.oom_kills() > run.record.oom_kills_before;
    let (code, reason, message) = exit_reason(code, oom_killed);
    let started_at = run.record.started_at.parse().ok().map(Time);
    let container_id = Some(format!("skiff://{}", run.record.id));
    pod.update_container(kind, index, |s| {
        s.state = Some(terminated_state(
            code,
            reason,
            message,
            started_at,
            container_id,
        ));
        s.started = Some(false);
        s.ready = kind == Kind::Init && code == 0;
    });
    code
}

/// Whether an exited container restarts (`None`) or ends with an outcome, by upstream's
/// rules: sidecars always restart, init containers until they succeed (not under `Never`),
/// app containers as `restartPolicy` says.
fn restart_or_end(policy: &str, kind: Kind, code: i32, killed: bool) -> Option<Outcome> {
    let succeeded = code == 0 && !killed;
    let restart = match kind {
        Kind::Sidecar => true,
        Kind::Init => !succeeded && policy != "Never",
        Kind::App => policy == "Always" || (policy == "OnFailure" && !succeeded),
    };
    match (restart, succeeded) {
        (true, _) => None,
        (false, true) => Some(Outcome::Completed),
        (false, false) => Some(Outcome::Failed),
    }
}

/// Waits out the container's crash-loop back-off in `CrashLoopBackOff`, then moves its last
/// run to `lastState`; false when the pod stopped meanwhile.
async fn back_off(
    pod: &PodContext,
    kind: Kind,
    index: usize,
    backoff: &mut CrashLoopBackOff,
    stop: &mut watch::Receiver<Option<StopRequest>>,
) -> bool {
    let finished = Instant::now();
    let name = pod.container_spec(kind, index).name;
    while let Some((remaining, shown)) = backoff.wait(finished, Instant::now()) {
        let message = format!(
            "back-off {} restarting failed container={name} pod={}",
            go_duration(shown),
            pod.display
        );
        let event = format!(
            "Back-off restarting failed container {name} in pod {}",
            pod.display
        );
        pod.event(&name, true, "BackOff", event);
        pod.update_container(kind, index, |s| {
            if s.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
                s.last_state = s.state.take();
            }
            s.state = Some(waiting("CrashLoopBackOff", Some(message)));
        });
        if !sleep_unless_stopped(remaining, stop).await {
            return false;
        }
    }
    pod.update_container(kind, index, |s| {
        if s.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
            s.last_state = s.state.take();
        }
        s.restart_count += 1;
    });
    true
}

/// The kubelet-managed `/etc/hosts` for a container of a pod with its own network namespace,
/// unless the container mounts something there itself (upstream's `shouldMountHostsFile`).
fn hosts_mount(pod: &PodContext, mounts: &[spawn::BindMount]) -> Option<spawn::BindMount> {
    let host_network = pod.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let own = mounts.iter().any(|m| m.target == Path::new("/etc/hosts"));
    let ip = pod.addresses.lock().unwrap().pod_ip?;
    if host_network || own {
        return None;
    }
    let hostname = pod_hostname(&pod.pod);
    match hosts::write(&pod.dir, &pod.pod, &hostname, ip) {
        Ok(source) => Some(spawn::BindMount {
            source,
            target: PathBuf::from("/etc/hosts"),
            read_only: false,
        }),
        Err(err) => {
            tracing::warn!(pod = %pod.display, %err, "writing the pod's hosts file");
            None
        }
    }
}

/// `liveness` as upstream's event messages name the probe: `Liveness`.
fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_decide_as_upstream() {
        use Outcome::{Completed, Failed};
        let cases = [
            // (policy, kind, exit code, killed by a probe) -> None: restart
            ("Always", Kind::App, 0, false, None),
            ("Always", Kind::App, 1, false, None),
            ("OnFailure", Kind::App, 0, false, Some(Completed)),
            ("OnFailure", Kind::App, 1, false, None),
            ("OnFailure", Kind::App, 0, true, None),
            ("Never", Kind::App, 0, false, Some(Completed)),
            ("Never", Kind::App, 2, false, Some(Failed)),
            ("Never", Kind::App, 0, true, Some(Failed)),
            ("Always", Kind::Init, 0, false, Some(Completed)),
            ("Always", Kind::Init, 1, false, None),
            ("OnFailure", Kind::Init, 1, false, None),
            ("Never", Kind::Init, 1, false, Some(Failed)),
            ("Never", Kind::Sidecar, 0, false, None),
        ];
        for (policy, kind, code, killed, expected) in cases {
            assert_eq!(
                restart_or_end(policy, kind, code, killed),
                expected,
                "{policy} {kind:?} exit {code} killed {killed}"
            );
        }
    }

    #[test]
    fn exits_are_reported_with_upstream_reasons() {
        assert_eq!(exit_reason(Some(0), false), (0, "Completed", None));
        assert_eq!(exit_reason(Some(1), false), (1, "Error", None));
        assert_eq!(exit_reason(Some(137), false), (137, "Error", None));
        assert_eq!(exit_reason(Some(137), true), (137, "OOMKilled", None));
        assert_eq!(
            exit_reason(Some(143), true),
            (143, "Error", None),
            "not killed by the OOM killer"
        );
        assert_eq!(exit_reason(None, false).1, "ContainerStatusUnknown");
    }
}

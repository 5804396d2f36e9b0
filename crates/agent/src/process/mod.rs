//! The `process` runtime: each container is a real process started from the host's filesystem
//! (the `image` is only reported; `command` + `args` say what runs), isolated as far as the
//! machine allows, as Nomad's `exec` driver does.
//!
//! * **Sandbox** (root on Linux): a holder process per pod, PID 1 of a new PID namespace, owning
//!   the pod's UTS namespace (hostname = `spec.hostname` or the pod name), IPC and mount
//!   namespaces, and joined to the pod's network namespace when it has one. See [`spawn`].
//! * **Containers**: one process group each, in the sandbox's namespaces with a mount namespace
//!   of their own where their volumes ([`volumes`]) appear at their `mountPath`, in a cgroup
//!   enforcing their memory and cpu limits ([`cgroup`]), with the environment built as the
//!   kubelet does ([`env`]). A container without `command` cannot run here: it waits with
//!   reason `CreateContainerError` and says why.
//! * **Lifecycle**: init containers run in order to completion before app containers;
//!   `restartPolicy` with upstream's crash-loop back-off; stop runs `preStop` exec hooks, sends
//!   SIGTERM to the group, waits for the grace period and SIGKILLs the group; probes
//!   ([`probes`]) drive `started` and `ready` and restart containers whose liveness fails.
//! * **Logs**: CRI-format files per container run under the root directory ([`logs`]).
//! * **Restarts of the agent**: state under `<root>/pods/<uid>/state.json` ([`state`]) lets a
//!   new agent re-adopt the running sandbox and containers.
//!
//! Without root (or off Linux) the runtime degrades, with one warning, to plain processes in
//! their own process groups: no namespaces, no volume mounts, no cgroups.

mod cgroup;
pub mod child;
mod container;
pub mod env;
mod hosts;
pub mod logs;
pub mod probes;
pub mod spawn;
pub mod state;
pub mod volumes;

use crate::podnet::PodNetwork;
use crate::runtime::{
    ContainerEvent, PodSandboxConfig, Runtime, RuntimePodStatus, StatusChanges, waiting,
};
use cgroup::{CgroupMode, ContainerCgroup};
use env::PodAddresses;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use state::PodState;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tokio::sync::watch;

/// The `containerRuntimeVersion` of nodes running the process runtime.
pub const PROCESS_RUNTIME_VERSION: &str = "skiff-process://0.1.0";

/// Upstream kubelet's `minimumGracePeriodInSeconds`: a stop always allows this much.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// Configuration of a [`ProcessRuntime`].
#[derive(Clone)]
pub struct ProcessConfig {
    /// Where logs, volumes and state live (`<data-dir>/agent` for `skiff server`).
    pub root: PathBuf,
    /// Reads the ConfigMaps, Secrets and claims pods refer to.
    pub client: Option<kube::Client>,
    /// The node's IP (`status.hostIP`); `None` finds the address of the default route's
    /// interface, as the agent does.
    pub node_ip: Option<Ipv4Addr>,
}

/// How a stop was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StopRequest {
    /// How long containers get between SIGTERM and SIGKILL.
    grace: Duration,
    /// Whether `preStop` hooks run (not when the pod is removed outright).
    hooks: bool,
}

/// What every pod of the runtime shares.
struct Settings {
    root: PathBuf,
    client: Option<kube::Client>,
    node_ip: Option<Ipv4Addr>,
    handle: tokio::runtime::Handle,
    /// Whether namespaces (and so sandboxes and mounts) are available.
    isolated: bool,
    cgroups: CgroupMode,
}

/// A pod the runtime runs.
struct PodHandle {
    pod: Arc<PodContext>,
    stop: watch::Sender<Option<StopRequest>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs pods' containers as local processes; see the module documentation.
pub struct ProcessRuntime {
    settings: Arc<Settings>,
    pods: Arc<Mutex<HashMap<String, PodHandle>>>,
    /// Removes what earlier agents left of pods this one is not given.
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for ProcessRuntime {
    /// Stops supervising; the processes keep running for the next agent to adopt.
    fn drop(&mut self) {
        self.sweeper.abort();
        for handle in self.pods.lock().unwrap().values() {
            handle.task.abort();
        }
    }
}

/// Warns once per agent that isolation is unavailable.
static DEGRADED: Once = Once::new();

impl ProcessRuntime {
    /// A runtime keeping its state under `config.root`; must be created inside a tokio runtime.
    pub fn new(config: ProcessConfig) -> Self {
        let isolated = cfg!(target_os = "linux")
            // SAFETY: geteuid has no preconditions.
            && unsafe { libc::geteuid() } == 0
            && Path::new("/proc/self/ns/pid").exists();
        if !isolated {
            DEGRADED.call_once(|| {
                tracing::warn!(
                    "the process runtime needs root on Linux for namespaces and cgroups: \
                     containers run as plain processes, without volumes mounts or limits"
                )
            });
        }
        let cgroups = if isolated {
            CgroupMode::detect()
        } else {
            CgroupMode::Unavailable
        };
        let settings = Arc::new(Settings {
            root: config.root,
            client: config.client,
            node_ip: Some(config.node_ip.unwrap_or_else(crate::default_ipv4)),
            handle: tokio::runtime::Handle::current(),
            isolated,
            cgroups,
        });
        let pods = Arc::new(Mutex::new(HashMap::new()));
        let sweeper = tokio::spawn(sweep_orphans(settings.clone(), pods.clone()));
        Self {
            settings,
            pods,
            sweeper,
        }
    }

    /// Whether containers run in namespaces (else as plain processes).
    pub fn is_isolated(&self) -> bool {
        self.settings.isolated
    }

    fn pod(&self, uid: &str) -> Option<Arc<PodContext>> {
        self.pods.lock().unwrap().get(uid).map(|h| h.pod.clone())
    }
}

/// How long after it starts the runtime waits for the agent to hand it every pod it still
/// runs before removing the others (deleted while no agent ran).
const ORPHAN_SWEEP_DELAY: Duration = Duration::from_secs(60);

/// Once the agent had time to start its pods, kills and removes the pods under the root
/// directory that it did not start: their API objects went while no agent watched.
async fn sweep_orphans(settings: Arc<Settings>, pods: Arc<Mutex<HashMap<String, PodHandle>>>) {
    tokio::time::sleep(ORPHAN_SWEEP_DELAY).await;
    let Ok(entries) = std::fs::read_dir(settings.root.join("pods")) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if pods.lock().unwrap().contains_key(&uid) {
            continue;
        }
        let state = PodState::load(&entry.path()).unwrap_or_default();
        tracing::info!(pod_uid = %uid, "removing a pod the agent no longer runs");
        for run in state.runs.values().filter(|r| r.process.is_alive()) {
            spawn::signal_group(run.process.pid, libc::SIGKILL);
        }
        if let Some(sandbox) = state.sandbox.filter(state::ProcessRef::is_alive) {
            spawn::signal_process(sandbox.pid, libc::SIGKILL);
            spawn::wait_adopted(sandbox.pid).await;
        }
        cgroup::remove_pod(&settings.cgroups, &uid);
        if !state.host_network_fallback {
            let network_uid = uid.clone();
            let _ = tokio::task::spawn_blocking(move || PodNetwork::teardown(&network_uid)).await;
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Upstream's pod hostname: the node's for a `hostNetwork` pod, else `spec.hostname`, else
/// the pod name cut to 63 characters without a trailing `-` or `.`.
fn pod_hostname(pod: &Pod) -> String {
    if pod
        .spec
        .as_ref()
        .is_some_and(|s| s.host_network == Some(true))
        && let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname")
    {
        return hostname.trim().to_string();
    }
    if let Some(hostname) = pod.spec.as_ref().and_then(|s| s.hostname.clone()) {
        return hostname;
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    name[..name.len().min(63)]
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// One pod: its spec, what the runtime reports, and its persisted state.
pub(crate) struct PodContext {
    settings: Arc<Settings>,
    uid: String,
    pod: Pod,
    /// Upstream's `format.Pod`: `name_namespace(uid)`.
    display: String,
    /// `<root>/pods/<uid>`.
    dir: PathBuf,
    restart_policy: String,
    status: Mutex<RuntimePodStatus>,
    changes: StatusChanges,
    state: Mutex<PodState>,
    addresses: Mutex<PodAddresses>,
    /// Host paths of the pod's volumes, once prepared.
    volumes: Mutex<HashMap<String, PathBuf>>,
    /// The sandbox holder when this agent started it (an adopted one is known by pid only).
    holder: Mutex<Option<child::Child>>,
}

impl PodContext {
    /// Tells the agent something that happened to `container`, for an Event about the pod.
    fn event(&self, container: &str, warning: bool, reason: &'static str, message: String) {
        self.changes.event(ContainerEvent {
            pod_uid: self.uid.clone(),
            container: container.to_owned(),
            warning,
            reason,
            message,
        });
    }

    /// Changes the pod's status and tells the agent.
    fn update(&self, change: impl FnOnce(&mut RuntimePodStatus)) {
        change(&mut self.status.lock().unwrap());
        self.changes.notify(&self.uid);
    }

    /// Changes the persisted state and saves it.
    fn persist(&self, change: impl FnOnce(&mut PodState)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state);
        if let Err(err) = state.save(&self.dir) {
            tracing::warn!(pod = %self.display, %err, "saving pod state");
        }
    }

    fn cgroup(&self, container: &str) -> ContainerCgroup {
        ContainerCgroup::new(self.settings.cgroups.clone(), &self.uid, container)
    }

    /// Starts `argv` in the running container `container` (its namespaces, environment,
    /// working directory and cgroup), for `kubectl exec` and exec probes.
    fn exec_in(
        &self,
        container: &str,
        argv: &[String],
        stdio: [child::Stdio; 3],
    ) -> Result<child::Child, String> {
        let not_found = || format!("container not found ({container:?})");
        let run = self
            .state
            .lock()
            .unwrap()
            .runs
            .get(container)
            .cloned()
            .ok_or_else(not_found)?;
        if !run.process.is_alive() {
            return Err(not_found());
        }
        let namespaces = if self.settings.isolated {
            Some(spawn::Namespaces::of_process(run.process.pid).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let launch = spawn::Launch {
            argv: argv.to_vec(),
            env: run.env,
            working_dir: run.working_dir,
            namespaces,
            mounts: vec![],
            cgroup_procs: self.cgroup(container).procs_files().unwrap_or_default(),
            stdio,
        };
        spawn::spawn(launch, &self.settings.handle).map_err(|e| format!("exec: {e}"))
    }

    /// The restart count a container's status shows.
    fn restart_count(&self, container: &str) -> Option<i32> {
        let status = self.status.lock().unwrap();
        status
            .init_container_statuses
            .iter()
            .chain(&status.container_statuses)
            .find(|s| s.name == container)
            .map(|s| s.restart_count)
    }
}

impl Runtime for ProcessRuntime {
    fn version(&self) -> &str {
        PROCESS_RUNTIME_VERSION
    }

    fn start_pod(&self, pod: &Pod, sandbox: PodSandboxConfig, changes: &StatusChanges) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut pods = self.pods.lock().unwrap();
        if pods.contains_key(&uid) {
            return;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        // Upstream shows containers not yet created as PodInitializing in a pod with init containers.
        let pending_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let pending = |c: &k8s_openapi::api::core::v1::Container| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(waiting(pending_reason, None)),
            started: Some(false),
            ..Default::default()
        };
        let status = RuntimePodStatus {
            sandbox_ready: false,
            init_container_statuses: spec.init_containers.iter().flatten().map(pending).collect(),
            container_statuses: spec.containers.iter().map(pending).collect(),
            host_network: false,
        };
        let dir = self.settings.root.join("pods").join(&uid);
        let context = Arc::new(PodContext {
            settings: self.settings.clone(),
            display: format!(
                "{}_{}({uid})",
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default()
            ),
            uid: uid.clone(),
            pod: pod.clone(),
            state: Mutex::new(PodState::load(&dir).unwrap_or_default()),
            dir,
            restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".into()),
            status: Mutex::new(status),
            changes: changes.clone(),
            addresses: Mutex::new(PodAddresses {
                pod_ip: None,
                host_ip: self.settings.node_ip,
            }),
            volumes: Mutex::new(HashMap::new()),
            holder: Mutex::new(None),
        });
        let (stop, stop_requests) = watch::channel(None);
        let task =
            self.settings
                .handle
                .spawn(container::run_pod(context.clone(), sandbox, stop_requests));
        pods.insert(
            uid,
            PodHandle {
                pod: context,
                stop,
                task,
            },
        );
    }

    fn stop_pod(&self, pod_uid: &str, grace: Duration) {
        if let Some(handle) = self.pods.lock().unwrap().get(pod_uid) {
            handle.stop.send_if_modified(|request| {
                let first = request.is_none();
                if first {
                    *request = Some(StopRequest {
                        grace: grace.max(MINIMUM_GRACE),
                        hooks: true,
                    });
                }
                first
            });
        }
    }

    fn remove_pod(&self, pod_uid: &str) {
        let Some(handle) = self.pods.lock().unwrap().remove(pod_uid) else {
            return;
        };
        handle.stop.send_replace(Some(StopRequest {
            grace: Duration::ZERO,
            hooks: false,
        }));
        self.settings.handle.spawn(async move {
            let _ = handle.task.await;
            let _ = std::fs::remove_dir_all(&handle.pod.dir);
        });
    }

    fn pod_status(&self, pod_uid: &str) -> Option<RuntimePodStatus> {
        Some(self.pod(pod_uid)?.status.lock().unwrap().clone())
    }

    fn container_log(&self, pod_uid: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let pod = self.pod(pod_uid)?;
        let restart_count = pod.restart_count(container)? - i32::from(previous);
        let path = logs::log_path(&self.settings.root, pod_uid, container, restart_count);
        (restart_count >= 0 && path.exists()).then_some(path)
    }

    fn exec(
        &self,
        pod_uid: &str,
        container: &str,
        command: &[String],
        tty: bool,
    ) -> Result<child::Child, String> {
        let pod = self
            .pod(pod_uid)
            .ok_or_else(|| format!("pod {pod_uid} not found"))?;
        let stdio = || {
            if tty {
                child::Stdio::Terminal
            } else {
                child::Stdio::Piped
            }
        };
        pod.exec_in(container, command, [stdio(), stdio(), stdio()])
    }

    fn port_forward(&self, pod_uid: &str, port: u16) -> Result<std::net::TcpStream, String> {
        let pod = self
            .pod(pod_uid)
            .ok_or_else(|| format!("pod {pod_uid} not found"))?;
        // A pod without a sandbox (degraded) shares the host's network.
        let netns = match pod.sandbox_pid() {
            Some(pid) => Some(
                std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        connect_in(netns.as_ref(), port).map_err(|e| e.to_string())
    }
}

/// How long connecting to a forwarded port may take.
const PORT_FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `localhost:port` of the network namespace `netns` (the agent's own when
/// `None`).
fn connect_in(netns: Option<&std::fs::File>, port: u16) -> std::io::Result<std::net::TcpStream> {
    let address = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let connect = || std::net::TcpStream::connect_timeout(&address, PORT_FORWARD_CONNECT_TIMEOUT);
    match netns {
        Some(netns) => crate::podnet::netns::run_in(netns, connect),
        None => connect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_spec_hostname_or_the_cut_pod_name() {
        let pod = |json: serde_json::Value| -> Pod { serde_json::from_value(json).unwrap() };
        assert_eq!(
            pod_hostname(&pod(serde_json::json!({"metadata": {"name": "web-0"}}))),
            "web-0"
        );
        assert_eq!(
            pod_hostname(&pod(
                serde_json::json!({"metadata": {"name": "web-0"}, "spec": {"hostname": "db", "containers": []}})
            )),
            "db"
        );
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(
            pod_hostname(&pod(
                serde_json::json!({"metadata": {"name": "web-0"}, "spec": {"hostNetwork": true, "hostname": "db", "containers": []}})
            )),
            node.trim(),
            "a host-network pod has the node's hostname"
        );
        let long = format!("{}-b", "a".repeat(62));
        assert_eq!(
            pod_hostname(&pod(serde_json::json!({"metadata": {"name": long}}))),
            "a".repeat(62)
        );
    }
}

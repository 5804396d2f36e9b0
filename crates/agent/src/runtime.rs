//! The plug-in point between the agent and whatever runs containers.
//!
//! The agent (like upstream's kubelet) decides *which* pods run on its node, owns pod IPs, pod
//! conditions and phase, and talks to the API server. A [`Runtime`] runs the containers of a
//! pod, including its `restartPolicy` (with upstream's crash-loop back-off, see
//! [`CrashLoopBackOff`]), and reports their state as core/v1 `ContainerStatus`es. When anything
//! about a pod changes, the runtime says so through [`StatusChanges`] (upstream's PLEG), so the
//! agent never polls its pods.

use crate::podcidr::Ipv4Cidr;
use crate::queue::WorkQueue;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, Pod};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a runtime knows about one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimePodStatus {
    /// Whether the pod's sandbox (network, shared namespaces) exists: upstream's
    /// `PodReadyToStartContainers` condition.
    pub sandbox_ready: bool,
    /// One status per `spec.initContainers` entry, in spec order.
    pub init_container_statuses: Vec<ContainerStatus>,
    /// One status per `spec.containers` entry, in spec order.
    pub container_statuses: Vec<ContainerStatus>,
    /// The pod could not get a network of its own and shares the node's: its IP is the
    /// node's, as for a `hostNetwork` pod.
    pub host_network: bool,
}

/// What the agent decided for a pod's sandbox before its containers start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// The pod's IP from the node's pod CIDR (`None` for a `hostNetwork` pod, or while the
    /// node has no pod CIDR).
    pub ip: Option<Ipv4Addr>,
    /// The node's pod CIDR.
    pub cidr: Option<Ipv4Cidr>,
}

/// Something that happened to a container, which the agent records as an Event about the
/// pod, as the kubelet records `Created`, `Started`, `Killing`, `BackOff` and `Unhealthy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name (the event's `fieldPath` names it).
    pub container: String,
    /// A `Warning` rather than a `Normal` event.
    pub warning: bool,
    /// The event's reason, e.g. `BackOff`.
    pub reason: &'static str,
    /// The event's message, as upstream words it.
    pub message: String,
}

/// Tells the agent that a pod's runtime status changed, or that something happened to one of
/// its containers; cheap to clone.
#[derive(Clone)]
pub struct StatusChanges {
    queue: Arc<WorkQueue<String>>,
    events: Option<tokio::sync::mpsc::UnboundedSender<ContainerEvent>>,
}

impl StatusChanges {
    /// Changes that go to the agent's pod `queue` and container `events`.
    pub(crate) fn new(
        queue: Arc<WorkQueue<String>>,
        events: tokio::sync::mpsc::UnboundedSender<ContainerEvent>,
    ) -> Self {
        Self {
            queue,
            events: Some(events),
        }
    }

    /// Changes nobody receives, for driving a runtime without an agent (tests, tools), which
    /// then polls [`Runtime::pod_status`].
    pub fn unobserved() -> Self {
        Self {
            queue: Arc::new(WorkQueue::new()),
            events: None,
        }
    }

    /// Reports that the pod with this uid changed: the agent will read [`Runtime::pod_status`]
    /// again and write the pod's status if it differs.
    pub fn notify(&self, pod_uid: &str) {
        self.queue.add(pod_uid.to_string());
    }

    /// Reports a container event, which the agent records about the pod.
    pub fn event(&self, event: ContainerEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

/// Runs pods' containers. Methods are synchronous and cheap: a runtime does slow work on its
/// own tasks and reports progress through [`StatusChanges`].
pub trait Runtime: Send + Sync + 'static {
    /// `<name>://<version>`, reported as the node's `status.nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> &str;

    /// Starts the pod's containers, or adopts them when the pod already ran before an agent
    /// restart (its `status.containerStatuses` tell what was running). Called once per pod
    /// uid; `sandbox` holds the pod's network, `changes` is where to report later changes of
    /// this pod.
    fn start_pod(&self, pod: &Pod, sandbox: PodSandboxConfig, changes: &StatusChanges);

    /// Asks the pod's containers to stop (SIGTERM), killing those still running after
    /// `grace`. The runtime reports a change once every container has terminated.
    fn stop_pod(&self, pod_uid: &str, grace: Duration);

    /// Forgets the pod (it is gone from the API), killing whatever still runs.
    fn remove_pod(&self, pod_uid: &str);

    /// The pod's current state, or `None` for a pod this runtime does not know.
    fn pod_status(&self, pod_uid: &str) -> Option<RuntimePodStatus>;

    /// The log file of the container's current run (or, with `previous`, of the run before
    /// it), in the CRI log format the kubelet reads: one line per chunk,
    /// `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <text>` (`P` for a partial line
    /// continued by the next). `None` when the runtime keeps no log for it.
    fn container_log(&self, pod_uid: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let _ = (pod_uid, container, previous);
        None
    }

    /// Starts `command` inside a running container (its namespaces, environment and working
    /// directory) with piped stdin, stdout and stderr, or with `tty` a terminal, for `kubectl
    /// exec`. The error is the message the user sees.
    fn exec(
        &self,
        pod_uid: &str,
        container: &str,
        command: &[String],
        tty: bool,
    ) -> Result<crate::process::child::Child, String> {
        let _ = (pod_uid, container, command, tty);
        Err(format!(
            "the {} runtime cannot exec in containers",
            self.version()
        ))
    }

    /// Connects to TCP `port` on the pod's own `localhost` (inside its network namespace), for
    /// `kubectl port-forward`. The error is the message the user sees.
    fn port_forward(&self, pod_uid: &str, port: u16) -> Result<std::net::TcpStream, String> {
        let _ = (pod_uid, port);
        Err(format!(
            "the {} runtime cannot forward ports",
            self.version()
        ))
    }
}

/// Upstream kubelet's per-container restart back-off (`flowcontrol.Backoff` with 10 s initial
/// and 5 min maximum): the first restart is immediate, then a container that exits again waits
/// 10 s, 20 s, 40 s, ... up to 5 minutes, shown as `CrashLoopBackOff`.
#[derive(Clone, Debug, Default)]
pub struct CrashLoopBackOff {
    /// The current back-off and when it was last advanced, once the container restarted.
    entry: Option<(Duration, std::time::Instant)>,
}

impl CrashLoopBackOff {
    /// Upstream's initial container restart back-off.
    pub const INITIAL: Duration = Duration::from_secs(10);
    /// Upstream's `MaxContainerBackOff`.
    pub const MAX: Duration = Duration::from_secs(300);

    /// For a container that exited at `finished`: `None` to restart it now (advancing the
    /// back-off), or how long it must still wait in `CrashLoopBackOff` (and the back-off to
    /// print in the waiting message).
    pub fn wait(
        &mut self,
        finished: std::time::Instant,
        now: std::time::Instant,
    ) -> Option<(Duration, Duration)> {
        if let Some((backoff, last_update)) = self.entry {
            // Upstream forgets a back-off that has not been used for twice the maximum.
            let expired = now.saturating_duration_since(last_update) > 2 * Self::MAX;
            let elapsed = now.saturating_duration_since(finished);
            if !expired && elapsed < backoff {
                return Some((backoff - elapsed, backoff));
            }
            let next = if expired {
                Self::INITIAL
            } else {
                (backoff * 2).min(Self::MAX)
            };
            self.entry = Some((next, now));
        } else {
            self.entry = Some((Self::INITIAL, now));
        }
        None
    }
}

/// A container state waiting for `reason`, with an optional message.
pub(crate) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// Formats a whole-second duration as Go's `time.Duration.String()` does (`10s`, `1m20s`,
/// `5m0s`), for messages that must read as upstream's.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn back_off_restarts_first_then_doubles_to_five_minutes() {
        let mut backoff = CrashLoopBackOff::default();
        let start = Instant::now();
        assert_eq!(
            backoff.wait(start, start),
            None,
            "first restart is immediate"
        );
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let (remaining, shown) = backoff.wait(now, now).expect("in back-off");
            assert_eq!(remaining, shown);
            waits.push(go_duration(shown));
            now += shown;
            assert_eq!(
                backoff.wait(now - shown, now),
                None,
                "restart once the back-off elapsed"
            );
        }
        assert_eq!(
            waits,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
    }

    #[test]
    fn back_off_resets_after_ten_quiet_minutes() {
        let mut backoff = CrashLoopBackOff::default();
        let start = Instant::now();
        backoff.wait(start, start);
        let later = start + Duration::from_secs(601);
        assert_eq!(backoff.wait(later, later), None);
        assert_eq!(
            backoff.wait(later, later).map(|w| w.1),
            Some(CrashLoopBackOff::INITIAL)
        );
    }
}

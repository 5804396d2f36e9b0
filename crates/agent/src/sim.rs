//! The `sim` runtime: containers that exist only as state machines, so one process can "run"
//! hundreds of thousands of them. All timing lives in one timer heap driven by one task.
//!
//! A simulated container is created, runs after `running_after`, becomes ready after
//! `ready_after`, and from then on does what its pod's annotations script (all optional;
//! durations as `10s`, `1m30s`, `500ms`; they apply to every app container of the pod):
//!
//! | annotation | effect |
//! |---|---|
//! | `skiff.dev/sim-running-after: 5s` | stay `ContainerCreating` this long (default: [`SimTiming::running_after`]) |
//! | `skiff.dev/sim-ready-after: 5s` or `never` | become ready this long after starting, or never (default: [`SimTiming::ready_after`]) |
//! | `skiff.dev/sim-unready-after: 30s` | become unready this long after starting |
//! | `skiff.dev/sim-exit-after: 10s` | exit this long after (each) start |
//! | `skiff.dev/sim-exit-code: "1"` | the exit code for `sim-exit-after` (default 0) |
//! | `skiff.dev/sim-stop-after: 5s` | take this long to exit on SIGTERM (default 0); beyond the grace period the container is killed (exit 137) |
//!
//! Exited containers follow the pod's `restartPolicy` with upstream's back-off: the first
//! restart is immediate, later ones wait 10 s, 20 s, ... 5 min in `CrashLoopBackOff`. So
//! `sim-exit-after: 0s` with `sim-exit-code: "1"` crash-loops exactly as a failing container
//! does. Init containers complete at once (sidecars, `restartPolicy: Always`, run and are ready).

use crate::runtime::{
    CrashLoopBackOff, PodSandboxConfig, Runtime, RuntimePodStatus, StatusChanges, go_duration,
    waiting,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The `containerRuntimeVersion` of simulated nodes.
pub const SIM_RUNTIME_VERSION: &str = "skiff-sim://0.1.0";

/// Default timings of simulated containers; pod annotations override them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimTiming {
    /// From pod start to its containers running.
    pub running_after: Duration,
    /// From a container running to it being ready.
    pub ready_after: Duration,
}

/// What a pod's annotations script.
#[derive(Clone, Debug, PartialEq)]
struct Script {
    running_after: Duration,
    /// `None`: never ready.
    ready_after: Option<Duration>,
    unready_after: Option<Duration>,
    exit_after: Option<Duration>,
    exit_code: i32,
    stop_after: Duration,
}

fn parse_duration(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<jiff::SignedDuration>()
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
}

impl Script {
    fn of(pod: &Pod, timing: SimTiming) -> Self {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let duration = |key: &str| {
            let value = annotations.get(key)?;
            let parsed = parse_duration(value);
            if parsed.is_none() {
                tracing::warn!(
                    pod = pod_name,
                    annotation = key,
                    value,
                    "ignoring an unparsable duration"
                );
            }
            parsed
        };
        let ready_after = match annotations
            .get("skiff.dev/sim-ready-after")
            .map(String::as_str)
        {
            Some("never") => None,
            _ => Some(duration("skiff.dev/sim-ready-after").unwrap_or(timing.ready_after)),
        };
        Self {
            running_after: duration("skiff.dev/sim-running-after").unwrap_or(timing.running_after),
            ready_after,
            unready_after: duration("skiff.dev/sim-unready-after"),
            exit_after: duration("skiff.dev/sim-exit-after"),
            exit_code: annotations
                .get("skiff.dev/sim-exit-code")
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0),
            stop_after: duration("skiff.dev/sim-stop-after").unwrap_or_default(),
        }
    }
}

/// A scheduled step of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Start,
    Ready,
    Unready,
    /// Exit on its own, with the scripted code.
    Exit,
    /// Restart after a back-off.
    Restart,
    /// Exit after SIGTERM (code 0).
    Stopped,
    /// Killed at the end of the grace period (code 137).
    Killed,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    pod_uid: Arc<str>,
    container: usize,
    /// The container's run this timer belongs to; a restart or stop makes older timers stale.
    epoch: u64,
    step: Step,
}

struct SimContainer {
    status: ContainerStatus,
    backoff: CrashLoopBackOff,
    epoch: u64,
    /// When the current run exited, for the back-off.
    finished: Option<Instant>,
}

struct SimPod {
    uid: Arc<str>,
    /// Upstream's `format.Pod`: `name_namespace(uid)`.
    display: String,
    restart_policy: String,
    script: Script,
    init: Vec<ContainerStatus>,
    containers: Vec<SimContainer>,
    changes: StatusChanges,
    stopping: bool,
}

#[derive(Default)]
struct SimState {
    pods: HashMap<Arc<str>, SimPod>,
    timers: BinaryHeap<Reverse<Timer>>,
}

/// The simulated runtime; see the module documentation for its behaviour.
pub struct SimRuntime {
    state: Arc<Mutex<SimState>>,
    wake: Arc<Notify>,
    timing: SimTiming,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for SimRuntime {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

pub(crate) fn now_time() -> Time {
    Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .expect("now is a valid timestamp"),
    )
}

/// A stable 64-hex-digit id from `parts`, shaped as a container runtime's ids.
pub(crate) fn hex_id(parts: &[&str]) -> String {
    (0..4u8)
        .map(|seed| {
            let mut hasher = DefaultHasher::new();
            (seed, parts).hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

impl SimPod {
    fn schedule(
        &self,
        timers: &mut BinaryHeap<Reverse<Timer>>,
        container: usize,
        after: Duration,
        step: Step,
    ) {
        let epoch = self.containers[container].epoch;
        timers.push(Reverse(Timer {
            at: Instant::now() + after,
            pod_uid: self.uid.clone(),
            container,
            epoch,
            step,
        }));
    }

    /// Runs the container (a new run: new id, timers for what the script says).
    fn start(&mut self, timers: &mut BinaryHeap<Reverse<Timer>>, index: usize) {
        let container = &mut self.containers[index];
        container.epoch += 1;
        container.finished = None;
        let status = &mut container.status;
        status.container_id = Some(format!(
            "skiff-sim://{}",
            hex_id(&[&self.uid, &status.name, &status.restart_count.to_string()])
        ));
        status.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now_time()),
            }),
            ..Default::default()
        });
        status.started = Some(true);
        status.ready = false;
        self.schedule_run(timers, index, Duration::ZERO);
    }

    /// Schedules the scripted steps of a run that has been going on for `elapsed`.
    /// A container ready at once is ready as it starts, sparing a status write.
    fn schedule_run(
        &mut self,
        timers: &mut BinaryHeap<Reverse<Timer>>,
        index: usize,
        elapsed: Duration,
    ) {
        let script = &self.script;
        let steps = [
            (script.ready_after, Step::Ready),
            (script.unready_after, Step::Unready),
            (script.exit_after, Step::Exit),
        ];
        for (after, step) in steps {
            match after.filter(|a| *a >= elapsed) {
                Some(after) if after.is_zero() && step == Step::Ready => {
                    self.containers[index].status.ready = true
                }
                Some(after) => self.schedule(timers, index, after - elapsed, step),
                None => {}
            }
        }
    }

    /// The container's run ended with `code`; restarts it as `restartPolicy` says.
    fn exited(
        &mut self,
        timers: &mut BinaryHeap<Reverse<Timer>>,
        index: usize,
        code: i32,
        reason: &str,
    ) {
        let now = Instant::now();
        let container = &mut self.containers[index];
        container.epoch += 1;
        container.finished = Some(now);
        let status = &mut container.status;
        let started_at = status
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        let terminated = ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            started_at,
            finished_at: Some(now_time()),
            container_id: status.container_id.clone(),
            ..Default::default()
        };
        status.state = Some(ContainerState {
            terminated: Some(terminated),
            ..Default::default()
        });
        status.ready = false;
        status.started = Some(false);
        let restart = !self.stopping
            && (self.restart_policy == "Always"
                || (self.restart_policy == "OnFailure" && code != 0));
        if restart {
            self.restart(timers, index);
        }
    }

    /// Restarts an exited container now, or puts it in `CrashLoopBackOff` until its back-off ends.
    fn restart(&mut self, timers: &mut BinaryHeap<Reverse<Timer>>, index: usize) {
        let now = Instant::now();
        let container = &mut self.containers[index];
        let finished = container.finished.unwrap_or(now);
        let status = &mut container.status;
        let last = status
            .state
            .take()
            .filter(|s| s.terminated.is_some())
            .or_else(|| status.last_state.clone());
        match container.backoff.wait(finished.into_std(), now.into_std()) {
            None => {
                status.last_state = last;
                status.restart_count += 1;
                self.start(timers, index);
            }
            Some((remaining, shown)) => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(shown),
                    status.name,
                    self.display
                );
                status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                status.last_state = last;
                self.schedule(timers, index, remaining, Step::Restart);
            }
        }
    }

    fn apply(&mut self, timers: &mut BinaryHeap<Reverse<Timer>>, index: usize, step: Step) {
        let running = self.containers[index]
            .status
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some());
        match step {
            Step::Start => self.start(timers, index),
            Step::Ready if running => self.containers[index].status.ready = true,
            Step::Unready if running => self.containers[index].status.ready = false,
            Step::Exit if running => {
                let code = self.script.exit_code;
                self.exited(
                    timers,
                    index,
                    code,
                    if code == 0 { "Completed" } else { "Error" },
                );
            }
            Step::Restart => self.restart(timers, index),
            Step::Stopped if running => self.exited(timers, index, 0, "Completed"),
            Step::Killed if running => self.exited(timers, index, 137, "Error"),
            _ => {}
        }
    }

    /// Stops the pod: running containers exit after `stop_after` or are killed at `grace`;
    /// containers not running end where they are.
    fn stop(&mut self, timers: &mut BinaryHeap<Reverse<Timer>>, grace: Duration) {
        self.stopping = true;
        for index in 0..self.containers.len() {
            let container = &mut self.containers[index];
            container.epoch += 1;
            let status = &mut container.status;
            let state = status.state.clone().unwrap_or_default();
            if state.running.is_some() {
                let (after, step) = if self.script.stop_after < grace {
                    (self.script.stop_after, Step::Stopped)
                } else {
                    (grace, Step::Killed)
                };
                self.schedule(timers, index, after, step);
            } else if state.waiting.is_some() {
                // Upstream reports a container that never ran (or is between runs) this way.
                let terminated = status
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.clone())
                    .unwrap_or_else(|| ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("ContainerStatusUnknown".into()),
                        message: Some(
                            "The container could not be located when the pod was terminated".into(),
                        ),
                        ..Default::default()
                    });
                status.state = Some(ContainerState {
                    terminated: Some(terminated),
                    ..Default::default()
                });
            }
        }
    }
}

impl SimRuntime {
    /// A runtime with these default timings; spawns its timer task on the current tokio runtime.
    pub fn new(timing: SimTiming) -> Self {
        let state = Arc::new(Mutex::new(SimState::default()));
        let wake = Arc::new(Notify::new());
        let driver = tokio::spawn(drive(state.clone(), wake.clone()));
        Self {
            state,
            wake,
            timing,
            driver,
        }
    }

    /// How many pods the runtime holds.
    pub fn pod_count(&self) -> usize {
        self.state.lock().unwrap().pods.len()
    }
}

/// Fires due timers, sleeping until the earliest one (or until a new timer is added).
async fn drive(state: Arc<Mutex<SimState>>, wake: Arc<Notify>) {
    loop {
        let mut changed: Vec<(StatusChanges, Arc<str>)> = Vec::new();
        let next = {
            let mut guard = state.lock().unwrap();
            let SimState { pods, timers } = &mut *guard;
            while timers.peek().is_some_and(|t| t.0.at <= Instant::now()) {
                let Reverse(timer) = timers.pop().expect("peeked");
                let Some(pod) = pods.get_mut(&timer.pod_uid) else {
                    continue;
                };
                if pod
                    .containers
                    .get(timer.container)
                    .is_none_or(|c| c.epoch != timer.epoch)
                {
                    continue;
                }
                pod.apply(timers, timer.container, timer.step);
                if changed.last().is_none_or(|(_, uid)| *uid != pod.uid) {
                    changed.push((pod.changes.clone(), pod.uid.clone()));
                }
            }
            timers.peek().map(|t| t.0.at)
        };
        for (changes, uid) in changed {
            changes.notify(&uid);
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// How long ago `time` was (zero for a time in the future).
fn elapsed_since(time: &Time) -> Duration {
    Duration::try_from(jiff::Timestamp::now().duration_since(time.0)).unwrap_or_default()
}

impl Runtime for SimRuntime {
    fn version(&self) -> &str {
        SIM_RUNTIME_VERSION
    }

    fn start_pod(&self, pod: &Pod, _sandbox: PodSandboxConfig, changes: &StatusChanges) {
        let uid: Arc<str> = pod.metadata.uid.as_deref().unwrap_or_default().into();
        let spec = pod.spec.clone().unwrap_or_default();
        let reported = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let now = now_time();
        let image_id = |image: &str| {
            format!(
                "{}@sha256:{}",
                image.split(':').next().unwrap_or(image),
                hex_id(&[image])
            )
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let image = c.image.clone().unwrap_or_default();
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                let state = if sidecar {
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(now.clone()),
                        }),
                        ..Default::default()
                    }
                } else {
                    let done = ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        started_at: Some(now.clone()),
                        finished_at: Some(now.clone()),
                        ..Default::default()
                    };
                    ContainerState {
                        terminated: Some(done),
                        ..Default::default()
                    }
                };
                let container_id = Some(format!("skiff-sim://{}", hex_id(&[&uid, &c.name])));
                let state = ContainerState {
                    terminated: state.terminated.map(|t| ContainerStateTerminated {
                        container_id: container_id.clone(),
                        ..t
                    }),
                    ..state
                };
                ContainerStatus {
                    name: c.name.clone(),
                    image_id: image_id(&image),
                    image,
                    container_id,
                    state: Some(state),
                    ready: sidecar,
                    started: Some(sidecar),
                    ..Default::default()
                }
            })
            .collect();
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let image = c.image.clone().unwrap_or_default();
                // A container the pod's status shows running was running before an agent restart: it resumes.
                let status = reported
                    .iter()
                    .find(|s| {
                        s.name == c.name && s.state.as_ref().is_some_and(|st| st.running.is_some())
                    })
                    .cloned()
                    .unwrap_or_else(|| ContainerStatus {
                        name: c.name.clone(),
                        image_id: image_id(&image),
                        image,
                        state: Some(waiting("ContainerCreating", None)),
                        started: Some(false),
                        ..Default::default()
                    });
                SimContainer {
                    status,
                    backoff: CrashLoopBackOff::default(),
                    epoch: 0,
                    finished: None,
                }
            })
            .collect();
        let mut sim_pod = SimPod {
            display: format!(
                "{}_{}({uid})",
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default()
            ),
            uid: uid.clone(),
            restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".into()),
            script: Script::of(pod, self.timing),
            init,
            containers,
            changes: changes.clone(),
            stopping: false,
        };
        {
            let mut guard = self.state.lock().unwrap();
            let SimState { pods, timers } = &mut *guard;
            if pods.contains_key(&uid) {
                return;
            }
            for index in 0..sim_pod.containers.len() {
                let started_at = sim_pod.containers[index]
                    .status
                    .state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.clone());
                match started_at {
                    Some(started_at) => {
                        sim_pod.schedule_run(timers, index, elapsed_since(&started_at))
                    }
                    None if sim_pod.script.running_after.is_zero() => sim_pod.start(timers, index),
                    None => {
                        let after = sim_pod.script.running_after;
                        sim_pod.schedule(timers, index, after, Step::Start);
                    }
                }
            }
            pods.insert(uid.clone(), sim_pod);
        }
        self.wake.notify_one();
    }

    fn stop_pod(&self, pod_uid: &str, grace: Duration) {
        {
            let mut guard = self.state.lock().unwrap();
            let SimState { pods, timers } = &mut *guard;
            let Some(pod) = pods.get_mut(pod_uid) else {
                return;
            };
            if pod.stopping {
                return;
            }
            pod.stop(timers, grace);
            pod.changes.notify(pod_uid);
        }
        self.wake.notify_one();
    }

    fn remove_pod(&self, pod_uid: &str) {
        // Its timers find no pod and are dropped when they come due.
        self.state.lock().unwrap().pods.remove(pod_uid);
    }

    fn pod_status(&self, pod_uid: &str) -> Option<RuntimePodStatus> {
        let state = self.state.lock().unwrap();
        let pod = state.pods.get(pod_uid)?;
        Some(RuntimePodStatus {
            sandbox_ready: true,
            init_container_statuses: pod.init.clone(),
            container_statuses: pod.containers.iter().map(|c| c.status.clone()).collect(),
            host_network: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn scripts_come_from_annotations() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "annotations": {
            "skiff.dev/sim-ready-after": "never", "skiff.dev/sim-exit-after": "2s", "skiff.dev/sim-exit-code": "3"}}}))
        .unwrap();
        let script = Script::of(
            &pod,
            SimTiming {
                running_after: Duration::from_secs(1),
                ready_after: Duration::ZERO,
            },
        );
        assert_eq!(
            script,
            Script {
                running_after: Duration::from_secs(1),
                ready_after: None,
                unready_after: None,
                exit_after: Some(Duration::from_secs(2)),
                exit_code: 3,
                stop_after: Duration::ZERO
            }
        );
    }
}

//! The scheduler: assigns pending pods to nodes as upstream kube-scheduler's default profile
//! does, for the plugins skiff implements (see [`plugins`]).
//!
//! Decisions are pure functions over a [`snapshot::Snapshot`] ([`algorithm::schedule`]); the
//! I/O sits at the edges: watches keep the snapshot and the [`queue::SchedulingQueue`]
//! current, bindings go through `pods/<name>/binding`, failures become a `PodScheduled=False`
//! condition and a `FailedScheduling` event. A pod is assumed on its node as soon as it is
//! chosen (upstream's assume cache), so the next decision sees it without waiting for the
//! watch.

pub mod affinity;
pub mod algorithm;
pub mod bench;
pub mod events;
pub mod plugins;
pub mod prebind;
pub mod queue;
pub mod resources;
pub mod snapshot;

use algorithm::{Cursor, Decision};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use queue::{Popped, SchedulingQueue};
use serde_json::json;
use snapshot::{ClaimFacts, NodeFacts, PodInfo, Snapshot, volume_node_affinity};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` this scheduler serves (pods with none are defaulted to it).
    pub scheduler_name: String,
    /// Upstream's `percentageOfNodesToScore`; `None` for the adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// How many bindings (and failure reports) may be in flight at once.
    pub max_in_flight: usize,
    /// The host name in the events' `reportingInstance`.
    pub host: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: None,
            max_in_flight: 256,
            host: std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "skiff".into()),
        }
    }
}

/// How often unschedulable pods that no change retried are looked at (upstream: 30 s).
const LEFTOVER_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Which watches have delivered their first complete list.
#[derive(Debug, Default)]
struct Synced {
    nodes: bool,
    assigned: bool,
    pending: bool,
    claims: bool,
    volumes: bool,
}

/// The scheduler's state, shared by the watches and the scheduling loop.
#[derive(Default)]
struct State {
    snapshot: Snapshot,
    queue: SchedulingQueue,
    cursor: Cursor,
    /// Pods assumed on a node whose binding is in flight or whose departure from the pending
    /// watch is not yet seen, with the latest version the pending watch delivered meanwhile.
    binding: HashMap<String, Option<Arc<Pod>>>,
    synced: Synced,
    /// What the watches listed since their last restart (replaces state at `InitDone`).
    relisting: HashMap<&'static str, HashSet<String>>,
}

impl State {
    fn ready(&self) -> bool {
        let s = &self.synced;
        s.nodes && s.assigned && s.pending && s.claims && s.volumes
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    config: SchedulerConfig,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cluster changed in a way that may let unschedulable pods fit.
    fn cluster_changed(&self, state: &mut State) {
        state.queue.move_all(Instant::now());
        self.wake.notify_one();
    }
}

/// Watches list as client-go informers do: from the watch cache (`resourceVersion=0`), in one
/// page, so no list is paged across the scheduler's own writes.
pub(crate) fn informer_config() -> watcher::Config {
    watcher::Config {
        page_size: None,
        ..Default::default()
    }
    .any_semantic()
}

/// Runs the scheduler until the process ends.
pub async fn run(client: Client, config: SchedulerConfig) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        config,
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    // Terminated pods hold no resources, as upstream's scheduler informer filters them too.
    let live = "status.phase!=Succeeded,status.phase!=Failed";
    // Owned by this future: dropping it (aborting the task running it) stops the watches.
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(watch(shared.clone(), nodes, informer_config(), on_node));
    watches.spawn(watch(
        shared.clone(),
        pods.clone(),
        informer_config().fields(&format!("spec.nodeName!=,{live}")),
        on_assigned_pod,
    ));
    watches.spawn(watch(
        shared.clone(),
        pods,
        informer_config().fields(&format!("spec.nodeName=,{live}")),
        on_pending_pod,
    ));
    watches.spawn(watch(shared.clone(), claims, informer_config(), on_claim));
    watches.spawn(watch(shared.clone(), volumes, informer_config(), on_volume));
    schedule_loop(shared, client).await;
}

/// Feeds one watch's events to `handle`, under the state lock.
async fn watch<K, F>(shared: Arc<Shared>, api: Api<K>, config: watcher::Config, handle: F)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&Shared, &mut State, watcher::Event<K>),
{
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let mut state = shared.lock();
                handle(&shared, &mut state, event);
            }
            Err(e) => tracing::warn!(%e, "scheduler watch failed; retrying"),
        }
    }
}

/// Tracks a relist: `Init` starts a set, `InitApply` adds to it, `InitDone` returns it.
fn relist<K: Resource>(
    state: &mut State,
    kind: &'static str,
    event: &watcher::Event<K>,
    key: impl Fn(&K) -> String,
) -> Option<HashSet<String>> {
    match event {
        watcher::Event::Init => {
            state.relisting.insert(kind, HashSet::new());
            None
        }
        watcher::Event::InitApply(o) => {
            state.relisting.entry(kind).or_default().insert(key(o));
            None
        }
        watcher::Event::InitDone => Some(state.relisting.remove(kind).unwrap_or_default()),
        _ => None,
    }
}

fn on_node(shared: &Shared, state: &mut State, event: watcher::Event<Node>) {
    let listed = relist(state, "nodes", &event, |n| {
        n.metadata.name.clone().unwrap_or_default()
    });
    match event {
        watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
            if state.snapshot.upsert_node(NodeFacts::from_node(&node)) && state.synced.nodes {
                shared.cluster_changed(state);
            }
        }
        watcher::Event::Delete(node) => state
            .snapshot
            .remove_node(node.metadata.name.as_deref().unwrap_or_default()),
        watcher::Event::InitDone => {
            state.snapshot.retain_nodes(&listed.unwrap_or_default());
            state.synced.nodes = true;
            shared.cluster_changed(state);
        }
        watcher::Event::Init => {}
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn on_assigned_pod(shared: &Shared, state: &mut State, event: watcher::Event<Pod>) {
    let listed = relist(state, "assigned", &event, uid_of);
    match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            let spec = pod.spec.as_ref();
            let node = spec
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default();
            let requests = spec.map(resources::pod_requests).unwrap_or_default();
            state
                .snapshot
                .place_pod(&uid_of(&pod), node, requests, true);
        }
        watcher::Event::Delete(pod) => {
            if state.snapshot.remove_pod(&uid_of(&pod)) {
                shared.cluster_changed(state);
            }
        }
        watcher::Event::InitDone => {
            state
                .snapshot
                .retain_confirmed_pods(&listed.unwrap_or_default());
            state.synced.assigned = true;
            shared.cluster_changed(state);
        }
        watcher::Event::Init => {}
    }
}

fn on_pending_pod(shared: &Shared, state: &mut State, event: watcher::Event<Pod>) {
    let listed = relist(state, "pending", &event, uid_of);
    match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            let uid = uid_of(&pod);
            let scheduler = pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.as_deref())
                .unwrap_or_default();
            let ours = scheduler.is_empty() || scheduler == shared.config.scheduler_name;
            if !ours || pod.metadata.deletion_timestamp.is_some() {
                state.queue.delete(&uid);
            } else if let Some(latest) = state.binding.get_mut(&uid) {
                *latest = Some(Arc::new(pod));
            } else {
                state
                    .queue
                    .add_or_update(PodInfo::new(Arc::new(pod)), Instant::now());
                shared.wake.notify_one();
            }
        }
        watcher::Event::Delete(pod) => {
            let uid = uid_of(&pod);
            state.queue.delete(&uid);
            state.binding.remove(&uid);
        }
        watcher::Event::InitDone => {
            let listed = listed.unwrap_or_default();
            state.queue.retain(&listed);
            state.binding.retain(|uid, _| listed.contains(uid));
            state.synced.pending = true;
            shared.wake.notify_one();
        }
        watcher::Event::Init => {}
    }
}

fn on_claim(shared: &Shared, state: &mut State, event: watcher::Event<PersistentVolumeClaim>) {
    let key = |c: &PersistentVolumeClaim| {
        format!(
            "{}/{}",
            c.metadata.namespace.as_deref().unwrap_or_default(),
            c.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let listed = relist(state, "claims", &event, key);
    match event {
        watcher::Event::Apply(claim) | watcher::Event::InitApply(claim) => {
            state
                .snapshot
                .volumes
                .claims
                .insert(key(&claim), ClaimFacts::from_claim(&claim));
            if state.synced.claims {
                shared.cluster_changed(state);
            }
        }
        watcher::Event::Delete(claim) => {
            state.snapshot.volumes.claims.remove(&key(&claim));
        }
        watcher::Event::InitDone => {
            let listed = listed.unwrap_or_default();
            state
                .snapshot
                .volumes
                .claims
                .retain(|k, _| listed.contains(k));
            state.synced.claims = true;
            shared.cluster_changed(state);
        }
        watcher::Event::Init => {}
    }
}

fn on_volume(shared: &Shared, state: &mut State, event: watcher::Event<PersistentVolume>) {
    let key = |v: &PersistentVolume| v.metadata.name.clone().unwrap_or_default();
    let listed = relist(state, "volumes", &event, key);
    match event {
        watcher::Event::Apply(volume) | watcher::Event::InitApply(volume) => {
            state
                .snapshot
                .volumes
                .volumes
                .insert(key(&volume), volume_node_affinity(&volume));
            if state.synced.volumes {
                shared.cluster_changed(state);
            }
        }
        watcher::Event::Delete(volume) => {
            state.snapshot.volumes.volumes.remove(&key(&volume));
        }
        watcher::Event::InitDone => {
            let listed = listed.unwrap_or_default();
            state
                .snapshot
                .volumes
                .volumes
                .retain(|k, _| listed.contains(k));
            state.synced.volumes = true;
            shared.cluster_changed(state);
        }
        watcher::Event::Init => {}
    }
}

/// What the loop does after one look at the queue.
enum Step {
    /// Bind the pod to the node.
    Bind(Box<Popped>, String),
    /// Report the pod unschedulable with this reason and message.
    Fail(Arc<Pod>, &'static str, String),
    /// Nothing ready: wait for a change or until this instant.
    Wait(Option<Instant>),
}

/// Pops pods and decides, one at a time; the I/O each decision needs runs concurrently (up to
/// `max_in_flight`).
async fn schedule_loop(shared: Arc<Shared>, client: Client) {
    let recorder = events::Recorder::new(
        client.clone(),
        &shared.config.scheduler_name,
        &shared.config.host,
    );
    let in_flight = Arc::new(Semaphore::new(shared.config.max_in_flight.max(1)));
    let mut last_leftover_flush = Instant::now();
    loop {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let step = {
            let mut state = shared.lock();
            let now = Instant::now();
            if now.duration_since(last_leftover_flush) >= LEFTOVER_FLUSH_INTERVAL {
                state.queue.flush_unschedulable_leftover(now);
                last_leftover_flush = now;
            }
            if !state.ready() {
                Step::Wait(None)
            } else {
                decide(&mut state, &shared.config, now)
            }
        };
        match step {
            Step::Bind(popped, node) => {
                let (shared, client, recorder) = (shared.clone(), client.clone(), recorder.clone());
                tokio::spawn(async move {
                    bind(&shared, &client, &recorder, *popped, node).await;
                    drop(permit);
                });
            }
            Step::Fail(pod, reason, message) => {
                let (client, recorder) = (client.clone(), recorder.clone());
                tokio::spawn(async move {
                    report_failure(&client, &recorder, &pod, reason, &message).await;
                    drop(permit);
                });
            }
            Step::Wait(until) => {
                drop(permit);
                let deadline = until.unwrap_or_else(|| Instant::now() + LEFTOVER_FLUSH_INTERVAL);
                let _ = tokio::time::timeout_at(deadline.into(), shared.wake.notified()).await;
            }
        }
    }
}

/// Pops the next pod and decides where it goes, assuming it there.
fn decide(state: &mut State, config: &SchedulerConfig, now: Instant) -> Step {
    let Some(popped) = state.queue.pop(now) else {
        return Step::Wait(state.queue.next_backoff_expiry());
    };
    let pod = popped.pod.pod.clone();
    match algorithm::schedule(
        &popped.pod,
        &state.snapshot,
        &mut state.cursor,
        config.percentage_of_nodes_to_score,
    ) {
        Decision::Node(node) => {
            state
                .snapshot
                .place_pod(&popped.pod.uid, &node, popped.pod.requests, false);
            state.snapshot.volumes.assume_selected_node(
                &popped.pod.namespace,
                &popped.pod.claims,
                &node,
            );
            state.binding.insert(popped.pod.uid.clone(), None);
            Step::Bind(Box::new(popped), node)
        }
        Decision::Unschedulable(fit_error) => {
            state.queue.add_unschedulable(popped, now);
            Step::Fail(pod, "Unschedulable", fit_error.to_string())
        }
        Decision::NoNodes => {
            state.queue.add_unschedulable(popped, now);
            Step::Fail(
                pod,
                "Unschedulable",
                "no nodes available to schedule pods".into(),
            )
        }
    }
}

/// Binds an assumed pod; on failure forgets the assumption and retries the pod after back-off.
async fn bind(
    shared: &Shared,
    client: &Client,
    recorder: &events::Recorder,
    popped: Popped,
    node: String,
) {
    let pod = popped.pod.pod.clone();
    let (namespace, name) = (popped.pod.namespace.clone(), popped.pod.name.clone());
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": popped.pod.uid},
        "target": {"kind": "Node", "name": node},
    });
    // VolumeBinding's PreBind: claims waiting for their first consumer learn the node, and
    // the pod waits for its claims to be bound.
    let prebind = prebind::bind_claims(
        client,
        &namespace,
        &popped.pod.claims,
        &node,
        prebind::BIND_TIMEOUT,
    );
    let result = match prebind.await {
        Ok(()) => api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map_err(|e| format!("running Bind plugin \"DefaultBinder\": {}", api_message(&e))),
        Err(message) => Err(format!(
            "running PreBind plugin \"VolumeBinding\": {message}"
        )),
    };
    match result {
        Ok(_) => {
            let message = format!("Successfully assigned {namespace}/{name} to {node}");
            recorder
                .record(&pod, "Normal", "Scheduled", "Binding", &message)
                .await;
        }
        Err(message) => {
            tracing::debug!(pod = %name, %message, "binding failed");
            let retry = {
                let mut state = shared.lock();
                state.snapshot.remove_pod(&popped.pod.uid);
                // Gone from the pending watch means deleted (or bound by someone else).
                match state.binding.remove(&popped.pod.uid) {
                    Some(latest) => {
                        let pod = latest
                            .map(PodInfo::new)
                            .unwrap_or_else(|| popped.pod.clone());
                        state
                            .queue
                            .add_backoff(Popped { pod, ..popped }, Instant::now());
                        shared.wake.notify_one();
                        true
                    }
                    None => false,
                }
            };
            if retry {
                report_failure(client, recorder, &pod, "SchedulerError", &message).await;
            }
        }
    }
}

/// The API's message for an API error, or the error itself.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Sets `PodScheduled=False` (when it changed) and records a FailedScheduling event.
async fn report_failure(
    client: &Client,
    recorder: &events::Recorder,
    pod: &Pod,
    reason: &str,
    message: &str,
) {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = existing.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    if !unchanged {
        let transition = match existing {
            Some(c) if c.status == "False" => c
                .last_transition_time
                .as_ref()
                .map(|t| json!(t))
                .unwrap_or(json!(null)),
            _ => json!(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            ),
        };
        let condition = json!({"type": "PodScheduled", "status": "False", "reason": reason, "message": message, "lastProbeTime": null, "lastTransitionTime": transition});
        let patch = json!({"status": {"conditions": [condition]}});
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        if let Err(e) = api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            tracing::debug!(%e, "updating PodScheduled failed");
        }
    }
    recorder
        .record(pod, "Warning", "FailedScheduling", "Scheduling", message)
        .await;
}

//! The kubelet core shared by a single node agent and the simulator: it hosts any number of
//! nodes with one node watch, one pod watch, one work queue of pod syncs and one heartbeat
//! ticker, so 5,000 nodes cost no more tasks than one.
//!
//! * Heartbeats: each node gets a slot of the renew interval; every tick renews the Leases of
//!   one slot's nodes, spreading the writes evenly. A node's status is written when it differs
//!   from what the API has (heartbeat times aside), or every status report interval.
//! * Pods: a pod bound to a hosted node is started in the runtime as soon as it is seen; its
//!   syncs (status writes, graceful stop, the final zero-grace DELETE) run on a few workers.
//! * A node annotated `skiff.dev/heartbeat: "stopped"` is frozen as a dead kubelet would be: no
//!   Lease renewals, no node or pod status writes, until the annotation goes.

use crate::node::{NodeProfile, status_changed};
use crate::podcidr::Ipv4Cidr;
use crate::podstatus::{PodRecord, pod_status};
use crate::queue::WorkQueue;
use crate::runtime::{ContainerEvent, PodSandboxConfig, Runtime, StatusChanges};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_controllers::events::{EventRecorder, EventType};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The node annotation that stops (value `stopped`) a node's heartbeats.
pub const HEARTBEAT_ANNOTATION: &str = "skiff.dev/heartbeat";

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How many slots the renew interval is cut into.
const HEARTBEAT_SLOTS: usize = 50;

/// How many pod syncs run at once.
const POD_WORKERS: usize = 16;

/// How many heartbeat writes run at once.
const HEARTBEAT_CONCURRENCY: usize = 32;

/// Heartbeat timings, upstream's by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatTimings {
    /// The Lease's `leaseDurationSeconds` (upstream `--node-lease-duration-seconds`, 40 s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (upstream: a quarter of the lease duration, 10 s).
    pub renew_interval: Duration,
    /// How often an unchanged node status is written anyway (upstream
    /// `nodeStatusReportFrequency`, 5 min).
    pub status_report_interval: Duration,
}

impl Default for HeartbeatTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
        }
    }
}

/// Which nodes a host runs, and how it watches them.
pub(crate) struct HostSpec {
    /// Node watch field selector (`metadata.name=<node>` for one agent, none for the simulator).
    pub node_fields: Option<String>,
    /// Pod watch field selector (`spec.nodeName=<node>`, or all bound pods).
    pub pod_fields: String,
    /// Whether a watched Node is one of ours.
    pub adopts: Box<dyn Fn(&Node) -> bool + Send + Sync>,
    /// The node's InternalIP: fixed for a real node, derived from the pod CIDR for simulated ones.
    pub internal_ip: Box<dyn Fn(Option<Ipv4Cidr>) -> Option<Ipv4Addr> + Send + Sync>,
    pub profile: NodeProfile,
    pub timings: HeartbeatTimings,
}

/// A hosted node.
struct NodeEntry {
    node: Node,
    cidr: Option<Ipv4Cidr>,
    /// Host numbers of the pod CIDR given to pods.
    used_ips: BTreeSet<u32>,
    pods: HashSet<String>,
    slot: usize,
    heartbeat_stopped: bool,
    last_report: Option<Instant>,
}

impl NodeEntry {
    fn internal_ip(&self, spec: &HostSpec) -> Option<Ipv4Addr> {
        (spec.internal_ip)(self.cidr)
    }

    /// The lowest free pod IP (`.0` is the network and `.1` its gateway).
    fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        let cidr = self.cidr?;
        let last = (1u32 << (32 - u32::from(cidr.prefix))).saturating_sub(2);
        let host = (2..=last).find(|h| !self.used_ips.contains(h))?;
        self.used_ips.insert(host);
        cidr.host(host)
    }

    fn release_ip(&mut self, ip: Option<Ipv4Addr>) {
        if let (Some(cidr), Some(ip)) = (self.cidr, ip) {
            self.used_ips
                .remove(&(u32::from(ip) - u32::from(cidr.network)));
        }
    }

    /// Marks a pod's existing IP as used; false if it is not from this node's pod CIDR.
    fn claim_ip(&mut self, ip: Ipv4Addr) -> bool {
        let Some(cidr) = self.cidr.filter(|c| c.contains(ip)) else {
            return false;
        };
        self.used_ips
            .insert(u32::from(ip) - u32::from(cidr.network));
        true
    }
}

#[derive(Default)]
struct HostState {
    nodes: HashMap<String, NodeEntry>,
    pods: HashMap<String, PodRecord>,
    /// Pods bound to nodes that are not (yet) ours, by uid.
    parked: HashMap<String, Pod>,
    next_slot: usize,
}

/// The shared core; see the module documentation.
pub(crate) struct Host {
    client: Client,
    runtime: Arc<dyn Runtime>,
    spec: HostSpec,
    state: Mutex<HostState>,
    pod_queue: Arc<WorkQueue<String>>,
    changes: StatusChanges,
    /// Container events from the runtime, until [`Host::run`] takes them to record.
    container_events: Mutex<Option<mpsc::UnboundedReceiver<ContainerEvent>>>,
    writes: tokio::sync::Semaphore,
}

fn now_time() -> Time {
    Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .expect("now is a valid timestamp"),
    )
}

fn status_hash(status: &k8s_openapi::api::core::v1::PodStatus) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// What a pod sync decided to write.
struct PodWrite {
    namespace: String,
    name: String,
    uid: String,
    status: Option<serde_json::Value>,
    delete: bool,
}

impl Host {
    pub(crate) fn new(client: Client, runtime: Arc<dyn Runtime>, spec: HostSpec) -> Arc<Self> {
        let pod_queue = Arc::new(WorkQueue::new());
        let (events, container_events) = mpsc::unbounded_channel();
        Arc::new(Self {
            client,
            runtime,
            spec,
            state: Mutex::new(HostState::default()),
            changes: StatusChanges::new(pod_queue.clone(), events),
            container_events: Mutex::new(Some(container_events)),
            pod_queue,
            writes: tokio::sync::Semaphore::new(HEARTBEAT_CONCURRENCY),
        })
    }

    /// The hosted pod `namespace/name`, for the kubelet server.
    pub(crate) fn find_pod(&self, namespace: &str, name: &str) -> Option<crate::kubelet::PodRef> {
        let state = self.state.lock().unwrap();
        let (uid, record) = state
            .pods
            .iter()
            .find(|(_, r)| r.namespace == namespace && r.name == name)?;
        Some(crate::kubelet::PodRef {
            uid: uid.clone(),
            containers: record
                .init_containers
                .iter()
                .chain(&record.containers)
                .map(|c| c.name.clone())
                .collect(),
        })
    }

    /// Runs the watches, workers and ticker until the process ends; dropping the future stops
    /// them all.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..POD_WORKERS {
            tasks.spawn(self.clone().pod_worker());
        }
        tasks.spawn(self.clone().heartbeats());
        if let Some(events) = self.container_events.lock().unwrap().take() {
            tasks.spawn(self.clone().record_container_events(events));
        }
        // Nodes first: pods found before their node is known would only be parked.
        let (listed, nodes_listed) = tokio::sync::oneshot::channel();
        tasks.spawn(self.clone().watch_nodes(listed));
        let _ = nodes_listed.await;
        self.watch_pods().await;
    }

    /// Records the runtime's container events about their pods, as the kubelet does: source
    /// `kubelet` on the pod's node, the container named by the event's `fieldPath`.
    async fn record_container_events(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<ContainerEvent>,
    ) {
        let mut recorders: HashMap<String, EventRecorder> = HashMap::new();
        while let Some(event) = events.recv().await {
            let Some((object, node, init)) = ({
                let state = self.state.lock().unwrap();
                state.pods.get(&event.pod_uid).map(|record| {
                    let init = record
                        .init_containers
                        .iter()
                        .any(|c| c.name == event.container);
                    let object = ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        namespace: Some(record.namespace.clone()),
                        name: Some(record.name.clone()),
                        uid: Some(event.pod_uid.clone()),
                        ..Default::default()
                    };
                    (object, record.node.clone(), init)
                })
            }) else {
                continue;
            };
            let field = if init { "initContainers" } else { "containers" };
            let object = ObjectReference {
                field_path: Some(format!("spec.{field}{{{}}}", event.container)),
                ..object
            };
            let recorder = recorders
                .entry(node.clone())
                .or_insert_with(|| EventRecorder::with_host(self.client.clone(), "kubelet", &node));
            let kind = if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            recorder.record(&object, kind, event.reason, event.message);
        }
    }

    async fn watch_nodes(self: Arc<Self>, listed: tokio::sync::oneshot::Sender<()>) {
        let mut listed = Some(listed);
        let mut config = watcher::Config::default();
        if let Some(fields) = &self.spec.node_fields {
            config = config.fields(fields);
        }
        let mut seen = HashSet::new();
        let mut events = watcher(Api::<Node>::all(self.client.clone()), config).boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => seen.clear(),
                Ok(watcher::Event::InitApply(node)) => {
                    seen.insert(node.name_any());
                    self.node_applied(node);
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = self
                        .state
                        .lock()
                        .unwrap()
                        .nodes
                        .keys()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for name in gone {
                        self.node_removed(&name);
                    }
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                }
                Ok(watcher::Event::Apply(node)) => self.node_applied(node),
                Ok(watcher::Event::Delete(node)) => self.node_removed(&node.name_any()),
                Err(err) => tracing::warn!(%err, "watching nodes"),
            }
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let config = watcher::Config::default().fields(&self.spec.pod_fields);
        let mut listing: Vec<Pod> = Vec::new();
        let mut events = watcher(Api::<Pod>::all(self.client.clone()), config).boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitApply(pod)) => listing.push(pod),
                Ok(watcher::Event::InitDone) => {
                    // Pods holding IPs (from before a restart) first, so new pods get free ones.
                    listing.sort_by_key(|p| {
                        p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_none()
                    });
                    let seen: HashSet<String> = listing
                        .iter()
                        .filter_map(|p| p.metadata.uid.clone())
                        .collect();
                    for pod in std::mem::take(&mut listing) {
                        self.pod_applied(pod);
                    }
                    let gone: Vec<String> = {
                        let state = self.state.lock().unwrap();
                        state
                            .pods
                            .keys()
                            .chain(state.parked.keys())
                            .filter(|uid| !seen.contains(*uid))
                            .cloned()
                            .collect()
                    };
                    for uid in gone {
                        self.pod_removed(&uid);
                    }
                }
                Ok(watcher::Event::Apply(pod)) => self.pod_applied(pod),
                Ok(watcher::Event::Delete(pod)) => {
                    self.pod_removed(pod.metadata.uid.as_deref().unwrap_or_default())
                }
                Err(err) => tracing::warn!(%err, "watching pods"),
            }
        }
    }

    fn node_applied(self: &Arc<Self>, node: Node) {
        let name = node.name_any();
        if !(self.spec.adopts)(&node) {
            if self.state.lock().unwrap().nodes.contains_key(&name) {
                self.node_removed(&name);
            }
            return;
        }
        let cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse::<Ipv4Cidr>().ok());
        let stopped = node
            .annotations()
            .get(HEARTBEAT_ANNOTATION)
            .is_some_and(|v| v == "stopped");
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        let adopted = !state.nodes.contains_key(&name);
        if adopted {
            tracing::info!(node = %name, "hosting node");
            let slot = state.next_slot % HEARTBEAT_SLOTS;
            state.next_slot += 1;
            state.nodes.insert(
                name.clone(),
                NodeEntry {
                    node: node.clone(),
                    cidr: None,
                    used_ips: BTreeSet::new(),
                    pods: HashSet::new(),
                    slot,
                    heartbeat_stopped: stopped,
                    last_report: None,
                },
            );
            self.ensure_labels(&node);
        }
        let entry = state.nodes.get_mut(&name).expect("inserted");
        let cidr_arrived = entry.cidr.is_none() && cidr.is_some();
        let restarted = entry.heartbeat_stopped && !stopped;
        entry.node = node;
        entry.heartbeat_stopped = stopped;
        if cidr_arrived {
            entry.cidr = cidr;
            let uids: Vec<String> = entry.pods.iter().cloned().collect();
            // IPs given before a restart keep their addresses; the others get new ones.
            for uid in &uids {
                let Some(record) = state.pods.get_mut(uid) else {
                    continue;
                };
                if record.ip.is_some_and(|ip| !entry.claim_ip(ip)) {
                    record.ip = None;
                }
            }
            for uid in &uids {
                let Some(record) = state.pods.get_mut(uid) else {
                    continue;
                };
                if record.ip.is_none() && !record.host_network && !record.is_terminal() {
                    record.ip = entry.allocate_ip();
                }
            }
        }
        if cidr_arrived || restarted {
            for uid in &entry.pods {
                self.pod_queue.add(uid.clone());
            }
        }
        if restarted {
            entry.last_report = None;
        }
        if adopted {
            let parked: Vec<Pod> = state
                .parked
                .values()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                })
                .cloned()
                .collect();
            for pod in parked {
                state
                    .parked
                    .remove(pod.metadata.uid.as_deref().unwrap_or_default());
                self.record_pod(state, pod);
            }
        }
        let entry = &state.nodes[&name];
        if !entry.heartbeat_stopped {
            let desired = self.spec.profile.status(
                &entry.node,
                entry.internal_ip(&self.spec),
                self.runtime.version(),
                now_time(),
            );
            if status_changed(&entry.node, &desired) {
                self.spawn_status_write(name, desired);
            }
        }
    }

    /// Adds the kubelet's labels to an adopted node that lacks them (a hand-written one).
    fn ensure_labels(self: &Arc<Self>, node: &Node) {
        let name = node.name_any();
        let labels = node.labels();
        let missing: serde_json::Map<String, serde_json::Value> = self
            .spec
            .profile
            .labels(&name)
            .into_iter()
            .filter(|(k, _)| !labels.contains_key(k))
            .map(|(k, v)| (k, v.into()))
            .collect();
        if missing.is_empty() {
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            let patch = serde_json::json!({"metadata": {"labels": missing}});
            if let Err(err) = Api::<Node>::all(host.client.clone())
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(node = %name, %err, "labelling node");
            }
        });
    }

    fn node_removed(&self, name: &str) {
        let mut state = self.state.lock().unwrap();
        let Some(entry) = state.nodes.remove(name) else {
            return;
        };
        tracing::info!(node = %name, "no longer hosting node");
        for uid in entry.pods {
            state.pods.remove(&uid);
            self.runtime.remove_pod(&uid);
        }
    }

    fn pod_applied(&self, pod: Pod) {
        let mut state = self.state.lock().unwrap();
        self.record_pod(&mut state, pod);
    }

    /// Records a pod: parks it if its node is not ours, else starts it in the runtime (once)
    /// and queues a sync.
    fn record_pod(&self, state: &mut HostState, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(entry) = state.nodes.get_mut(&node_name) else {
            state.parked.insert(uid, pod);
            return;
        };
        let mut record = PodRecord::from_pod(&pod, state.pods.get(&uid));
        if !state.pods.contains_key(&uid) {
            entry.pods.insert(uid.clone());
            if let Some(ip) = record.ip
                && !entry.claim_ip(ip)
                && entry.cidr.is_some()
            {
                record.ip = None;
            }
            if record.ip.is_none() && !record.host_network && !record.is_terminal() {
                record.ip = entry.allocate_ip();
            }
        }
        if !record.started && !record.is_terminal() && record.deletion_grace_seconds.is_none() {
            let sandbox = PodSandboxConfig {
                ip: record.ip,
                cidr: entry.cidr,
            };
            self.runtime.start_pod(&pod, sandbox, &self.changes);
            record.started = true;
        }
        state.pods.insert(uid.clone(), record);
        self.pod_queue.add(uid);
    }

    fn pod_removed(&self, uid: &str) {
        let mut state = self.state.lock().unwrap();
        state.parked.remove(uid);
        let Some(record) = state.pods.remove(uid) else {
            return;
        };
        if let Some(entry) = state.nodes.get_mut(&record.node) {
            entry.pods.remove(uid);
            entry.release_ip(record.ip);
        }
        self.runtime.remove_pod(uid);
    }

    async fn pod_worker(self: Arc<Self>) {
        loop {
            let uid = self.pod_queue.next().await;
            if let Some(write) = self.plan_pod_sync(&uid) {
                self.write_pod(&uid, write).await;
            }
            self.pod_queue.done(&uid);
        }
    }

    /// Decides what a pod needs: a graceful stop (done here), a status write, the final delete.
    fn plan_pod_sync(&self, uid: &str) -> Option<PodWrite> {
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        let record = state.pods.get_mut(uid)?;
        let entry = state.nodes.get(&record.node)?;
        if entry.heartbeat_stopped {
            return None;
        }
        if let Some(grace) = record.deletion_grace_seconds
            && record.started
            && !record.stopping
        {
            self.runtime
                .stop_pod(uid, Duration::from_secs(grace.max(0) as u64));
            record.stopping = true;
        }
        let runtime_status = if record.started {
            self.runtime.pod_status(uid)
        } else {
            None
        };
        let all_stopped = runtime_status.as_ref().is_none_or(|s| {
            s.container_statuses
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|st| st.terminated.is_some()))
        });
        let deleting = record.deletion_grace_seconds.is_some();
        let finished = deleting && all_stopped;
        // A pod that ended before this agent started has nothing left to report.
        let status = if record.started {
            let desired = pod_status(
                record,
                runtime_status.as_ref(),
                entry.internal_ip(&self.spec),
                finished,
                &now_time(),
            );
            let hash = status_hash(&desired);
            (desired != record.status && record.written != Some(hash)).then(|| {
                record.written = Some(hash);
                serde_json::to_value(&desired).expect("a pod status serializes")
            })
        } else {
            None
        };
        let delete = finished;
        (status.is_some() || delete).then(|| PodWrite {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            uid: uid.to_string(),
            status,
            delete,
        })
    }

    async fn write_pod(&self, uid: &str, write: PodWrite) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &write.namespace);
        if let Some(status) = write.status {
            // The uid makes the patch fail on a pod recreated under the same name, as the kubelet's.
            let patch = serde_json::json!({"metadata": {"uid": write.uid}, "status": status});
            match pods
                .patch_status(&write.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(pod) => {
                    if let Some(record) = self.state.lock().unwrap().pods.get_mut(uid) {
                        record.status = pod.status.unwrap_or_default();
                    }
                }
                Err(err) => {
                    tracing::debug!(pod = %write.name, %err, "writing pod status");
                    if let Some(record) = self.state.lock().unwrap().pods.get_mut(uid) {
                        record.written = None;
                    }
                    return;
                }
            }
        }
        if write.delete {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(write.uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(err) = pods.delete(&write.name, &params).await {
                tracing::debug!(pod = %write.name, %err, "deleting pod");
            }
        }
    }

    /// Renews one slot's Leases per tick, and writes node statuses that are due.
    async fn heartbeats(self: Arc<Self>) {
        let tick = self.spec.timings.renew_interval / HEARTBEAT_SLOTS as u32;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut slot = 0;
        loop {
            ticker.tick().await;
            let mut due_status = Vec::new();
            let mut due_lease = Vec::new();
            {
                let mut state = self.state.lock().unwrap();
                let now = Instant::now();
                for (name, entry) in state
                    .nodes
                    .iter_mut()
                    .filter(|(_, e)| e.slot == slot && !e.heartbeat_stopped)
                {
                    due_lease.push((
                        name.clone(),
                        entry.node.metadata.uid.clone().unwrap_or_default(),
                    ));
                    let report_due = entry.last_report.is_none_or(|at| {
                        now.duration_since(at) >= self.spec.timings.status_report_interval
                    });
                    let desired = self.spec.profile.status(
                        &entry.node,
                        entry.internal_ip(&self.spec),
                        self.runtime.version(),
                        now_time(),
                    );
                    if report_due || status_changed(&entry.node, &desired) {
                        entry.last_report = Some(now);
                        due_status.push((name.clone(), desired));
                    }
                }
            }
            for (name, desired) in due_status {
                self.spawn_status_write(name, desired);
            }
            for (name, uid) in due_lease {
                let host = self.clone();
                tokio::spawn(async move {
                    let _permit = host.writes.acquire().await;
                    host.renew_lease(&name, &uid).await;
                });
            }
            slot = (slot + 1) % HEARTBEAT_SLOTS;
        }
    }

    fn spawn_status_write(
        self: &Arc<Self>,
        name: String,
        desired: k8s_openapi::api::core::v1::NodeStatus,
    ) {
        let host = self.clone();
        tokio::spawn(async move {
            let _permit = host.writes.acquire().await;
            let patch = serde_json::json!({"status": desired});
            match Api::<Node>::all(host.client.clone())
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(node) => {
                    if let Some(entry) = host.state.lock().unwrap().nodes.get_mut(&name) {
                        entry.last_report = Some(Instant::now());
                        entry.node = node;
                    }
                }
                Err(err) => tracing::warn!(node = %name, %err, "writing node status"),
            }
        });
    }

    /// Renews the node's Lease, creating it if it is missing.
    async fn renew_lease(&self, node: &str, node_uid: &str) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let renew_time = MicroTime(jiff::Timestamp::now());
        let duration = self.spec.timings.lease_duration.as_secs() as i32;
        let spec = serde_json::json!({"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": renew_time});
        match leases
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({"spec": spec})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(node.into()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: node.into(),
                            uid: node_uid.into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: Some(serde_json::from_value(spec).expect("a lease spec")),
                };
                if let Err(err) = leases.create(&PostParams::default(), &lease).await {
                    tracing::warn!(%node, %err, "creating node lease");
                }
            }
            Err(err) => tracing::warn!(%node, %err, "renewing node lease"),
        }
    }
}

//! The node lifecycle controller (upstream `pkg/controller/nodelifecycle`).
//!
//! - Node health: a node whose kubelet neither renews its Lease in `kube-node-lease` nor posts
//!   a new Ready heartbeat for [`NodeLifecycleConfig::node_monitor_grace_period`] gets its
//!   Ready, MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown
//!   (`NodeStatusUnknown`, "Kubelet stopped posting node status."), a `NodeNotReady` event,
//!   and the Ready condition of its pods set to False.
//! - NoSchedule taints mirror node conditions (`not-ready`, `unreachable`, `memory-pressure`,
//!   `disk-pressure`, `network-unavailable`, `pid-pressure`) and `spec.unschedulable`.
//! - NoExecute taints: a NotReady node gets `node.kubernetes.io/not-ready:NoExecute`, an
//!   unreachable one `node.kubernetes.io/unreachable:NoExecute`, added per zone at
//!   [`NodeLifecycleConfig::node_eviction_rate`] nodes per second, slower when a zone is
//!   mostly unhealthy and not at all when every node in the cluster is down (then the
//!   problem is more likely the control plane's). A node that comes back loses them. The
//!   [`taint eviction controller`](crate::tainteviction) evicts the pods.

use crate::events::{EventRecorder, EventType, reference};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// The taint of a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a cordoned node (`spec.unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The namespace of the kubelets' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Which condition in which status brings which NoSchedule taint
/// (upstream's `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The conditions set to Unknown when the kubelet goes silent (NetworkUnavailable is the
/// network plugin's, not the kubelet's).
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Nodes with this label do not count towards their zone's health.
const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// How often nodes waiting for a NoExecute taint are looked at (`NodeEvictionPeriod`).
const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);
/// Attempts at one node's health update before giving up until the next pass
/// (`NodeHealthUpdateRetry`), and the pause between them (`retrySleepTime`).
const HEALTH_UPDATE_TRIES: u32 = 5;
const HEALTH_RETRY_SLEEP: Duration = Duration::from_millis(20);
/// Attempts at a taint change that keeps conflicting with other writers.
const TAINT_UPDATE_TRIES: u32 = 5;

/// Settings of the node lifecycle controller, as kube-controller-manager's flags.
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is Unknown
    /// (`--node-monitor-grace-period`, 50 s since Kubernetes 1.32).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted a Ready condition (`--node-startup-grace-period`, 60 s).
    pub node_startup_grace_period: Duration,
    /// Nodes per second that get NoExecute taints in a healthy zone (`--node-eviction-rate`, 0.1).
    pub node_eviction_rate: f64,
    /// The same in a mostly unhealthy zone of a large cluster (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_node_eviction_rate: f64,
    /// Zones with at most this many nodes stop tainting when mostly unhealthy
    /// (`--large-cluster-size-threshold`, 50).
    pub large_cluster_size_threshold: usize,
    /// The fraction of not-Ready nodes (at least three) that makes a zone mostly unhealthy
    /// (`--unhealthy-zone-threshold`, 0.55).
    pub unhealthy_zone_threshold: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: Client, config: NodeLifecycleConfig) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    // NoSchedule taints follow every node change (upstream's node update workers).
    let taint_client = client.clone();
    tokio::spawn(
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(node_writer)
            .applied_objects()
            .for_each(move |node| {
                let client = taint_client.clone();
                async move {
                    match node {
                        Ok(node) => {
                            if let Err(err) = no_schedule_tainting_pass(&client, &node).await {
                                tracing::warn!(node = %node.name_any(), %err, "failed to update NoSchedule taints");
                            }
                        }
                        Err(err) => tracing::warn!(%err, "node watch failed"),
                    }
                }
            }),
    );
    tokio::spawn(
        watcher(
            Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(lease_writer)
        .for_each(|_| async {}),
    );
    if nodes.wait_until_ready().await.is_err() || leases.wait_until_ready().await.is_err() {
        return;
    }
    let mut controller = Controller::new(client, config, nodes, leases);
    let mut monitor = tokio::time::interval(controller.config.node_monitor_period);
    let mut tainting = tokio::time::interval(NODE_EVICTION_PERIOD);
    monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tainting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = monitor.tick() => controller.monitor_node_health().await,
            _ = tainting.tick() => controller.no_execute_tainting_pass().await,
        }
    }
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// Whether `node` has a taint with `key` and `effect` (upstream's `TaintExists`).
fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        ..Default::default()
    }
}

fn creation_time(node: &Node) -> Timestamp {
    node.metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0)
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

/// The zone a node is in for eviction rate limiting (upstream's `GetZoneKey`): region and
/// zone labels, or `""` when it has neither.
fn zone_key(node: &Node) -> String {
    let labels = node.labels();
    let label = |stable: &str, beta: &str| {
        labels
            .get(stable)
            .or_else(|| labels.get(beta))
            .cloned()
            .unwrap_or_default()
    };
    let region = label(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = label(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

/// A reference to a node for events, as upstream's `RecordNodeEvent` makes it.
fn node_reference(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid,
        ..Default::default()
    }
}

/// Adds `add` (stamped with `timeAdded`, replacing taints of the same key and effect) and
/// removes `remove` (matched by key and effect) on the node named `name`, re-reading it on
/// conflicts (upstream's `SwapNodeControllerTaint`). Does nothing when nothing would change.
async fn swap_taints(
    client: &Client,
    name: &str,
    add: &[Taint],
    remove: &[Taint],
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let now = Time(Timestamp::now());
    for attempt in 1..=TAINT_UPDATE_TRIES {
        let node = api.get(name).await?;
        let current = taints(&node);
        let missing = add.iter().filter(|a| {
            !current
                .iter()
                .any(|t| t.key == a.key && t.effect == a.effect)
        });
        let needs_change = missing.count() > 0
            || current.iter().any(|t| {
                remove
                    .iter()
                    .any(|r| r.key == t.key && r.effect == t.effect)
            });
        if !needs_change {
            return Ok(());
        }
        let mut updated: Vec<Taint> = current
            .iter()
            .filter(|t| {
                !remove
                    .iter()
                    .chain(add)
                    .any(|r| r.key == t.key && r.effect == t.effect)
            })
            .cloned()
            .collect();
        updated.extend(add.iter().map(|t| Taint {
            time_added: Some(now.clone()),
            ..t.clone()
        }));
        // The resourceVersion makes the write conditional: taints have no merge key, so a
        // concurrent change would otherwise be overwritten.
        let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": updated}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(err) if is_conflict(&err) && attempt < TAINT_UPDATE_TRIES => continue,
            other => return other.map(drop),
        }
    }
    Ok(())
}

/// Keeps the NoSchedule taints that mirror `node`'s conditions and `spec.unschedulable` in
/// step with them (upstream's `doNoScheduleTaintingPass`).
async fn no_schedule_tainting_pass(client: &Client, node: &Node) -> Result<(), kube::Error> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut wanted: Vec<Taint> = conditions
        .iter()
        .filter_map(|c| {
            CONDITION_TAINTS
                .iter()
                .find(|(kind, status, _)| c.type_ == *kind && c.status == *status)
        })
        .map(|(_, _, key)| taint(key, "NoSchedule"))
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        wanted.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let ours = |key: &str| {
        key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
    };
    let present: Vec<&Taint> = taints(node)
        .iter()
        .filter(|t| t.effect == "NoSchedule" && ours(&t.key))
        .collect();
    let add: Vec<Taint> = wanted
        .iter()
        .filter(|w| !present.iter().any(|p| p.key == w.key))
        .cloned()
        .collect();
    let remove: Vec<Taint> = present
        .iter()
        .filter(|p| !wanted.iter().any(|w| w.key == p.key))
        .map(|p| (*p).clone())
        .collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    swap_taints(client, &node.name_any(), &add, &remove).await
}

/// What the controller last saw of a node's health (upstream's `nodeHealthData`).
#[derive(Clone)]
struct NodeHealth {
    /// When the controller last saw the kubelet alive (a new heartbeat or Lease renewal),
    /// by the controller's own clock.
    probe: Timestamp,
    /// The Ready condition as last seen.
    ready: Option<NodeCondition>,
    /// The Lease's renewTime as last seen: `None` when no Lease was seen since the last
    /// status change, `Some(None)` for a Lease without renewTime.
    lease_renewed: Option<Option<Timestamp>>,
}

impl NodeHealth {
    fn fresh(ready: Option<NodeCondition>, probe: Timestamp) -> Self {
        Self {
            probe,
            ready,
            lease_renewed: None,
        }
    }
}

/// A zone's health (upstream's `ZoneState`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState`: a zone's health from its nodes' Ready conditions.
fn zone_state(config: &NodeLifecycleConfig, conditions: &[Option<NodeCondition>]) -> ZoneState {
    let ready = conditions
        .iter()
        .filter(|c| c.as_ref().is_some_and(|c| c.status == "True"))
        .count();
    let not_ready = conditions.len() - ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / conditions.len() as f64 >= config.unhealthy_zone_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The tainting rate for a zone of `size` nodes in `state` (upstream's `setLimiterInZone`).
fn zone_rate(config: &NodeLifecycleConfig, size: usize, state: ZoneState) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > config.large_cluster_size_threshold => {
            config.secondary_node_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
        _ => config.node_eviction_rate,
    }
}

/// A token bucket of burst 1 (`flowcontrol.NewTokenBucketRateLimiter(qps, 1)`); a rate of
/// zero never lets anything through.
struct RateLimiter {
    qps: f64,
    tokens: f64,
    refilled_at: std::time::Instant,
}

impl RateLimiter {
    fn new(qps: f64) -> Self {
        Self {
            qps,
            tokens: if qps > 0.0 { 1.0 } else { 0.0 },
            refilled_at: std::time::Instant::now(),
        }
    }

    fn try_accept(&mut self) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.refilled_at).as_secs_f64() * self.qps).min(1.0);
        self.refilled_at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Nodes waiting for a NoExecute taint in one zone (upstream's `RateLimitedTimedQueue`). A
/// node stays a member after it was tainted, so it is not queued again until it is removed.
struct TaintQueue {
    limiter: RateLimiter,
    members: HashSet<String>,
    /// Queued nodes by when they may be processed.
    due: BTreeSet<(std::time::Instant, String)>,
}

impl TaintQueue {
    fn new(qps: f64) -> Self {
        Self {
            limiter: RateLimiter::new(qps),
            members: HashSet::new(),
            due: BTreeSet::new(),
        }
    }

    /// Queues `name` unless it is a member already; whether it was added.
    fn add(&mut self, name: &str) -> bool {
        if !self.members.insert(name.to_owned()) {
            return false;
        }
        self.due
            .insert((std::time::Instant::now(), name.to_owned()));
        true
    }

    /// Forgets `name` entirely; whether it was a member.
    fn remove(&mut self, name: &str) -> bool {
        self.due.retain(|(_, n)| n != name);
        self.members.remove(name)
    }

    /// Switches to a new rate; a saturated old limiter passes its saturation on.
    fn swap_limiter(&mut self, qps: f64) {
        if self.limiter.qps == qps {
            return;
        }
        let mut limiter = RateLimiter::new(qps);
        if qps > 0.0 && !self.limiter.try_accept() {
            limiter.try_accept();
        }
        self.limiter = limiter;
    }
}

struct Controller {
    client: Client,
    config: NodeLifecycleConfig,
    nodes: Store<Node>,
    leases: Store<Lease>,
    recorder: EventRecorder,
    /// Nodes seen by the last pass, with their uids (upstream's `knownNodeSet`).
    known: HashMap<String, Option<String>>,
    health: HashMap<String, NodeHealth>,
    zone_states: HashMap<String, ZoneState>,
    zone_tainters: HashMap<String, TaintQueue>,
    /// Nodes whose pods could not all be marked not ready.
    retry_pods: HashSet<String>,
}

impl Controller {
    fn new(
        client: Client,
        config: NodeLifecycleConfig,
        nodes: Store<Node>,
        leases: Store<Lease>,
    ) -> Self {
        let recorder = EventRecorder::new(client.clone(), "node-controller");
        Self {
            client,
            config,
            nodes,
            leases,
            recorder,
            known: HashMap::new(),
            health: HashMap::new(),
            zone_states: HashMap::new(),
            zone_tainters: HashMap::new(),
            retry_pods: HashSet::new(),
        }
    }

    fn add_zone(&mut self, node: &Node) {
        let zone = zone_key(node);
        if !self.zone_states.contains_key(&zone) {
            self.zone_states.insert(zone.clone(), ZoneState::Initial);
            self.zone_tainters
                .insert(zone, TaintQueue::new(self.config.node_eviction_rate));
        }
    }

    /// Upstream's `monitorNodeHealth`.
    async fn monitor_node_health(&mut self) {
        let nodes = self.nodes.state();
        let present: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for node in &nodes {
            let name = node.name_any();
            if self.known.contains_key(&name) {
                self.add_zone(node);
                continue;
            }
            let message = format!("Node {name} event: Registered Node {name} in Controller");
            self.recorder.record(
                &node_reference(&name, node.uid()),
                EventType::Normal,
                "RegisteredNode",
                message,
            );
            self.known.insert(name, node.uid());
            self.add_zone(node);
            self.mark_node_as_reachable(node).await;
        }
        let deleted: Vec<(String, Option<String>)> = self
            .known
            .iter()
            .filter(|(n, _)| !present.contains(*n))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        for (name, uid) in deleted {
            let message = format!("Node {name} event: Removing Node {name} from Controller");
            self.recorder.record(
                &node_reference(&name, uid),
                EventType::Normal,
                "RemovingNode",
                message,
            );
            self.known.remove(&name);
        }

        let mut zone_conditions: HashMap<String, Vec<Option<NodeCondition>>> = HashMap::new();
        for node in &nodes {
            let Some((node, observed, current)) =
                self.update_node_health_with_retries((**node).clone()).await
            else {
                continue;
            };
            let name = node.name_any();
            if !node.labels().contains_key(LABEL_EXCLUDE_DISRUPTION) {
                zone_conditions
                    .entry(zone_key(&node))
                    .or_default()
                    .push(current.clone());
            }
            let Some(current) = current else { continue };
            self.process_taint_based_eviction(&node, &observed).await;
            let became_not_ready = current.status != "True" && observed.status == "True";
            if became_not_ready {
                self.recorder.record(
                    &node_reference(&name, node.uid()),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            let mark_pods =
                became_not_ready || (self.retry_pods.contains(&name) && observed.status != "True");
            if mark_pods && let Err(err) = self.mark_pods_not_ready(&name).await {
                tracing::warn!(node = %name, %err, "unable to mark all pods NotReady; will retry");
                self.retry_pods.insert(name);
                continue;
            }
            self.retry_pods.remove(&name);
        }
        self.handle_disruption(&zone_conditions, &nodes).await;
    }

    /// Runs [`Self::try_update_node_health`], re-reading the node after failures; the node as
    /// updated with its observed and current Ready conditions, or `None` when it is gone or
    /// keeps failing.
    async fn update_node_health_with_retries(
        &mut self,
        mut node: Node,
    ) -> Option<(Node, NodeCondition, Option<NodeCondition>)> {
        let api: Api<Node> = Api::all(self.client.clone());
        for attempt in 1..=HEALTH_UPDATE_TRIES {
            match self.try_update_node_health(&mut node).await {
                Ok((observed, current)) => return Some((node, observed, current)),
                Err(err) if attempt == HEALTH_UPDATE_TRIES => {
                    tracing::warn!(node = %node.name_any(), %err, "updating node health failed; no pods will be evicted");
                }
                Err(_) => {
                    tokio::time::sleep(HEALTH_RETRY_SLEEP).await;
                    node = api.get(&node.name_any()).await.ok()?;
                }
            }
        }
        None
    }

    /// Upstream's `tryUpdateNodeHealth`: notices heartbeats (a new Ready heartbeat time or a
    /// renewed Lease) and marks the kubelet's conditions Unknown once they stop for the grace
    /// period. Returns the Ready condition as observed before and as it is now.
    async fn try_update_node_health(
        &mut self,
        node: &mut Node,
    ) -> Result<(NodeCondition, Option<NodeCondition>), kube::Error> {
        let name = node.name_any();
        let now = Timestamp::now();
        let mut health = self.health.get(&name).cloned();
        let current = condition(node, "Ready").cloned();
        let (observed, grace) = match &current {
            Some(c) => (c.clone(), self.config.node_monitor_grace_period),
            None => {
                // A node that never posted a Ready condition is treated as if it had posted
                // Unknown when it was created.
                let created = Time(creation_time(node));
                let fake = NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    last_heartbeat_time: Some(created.clone()),
                    last_transition_time: Some(created),
                    ..Default::default()
                };
                match &mut health {
                    Some(h) => h.ready = None,
                    None => health = Some(NodeHealth::fresh(None, creation_time(node))),
                }
                (fake, self.config.node_startup_grace_period)
            }
        };
        let saved = health.as_ref().and_then(|h| h.ready.clone());
        let saved_lease = health.as_ref().and_then(|h| h.lease_renewed);
        let mut health = match (health, &saved, &current) {
            (None, _, _) | (Some(_), None, Some(_)) | (Some(_), Some(_), None) => {
                NodeHealth::fresh(current.clone(), now)
            }
            (Some(_), Some(s), Some(c)) if s.last_heartbeat_time != c.last_heartbeat_time => {
                NodeHealth::fresh(current.clone(), now)
            }
            (Some(h), _, _) => h,
        };
        let lease = self
            .leases
            .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
        let observed_renewal = lease.as_ref().map(|l| {
            l.spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0)
        });
        if let Some(renewed) = observed_renewal {
            let newer = match saved_lease {
                None => true,
                Some(saved) => matches!((saved, renewed), (Some(s), Some(r)) if s < r),
            };
            if newer {
                health.lease_renewed = Some(renewed);
                health.probe = now;
            }
        }

        let silent_for = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        if now.duration_since(health.probe) > silent_for {
            let conditions = node
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            for kind in KUBELET_CONDITIONS {
                match conditions.iter_mut().find(|c| c.type_ == kind) {
                    None => conditions.push(NodeCondition {
                        type_: kind.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(Time(now)),
                    }),
                    Some(c) if c.status != "Unknown" => {
                        c.status = "Unknown".into();
                        c.reason = Some("NodeStatusUnknown".into());
                        c.message = Some("Kubelet stopped posting node status.".into());
                        c.last_transition_time = Some(Time(now));
                    }
                    Some(_) => {}
                }
            }
            let current = condition(node, "Ready").cloned();
            if current.as_ref() != Some(&observed) {
                let api: Api<Node> = Api::all(self.client.clone());
                let result = api
                    .replace_status(&name, &PostParams::default(), node)
                    .await;
                match result {
                    Ok(updated) => {
                        *node = updated;
                        let lease_renewed = observed_renewal.or(health.lease_renewed);
                        self.health.insert(
                            name,
                            NodeHealth {
                                probe: health.probe,
                                ready: current.clone(),
                                lease_renewed,
                            },
                        );
                        return Ok((observed, current));
                    }
                    Err(err) => {
                        self.health.insert(name, health);
                        return Err(err);
                    }
                }
            }
        }
        self.health.insert(name, health);
        Ok((observed, current))
    }

    /// Upstream's `processTaintBaseEviction`: queues NotReady and unreachable nodes for their
    /// NoExecute taint, swaps one for the other at once, and untaints Ready nodes.
    async fn process_taint_based_eviction(&mut self, node: &Node, observed: &NodeCondition) {
        let (wanted, opposite) = match observed.status.as_str() {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            "True" => {
                self.mark_node_as_reachable(node).await;
                return;
            }
            _ => return,
        };
        if has_taint(node, opposite, "NoExecute") {
            let result = swap_taints(
                &self.client,
                &node.name_any(),
                &[taint(wanted, "NoExecute")],
                &[taint(opposite, "NoExecute")],
            )
            .await;
            if let Err(err) = result {
                tracing::warn!(node = %node.name_any(), %err, "failed to swap NoExecute taints; will retry");
            }
            return;
        }
        let queue = self
            .zone_tainters
            .get_mut(&zone_key(node))
            .expect("zones are added before their nodes are processed");
        if !has_taint(node, wanted, "NoExecute") {
            queue.remove(&node.name_any());
        }
        queue.add(&node.name_any());
    }

    /// Upstream's `markNodeAsReachable`: removes both NoExecute taints and forgets the node's
    /// place in the taint queue.
    async fn mark_node_as_reachable(&mut self, node: &Node) {
        let name = node.name_any();
        if has_taint(node, TAINT_UNREACHABLE, "NoExecute")
            || has_taint(node, TAINT_NOT_READY, "NoExecute")
        {
            let remove = [
                taint(TAINT_UNREACHABLE, "NoExecute"),
                taint(TAINT_NOT_READY, "NoExecute"),
            ];
            if let Err(err) = swap_taints(&self.client, &name, &[], &remove).await {
                tracing::warn!(node = %name, %err, "failed to remove NoExecute taints; will retry");
                return;
            }
        }
        if let Some(queue) = self.zone_tainters.get_mut(&zone_key(node)) {
            queue.remove(&name);
        }
    }

    /// Upstream's `MarkPodsNotReady`: sets the Ready condition of the node's pods to False.
    async fn mark_pods_not_ready(&self, node_name: &str) -> Result<(), kube::Error> {
        let all: Api<Pod> = Api::all(self.client.clone());
        let pods = all
            .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
            .await?;
        let mut failure = None;
        for mut pod in pods {
            let conditions = pod.status.as_mut().and_then(|s| s.conditions.as_mut());
            let Some(ready) = conditions.and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(Timestamp::now()));
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .replace_status(&pod.name_any(), &PostParams::default(), &pod)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(err) => {
                    tracing::warn!(pod = %pod.name_any(), %err, "failed to update pod status");
                    failure = Some(err);
                }
            }
            self.recorder.record(
                &reference(&pod),
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready",
            );
        }
        failure.map_or(Ok(()), Err)
    }

    /// Upstream's `doNoExecuteTaintingPass`: taints queued nodes as fast as their zone's rate
    /// allows.
    async fn no_execute_tainting_pass(&mut self) {
        let zones: Vec<String> = self.zone_tainters.keys().cloned().collect();
        for zone in zones {
            loop {
                let queue = self
                    .zone_tainters
                    .get_mut(&zone)
                    .expect("zones are never removed");
                let Some((due, name)) = queue.due.first().cloned() else {
                    break;
                };
                if !queue.limiter.try_accept() || std::time::Instant::now() < due {
                    break;
                }
                queue.due.remove(&(due, name.clone()));
                if let Some(retry_in) = self.taint_unhealthy_node(&name).await {
                    let queue = self
                        .zone_tainters
                        .get_mut(&zone)
                        .expect("zones are never removed");
                    if queue.members.contains(&name) {
                        queue
                            .due
                            .insert((std::time::Instant::now() + retry_in, name));
                    }
                }
            }
        }
    }

    /// Gives a queued node the NoExecute taint matching its Ready condition; when to try
    /// again if that failed.
    async fn taint_unhealthy_node(&self, name: &str) -> Option<Duration> {
        let node = self.nodes.get(&ObjectRef::new(name))?;
        let Some(ready) = condition(&node, "Ready") else {
            return Some(Duration::from_millis(50));
        };
        let (wanted, opposite) = match ready.status.as_str() {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            // Ready again: nothing to taint.
            _ => return None,
        };
        match swap_taints(
            &self.client,
            name,
            &[taint(wanted, "NoExecute")],
            &[taint(opposite, "NoExecute")],
        )
        .await
        {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(node = %name, %err, "failed to add NoExecute taint");
                Some(Duration::ZERO)
            }
        }
    }

    /// Upstream's `handleDisruption`: adapts tainting rates to zone health, and stops tainting
    /// (removing NoExecute taints) while every zone is fully disrupted.
    async fn handle_disruption(
        &mut self,
        zone_conditions: &HashMap<String, Vec<Option<NodeCondition>>>,
        nodes: &[std::sync::Arc<Node>],
    ) {
        let new_states: HashMap<&String, ZoneState> = zone_conditions
            .iter()
            .map(|(zone, c)| (zone, zone_state(&self.config, c)))
            .collect();
        let all_are_fully_disrupted = new_states.values().all(|s| *s == ZoneState::FullDisruption);
        for zone in zone_conditions.keys() {
            self.zone_states
                .entry(zone.clone())
                .or_insert(ZoneState::Initial);
        }
        // Zones without nodes any more are forgotten; upstream stops at the first zone not
        // fully disrupted, which decides the answer either way.
        self.zone_states
            .retain(|zone, _| zone_conditions.contains_key(zone));
        let all_were_fully_disrupted = self
            .zone_states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);
        if all_are_fully_disrupted && all_were_fully_disrupted {
            return;
        }
        if all_are_fully_disrupted {
            tracing::info!("all nodes are not ready; stopping NoExecute tainting");
            for node in nodes {
                self.mark_node_as_reachable(node).await;
            }
            for (zone, state) in self.zone_states.iter_mut() {
                if let Some(queue) = self.zone_tainters.get_mut(zone) {
                    queue.swap_limiter(0.0);
                }
                *state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_were_fully_disrupted {
            tracing::info!("some nodes are ready again; resuming NoExecute tainting");
            // Nodes get a fresh grace period: their silence was most likely ours.
            let now = Timestamp::now();
            for node in nodes {
                if let Some(h) = self.health.get_mut(&node.name_any()) {
                    h.probe = now;
                }
            }
        }
        let changes: Vec<(String, f64, ZoneState)> = self
            .zone_states
            .iter()
            .filter_map(|(zone, old)| {
                let new = new_states[zone];
                (all_were_fully_disrupted || *old != new).then(|| {
                    (
                        zone.clone(),
                        zone_rate(&self.config, zone_conditions[zone].len(), new),
                        new,
                    )
                })
            })
            .collect();
        for (zone, rate, state) in changes {
            if let Some(queue) = self.zone_tainters.get_mut(&zone) {
                queue.swap_limiter(rate);
            }
            self.zone_states.insert(zone, state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node_with_labels(labels: &[(&str, &str)]) -> Node {
        let mut node = Node::default();
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        node
    }

    #[test]
    fn zone_key_joins_region_and_zone_as_upstream() {
        assert_eq!(zone_key(&node_with_labels(&[])), "");
        let node = node_with_labels(&[
            ("topology.kubernetes.io/region", "r1"),
            ("failure-domain.beta.kubernetes.io/zone", "z1"),
        ]);
        assert_eq!(zone_key(&node), "r1:\u{0}:z1");
    }

    fn ready(status: &str) -> Option<NodeCondition> {
        Some(NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            ..Default::default()
        })
    }

    #[test]
    fn taint_queue_keeps_tainted_nodes_as_members_until_removed() {
        let mut queue = TaintQueue::new(0.1);
        assert!(queue.add("n1"));
        assert!(!queue.add("n1"));
        queue.due.clear();
        assert!(
            !queue.add("n1"),
            "a node processed once is not queued again"
        );
        assert!(queue.remove("n1"));
        assert!(queue.add("n1"));
    }

    #[test]
    fn rate_limiter_lets_one_through_then_waits() {
        let mut limiter = RateLimiter::new(0.1);
        assert!(limiter.try_accept());
        assert!(!limiter.try_accept());
        assert!(!RateLimiter::new(0.0).try_accept());
    }

    #[test]
    fn zone_states_and_rates_follow_upstream_thresholds() {
        let config = NodeLifecycleConfig::default();
        assert_eq!(
            zone_state(&config, &[ready("Unknown"), None]),
            ZoneState::FullDisruption
        );
        assert_eq!(
            zone_state(&config, &[ready("True"), ready("False"), ready("Unknown")]),
            ZoneState::Normal
        );
        let mostly_down = [
            ready("True"),
            ready("True"),
            ready("False"),
            ready("Unknown"),
            None,
        ];
        assert_eq!(
            zone_state(&config, &mostly_down),
            ZoneState::PartialDisruption
        );
        assert_eq!(zone_rate(&config, 5, ZoneState::PartialDisruption), 0.0);
        assert_eq!(zone_rate(&config, 51, ZoneState::PartialDisruption), 0.01);
        assert_eq!(zone_rate(&config, 51, ZoneState::Normal), 0.1);
    }
}

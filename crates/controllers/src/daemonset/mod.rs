//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod on every node the
//! DaemonSet's template may run on, following nodes as they come, go and change.
//!
//! Each sync records the template as a ControllerRevision ([`crate::history`]), decides per
//! node which pods to create and delete ([`manage`]), replaces old pods within the update
//! strategy's bounds ([`update`]), drops surplus history and writes [`status`]. Daemon pods are
//! not bound by the controller: each requires its node through node affinity
//! ([`eligibility::require_node`]) and the scheduler binds it.

pub mod eligibility;
pub mod manage;
pub mod status;
pub mod update;

use crate::controller_ref::{self, ControllerRefManager, plan_claims};
use crate::events::{self, EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::history::{self, HistoryError, REVISION_HASH_LABEL};
use crate::podevents::{PodEvents, PodOwners, selecting_owners};
use crate::sharedpods::SharedPods;
use crate::slowstart::slow_start_batch;
use crate::workqueue::{WorkQueue, key_of};
use crate::{apierror, informer, intstr, podutil, statuswriter};
use eligibility::Placement;
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use manage::{FailedPodBackoff, PodsByNode};
use skiff_api::selector::LabelSelector;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "daemonset-controller";
/// The most pods created, and deleted, in one sync (upstream's `BurstReplicas`).
const BURST_REPLICAS: usize = 250;
/// Concurrent syncs (kube-controller-manager's `--concurrent-daemonset-syncs`).
const WORKERS: usize = 2;

/// Runs the controller until the process ends, on the shared pod informer `shared_pods`.
pub async fn run(client: Client, shared_pods: SharedPods) {
    let (daemon_sets, ds_writer) = reflector::store::<DaemonSet>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (revisions, revision_writer) = reflector::store::<ControllerRevision>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        daemon_sets,
        nodes,
        pods: shared_pods.store(),
        revisions,
        queue: WorkQueue::new(),
        expectations: Expectations::new(),
        pod_events: PodEvents::default(),
        node_facts: Mutex::new(HashMap::new()),
        failed_pod_backoff: Mutex::new(FailedPodBackoff::default()),
    });
    let c = controller.clone();
    informer::spawn(
        Api::all(client.clone()),
        ds_writer,
        informer::keep_all,
        move |event| c.daemon_set_event(event),
    );
    let c = controller.clone();
    informer::spawn(
        Api::all(client.clone()),
        node_writer,
        slim_node,
        move |event| c.node_event(event),
    );
    let c = controller.clone();
    shared_pods
        .subscribe(move |event, _| c.pod_events.handle(event, &*c, &c.expectations, &c.queue));
    informer::spawn(
        Api::all(client),
        revision_writer,
        informer::keep_all,
        informer::ignore,
    );
    if !(informer::synced(&controller.daemon_sets).await
        && informer::synced(&controller.nodes).await
        && shared_pods.synced().await
        && informer::synced(&controller.revisions).await)
    {
        return;
    }
    let queue = controller.queue.clone();
    queue
        .run_workers(WORKERS, "daemon set", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

/// Keeps of a node what placement reads: its name, labels and taints.
fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.status = None;
}

/// What placement depends on in a node; a change in it may move daemon pods.
type NodeFacts = (Option<BTreeMap<String, String>>, Option<Vec<Taint>>);

struct Controller {
    client: Client,
    recorder: EventRecorder,
    daemon_sets: Store<DaemonSet>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue<String>,
    expectations: Expectations,
    pod_events: PodEvents,
    /// Each node's labels and taints as last seen, so that heartbeats wake nobody.
    node_facts: Mutex<HashMap<String, NodeFacts>>,
    failed_pod_backoff: Mutex<FailedPodBackoff>,
}

impl PodOwners for Controller {
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        controller_ref::resolve_controller(&self.daemon_sets, &pod.metadata)
            .map(|ds| key_of(&ds.metadata))
    }

    fn selecting(&self, pod: &Pod) -> Vec<String> {
        selecting_owners(&self.daemon_sets, pod, selector_of)
    }

    fn all_keys(&self) -> Vec<String> {
        self.daemon_sets
            .state()
            .iter()
            .map(|ds| key_of(&ds.metadata))
            .collect()
    }
}

impl Controller {
    fn daemon_set_event(&self, event: watcher::Event<DaemonSet>) {
        match event {
            watcher::Event::Apply(ds) => self.queue.add(key_of(&ds.metadata)),
            watcher::Event::Delete(ds) => {
                let key = key_of(&ds.metadata);
                self.expectations.forget(&key);
                self.queue.add(key);
            }
            // The store holds the relisted objects only once the relist is done.
            watcher::Event::InitDone => self.queue_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// Wakes every DaemonSet when a node appears, goes, or changes its labels or taints.
    fn node_event(&self, event: watcher::Event<Node>) {
        let mut facts = self.node_facts.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(node) => {
                let now = (
                    node.metadata.labels.clone(),
                    node.spec.as_ref().and_then(|s| s.taints.clone()),
                );
                if facts.insert(node.name_any(), now.clone()) != Some(now) {
                    self.queue_all();
                }
            }
            watcher::Event::Delete(node) => {
                facts.remove(&node.name_any());
                self.queue_all();
            }
            watcher::Event::InitDone => {
                facts.clear();
                for node in self.nodes.state() {
                    let now = (
                        node.metadata.labels.clone(),
                        node.spec.as_ref().and_then(|s| s.taints.clone()),
                    );
                    facts.insert(node.name_any(), now);
                }
                self.queue_all();
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn queue_all(&self) {
        for key in self.all_keys() {
            self.queue.add(key);
        }
    }

    /// One sync of the DaemonSet `key` (upstream's `syncDaemonSet`); `Ok(Some(d))` asks to be
    /// synced again after `d`.
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let Some(ds) = self
            .daemon_sets
            .get(&ObjectRef::new(name).within(namespace))
        else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(selector) = selector_of(&ds) else {
            tracing::warn!(%key, "daemon set has an invalid selector; not syncing it");
            return Ok(None);
        };
        if selector.is_empty() {
            let message =
                "This daemon set is selecting all pods. A non-empty selector is required.";
            self.recorder.record(
                &events::reference(ds.as_ref()),
                EventType::Warning,
                "SelectingAll",
                message,
            );
            return Ok(None);
        }
        // A DaemonSet being deleted leaves its pods to the garbage collector.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        let ds_api = Api::<DaemonSet>::namespaced(self.client.clone(), namespace);
        let revision_api = Api::<ControllerRevision>::namespaced(self.client.clone(), namespace);

        let revisions = self.revisions.state();
        let in_namespace: Vec<&ControllerRevision> = revisions
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let owner = history::Owner {
            object: ds.as_ref(),
            selector: &selector,
            template: &spec.template,
            collision_count,
        };
        let history = match history::construct(&revision_api, &ds_api, owner, &in_namespace).await {
            Ok(history) => history,
            Err(HistoryError::Collision(name)) => {
                let count = collision_count.unwrap_or(0) + 1;
                statuswriter::replace_status(&ds_api, &ds, |ds| {
                    ds.status
                        .get_or_insert_with(Default::default)
                        .collision_count = Some(count)
                })
                .await?;
                anyhow::bail!("revision {name} collides; collision count raised to {count}");
            }
            Err(e) => return Err(e.into()),
        };
        let hash = history::hash_of(&history.current).to_owned();
        let template = eligibility::pod_template(&ds, &hash);
        let daemon_spec = template.spec.clone().unwrap_or_default();
        let nodes: Vec<(String, Placement)> = self
            .nodes
            .state()
            .iter()
            .map(|node| (node.name_any(), eligibility::placement(&daemon_spec, node)))
            .collect();

        let all_pods = self.pods.state();
        let in_namespace: Vec<&Pod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let manager = ControllerRefManager {
            children: &pod_api,
            owner: controller_ref::owner_reference(ds.as_ref()),
        };
        let owned = manager
            .claim(
                plan_claims(&uid, false, &selector, in_namespace),
                || async {
                    let fresh = ds_api.get_opt(name).await?;
                    Ok(fresh
                        .filter(|ds| ds.metadata.deletion_timestamp.is_none())
                        .and_then(|ds| ds.metadata.uid))
                },
            )
            .await?;
        let mut pods = PodsByNode::new();
        for pod in owned {
            // Finished pods being deleted are as good as gone.
            if pod.metadata.deletion_timestamp.is_some() && podutil::is_terminated(pod) {
                continue;
            }
            if let Some(node) = eligibility::target_node(pod) {
                pods.entry(node.to_owned()).or_default().push(pod);
            }
        }

        let min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
        let mut retry_after = None;
        let observed = self.expectations.satisfied(key);
        if observed {
            let rolling = spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.type_.as_deref())
                .is_none_or(|t| t == "RollingUpdate");
            let desired: Vec<&str> = nodes
                .iter()
                .filter(|(_, p)| p.should_run)
                .map(|(n, _)| n.as_str())
                .collect();
            let (max_surge, max_unavailable) = if rolling {
                rollout_bounds(&ds, desired.len())
            } else {
                (0, 0)
            };
            let plan = {
                let mut backoff = self
                    .failed_pod_backoff
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                manage::plan(
                    &nodes,
                    &pods,
                    &hash,
                    max_surge > 0,
                    min_ready_seconds,
                    Timestamp::now(),
                    &mut backoff,
                    &uid,
                    Instant::now(),
                )
            };
            retry_after = plan.retry_after;
            for (pod, node) in &plan.failed {
                let message = format!(
                    "Found failed daemon pod {namespace}/{pod} on node {node}, will try to kill it"
                );
                self.recorder.record(
                    &events::reference(ds.as_ref()),
                    EventType::Warning,
                    "FailedDaemonPod",
                    message,
                );
            }
            self.sync_nodes(key, &ds, &template, plan.delete, plan.create_on)
                .await?;
            if rolling && self.expectations.satisfied(key) {
                let step = update::plan(
                    &desired,
                    &pods,
                    &hash,
                    max_surge,
                    max_unavailable,
                    min_ready_seconds,
                    Timestamp::now(),
                );
                self.sync_nodes(key, &ds, &template, step.delete, step.create_on)
                    .await?;
            }
            let live: HashSet<&str> = pods
                .values()
                .flatten()
                .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
                .map(String::as_str)
                .chain([hash.as_str()])
                .collect();
            let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
            history::truncate(
                &revision_api,
                history.old,
                |r| live.contains(history::hash_of(r)),
                limit,
            )
            .await?;
        }

        let mut new_status =
            status::calculate(&nodes, &pods, &hash, min_ready_seconds, Timestamp::now());
        let old_status = ds.status.clone().unwrap_or_default();
        // Until its last creates and deletes are seen, the sync has not acted on this generation.
        new_status.observed_generation = if observed {
            ds.metadata.generation
        } else {
            old_status.observed_generation
        };
        new_status.collision_count = old_status.collision_count;
        new_status.conditions = old_status.conditions.clone();
        if new_status != old_status {
            statuswriter::replace_status(&ds_api, &ds, |ds| ds.status = Some(new_status.clone()))
                .await?;
        }
        if min_ready_seconds > 0
            && new_status.number_ready != new_status.number_available.unwrap_or(0)
        {
            let wait = Duration::from_secs(min_ready_seconds as u64);
            retry_after = Some(retry_after.map_or(wait, |r: Duration| r.min(wait)));
        }
        Ok(retry_after)
    }

    /// Deletes `delete` and creates a daemon pod on each of `create_on` (upstream's
    /// `syncNodes`), at most [`BURST_REPLICAS`] of each, creates in slow-start batches.
    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        template: &PodTemplateSpec,
        mut delete: Vec<String>,
        mut create_on: Vec<String>,
    ) -> anyhow::Result<()> {
        if delete.is_empty() && create_on.is_empty() {
            return Ok(());
        }
        delete.truncate(BURST_REPLICAS);
        create_on.truncate(BURST_REPLICAS);
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let pod_key = |name: &str| format!("{namespace}/{name}");
        self.expectations
            .expect(key, create_on.len(), delete.iter().map(|n| pod_key(n)));
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let reference = events::reference(ds);
        let owner = controller_ref::owner_reference(ds);
        let generate_name = format!("{}-", ds.name_any());

        let count = create_on.len();
        let nodes = Mutex::new(create_on.into_iter());
        let (created, create_error) = slow_start_batch(count, 1, || async {
            let node = nodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next()
                .expect("one node per create");
            let mut pod = podutil::pod_from_template(
                template,
                namespace,
                generate_name.clone(),
                owner.clone(),
            );
            eligibility::require_node(pod.spec.get_or_insert_with(Default::default), &node);
            match pod_api.create(&PostParams::default(), &pod).await {
                Ok(pod) => {
                    let message = format!("Created pod: {}", pod.name_any());
                    self.recorder.record(
                        &reference,
                        EventType::Normal,
                        "SuccessfulCreate",
                        message,
                    );
                    Ok(())
                }
                // Nothing is created in a namespace being deleted; that is no failure.
                Err(e) if apierror::is_namespace_terminating(&e) => Ok(()),
                Err(e) => {
                    let message = format!("Error creating: {}", apierror::message(&e));
                    self.recorder
                        .record(&reference, EventType::Warning, "FailedCreate", message);
                    Err(e)
                }
            }
        })
        .await;
        // Creates that failed or never ran will not be observed.
        self.expectations.lowered_creations(key, count - created);

        let (pod_api, reference) = (&pod_api, &reference);
        let deletes = join_all(delete.iter().map(|name| async move {
            match pod_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    let message = format!("Deleted pod: {name}");
                    self.recorder
                        .record(reference, EventType::Normal, "SuccessfulDelete", message);
                    Ok(())
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &pod_key(name));
                    if apierror::is_not_found(&e) {
                        return Ok(());
                    }
                    let message = format!("Error deleting: {}", apierror::message(&e));
                    self.recorder
                        .record(reference, EventType::Warning, "FailedDelete", message);
                    Err(e)
                }
            }
        }))
        .await;
        if let Some(e) = create_error {
            return Err(e.into());
        }
        match deletes.into_iter().find_map(Result::err) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The DaemonSet's selector, if it parses.
fn selector_of(ds: &DaemonSet) -> Option<LabelSelector> {
    LabelSelector::from_label_selector(&ds.spec.as_ref()?.selector).ok()
}

/// `(maxSurge, maxUnavailable)` of a rolling update over `desired` nodes (upstream's
/// `updatedDesiredNodeCounts`): percentages of the desired nodes rounded up; when both come to
/// 0, one node at a time.
fn rollout_bounds(ds: &DaemonSet, desired: usize) -> (usize, usize) {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let total = i32::try_from(desired).unwrap_or(i32::MAX);
    let scaled = |value: Option<&IntOrString>, default: i32| {
        let value = value.map_or(Some(default), |v| intstr::scaled_value(v, total, true));
        usize::try_from(value.unwrap_or(0)).unwrap_or(0)
    };
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), 0);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 1);
    if desired > 0 && surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

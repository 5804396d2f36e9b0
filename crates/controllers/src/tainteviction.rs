//! The taint eviction controller (upstream `pkg/controller/tainteviction`): pods on a node with
//! NoExecute taints they do not tolerate are deleted at once; pods that tolerate them for
//! `tolerationSeconds` are deleted when the shortest such time has passed; pods that tolerate
//! them for ever stay. Each deletion is announced by a `TaintManagerEviction` event ("Marking
//! for deletion Pod ns/name") and marks the pod with a `DisruptionTarget` condition first; a
//! scheduled deletion that is no longer needed is cancelled with "Cancelling deletion of Pod
//! ns/name".

use crate::events::{EventRecorder, EventType};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_api::scheduling::tolerates;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "taint-eviction-controller";
/// Attempts at one pod deletion, and the pause between them.
const DELETE_TRIES: u32 = 5;
const DELETE_RETRY_SLEEP: Duration = Duration::from_millis(10);

/// `namespace`, `name`.
type PodKey = (String, String);

/// What the controller keeps of a pod.
#[derive(Clone, PartialEq)]
struct PodInfo {
    node: String,
    tolerations: Arc<[Toleration]>,
}

/// Toleration lists shared between pods: nearly every pod carries the same defaults
/// (not-ready and unreachable for 300 s, added at admission), so one copy serves them all
/// instead of one per pod.
#[derive(Default)]
struct SharedTolerations(Vec<Arc<[Toleration]>>);

impl SharedTolerations {
    /// The most distinct lists kept for sharing; a list seen after that is held by its pod alone.
    const CAPACITY: usize = 64;

    /// The shared copy of `tolerations`.
    fn share(&mut self, tolerations: &[Toleration]) -> Arc<[Toleration]> {
        if let Some(list) = self.0.iter().find(|list| list[..] == *tolerations) {
            return list.clone();
        }
        let list: Arc<[Toleration]> = tolerations.into();
        if self.0.len() < Self::CAPACITY {
            self.0.push(list.clone());
        }
        list
    }
}

/// A pod's deletion (upstream's `TimedWorker`).
enum Eviction {
    /// Waiting to fire.
    Scheduled {
        id: u64,
        created_at: Instant,
        task: AbortHandle,
    },
    /// Fired and succeeded; kept so that the pod is not scheduled again until the deletion
    /// is seen or the eviction is cancelled.
    Done,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let (finished_tx, mut finished) = mpsc::unbounded_channel();
    let mut controller = Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        tainted_nodes: HashMap::new(),
        pods: HashMap::new(),
        shared_tolerations: SharedTolerations::default(),
        pods_by_node: HashMap::new(),
        evictions: HashMap::new(),
        next_id: 0,
        finished: finished_tx,
    };
    let mut nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut pods = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relisted_nodes: HashSet<String> = HashSet::new();
    let mut relisted_pods: HashSet<PodKey> = HashSet::new();
    loop {
        // Node changes go first, so that evictions start before pod updates are worked off.
        tokio::select! {
            biased;
            Some(event) = nodes.next() => match event {
                Ok(watcher::Event::Apply(node)) => controller.node_updated(&node.name_any(), Some(&node)),
                Ok(watcher::Event::Delete(node)) => controller.node_updated(&node.name_any(), None),
                Ok(watcher::Event::Init) => relisted_nodes.clear(),
                Ok(watcher::Event::InitApply(node)) => {
                    relisted_nodes.insert(node.name_any());
                    controller.node_updated(&node.name_any(), Some(&node));
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = controller.tainted_nodes.keys().filter(|n| !relisted_nodes.contains(*n)).cloned().collect();
                    for name in gone {
                        controller.node_updated(&name, None);
                    }
                }
                Err(err) => tracing::warn!(%err, "node watch failed"),
            },
            Some((key, id, succeeded)) = finished.recv() => controller.eviction_finished(key, id, succeeded),
            Some(event) = pods.next() => match event {
                Ok(watcher::Event::Apply(pod)) => {
                    let info = controller.pod_info(&pod);
                    controller.pod_updated(pod_key(&pod), Some(info));
                }
                Ok(watcher::Event::Delete(pod)) => controller.pod_updated(pod_key(&pod), None),
                Ok(watcher::Event::Init) => relisted_pods.clear(),
                Ok(watcher::Event::InitApply(pod)) => {
                    relisted_pods.insert(pod_key(&pod));
                    let info = controller.pod_info(&pod);
                    controller.pod_updated(pod_key(&pod), Some(info));
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<PodKey> = controller.pods.keys().filter(|k| !relisted_pods.contains(*k)).cloned().collect();
                    for key in gone {
                        controller.pod_updated(key, None);
                    }
                }
                Err(err) => tracing::warn!(%err, "pod watch failed"),
            },
        }
    }
}

fn pod_key(pod: &Pod) -> PodKey {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

/// The toleration used for each taint, or `None` if some taint is not tolerated (upstream's
/// `GetMatchingTolerations`).
fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| tolerations.iter().find(|t| tolerates(t, taint)))
        .collect()
}

/// How long the pod may stay: the shortest `tolerationSeconds` (none or negative: zero), or
/// `None` when it may stay for ever (upstream's `getMinTolerationTime`).
fn min_toleration_time(used: &[&Toleration]) -> Option<Duration> {
    if used.is_empty() {
        return Some(Duration::ZERO);
    }
    let seconds = used.iter().filter_map(|t| t.toleration_seconds).min()?;
    Some(Duration::from_secs(seconds.max(0).unsigned_abs()))
}

fn pod_reference((namespace, name): &PodKey) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        ..Default::default()
    }
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    /// The NoExecute taints of every node that has some.
    tainted_nodes: HashMap<String, Vec<Taint>>,
    pods: HashMap<PodKey, PodInfo>,
    /// The toleration lists `pods` refer to.
    shared_tolerations: SharedTolerations,
    pods_by_node: HashMap<String, HashSet<PodKey>>,
    evictions: HashMap<PodKey, Eviction>,
    next_id: u64,
    /// Where eviction tasks report `(pod, eviction id, succeeded)`.
    finished: mpsc::UnboundedSender<(PodKey, u64, bool)>,
}

impl Controller {
    /// What the controller keeps of `pod`.
    fn pod_info(&mut self, pod: &Pod) -> PodInfo {
        let spec = pod.spec.as_ref();
        let tolerations = spec
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        PodInfo {
            node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            tolerations: self.shared_tolerations.share(tolerations),
        }
    }

    /// Upstream's `handleNodeUpdate`, for a node that changed (`None`: was deleted).
    fn node_updated(&mut self, name: &str, node: Option<&Node>) {
        let Some(node) = node else {
            self.tainted_nodes.remove(name);
            return;
        };
        let taints = no_execute_taints(node);
        let before = self
            .tainted_nodes
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if before == taints.as_slice() {
            return;
        }
        if taints.is_empty() {
            self.tainted_nodes.remove(name);
        } else {
            self.tainted_nodes.insert(name.to_owned(), taints.clone());
        }
        let pods: Vec<PodKey> = self
            .pods_by_node
            .get(name)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        let now = Instant::now();
        for key in pods {
            if taints.is_empty() {
                self.cancel(&key);
            } else {
                let tolerations = self.pods[&key].tolerations.clone();
                self.process_pod_on_node(key, &tolerations, &taints, now);
            }
        }
    }

    /// Upstream's `handlePodUpdate`, for a pod that changed (`None`: was deleted).
    fn pod_updated(&mut self, key: PodKey, info: Option<PodInfo>) {
        if self.pods.get(&key) == info.as_ref() {
            return;
        }
        if let Some(old) = self.pods.remove(&key)
            && let Some(on_node) = self.pods_by_node.get_mut(&old.node)
        {
            on_node.remove(&key);
            if on_node.is_empty() {
                self.pods_by_node.remove(&old.node);
            }
        }
        let Some(info) = info else {
            self.cancel(&key);
            return;
        };
        self.pods.insert(key.clone(), info.clone());
        if info.node.is_empty() {
            return;
        }
        self.pods_by_node
            .entry(info.node.clone())
            .or_default()
            .insert(key.clone());
        if let Some(taints) = self.tainted_nodes.get(&info.node).cloned() {
            self.process_pod_on_node(key, &info.tolerations, &taints, Instant::now());
        }
    }

    /// Upstream's `processPodOnNode`: schedules, keeps or cancels the pod's eviction.
    fn process_pod_on_node(
        &mut self,
        key: PodKey,
        tolerations: &[Toleration],
        taints: &[Taint],
        now: Instant,
    ) {
        let Some(used) = matching_tolerations(taints, tolerations) else {
            // Not tolerated: whatever was scheduled, the pod goes now.
            self.cancel(&key);
            self.schedule(key, now, now);
            return;
        };
        let Some(toleration) = min_toleration_time(&used) else {
            self.cancel(&key);
            return;
        };
        let mut created_at = now;
        if let Some(Eviction::Scheduled {
            created_at: scheduled_at,
            ..
        }) = self.evictions.get(&key)
        {
            created_at = *scheduled_at;
            // The earlier deadline stands.
            if created_at + toleration < now + toleration {
                return;
            }
            self.cancel(&key);
        }
        self.schedule(key, created_at, now + toleration);
    }

    /// Starts the pod's eviction at `fire_at` unless one is known already.
    fn schedule(&mut self, key: PodKey, created_at: Instant, fire_at: Instant) {
        if self.evictions.contains_key(&key) {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let (client, recorder, finished) = (
            self.client.clone(),
            self.recorder.clone(),
            self.finished.clone(),
        );
        let pod = key.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(fire_at).await;
            let message = format!("Marking for deletion Pod {}/{}", pod.0, pod.1);
            recorder.record(
                &pod_reference(&pod),
                EventType::Normal,
                "TaintManagerEviction",
                message,
            );
            let mut succeeded = false;
            for _ in 0..DELETE_TRIES {
                match mark_and_delete(&client, &pod).await {
                    Ok(()) => {
                        succeeded = true;
                        break;
                    }
                    Err(err) => tracing::debug!(pod = %pod.1, %err, "eviction attempt failed"),
                }
                tokio::time::sleep(DELETE_RETRY_SLEEP).await;
            }
            let _ = finished.send((pod, id, succeeded));
        });
        self.evictions.insert(
            key,
            Eviction::Scheduled {
                id,
                created_at,
                task: task.abort_handle(),
            },
        );
    }

    /// Cancels the pod's eviction, announcing it if it had not fired yet
    /// (upstream's `cancelWorkWithEvent`).
    fn cancel(&mut self, key: &PodKey) {
        if let Some(Eviction::Scheduled { task, .. }) = self.evictions.remove(key) {
            task.abort();
            let message = format!("Cancelling deletion of Pod {}/{}", key.0, key.1);
            self.recorder.record(
                &pod_reference(key),
                EventType::Normal,
                "TaintManagerEviction",
                message,
            );
        }
    }

    fn eviction_finished(&mut self, key: PodKey, id: u64, succeeded: bool) {
        if !matches!(self.evictions.get(&key), Some(Eviction::Scheduled { id: current, .. }) if *current == id)
        {
            return;
        }
        if succeeded {
            self.evictions.insert(key, Eviction::Done);
        } else {
            self.evictions.remove(&key);
        }
    }
}

/// Marks the pod as a disruption target, then deletes it with its own grace period
/// (upstream's `addConditionAndDeletePod`).
async fn mark_and_delete(client: &Client, (namespace, name): &PodKey) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = api.get(name).await?;
    let (reason, message) = (
        "DeletionByTaintManager",
        "Taint manager: deleting due to NoExecute taint",
    );
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let marked = conditions.iter().any(|c| {
        c.type_ == "DisruptionTarget"
            && c.status == "True"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    if !marked {
        let condition = json!({
            "type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": Time(Timestamp::now()),
        });
        let patch = json!({"metadata": {"uid": pod.uid()}, "status": {"conditions": [condition]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
    }
    api.delete(name, &DeleteParams::default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, operator: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(operator.into()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    fn unreachable() -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_shortest_toleration_wins_and_none_means_for_ever() {
        let short = toleration(
            "node.kubernetes.io/unreachable",
            "Exists",
            "NoExecute",
            Some(5),
        );
        let long = toleration(
            "node.kubernetes.io/not-ready",
            "Exists",
            "NoExecute",
            Some(300),
        );
        let forever = toleration("", "Exists", "", None);
        assert_eq!(
            min_toleration_time(&[&long, &short, &forever]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(min_toleration_time(&[&forever]), None);
        assert_eq!(min_toleration_time(&[]), Some(Duration::ZERO));
        let negative = toleration("k", "Exists", "", Some(-1));
        assert_eq!(
            min_toleration_time(&[&negative, &long]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn every_taint_needs_a_toleration() {
        let not_ready = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            ..unreachable()
        };
        let only_unreachable = [toleration(
            "node.kubernetes.io/unreachable",
            "Exists",
            "NoExecute",
            Some(5),
        )];
        assert!(
            matching_tolerations(&[unreachable(), not_ready.clone()], &only_unreachable).is_none()
        );
        assert_eq!(
            matching_tolerations(&[unreachable()], &only_unreachable).map(|u| u.len()),
            Some(1)
        );
    }

    #[test]
    fn equal_toleration_lists_are_held_once() {
        let defaults = [
            toleration(
                "node.kubernetes.io/not-ready",
                "Exists",
                "NoExecute",
                Some(300),
            ),
            toleration(
                "node.kubernetes.io/unreachable",
                "Exists",
                "NoExecute",
                Some(300),
            ),
        ];
        let forever = [toleration(
            "node.kubernetes.io/unreachable",
            "Exists",
            "NoExecute",
            None,
        )];
        let mut shared = SharedTolerations::default();
        let first = shared.share(&defaults);
        assert!(Arc::ptr_eq(&first, &shared.share(&defaults.clone())));
        let other = shared.share(&forever);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(*other, forever);
    }

    #[test]
    fn lists_beyond_the_capacity_are_kept_unshared() {
        let mut shared = SharedTolerations::default();
        for seconds in 0..SharedTolerations::CAPACITY as i64 {
            shared.share(&[toleration("k", "Exists", "NoExecute", Some(seconds))]);
        }
        let late = [toleration("late", "Exists", "NoExecute", None)];
        let held = shared.share(&late);
        assert_eq!(*held, late);
        assert!(!Arc::ptr_eq(&held, &shared.share(&late)));
        assert_eq!(shared.0.len(), SharedTolerations::CAPACITY);
    }
}

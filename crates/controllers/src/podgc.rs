//! The pod garbage collector (upstream `pkg/controller/podgc`). Every
//! [`PodGcConfig::gc_check_period`] it force-deletes (grace period 0, after marking the pod
//! Failed):
//! - terminated pods (Succeeded or Failed) beyond [`PodGcConfig::terminated_pod_gc_threshold`],
//!   evicted ones first, then oldest first;
//! - terminating pods on a NotReady node with the `node.kubernetes.io/out-of-service` taint;
//! - pods bound to a node that no longer exists, once it has stayed missing for
//!   [`PodGcConfig::quarantine_time`] and the API server confirms it is gone (with a
//!   `DisruptionTarget` condition, reason `DeletionByPodGC`);
//! - terminating pods that were never scheduled.

use crate::sharedpods::SharedPods;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The taint that tells the cluster a node is shut down for good, so its terminating pods
/// may go.
const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// How many pod deletions run at once.
const CONCURRENT_DELETES: usize = 32;

/// Settings of the pod garbage collector, as kube-controller-manager's.
#[derive(Clone, Debug)]
pub struct PodGcConfig {
    /// How many terminated pods may exist before the oldest are deleted
    /// (`--terminated-pod-gc-threshold`, 12500; 0 turns that off).
    pub terminated_pod_gc_threshold: usize,
    /// How often pods are collected (`gcCheckPeriod`, 20 s).
    pub gc_check_period: Duration,
    /// How long a node must stay missing before its pods are deleted (`quarantineTime`, 40 s).
    pub quarantine_time: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        Self {
            terminated_pod_gc_threshold: 12500,
            gc_check_period: Duration::from_secs(20),
            quarantine_time: Duration::from_secs(40),
        }
    }
}

/// Runs the collector until the process ends, on the shared pod informer `shared_pods`.
pub async fn run(client: Client, shared_pods: SharedPods, config: PodGcConfig) {
    let pods = shared_pods.store();
    let (nodes, node_writer) = reflector::store::<Node>();
    // The node cache keeps only what collection looks at.
    tokio::spawn(
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(slim_node)
            .reflect(node_writer)
            .for_each(|_| async {}),
    );
    if !shared_pods.synced().await || nodes.wait_until_ready().await.is_err() {
        return;
    }
    let mut collector = Collector {
        client,
        config,
        pods,
        nodes,
        quarantine: HashMap::new(),
    };
    let mut tick = tokio::time::interval(collector.config.gc_check_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        collector.collect().await;
    }
}

fn slim_node(node: &mut Node) {
    let meta = std::mem::take(&mut node.metadata);
    node.metadata = ObjectMeta {
        name: meta.name,
        resource_version: meta.resource_version,
        ..Default::default()
    };
    node.spec = Some(NodeSpec {
        taints: node.spec.take().and_then(|s| s.taints),
        ..Default::default()
    });
    let conditions = node.status.take().and_then(|s| s.conditions);
    node.status = Some(NodeStatus {
        conditions,
        ..Default::default()
    });
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Neither Pending, Running nor Unknown (upstream's `isPodTerminated`).
fn is_terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), "Pending" | "Running" | "Unknown")
}

/// Failed with reason Evicted (the kubelet's `PodIsEvicted`).
fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted pods first, then oldest first, then by name (upstream's
/// `byEvictionAndCreationTimestamp`).
fn sort_for_deletion(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

fn is_ready(node: &Node) -> bool {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn has_taint_key(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == key)
}

/// Why a pod is deleted, as a `DisruptionTarget` condition.
struct Disruption {
    reason: &'static str,
    message: &'static str,
}

const NODE_GONE: Disruption = Disruption {
    reason: "DeletionByPodGC",
    message: "PodGC: node no longer exists",
};

struct Collector {
    client: Client,
    config: PodGcConfig,
    pods: Store<Pod>,
    nodes: Store<Node>,
    /// Missing nodes, with when to check whether they are really gone.
    quarantine: HashMap<String, Instant>,
}

impl Collector {
    /// One collection pass (upstream's `gc`).
    async fn collect(&mut self) {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        if self.config.terminated_pod_gc_threshold > 0 {
            self.collect_terminated(&pods).await;
        }
        self.collect_terminating_out_of_service(&pods, &nodes).await;
        self.collect_orphaned(&pods, &nodes).await;
        let unscheduled: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
            .cloned()
            .collect();
        self.delete_all(unscheduled, None).await;
    }

    async fn collect_terminated(&self, pods: &[Arc<Pod>]) {
        let mut terminated: Vec<Arc<Pod>> =
            pods.iter().filter(|p| is_terminated(p)).cloned().collect();
        let excess = terminated
            .len()
            .saturating_sub(self.config.terminated_pod_gc_threshold);
        if excess == 0 {
            return;
        }
        tracing::info!(count = excess, "garbage collecting terminated pods");
        sort_for_deletion(&mut terminated);
        terminated.truncate(excess);
        self.delete_all(terminated, None).await;
    }

    async fn collect_terminating_out_of_service(&self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let out_of_service: HashSet<String> = nodes
            .iter()
            .filter(|n| !is_ready(n) && has_taint_key(n, TAINT_OUT_OF_SERVICE))
            .map(|n| n.name_any())
            .collect();
        let mut terminating: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some() && out_of_service.contains(node_name(p))
            })
            .cloned()
            .collect();
        sort_for_deletion(&mut terminating);
        self.delete_all(terminating, None).await;
    }

    /// Deletes the pods of nodes that stayed missing through their quarantine and that the
    /// API server confirms are gone (upstream's `gcOrphaned`).
    async fn collect_orphaned(&mut self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let existing: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let now = Instant::now();
        for pod in pods {
            let node = node_name(pod);
            if !node.is_empty() && !existing.contains(node) {
                self.quarantine
                    .entry(node.to_owned())
                    .or_insert(now + self.config.quarantine_time);
            }
        }
        let due: Vec<String> = self
            .quarantine
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for name in due {
            // Still missing pods put the node back into quarantine on the next pass.
            self.quarantine.remove(&name);
            if existing.contains(&name) {
                continue;
            }
            match api.get_opt(&name).await {
                Ok(None) => {
                    gone.insert(name);
                }
                Ok(Some(_)) => {}
                Err(err) => {
                    tracing::warn!(node = %name, %err, "checking whether a node exists failed")
                }
            }
        }
        let orphans: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| gone.contains(node_name(p)))
            .cloned()
            .collect();
        self.delete_all(orphans, Some(&NODE_GONE)).await;
    }

    async fn delete_all(&self, pods: Vec<Arc<Pod>>, disruption: Option<&Disruption>) {
        futures::stream::iter(pods)
            .for_each_concurrent(CONCURRENT_DELETES, |pod| async move {
                if let Err(err) = self.mark_failed_and_delete(&pod, disruption).await {
                    tracing::warn!(pod = %pod.name_any(), %err, "pod garbage collection failed");
                }
            })
            .await;
    }

    /// Marks a pod that has not terminated Failed (with the disruption as a condition), so
    /// that it does not stay Running for ever with no kubelet to say otherwise, then deletes
    /// it with grace period 0 (upstream's `markFailedAndDeletePodWithCondition`).
    async fn mark_failed_and_delete(
        &self,
        pod: &Pod,
        disruption: Option<&Disruption>,
    ) -> Result<(), kube::Error> {
        let name = pod.name_any();
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        tracing::info!(pod = %name, "pod GC is force deleting pod");
        if !matches!(phase(pod), "Succeeded" | "Failed") {
            let mut status = json!({"phase": "Failed"});
            if let Some(d) = disruption {
                status["conditions"] = json!([{
                    "type": "DisruptionTarget", "status": "True", "reason": d.reason, "message": d.message,
                    "lastTransitionTime": Time(Timestamp::now()),
                }]);
            }
            let patch = json!({"metadata": {"uid": pod.uid()}, "status": status});
            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
        }
        match api
            .delete(
                &name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;

    fn pod(name: &str, created: i64, phase: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn evicted_pods_go_first_then_the_oldest_then_by_name() {
        let mut pods = vec![
            pod("new", 300, "Succeeded", None),
            pod("b-old", 100, "Failed", None),
            pod("a-old", 100, "Succeeded", None),
            pod("evicted", 400, "Failed", Some("Evicted")),
        ];
        sort_for_deletion(&mut pods);
        let order: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(order, ["evicted", "a-old", "b-old", "new"]);
    }

    #[test]
    fn only_succeeded_and_failed_pods_are_terminated() {
        assert!(is_terminated(&pod("p", 0, "Succeeded", None)));
        assert!(is_terminated(&pod("p", 0, "Failed", None)));
        for phase in ["Pending", "Running", "Unknown"] {
            assert!(!is_terminated(&pod("p", 0, phase, None)));
        }
    }
}

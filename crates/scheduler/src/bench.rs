//! `skiff bench scheduler`'s measurement: create N nodes and M pending pods, start a
//! scheduler, and time until every pod is bound. Nodes and pods follow upstream's
//! scheduler_perf defaults (nodes: 4 cpu, 32Gi, 110 pods; pods: 100m cpu, 500Mi requested).

use crate::SchedulerConfig;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;

/// How many creates are in flight at once.
const CREATE_CONCURRENCY: usize = 64;

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Nodes created.
    pub nodes: usize,
    /// Pods created and scheduled.
    pub pods: usize,
    /// Seconds to create the nodes and pods (before the scheduler starts).
    pub create_seconds: f64,
    /// Seconds from starting the scheduler until every pod was bound (its initial lists
    /// included).
    pub schedule_seconds: f64,
    /// Seconds from starting the scheduler until the first pod was bound (the scheduler's
    /// initial lists of nodes and pods).
    pub first_bound_seconds: f64,
    /// `pods / schedule_seconds`.
    pub pods_per_second: f64,
}

/// Creates `nodes` nodes named `bench-node-<i>` and `pods` pods named `bench-pod-<i>` in
/// `namespace` (which must exist), then runs a scheduler with `config` until all pods are
/// bound. Expects no other scheduler to run against the same API.
pub async fn bench(
    client: Client,
    namespace: &str,
    nodes: usize,
    pods: usize,
    config: SchedulerConfig,
) -> anyhow::Result<BenchReport> {
    let started = Instant::now();
    let node_api: Api<Node> = Api::all(client.clone());
    stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                let name = format!("bench-node-{i:05}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                    "status": {
                        "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                        "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }))?;
                api.create(&PostParams::default(), &node).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("bench-pod-{i:06}")},
                    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}}]},
                }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let create_seconds = started.elapsed().as_secs_f64();

    let scheduling = Instant::now();
    let scheduler = tokio::spawn(crate::run(client.clone(), config));
    let mut bound = HashSet::new();
    let mut first_bound_seconds = None;
    let mut events = std::pin::pin!(
        watcher::watcher(pod_api, crate::informer_config().fields("spec.nodeName!="))
            .default_backoff()
    );
    while bound.len() < pods {
        match events.next().await {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                bound.insert(pod.metadata.name.unwrap_or_default());
                first_bound_seconds.get_or_insert_with(|| scheduling.elapsed().as_secs_f64());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(%e, "bench watch failed; retrying"),
            None => anyhow::bail!("the pod watch ended"),
        }
    }
    let schedule_seconds = scheduling.elapsed().as_secs_f64();
    scheduler.abort();
    Ok(BenchReport {
        nodes,
        pods,
        create_seconds,
        schedule_seconds,
        first_bound_seconds: first_bound_seconds.unwrap_or(schedule_seconds),
        pods_per_second: pods as f64 / schedule_seconds,
    })
}

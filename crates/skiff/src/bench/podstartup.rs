//! `skiff bench pod-startup`: pods created at once on a local node that runs them as real
//! processes (the process runtime, as `skiff server`'s local node does), timed from creation
//! to their Ready condition as a watch observes it, with the whole control plane and the node
//! agent in this process, so that its resident set is the server's and the agent's. The pods'
//! own processes are separate and do not count.
//!
//! Isolating pods (namespaces, cgroups, pod networks) needs root on Linux: the benchmark
//! refuses to run without it rather than measure the degraded mode.

use super::{Phase, cpu_time};
use anyhow::{Context, Result};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_agent::AgentConfig;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Options of `skiff bench pod-startup`.
#[derive(Args)]
pub struct PodStartupArgs {
    /// Pods created at once (`sleep 3600`, no probes: Ready once started).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The pod network, apart from `skiff server`'s default so that a server running on the
    /// same host never hands out the same pod IPs on the shared bridge.
    #[arg(long, default_value = "10.250.0.0/16")]
    cluster_cidr: skiff_agent::Ipv4Cidr,
}

/// The namespace the measured pods live in.
const NAMESPACE: &str = "bench";

/// The `role` label of the pod that runs before the measurement, and of the measured pods.
const WARM_UP: &str = "warm-up";
const MEASURED: &str = "measured";

/// How long the pods may take to become Ready, or to go once deleted.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the benchmark: a warm-up pod, then `pods` pods created at once until all are Ready;
/// then deletes them all, whatever happened.
pub async fn run(args: PodStartupArgs) -> Result<()> {
    anyhow::ensure!(
        effective_uid_is_root(),
        "skiff bench pod-startup needs root: the process runtime isolates pods with namespaces, cgroups and pod networks"
    );
    // The directory holds the store and the runtime's root; it must outlive the pods.
    let (client, dir) = super::control_plane(args.cluster_cidr).await?;
    let runtime = crate::agent::runtime(
        crate::agent::RuntimeKind::Process,
        &client,
        dir.path().join("agent"),
    );
    let node = crate::server::host_node_name();
    let agent = skiff_agent::run_node_agent(client.clone(), AgentConfig::new(&node, runtime));
    tokio::spawn(async move {
        if let Err(e) = agent.await {
            tracing::error!(%e, "the local node agent stopped");
        }
    });
    println!(
        "skiff bench pod-startup: {} pods (sleep 3600) created at once on the local node {node} (process runtime), creation to Ready",
        args.pods
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let measured = measure(&pods, args.pods).await;
    let cleaned = delete_all(&pods).await;
    measured.and(cleaned)
}

/// Whether this process runs as root (effective uid 0).
fn effective_uid_is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Starts a warm-up pod and waits for it (the node is then registered, Ready and untainted,
/// and the bridge exists), then creates `count` pods at once, times each from its create
/// request to the watch event showing it Ready, and prints the latencies and the resident set
/// each running pod adds to this process.
async fn measure(pods: &Api<Pod>, count: usize) -> Result<()> {
    let started = Instant::now();
    let warm_up = watch_ready(pods, WARM_UP, 1).await?;
    pods.create(&PostParams::default(), &manifest("warm-up", WARM_UP)?)
        .await?;
    warm_up.await??;
    println!(
        "warm-up pod Ready {:.1} s after the control plane started",
        started.elapsed().as_secs_f64()
    );
    let rss_before = rss_kib().context("reading VmRSS")?;

    let ready_at = watch_ready(pods, MEASURED, count).await?;
    let (cpu, started) = (cpu_time(), Instant::now());
    let creates = (0..count).map(|i| async move {
        let sent = Instant::now();
        pods.create(
            &PostParams::default(),
            &manifest(&format!("pod-{i}"), MEASURED)?,
        )
        .await?;
        anyhow::Ok((format!("pod-{i}"), sent))
    });
    let sent: HashMap<String, Instant> = futures::future::try_join_all(creates)
        .await?
        .into_iter()
        .collect();
    let ready_at = ready_at.await??;
    let (cpu, elapsed) = (cpu_time() - cpu, started.elapsed());
    let latencies = sent
        .iter()
        .map(|(name, sent)| {
            let ready = ready_at.get(name).context("a pod never seen Ready")?;
            Ok(ready.saturating_duration_since(*sent))
        })
        .collect::<Result<Vec<Duration>>>()?;
    Phase {
        name: "creation to Ready",
        elapsed,
        latencies,
    }
    .print();
    println!(
        "all {count} Ready {:.2} s after the first create; CPU time of the server and agent meanwhile {:.2} s",
        elapsed.as_secs_f64(),
        cpu.as_secs_f64()
    );

    let rss_after = rss_kib().context("reading VmRSS")?;
    let per_pod = (rss_after as f64 - rss_before as f64) / count as f64;
    println!(
        "RSS of the server and agent: {:.1} MiB with 1 pod, {:.1} MiB with {} running: {per_pod:.0} KiB per running pod",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        count + 1
    );
    Ok(())
}

/// A pod `name` labelled `role=<role>` whose one container sleeps: no probes, so it is Ready
/// once started.
fn manifest(name: &str, role: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"role": role}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }))?)
}

/// Starts watching the pods labelled `role=<role>` (from now) and returns a task that ends
/// once `count` of them have been seen Ready, with the instant each was first seen so.
async fn watch_ready(
    pods: &Api<Pod>,
    role: &str,
    count: usize,
) -> Result<tokio::task::JoinHandle<Result<HashMap<String, Instant>>>> {
    let selector = format!("role={role}");
    let version = pods
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = pods
        .watch(
            &WatchParams::default().labels(&selector).timeout(290),
            &version,
        )
        .await?
        .boxed();
    Ok(tokio::spawn(async move {
        let mut ready_at = HashMap::new();
        let watching = async {
            while let Some(event) = events.try_next().await? {
                if let WatchEvent::Added(pod) | WatchEvent::Modified(pod) = event
                    && is_ready(&pod)
                {
                    let name = pod.metadata.name.unwrap_or_default();
                    ready_at.entry(name).or_insert_with(Instant::now);
                    if ready_at.len() == count {
                        return anyhow::Ok(());
                    }
                }
            }
            anyhow::bail!("the watch ended with {} pods Ready", ready_at.len())
        };
        tokio::time::timeout(TIMEOUT, watching)
            .await
            .with_context(|| format!("{count} pods not Ready within {TIMEOUT:?}"))??;
        Ok(ready_at)
    }))
}

/// Whether the pod's Ready condition is True.
fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes every pod of the namespace and waits until they are gone: the agent removes a pod
/// once its processes have stopped.
async fn delete_all(pods: &Api<Pod>) -> Result<()> {
    let started = Instant::now();
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    loop {
        let left = pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < TIMEOUT,
            "{left} pods still there {TIMEOUT:?} after their deletion"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "all pods deleted and gone after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// This process's resident set (`VmRSS`) in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

//! `skiff bench daemonset`: a DaemonSet on thousands of simulated nodes, from creation until
//! every node runs an available pod, then rolled to a new image with maxUnavailable 10%, with
//! the whole control plane in this process (API server on a SQLite file, scheduler,
//! controllers, node simulator), so that the process's CPU time and peak RSS are the server's.

use super::rollout::{report, wait_for};
use super::{cpu_time, peak_rss_mib};
use anyhow::Result;
use clap::Args;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Instant;

/// Options of `skiff bench daemonset`.
#[derive(Args)]
pub struct DaemonSetArgs {
    /// Simulated nodes, each of which runs one daemon pod.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// The rolling update's maxUnavailable (a count or a percentage of the nodes).
    #[arg(long, default_value = "10%")]
    max_unavailable: String,
}

/// Runs the benchmark: create to available on every node, then a full RollingUpdate.
pub async fn run(args: DaemonSetArgs) -> Result<()> {
    // The directory holds the store; it must outlive the cluster.
    let (client, _dir) = super::simulated_cluster(args.nodes).await?;
    println!(
        "skiff bench daemonset: a DaemonSet on {} simulated nodes (RollingUpdate maxUnavailable {})",
        args.nodes, args.max_unavailable
    );

    // Every node Ready and untainted first (until the node lifecycle controller sees a node
    // Ready it carries the not-ready NoSchedule taint, which daemon pods do not tolerate), so
    // that the clock measures the controller and the scheduler, not node start-up.
    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    wait_for("every node Ready and untainted", || async {
        let listed = nodes.list(&ListParams::default()).await?.items;
        Ok(listed.iter().filter(|n| ready_and_untainted(n)).count() >= args.nodes)
    })
    .await?;
    println!(
        "{} nodes ready after {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), "bench");
    let manifest = json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": max_unavailable(&args.max_unavailable)},
            },
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{
                    "name": "agent",
                    "image": "fluent/fluentd:v1.16-1",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}},
                }]},
            },
        },
    });

    let (cpu, started) = (cpu_time(), Instant::now());
    daemon_sets
        .create(&PostParams::default(), &serde_json::from_value(manifest)?)
        .await?;
    wait_rolled_out(&daemon_sets, args.nodes).await?;
    report("create to an available pod on every node", started, cpu);

    let (cpu, started) = (cpu_time(), Instant::now());
    let new_image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "agent", "image": "fluent/fluentd:v1.17-1"}
    ]}}}});
    daemon_sets
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Strategic(new_image),
        )
        .await?;
    wait_rolled_out(&daemon_sets, args.nodes).await?;
    report("rolling update to all available", started, cpu);
    println!(
        "peak RSS of the whole server: {:.0} MiB",
        peak_rss_mib("self").unwrap_or(0.0)
    );
    Ok(())
}

/// Whether a node reports Ready and carries no taint.
fn ready_and_untainted(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let untainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_none_or(Vec::is_empty);
    ready && untainted
}

/// `--max-unavailable` as the API takes it: a number, or a percentage string.
fn max_unavailable(value: &str) -> serde_json::Value {
    value
        .parse::<u64>()
        .map_or_else(|_| json!(value), |n| json!(n))
}

/// Waits until DaemonSet `agent` is rolled out as `kubectl rollout status` decides, on
/// `nodes` nodes: its generation observed, a pod of the current template on every node,
/// every node's pod available.
async fn wait_rolled_out(daemon_sets: &Api<DaemonSet>, nodes: usize) -> Result<()> {
    let nodes = i32::try_from(nodes)?;
    wait_for("the rollout", || async {
        let daemon_set = daemon_sets.get("agent").await?;
        let status = daemon_set.status.unwrap_or_default();
        Ok(daemon_set.metadata.generation <= status.observed_generation
            && status.desired_number_scheduled == nodes
            && status.updated_number_scheduled == Some(nodes)
            && status.number_available == Some(nodes))
    })
    .await
}

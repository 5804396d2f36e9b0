//! `skiff bench rollout`: a big Deployment created and then rolled to a new image, with the
//! whole control plane in this process (API server on a SQLite file, scheduler, controllers,
//! node simulator), so that the process's CPU time and peak RSS are the server's.

use super::{cpu_time, peak_rss_mib};
use anyhow::Result;
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

/// Options of `skiff bench rollout`.
#[derive(Args)]
pub struct RolloutArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 10_000)]
    replicas: i32,
}

/// How long either phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Runs the benchmark: create to all available, then a full RollingUpdate (25%/25%).
pub async fn run(args: RolloutArgs) -> Result<()> {
    // The directory holds the store; it must outlive the cluster.
    let (client, _dir) = super::simulated_cluster(args.nodes).await?;
    println!(
        "skiff bench rollout: a {}-replica Deployment on {} simulated nodes (RollingUpdate 25%/25%)",
        args.replicas, args.nodes
    );

    // The nodes register first, so that the clock measures the controllers, not node start-up.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("every node registered", || async {
        Ok(nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len()
            >= args.nodes)
    })
    .await?;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let manifest = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "nginx:1.25",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}},
                }]},
            },
        },
    });

    let (cpu, started) = (cpu_time(), Instant::now());
    deployments
        .create(&PostParams::default(), &serde_json::from_value(manifest)?)
        .await?;
    wait_rolled_out(&deployments).await?;
    report("create to all available", started, cpu);

    let (cpu, started) = (cpu_time(), Instant::now());
    let new_image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.26"}
    ]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(new_image))
        .await?;
    wait_rolled_out(&deployments).await?;
    report("rolling update to all available", started, cpu);
    Ok(())
}

/// Prints a phase's wall-clock time, the CPU time the process used during it and its peak RSS
/// so far (after each phase, so that a run that fails later still reports it).
pub(super) fn report(phase: &str, started: Instant, cpu_before: Duration) {
    println!(
        "{phase}: {:.1} s, CPU {:.1} s, peak RSS so far {:.0} MiB",
        started.elapsed().as_secs_f64(),
        (cpu_time() - cpu_before).as_secs_f64(),
        peak_rss_mib("self").unwrap_or(0.0)
    );
}

/// Polls `done` every 500 ms until it is true; fails after [`PHASE_TIMEOUT`].
pub(super) async fn wait_for<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    while !done().await? {
        anyhow::ensure!(
            started.elapsed() < PHASE_TIMEOUT,
            "{what}: not within {PHASE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Waits until Deployment `web` is rolled out as `kubectl rollout status` decides: its
/// generation observed, every replica updated and available, no old replica left.
async fn wait_rolled_out(deployments: &Api<Deployment>) -> Result<()> {
    wait_for("the rollout", || async {
        let deployment = deployments.get("web").await?;
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.unwrap_or_default();
        Ok(deployment.metadata.generation <= status.observed_generation
            && status.updated_replicas == Some(wanted)
            && status.replicas == Some(wanted)
            && status.available_replicas == Some(wanted))
    })
    .await
}

//! `skiff bench statefulset`: many StatefulSets, each pod with its own claim from a volume claim
//! template, from creation until every pod is Running and Ready, then rolled to a new image,
//! with the whole control plane in this process (API server on a SQLite file, scheduler,
//! controllers with the PersistentVolume binder and the local-path provisioner, node
//! simulator), so that the process's CPU time and peak RSS are the server's.

use super::rollout::{report, wait_for};
use super::{cpu_time, peak_rss_mib};
use anyhow::Result;
use clap::Args;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Instant;

/// Options of `skiff bench statefulset`.
#[derive(Args)]
pub struct StatefulSetArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// StatefulSets, `web-000`, `web-001`, ...
    #[arg(long, default_value_t = 100)]
    sets: usize,
    /// Replicas of each StatefulSet (OrderedReady: created one at a time).
    #[arg(long, default_value_t = 20)]
    replicas: i32,
}

/// Runs the benchmark: create to all ready, then a RollingUpdate of every set.
pub async fn run(args: StatefulSetArgs) -> Result<()> {
    // The directory holds the store; it must outlive the cluster.
    let (client, _dir) = super::simulated_cluster(args.nodes).await?;
    println!(
        "skiff bench statefulset: {} StatefulSets of {} replicas, one claim template each, on {} simulated nodes",
        args.sets, args.replicas, args.nodes
    );

    // Every node Ready and without the not-ready taint first, so that the clock measures the
    // controllers and the scheduler, not node start-up.
    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    wait_for("every node Ready and untainted", || async {
        let listed = nodes.list(&ListParams::default()).await?.items;
        Ok(listed.iter().filter(|n| schedulable(n)).count() >= args.nodes)
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
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "bench");
    let names: Vec<String> = (0..args.sets).map(|n| format!("web-{n:03}")).collect();

    let (cpu, started) = (cpu_time(), Instant::now());
    for name in &names {
        sets.create(&PostParams::default(), &manifest(name, args.replicas)?)
            .await?;
    }
    wait_rolled_out(&sets, args.sets).await?;
    report("create to all ready", started, cpu);
    // Upstream's scheduler binds a pod only once its claims are bound; here pods may run
    // first, so the claims' binding is timed on its own, from the same start.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "bench");
    let wanted_claims = args.sets * usize::try_from(args.replicas)?;
    wait_for("every claim bound", || async {
        let listed = claims.list(&ListParams::default()).await?.items;
        let bound = listed
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        Ok(bound >= wanted_claims)
    })
    .await?;
    report(
        &format!("create to all {wanted_claims} claims bound"),
        started,
        cpu,
    );

    let (cpu, started) = (cpu_time(), Instant::now());
    let new_image = Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.26"}
    ]}}}}));
    for name in &names {
        sets.patch(name, &PatchParams::default(), &new_image)
            .await?;
    }
    wait_rolled_out(&sets, args.sets).await?;
    report("rolling update to all ready", started, cpu);
    println!(
        "peak RSS of the whole server: {:.0} MiB",
        peak_rss_mib("self").unwrap_or(0.0)
    );
    Ok(())
}

/// StatefulSet `name` with `replicas` pods of `nginx:1.25`, each with a 1Gi claim `data` of
/// the default class.
fn manifest(name: &str, replicas: i32) -> Result<StatefulSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "nginx:1.25",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}},
                }]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }],
        },
    }))?)
}

/// Whether a node reports Ready and carries no taint.
fn schedulable(node: &Node) -> bool {
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

/// Waits until all `count` StatefulSets are rolled out as `kubectl rollout status` decides for
/// a set without a partition: generation observed, every replica ready and updated, and the
/// current revision caught up with the update revision.
async fn wait_rolled_out(sets: &Api<StatefulSet>, count: usize) -> Result<()> {
    wait_for("every StatefulSet rolled out", || async {
        let listed = sets.list(&ListParams::default()).await?.items;
        let done = listed.iter().filter(|set| {
            let wanted = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            set.status.as_ref().is_some_and(|status| {
                set.metadata.generation <= status.observed_generation
                    && status.ready_replicas == Some(wanted)
                    && status.updated_replicas == Some(wanted)
                    && status.current_revision == status.update_revision
            })
        });
        Ok(done.count() >= count)
    })
    .await
}

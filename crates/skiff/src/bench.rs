//! `skiff bench`: measurements that `docs/PERFORMANCE.md` records, each against a baseline
//! measured in the same run where one exists.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_store::sqlite::SqliteStore;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod daemonset;
mod podstartup;
mod rollout;
mod statefulset;

/// `skiff bench ...`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// API throughput and latency through HTTPS, next to the raw store's put throughput.
    Api(ApiArgs),
    /// Scheduling throughput: pending pods bound onto nodes, with the whole server in process.
    Scheduler(SchedulerArgs),
    /// A big simulated cluster held steady: pods Running on simulated nodes, heartbeats and all.
    Steady(SteadyArgs),
    /// A big Deployment created and rolled to a new image on simulated nodes.
    Rollout(rollout::RolloutArgs),
    /// A DaemonSet on thousands of simulated nodes, created and rolled to a new image.
    Daemonset(daemonset::DaemonSetArgs),
    /// StatefulSets with a claim per pod on simulated nodes, created and rolled to a new image.
    Statefulset(statefulset::StatefulSetArgs),
    /// Pods created at once on a local node running them as processes: creation to Ready.
    PodStartup(podstartup::PodStartupArgs),
}

/// Options of `skiff bench steady`.
#[derive(Args)]
struct SteadyArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to run on them.
    #[arg(long, default_value_t = 150_000)]
    pods: usize,
    /// How long to hold the cluster once every pod runs.
    #[arg(long, default_value_t = 300)]
    hold_seconds: u64,
}

/// Options of `skiff bench scheduler`.
#[derive(Args)]
struct SchedulerArgs {
    /// Nodes (4 cpu, 32Gi, 110 pods each, as upstream's scheduler_perf).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pending pods to schedule (100m cpu, 500Mi each).
    #[arg(long, default_value_t = 50000)]
    pods: usize,
}

/// Options of `skiff bench api`.
#[derive(Args)]
struct ApiArgs {
    /// Objects created, updated and read per phase.
    #[arg(long, default_value_t = 5000)]
    objects: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

/// Runs a benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        Which::Api(a) => api(a).await,
        Which::Scheduler(a) => scheduler(a).await,
        Which::Steady(a) => steady(a).await,
        Which::Rollout(a) => rollout::run(a).await,
        Which::Daemonset(a) => daemonset::run(a).await,
        Which::Statefulset(a) => statefulset::run(a).await,
        Which::PodStartup(a) => podstartup::run(a).await,
    }
}

/// A process's peak resident set (`VmHWM`) in MiB.
fn peak_rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// `skiff bench scheduler`: the API server (on a SQLite file), the scheduler and the load
/// generator all run in this process, so its peak RSS is the whole server's.
async fn scheduler(args: SchedulerArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("state.db"))?);
    let api = skiff_apiserver::ApiServer::new(store, "127.0.0.1:0".into()).await?;
    let client = kube::Client::new(api.router(), "default");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    println!(
        "skiff bench scheduler: {} nodes, {} pending pods (in-process API server on SQLite)",
        args.nodes, args.pods
    );
    let report =
        skiff_scheduler::bench::bench(client, "bench", args.nodes, args.pods, Default::default())
            .await?;
    println!("created nodes and pods in {:.1} s", report.create_seconds);
    println!(
        "first pod bound {:.2} s after the scheduler started (initial lists)",
        report.first_bound_seconds
    );
    println!(
        "all {} pods bound in {:.1} s: {:.0} pods/s",
        report.pods, report.schedule_seconds, report.pods_per_second
    );
    if let Some(mib) = peak_rss_mib("self") {
        println!("peak RSS of the whole server: {mib:.0} MiB");
    }
    Ok(())
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// How many pods are not Running yet, from one filtered, one-item list.
async fn pods_not_running(pods: &Api<Pod>) -> Result<u64> {
    let page = pods
        .list_metadata(
            // Not a consistent read: at this scale the watch cache may trail the store by more
            // than the 5 s a consistent read waits, and the count only has to converge.
            &ListParams::default()
                .fields("status.phase!=Running")
                .limit(1)
                .at("1")
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await?;
    Ok(page.items.len() as u64 + page.metadata.remaining_item_count.unwrap_or(0).max(0) as u64)
}

/// The whole control plane in this process, as `skiff server` runs it: the API server on a
/// SQLite file in a fresh directory, the controllers, the scheduler, the pod CIDR allocator and
/// a simulator with `nodes` nodes. Returns an in-process client and the directory.
pub(super) async fn simulated_cluster(nodes: usize) -> Result<(kube::Client, tempfile::TempDir)> {
    let (client, dir) = control_plane(skiff_agent::podcidr::DEFAULT_CLUSTER_CIDR.parse()?).await?;
    let simulator = skiff_agent::SimConfig {
        nodes,
        ..Default::default()
    };
    tokio::spawn(skiff_agent::run_simulator(client.clone(), simulator));
    Ok((client, dir))
}

/// The control plane of [`simulated_cluster`] without nodes, giving nodes pod CIDRs from
/// `cluster_cidr`. Returns an in-process client and the directory holding the store.
pub(super) async fn control_plane(
    cluster_cidr: skiff_agent::podcidr::Ipv4Cidr,
) -> Result<(kube::Client, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("state.db"))?);
    let api = skiff_apiserver::ApiServer::new(store, "127.0.0.1:0".into()).await?;
    let client = kube::Client::new(api.router(), "default");
    skiff_controllers::spawn_all(client.clone(), Default::default());
    tokio::spawn(skiff_scheduler::run(client.clone(), Default::default()));
    tokio::spawn(skiff_agent::run_pod_cidr_allocator(
        client.clone(),
        cluster_cidr,
    ));
    Ok((client, dir))
}

/// `skiff bench steady`: the whole control plane in this process (API server on a SQLite file,
/// scheduler, controllers, node simulator), filled with pods and then left alone, measuring
/// what holding the cluster costs.
async fn steady(args: SteadyArgs) -> Result<()> {
    // The directory holds the store; it must outlive the cluster.
    let (client, _dir) = simulated_cluster(args.nodes).await?;
    println!(
        "skiff bench steady: {} simulated nodes, {} pods, held {} s",
        args.nodes, args.pods, args.hold_seconds
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let started = Instant::now();
    let api = pods.clone();
    phase("pod create", 16, args.pods, move |i| {
        let api = api.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("steady-{i}"), "labels": {"app": "steady"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25", "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]},
            }))?;
            api.create(&PostParams::default(), &pod).await?;
            Ok(())
        }
    })
    .await?
    .print();
    loop {
        let left = pods_not_running(&pods).await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "{left} pods still not Running after 30 minutes"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!(
        "all {} pods Running {:.0} s after the first create",
        args.pods,
        started.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_time();
    let hold = Instant::now();
    let mut max_rss = 0f64;
    while hold.elapsed() < Duration::from_secs(args.hold_seconds) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        max_rss = max_rss.max(rss / 1024.0);
    }
    let cpu = (cpu_time() - cpu_before).as_secs_f64() / hold.elapsed().as_secs_f64();
    let left = pods_not_running(&pods).await?;
    println!(
        "held {:.0} s: average CPU {cpu:.2} cores, max RSS {max_rss:.0} MiB, peak RSS {:.0} MiB; pods not Running at the end: {left}",
        hold.elapsed().as_secs_f64(),
        peak_rss_mib("self").unwrap_or(0.0)
    );
    Ok(())
}

/// Latency samples of one phase.
struct Phase {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn print(&mut self) {
        self.latencies.sort_unstable();
        let pct = |p: usize| {
            self.latencies
                .get((self.latencies.len() * p / 100).min(self.latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let ops = self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        println!(
            "{:<22} {:>8} ops {:>10.0} ops/s   p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms",
            self.name,
            self.latencies.len(),
            ops,
            ms(pct(50)),
            ms(pct(90)),
            ms(pct(99))
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `op(i)` for `i` in `0..total` from `clients` concurrent tasks, timing each call.
async fn phase<F, Fut>(name: &'static str, clients: usize, total: usize, op: F) -> Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (c..total).step_by(clients) {
                    let t = Instant::now();
                    op(i).await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Phase {
        name,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// A `skiff server` child process on a fresh data dir.
struct ServerProcess {
    child: std::process::Child,
    kubeconfig: std::path::PathBuf,
    ready_after: Duration,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting skiff server")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = lines.next().context("server exited")??;
        anyhow::ensure!(
            ready.starts_with("skiff server ready"),
            "unexpected output: {ready}"
        );
        let ready_after = started.elapsed();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            kubeconfig,
            ready_after,
            _dir: dir,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn api(args: ApiArgs) -> Result<()> {
    let (n, clients) = (args.objects, args.clients);
    println!("skiff bench api: {n} objects per phase, {clients} concurrent clients\n");

    // Baseline: the raw store, same machine, same run.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);
    let raw = skiff_store::bench::bench_puts(store, clients, n).await;
    println!(
        "{:<22} {:>8} ops {:>10.0} ops/s   p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms",
        "store put (baseline)",
        raw.puts,
        raw.puts_per_sec,
        ms(raw.p50),
        ms(raw.p90),
        ms(raw.p99)
    );

    // The whole control plane, idle, for its footprint; then the API alone for the load, so
    // that the scheduler and node agents do not add their own writes for every pod created.
    let full = ServerProcess::start(&[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full_idle_rss = full.rss_kib();
    let full_ready_after = full.ready_after;
    drop(full);
    let server = ServerProcess::start(&["--api-only"])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = server.rss_kib();
    let client = server.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");

    // A watcher counts the creations as they are delivered.
    let start_rv = pods
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watcher = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut seen = 0usize;
            let mut stream = pods
                .watch(&WatchParams::default().timeout(290), &start_rv)
                .await?
                .boxed();
            while let Some(event) = stream.try_next().await? {
                if matches!(event, WatchEvent::Added(_)) {
                    seen += 1;
                    if seen == n {
                        return anyhow::Ok(Instant::now());
                    }
                }
            }
            anyhow::bail!("watch ended after {seen} events")
        })
    };

    let create_started = Instant::now();
    let api = pods.clone();
    let mut create = phase("pod create", clients, n, move |i| {
        let api = api.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("bench-{i}"), "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            }))?;
            api.create(&PostParams::default(), &pod).await?;
            Ok(())
        }
    })
    .await?;
    let last_event = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .context("watch did not deliver every creation")???;

    let api = pods.clone();
    let mut update = phase("pod update (patch)", clients, n, move |i| {
        let api = api.clone();
        async move {
            api.patch(
                &format!("bench-{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"round": "1"}}})),
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    let api = pods.clone();
    let mut get = phase("pod get", clients, n, move |i| {
        let api = api.clone();
        async move {
            api.get(&format!("bench-{i}")).await?;
            Ok(())
        }
    })
    .await?;

    let lists = 20;
    let api = pods.clone();
    let mut list = phase("pod list (500/page)", clients.min(4), lists, move |_| {
        let api = api.clone();
        async move {
            let mut params = ListParams::default().limit(500);
            let mut total = 0;
            loop {
                let page = api.list(&params).await?;
                total += page.items.len();
                match page.metadata.continue_ {
                    Some(c) if !c.is_empty() => params = params.continue_token(&c),
                    _ => break,
                }
            }
            anyhow::ensure!(total == n, "listed {total} pods, expected {n}");
            Ok(())
        }
    })
    .await?;

    create.print();
    update.print();
    get.print();
    list.print();
    let ratio = create.latencies.len() as f64 / create.elapsed.as_secs_f64() / raw.puts_per_sec;
    println!(
        "\nwatch: all {n} creations delivered {:.0} ms after the first create was sent",
        ms(last_event - create_started)
    );
    println!(
        "pod creates through the API / raw store puts: {:.0}%",
        ratio * 100.0
    );
    println!(
        "server ready after {:.0} ms (process start to ready line; full control plane {:.0} ms)",
        ms(server.ready_after),
        ms(full_ready_after)
    );
    if let Some(kib) = idle_rss {
        println!(
            "idle RSS, API only (empty store): {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    if let Some(kib) = full_idle_rss {
        println!(
            "idle RSS, full control plane with its local node: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    if let Some(kib) = server.rss_kib() {
        println!(
            "RSS after the run ({n} pods): {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    Ok(())
}

//! `skiff server`: the control plane in one process.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use skiff_agent::podcidr;
use skiff_agent::{AgentConfig, HeartbeatTimings, SimConfig};
use skiff_apiserver::{ApiServer, pki};
use skiff_store::sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `skiff server`.
#[derive(Args)]
pub struct ServerArgs {
    /// Where state, credentials and the kubeconfig live [default: a per-user data directory,
    /// and a `skiff` context is merged into ~/.kube/config].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Simulated nodes to create at start; more join with `kubectl apply` of a Node annotated
    /// `skiff.dev/simulated: "true"`.
    #[arg(long, default_value_t = 0)]
    sim_nodes: usize,
    /// The pod network; each node gets a /24 of it as spec.podCIDR.
    #[arg(long, default_value = podcidr::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: podcidr::Ipv4Cidr,
    /// Seconds without a heartbeat before a node is marked unreachable.
    #[arg(long, default_value_t = 50)]
    node_monitor_grace_period: u64,
    /// Run no local node: only the API, the scheduler and the controllers.
    #[arg(long)]
    no_local_node: bool,
    /// What runs the local node's pods: real processes (`process`, kept under
    /// `<data-dir>/agent`) or simulated ones (`sim`).
    #[arg(long, value_enum, default_value = "process")]
    local_runtime: crate::agent::RuntimeKind,
    /// Serve only the API: no scheduler, controllers or nodes (for API benchmarks, and as a
    /// light API server to test controllers against).
    #[arg(long)]
    api_only: bool,
}

/// The local node's name: the host name, lower-cased, as the kubelet registers.
pub fn host_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Starts the scheduler, the controllers and the node agents on an in-process client.
fn spawn_components(
    client: kube::Client,
    args: &ServerArgs,
    data_dir: &Path,
    kubelet_token: String,
) {
    // Upstream's timings (renew every 10 s, check every 5 s, grace 50 s) keep heartbeats well
    // inside the grace period; a shorter grace period (tests, demos) scales them down with it so
    // that healthy nodes never look dead between renewals.
    let grace = Duration::from_secs(args.node_monitor_grace_period.max(1));
    let mut controllers = skiff_controllers::ControllersConfig::default();
    controllers.node_lifecycle.node_monitor_grace_period = grace;
    controllers.node_lifecycle.node_monitor_period = controllers
        .node_lifecycle
        .node_monitor_period
        .min(grace / 4);
    // Pod GC's quarantine for pods of deleted nodes (40 s) and period (20 s) follow it too.
    controllers.pod_gc.quarantine_time = controllers.pod_gc.quarantine_time.min(grace);
    controllers.pod_gc.gc_check_period = controllers.pod_gc.gc_check_period.min(grace / 2);
    // Local-path volumes are directories under the data directory, on the local node.
    controllers.storage.data_dir = Some(data_dir.to_path_buf());
    controllers.storage.local_node = (!args.no_local_node).then(host_node_name);
    let mut heartbeat = HeartbeatTimings::default();
    heartbeat.renew_interval = heartbeat.renew_interval.min(grace / 4);
    skiff_controllers::spawn_all(client.clone(), controllers);
    tokio::spawn(skiff_scheduler::run(client.clone(), Default::default()));
    tokio::spawn(podcidr::run_pod_cidr_allocator(
        client.clone(),
        args.cluster_cidr,
    ));
    if !args.no_local_node {
        let runtime = crate::agent::runtime(args.local_runtime, &client, data_dir.join("agent"));
        let agent = skiff_agent::run_node_agent(
            client.clone(),
            AgentConfig {
                heartbeat,
                kubelet_token: Some(kubelet_token),
                ..AgentConfig::new(&host_node_name(), runtime)
            },
        );
        tokio::spawn(async move {
            if let Err(e) = agent.await {
                tracing::error!(%e, "the local node agent stopped");
            }
        });
    }
    let simulator = skiff_agent::run_simulator(
        client,
        SimConfig {
            nodes: args.sim_nodes,
            heartbeat,
            ..SimConfig::default()
        },
    );
    tokio::spawn(async move {
        if let Err(e) = simulator.await {
            tracing::error!(%e, "the node simulator stopped");
        }
    });
}

/// The per-user data directory (`$XDG_DATA_HOME/skiff` or `~/.local/share/skiff`).
fn default_data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("skiff"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/skiff"))
}

/// Runs the server until the process is stopped.
pub async fn run(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    let (data_dir, merge_user_config) = match args.data_dir.clone() {
        Some(d) => (d, false),
        None => (default_data_dir()?, true),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let (listener, local) = skiff_apiserver::bind(args.listen).await?;
    let creds = pki::load_or_create(&data_dir, local)?;
    let store =
        Arc::new(SqliteStore::open(data_dir.join("state.db")).context("opening the store")?);
    let api = ApiServer::new(store, local.to_string()).await?;
    // Controllers, scheduler and agents are ordinary API clients; in-process they reach the API
    // through its router.
    if !args.api_only {
        // The local node's kubelet server answers only this server, with a token of this run.
        let kubelet_token = skiff_agent::kubelet::random_token();
        api.set_kubelet_token(kubelet_token.clone());
        spawn_components(
            kube::Client::new(api.router(), "default"),
            &args,
            &data_dir,
            kubelet_token,
        );
    }
    let url = format!("https://{}", display_addr(local));
    let kubeconfig = pki::kubeconfig("skiff", &url, &creds);
    let path = pki::write_kubeconfig(&data_dir, &kubeconfig)?;
    let tls = pki::server_tls_config(&creds)?;
    println!(
        "skiff server ready at {url} in {} ms",
        started.elapsed().as_millis()
    );
    println!("kubeconfig: {}", path.display());
    if merge_user_config {
        let user_config = merge_into_user_kubeconfig(&kubeconfig)?;
        println!(
            "merged context \"skiff\" into {} and made it current",
            user_config.display()
        );
    }
    api.serve(listener, tls, creds.token).await
}

fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Adds (or replaces) the `skiff` cluster, user and context in `~/.kube/config` (or the first
/// file of `$KUBECONFIG`) and makes it current, as `kind create cluster` does.
fn merge_into_user_kubeconfig(ours: &str) -> Result<PathBuf> {
    let path = match std::env::var("KUBECONFIG")
        .ok()
        .and_then(|k| k.split(':').find(|p| !p.is_empty()).map(PathBuf::from))
    {
        Some(p) => p,
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".kube/config")
        }
    };
    let ours: Value = serde_saphyr::from_str(ours).context("parsing our kubeconfig")?;
    let mut config: Value = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        _ => json!({"apiVersion": "v1", "kind": "Config", "preferences": {}}),
    };
    for section in ["clusters", "users", "contexts"] {
        let entry = ours[section][0].clone();
        let list = config[section].as_array().cloned().unwrap_or_default();
        let mut list: Vec<Value> = list.into_iter().filter(|e| e["name"] != "skiff").collect();
        list.push(entry);
        config[section] = Value::Array(list);
    }
    config["current-context"] = "skiff".into();
    write_private(
        &path,
        &serde_saphyr::to_string(&config).context("rendering kubeconfig")?,
    )?;
    Ok(path)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

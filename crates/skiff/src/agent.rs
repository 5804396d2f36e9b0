//! `skiff agent`: a node agent on its own, talking to a server over the network.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use skiff_agent::process::ProcessConfig;
use skiff_agent::{AgentConfig, ProcessRuntime, Runtime, SimRuntime, SimTiming};
use std::path::PathBuf;
use std::sync::Arc;

/// Which runtime runs a node's pods.
#[derive(Clone, Copy, ValueEnum)]
pub enum RuntimeKind {
    /// Real processes from the host's filesystem, isolated with namespaces and cgroups.
    Process,
    /// Simulated pods: no processes, scripted by annotations.
    Sim,
}

/// The runtime of `kind`; the process runtime keeps its logs, volumes and state under `root`.
pub fn runtime(kind: RuntimeKind, client: &kube::Client, root: PathBuf) -> Arc<dyn Runtime> {
    match kind {
        RuntimeKind::Process => Arc::new(ProcessRuntime::new(ProcessConfig {
            root,
            client: Some(client.clone()),
            node_ip: None,
        })),
        RuntimeKind::Sim => Arc::new(SimRuntime::new(SimTiming::default())),
    }
}

/// Options of `skiff agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The Node to register [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// The runtime that runs pods.
    #[arg(long, value_enum, default_value = "sim")]
    runtime: RuntimeKind,
    /// Where the process runtime keeps container logs, volumes and the state that lets a
    /// restarted agent adopt its running pods.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    root_dir: PathBuf,
}

/// Registers the node and runs its pods until the process is stopped.
pub async fn run(args: AgentArgs) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let name = args.name.unwrap_or_else(crate::server::host_node_name);
    let runtime = runtime(args.runtime, &client, args.root_dir);
    println!("skiff agent: node {name}");
    skiff_agent::run_node_agent(client, AgentConfig::new(&name, runtime)).await
}

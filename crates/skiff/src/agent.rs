//! `skiff agent`: a node agent on its own, talking to a server over the network.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use skiff_agent::{AgentConfig, SimRuntime, SimTiming};
use std::path::PathBuf;
use std::sync::Arc;

/// Which runtime runs the node's pods.
#[derive(Clone, Copy, ValueEnum)]
enum RuntimeKind {
    /// Simulated pods: no processes, scripted by annotations.
    Sim,
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
}

/// Registers the node and runs its pods until the process is stopped.
pub async fn run(args: AgentArgs) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let name = args.name.unwrap_or_else(crate::server::host_node_name);
    let runtime = match args.runtime {
        RuntimeKind::Sim => Arc::new(SimRuntime::new(SimTiming::default())),
    };
    println!("skiff agent: node {name}");
    skiff_agent::run_node_agent(client, AgentConfig::new(&name, runtime)).await
}

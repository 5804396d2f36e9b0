//! The `skiff` binary: one command line for the whole control plane.

mod agent;
mod bench;
mod server;

use clap::{Parser, Subcommand};

/// mimalloc: the control plane allocates many small, short-lived JSON values from many
/// threads, where glibc's allocator spent a fifth of the CPU time (measured with
/// `perf record` on `skiff bench scheduler`). Built with its `no_thp` feature: mimalloc does
/// not ask for transparent huge pages, whose freed parts would stay resident (ADR 8).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// skiff: a Kubernetes-compatible workload orchestrator in one small binary.
#[derive(Parser)]
#[command(name = "skiff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server, store and controllers.
    Server(server::ServerArgs),
    /// Run a node agent that registers a Node and runs its pods.
    Agent(agent::AgentArgs),
    /// Measure performance (see docs/PERFORMANCE.md).
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
    }
}

//! skiff's node agent, as upstream's kubelet: it registers Nodes, keeps them alive with Leases
//! and status reports, and runs the pods bound to them through a [`Runtime`].
//!
//! Two entry points share one core:
//! * [`run_node_agent`]: one node (`skiff agent --name NAME`, or the local node of
//!   `skiff server`), watching only its own Node and pods (`spec.nodeName=NAME`).
//! * [`run_simulator`]: any number of simulated nodes in one process, with one Node watch and
//!   one pod watch for all of them. It hosts every Node annotated `skiff.dev/simulated: "true"`
//!   (those it creates for `--sim-nodes N`, `sim-0001`.., and any created with `kubectl apply`);
//!   deleting the Node (or removing the annotation) drops it. Their pods run in the
//!   [`SimRuntime`], whose pod annotations script behaviour (see [`sim`]).
//!
//! Node annotation `skiff.dev/heartbeat: "stopped"` simulates a dead kubelet: the node's Lease
//! and status stop being renewed and its pods' statuses freeze (a pod deleted meanwhile stays
//! Terminating); removing the annotation brings it back.
//!
//! Pod CIDRs come from [`run_pod_cidr_allocator`], which the control plane runs once; an agent
//! gives pod IPs from its node's `spec.podCIDR` and keeps pods `ContainerCreating` until it
//! has one.

mod host;
pub mod kubelet;
pub mod node;
pub mod podcidr;
pub mod podnet;
mod podstatus;
pub mod process;
mod queue;
pub mod runtime;
pub mod sim;

pub use host::{HEARTBEAT_ANNOTATION, HeartbeatTimings};
pub use node::{NodeProfile, SIMULATED_ANNOTATION};
pub use podcidr::{Ipv4Cidr, run_pod_cidr_allocator};
pub use process::ProcessRuntime;
pub use runtime::{PodSandboxConfig, Runtime, RuntimePodStatus, StatusChanges};
pub use sim::{SimRuntime, SimTiming};

use futures::StreamExt;
use host::{Host, HostSpec};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Configuration of [`run_node_agent`].
pub struct AgentConfig {
    /// The Node's name (upstream: the hostname, lower-cased).
    pub node_name: String,
    /// What runs the pods.
    pub runtime: Arc<dyn Runtime>,
    /// The machine the node reports.
    pub profile: NodeProfile,
    /// The node's InternalIP; `None` finds the address of the default route's interface.
    pub node_ip: Option<Ipv4Addr>,
    /// Lease and status timings.
    pub heartbeat: HeartbeatTimings,
    /// The bearer token the API server presents to the node's kubelet server (for
    /// `kubectl logs` and `exec`); `None` makes up one nobody knows, closing the server.
    pub kubelet_token: Option<String>,
}

impl AgentConfig {
    /// A node named `node_name` describing this machine, with upstream's timings.
    pub fn new(node_name: &str, runtime: Arc<dyn Runtime>) -> Self {
        Self {
            node_name: node_name.to_lowercase(),
            runtime,
            profile: NodeProfile::host(100 * 1024 * 1024 * 1024),
            node_ip: None,
            heartbeat: HeartbeatTimings::default(),
            kubelet_token: None,
        }
    }
}

/// Configuration of [`run_simulator`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many nodes to create (`<prefix>0001`..); existing ones are kept.
    pub nodes: usize,
    /// The name prefix of created nodes.
    pub name_prefix: String,
    /// What every simulated node reports (a hand-written node may bring its own capacity).
    pub profile: NodeProfile,
    /// Default container timings (pod annotations override them).
    pub timing: SimTiming,
    /// Lease and status timings.
    pub heartbeat: HeartbeatTimings,
}

impl Default for SimConfig {
    /// No nodes created; kwok's default node shape (32 cpus, 256 GiB); containers start and
    /// become ready at once.
    fn default() -> Self {
        Self {
            nodes: 0,
            name_prefix: "sim-".into(),
            profile: NodeProfile::simulated("32", "256Gi", "100Gi", "skiff-sim"),
            timing: SimTiming::default(),
            heartbeat: HeartbeatTimings::default(),
        }
    }
}

/// The address of the interface holding the default route (no packet is sent), or loopback.
pub(crate) fn default_ipv4() -> Ipv4Addr {
    let socket =
        std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:80").map(|_| s));
    match socket.and_then(|s| s.local_addr()).map(|a| a.ip()) {
        Ok(std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    }
}

/// Creates `node` unless a Node of that name exists.
async fn register(nodes: &Api<Node>, node: &Node) -> kube::Result<()> {
    match nodes.create(&PostParams::default(), node).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        result => result.map(|_| ()),
    }
}

/// Registers the Node `config.node_name` and runs it until the process ends: Lease renewals,
/// status reports, and its pods through `config.runtime`. A restarted agent picks up the pods
/// already bound to its node where they are.
pub async fn run_node_agent(client: kube::Client, config: AgentConfig) -> anyhow::Result<()> {
    let name = config.node_name.clone();
    register(
        &Api::all(client.clone()),
        &config.profile.registration(&name, false),
    )
    .await?;
    let node_ip = config.node_ip.unwrap_or_else(default_ipv4);
    // The kubelet server listens on the node's IP, on a port of its own reported in the
    // Node's status; on every address (upstream's default) when the IP is not this machine's.
    let listener = match tokio::net::TcpListener::bind((node_ip, 0)).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%node_ip, %err, "kubelet server: listening on all addresses instead");
            tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await?
        }
    };
    let mut profile = config.profile;
    profile.kubelet_port = i32::from(listener.local_addr()?.port());
    let adopted = name.clone();
    let spec = HostSpec {
        node_fields: Some(format!("metadata.name={name}")),
        pod_fields: format!("spec.nodeName={name}"),
        adopts: Box::new(move |node| node.metadata.name.as_deref() == Some(adopted.as_str())),
        internal_ip: Box::new(move |_| Some(node_ip)),
        profile,
        timings: config.heartbeat,
    };
    let host = Host::new(client, config.runtime.clone(), spec);
    let pods = host.clone();
    let token = config.kubelet_token.unwrap_or_else(kubelet::random_token);
    let kubelet = kubelet::Kubelet::new(
        config.runtime,
        Arc::new(move |namespace: &str, pod: &str| pods.find_pod(namespace, pod)),
        token,
    );
    tokio::select! {
        () = host.run() => {}
        () = kubelet.serve(listener) => {}
    }
    Ok(())
}

/// The InternalIP of a simulated node: in 172.16.0.0/12, numbered as its pod CIDR's `/24`
/// (10.244.3.0/24 gives 172.26.244.3), so nodes never share one.
fn simulated_node_ip(cidr: Option<Ipv4Cidr>) -> Option<Ipv4Addr> {
    let cidr = cidr?;
    let subnet = (u32::from(cidr.network) >> 8) & 0xF_FFFF;
    Some(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(172, 16, 0, 0)) + subnet,
    ))
}

/// Creates `config.nodes` simulated nodes, then hosts every simulated Node (see the crate
/// documentation) until the process ends.
pub async fn run_simulator(client: kube::Client, config: SimConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let created = futures::stream::iter(1..=config.nodes)
        .map(|i| {
            let node = config
                .profile
                .registration(&format!("{}{i:04}", config.name_prefix), true);
            let nodes = nodes.clone();
            async move { register(&nodes, &node).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect::<kube::Result<Vec<()>>>()?;
    let spec = HostSpec {
        node_fields: None,
        pod_fields: "spec.nodeName!=".into(),
        adopts: Box::new(|node| {
            node.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIMULATED_ANNOTATION))
                .is_some_and(|v| v == "true")
        }),
        internal_ip: Box::new(simulated_node_ip),
        profile: config.profile,
        timings: config.heartbeat,
    };
    Host::new(client, Arc::new(SimRuntime::new(config.timing)), spec)
        .run()
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_node_ips_follow_pod_cidrs() {
        assert_eq!(
            simulated_node_ip("10.244.3.0/24".parse().ok()),
            Some(Ipv4Addr::new(172, 26, 244, 3))
        );
        assert_eq!(
            simulated_node_ip("10.244.255.0/24".parse().ok()),
            Some(Ipv4Addr::new(172, 26, 244, 255))
        );
        assert_eq!(simulated_node_ip(None), None);
    }
}

//! Pod CIDRs: each node gets its own `/24` of the cluster CIDR in `spec.podCIDR`, as upstream's
//! node IPAM range allocator (kube-controller-manager `--allocate-node-cidrs`) does.
//!
//! Allocation happens in one controller, [`run_pod_cidr_allocator`], which runs once per
//! cluster (in `skiff server`): a single writer that knows every node cannot hand out a CIDR
//! twice, whereas agents choosing for themselves could race each other. Agents only read
//! `spec.podCIDR` and take pod IPs from it.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The default cluster CIDR: 32,768 node `/24`s (enough for simulated clusters of 5,000 nodes),
/// clear of the 10.96.0.0/12 service range.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.128.0.0/9";

/// The prefix length of each node's pod CIDR (upstream's `--node-cidr-mask-size` default).
pub const NODE_CIDR_PREFIX: u8 = 24;

/// An IPv4 network such as `10.244.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The first address (host bits are zero).
    pub network: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR address: {0}")]
pub struct InvalidCidr(String);

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCidr(s.to_string());
        let (address, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(invalid)?;
        Ok(Self {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl Ipv4Cidr {
    /// How many subnets of length `prefix` this network holds.
    pub fn subnet_count(&self, prefix: u8) -> u32 {
        if prefix < self.prefix {
            0
        } else {
            1u32.checked_shl(u32::from(prefix - self.prefix))
                .unwrap_or(u32::MAX)
        }
    }

    /// The `index`th subnet of length `prefix`.
    pub fn subnet(&self, index: u32, prefix: u8) -> Option<Ipv4Cidr> {
        (index < self.subnet_count(prefix)).then(|| Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(self.network) + (index << (32 - u32::from(prefix)))),
            prefix,
        })
    }

    /// The index of `subnet` among this network's subnets of its length, if it is one.
    pub fn subnet_index(&self, subnet: &Ipv4Cidr) -> Option<u32> {
        let offset = u32::from(subnet.network).checked_sub(u32::from(self.network))?;
        (subnet.prefix >= self.prefix
            && subnet.prefix > 0
            && offset >> (32 - u32::from(subnet.prefix)) < self.subnet_count(subnet.prefix))
        .then(|| offset >> (32 - u32::from(subnet.prefix)))
    }

    /// The `n`th address of the network (0 is the network address itself).
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (self.prefix == 0 || u64::from(n) < 1u64 << (32 - self.prefix))
            .then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// Whether `address` is inside the network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }
}

/// Which node holds which subnet of the cluster CIDR.
struct Allocations {
    cluster: Ipv4Cidr,
    by_node: HashMap<String, u32>,
    used: HashSet<u32>,
    /// Where the search for a free subnet starts, so freed subnets are not reused at once.
    next_candidate: u32,
}

impl Allocations {
    fn new(cluster: Ipv4Cidr) -> Self {
        Self {
            cluster,
            by_node: HashMap::new(),
            used: HashSet::new(),
            next_candidate: 0,
        }
    }

    /// Records the subnet a node already has.
    fn occupy(&mut self, node: &str, cidr: &str) {
        let index = cidr
            .parse()
            .ok()
            .and_then(|c: Ipv4Cidr| (c.prefix == NODE_CIDR_PREFIX).then_some(c))
            .and_then(|c| self.cluster.subnet_index(&c));
        if let Some(index) = index {
            self.used.insert(index);
            self.by_node.insert(node.to_string(), index);
        }
    }

    fn release(&mut self, node: &str) {
        if let Some(index) = self.by_node.remove(node) {
            self.used.remove(&index);
        }
    }

    /// Takes the next free subnet for `node`.
    fn allocate(&mut self, node: &str) -> Option<Ipv4Cidr> {
        let count = self.cluster.subnet_count(NODE_CIDR_PREFIX);
        let index = (0..count)
            .map(|i| (self.next_candidate + i) % count)
            .find(|i| !self.used.contains(i))?;
        self.used.insert(index);
        self.by_node.insert(node.to_string(), index);
        self.next_candidate = (index + 1) % count;
        self.cluster.subnet(index, NODE_CIDR_PREFIX)
    }
}

/// Assigns `spec.podCIDR`/`spec.podCIDRs` to every node that has none, from `cluster_cidr`,
/// until the process ends. Run exactly one per cluster.
pub async fn run_pod_cidr_allocator(client: Client, cluster_cidr: Ipv4Cidr) {
    let nodes: Api<Node> = Api::all(client);
    let mut allocations = Allocations::new(cluster_cidr);
    // Nodes seen during a (re-)list, assigned only once every existing allocation is known.
    let mut listing: Vec<Node> = Vec::new();
    let mut events = watcher(nodes.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(node)) => listing.push(node),
            Ok(watcher::Event::InitDone) => {
                allocations = Allocations::new(cluster_cidr);
                for node in &listing {
                    if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                        allocations.occupy(&node.name_any(), cidr);
                    }
                }
                for node in std::mem::take(&mut listing) {
                    ensure_cidr(&nodes, &mut allocations, &node).await;
                }
            }
            Ok(watcher::Event::Apply(node)) => ensure_cidr(&nodes, &mut allocations, &node).await,
            Ok(watcher::Event::Delete(node)) => allocations.release(&node.name_any()),
            Err(err) => tracing::warn!(%err, "watching nodes for pod CIDR allocation"),
        }
    }
}

async fn ensure_cidr(nodes: &Api<Node>, allocations: &mut Allocations, node: &Node) {
    let name = node.name_any();
    if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
        allocations.occupy(&name, cidr);
        return;
    }
    if allocations.by_node.contains_key(&name) {
        return; // Our patch is on its way.
    }
    let Some(cidr) = allocations.allocate(&name) else {
        tracing::warn!(node = %name, cluster_cidr = %allocations.cluster, "no pod CIDR left for node");
        return;
    };
    let patch = serde_json::json!({
        "metadata": {"uid": node.metadata.uid},
        "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
    });
    if let Err(err) = nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(node = %name, %err, "assigning a pod CIDR");
        allocations.release(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_arithmetic() {
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(cluster.subnet(3, 24).unwrap().to_string(), "10.244.3.0/24");
        assert_eq!(cluster.subnet(256, 24), None);
        assert_eq!(
            cluster.subnet_index(&"10.244.7.0/24".parse().unwrap()),
            Some(7)
        );
        assert_eq!(
            cluster.subnet_index(&"10.245.0.0/24".parse().unwrap()),
            None
        );
        let node: Ipv4Cidr = "10.244.3.0/24".parse().unwrap();
        assert_eq!(node.host(2), Some("10.244.3.2".parse().unwrap()));
        assert_eq!(node.host(256), None);
        assert!(node.contains("10.244.3.200".parse().unwrap()));
        assert_eq!(
            "10.244.1.9/16".parse::<Ipv4Cidr>().unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert!("10.244.0.0/33".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn allocation_skips_used_subnets_and_does_not_reuse_freed_ones_at_once() {
        let mut allocations = Allocations::new("10.244.0.0/22".parse().unwrap());
        allocations.occupy("a", "10.244.0.0/24");
        assert_eq!(
            allocations.allocate("b").unwrap().to_string(),
            "10.244.1.0/24"
        );
        allocations.release("a");
        assert_eq!(
            allocations.allocate("c").unwrap().to_string(),
            "10.244.2.0/24"
        );
        assert_eq!(
            allocations.allocate("d").unwrap().to_string(),
            "10.244.3.0/24"
        );
        assert_eq!(
            allocations.allocate("e").unwrap().to_string(),
            "10.244.0.0/24"
        );
        assert_eq!(allocations.allocate("f"), None, "exhausted");
    }
}

//! Per-pod network namespaces, wired as upstream's CNI `bridge` + `host-local` plugins do.
//!
//! One Linux bridge per node ([`DEFAULT_BRIDGE`], `skiff0`) holds the gateway of the node's pod
//! CIDR (its first host address, e.g. `10.244.3.1/24`). Each pod gets a named network namespace
//! `skiff-<pod uid>` (a file under `/var/run/netns/`) and a veth pair: the host end, named from a
//! hash of the uid (`veth` + 11 hex digits, within the kernel's 15 characters), is attached to
//! the bridge; the pod end is `eth0` inside the namespace, holding the pod IP with the CIDR's
//! prefix and a default route via the gateway, next to `lo`. The host therefore reaches every
//! pod IP directly over the bridge's connected route, pods reach each other across the bridge
//! and reach the host at the gateway address.
//!
//! Not done (upstream's bridge plugin does them with `ipMasq`/`isGateway`): enabling
//! `net.ipv4.ip_forward` and a MASQUERADE rule for traffic leaving the CIDR. Both change the
//! whole host rather than one pod's namespace, so pods reach the node and each other only.
//!
//! The agent does this itself, as iproute2's `ip` would: [`netns`] pins namespaces where `ip
//! netns` keeps them, and [`rtnetlink`] sends the link, address, route and neighbour requests.
//! It needs root on Linux; anywhere else [`PodNetwork::setup`] returns an error, and the pod
//! can only share the host's network.

pub mod netns;
pub mod rtnetlink;

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::podcidr::Ipv4Cidr;
use rtnetlink::Rtnetlink;

/// The node's pod bridge.
pub const DEFAULT_BRIDGE: &str = "skiff0";

/// The index the kernel gives `lo` in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Where the kernel lists the host's network interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// A pod's network namespace, connected to the node's bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    netns_path: PathBuf,
}

impl PodNetwork {
    /// Creates (idempotently) the bridge for `cidr` and a netns named `skiff-<pod uid>` with `ip`
    /// on its eth0; Err when unsupported.
    pub fn setup(pod_uid: &str, ip: Ipv4Addr, cidr: Ipv4Cidr) -> io::Result<PodNetwork> {
        Self::setup_on_bridge(DEFAULT_BRIDGE, pod_uid, ip, cidr)
    }

    /// [`PodNetwork::setup`] on the bridge named `bridge` (at most 15 characters) instead of
    /// [`DEFAULT_BRIDGE`], so tests leave the node's bridge alone. Leftovers of an earlier
    /// setup of the same pod (its netns and veth) are replaced; a setup that fails midway
    /// removes what it made.
    pub fn setup_on_bridge(
        bridge: &str,
        pod_uid: &str,
        ip: Ipv4Addr,
        cidr: Ipv4Cidr,
    ) -> io::Result<PodNetwork> {
        if !cfg!(target_os = "linux") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pod network namespaces need Linux",
            ));
        }
        check_pod_uid(pod_uid)?;
        let gateway = gateway(cidr)?;
        let broadcast = Ipv4Addr::from(u32::from(cidr.network) | (u32::MAX >> cidr.prefix));
        if !cidr.contains(ip) || [cidr.network, gateway, broadcast].contains(&ip) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "pod IP {ip} is not a host address of {cidr} other than its gateway {gateway}"
                ),
            ));
        }
        Self::teardown(pod_uid);
        let mut host = Rtnetlink::open()?;
        let bridge_index = ensure_bridge(&mut host, bridge, gateway, cidr.prefix)?;
        let name = netns_name(pod_uid);
        let netns = netns::create(&name)?;
        let wired = connect_pod(
            &mut host,
            bridge_index,
            &netns,
            &host_veth_name(pod_uid),
            ip,
            gateway,
            cidr,
        );
        if let Err(err) = wired {
            Self::teardown(pod_uid);
            return Err(err);
        }
        Ok(PodNetwork {
            netns_path: netns::path_of(&name),
        })
    }

    /// The netns file to setns() into (/var/run/netns/skiff-<uid>).
    pub fn netns_path(&self) -> &Path {
        &self.netns_path
    }

    /// Removes the pod's netns and veth (no error when already gone).
    pub fn teardown(pod_uid: &str) {
        if check_pod_uid(pod_uid).is_err() {
            return; // setup never made anything for it.
        }
        // The host end first: a namespace still held by a process outlives its unpinning, and
        // so would the veth pair inside it.
        let veth = host_veth_name(pod_uid);
        if Path::new(SYS_CLASS_NET).join(&veth).exists()
            && let Err(err) = Rtnetlink::open().and_then(|mut host| host.delete_link(&veth))
        {
            tracing::warn!(pod_uid, %err, "removing the pod's veth");
        }
        let name = netns_name(pod_uid);
        if netns::exists(&name)
            && let Err(err) = netns::remove(&name)
        {
            tracing::warn!(pod_uid, %err, "removing the pod's network namespace");
        }
    }
}

/// The pod's network namespace name.
fn netns_name(pod_uid: &str) -> String {
    format!("skiff-{pod_uid}")
}

/// The host end of the pod's veth pair: `veth` and the top 44 bits of the uid's FNV-1a hash in
/// hex, 15 characters (the kernel's limit), the same for a uid in every run of the agent.
fn host_veth_name(pod_uid: &str) -> String {
    let hash = pod_uid
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("veth{:011x}", hash >> 20)
}

/// Rejects uids that would not make a plain file name for the netns (Kubernetes uids are
/// UUIDs, so this only keeps paths like `../x` out).
fn check_pod_uid(pod_uid: &str) -> io::Result<()> {
    let plain = !pod_uid.is_empty()
        && pod_uid.len() <= 200
        && pod_uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !pod_uid.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pod uid {pod_uid:?} cannot name a network namespace"),
        ))
    }
}

/// The CIDR's first host address, which the bridge holds (host-local's default gateway).
fn gateway(cidr: Ipv4Cidr) -> io::Result<Ipv4Addr> {
    cidr.host(1).filter(|_| cidr.prefix <= 30).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pod CIDR {cidr} has no room for a gateway and pods"),
        )
    })
}

/// Creates the bridge unless it exists, and makes sure it is up with the gateway address;
/// returns its index. A bridge this process already configured with this gateway, and which
/// still has its index, is left alone (pods are set up in parallel, and this saves requests
/// per pod). Serialized, so that parallel set-ups do not race to create it.
fn ensure_bridge(
    host: &mut Rtnetlink,
    bridge: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> io::Result<u32> {
    static CONFIGURED: Mutex<Vec<(String, Ipv4Addr, u8, u32)>> = Mutex::new(Vec::new());
    let mut configured = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner());
    let index = std::fs::read_to_string(Path::new(SYS_CLASS_NET).join(bridge).join("ifindex"))
        .ok()
        .and_then(|index| index.trim().parse::<u32>().ok());
    if let Some(index) = index
        && configured.contains(&(bridge.to_owned(), gateway, prefix, index))
    {
        return Ok(index);
    }
    host.add_bridge(bridge)?;
    let index = host.link_index(bridge)?;
    host.replace_address(index, gateway, prefix)?;
    host.set_up(index)?;
    configured.retain(|(b, ..)| b != bridge);
    configured.push((bridge.to_owned(), gateway, prefix, index));
    Ok(index)
}

/// Creates the veth pair with its pod end as `eth0` in `netns`, attaches the host end to the
/// bridge with index `bridge` and configures the pod end.
fn connect_pod(
    host: &mut Rtnetlink,
    bridge: u32,
    netns: &File,
    host_veth: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
    cidr: Ipv4Cidr,
) -> io::Result<()> {
    host.add_veth(host_veth, bridge, "eth0", netns)?;
    // The node may still map the IP to the MAC of the pod that had it before: forgotten, the
    // new pod answers at once instead of after the neighbour entry goes stale (10-45 s).
    host.delete_neighbour(bridge, ip)?;
    let mut pod = Rtnetlink::open_in(netns)?;
    let eth0 = pod.link_index("eth0")?;
    pod.replace_address(eth0, ip, cidr.prefix)?;
    pod.set_up(eth0)?;
    pod.set_up(LOOPBACK_INDEX)?;
    pod.add_default_route(gateway, eth0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_the_kernel_limit_and_are_stable() {
        let name = host_veth_name("3f2c2b9e-6f7d-4c1a-9a51-2d8a4b1e0c77");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("veth"));
        assert_eq!(name, host_veth_name("3f2c2b9e-6f7d-4c1a-9a51-2d8a4b1e0c77"));
        assert_ne!(name, host_veth_name("3f2c2b9e-6f7d-4c1a-9a51-2d8a4b1e0c78"));
        // FNV-1a 64 of "" is its offset basis; its top 44 bits name the veth.
        assert_eq!(host_veth_name(""), "vethcbf29ce4842");
    }

    #[test]
    fn bad_inputs_are_rejected_before_touching_the_host() {
        let cidr: Ipv4Cidr = "10.250.7.0/24".parse().unwrap();
        let invalid = |uid: &str, ip: &str, cidr: Ipv4Cidr| {
            PodNetwork::setup_on_bridge("skiff-none", uid, ip.parse().unwrap(), cidr)
                .unwrap_err()
                .kind()
        };
        for uid in ["", "../etc", "a/b", ".hidden"] {
            assert_eq!(
                invalid(uid, "10.250.7.2", cidr),
                io::ErrorKind::InvalidInput
            );
        }
        for ip in ["10.250.7.0", "10.250.7.1", "10.250.7.255", "10.250.8.2"] {
            assert_eq!(invalid("pod", ip, cidr), io::ErrorKind::InvalidInput);
        }
        let tiny: Ipv4Cidr = "10.250.7.0/31".parse().unwrap();
        assert_eq!(
            invalid("pod", "10.250.7.1", tiny),
            io::ErrorKind::InvalidInput
        );
    }
}

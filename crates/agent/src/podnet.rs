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
//! The work is done by shelling out to iproute2's `ip` (it must be on `PATH`; Debian/Ubuntu
//! package `iproute2`), which needs root on Linux. Anywhere else [`PodNetwork::setup`] returns
//! an error, and the pod can only share the host's network.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::podcidr::Ipv4Cidr;

/// The node's pod bridge.
pub const DEFAULT_BRIDGE: &str = "skiff0";

/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Where the kernel lists the host's network interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// Serializes bridge creation and `ip netns add` (whose first run in a mount namespace sets up
/// `/var/run/netns` and must not race itself) across pods set up at once.
static HOST_SETUP: Mutex<()> = Mutex::new(());

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
        let netns = netns_name(pod_uid);
        {
            let _serialized = HOST_SETUP.lock().unwrap_or_else(|e| e.into_inner());
            ensure_bridge(bridge, gateway, cidr.prefix)?;
            run_ip(&["netns", "add", &netns])?;
        }
        let wired = connect_pod(bridge, &netns, &host_veth_name(pod_uid), ip, gateway, cidr);
        if let Err(err) = wired {
            Self::teardown(pod_uid);
            return Err(err);
        }
        Ok(PodNetwork {
            netns_path: Path::new(NETNS_DIR).join(netns),
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
        // The host end first: a namespace still held by a process outlives `ip netns del`,
        // and so would the veth pair inside it.
        let veth = host_veth_name(pod_uid);
        if Path::new(SYS_CLASS_NET).join(&veth).exists()
            && let Err(err) = run_ip(&["link", "del", &veth])
        {
            tracing::warn!(pod_uid, %err, "removing the pod's veth");
        }
        let netns = netns_name(pod_uid);
        if Path::new(NETNS_DIR).join(&netns).exists()
            && let Err(err) = run_ip(&["netns", "del", &netns])
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

/// Creates the bridge unless it exists, and makes sure it is up with the gateway address.
/// A bridge this process already configured with this gateway, and which still exists, is
/// left alone: that saves one `ip` run per pod.
fn ensure_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<()> {
    static CONFIGURED: Mutex<Vec<(String, Ipv4Addr, u8)>> = Mutex::new(Vec::new());
    let mut configured = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = (bridge.to_owned(), gateway, prefix);
    let exists = Path::new(SYS_CLASS_NET).join(bridge).exists();
    if exists && configured.contains(&wanted) {
        return Ok(());
    }
    if !exists {
        run_ip(&["link", "add", "name", bridge, "type", "bridge"])?;
    }
    run_ip_batch(
        None,
        &[
            format!("addr replace {gateway}/{prefix} dev {bridge}"),
            format!("link set {bridge} up"),
        ],
    )?;
    configured.retain(|(b, _, _)| b != bridge || exists);
    configured.push(wanted);
    Ok(())
}

/// Creates the veth pair with its pod end as `eth0` in `netns`, attaches the host end to the
/// bridge and configures the pod end.
fn connect_pod(
    bridge: &str,
    netns: &str,
    host_veth: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
    cidr: Ipv4Cidr,
) -> io::Result<()> {
    // The node may still map the IP to the MAC of the pod that had it before: forgotten, the
    // new pod answers at once instead of after the neighbour entry goes stale (10-45 s).
    run_ip_batch(
        None,
        &[
            format!(
                "link add {host_veth} up master {bridge} type veth peer name eth0 netns {netns}"
            ),
            format!("neigh flush to {ip} dev {bridge}"),
        ],
    )?;
    run_ip_batch(
        Some(netns),
        &[
            format!("addr add {ip}/{} dev eth0", cidr.prefix),
            "link set eth0 up".into(),
            "link set lo up".into(),
            format!("route add default via {gateway} dev eth0"),
        ],
    )
}

/// Runs `ip ARGS`, with `ip`'s own message in the error when it fails.
fn run_ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    check_status(&args.join(" "), &output)
}

/// Runs `commands` in one `ip -batch` (inside `netns` when given), stopping at the first that
/// fails.
fn run_ip_batch(netns: Option<&str>, commands: &[String]) -> io::Result<()> {
    let mut ip = Command::new("ip");
    if let Some(netns) = netns {
        ip.args(["-n", netns]);
    }
    let mut child = ip
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let script = commands.join("\n") + "\n";
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes());
    let output = child.wait_with_output()?;
    written?;
    check_status(&format!("-batch of `{}`", commands.join("; ")), &output)
}

/// Turns a failed `ip` run into an error naming the command and quoting its stderr.
fn check_status(command: &str, output: &std::process::Output) -> io::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ip {command}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
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

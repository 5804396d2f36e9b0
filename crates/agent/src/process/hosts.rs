//! The pod's `/etc/hosts`, as the kubelet manages it (`managedHostsFileContent`): localhost
//! entries, the pod's own IP under its hostname (and its fully qualified name when it has a
//! subdomain), then the pod's `hostAliases`. Programs that look their own name up (Python's
//! `http.server` does, through `getfqdn`) find it at once instead of waiting for a DNS server
//! the pod cannot reach.

use k8s_openapi::api::core::v1::Pod;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The cluster's DNS domain (upstream's default `--cluster-domain`).
const CLUSTER_DOMAIN: &str = "cluster.local";

/// The hosts file's text for `pod`, known as `hostname`, at `ip`.
pub fn content(pod: &Pod, hostname: &str, ip: Ipv4Addr) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(subdomain) => text.push_str(&format!(
            "{ip}\t{hostname}.{subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}\t{hostname}\n"
        )),
        None => text.push_str(&format!("{ip}\t{hostname}\n")),
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.as_ref())
        .filter(|a| !a.is_empty());
    if let Some(aliases) = aliases {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            for name in alias.hostnames.iter().flatten() {
                text.push_str(&format!("{}\t{name}\n", alias.ip));
            }
        }
    }
    text
}

/// Writes the hosts file into `pod_dir` and returns its path, to be bind-mounted at
/// `/etc/hosts`.
pub fn write(pod_dir: &Path, pod: &Pod, hostname: &str, ip: Ipv4Addr) -> std::io::Result<PathBuf> {
    let path = pod_dir.join("etc-hosts");
    std::fs::write(&path, content(pod, hostname, ip))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCALHOST: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

    #[test]
    fn the_pod_is_found_under_its_hostname_and_domain() {
        let ip = Ipv4Addr::new(10, 244, 0, 5);
        let plain: Pod =
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "apps"}}))
                .unwrap();
        assert_eq!(
            content(&plain, "web", ip),
            format!("{LOCALHOST}10.244.0.5\tweb\n")
        );

        let stateful: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "apps"},
            "spec": {"containers": [], "subdomain": "nginx",
                     "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}
        }))
        .unwrap();
        assert_eq!(
            content(&stateful, "web-0", ip),
            format!(
                "{LOCALHOST}10.244.0.5\tweb-0.nginx.apps.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\n10.1.2.3\tbar.local\n"
            )
        );
    }
}

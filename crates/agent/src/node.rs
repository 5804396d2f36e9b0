//! The Node object an agent registers and the status it reports, as upstream's kubelet
//! (`pkg/kubelet/kubelet_node_status.go` and `nodestatus/setters.go`).

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The kubelet version skiff's agent reports (`status.nodeInfo.kubeletVersion`).
pub const KUBELET_VERSION: &str = "v1.33.0";

/// Upstream's default `--max-pods`.
pub const MAX_PODS: u32 = 110;

/// The kubelet's port, reported in `status.daemonEndpoints`.
pub const KUBELET_PORT: i32 = 10250;

/// The annotation that makes the simulator adopt a Node.
pub const SIMULATED_ANNOTATION: &str = "skiff.dev/simulated";

/// What an agent tells the API about its machine.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeProfile {
    /// `status.capacity`: cpu, memory, pods, ephemeral-storage, hugepages.
    pub capacity: BTreeMap<String, Quantity>,
    /// `status.allocatable`: capacity minus what the system keeps.
    pub allocatable: BTreeMap<String, Quantity>,
    /// `status.nodeInfo`, except `containerRuntimeVersion` (the runtime's) and `systemUUID`
    /// (the node's uid when empty).
    pub node_info: NodeSystemInfo,
    /// The `node.kubernetes.io/instance-type` label, if any.
    pub instance_type: Option<String>,
    /// The kubelet server's port, reported in `status.daemonEndpoints` (the port an agent's
    /// kubelet server bound; [`KUBELET_PORT`] for simulated nodes, which serve none).
    pub kubelet_port: i32,
}

/// The Go name of this machine's architecture, as `runtime.GOARCH`.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A resource list from `(name, quantity)` pairs, with upstream's zero hugepages.
pub fn resource_list(entries: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    let mut list: BTreeMap<String, Quantity> = entries
        .iter()
        .map(|(k, v)| ((*k).to_string(), Quantity(v.clone())))
        .collect();
    for hugepages in ["hugepages-1Gi", "hugepages-2Mi"] {
        list.entry(hugepages.into())
            .or_insert_with(|| Quantity("0".into()));
    }
    list
}

impl NodeProfile {
    /// A simulated machine with the given capacity (allocatable is all of it, as kwok's).
    pub fn simulated(
        cpu: &str,
        memory: &str,
        ephemeral_storage: &str,
        instance_type: &str,
    ) -> Self {
        let capacity = resource_list(&[
            ("cpu", cpu.into()),
            ("memory", memory.into()),
            ("ephemeral-storage", ephemeral_storage.into()),
            ("pods", MAX_PODS.to_string()),
        ]);
        Self {
            allocatable: capacity.clone(),
            capacity,
            node_info: NodeSystemInfo {
                architecture: go_arch().into(),
                operating_system: "linux".into(),
                os_image: "skiff simulated node".into(),
                kubelet_version: KUBELET_VERSION.into(),
                ..Default::default()
            },
            instance_type: Some(instance_type.into()),
            kubelet_port: KUBELET_PORT,
        }
    }

    /// This machine, as a real kubelet reports it: cpus and memory from the host, allocatable
    /// memory and ephemeral storage minus upstream's default hard eviction thresholds
    /// (`memory.available<100Mi`, `nodefs.available<10%`).
    pub fn host(ephemeral_storage_bytes: u64) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let machine_id = read("/etc/machine-id");
        let capacity = resource_list(&[
            ("cpu", cpus.to_string()),
            ("memory", format!("{memory_kib}Ki")),
            ("ephemeral-storage", ephemeral_storage_bytes.to_string()),
            ("pods", MAX_PODS.to_string()),
        ]);
        let allocatable = resource_list(&[
            ("cpu", cpus.to_string()),
            (
                "memory",
                format!("{}Ki", memory_kib.saturating_sub(100 * 1024)),
            ),
            (
                "ephemeral-storage",
                (ephemeral_storage_bytes / 10 * 9).to_string(),
            ),
            ("pods", MAX_PODS.to_string()),
        ]);
        Self {
            capacity,
            allocatable,
            node_info: NodeSystemInfo {
                architecture: go_arch().into(),
                boot_id: read("/proc/sys/kernel/random/boot_id"),
                kernel_version: read("/proc/sys/kernel/osrelease"),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: machine_id.clone(),
                operating_system: "linux".into(),
                os_image,
                system_uuid: machine_id,
                ..Default::default()
            },
            instance_type: None,
            kubelet_port: KUBELET_PORT,
        }
    }

    /// The labels the kubelet puts on its Node.
    pub fn labels(&self, node_name: &str) -> BTreeMap<String, String> {
        let arch = self.node_info.architecture.clone();
        let os = self.node_info.operating_system.clone();
        let mut labels = BTreeMap::from([
            ("beta.kubernetes.io/arch".to_string(), arch.clone()),
            ("beta.kubernetes.io/os".to_string(), os.clone()),
            ("kubernetes.io/arch".to_string(), arch),
            (
                "kubernetes.io/hostname".to_string(),
                node_name.to_lowercase(),
            ),
            ("kubernetes.io/os".to_string(), os),
        ]);
        if let Some(instance_type) = &self.instance_type {
            labels.insert(
                "beta.kubernetes.io/instance-type".into(),
                instance_type.clone(),
            );
            labels.insert(
                "node.kubernetes.io/instance-type".into(),
                instance_type.clone(),
            );
        }
        labels
    }

    /// The Node an agent creates when it registers.
    pub fn registration(&self, node_name: &str, simulated: bool) -> Node {
        let mut annotations = BTreeMap::from([(
            "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
            "true".to_string(),
        )]);
        if simulated {
            annotations.insert(SIMULATED_ANNOTATION.into(), "true".into());
        }
        Node {
            metadata: ObjectMeta {
                name: Some(node_name.into()),
                labels: Some(self.labels(node_name)),
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The status the agent reports for `observed` (the Node as the API has it): conditions
    /// keep their `lastTransitionTime` while their status holds; every heartbeat time is `now`.
    /// A node created with its own capacity (a hand-written simulated node) keeps it.
    pub fn status(
        &self,
        observed: &Node,
        internal_ip: Option<Ipv4Addr>,
        runtime_version: &str,
        now: Time,
    ) -> NodeStatus {
        let old = observed.status.clone().unwrap_or_default();
        let capacity = old
            .capacity
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| self.capacity.clone());
        let allocatable = old
            .allocatable
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| {
                if capacity == self.capacity {
                    self.allocatable.clone()
                } else {
                    capacity.clone()
                }
            });
        let old_conditions = old.conditions.unwrap_or_default();
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            let transition = old_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone());
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition.unwrap_or_else(|| now.clone())),
            }
        };
        let name = observed.metadata.name.clone().unwrap_or_default();
        let mut addresses = Vec::new();
        if let Some(ip) = internal_ip {
            addresses.push(NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            });
        }
        addresses.push(NodeAddress {
            type_: "Hostname".into(),
            address: name.to_lowercase(),
        });
        let mut node_info = self.node_info.clone();
        node_info.container_runtime_version = runtime_version.into();
        if node_info.system_uuid.is_empty() {
            node_info.system_uuid = observed.metadata.uid.clone().unwrap_or_default();
        }
        NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                ),
            ]),
            addresses: Some(addresses),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: self.kubelet_port,
                }),
            }),
            node_info: Some(node_info),
            ..Default::default()
        }
    }
}

/// Whether `desired` says something `observed` does not, heartbeat times aside: the kubelet
/// writes its status on such a change, and otherwise only every report interval.
pub fn status_changed(observed: &Node, desired: &NodeStatus) -> bool {
    let strip = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    let old = strip(&observed.status.clone().unwrap_or_default());
    let new = strip(desired);
    let old_conditions = old.conditions.unwrap_or_default();
    new.capacity != old.capacity
        || new.allocatable != old.allocatable
        || new.addresses != old.addresses
        || new.daemon_endpoints != old.daemon_endpoints
        || new.node_info != old.node_info
        || new
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| !old_conditions.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn simulated_status_is_upstream_shaped_and_keeps_transition_times() {
        let profile = NodeProfile::simulated("32", "256Gi", "100Gi", "skiff-sim");
        let mut node = profile.registration("sim-0001", true);
        node.metadata.uid = Some("u-1".into());
        let status = profile.status(
            &node,
            Some("172.16.0.1".parse().unwrap()),
            "skiff-sim://0.1.0",
            at("2025-01-01T00:00:00Z"),
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["capacity"],
            serde_json::json!({"cpu": "32", "ephemeral-storage": "100Gi", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "256Gi", "pods": "110"})
        );
        assert_eq!(
            json["conditions"][3],
            serde_json::json!({
            "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z",
            "message": "kubelet is posting ready status", "reason": "KubeletReady", "status": "True", "type": "Ready"})
        );
        assert_eq!(
            json["addresses"],
            serde_json::json!([{"address": "172.16.0.1", "type": "InternalIP"}, {"address": "sim-0001", "type": "Hostname"}])
        );
        assert_eq!(
            json["daemonEndpoints"],
            serde_json::json!({"kubeletEndpoint": {"Port": 10250}})
        );
        assert_eq!(json["nodeInfo"]["kubeletVersion"], "v1.33.0");
        assert_eq!(
            json["nodeInfo"]["containerRuntimeVersion"],
            "skiff-sim://0.1.0"
        );
        assert_eq!(json["nodeInfo"]["systemUUID"], "u-1");
        assert!(status_changed(&node, &status));

        node.status = Some(status);
        let later = profile.status(
            &node,
            Some("172.16.0.1".parse().unwrap()),
            "skiff-sim://0.1.0",
            at("2025-01-01T00:05:00Z"),
        );
        let ready = &later.conditions.as_ref().unwrap()[3];
        assert_eq!(ready.last_transition_time, Some(at("2025-01-01T00:00:00Z")));
        assert_eq!(ready.last_heartbeat_time, Some(at("2025-01-01T00:05:00Z")));
        assert!(!status_changed(&node, &later), "only heartbeat times moved");

        // The node lifecycle controller marked it Unknown: posting Ready again is a change.
        node.status.as_mut().unwrap().conditions.as_mut().unwrap()[3].status = "Unknown".into();
        let back = profile.status(
            &node,
            Some("172.16.0.1".parse().unwrap()),
            "skiff-sim://0.1.0",
            at("2025-01-01T00:06:00Z"),
        );
        assert!(status_changed(&node, &back));
        assert_eq!(
            back.conditions.unwrap()[3].last_transition_time,
            Some(at("2025-01-01T00:06:00Z"))
        );
    }

    #[test]
    fn labels_as_the_kubelet_sets_them() {
        let profile = NodeProfile::simulated("32", "256Gi", "100Gi", "skiff-sim");
        let labels = profile.labels("Sim-0001");
        assert_eq!(labels["kubernetes.io/hostname"], "sim-0001");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], go_arch());
        assert_eq!(labels["node.kubernetes.io/instance-type"], "skiff-sim");
    }
}

//! Resource quantities and pod requests as the scheduler counts them: cpu in millicores,
//! memory and ephemeral storage in bytes, with upstream's rules for init containers, sidecars
//! and pod overhead (`k8s.io/component-helpers/resource.PodRequests`).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The request the scoring plugins assume for a container that sets no cpu request (0.1 core),
/// upstream's `DefaultMilliCPURequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The request the scoring plugins assume for a container that sets no memory request (200 MiB),
/// upstream's `DefaultMemoryRequest`.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
}

impl Resources {
    /// Reads cpu, memory and ephemeral-storage from a resource list (missing ones are zero).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let get = |name: &str, milli: bool| {
            list.and_then(|l| l.get(name))
                .and_then(|q| skiff_api::quantity::parse_int(&q.0, milli))
                .unwrap_or(0)
        };
        Resources {
            milli_cpu: get("cpu", true),
            memory: get("memory", false),
            ephemeral_storage: get("ephemeral-storage", false),
        }
    }

    fn add(self, other: Self) -> Self {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            ephemeral_storage: self
                .ephemeral_storage
                .saturating_add(other.ephemeral_storage),
        }
    }

    fn max(self, other: Self) -> Self {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            ephemeral_storage: self.ephemeral_storage.max(other.ephemeral_storage),
        }
    }

    /// Adds `other` (a pod placed on a node).
    pub fn plus(&mut self, other: Self) {
        *self = self.add(other);
    }

    /// Subtracts `other` (a pod leaving a node).
    pub fn minus(&mut self, other: Self) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }
}

/// A pod's requests, both as NodeResourcesFit filters on them and as the LeastAllocated score
/// counts them (containers without a cpu or memory request count the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// What the pod asks for.
    pub requested: Resources,
    /// What scoring assumes (`NonMissingContainerRequests`).
    pub non_zero: Resources,
}

/// The pod's requests: the larger of the sum over containers (plus sidecars) and the largest
/// init container (plus the sidecars started before it), then the pod overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    PodRequests {
        requested: requests_with(spec, false),
        non_zero: requests_with(spec, true),
    }
}

fn container_requests(container: &Container, non_zero: bool) -> Resources {
    let list = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let mut r = Resources::from_list(list);
    if non_zero {
        let has = |name: &str| list.is_some_and(|l| l.contains_key(name));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn requests_with(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut requests = spec.containers.iter().fold(Resources::default(), |sum, c| {
        sum.add(container_requests(c, non_zero))
    });
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let own = container_requests(init, non_zero);
        let during = if init.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running next to the regular containers.
            requests = requests.add(own);
            sidecars = sidecars.add(own);
            sidecars
        } else {
            own.add(sidecars)
        };
        init_peak = init_peak.max(during);
    }
    requests = requests.max(init_peak);
    if let Some(overhead) = &spec.overhead {
        requests = requests.add(Resources::from_list(Some(overhead)));
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn pod_requests_follow_upstream_rules() {
        let c = |name: &str, cpu: Option<&str>, mem: Option<&str>| {
            let mut requests = serde_json::Map::new();
            if let Some(cpu) = cpu {
                requests.insert("cpu".into(), json!(cpu));
            }
            if let Some(mem) = mem {
                requests.insert("memory".into(), json!(mem));
            }
            json!({"name": name, "image": "i", "resources": {"requests": requests}})
        };
        let r = |milli_cpu, memory| Resources {
            milli_cpu,
            memory,
            ephemeral_storage: 0,
        };
        let cases = [
            // Containers add up.
            (
                json!({"containers": [c("a", Some("100m"), Some("1Mi")), c("b", Some("200m"), None)]}),
                r(300, 1 << 20),
                r(300, (1 << 20) + DEFAULT_MEMORY_REQUEST),
            ),
            // An init container bigger than the containers sets the request.
            (
                json!({"containers": [c("a", Some("100m"), None)], "initContainers": [c("i", Some("2"), None)]}),
                r(2000, 0),
                r(2000, DEFAULT_MEMORY_REQUEST),
            ),
            // A sidecar adds to the containers and to every later init container.
            (
                json!({"containers": [c("a", Some("100m"), Some("1Mi"))], "initContainers": [
                    {"name": "s", "image": "i", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m", "memory": "1Mi"}}},
                    c("i", Some("500m"), Some("1Mi"))]}),
                r(550, 2 << 20),
                r(550, 2 << 20),
            ),
            // Overhead comes on top.
            (
                json!({"containers": [c("a", Some("100m"), Some("1Mi"))], "overhead": {"cpu": "10m", "memory": "1Mi"}}),
                r(110, 2 << 20),
                r(110, 2 << 20),
            ),
            // No requests: zero, and the scoring defaults.
            (
                json!({"containers": [c("a", None, None)]}),
                r(0, 0),
                r(DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST),
            ),
        ];
        for (i, (pod, requested, non_zero)) in cases.into_iter().enumerate() {
            assert_eq!(
                pod_requests(&spec(pod)),
                PodRequests {
                    requested,
                    non_zero
                },
                "case {i}"
            );
        }
    }
}

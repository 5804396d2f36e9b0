//! What both endpoint controllers ask of a Service and its pods (upstream's
//! `k8s.io/endpointslice/util` and `FindPort`): which pods a Service selects, which of them
//! belong in its endpoints, which container port a service port names, and whether a pod's
//! hostname is published.

use crate::podutil;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The protocol of a port that names none (upstream's defaulting).
const DEFAULT_PROTOCOL: &str = "TCP";

/// The Service's selector, if it has one: a Service without (or with an empty) selector gets
/// its endpoints from somebody else, and selects no pods (upstream treats a nil selector so,
/// and an empty one does not survive serialization).
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether the Service selects `pod`: same namespace, and every selector label matches.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector(service) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    service.metadata.namespace == pod.metadata.namespace
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service has a cluster IP (upstream's `IsServiceIPSet`): not headless.
pub fn has_cluster_ip(service: &Service) -> bool {
    let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    !matches!(ip, None | Some("" | "None"))
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the Service asks for not-ready pods to be published as ready.
pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// Whether the Service is of type ExternalName, which gets no endpoints.
pub fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// The Service's ports.
pub fn ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// The pod's IPv4 addresses: `status.podIPs`, or `status.podIP` when only that is set.
pub fn ipv4_addresses(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .collect();
    let all = if listed.is_empty() {
        status.pod_ip.as_deref().into_iter().collect()
    } else {
        listed
    };
    all.into_iter().filter(|ip| !ip.contains(':')).collect()
}

/// Whether the pod belongs in a Service's endpoints (upstream's `ShouldPodBeInEndpoints`): not
/// finished, with an IP, and not being deleted unless `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if podutil::is_terminated(pod) {
        return false;
    }
    let has_ip = pod.status.as_ref().is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The hostname the pod publishes in the Service's endpoints (upstream's
/// `ShouldSetHostname`): `spec.hostname` when the pod's subdomain is the Service, as a
/// StatefulSet's pods under their governing Service.
pub fn published_hostname<'a>(pod: &'a Pod, service: &Service) -> Option<&'a str> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let governed = spec.subdomain.is_some()
        && spec.subdomain == service.metadata.name
        && pod.metadata.namespace == service.metadata.namespace;
    governed.then_some(hostname)
}

/// The pod's port that `service_port` targets (upstream's `FindPort`): a number as is, a name
/// looked up among the containers' (and sidecars') named ports of the same protocol.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    let target = service_port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(service_port.port));
    let name = match target {
        IntOrString::Int(port) => return Some(port),
        IntOrString::String(name) => name,
    };
    let protocol = service_port.protocol.as_deref().unwrap_or(DEFAULT_PROTOCOL);
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && p.protocol.as_deref().unwrap_or(DEFAULT_PROTOCOL) == protocol
        })
        .map(|p| p.container_port)
}

/// Whether a change from `old` to `new` may change any Service's endpoints (upstream's
/// `podEndpointsChanged`, labels included): membership, hostname, deletion, readiness or
/// addresses.
pub fn endpoints_changed(old: &Pod, new: &Pod) -> bool {
    let host = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone()))
    };
    let ips = |p: &Pod| {
        p.status
            .as_ref()
            .map(|s| (s.pod_ip.clone(), s.pod_ips.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || host(old) != host(new)
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || podutil::is_ready(old) != podutil::is_ready(new)
        || podutil::is_terminated(old) != podutil::is_terminated(new)
        || ips(old) != ips(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn port(target: serde_json::Value) -> ServicePort {
        serde_json::from_value(json!({"port": 80, "protocol": "TCP", "targetPort": target}))
            .unwrap()
    }

    #[test]
    fn named_target_ports_resolve_by_name_and_protocol() {
        let web = pod(json!({"spec": {
            "containers": [
                {"name": "a", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
                {"name": "b", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}
            ],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "ports": [{"name": "admin", "containerPort": 9901, "protocol": "TCP"}]},
                {"name": "setup", "ports": [{"name": "setup", "containerPort": 1, "protocol": "TCP"}]}
            ]
        }}));
        assert_eq!(find_port(&web, &port(json!("http"))), Some(8080));
        assert_eq!(find_port(&web, &port(json!(9376))), Some(9376));
        assert_eq!(
            find_port(&web, &port(json!("dns"))),
            None,
            "a TCP service port does not match a UDP container port"
        );
        assert_eq!(find_port(&web, &port(json!("admin"))), Some(9901));
        assert_eq!(
            find_port(&web, &port(json!("setup"))),
            None,
            "only sidecars count"
        );
        let untargeted: ServicePort = serde_json::from_value(json!({"port": 443})).unwrap();
        assert_eq!(find_port(&web, &untargeted), Some(443));
    }

    #[test]
    fn hostname_is_published_under_the_governing_service_only() {
        let member = pod(json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"hostname": "web-0", "subdomain": "nginx", "containers": []}
        }));
        let governing = service(json!({"metadata": {"name": "nginx", "namespace": "default"}}));
        let other = service(json!({"metadata": {"name": "other", "namespace": "default"}}));
        let elsewhere = service(json!({"metadata": {"name": "nginx", "namespace": "prod"}}));
        assert_eq!(published_hostname(&member, &governing), Some("web-0"));
        assert_eq!(published_hostname(&member, &other), None);
        assert_eq!(published_hostname(&member, &elsewhere), None);
    }

    #[test]
    fn pods_without_an_ip_finished_or_terminating_are_left_out() {
        let running = pod(json!({"status": {"phase": "Running", "podIP": "10.0.0.1"}}));
        let no_ip = pod(json!({"status": {"phase": "Pending"}}));
        let done = pod(json!({"status": {"phase": "Succeeded", "podIP": "10.0.0.1"}}));
        let terminating = pod(json!({
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        }));
        assert!(should_be_in_endpoints(&running, false));
        assert!(!should_be_in_endpoints(&no_ip, true));
        assert!(!should_be_in_endpoints(&done, true));
        assert!(!should_be_in_endpoints(&terminating, false));
        assert!(should_be_in_endpoints(&terminating, true));
    }

    #[test]
    fn selectors_match_labels_in_the_same_namespace() {
        let web = pod(
            json!({"metadata": {"namespace": "default", "labels": {"app": "web", "tier": "x"}}}),
        );
        let by_app = service(
            json!({"metadata": {"namespace": "default"}, "spec": {"selector": {"app": "web"}}}),
        );
        let other_ns = service(
            json!({"metadata": {"namespace": "prod"}, "spec": {"selector": {"app": "web"}}}),
        );
        let empty =
            service(json!({"metadata": {"namespace": "default"}, "spec": {"selector": {}}}));
        assert!(selects(&by_app, &web));
        assert!(!selects(&other_ns, &web));
        assert!(!selects(&empty, &web), "an empty selector selects nothing");
    }
}

//! Nodes, Namespaces, ConfigMaps, Secrets, ServiceAccounts and Leases.

use super::format::{array_at, bool_at, map_at, map_len, or, str_at};
use super::{AGE, Column, NAME, age, docs, name};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;

pub(super) const NODE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the node"),
    Column::string("Roles", "The roles of the node"),
    AGE,
    Column::string("Version", docs::NODE_KUBELET_VERSION),
    Column::wide("Internal-IP", docs::NODE_ADDRESSES),
    Column::wide("External-IP", docs::NODE_ADDRESSES),
    Column::wide("OS-Image", docs::NODE_OS_IMAGE),
    Column::wide("Kernel-Version", docs::NODE_KERNEL),
    Column::wide("Container-Runtime", docs::NODE_RUNTIME),
];

pub(super) const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the namespace"),
    AGE,
];

pub(super) const CONFIGMAP_COLUMNS: &[Column] =
    &[NAME, Column::string("Data", docs::CONFIGMAP_DATA), AGE];

pub(super) const SECRET_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Type", docs::SECRET_TYPE),
    Column::string("Data", docs::SECRET_DATA),
    AGE,
];

pub(super) const SERVICEACCOUNT_COLUMNS: &[Column] =
    &[NAME, Column::string("Secrets", docs::SA_SECRETS), AGE];

pub(super) const LEASE_COLUMNS: &[Column] =
    &[NAME, Column::string("Holder", docs::LEASE_HOLDER), AGE];

/// Label prefix whose suffix names a role: `node-role.kubernetes.io/control-plane`.
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// Older label whose value names a role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) fn node_row(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition counts; upstream keys conditions by type, so the last one
    // listed wins.
    let ready = array_at(node, "/status/conditions")
        .iter()
        .rfind(|c| str_at(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let roles = node_roles(node);
    let info = |field: &str| {
        or(
            str_at(node, &format!("/status/nodeInfo/{field}")),
            "<unknown>",
        )
    };
    vec![
        name(node),
        status.join(",").into(),
        or(&roles, "<none>").into(),
        age(node, now),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Upstream's `findNodeRoles`: the sorted, de-duplicated roles from the node's labels.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in map_at(node, "/metadata/labels").into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        match key.strip_prefix(NODE_ROLE_PREFIX) {
            Some(role) if !role.is_empty() => {
                roles.insert(role);
            }
            Some(_) => {}
            None if key == NODE_ROLE_LABEL && !value.is_empty() => {
                roles.insert(value);
            }
            None => {}
        }
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of the given type, or `<none>`.
fn node_address(node: &Value, kind: &str) -> String {
    let address = array_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == kind);
    or(address.map_or("", |a| str_at(a, "/address")), "<none>")
}

pub(super) fn namespace_row(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(namespace),
        str_at(namespace, "/status/phase").into(),
        age(namespace, now),
    ]
}

pub(super) fn configmap_row(configmap: &Value, now: Timestamp) -> Vec<Value> {
    let entries = map_len(configmap, "/data") + map_len(configmap, "/binaryData");
    vec![name(configmap), entries.into(), age(configmap, now)]
}

pub(super) fn secret_row(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        str_at(secret, "/type").into(),
        map_len(secret, "/data").into(),
        age(secret, now),
    ]
}

pub(super) fn serviceaccount_row(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(account),
        (array_at(account, "/secrets").len() as i64).into(),
        age(account, now),
    ]
}

pub(super) fn lease_row(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        str_at(lease, "/spec/holderIdentity").into(),
        age(lease, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    fn node(labels: Value, conditions: Value, unschedulable: bool) -> Value {
        json!({
            "metadata": {"name": "kind-control-plane", "labels": labels, "creationTimestamp": "2024-04-21T12:00:00Z"},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "kind-control-plane"}],
                "nodeInfo": {"kubeletVersion": "v1.32.5", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.8.0-45-generic", "containerRuntimeVersion": "containerd://1.7.24"}
            }
        })
    }

    #[test]
    fn ready_control_plane_node() {
        let n = node(
            json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "kind-control-plane"}),
            json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]),
            false,
        );
        assert_eq!(
            node_row(&n, now()),
            [
                json!("kind-control-plane"),
                json!("Ready"),
                json!("control-plane"),
                json!("10d"),
                json!("v1.32.5"),
                json!("172.18.0.2"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.8.0-45-generic"),
                json!("containerd://1.7.24"),
            ]
        );
    }

    #[test]
    fn node_status_and_roles() {
        let cordoned = node(
            json!({}),
            json!([{"type": "Ready", "status": "True"}]),
            true,
        );
        assert_eq!(
            node_row(&cordoned, now())[1..3],
            [json!("Ready,SchedulingDisabled"), json!("<none>")]
        );
        let not_ready = node(
            json!({"kubernetes.io/role": "worker", "node-role.kubernetes.io/": ""}),
            json!([{"type": "Ready", "status": "Unknown"}]),
            false,
        );
        assert_eq!(
            node_row(&not_ready, now())[1..3],
            [json!("NotReady"), json!("worker")]
        );
        let new = node(
            json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/infra": ""}),
            json!([]),
            true,
        );
        assert_eq!(
            node_row(&new, now())[1..3],
            [json!("Unknown,SchedulingDisabled"), json!("infra,worker")]
        );
        let bare = json!({"metadata": {"name": "n"}});
        assert_eq!(
            node_row(&bare, now())[4..],
            [
                json!(""),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "demo", "creationTimestamp": "2024-05-01T11:59:58Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            namespace_row(&ns, now()),
            [json!("demo"), json!("Active"), json!("2s")]
        );
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": "2024-05-01T11:00:00Z"},
                        "data": {"ca.crt": "..."}, "binaryData": {"blob": "AA=="}});
        assert_eq!(
            configmap_row(&cm, now()),
            [json!("kube-root-ca.crt"), json!(2), json!("60m")]
        );
        let secret = json!({"metadata": {"name": "db"}, "type": "Opaque", "data": {"user": "YQ==", "pass": "Yg=="}});
        assert_eq!(
            secret_row(&secret, now()),
            [json!("db"), json!("Opaque"), json!(2), json!("<unknown>")]
        );
        let sa =
            json!({"metadata": {"name": "default", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(
            serviceaccount_row(&sa, now()),
            [json!("default"), json!(0), json!("60m")]
        );
        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": "2024-05-01T09:40:00Z"},
                           "spec": {"holderIdentity": "skiff_5f6b3c", "leaseDurationSeconds": 15}});
        assert_eq!(
            lease_row(&lease, now()),
            [
                json!("kube-scheduler"),
                json!("skiff_5f6b3c"),
                json!("140m")
            ]
        );
    }
}

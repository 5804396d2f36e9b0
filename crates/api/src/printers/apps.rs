//! apps/v1 workloads: Deployments, ReplicaSets, StatefulSets, DaemonSets and their
//! ControllerRevisions.

use super::format::{
    array_at, container_cells, format_label_selector, format_labels, get, int_at,
    label_selector_string, map_at, str_at,
};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME, age, docs, name};
use jiff::Timestamp;
use serde_json::Value;

pub(super) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    Column::string("Up-to-date", docs::DEPLOY_UPDATED),
    Column::string("Available", docs::DEPLOY_AVAILABLE),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::wide("Selector", docs::DEPLOY_SELECTOR),
];

pub(super) const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    Column::integer("Desired", docs::RS_SPEC_REPLICAS),
    Column::integer("Current", docs::RS_STATUS_REPLICAS),
    Column::integer("Ready", docs::RS_READY),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::wide("Selector", docs::RS_SELECTOR),
];

pub(super) const STATEFULSET_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    Column::integer("Desired", docs::DS_DESIRED),
    Column::integer("Current", docs::DS_CURRENT),
    Column::integer("Ready", docs::DS_READY),
    Column::integer("Up-to-date", docs::DS_UPDATED),
    Column::integer("Available", docs::DS_AVAILABLE),
    Column::string("Node Selector", docs::POD_NODE_SELECTOR),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::wide("Selector", docs::DS_SELECTOR),
];

pub(super) const CONTROLLERREVISION_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Controller", "Controller of the object"),
    Column::string("Revision", docs::CR_REVISION),
    AGE,
];

/// The pod template's spec of a workload.
fn template_spec(workload: &Value) -> Option<&Value> {
    get(workload, "/spec/template/spec")
}

/// `ready/desired`, as Deployments and StatefulSets show readiness.
fn ready_of_desired(workload: &Value) -> Value {
    format!(
        "{}/{}",
        int_at(workload, "/status/readyReplicas"),
        int_at(workload, "/spec/replicas")
    )
    .into()
}

pub(super) fn deployment_row(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(deployment));
    // Unlike the other workloads, Deployments print the bare selector (empty, not `<none>`).
    let selector = label_selector_string(get(deployment, "/spec/selector"))
        .unwrap_or_else(|| "<invalid>".to_string());
    vec![
        name(deployment),
        ready_of_desired(deployment),
        int_at(deployment, "/status/updatedReplicas").into(),
        int_at(deployment, "/status/availableReplicas").into(),
        age(deployment, now),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

pub(super) fn replicaset_row(replicaset: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(replicaset));
    vec![
        name(replicaset),
        int_at(replicaset, "/spec/replicas").into(),
        int_at(replicaset, "/status/replicas").into(),
        int_at(replicaset, "/status/readyReplicas").into(),
        age(replicaset, now),
        containers.into(),
        images.into(),
        format_label_selector(get(replicaset, "/spec/selector")).into(),
    ]
}

pub(super) fn statefulset_row(statefulset: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(statefulset));
    vec![
        name(statefulset),
        ready_of_desired(statefulset),
        age(statefulset, now),
        containers.into(),
        images.into(),
    ]
}

pub(super) fn daemonset_row(daemonset: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(daemonset));
    vec![
        name(daemonset),
        int_at(daemonset, "/status/desiredNumberScheduled").into(),
        int_at(daemonset, "/status/currentNumberScheduled").into(),
        int_at(daemonset, "/status/numberReady").into(),
        int_at(daemonset, "/status/updatedNumberScheduled").into(),
        int_at(daemonset, "/status/numberAvailable").into(),
        format_labels(map_at(daemonset, "/spec/template/spec/nodeSelector")).into(),
        age(daemonset, now),
        containers.into(),
        images.into(),
        format_label_selector(get(daemonset, "/spec/selector")).into(),
    ]
}

pub(super) fn controllerrevision_row(revision: &Value, now: Timestamp) -> Vec<Value> {
    let controller = array_at(revision, "/metadata/ownerReferences")
        .iter()
        .find(|owner| get(owner, "/controller").and_then(Value::as_bool) == Some(true))
        .map_or_else(|| "<none>".to_string(), controller_name);
    vec![
        name(revision),
        controller.into(),
        int_at(revision, "/revision").into(),
        age(revision, now),
    ]
}

/// Upstream's `formatResourceName` of a controller reference: `kind.group/name` in lower
/// case, e.g. `daemonset.apps/fluentd`; just `kind/name` for the core group.
fn controller_name(owner: &Value) -> String {
    let kind = str_at(owner, "/kind");
    let owner_name = str_at(owner, "/name");
    // `apps/v1` has group `apps`; a bare `v1` is the core group.
    let group = str_at(owner, "/apiVersion")
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    match (kind, group) {
        ("", "") => owner_name.to_string(),
        (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
        (kind, group) => format!("{}/{owner_name}", format!("{kind}.{group}").to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "nginx"}},
               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "sidecar", "image": "busybox"}]}})
    }

    #[test]
    fn deployment() {
        let deployment = json!({
            "metadata": {"name": "nginx", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}}, "template": template()},
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
        });
        assert_eq!(
            deployment_row(&deployment, now()),
            [
                json!("nginx"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5m"),
                json!("nginx,sidecar"),
                json!("nginx:1.25,busybox"),
                json!("app=nginx"),
            ]
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 1, "selector": {}}});
        assert_eq!(
            deployment_row(&fresh, now())[..5],
            [
                json!("new"),
                json!("0/1"),
                json!(0),
                json!(0),
                json!("<unknown>")
            ]
        );
        assert_eq!(deployment_row(&fresh, now())[7], "");
    }

    #[test]
    fn replicaset_and_statefulset() {
        let replicaset = json!({
            "metadata": {"name": "nginx-7c5ddbdf54", "creationTimestamp": "2024-04-30T12:00:00Z"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx", "pod-template-hash": "7c5ddbdf54"}}, "template": template()},
            "status": {"replicas": 2, "readyReplicas": 1}
        });
        assert_eq!(
            replicaset_row(&replicaset, now()),
            [
                json!("nginx-7c5ddbdf54"),
                json!(2),
                json!(2),
                json!(1),
                json!("24h"),
                json!("nginx,sidecar"),
                json!("nginx:1.25,busybox"),
                json!("app=nginx,pod-template-hash=7c5ddbdf54"),
            ]
        );
        let statefulset = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-04-28T08:00:00Z"},
            "spec": {"replicas": 3, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 3}
        });
        assert_eq!(
            statefulset_row(&statefulset, now()),
            [
                json!("web"),
                json!("3/3"),
                json!("3d4h"),
                json!("nginx,sidecar"),
                json!("nginx:1.25,busybox")
            ]
        );
    }

    #[test]
    fn daemonset() {
        let mut daemonset = json!({
            "metadata": {"name": "fluentd", "creationTimestamp": "2024-05-01T11:57:30Z"},
            "spec": {"selector": {"matchLabels": {"name": "fluentd"}},
                     "template": {"spec": {"containers": [{"name": "fluentd", "image": "fluentd:v1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}
        });
        assert_eq!(
            daemonset_row(&daemonset, now()),
            [
                json!("fluentd"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("<none>"),
                json!("2m30s"),
                json!("fluentd"),
                json!("fluentd:v1"),
                json!("name=fluentd"),
            ]
        );
        daemonset["spec"]["template"]["spec"]["nodeSelector"] =
            json!({"kubernetes.io/os": "linux", "disk": "ssd"});
        assert_eq!(
            daemonset_row(&daemonset, now())[6],
            "disk=ssd,kubernetes.io/os=linux"
        );
    }

    #[test]
    fn controllerrevision() {
        let revision = json!({
            "metadata": {"name": "fluentd-5d4f8b7c9", "creationTimestamp": "2024-05-01T11:00:00Z",
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "1", "controller": true, "blockOwnerDeletion": true}
                ]},
            "revision": 2
        });
        assert_eq!(
            controllerrevision_row(&revision, now()),
            [
                json!("fluentd-5d4f8b7c9"),
                json!("daemonset.apps/fluentd"),
                json!(2),
                json!("60m")
            ]
        );
        let orphan = json!({"metadata": {"name": "r", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}]}, "revision": 1});
        assert_eq!(controllerrevision_row(&orphan, now())[1], "<none>");
        let core_owner =
            json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true});
        assert_eq!(controller_name(&core_owner), "pod/p");
    }
}

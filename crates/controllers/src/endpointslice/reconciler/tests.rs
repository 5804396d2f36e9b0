//! Table tests of the EndpointSlice planner, with upstream's expectations
//! (`k8s.io/endpointslice/reconciler_test.go`).

use super::*;
use serde_json::{Value, json};

fn service(spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"app": "web"}},
        "spec": spec,
    }))
    .unwrap()
}

fn web() -> Service {
    service(
        json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}),
    )
}

/// A pod `pod<n>` at 10.0.<n / 250>.<n % 250 + 1> on `node-1`, its container port `http` 8080.
fn pod(n: usize, ready: bool) -> Pod {
    let ip = format!("10.0.{}.{}", n / 250, n % 250 + 1);
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod{n}"), "namespace": "default", "uid": format!("uid-{n}"),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn zone_a(node: &str) -> NodeZone {
    (node == "node-1").then(|| Some("zone-a".to_owned()))
}

fn plan_for(service: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> Plan {
    let selected: Vec<&Pod> = pods.iter().collect();
    let existing: Vec<&EndpointSlice> = existing.iter().collect();
    reconcile(service, &selected, &existing, zone_a, 100, None)
}

/// `plan`'s creates as they would be stored, named `web-<i>`.
fn stored(plan: Plan) -> Vec<EndpointSlice> {
    plan.create
        .into_iter()
        .enumerate()
        .map(|(i, mut slice)| {
            slice.metadata.name = Some(format!("web-{i}"));
            slice.metadata.resource_version = Some("1".into());
            slice
        })
        .collect()
}

#[test]
fn a_new_service_gets_one_slice_with_its_pods() {
    let plan = plan_for(&web(), &[pod(0, true), pod(1, false)], &[]);
    assert_eq!((plan.update.len(), plan.delete.len()), (0, 0));
    assert_eq!(
        serde_json::to_value(&plan.create).unwrap(),
        json!([{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-", "namespace": "default",
                "labels": {"app": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                           "kubernetes.io/service-name": "web"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                                     "controller": true, "blockOwnerDeletion": true}]
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                 "nodeName": "node-1", "zone": "zone-a",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "pod0", "uid": "uid-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": false},
                 "nodeName": "node-1", "zone": "zone-a",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "pod1", "uid": "uid-1"}}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }])
    );
}

#[test]
fn terminating_pods_stay_serving_but_not_ready_unless_published() {
    let mut terminating = pod(0, true);
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
    let conditions = |svc: &Service| {
        let plan = plan_for(svc, std::slice::from_ref(&terminating), &[]);
        serde_json::to_value(&plan.create[0].endpoints[0].conditions).unwrap()
    };
    assert_eq!(
        conditions(&web()),
        json!({"ready": false, "serving": true, "terminating": true})
    );
    let mut publishing = web();
    publishing
        .spec
        .as_mut()
        .unwrap()
        .publish_not_ready_addresses = Some(true);
    assert_eq!(
        conditions(&publishing),
        json!({"ready": true, "serving": true, "terminating": true})
    );
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let plan = plan_for(&headless, &[], &[]);
    assert_eq!(
        serde_json::to_value(&plan.create).unwrap(),
        json!([{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-", "namespace": "default",
                "labels": {"app": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                           "kubernetes.io/service-name": "web", "service.kubernetes.io/headless": ""},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                                     "controller": true, "blockOwnerDeletion": true}]
            },
            "addressType": "IPv4", "endpoints": [], "ports": []
        }])
    );
    let placeholder = stored(plan);
    assert_eq!(
        plan_for(&headless, &[], &placeholder),
        Plan::default(),
        "the placeholder stays"
    );
}

#[test]
fn endpoints_are_spread_over_slices_of_at_most_100() {
    let pods: Vec<Pod> = (0..250).map(|n| pod(n, true)).collect();
    let plan = plan_for(&web(), &pods, &[]);
    let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let slices = stored(plan);
    assert_eq!(
        plan_for(&web(), &pods, &slices),
        Plan::default(),
        "nothing to do once stored"
    );

    // A new pod goes into the slice with room; a deleted one leaves its slice.
    let mut more = pods.clone();
    more.push(pod(250, true));
    more.remove(0);
    let plan = plan_for(&web(), &more, &slices);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let updated: Vec<(&str, usize)> = plan
        .update
        .iter()
        .map(|s| (s.metadata.name.as_deref().unwrap(), s.endpoints.len()))
        .collect();
    assert_eq!(
        updated,
        [("web-0", 100)],
        "the new pod fills the slice being written anyway"
    );
}

#[test]
fn a_slice_left_empty_is_reused_for_the_placeholder() {
    let slices = stored(plan_for(&web(), &[pod(0, true)], &[]));
    let plan = plan_for(&web(), &[], &slices);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    let update = &plan.update[0];
    assert_eq!(update.metadata.name.as_deref(), Some("web-0"));
    assert_eq!(update.metadata.resource_version.as_deref(), Some("1"));
    assert!(update.endpoints.is_empty());
    assert_eq!(update.ports, Some(vec![]));
}

#[test]
fn changed_pods_and_service_labels_update_their_slice() {
    let slices = stored(plan_for(&web(), &[pod(0, false)], &[]));
    let plan = plan_for(&web(), &[pod(0, true)], &slices);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(
        plan.update[0].endpoints[0]
            .conditions
            .as_ref()
            .unwrap()
            .ready,
        Some(true)
    );
    let mut relabelled = web();
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "front".into());
    let plan = plan_for(&relabelled, &[pod(0, false)], &slices);
    assert_eq!(
        plan.update[0].metadata.labels.as_ref().unwrap()["tier"],
        "front"
    );
}

#[test]
fn pods_with_different_ports_get_different_slices() {
    let mut moved = pod(1, true);
    moved.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 9090;
    let plan = plan_for(&web(), &[pod(0, true), moved], &[]);
    let ports: Vec<Option<i32>> = plan
        .create
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port)
        .collect();
    assert_eq!(ports.len(), 2);
    assert!(ports.contains(&Some(8080)) && ports.contains(&Some(9090)));
}

#[test]
fn stateful_pods_publish_their_hostname_and_pods_on_missing_nodes_are_skipped() {
    let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let mut member = pod(0, true);
    member.spec.as_mut().unwrap().hostname = Some("web-0".into());
    member.spec.as_mut().unwrap().subdomain = Some("web".into());
    let mut lost = pod(1, true);
    lost.spec.as_mut().unwrap().node_name = Some("gone".into());
    let plan = plan_for(&headless, &[member, lost], &[]);
    assert_eq!(plan.create[0].endpoints.len(), 1);
    assert_eq!(
        plan.create[0].endpoints[0].hostname.as_deref(),
        Some("web-0")
    );
    assert_eq!(
        plan.missing_nodes,
        ["skipping Pod pod1 for Service default/web: Node gone Not Found"]
    );
}

#[test]
fn slices_of_an_earlier_service_of_the_same_name_go() {
    let slices = stored(plan_for(&web(), &[pod(0, true)], &[]));
    let mut recreated = web();
    recreated.metadata.uid = Some("new-uid".into());
    let plan = plan_for(&recreated, &[pod(0, true)], &slices);
    assert_eq!(plan.delete, ["web-0"]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(
        plan.create[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        "new-uid"
    );
}

#[test]
fn writes_carry_the_trigger_time() {
    let time: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let plan = reconcile(&web(), &[&pod(0, true)], &[], zone_a, 100, Some(time));
    assert_eq!(
        plan.create[0].metadata.annotations.as_ref().unwrap()[LAST_CHANGE_TRIGGER_TIME],
        "2026-01-01T00:00:00Z"
    );
}

//! Table tests of the Endpoints planner, with upstream's expectations
//! (`endpoints_controller_test.go`, `pkg/api/v1/endpoints/util_test.go`).

use super::*;
use serde_json::{Value, json};

fn service(spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

/// A pod `pod<n>` at `10.0.0.<n>` on `node-1` with container ports `http` 8080 and `metrics`
/// 9090.
fn pod(n: u8, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod{n}"), "namespace": "default", "uid": format!("uid-{n}"),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": format!("10.0.0.{n}"), "podIPs": [{"ip": format!("10.0.0.{n}")}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn address(n: u8) -> Value {
    json!({"ip": format!("10.0.0.{n}"), "nodeName": "node-1",
           "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("pod{n}"), "uid": format!("uid-{n}")}})
}

fn subsets_json(service: &Service, pods: &[&Pod]) -> Value {
    serde_json::to_value(desired_subsets(service, pods)).unwrap()
}

#[test]
fn ready_and_not_ready_pods_share_a_subset_per_port_set() {
    let svc = service(
        json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ports": [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]}),
    );
    let (a, b, c) = (pod(2, true), pod(1, true), pod(3, false));
    assert_eq!(
        subsets_json(&svc, &[&a, &b, &c]),
        json!([{
            "addresses": [address(1), address(2)],
            "notReadyAddresses": [address(3)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "metrics", "port": 9090, "protocol": "TCP"}]
        }])
    );
}

#[test]
fn published_not_ready_addresses_are_ready_and_terminating_pods_stay() {
    let svc = service(
        json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
    );
    let mut terminating = pod(2, false);
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
    assert_eq!(
        subsets_json(&svc, &[&pod(1, false), &terminating]),
        json!([{"addresses": [address(1), address(2)], "ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
    let strict = service(
        json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
    );
    assert_eq!(
        subsets_json(&strict, &[&pod(1, false), &terminating]),
        json!([{"notReadyAddresses": [address(1)], "ports": [{"port": 8080, "protocol": "TCP"}]}]),
        "a terminating pod leaves unless not-ready addresses are published"
    );
}

#[test]
fn pods_whose_named_port_differs_or_is_missing_split_subsets() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}));
    let mut moved = pod(2, true);
    moved.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 8081;
    let mut portless = pod(3, true);
    portless.spec.as_mut().unwrap().containers[0].ports = None;
    assert_eq!(
        subsets_json(&svc, &[&pod(1, true), &moved, &portless]),
        json!([
            {"addresses": [address(1)], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            {"addresses": [address(2)], "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}]},
        ])
    );
}

#[test]
fn headless_services_without_ports_list_bare_addresses() {
    let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    assert_eq!(
        subsets_json(&headless, &[&pod(1, true), &pod(2, false)]),
        json!([{"addresses": [address(1)], "notReadyAddresses": [address(2)]}])
    );
    let portless = service(json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10"}));
    assert_eq!(subsets_json(&portless, &[&pod(1, true)]), json!([]));
}

#[test]
fn stateful_pods_publish_their_hostname_under_the_governing_service() {
    let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let mut member = pod(1, true);
    let spec = member.spec.as_mut().unwrap();
    spec.hostname = Some("web-0".into());
    spec.subdomain = Some("web".into());
    let mut stranger = pod(2, true);
    stranger.spec.as_mut().unwrap().hostname = Some("other".into());
    let mut expected = address(1);
    expected["hostname"] = json!("web-0");
    assert_eq!(
        subsets_json(&svc, &[&member, &stranger]),
        json!([{"addresses": [expected, address(2)]}])
    );
}

#[test]
fn pods_without_an_ip_are_skipped() {
    let svc =
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}));
    let mut pending = pod(1, false);
    pending.status.as_mut().unwrap().pod_ip = None;
    pending.status.as_mut().unwrap().pod_ips = None;
    assert_eq!(subsets_json(&svc, &[&pending]), json!([]));
}

#[test]
fn repacking_merges_addresses_by_ports_and_not_ready_wins() {
    let subsets: Vec<EndpointSubset> = serde_json::from_value(json!([
        {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
        {"notReadyAddresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 81}]},
    ]))
    .unwrap();
    assert_eq!(
        serde_json::to_value(repack(&subsets)).unwrap(),
        json!([
            {"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 81}]},
        ])
    );
}

/// Endpoints whose subsets hold `ready[i]` ready and `not_ready[i]` not-ready addresses.
fn sized(ready: &[usize], not_ready: &[usize]) -> Endpoints {
    let mut ip = 0u32;
    let mut addresses = |n: usize| -> Option<Vec<EndpointAddress>> {
        Some(
            (0..n)
                .map(|_| {
                    ip += 1;
                    EndpointAddress {
                        ip: std::net::Ipv4Addr::from(0x0a00_0000 + ip).to_string(),
                        ..Default::default()
                    }
                })
                .collect(),
        )
    };
    Endpoints {
        subsets: Some(
            ready
                .iter()
                .zip(not_ready)
                .map(|(&r, &n)| EndpointSubset {
                    addresses: addresses(r),
                    not_ready_addresses: addresses(n),
                    ports: None,
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn sizes(endpoints: &Endpoints) -> (Vec<usize>, Vec<usize>) {
    let len = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let subsets = endpoints.subsets.as_deref().unwrap_or_default();
    (
        subsets.iter().map(|s| len(&s.addresses)).collect(),
        subsets
            .iter()
            .map(|s| len(&s.not_ready_addresses))
            .collect(),
    )
}

/// Ready and not-ready addresses per subset, what truncation keeps of each, and whether it cuts.
type TruncationCase<'a> = (&'a [usize], &'a [usize], &'a [usize], &'a [usize], bool);

#[test]
fn truncation_keeps_each_subsets_share_preferring_ready_addresses() {
    // Upstream's TestTruncateEndpoints.
    let cases: &[TruncationCase] = &[
        (
            &[50, 100, 100, 100, 100],
            &[50, 100, 100, 100, 100],
            &[50, 100, 100, 100, 100],
            &[50, 100, 100, 100, 100],
            false,
        ),
        (
            &[100, 100, 100, 100, 100],
            &[100, 100, 100, 100, 100],
            &[100, 100, 100, 100, 100],
            &[100, 100, 100, 100, 100],
            false,
        ),
        (
            &[90, 110, 50, 10, 20],
            &[101, 200, 200, 201, 298],
            &[90, 110, 50, 10, 20],
            &[73, 144, 144, 145, 214],
            true,
        ),
        (
            &[205, 400, 402, 400, 693],
            &[100, 200, 200, 200, 300],
            &[98, 191, 192, 191, 328],
            &[0, 0, 0, 0, 0],
            true,
        ),
    ];
    for (ready, not_ready, want_ready, want_not_ready, cut) in cases {
        let mut endpoints = sized(ready, not_ready);
        assert_eq!(truncate(&mut endpoints), *cut, "{ready:?} {not_ready:?}");
        assert_eq!(
            sizes(&endpoints),
            (want_ready.to_vec(), want_not_ready.to_vec())
        );
    }
}

#[test]
fn a_new_service_gets_labelled_annotated_endpoints() {
    let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}));
    let subsets = desired_subsets(&svc, &[&pod(1, true)]);
    let created = plan(&svc, subsets, None, "2026-01-01T00:00:00Z".parse().ok()).unwrap();
    assert_eq!(
        serde_json::to_value(&created).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default",
                         "labels": {"app": "web", "endpoints.kubernetes.io/managed-by": "endpoint-controller",
                                    "service.kubernetes.io/headless": ""},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}},
            "subsets": [{"addresses": [address(1)], "ports": [{"port": 8080, "protocol": "TCP"}]}]
        })
    );
}

#[test]
fn up_to_date_endpoints_are_left_alone_and_stale_ones_rewritten() {
    let svc = service(
        json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
    );
    let subsets = || desired_subsets(&svc, &[&pod(1, true)]);
    let mut stored = plan(&svc, subsets(), None, None).unwrap();
    stored.metadata.resource_version = Some("5".into());
    assert_eq!(stored.metadata.labels.as_ref().unwrap().get(HEADLESS), None);
    assert_eq!(plan(&svc, subsets(), Some(&stored), None), None);
    // A pod's resource version in a target reference makes no difference.
    let mut with_version = stored.clone();
    with_version.subsets.as_mut().unwrap()[0]
        .addresses
        .as_mut()
        .unwrap()[0]
        .target_ref
        .as_mut()
        .unwrap()
        .resource_version = Some("7".into());
    assert_eq!(plan(&svc, subsets(), Some(&with_version), None), None);

    let mut unmarked = stored.clone();
    unmarked
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(MANAGED_BY);
    assert!(
        plan(&svc, subsets(), Some(&unmarked), None).is_some(),
        "the managed-by label is missing"
    );

    let mut relabelled = svc.clone();
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "front".into());
    let updated = plan(&relabelled, subsets(), Some(&stored), None).unwrap();
    assert_eq!(updated.metadata.labels.unwrap()["tier"], "front");
    assert_eq!(
        updated.metadata.resource_version.as_deref(),
        Some("5"),
        "an update of the stored object"
    );

    let gone = plan(&svc, Vec::new(), Some(&stored), None).unwrap();
    assert_eq!(gone.subsets, None);
}

#[test]
fn endpoints_over_capacity_are_truncated_and_annotated() {
    let svc = service(
        json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
    );
    let many: Vec<Pod> = (0..1001u32)
        .map(|i| {
            let mut p = pod(1, true);
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            p.metadata.uid = Some(format!("uid-{i}"));
            p.status.as_mut().unwrap().pod_ips =
                Some(vec![k8s_openapi::api::core::v1::PodIP { ip }]);
            p
        })
        .collect();
    let selected: Vec<&Pod> = many.iter().collect();
    let mut stored = plan(&svc, desired_subsets(&svc, &selected), None, None).unwrap();
    assert_eq!(sizes(&stored), (vec![1000], vec![0]));
    assert_eq!(
        stored.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY],
        "truncated"
    );
    stored.metadata.resource_version = Some("1".into());
    // Stored truncated, it stays as it is while the pods do.
    let again = plan(&svc, desired_subsets(&svc, &selected), Some(&stored), None);
    assert!(
        again.is_some(),
        "the stored subsets differ from the full desired set"
    );
    let fewer = plan(
        &svc,
        desired_subsets(&svc, &selected[..10]),
        Some(&stored),
        None,
    )
    .unwrap();
    assert_eq!(
        fewer.metadata.annotations, None,
        "back under capacity, the annotation goes"
    );
}

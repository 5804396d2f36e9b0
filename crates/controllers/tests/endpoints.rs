//! The Endpoints and EndpointSlice controllers against an in-process API server (no node
//! agent: tests report pods' IPs and readiness themselves): addresses follow pods' readiness,
//! headless Services publish governed pods' hostnames, and endpoints go with their Service.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_controllers::endpoint::{self, informer::ServicePods};
use skiff_controllers::endpointslice;
use skiff_controllers::sharedpods::SharedPods;

async fn start() -> Client {
    let client = api_server().await;
    let service_pods = ServicePods::start(client.clone(), &SharedPods::start(client.clone()));
    tokio::spawn(endpoint::run(client.clone(), service_pods.clone()));
    tokio::spawn(endpointslice::run(client.clone(), service_pods));
    tokio::spawn(endpoint::apiserver::run(client.clone()));
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    client
}

async fn create<K>(client: &Client, object: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}

/// Creates pod `name` with `labels` and `spec` extras, bound to node-1 and running at `ip`.
async fn running_pod(client: &Client, name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
    let mut spec = json!({"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx",
        "ports": [{"name": "http", "containerPort": 8080}]}]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let pod: Pod = create(
        client,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}),
    )
    .await;
    set_status(client, &pod, ip, ready).await
}

async fn set_status(client: &Client, pod: &Pod, ip: &str, ready: bool) -> Pod {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let mut pod = pods.get(&pod.name_any()).await.unwrap();
    pod.status = Some(
        serde_json::from_value(json!({
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
        .unwrap(),
    );
    pods.replace_status(&pod.name_any(), &PostParams::default(), &pod)
        .await
        .unwrap()
}

/// The Endpoints `name`'s subsets once `check` accepts them.
async fn endpoints_where(client: &Client, name: &str, check: impl Fn(&Value) -> bool) -> Endpoints {
    let api = Api::<Endpoints>::namespaced(client.clone(), "default");
    eventually(&format!("endpoints {name}"), || async {
        let endpoints = api.get_opt(name).await.unwrap()?;
        check(&serde_json::to_value(&endpoints.subsets).unwrap()).then_some(endpoints)
    })
    .await
}

/// The slices of Service `name` once `check` accepts their endpoints.
async fn slices_where(
    client: &Client,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Vec<EndpointSlice> {
    let api = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    eventually(&format!("slices of {name}"), || async {
        let slices = api.list(&params).await.unwrap().items;
        let endpoints: Vec<_> = slices.iter().flat_map(|s| s.endpoints.clone()).collect();
        check(&serde_json::to_value(endpoints).unwrap()).then_some(slices)
    })
    .await
}

fn address(name: &str, ip: &str, uid: &str) -> Value {
    json!({"ip": ip, "nodeName": "node-1",
           "targetRef": {"kind": "Pod", "namespace": "default", "name": name, "uid": uid}})
}

#[tokio::test]
async fn endpoints_follow_pod_readiness() {
    let client = start().await;
    let service: Service = create(
        &client,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "labels": {"team": "a"}},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    let a = running_pod(&client, "web-a", "10.244.0.5", true, json!({})).await;
    let b = running_pod(&client, "web-b", "10.244.0.6", false, json!({})).await;
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap();
    let port = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);

    let endpoints = endpoints_where(&client, "web", |subsets| {
        subsets
            == &json!([{"addresses": [address("web-a", "10.244.0.5", &uid(&a))],
                         "notReadyAddresses": [address("web-b", "10.244.0.6", &uid(&b))],
                         "ports": port}])
    })
    .await;
    assert_eq!(endpoints.labels()["team"], "a");
    assert_eq!(
        endpoints.labels()["endpoints.kubernetes.io/managed-by"],
        "endpoint-controller"
    );
    assert!(
        endpoints
            .annotations()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time")
    );

    let slices = slices_where(&client, "web", |endpoints| {
        endpoints.as_array().is_some_and(|e| e.len() == 2)
    })
    .await;
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    assert!(slice.name_any().starts_with("web-"), "{}", slice.name_any());
    assert_eq!(
        slice.labels()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), &owner.uid),
        ("Service", service.metadata.uid.as_ref().unwrap())
    );
    assert_eq!(serde_json::to_value(&slice.ports).unwrap(), port);

    // web-b becomes ready; web-a goes away.
    set_status(&client, &b, "10.244.0.6", true).await;
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("web-a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    endpoints_where(&client, "web", |subsets| {
        subsets
            == &json!([{"addresses": [address("web-b", "10.244.0.6", &uid(&b))], "ports": port}])
    })
    .await;
    slices_where(&client, "web", |endpoints| {
        endpoints.as_array().is_some_and(|e| {
            e.len() == 1
                && e[0]["conditions"]
                    == json!({"ready": true, "serving": true, "terminating": false})
        })
    })
    .await;

    // Without its Service, the Endpoints go.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let api = Api::<Endpoints>::namespaced(client.clone(), "default");
    eventually("endpoints web deleted", || async {
        api.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn headless_services_publish_governed_hostnames() {
    let client = start().await;
    let _: Service = create(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
               "spec": {"clusterIP": "None", "selector": {"app": "web"},
                        "ports": [{"name": "web", "port": 80}]}}),
    )
    .await;
    let pod = running_pod(
        &client,
        "web-0",
        "10.244.0.7",
        true,
        json!({"hostname": "web-0", "subdomain": "nginx"}),
    )
    .await;
    let mut expected = address("web-0", "10.244.0.7", pod.metadata.uid.as_deref().unwrap());
    expected["hostname"] = json!("web-0");
    let endpoints = endpoints_where(&client, "nginx", |subsets| {
        subsets == &json!([{"addresses": [expected], "ports": [{"name": "web", "port": 80, "protocol": "TCP"}]}])
    })
    .await;
    assert_eq!(endpoints.labels()["service.kubernetes.io/headless"], "");
    let slices = slices_where(&client, "nginx", |endpoints| {
        endpoints.as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    assert_eq!(slices[0].endpoints[0].hostname.as_deref(), Some("web-0"));
    assert_eq!(slices[0].endpoints[0].zone.as_deref(), Some("zone-a"));
    assert_eq!(slices[0].labels()["service.kubernetes.io/headless"], "");
}

#[tokio::test]
async fn a_service_without_pods_gets_empty_endpoints_and_a_placeholder_slice() {
    let client = start().await;
    let _: Service = create(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "idle"},
               "spec": {"selector": {"app": "idle"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let endpoints = endpoints_where(&client, "idle", Value::is_null).await;
    assert_eq!(endpoints.subsets, None);
    let slices = slices_where(&client, "idle", |e| e == &json!([])).await;
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].ports, Some(vec![]));
}

#[tokio::test]
async fn the_kubernetes_service_has_the_api_servers_address() {
    let client = start().await;
    let endpoints = endpoints_where(&client, "kubernetes", |subsets| {
        subsets
            == &json!([{"addresses": [{"ip": "127.0.0.1"}],
                         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
    })
    .await;
    assert_eq!(
        endpoints.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    let slice = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let slice = eventually("the kubernetes slice", || async {
        slice.get_opt("kubernetes").await.unwrap()
    })
    .await;
    assert_eq!(
        serde_json::to_value(&slice.endpoints).unwrap(),
        json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}])
    );
}

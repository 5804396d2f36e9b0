//! Services' endpoints through the real kubectl: `kubectl expose` of a Deployment gets
//! Endpoints and an EndpointSlice listing its ready pods, shown with upstream's columns and in
//! `kubectl describe svc`; a headless Service publishes a StatefulSet-like pod's hostname, and
//! not-ready pods as not ready unless the Service publishes them.

mod common;
mod workloads;

use common::{Server, cell, parse_table, wait_until};
use serde_json::Value;
use workloads::{SETTLE, apply, is_ready, live_pods, name};

/// The IPs of the ready pods matching `selector`, sorted; once there are `count`.
#[track_caller]
fn ready_pod_ips(server: &Server, selector: &str, count: usize) -> Vec<String> {
    wait_until(&format!("{count} ready pods {selector}"), SETTLE, || {
        let pods = live_pods(server, "default", selector);
        let mut ips: Vec<String> = pods
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
            .collect();
        ips.sort();
        if ips.len() == count {
            Ok(ips)
        } else {
            Err(format!("{} ready of {}", ips.len(), pods.len()))
        }
    })
}

/// The addresses (ready, not ready) of Endpoints `name`, each as `ip` or `hostname/ip`, once
/// `wanted` accepts them.
#[track_caller]
fn wait_addresses(
    server: &Server,
    name: &str,
    wanted: impl Fn(&[String], &[String]) -> bool,
) -> Value {
    wait_until(&format!("addresses of endpoints/{name}"), SETTLE, || {
        let endpoints = server.get_json(&["get", "endpoints", name]);
        let listed = |field: &str| -> Vec<String> {
            let mut listed: Vec<String> = endpoints["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
                .map(|a| match a["hostname"].as_str() {
                    Some(host) => format!("{host}/{}", a["ip"].as_str().unwrap_or_default()),
                    None => a["ip"].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
            listed.sort();
            listed
        };
        let (ready, not_ready) = (listed("addresses"), listed("notReadyAddresses"));
        if wanted(&ready, &not_ready) {
            Ok(endpoints)
        } else {
            Err(format!("ready {ready:?}, not ready {not_ready:?}"))
        }
    })
}

#[test]
fn exposed_deployments_get_endpoints_and_slices() {
    let server = Server::start();
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
        "--port=80",
    ]);
    server.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=8080",
        "--target-port=80",
    ]);
    let ips = ready_pod_ips(&server, "app=web", 2);
    let with_port: Vec<String> = ips.iter().map(|ip| format!("{ip}:80")).collect();
    wait_addresses(&server, "web", |ready, not_ready| {
        ready == ips && not_ready.is_empty()
    });

    let output = server.ok(&["get", "endpoints,endpointslices", "-l", "app=web"]);
    let tables: Vec<&str> = output.split("\n\n").collect();
    assert_eq!(tables.len(), 2, "{output}");
    let endpoints = parse_table(tables[0]);
    assert_eq!(endpoints.len(), 1, "{output}");
    let headers: Vec<&str> = endpoints[0].iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(headers, ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(cell(&endpoints[0], "NAME"), "endpoints/web");
    assert_eq!(cell(&endpoints[0], "ENDPOINTS"), with_port.join(","));

    let slices = parse_table(tables[1]);
    assert_eq!(slices.len(), 1, "{output}");
    let headers: Vec<&str> = slices[0].iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headers,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    );
    let slice_name = cell(&slices[0], "NAME");
    assert!(
        slice_name.starts_with("endpointslice.discovery.k8s.io/web-"),
        "{slice_name}"
    );
    assert_eq!(cell(&slices[0], "ADDRESSTYPE"), "IPv4");
    assert_eq!(cell(&slices[0], "PORTS"), "80");
    let mut listed: Vec<&str> = cell(&slices[0], "ENDPOINTS").split(',').collect();
    listed.sort();
    assert_eq!(listed, ips);

    let slice = &server.get_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ])["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");

    let described = server.ok(&["describe", "svc", "web"]);
    let line = described
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_else(|| panic!("no Endpoints line in:\n{described}"));
    let mut described_endpoints: Vec<&str> = line["Endpoints:".len()..].trim().split(',').collect();
    described_endpoints.sort();
    assert_eq!(described_endpoints, with_port);

    // Scaled down, the endpoints follow.
    server.ok(&["scale", "deployment", "web", "--replicas=1"]);
    let ips = ready_pod_ips(&server, "app=web", 1);
    wait_addresses(&server, "web", |ready, _| ready == ips);
}

/// A headless Service and a pod as a StatefulSet makes them: hostname and subdomain.
const HEADLESS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - name: web
    port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels:
    app: nginx
spec:
  hostname: web-0
  subdomain: nginx
  containers:
  - name: nginx
    image: nginx
    ports:
    - name: web
      containerPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels:
    app: nginx
  annotations:
    skiff.dev/sim-ready-after: never
spec:
  hostname: web-1
  subdomain: nginx
  containers:
  - name: nginx
    image: nginx
"#;

#[test]
fn headless_services_publish_hostnames_and_not_ready_pods() {
    let server = Server::start();
    apply(&server, "default", HEADLESS);
    let ready = ready_pod_ips(&server, "app=nginx", 1);
    let pods = live_pods(&server, "default", "app=nginx");
    let ip_of = |pod: &str| -> String {
        let pod = pods.iter().find(|p| name(p) == pod).unwrap();
        pod["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let unready_ip = wait_until("web-1 to have an IP", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "web-1"]);
        pod["status"]["podIP"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| pod["status"].to_string())
    });
    assert_eq!(ready, [ip_of("web-0")]);
    let endpoints = wait_addresses(&server, "nginx", |ready_listed, not_ready| {
        ready_listed == [format!("web-0/{}", ready[0])]
            && not_ready == [format!("web-1/{unready_ip}")]
    });
    assert_eq!(
        endpoints["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let address = &endpoints["subsets"][0]["addresses"][0];
    assert_eq!(address["targetRef"]["name"], "web-0");
    assert_eq!(address["targetRef"]["kind"], "Pod");
    let node = server.get_json(&["get", "pod", "web-0"])["spec"]["nodeName"].clone();
    assert_eq!(address["nodeName"], node);
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], 80);

    let slices = server.get_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=nginx",
    ]);
    let hostnames: Vec<String> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["hostname"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(hostnames, ["web-0"]);

    server.ok(&[
        "patch",
        "svc",
        "nginx",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ]);
    wait_addresses(&server, "nginx", |ready_listed, not_ready| {
        ready_listed.len() == 2 && not_ready.is_empty()
    });
}

#[test]
fn the_kubernetes_service_lists_the_api_server() {
    let server = Server::start();
    let endpoints = wait_until("endpoints/kubernetes", SETTLE, || {
        let text = server.ok(&["get", "endpoints"]);
        let table = parse_table(&text);
        match table.iter().find(|row| cell(row, "NAME") == "kubernetes") {
            Some(row) => Ok(cell(row, "ENDPOINTS").to_owned()),
            None => Err(text),
        }
    });
    assert_eq!(endpoints, format!("127.0.0.1:{}", server.port));
}

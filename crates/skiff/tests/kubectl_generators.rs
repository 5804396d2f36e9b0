//! kubectl's generator commands (which send protobuf request bodies) and `kubectl explain`
//! (which reads the OpenAPI v3 schemas).

mod common;

use common::Server;
use serde_json::json;

#[test]
fn create_deployment_sends_protobuf_and_gets_upstream_defaults() {
    let server = Server::start();
    assert_eq!(
        server.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3"
        ]),
        "deployment.apps/web created\n"
    );
    let object = server.get_json(&["get", "deploy", "web"]);
    assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
    let spec = &object["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(
        spec["strategy"],
        json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"})
    );
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx");
    // An untagged image means :latest, which upstream pulls Always.
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"], json!({}));
}

#[test]
fn create_configmap_and_secret() {
    let server = Server::start();
    assert_eq!(
        server.ok(&[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
            "--from-literal=size=3"
        ]),
        "configmap/settings created\n"
    );
    assert_eq!(
        server.get_json(&["get", "cm", "settings"])["data"],
        json!({"color": "blue", "size": "3"})
    );
    assert_eq!(
        server.ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=hunter2"
        ]),
        "secret/creds created\n"
    );
    let secret = server.get_json(&["get", "secret", "creds"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"password": "aHVudGVyMg=="}));
}

#[test]
fn create_service_clusterip() {
    let server = Server::start();
    assert_eq!(
        server.ok(&["create", "service", "clusterip", "my-svc", "--tcp=80:8080"]),
        "service/my-svc created\n"
    );
    let service = server.get_json(&["get", "svc", "my-svc"]);
    let spec = &service["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["selector"], json!({"app": "my-svc"}));
    assert_eq!(
        spec["ports"],
        json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    // A ClusterIP service gets an address allocated from the service range.
    let cluster_ip = spec["clusterIP"].as_str().unwrap_or_default();
    assert!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "clusterIP {cluster_ip:?}"
    );
    assert_eq!(spec["clusterIPs"], json!([cluster_ip]));
}

#[test]
fn explain_reads_the_openapi_schema() {
    let server = Server::start();
    let stdout = server.ok(&["explain", "deployment.spec.strategy"]);
    for expected in [
        "GROUP:      apps\n",
        "KIND:       Deployment\n",
        "VERSION:    v1\n",
        "FIELD: strategy <DeploymentStrategy>\n",
        "DESCRIPTION:\n    The deployment strategy to use to replace existing pods with new ones.\n",
        "  rollingUpdate\t<RollingUpdateDeployment>\n",
        "  type\t<string>\n",
    ] {
        assert!(
            stdout.contains(expected),
            "explain lacks {expected:?}:\n{stdout}"
        );
    }
}

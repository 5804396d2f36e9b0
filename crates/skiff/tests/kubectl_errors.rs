//! Requests that upstream Kubernetes refuses, refused the same way: the status code, the reason
//! and the exact line kubectl prints.

mod common;

use common::{Server, create_config_map, create_namespace, example};
use serde_json::{Value, json};

/// The upstream limit on request bodies (kube-apiserver's `MaxRequestBodyBytes`, 3 MiB).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[test]
fn daemonset_with_node_selector_as_a_list_is_a_bad_request() {
    let server = Server::start();
    create_namespace(&server, "data");
    let manifest = example("seed/broken/daemonset-nodeselector-list.yaml");
    let stderr = server
        .run(&["apply", "-n", "data", "-f", manifest.to_str().unwrap()])
        .failure();
    assert_eq!(
        stderr,
        format!(
            "Error from server (BadRequest): error when creating \"{}\": DaemonSet in version \"v1\" cannot be handled as a DaemonSet: json: cannot unmarshal array into Go struct field PodSpec.spec.template.spec.nodeSelector of type map[string]string\n",
            manifest.display()
        )
    );
    assert_eq!(
        server.run(&["get", "ds", "-n", "data"]).stderr,
        "No resources found in data namespace.\n"
    );
}

#[test]
fn deployment_mounting_an_undeclared_volume_is_invalid() {
    let server = Server::start();
    create_namespace(&server, "data");
    let manifest = example("seed/broken/deployment-undeclared-volume.yaml");
    let stderr = server
        .run(&["apply", "-n", "data", "-f", manifest.to_str().unwrap()])
        .failure();
    assert_eq!(
        stderr,
        "The Deployment \"nginx-deployment\" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"demo-storage\"\n"
    );
    // The Status behind that line, as the API returns it.
    let manifest_json = server.ok(&[
        "create",
        "--dry-run=client",
        "-n",
        "data",
        "-f",
        manifest.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let (code, body) = server.curl(
        "POST",
        "/apis/apps/v1/namespaces/data/deployments",
        Some(&server.token()),
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &manifest_json,
        ],
    );
    assert_eq!(code, 422);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Deployment.apps \"nginx-deployment\" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"demo-storage\"",
            "reason": "Invalid",
            "details": {
                "name": "nginx-deployment", "group": "apps", "kind": "Deployment",
                "causes": [{"reason": "FieldValueNotFound", "message": "Not found: \"demo-storage\"", "field": "spec.template.spec.containers[0].volumeMounts[0].name"}]
            },
            "code": 422
        })
    );
}

const DEPLOYMENT_WITH_TYPO: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  replicas: 1
  foo: bar
  selector:
    matchLabels:
      app: typo
  template:
    metadata:
      labels:
        app: typo
    spec:
      containers:
        - name: web
          image: nginx:1.14.2
";

#[test]
fn unknown_fields_are_refused_with_strict_validation_and_warned_about_otherwise() {
    let server = Server::start();
    let manifest = server.write_file("typo.yaml", DEPLOYMENT_WITH_TYPO);
    let stderr = server
        .run(&[
            "apply",
            "--validate=strict",
            "-f",
            manifest.to_str().unwrap(),
        ])
        .failure();
    assert_eq!(
        stderr,
        format!(
            "Error from server (BadRequest): error when creating \"{}\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\"\n",
            manifest.display()
        )
    );
    let warned = server.run(&["apply", "--validate=warn", "-f", manifest.to_str().unwrap()]);
    assert_eq!(
        (warned.code, warned.stdout.as_str(), warned.stderr.as_str()),
        (
            0,
            "deployment.apps/typo created\n",
            "Warning: unknown field \"spec.foo\"\n"
        )
    );
}

#[test]
fn creating_into_a_missing_namespace_is_not_found() {
    let server = Server::start();
    let manifest = server.write_file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
    );
    let stderr = server
        .run(&["create", "-n", "nope", "-f", manifest.to_str().unwrap()])
        .failure();
    assert_eq!(
        stderr,
        format!(
            "Error from server (NotFound): error when creating \"{}\": namespaces \"nope\" not found\n",
            manifest.display()
        )
    );
    let stderr = server
        .run(&["get", "cm", "settings", "-n", "nope"])
        .failure();
    assert_eq!(
        stderr,
        "Error from server (NotFound): namespaces \"nope\" not found\n"
    );
}

#[test]
fn bodies_over_3_mib_are_too_large() {
    let server = Server::start();
    let big = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "a".repeat(MAX_BODY_BYTES + 1024)}
    });
    let manifest = server.write_file("big.json", &big.to_string());
    let stderr = server
        .run(&["create", "-f", manifest.to_str().unwrap()])
        .failure();
    assert_eq!(
        stderr,
        format!(
            "Error from server (RequestEntityTooLarge): error when creating \"{}\": Request entity too large: limit is 3145728\n",
            manifest.display()
        )
    );
    let (code, body) = server.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&server.token()),
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", manifest.display()),
        ],
    );
    assert_eq!(code, 413);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["reason"].as_str(), status["message"].as_str()),
        (
            Some("RequestEntityTooLarge"),
            Some("Request entity too large: limit is 3145728")
        )
    );
}

#[test]
fn malformed_json_and_yaml_bodies_are_bad_requests() {
    let server = Server::start();
    let token = server.token();
    for (content_type, body) in [
        (
            "application/json",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "#,
        ),
        ("application/json", "not json at all"),
        (
            "application/yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
        ),
    ] {
        let (code, response) = server.curl(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&token),
            &[
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                body,
            ],
        );
        assert_eq!(code, 400, "{content_type} {body:?}: {response}");
        let status: Value = serde_json::from_str(&response)
            .unwrap_or_else(|e| panic!("not a Status ({e}): {response}"));
        assert_eq!(
            (
                status["kind"].as_str(),
                status["reason"].as_str(),
                status["code"].as_i64()
            ),
            (Some("Status"), Some("BadRequest"), Some(400)),
            "{response}"
        );
    }
    // Malformed patches too.
    create_config_map(&server, "default", "settings", "a", "b");
    let stderr = server
        .run(&[
            "patch",
            "cm",
            "settings",
            "--type",
            "merge",
            "-p",
            "{not json",
        ])
        .failure();
    // kubectl sends the text as it is; the server refuses it.
    assert!(
        stderr.starts_with("Error from server (BadRequest): "),
        "{stderr}"
    );
    let (code, response) = server.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/settings",
        Some(&token),
        &[
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            "{not json",
        ],
    );
    assert_eq!(code, 400, "{response}");
}

#[test]
fn unknown_resource_types_are_reported_by_kubectl() {
    let server = Server::start();
    let stderr = server.run(&["get", "foos"]).failure();
    assert_eq!(
        stderr,
        "error: the server doesn't have a resource type \"foos\"\n"
    );
    let (code, body) = server.curl(
        "GET",
        "/apis/apps/v1/namespaces/default/foos",
        Some(&server.token()),
        &[],
    );
    assert_eq!(code, 404, "{body}");
}

#[test]
fn requests_without_a_valid_token_are_unauthorized() {
    let server = Server::start();
    let unauthorized = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    for token in [None, Some("not-the-token")] {
        let (code, body) = server.curl("GET", "/api/v1/namespaces", token, &[]);
        assert_eq!(code, 401, "token {token:?}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            unauthorized,
            "token {token:?}"
        );
    }
    let (code, _) = server.curl("GET", "/api/v1/namespaces", Some(&server.token()), &[]);
    assert_eq!(code, 200);

    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let forged = server.write_file(
        "forged-kubeconfig.yaml",
        &kubeconfig.replace(&server.token(), "not-the-token"),
    );
    // kubectl's discovery gives up first (client-go logs each attempt), then the command fails
    // with the wording it uses for a 401 against kube-apiserver.
    let stderr = server
        .kubectl(&["get", "ns"])
        .kubeconfig(&forged)
        .run()
        .failure();
    let (attempts, last) = stderr
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", stderr.trim_end()));
    assert_eq!(
        last,
        "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
    );
    for line in attempts.lines() {
        assert!(
            line.ends_with("\"couldn't get current server API group list: the server has asked for the client to provide credentials\""),
            "{stderr}"
        );
    }
}

//! The issue's "What a user does" walkthrough, step by step, with the real kubectl against the
//! real `skiff server`. Each test starts its own server so that one missing feature does not
//! hide the others.

mod common;

use common::{Server, apply_seed_deployment, cell, create_namespace, example, parse_table, row};
use serde_json::{Value, json};

/// A Go `HumanDuration` as kubectl's AGE column prints it (`5s`, `2m30s`, `3h`, `4d`, ...).
fn is_age(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
        && text.ends_with(|c: char| "smhdy".contains(c))
}

/// A count from the object's status the way upstream's printers show it (absent = 0).
fn status_count(object: &Value, field: &str) -> String {
    object["status"][field].as_i64().unwrap_or(0).to_string()
}

#[test]
fn version_reports_1_33_and_the_dispatcher_runs_kubectl_1_33() {
    let server = Server::start();
    let stdout = server.ok(&["version"]);
    // The dispatcher execs kubectl.1.33 because the server reports minor 33; its own built-in
    // client would print `Client Version: v1.32.4-dispatcher`.
    assert!(
        stdout.starts_with("Client Version: v1.33.1\nKustomize Version: "),
        "{stdout}"
    );
    let server_version = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Server Version: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(server_version.starts_with("v1.33."), "{stdout}");
    let json = server.get_json(&["version"]);
    assert_eq!(json["serverVersion"]["major"], "1");
    assert_eq!(json["serverVersion"]["minor"], "33");
    assert_eq!(json["serverVersion"]["platform"], "linux/amd64");
}

#[test]
fn cluster_info_names_the_control_plane() {
    let server = Server::start();
    assert_eq!(
        server.ok(&["cluster-info"]),
        format!(
            "Kubernetes control plane is running at {}\n\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n",
            server.url
        )
    );
}

#[test]
fn api_resources_lists_kinds_short_names_and_scope_as_upstream() {
    let server = Server::start();
    let table = parse_table(&server.ok(&["api-resources"]));
    // (name, short names, apiVersion, namespaced, kind) exactly as a 1.33 kube-apiserver lists them.
    let expected = [
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("endpoints", "ep", "v1", "true", "Endpoints"),
        ("events", "ev", "v1", "true", "Event"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        (
            "persistentvolumeclaims",
            "pvc",
            "v1",
            "true",
            "PersistentVolumeClaim",
        ),
        ("persistentvolumes", "pv", "v1", "false", "PersistentVolume"),
        ("pods", "po", "v1", "true", "Pod"),
        ("secrets", "", "v1", "true", "Secret"),
        ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
        ("services", "svc", "v1", "true", "Service"),
        (
            "controllerrevisions",
            "",
            "apps/v1",
            "true",
            "ControllerRevision",
        ),
        ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
        (
            "endpointslices",
            "",
            "discovery.k8s.io/v1",
            "true",
            "EndpointSlice",
        ),
        ("events", "ev", "events.k8s.io/v1", "true", "Event"),
        (
            "storageclasses",
            "sc",
            "storage.k8s.io/v1",
            "false",
            "StorageClass",
        ),
    ];
    for (name, short, api_version, namespaced, kind) in expected {
        let found = table
            .iter()
            .find(|r| cell(r, "NAME") == name && cell(r, "APIVERSION") == api_version)
            .unwrap_or_else(|| panic!("api-resources has no {name} in {api_version}: {table:?}"));
        assert_eq!(
            (
                cell(found, "SHORTNAMES"),
                cell(found, "NAMESPACED"),
                cell(found, "KIND")
            ),
            (short, namespaced, kind),
            "api-resources row for {name} ({api_version})"
        );
    }
    let wide = parse_table(&server.ok(&["api-resources", "-o", "wide"]));
    let deployments = row(&wide, "deployments");
    assert_eq!(
        cell(deployments, "VERBS"),
        "create,delete,deletecollection,get,list,patch,update,watch"
    );
    assert_eq!(cell(deployments, "CATEGORIES"), "all");
    // Short names resolve through discovery.
    assert_eq!(
        server.ok(&["get", "ns", "kube-system", "-o", "name"]),
        "namespace/kube-system\n"
    );
}

#[test]
fn create_namespace_then_list_it() {
    let server = Server::start();
    // kubectl 1.33 sends this body as protobuf.
    assert_eq!(
        server.ok(&["create", "namespace", "data"]),
        "namespace/data created\n"
    );
    let table = parse_table(&server.ok(&["get", "ns", "data"]));
    assert_eq!(cell(row(&table, "data"), "STATUS"), "Active");
    let namespace = server.get_json(&["get", "ns", "data"]);
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(
        namespace["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "data"})
    );
}

#[test]
fn apply_seed_deployment_then_get_wide_and_all() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    // Settled first, so that the object and the table describe the same status.
    server.ok(&[
        "rollout",
        "status",
        "deploy/nginx-deployment",
        "-n",
        "data",
        "--timeout=60s",
    ]);
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);

    let table = parse_table(&server.ok(&["get", "deploy", "-n", "data"]));
    assert_eq!(table.len(), 1, "{table:?}");
    let deploy = row(&table, "nginx-deployment");
    let names: Vec<&str> = deploy.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(
        cell(deploy, "READY"),
        format!("{}/3", status_count(&object, "readyReplicas"))
    );
    assert_eq!(
        cell(deploy, "UP-TO-DATE"),
        status_count(&object, "updatedReplicas")
    );
    assert_eq!(
        cell(deploy, "AVAILABLE"),
        status_count(&object, "availableReplicas")
    );
    assert!(is_age(cell(deploy, "AGE")), "{deploy:?}");

    let wide = parse_table(&server.ok(&["get", "deploy", "-n", "data", "-o", "wide"]));
    let deploy = row(&wide, "nginx-deployment");
    let names: Vec<&str> = deploy.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        (
            cell(deploy, "CONTAINERS"),
            cell(deploy, "IMAGES"),
            cell(deploy, "SELECTOR")
        ),
        ("nginx", "nginx:1.14.2", "app=nginx")
    );

    // `get all` lists the category `all`; the deployment is printed with its group prefix.
    let all = server.ok(&["get", "all", "-n", "data"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("deployment.apps/nginx-deployment ")),
        "{all}"
    );
    assert!(
        !all.contains("persistentvolumeclaim"),
        "PVCs are not in the `all` category:\n{all}"
    );

    let claims = parse_table(&server.ok(&["get", "pvc", "-n", "data"]));
    let claim = row(&claims, "demo-volume-claim");
    // The default class, from admission; whether the claim is still Pending or already Bound
    // depends on the scheduler (storage.rs follows it to Bound).
    assert_eq!(cell(claim, "STORAGECLASS"), "standard");

    // -A adds the NAMESPACE column from each row's metadata and --show-labels the labels.
    let everywhere = parse_table(&server.ok(&["get", "deploy", "-A", "--show-labels"]));
    let deploy = row(&everywhere, "nginx-deployment");
    assert_eq!(
        (cell(deploy, "NAMESPACE"), cell(deploy, "LABELS")),
        ("data", "app=nginx")
    );
}

#[test]
fn get_yaml_shows_upstream_defaults() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(object["apiVersion"], "apps/v1");
    assert_eq!(object["kind"], "Deployment");
    let metadata = &object["metadata"];
    assert_eq!(metadata["generation"], 1);
    assert_eq!(metadata["namespace"], "data");
    assert_eq!(metadata["labels"], json!({"app": "nginx"}));
    assert!(
        metadata["uid"].as_str().is_some_and(|uid| uid.len() == 36),
        "{metadata}"
    );
    assert!(
        metadata["resourceVersion"]
            .as_str()
            .is_some_and(|rv| rv.parse::<u64>().is_ok()),
        "{metadata}"
    );
    assert!(
        metadata["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{metadata}"
    );
    let last_applied = metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied annotation");
    assert_eq!(
        serde_json::from_str::<Value>(last_applied).unwrap()["metadata"]["name"],
        "nginx-deployment"
    );

    let mut spec = object["spec"].clone();
    // Not a default: kube-apiserver 1.33 serialises the template's zero creationTimestamp as null.
    spec["template"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    assert_eq!(
        spec,
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 3,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{
                        "image": "nginx:1.14.2",
                        "imagePullPolicy": "IfNotPresent",
                        "name": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "volumeMounts": [{"mountPath": "/usr/share/nginx/html", "name": "demo-volume"}]
                    }],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                    "volumes": [{"name": "demo-volume", "persistentVolumeClaim": {"claimName": "demo-volume-claim"}}]
                }
            }
        })
    );

    // The same defaults in the YAML a user reads.
    let yaml = server.ok(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-n",
        "data",
        "-o",
        "yaml",
    ]);
    for line in [
        "  progressDeadlineSeconds: 600\n",
        "  revisionHistoryLimit: 10\n",
        "  strategy:\n    rollingUpdate:\n      maxSurge: 25%\n      maxUnavailable: 25%\n    type: RollingUpdate\n",
        "        imagePullPolicy: IfNotPresent\n",
        "        terminationMessagePath: /dev/termination-log\n",
    ] {
        assert!(yaml.contains(line), "-o yaml lacks {line:?}:\n{yaml}");
    }

    let claim = server.get_json(&["get", "pvc", "demo-volume-claim", "-n", "data"]);
    assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
    assert_eq!(claim["spec"]["storageClassName"], "standard");
}

#[test]
fn get_watch_streams_a_scale_made_by_another_kubectl() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    let mut watch = server.spawn(&["get", "deploy", "-n", "data", "-w"]);
    watch.wait_for_line("the header", |l| {
        l.starts_with("NAME ") && l.contains("READY")
    });
    watch.wait_for_line("the initial row", |l| {
        l.starts_with("nginx-deployment ") && l.contains("/3 ")
    });
    assert_eq!(
        server.ok(&[
            "scale",
            "deploy",
            "nginx-deployment",
            "--replicas=5",
            "-n",
            "data"
        ]),
        "deployment.apps/nginx-deployment scaled\n"
    );
    watch.wait_for_line("the scaled row", |l| {
        l.starts_with("nginx-deployment ") && l.contains("/5 ")
    });
}

#[test]
fn scale_sets_replicas_and_bumps_generation() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    assert_eq!(
        server.ok(&[
            "scale",
            "deploy",
            "nginx-deployment",
            "--replicas=5",
            "-n",
            "data"
        ]),
        "deployment.apps/nginx-deployment scaled\n"
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(object["metadata"]["generation"], 2);
    // Scaling a DaemonSet is refused: it has no scale subresource.
    let daemonset = example("seed/daemonset.yaml");
    server.ok(&["apply", "-n", "data", "-f", daemonset.to_str().unwrap()]);
    let stderr = server
        .run(&["scale", "ds", "fluentd", "--replicas=2", "-n", "data"])
        .failure();
    assert_eq!(
        stderr,
        "Error from server (NotFound): the server could not find the requested resource\n"
    );
}

#[test]
fn patch_strategic_merge_and_json_and_no_change() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    let patched = "deployment.apps/nginx-deployment patched\n";

    // Strategic merge: containers merge by name, so the port and mount survive.
    let strategic = r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.16.1"}]}}}}"#;
    assert_eq!(
        server.ok(&[
            "patch",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "-p",
            strategic
        ]),
        patched
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    let container = &object["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.16.1");
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(container["volumeMounts"][0]["name"], "demo-volume");
    assert_eq!(object["metadata"]["generation"], 2);

    let merge = r#"{"metadata":{"labels":{"tier":"web"}}}"#;
    assert_eq!(
        server.ok(&[
            "patch",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "--type",
            "merge",
            "-p",
            merge
        ]),
        patched
    );
    let json_patch = r#"[{"op":"replace","path":"/spec/revisionHistoryLimit","value":5}]"#;
    assert_eq!(
        server.ok(&[
            "patch",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "--type",
            "json",
            "-p",
            json_patch
        ]),
        patched
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(
        object["metadata"]["labels"],
        json!({"app": "nginx", "tier": "web"})
    );
    assert_eq!(object["spec"]["revisionHistoryLimit"], 5);
    let resource_version = object["metadata"]["resourceVersion"].clone();

    // A patch that changes nothing keeps the resourceVersion, and kubectl says so.
    assert_eq!(
        server.ok(&[
            "patch",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "--type",
            "merge",
            "-p",
            merge
        ]),
        "deployment.apps/nginx-deployment patched (no change)\n"
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(object["metadata"]["resourceVersion"], resource_version);
}

#[test]
fn label_and_annotate_and_their_effect_on_generation() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    assert_eq!(
        server.ok(&[
            "label",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "env=prod"
        ]),
        "deployment.apps/nginx-deployment labeled\n"
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(
        object["metadata"]["labels"],
        json!({"app": "nginx", "env": "prod"})
    );
    assert_eq!(
        object["metadata"]["generation"], 1,
        "labels are not part of the spec"
    );

    assert_eq!(
        server.ok(&[
            "annotate",
            "deploy",
            "nginx-deployment",
            "-n",
            "data",
            "owner=team-a"
        ]),
        "deployment.apps/nginx-deployment annotated\n"
    );
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(object["metadata"]["annotations"]["owner"], "team-a");
    // Upstream's Deployment strategy bumps generation on annotation changes too.
    assert_eq!(object["metadata"]["generation"], 2);

    let selected = server.ok(&[
        "get", "deploy", "-n", "data", "-l", "env=prod", "-o", "name",
    ]);
    assert_eq!(selected, "deployment.apps/nginx-deployment\n");
    let unmatched = server.run(&["get", "deploy", "-n", "data", "-l", "env=dev"]);
    assert_eq!(
        (
            unmatched.code,
            unmatched.stdout.as_str(),
            unmatched.stderr.as_str()
        ),
        (0, "", "No resources found in data namespace.\n")
    );
}

#[test]
fn edit_with_an_editor_script() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    let editor = server.write_file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/^  revisionHistoryLimit: 10$/  revisionHistoryLimit: 7/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stdout = server
        .kubectl(&["edit", "deploy", "nginx-deployment", "-n", "data"])
        .env("EDITOR", editor.to_str().unwrap())
        .run()
        .success();
    assert_eq!(stdout, "deployment.apps/nginx-deployment edited\n");
    let object = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(object["spec"]["revisionHistoryLimit"], 7);

    // Saving the file unchanged is a cancelled edit.
    let outcome = server
        .kubectl(&["edit", "deploy", "nginx-deployment", "-n", "data"])
        .env("EDITOR", "true")
        .run();
    assert_eq!(
        (
            outcome.code,
            outcome.stdout.as_str(),
            outcome.stderr.as_str()
        ),
        (0, "", "Edit cancelled, no changes made.\n")
    );
}

#[test]
fn replace_and_replace_with_a_stale_resource_version() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    let yaml = server.ok(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-n",
        "data",
        "-o",
        "yaml",
    ]);
    let stale = server.write_file("stale.yaml", &yaml);
    let changed = server.write_file(
        "changed.yaml",
        &yaml.replace("image: nginx:1.14.2", "image: nginx:1.16.1"),
    );
    assert_eq!(
        server.ok(&["replace", "-f", changed.to_str().unwrap()]),
        "deployment.apps/nginx-deployment replaced\n"
    );
    assert_eq!(
        server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"])["spec"]["template"]["spec"]
            ["containers"][0]["image"],
        "nginx:1.16.1"
    );

    let stderr = server
        .run(&["replace", "-f", stale.to_str().unwrap()])
        .failure();
    assert_eq!(
        stderr,
        format!(
            "Error from server (Conflict): error when replacing \"{}\": Operation cannot be fulfilled on deployments.apps \"nginx-deployment\": the object has been modified; please apply your changes to the latest version and try again\n",
            stale.display()
        )
    );
}

#[test]
fn delete_and_delete_of_a_missing_object() {
    let server = Server::start();
    apply_seed_deployment(&server, "data");
    assert_eq!(
        server.ok(&["delete", "deploy", "nginx-deployment", "-n", "data"]),
        "deployment.apps \"nginx-deployment\" deleted\n"
    );
    assert_eq!(
        server.run(&["get", "deploy", "-n", "data"]).stderr,
        "No resources found in data namespace.\n"
    );
    let stderr = server
        .run(&["delete", "deploy", "nginx-deployment", "-n", "data"])
        .failure();
    assert_eq!(
        stderr,
        "Error from server (NotFound): deployments.apps \"nginx-deployment\" not found\n"
    );
    let stderr = server
        .run(&["get", "deploy", "nope", "-n", "data"])
        .failure();
    assert_eq!(
        stderr,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
}

#[test]
fn statefulset_and_daemonset_seeds_are_stored_with_defaults() {
    let server = Server::start();
    create_namespace(&server, "data");
    let statefulset = example("seed/statefulset.yaml");
    assert_eq!(
        server.ok(&["apply", "-n", "data", "-f", statefulset.to_str().unwrap()]),
        "service/nginx created\nstatefulset.apps/nginx-statefulset created\n"
    );
    let daemonset = example("seed/daemonset.yaml");
    assert_eq!(
        server.ok(&["apply", "-n", "data", "-f", daemonset.to_str().unwrap()]),
        "daemonset.apps/fluentd created\n"
    );

    let sts = server.get_json(&["get", "sts", "nginx-statefulset", "-n", "data"]);
    let spec = &sts["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["status"]["phase"],
        "Pending"
    );

    let ds = server.get_json(&["get", "ds", "fluentd", "-n", "data"]);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"],
        json!({"log-enabled": "true"})
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["volumes"][0]["hostPath"],
        json!({"path": "/var/log", "type": ""})
    );

    let statefulsets = parse_table(&server.ok(&["get", "sts", "-n", "data"]));
    assert_eq!(
        cell(row(&statefulsets, "nginx-statefulset"), "READY"),
        format!("{}/3", status_count(&sts, "readyReplicas"))
    );
    let daemonsets = parse_table(&server.ok(&["get", "ds", "-n", "data"]));
    let fluentd = row(&daemonsets, "fluentd");
    assert_eq!(cell(fluentd, "NODE SELECTOR"), "log-enabled=true");
    assert_eq!(
        cell(fluentd, "DESIRED"),
        status_count(&ds, "desiredNumberScheduled")
    );
}

#[test]
fn statefulset_seed_headless_service_is_stored_with_defaults() {
    let server = Server::start();
    create_namespace(&server, "data");
    let statefulset = example("seed/statefulset.yaml");
    server.ok(&["apply", "-n", "data", "-f", statefulset.to_str().unwrap()]);
    let service = server.get_json(&["get", "svc", "nginx", "-n", "data"]);
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["sessionAffinity"], "None");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "web", "port": 80, "protocol": "TCP", "targetPort": 80}])
    );

    let services = parse_table(&server.ok(&["get", "svc", "-n", "data"]));
    let nginx = row(&services, "nginx");
    assert_eq!(
        (
            cell(nginx, "TYPE"),
            cell(nginx, "CLUSTER-IP"),
            cell(nginx, "EXTERNAL-IP"),
            cell(nginx, "PORT(S)")
        ),
        ("ClusterIP", "None", "<none>", "80/TCP")
    );
}

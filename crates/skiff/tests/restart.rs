//! Restarting `skiff server` on the same data directory keeps every object, the CA and the token,
//! so a kubeconfig written before the restart keeps working.

mod common;

use common::{Server, apply_seed_deployment, create_config_map};

#[test]
fn objects_ca_and_token_survive_a_restart() {
    let mut server = Server::start();
    apply_seed_deployment(&server, "data");
    create_config_map(&server, "data", "settings", "color", "blue");
    server.ok(&[
        "label",
        "deploy",
        "nginx-deployment",
        "-n",
        "data",
        "env=prod",
    ]);
    let before = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    let kubeconfig_before = server.kubeconfig_value();
    let old_kubeconfig = server.write_file(
        "old-kubeconfig.yaml",
        &std::fs::read_to_string(server.kubeconfig()).unwrap(),
    );

    // SIGKILL, not a clean shutdown: every acknowledged write must already be durable.
    server.restart();

    let after = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    assert_eq!(after, before, "the deployment changed across the restart");
    assert_eq!(
        server.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "data",
            "-o",
            "jsonpath={.data.color}"
        ]),
        "blue"
    );
    assert_eq!(
        server.ok(&["get", "pvc", "-n", "data", "-o", "name"]),
        "persistentvolumeclaim/demo-volume-claim\n"
    );

    let kubeconfig_after = server.kubeconfig_value();
    assert_eq!(
        kubeconfig_after["clusters"][0]["cluster"]["certificate-authority-data"],
        kubeconfig_before["clusters"][0]["cluster"]["certificate-authority-data"],
        "the CA changed"
    );
    assert_eq!(
        kubeconfig_after["users"][0]["user"]["token"],
        kubeconfig_before["users"][0]["user"]["token"],
        "the token changed"
    );
    let listed = server
        .kubectl(&["get", "deploy", "-n", "data", "-o", "name"])
        .kubeconfig(&old_kubeconfig)
        .run()
        .success();
    assert_eq!(listed, "deployment.apps/nginx-deployment\n");

    // Writes continue from where the store left off: resourceVersions keep growing.
    server.ok(&[
        "scale",
        "deploy",
        "nginx-deployment",
        "--replicas=4",
        "-n",
        "data",
    ]);
    let scaled = server.get_json(&["get", "deploy", "nginx-deployment", "-n", "data"]);
    let version = |object: &serde_json::Value| {
        object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        version(&scaled) > version(&before),
        "{} <= {}",
        version(&scaled),
        version(&before)
    );
}

#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let mut checked = 0;
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".key") || name == "token" || name == "kubeconfig.yaml" {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is mode {mode:o}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the kubeconfig and at least one key file in {}",
        server.data_dir().display()
    );
}

//! Namespaces as upstream: the four built-in ones exist, and deleting one removes its contents.

mod common;

use common::{
    Server, apply_seed_deployment, cell, create_config_map, create_namespace, parse_table,
};

#[test]
fn built_in_namespaces_exist() {
    let server = Server::start();
    let table = parse_table(&server.ok(&["get", "ns"]));
    let rows: Vec<(&str, &str)> = table
        .iter()
        .map(|r| (cell(r, "NAME"), cell(r, "STATUS")))
        .collect();
    assert_eq!(
        rows,
        [
            ("default", "Active"),
            ("kube-node-lease", "Active"),
            ("kube-public", "Active"),
            ("kube-system", "Active")
        ]
    );
}

#[test]
fn deleting_a_namespace_removes_everything_in_it() {
    let server = Server::start();
    apply_seed_deployment(&server, "doomed");
    create_config_map(&server, "doomed", "settings", "a", "b");
    create_namespace(&server, "kept");
    create_config_map(&server, "kept", "settings", "a", "b");

    // kubectl waits until the namespace is gone.
    assert_eq!(
        server.ok(&["delete", "namespace", "doomed", "--timeout=100s"]),
        "namespace \"doomed\" deleted\n"
    );
    let stderr = server.run(&["get", "ns", "doomed"]).failure();
    assert_eq!(
        stderr,
        "Error from server (NotFound): namespaces \"doomed\" not found\n"
    );
    for kind in ["deploy", "pvc", "cm"] {
        let listed = server.run(&["get", kind, "-n", "doomed", "-o", "name"]);
        assert_eq!(
            (listed.code, listed.stdout.as_str()),
            (0, ""),
            "{kind} left in the deleted namespace"
        );
    }
    assert_eq!(
        server.ok(&["get", "cm", "settings", "-n", "kept", "-o", "name"]),
        "configmap/settings\n"
    );

    // The name can be used again.
    create_namespace(&server, "doomed");
}

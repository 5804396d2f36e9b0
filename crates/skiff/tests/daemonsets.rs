//! DaemonSets through the real kubectl, as upstream's controller behaves: the tutorial's fluentd
//! log collector follows node labels, joins, cordons and taints, `get ds` and `describe ds`
//! report it, the tutorial's patch stops it while its misplaced variant (`nodeSelector` under
//! `spec`) changes nothing with a warning, exactly as upstream answers it; rollouts are
//! recorded as ControllerRevisions that `kubectl rollout` reads, undoes and restarts, OnDelete
//! waits for deletions, deleting the DaemonSet collects its pods, a failed node keeps its
//! daemon pod and a deleted one loses it.
//!
//! The rolling-update invariants (at most one daemon pod per node without surge, two with;
//! never more than maxUnavailable eligible nodes without an available pod) are checked on
//! every state a kube-rs pod watcher sees, which kubectl cannot observe state by state.

mod common;
mod workloads;

use common::{Server, cell, example, parse_table, row, wait_until};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use workloads::{
    NAME_ALPHABET, PodWatch, SETTLE, apply, controller_of, is_ready, live_pods, name, wait_event,
};

/// The simulated-pod annotation that delays readiness.
const SIM_READY_AFTER: &str = "skiff.dev/sim-ready-after";

/// The label carrying the hash of the revision a daemon pod was created from.
const REVISION_HASH: &str = "controller-revision-hash";

/// Starts a server with `nodes` simulated nodes (`sim-0001`...) and no local node, passing
/// `extra_args` too, and waits until every node is Ready.
fn start_cluster(nodes: usize, extra_args: &[&str]) -> Server {
    let count = nodes.to_string();
    let mut args = vec!["--no-local-node", "--sim-nodes", &count];
    args.extend_from_slice(extra_args);
    let server = Server::start_with(&args);
    let expected: Vec<String> = (1..=nodes).map(|n| format!("sim-{n:04}")).collect();
    wait_until("every node Ready", SETTLE, || {
        let listed = server.ok(&["get", "nodes", "--no-headers"]);
        let ready: Vec<&str> = listed
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        if ready == expected {
            Ok(())
        } else {
            Err(listed)
        }
    });
    server
}

/// A DaemonSet selecting `app=<name>` with one container `app` running `image`, on every
/// node, with the default (RollingUpdate, maxUnavailable 1) strategy. Tests adjust the rest.
fn daemon_set(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

/// Applies a manifest value in the default namespace; returns kubectl's output.
#[track_caller]
fn apply_value(server: &Server, manifest: &Value) -> String {
    apply(server, "default", &manifest.to_string())
}

/// Applies the tutorial's fluentd DaemonSet (`examples/seed/daemonset.yaml`).
fn apply_fluentd(server: &Server) {
    let manifest = example("seed/daemonset.yaml");
    assert_eq!(
        server.ok(&["apply", "-f", manifest.to_str().unwrap()]),
        "daemonset.apps/fluentd created\n"
    );
}

/// The node a daemon pod is on or meant for: `spec.nodeName`, else the `metadata.name` its
/// required node affinity names (how upstream maps unscheduled daemon pods to nodes).
fn target_node(pod: &Value) -> String {
    let bound = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if !bound.is_empty() {
        return bound.to_owned();
    }
    pod.pointer(
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0",
    )
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_owned()
}

/// The live pods matching `selector`, by the node they are for.
fn pods_by_node(server: &Server, selector: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pod in live_pods(server, "default", selector) {
        by_node.entry(target_node(&pod)).or_default().push(pod);
    }
    by_node
}

/// A one-line summary of pods by node, for failure messages.
fn summary(by_node: &BTreeMap<String, Vec<Value>>) -> String {
    let nodes: Vec<String> = by_node
        .iter()
        .map(|(node, pods)| {
            let pods: Vec<String> = pods
                .iter()
                .map(|p| format!("{}(ready={})", name(p), is_ready(p)))
                .collect();
            format!("{node}: {}", pods.join(" "))
        })
        .collect();
    nodes.join("; ")
}

/// Waits until exactly one live pod matching `selector` runs on each of `nodes`, bound and
/// ready, with the container image `image`, and none elsewhere; returns them by node.
#[track_caller]
fn wait_daemon_pods(
    server: &Server,
    selector: &str,
    nodes: &[&str],
    image: &str,
) -> BTreeMap<String, Value> {
    wait_until(
        &format!("one ready {image} pod on each of {nodes:?}"),
        SETTLE,
        || {
            let by_node = pods_by_node(server, selector);
            let settled = by_node.keys().map(String::as_str).eq(nodes.iter().copied())
                && by_node.iter().all(|(node, pods)| {
                    pods.len() == 1
                        && pods[0]["spec"]["nodeName"] == node.as_str()
                        && is_ready(&pods[0])
                        && pods[0]["spec"]["containers"][0]["image"] == image
                });
            if settled {
                Ok(by_node
                    .into_iter()
                    .map(|(node, mut pods)| (node, pods.remove(0)))
                    .collect())
            } else {
                Err(summary(&by_node))
            }
        },
    )
}

/// Waits until no pod matches `selector` any more, terminating ones included.
#[track_caller]
fn wait_no_pods(server: &Server, selector: &str) {
    wait_until(&format!("no pods {selector}"), SETTLE, || {
        let names = server.ok(&["get", "pods", "-l", selector, "-o", "name"]);
        if names.is_empty() { Ok(()) } else { Err(names) }
    });
}

/// The `kubectl get ds <name>` row as its cells from DESIRED to NODE SELECTOR.
fn ds_counts(server: &Server, name: &str) -> Vec<String> {
    let table = parse_table(&server.ok(&["get", "ds", name]));
    let row = row(&table, name);
    [
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
    ]
    .iter()
    .map(|column| cell(row, column).to_owned())
    .collect()
}

/// Waits until `kubectl get ds <name>` shows `wanted` (DESIRED ... AVAILABLE, NODE SELECTOR).
#[track_caller]
fn wait_ds_counts(server: &Server, name: &str, wanted: [&str; 6]) {
    wait_until(&format!("get ds {name} showing {wanted:?}"), SETTLE, || {
        let seen = ds_counts(server, name);
        if seen == wanted {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
}

/// The default tolerations upstream gives every daemon pod, as `key:operator:effect`.
const DAEMON_TOLERATIONS: [&str; 6] = [
    "node.kubernetes.io/not-ready:Exists:NoExecute",
    "node.kubernetes.io/unreachable:Exists:NoExecute",
    "node.kubernetes.io/disk-pressure:Exists:NoSchedule",
    "node.kubernetes.io/memory-pressure:Exists:NoSchedule",
    "node.kubernetes.io/pid-pressure:Exists:NoSchedule",
    "node.kubernetes.io/unschedulable:Exists:NoSchedule",
];

/// A pod's tolerations as `key:operator:effect` (with `:<seconds>` when bounded).
fn tolerations(pod: &Value) -> Vec<String> {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let text = |field: &str| t[field].as_str().unwrap_or_default().to_owned();
            let mut toleration = format!("{}:{}:{}", text("key"), text("operator"), text("effect"));
            if let Some(seconds) = t["tolerationSeconds"].as_i64() {
                toleration.push_str(&format!(":{seconds}"));
            }
            toleration
        })
        .collect()
}

/// `describe` output with runs of whitespace collapsed, one entry per line.
fn described_lines(described: &str) -> Vec<String> {
    described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn fluentd_follows_node_labels_and_reports_through_get_and_describe() {
    let server = start_cluster(3, &[]);
    apply_fluentd(&server);
    // No node is labelled yet: nothing to run, and the DaemonSet says so.
    wait_ds_counts(
        &server,
        "fluentd",
        ["0", "0", "0", "0", "0", "log-enabled=true"],
    );
    assert_eq!(
        server.ok(&["get", "pods", "-l", "app=fluentd", "-o", "name"]),
        ""
    );

    for node in ["sim-0001", "sim-0002"] {
        assert_eq!(
            server.ok(&["label", "node", node, "log-enabled=true"]),
            format!("node/{node} labeled\n")
        );
    }
    let pods = wait_daemon_pods(
        &server,
        "app=fluentd",
        &["sim-0001", "sim-0002"],
        "fluent/fluentd:v1.16-1",
    );
    wait_ds_counts(
        &server,
        "fluentd",
        ["2", "2", "2", "2", "2", "log-enabled=true"],
    );
    let table = parse_table(&server.ok(&["get", "daemonset"]));
    assert_eq!(
        table[0].iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );

    // Each pod is the template plus upstream's daemon additions: named from `fluentd-`,
    // controlled by the DaemonSet, labelled with the revision hash and the legacy template
    // generation, bound by the scheduler through a matchFields term naming its node, and
    // tolerating node problems.
    let ds = server.get_json(&["get", "ds", "fluentd"]);
    let revisions = server.get_json(&["get", "controllerrevisions"]);
    let revisions = revisions["items"].as_array().expect("a list");
    assert_eq!(revisions.len(), 1, "{revisions:#?}");
    let hash = revisions[0]["metadata"]["labels"][REVISION_HASH]
        .as_str()
        .expect("the revision's hash label");
    assert_eq!(
        name(&revisions[0]),
        format!("fluentd-{hash}"),
        "a revision is named <daemonset>-<hash>"
    );
    assert_eq!(revisions[0]["revision"], 1);
    for (node, pod) in &pods {
        let suffix = name(pod).strip_prefix("fluentd-").unwrap_or_default();
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| NAME_ALPHABET.contains(c)),
            "pod name {}",
            name(pod)
        );
        assert_eq!(pod["metadata"]["generateName"], "fluentd-");
        assert_eq!(
            controller_of(pod),
            Some(&json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": "fluentd",
                "uid": ds["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }))
        );
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "fluentd", REVISION_HASH: hash, "pod-template-generation": "1"})
        );
        assert_eq!(
            pod["spec"]["affinity"],
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node]}
                ]}]
            }}})
        );
        assert_eq!(tolerations(pod), DAEMON_TOLERATIONS);
        assert_eq!(pod["spec"]["nodeSelector"], json!({"log-enabled": "true"}));
    }

    let described = described_lines(&server.ok(&["describe", "ds", "fluentd"]));
    for expected in [
        "Name: fluentd",
        "Selector: app=fluentd",
        "Node-Selector: log-enabled=true",
        "Labels: app=fluentd",
        "Annotations: deprecated.daemonset.template.generation: 1",
        "Desired Number of Nodes Scheduled: 2",
        "Current Number of Nodes Scheduled: 2",
        "Number of Nodes Scheduled with Up-to-date Pods: 2",
        "Number of Nodes Scheduled with Available Pods: 2",
        "Number of Nodes Misscheduled: 0",
        "Pods Status: 2 Running / 0 Waiting / 0 Succeeded / 0 Failed",
        "Type Reason Age From Message",
    ] {
        assert!(
            described.iter().any(|l| l == expected),
            "no line {expected:?} in {described:#?}"
        );
    }
    for pod in pods.values() {
        let created = format!("daemonset-controller Created pod: {}", name(pod));
        assert!(
            described
                .iter()
                .any(|l| l.starts_with("Normal SuccessfulCreate") && l.ends_with(&created)),
            "no event line {created:?} in {described:#?}"
        );
    }

    // A node losing the label loses its pod; a node gaining it gets one.
    assert_eq!(
        server.ok(&["label", "node", "sim-0002", "log-enabled-"]),
        "node/sim-0002 unlabeled\n"
    );
    assert_eq!(
        server.ok(&["label", "node", "sim-0003", "log-enabled=true"]),
        "node/sim-0003 labeled\n"
    );
    let moved = wait_daemon_pods(
        &server,
        "app=fluentd",
        &["sim-0001", "sim-0003"],
        "fluent/fluentd:v1.16-1",
    );
    assert_eq!(
        name(&moved["sim-0001"]),
        name(&pods["sim-0001"]),
        "the pod on a node still labelled stays"
    );
    wait_event(
        &server,
        "default",
        "DaemonSet",
        "fluentd",
        "SuccessfulDelete",
        &format!("Deleted pod: {}", name(&pods["sim-0002"])),
    );
    wait_ds_counts(
        &server,
        "fluentd",
        ["2", "2", "2", "2", "2", "log-enabled=true"],
    );
}

#[test]
fn a_node_joining_with_the_label_gets_a_pod_and_cordoning_keeps_it() {
    let server = start_cluster(2, &[]);
    apply_fluentd(&server);
    server.ok(&["label", "node", "sim-0001", "log-enabled=true"]);
    let before = wait_daemon_pods(
        &server,
        "app=fluentd",
        &["sim-0001"],
        "fluent/fluentd:v1.16-1",
    );

    // A simulated node joins already labelled: it gets a pod of its own.
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: logs-1\n  labels:\n    log-enabled: \"true\"\n  annotations:\n    skiff.dev/simulated: \"true\"\n";
    assert_eq!(
        server
            .kubectl(&["apply", "-f", "-"])
            .stdin(node)
            .run()
            .success(),
        "node/logs-1 created\n"
    );
    wait_daemon_pods(
        &server,
        "app=fluentd",
        &["logs-1", "sim-0001"],
        "fluent/fluentd:v1.16-1",
    );

    // Daemon pods tolerate `unschedulable`: a cordoned node keeps its pod and still counts.
    assert_eq!(
        server.ok(&["cordon", "sim-0001"]),
        "node/sim-0001 cordoned\n"
    );
    wait_until("the unschedulable taint", SETTLE, || {
        let taints = server.ok(&["get", "node", "sim-0001", "-o", "jsonpath={.spec.taints}"]);
        if taints.contains("node.kubernetes.io/unschedulable") {
            Ok(())
        } else {
            Err(taints)
        }
    });
    // An untolerated NoSchedule taint stops new pods but keeps the running one, which
    // counts as misscheduled; an untolerated NoExecute taint removes it.
    assert_eq!(
        server.ok(&["taint", "node", "logs-1", "dedicated=db:NoSchedule"]),
        "node/logs-1 tainted\n"
    );
    wait_until("logs-1 misscheduled", SETTLE, || {
        let ds = server.get_json(&["get", "ds", "fluentd"]);
        let status = &ds["status"];
        let seen = (
            status["desiredNumberScheduled"].as_u64(),
            status["currentNumberScheduled"].as_u64(),
            status["numberMisscheduled"].as_u64(),
        );
        if seen == (Some(1), Some(1), Some(1)) {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
    let pods = wait_daemon_pods(
        &server,
        "app=fluentd",
        &["logs-1", "sim-0001"],
        "fluent/fluentd:v1.16-1",
    );
    assert_eq!(name(&pods["sim-0001"]), name(&before["sim-0001"]));
    assert_eq!(
        server.ok(&["taint", "node", "logs-1", "dedicated=db:NoExecute"]),
        "node/logs-1 tainted\n"
    );
    wait_daemon_pods(
        &server,
        "app=fluentd",
        &["sim-0001"],
        "fluent/fluentd:v1.16-1",
    );
    wait_ds_counts(
        &server,
        "fluentd",
        ["1", "1", "1", "1", "1", "log-enabled=true"],
    );
    let described = described_lines(&server.ok(&["describe", "ds", "fluentd"]));
    assert!(
        described
            .iter()
            .any(|l| l == "Number of Nodes Misscheduled: 0"),
        "{described:#?}"
    );
}

/// The tutorial's misplaced patch: `nodeSelector` directly under the DaemonSet's `spec`.
const MISPLACED_PATCH: &str = r#"{"spec":{"nodeSelector":{"non-existent-nodeselector":"NA"}}}"#;

/// The tutorial's patch that stops the DaemonSet: a node selector no node matches.
const STOPPING_PATCH: &str =
    r#"{"spec":{"template":{"spec":{"nodeSelector":{"non-existent-nodeselector":"NA"}}}}}"#;

#[test]
fn the_tutorials_patch_stops_fluentd_and_its_misplaced_variant_changes_nothing() {
    let server = start_cluster(2, &[]);
    for node in ["sim-0001", "sim-0002"] {
        server.ok(&["label", "node", node, "log-enabled=true"]);
    }
    apply_fluentd(&server);
    let pods = wait_daemon_pods(
        &server,
        "app=fluentd",
        &["sim-0001", "sim-0002"],
        "fluent/fluentd:v1.16-1",
    );

    // `kubectl patch` has no `--validate` flag and sends no `fieldValidation`, so the API
    // server's default, Warn, applies (upstream's `fieldValidation("")`): the strategic merge
    // keeps the unknown field, decoding drops it with a warning, and nothing changes.
    let output = server.run(&["patch", "daemonset", "fluentd", "-p", MISPLACED_PATCH]);
    assert_eq!(
        (output.code, output.stdout.as_str(), output.stderr.as_str()),
        (
            0,
            "daemonset.apps/fluentd patched (no change)\n",
            "Warning: unknown field \"spec.nodeSelector\"\n"
        )
    );
    let ds = server.get_json(&["get", "ds", "fluentd"]);
    assert_eq!(ds["metadata"]["generation"], 1);
    assert_eq!(ds["spec"].get("nodeSelector"), None);

    assert_eq!(
        server.ok(&["patch", "daemonset", "fluentd", "-p", STOPPING_PATCH]),
        "daemonset.apps/fluentd patched\n"
    );
    wait_no_pods(&server, "app=fluentd");
    wait_ds_counts(
        &server,
        "fluentd",
        [
            "0",
            "0",
            "0",
            "0",
            "0",
            "log-enabled=true,non-existent-nodeselector=NA",
        ],
    );
    for pod in pods.values() {
        wait_event(
            &server,
            "default",
            "DaemonSet",
            "fluentd",
            "SuccessfulDelete",
            &format!("Deleted pod: {}", name(pod)),
        );
    }
}

/// `kubectl rollout status daemonset/<name>`, bounded so that a stuck controller fails the
/// test; checks that the rollout succeeded.
#[track_caller]
fn wait_rolled_out(server: &Server, name: &str) {
    let stdout = server.ok(&[
        "rollout",
        "status",
        &format!("daemonset/{name}"),
        "--timeout=90s",
    ]);
    assert!(
        stdout.ends_with(&format!("daemon set \"{name}\" successfully rolled out\n")),
        "{stdout}"
    );
}

/// `kubectl rollout history daemonset/<name>` as (revision, change-cause) rows.
fn history(server: &Server, name: &str) -> Vec<(u64, String)> {
    let stdout = server.ok(&["rollout", "history", &format!("daemonset/{name}")]);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().map(str::trim_end),
        Some(format!("daemonset.apps/{name}").as_str()),
        "{stdout}"
    );
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["REVISION", "CHANGE-CAUSE"]),
        "{stdout}"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (number, cause) = l.split_once(' ').unwrap_or((l, ""));
            (
                number.parse().unwrap_or_else(|_| panic!("{stdout}")),
                cause.trim().to_owned(),
            )
        })
        .collect()
}

/// The ControllerRevisions of the default namespace as (name, revision), by revision.
fn revisions(server: &Server) -> Vec<(String, u64)> {
    let list = server.get_json(&["get", "controllerrevisions"]);
    let mut revisions: Vec<(String, u64)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (name(r).to_owned(), r["revision"].as_u64().unwrap_or(0)))
        .collect();
    revisions.sort_by_key(|(_, revision)| *revision);
    revisions
}

/// The revision hash every pod in `pods` carries (fails if they differ).
#[track_caller]
fn common_hash(pods: &BTreeMap<String, Value>) -> String {
    let hashes: std::collections::BTreeSet<&str> = pods
        .values()
        .map(|p| {
            p["metadata"]["labels"][REVISION_HASH]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    hashes.into_iter().next().unwrap_or_default().to_owned()
}

#[test]
fn rollout_status_history_undo_restart_and_delete() {
    let server = start_cluster(3, &[]);
    let nodes = ["sim-0001", "sim-0002", "sim-0003"];
    assert_eq!(
        apply_value(&server, &daemon_set("agent", "nginx:1.25")),
        "daemonset.apps/agent created\n"
    );
    wait_rolled_out(&server, "agent");
    let first = wait_daemon_pods(&server, "app=agent", &nodes, "nginx:1.25");
    let first_hash = common_hash(&first);
    assert_eq!(history(&server, "agent"), [(1, "<none>".to_owned())]);

    assert_eq!(
        server.ok(&["set", "image", "daemonset/agent", "app=nginx:1.26"]),
        "daemonset.apps/agent image updated\n"
    );
    wait_rolled_out(&server, "agent");
    let second = wait_daemon_pods(&server, "app=agent", &nodes, "nginx:1.26");
    let second_hash = common_hash(&second);
    assert_ne!(first_hash, second_hash);
    assert_eq!(
        revisions(&server),
        [
            (format!("agent-{first_hash}"), 1),
            (format!("agent-{second_hash}"), 2)
        ]
    );
    assert_eq!(
        history(&server, "agent"),
        [(1, "<none>".to_owned()), (2, "<none>".to_owned())]
    );
    let detail =
        described_lines(&server.ok(&["rollout", "history", "daemonset/agent", "--revision=1"]));
    assert_eq!(detail[0], "daemonset.apps/agent with revision #1");
    assert!(
        detail.iter().any(|l| l == "Image: nginx:1.25"),
        "{detail:#?}"
    );

    // Undo applies revision 1's data, a strategic merge patch replacing the template: the
    // first template comes back, and its revision is renumbered as the newest.
    assert_eq!(
        server.ok(&["rollout", "undo", "daemonset/agent"]),
        "daemonset.apps/agent rolled back\n"
    );
    wait_rolled_out(&server, "agent");
    let undone = wait_daemon_pods(&server, "app=agent", &nodes, "nginx:1.25");
    assert_eq!(common_hash(&undone), first_hash);
    assert_eq!(
        revisions(&server),
        [
            (format!("agent-{second_hash}"), 2),
            (format!("agent-{first_hash}"), 3)
        ]
    );
    assert_eq!(
        history(&server, "agent"),
        [(2, "<none>".to_owned()), (3, "<none>".to_owned())]
    );
    assert_eq!(
        server
            .run(&["rollout", "undo", "daemonset/agent", "--to-revision=9"])
            .failure(),
        "error: unable to find specified revision 9 in history\n"
    );

    // Restart stamps the template, so every pod is replaced.
    assert_eq!(
        server.ok(&["rollout", "restart", "daemonset/agent"]),
        "daemonset.apps/agent restarted\n"
    );
    wait_rolled_out(&server, "agent");
    let restarted = wait_daemon_pods(&server, "app=agent", &nodes, "nginx:1.25");
    for (node, pod) in &restarted {
        assert_ne!(
            name(pod),
            name(&undone[node]),
            "the pod on {node} was replaced"
        );
        assert!(
            pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
            "{pod:#}"
        );
    }
    assert_eq!(
        history(&server, "agent")
            .iter()
            .map(|(revision, _)| *revision)
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );

    // Deleting the DaemonSet deletes its pods (the garbage collector follows the owner
    // references) and its revisions.
    assert_eq!(
        server.ok(&["delete", "daemonset/agent"]),
        "daemonset.apps \"agent\" deleted\n"
    );
    wait_no_pods(&server, "app=agent");
    wait_until("the revisions collected", SETTLE, || {
        let left = revisions(&server);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

#[test]
#[ignore = "history::template_patch does not yet write revision data byte for byte as upstream \
            (Go's typed JSON: sorted keys, `creationTimestamp: null`, `resources: {}`), which \
            kubectl compares to decide that an undo is a no-op"]
fn undo_to_the_current_revision_is_skipped() {
    let server = start_cluster(1, &[]);
    apply_value(&server, &daemon_set("agent", "nginx:1.25"));
    wait_rolled_out(&server, "agent");
    assert_eq!(
        server.ok(&["rollout", "undo", "daemonset/agent", "--to-revision=1"]),
        "daemonset.apps/agent skipped rollback (current template already matches revision 1)\n"
    );
}

#[test]
fn on_delete_replaces_a_pod_only_once_it_is_deleted() {
    let server = start_cluster(2, &[]);
    let mut manifest = daemon_set("manual", "nginx:1.25");
    manifest["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    apply_value(&server, &manifest);
    let before = wait_daemon_pods(
        &server,
        "app=manual",
        &["sim-0001", "sim-0002"],
        "nginx:1.25",
    );

    assert_eq!(
        server.ok(&["set", "image", "daemonset/manual", "app=nginx:1.26"]),
        "daemonset.apps/manual image updated\n"
    );
    assert_eq!(
        server
            .run(&["rollout", "status", "daemonset/manual"])
            .failure(),
        "error: rollout status is only available for RollingUpdate strategy type\n"
    );
    // Once the new generation is observed, no pod is up to date and none was replaced.
    wait_until("generation 2 observed", SETTLE, || {
        let ds = server.get_json(&["get", "ds", "manual"]);
        if ds["status"]["observedGeneration"] == 2 {
            Ok(())
        } else {
            Err(format!("{}", ds["status"]))
        }
    });
    wait_ds_counts(&server, "manual", ["2", "2", "2", "0", "2", "<none>"]);
    let kept = wait_daemon_pods(
        &server,
        "app=manual",
        &["sim-0001", "sim-0002"],
        "nginx:1.25",
    );
    assert_eq!(kept, before);

    // A deleted pod comes back from the new template; the other stays as it was.
    let deleted = name(&before["sim-0001"]);
    assert_eq!(
        server.ok(&["delete", "pod", deleted]),
        format!("pod \"{deleted}\" deleted\n")
    );
    wait_until("a new pod on sim-0001", SETTLE, || {
        let by_node = pods_by_node(&server, "app=manual");
        let on_first = by_node
            .get("sim-0001")
            .map(Vec::as_slice)
            .unwrap_or_default();
        let replaced = on_first.len() == 1
            && on_first[0]["spec"]["containers"][0]["image"] == "nginx:1.26"
            && is_ready(&on_first[0]);
        if replaced {
            Ok(())
        } else {
            Err(summary(&by_node))
        }
    });
    let after = pods_by_node(&server, "app=manual");
    assert_eq!(after["sim-0002"], [before["sim-0002"].clone()]);
    wait_ds_counts(&server, "manual", ["2", "2", "2", "1", "2", "<none>"]);
}

/// The node a watched daemon pod is for (see [`target_node`]).
fn pod_node(pod: &Pod) -> String {
    target_node(&serde_json::to_value(pod).expect("a pod serializes"))
}

/// Whether a watched pod is Ready and not being deleted: available, with minReadySeconds 0.
fn pod_available(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A check for [`PodWatch`] over a DaemonSet on `nodes`: at most `max_per_node` pods not
/// being deleted on any node, and at most `max_unavailable` of the nodes without an
/// available pod.
fn daemon_bounds(
    nodes: &'static [&'static str],
    max_per_node: usize,
    max_unavailable: usize,
) -> impl FnMut(&[&Pod]) -> Result<(), String> + Send + 'static {
    move |pods| {
        let mut live: BTreeMap<String, usize> = BTreeMap::new();
        let mut available: BTreeMap<String, usize> = BTreeMap::new();
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_none() {
                *live.entry(pod_node(pod)).or_default() += 1;
            }
            if pod_available(pod) {
                *available.entry(pod_node(pod)).or_default() += 1;
            }
        }
        let crowded: Vec<_> = live.iter().filter(|(_, n)| **n > max_per_node).collect();
        let without: Vec<_> = nodes
            .iter()
            .filter(|n| !available.contains_key(**n))
            .collect();
        if !crowded.is_empty() {
            Err(format!("more than {max_per_node} pods on {crowded:?}"))
        } else if without.len() > max_unavailable {
            Err(format!(
                "{without:?} without an available pod (at most {max_unavailable} allowed)"
            ))
        } else {
            Ok(())
        }
    }
}

/// The six simulated nodes of the rolling-update test.
const SIX_NODES: &[&str] = &[
    "sim-0001", "sim-0002", "sim-0003", "sim-0004", "sim-0005", "sim-0006",
];

/// `daemon_set` with a RollingUpdate of `max_surge` / `max_unavailable` whose pods become
/// ready a second after starting, so that a rollout takes several steps.
fn rolling_daemon_set(name: &str, image: &str, max_surge: u32, max_unavailable: u32) -> Value {
    let mut manifest = daemon_set(name, image);
    manifest["spec"]["updateStrategy"] = json!({
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
    });
    manifest["spec"]["template"]["metadata"]["annotations"] = json!({SIM_READY_AFTER: "1s"});
    manifest
}

#[test]
fn rolling_updates_stay_within_max_unavailable_and_max_surge() {
    let server = start_cluster(SIX_NODES.len(), &[]);

    // maxUnavailable 2, no surge: never two pods on a node, never more than two nodes
    // without an available pod.
    apply_value(&server, &rolling_daemon_set("roll", "nginx:1.25", 0, 2));
    wait_daemon_pods(&server, "app=roll", SIX_NODES, "nginx:1.25");
    let watch = PodWatch::start(&server, "app=roll", daemon_bounds(SIX_NODES, 1, 2));
    server.ok(&["set", "image", "daemonset/roll", "app=nginx:1.26"]);
    wait_rolled_out(&server, "roll");
    wait_daemon_pods(&server, "app=roll", SIX_NODES, "nginx:1.26");
    let observed = watch.finish();
    assert_eq!(observed.violations, Vec::<String>::new());
    // At least one state per pod deleted and per pod created.
    assert!(
        observed.states >= 12,
        "only {} states seen",
        observed.states
    );

    // maxSurge 1, maxUnavailable 0: a new pod starts next to the old one, which goes once
    // the new one is available; every node always has an available pod.
    apply_value(&server, &rolling_daemon_set("surge", "nginx:1.25", 1, 0));
    wait_daemon_pods(&server, "app=surge", SIX_NODES, "nginx:1.25");
    let watch = PodWatch::start(&server, "app=surge", daemon_bounds(SIX_NODES, 2, 0));
    server.ok(&["set", "image", "daemonset/surge", "app=nginx:1.26"]);
    wait_rolled_out(&server, "surge");
    wait_daemon_pods(&server, "app=surge", SIX_NODES, "nginx:1.26");
    let observed = watch.finish();
    assert_eq!(observed.violations, Vec::<String>::new());
    assert!(
        observed.states >= 12,
        "only {} states seen",
        observed.states
    );
}

#[test]
fn a_failed_node_keeps_its_daemon_pod_and_a_deleted_one_loses_it() {
    // The grace period must outlast the Lease renewal interval (10 s, as the kubelet's).
    let server = start_cluster(3, &["--node-monitor-grace-period", "15"]);
    let nodes = ["sim-0001", "sim-0002", "sim-0003"];
    apply_value(&server, &daemon_set("agent", "nginx:1.25"));
    let before = wait_daemon_pods(&server, "app=agent", &nodes, "nginx:1.25");

    assert_eq!(
        server.ok(&[
            "annotate",
            "node",
            "sim-0001",
            "skiff.dev/heartbeat=stopped"
        ]),
        "node/sim-0001 annotated\n"
    );
    wait_until(
        "sim-0001 tainted unreachable",
        Duration::from_secs(90),
        || {
            let taints = server.ok(&[
                "get",
                "node",
                "sim-0001",
                "-o",
                "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
            ]);
            if taints
                == "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute "
            {
                Ok(())
            } else {
                Err(taints)
            }
        },
    );
    // The untolerated NoSchedule taint takes the node out of the desired set, but the pod,
    // tolerating the NoExecute one, stays bound there (counted as misscheduled) and no
    // replacement appears anywhere: give eviction and the controller time to act.
    wait_until("sim-0001 no longer desired", SETTLE, || {
        let status = server.get_json(&["get", "ds", "agent"])["status"].clone();
        if status["desiredNumberScheduled"] == 2 && status["numberMisscheduled"] == 1 {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
    std::thread::sleep(Duration::from_secs(5));
    let during = pods_by_node(&server, "app=agent");
    assert_eq!(during.len(), 3, "{}", summary(&during));
    for (node, pod) in &before {
        assert_eq!(during[node].len(), 1, "{}", summary(&during));
        assert_eq!(name(&during[node][0]), name(pod));
        assert_eq!(during[node][0]["spec"]["nodeName"], node.as_str());
    }

    // Deleting the node: pod GC removes the pod bound to it, and nothing replaces it.
    assert_eq!(
        server.ok(&["delete", "node", "sim-0001"]),
        "node \"sim-0001\" deleted\n"
    );
    wait_until(
        "the pod of sim-0001 collected",
        Duration::from_secs(100),
        || {
            let by_node = pods_by_node(&server, "app=agent");
            let names: Vec<&str> = by_node.values().flatten().map(name).collect();
            let wanted = [name(&before["sim-0002"]), name(&before["sim-0003"])];
            if names == wanted {
                Ok(())
            } else {
                Err(summary(&by_node))
            }
        },
    );
    wait_until("sim-0001 forgotten", SETTLE, || {
        let status = server.get_json(&["get", "ds", "agent"])["status"].clone();
        if status["desiredNumberScheduled"] == 2
            && status.get("numberMisscheduled").is_none_or(|n| n == 0)
        {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
}

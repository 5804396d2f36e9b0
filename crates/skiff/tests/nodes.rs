//! Nodes, the scheduler and node lifecycle through the real kubectl: scheduling with each
//! filter, cordon/taint/drain, simulated node failure, nodes added with `kubectl apply`, and
//! a server restart that keeps pods where they are.
//!
//! Most tests run `--no-local-node --sim-nodes 3` so that the scheduler's "0/3 nodes are
//! available" messages do not depend on the machine.

mod common;

use common::{Server, cell, parse_table, row, wait_until};
use serde_json::Value;
use std::time::Duration;

/// How long a pod may take to be scheduled and run, or a node to change, on a busy machine.
const SETTLE: Duration = Duration::from_secs(30);

/// Starts a server with `extra_args` and waits until the `expected` nodes are all Ready.
fn start_cluster(extra_args: &[&str], expected: &[&str]) -> Server {
    let server = Server::start_with(extra_args);
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

/// A server with three simulated nodes and no local node.
fn three_sim_nodes() -> Server {
    start_cluster(
        &["--no-local-node", "--sim-nodes", "3"],
        &["sim-0001", "sim-0002", "sim-0003"],
    )
}

/// Applies `manifest` and checks kubectl's one line of output.
#[track_caller]
fn apply(server: &Server, manifest: &str, expected: &str) {
    let stdout = server
        .kubectl(&["apply", "-f", "-"])
        .stdin(manifest)
        .run()
        .success();
    assert_eq!(stdout, format!("{expected}\n"));
}

/// Creates pod `name` (one container) whose spec ends with `spec_yaml`, indented as under
/// `spec:` (e.g. `"  nodeName: sim-0001\n"`).
#[track_caller]
fn create_pod(server: &Server, name: &str, spec_yaml: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: nginx\n{spec_yaml}"
    );
    apply(server, &manifest, &format!("pod/{name} created"));
}

/// A pod spec fragment for [`create_pod`] that requires node `node` by a `matchFields` term
/// on `metadata.name`, as DaemonSet pods do.
fn pinned_to(node: &str) -> String {
    format!(
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchFields:\n          - key: metadata.name\n            operator: In\n            values: [{node}]\n"
    )
}

/// `kubectl get pod NAME -o jsonpath=TEMPLATE`.
fn pod_jsonpath(server: &Server, name: &str, template: &str) -> String {
    server.ok(&["get", "pod", name, "-o", &format!("jsonpath={template}")])
}

/// Waits until pod `name` is Running and ready on `node`.
#[track_caller]
fn wait_running_on(server: &Server, name: &str, node: &str) {
    let wanted = format!("{node} Running True");
    wait_until(&format!("pod {name} running on {node}"), SETTLE, || {
        let seen = pod_jsonpath(
            server,
            name,
            "{.spec.nodeName} {.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        );
        if seen == wanted { Ok(()) } else { Err(seen) }
    });
}

/// Waits until pod `name` has PodScheduled=False, reason Unschedulable, with `message`.
#[track_caller]
fn wait_unschedulable(server: &Server, name: &str, message: &str) {
    let wanted = format!("False Unschedulable {message}");
    wait_until(&format!("pod {name} unschedulable"), SETTLE, || {
        let seen = pod_jsonpath(
            server,
            name,
            "{.status.conditions[?(@.type==\"PodScheduled\")]['status','reason','message']}",
        );
        if seen == wanted { Ok(()) } else { Err(seen) }
    });
}

/// The (type, reason, message) of the events about `kind/name`, in the server's order.
/// (No `--sort-by .lastTimestamp`: events written through events.k8s.io/v1, as the
/// scheduler's, have no lastTimestamp, and kubectl fails on a list without that field.)
fn events_about(server: &Server, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let list = server.get_json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .expect("an event list")
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (text("type"), text("reason"), text("message"))
        })
        .collect()
}

/// Waits until an event about `kind/name` has `reason` and `message`.
#[track_caller]
fn wait_event(server: &Server, kind: &str, name: &str, reason: &str, message: &str) {
    wait_until(
        &format!("a {reason} event about {kind}/{name}"),
        SETTLE,
        || {
            let events = events_about(server, kind, name);
            if events.iter().any(|(_, r, m)| r == reason && m == message) {
                Ok(())
            } else {
                Err(format!("{events:#?}"))
            }
        },
    );
}

/// The node's taints as `key=value:effect` (`key:effect` without a value).
fn taints(server: &Server, node: &str) -> Vec<String> {
    let node = server.get_json(&["get", "node", node]);
    node["spec"]["taints"]
        .as_array()
        .map(|taints| {
            taints
                .iter()
                .map(|t| {
                    let key = t["key"].as_str().unwrap_or_default();
                    let effect = t["effect"].as_str().unwrap_or_default();
                    match t["value"].as_str() {
                        Some(value) if !value.is_empty() => format!("{key}={value}:{effect}"),
                        _ => format!("{key}:{effect}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The STATUS column of `kubectl get node NAME`.
fn node_status(server: &Server, node: &str) -> String {
    let table = parse_table(&server.ok(&["get", "node", node]));
    cell(row(&table, node), "STATUS").to_owned()
}

#[test]
fn scheduling_filters_node_name_selector_affinity_and_taints() {
    let server = three_sim_nodes();
    assert_eq!(
        server.ok(&["label", "node", "sim-0002", "disk=ssd"]),
        "node/sim-0002 labeled\n"
    );
    assert_eq!(
        server.ok(&["taint", "nodes", "sim-0003", "dedicated=infra:NoSchedule"]),
        "node/sim-0003 tainted\n"
    );

    // nodeName bypasses the scheduler, taints included.
    create_pod(&server, "named", "  nodeName: sim-0003\n");
    create_pod(&server, "selected", "  nodeSelector:\n    disk: ssd\n");
    create_pod(
        &server,
        "affine",
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - key: kubernetes.io/hostname\n            operator: In\n            values: [sim-0001]\n",
    );
    // As the DaemonSet controller pins its pods.
    create_pod(
        &server,
        "pinned",
        &format!(
            "{}  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: infra\n    effect: NoSchedule\n",
            pinned_to("sim-0003")
        ),
    );
    create_pod(&server, "pinned-untolerated", &pinned_to("sim-0003"));
    create_pod(
        &server,
        "untolerated",
        "  nodeSelector:\n    kubernetes.io/hostname: sim-0003\n",
    );
    wait_running_on(&server, "named", "sim-0003");
    wait_running_on(&server, "selected", "sim-0002");
    wait_running_on(&server, "affine", "sim-0001");
    wait_running_on(&server, "pinned", "sim-0003");
    wait_unschedulable(
        &server,
        "untolerated",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    assert_eq!(
        pod_jsonpath(&server, "untolerated", "{.status.phase}"),
        "Pending"
    );
    // Nodes that a matchFields term leaves out are never filtered; upstream counts them apart.
    wait_unschedulable(
        &server,
        "pinned-untolerated",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    // Removing the taint lets the waiting pods in.
    assert_eq!(
        server.ok(&["taint", "nodes", "sim-0003", "dedicated=infra:NoSchedule-"]),
        "node/sim-0003 untainted\n"
    );
    wait_running_on(&server, "untolerated", "sim-0003");
    wait_running_on(&server, "pinned-untolerated", "sim-0003");
    wait_event(
        &server,
        "Pod",
        "untolerated",
        "Scheduled",
        "Successfully assigned default/untolerated to sim-0003",
    );
}

#[test]
fn a_pod_too_big_for_every_node_stays_pending() {
    let server = three_sim_nodes();
    assert_eq!(
        server.ok(&["taint", "nodes", "sim-0003", "dedicated=infra:NoSchedule"]),
        "node/sim-0003 tainted\n"
    );
    // Simulated nodes have 32 cpus.
    create_pod(
        &server,
        "huge",
        "    resources:\n      requests:\n        cpu: \"33\"\n",
    );
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.";
    wait_unschedulable(&server, "huge", message);
    wait_event(&server, "Pod", "huge", "FailedScheduling", message);

    // kubectl describe shows the event from the default-scheduler.
    let described = server.ok(&["describe", "pod", "huge"]);
    let events = described
        .split_once("\nEvents:\n")
        .unwrap_or_else(|| panic!("no Events in:\n{described}"))
        .1;
    let failed: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("FailedScheduling"))
        .collect();
    assert_eq!(failed.len(), 1, "{events}");
    let columns: Vec<&str> = failed[0].split_whitespace().collect();
    assert_eq!(
        (columns[0], columns[1], columns[3]),
        ("Warning", "FailedScheduling", "default-scheduler"),
        "{events}"
    );
    assert!(
        failed[0].ends_with(&format!("default-scheduler  {message}")),
        "{events}"
    );

    // A pod that fits is placed on an untainted node.
    create_pod(
        &server,
        "fits",
        "    resources:\n      requests:\n        cpu: \"32\"\n",
    );
    let node = wait_until("pod fits scheduled", SETTLE, || {
        let node = pod_jsonpath(&server, "fits", "{.spec.nodeName}");
        if node.is_empty() { Err(node) } else { Ok(node) }
    });
    assert!(
        node == "sim-0001" || node == "sim-0002",
        "scheduled on {node}"
    );
    wait_running_on(&server, "fits", &node);
}

#[test]
fn an_unschedulable_pod_is_scheduled_once_a_node_is_labelled() {
    let server = three_sim_nodes();
    create_pod(&server, "ssd", "  nodeSelector:\n    disk: ssd\n");
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    wait_unschedulable(&server, "ssd", message);

    assert_eq!(
        server.ok(&["label", "node", "sim-0002", "disk=ssd"]),
        "node/sim-0002 labeled\n"
    );
    wait_running_on(&server, "ssd", "sim-0002");
    wait_event(
        &server,
        "Pod",
        "ssd",
        "Scheduled",
        "Successfully assigned default/ssd to sim-0002",
    );
    let mut events = events_about(&server, "Pod", "ssd");
    events.sort();
    assert_eq!(
        events,
        [
            (
                "Normal".to_owned(),
                "Scheduled".to_owned(),
                "Successfully assigned default/ssd to sim-0002".to_owned()
            ),
            (
                "Warning".to_owned(),
                "FailedScheduling".to_owned(),
                message.to_owned()
            ),
        ]
    );

    // `kubectl get events` lists both, as upstream prints them.
    let listed = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=ssd",
    ]);
    let table = parse_table(&listed);
    let mut summary: Vec<(&str, &str, &str, &str)> = table
        .iter()
        .map(|r| {
            (
                cell(r, "TYPE"),
                cell(r, "REASON"),
                cell(r, "OBJECT"),
                cell(r, "MESSAGE"),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (
                "Normal",
                "Scheduled",
                "pod/ssd",
                "Successfully assigned default/ssd to sim-0002"
            ),
            ("Warning", "FailedScheduling", "pod/ssd", message),
        ],
        "{listed}"
    );
}

#[test]
fn cordon_uncordon_and_taint_commands() {
    let server = three_sim_nodes();
    assert_eq!(
        server.ok(&["cordon", "sim-0001"]),
        "node/sim-0001 cordoned\n"
    );
    assert_eq!(
        server.ok(&["cordon", "sim-0001"]),
        "node/sim-0001 already cordoned\n"
    );
    assert_eq!(node_status(&server, "sim-0001"), "Ready,SchedulingDisabled");
    assert_eq!(
        server.ok(&[
            "get",
            "node",
            "sim-0001",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        "true"
    );
    // The node lifecycle controller mirrors the cordon as a taint.
    wait_until("the unschedulable taint", SETTLE, || {
        let seen = taints(&server, "sim-0001");
        if seen == ["node.kubernetes.io/unschedulable:NoSchedule"] {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    assert_eq!(
        server.ok(&["taint", "nodes", "sim-0002", "dedicated=infra:NoSchedule"]),
        "node/sim-0002 tainted\n"
    );
    assert_eq!(
        server
            .run(&["taint", "nodes", "sim-0002", "dedicated=other:NoSchedule"])
            .failure(),
        "error: node sim-0002 already has dedicated taint(s) with same effect(s) and --overwrite is false\n"
    );

    create_pod(
        &server,
        "on-one",
        "  nodeSelector:\n    kubernetes.io/hostname: sim-0001\n",
    );
    wait_unschedulable(
        &server,
        "on-one",
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: infra}, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    assert_eq!(
        server.ok(&["uncordon", "sim-0001"]),
        "node/sim-0001 uncordoned\n"
    );
    assert_eq!(
        server.ok(&["uncordon", "sim-0001"]),
        "node/sim-0001 already uncordoned\n"
    );
    assert_eq!(node_status(&server, "sim-0001"), "Ready");
    wait_running_on(&server, "on-one", "sim-0001");
    wait_until("the unschedulable taint removed", SETTLE, || {
        let seen = taints(&server, "sim-0001");
        if seen.is_empty() {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    assert_eq!(
        server.ok(&["taint", "nodes", "sim-0002", "dedicated-"]),
        "node/sim-0002 untainted\n"
    );
    assert_eq!(taints(&server, "sim-0002"), Vec::<String>::new());
}

#[test]
fn drain_evicts_pods_and_cordons_the_node() {
    let server = three_sim_nodes();
    // A DaemonSet that runs on sim-0001 only; drain leaves its pod alone.
    apply(
        &server,
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      nodeSelector:\n        kubernetes.io/hostname: sim-0001\n      containers:\n      - name: agent\n        image: busybox\n",
        "daemonset.apps/agent created",
    );
    let daemon_pod = wait_until("the daemon pod", SETTLE, || {
        let name = server.ok(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        if name.is_empty() { Err(name) } else { Ok(name) }
    });
    create_pod(&server, "bare", "  nodeName: sim-0001\n");
    create_pod(&server, "elsewhere", "  nodeName: sim-0002\n");
    wait_running_on(&server, &daemon_pod, "sim-0001");
    wait_running_on(&server, "bare", "sim-0001");
    wait_running_on(&server, "elsewhere", "sim-0002");

    let drained = server
        .kubectl(&[
            "drain",
            "sim-0001",
            "--ignore-daemonsets",
            "--force",
            "--timeout=60s",
        ])
        .run();
    assert_eq!(
        (drained.code, drained.stdout.as_str()),
        (
            0,
            "node/sim-0001 cordoned\nevicting pod default/bare\npod/bare evicted\nnode/sim-0001 drained\n",
        ),
        "stderr:\n{}",
        drained.stderr
    );
    // kubectl joins its warnings in Go map order.
    let mut warnings: Vec<&str> = drained
        .stderr
        .strip_prefix("Warning: ")
        .and_then(|w| w.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("drain printed no warning line: {:?}", drained.stderr))
        .split("; ")
        .collect();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "deleting Pods that declare no controller: default/bare",
            format!("ignoring DaemonSet-managed Pods: default/{daemon_pod}").as_str()
        ]
    );
    assert_eq!(node_status(&server, "sim-0001"), "Ready,SchedulingDisabled");
    let remaining = server.ok(&[
        "get",
        "pods",
        "-o",
        "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,STATUS:.status.phase",
    ]);
    let rows: Vec<Vec<&str>> = remaining
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec![daemon_pod.as_str(), "sim-0001", "Running"],
            vec!["elsewhere", "sim-0002", "Running"]
        ],
        "{remaining}"
    );
}

#[test]
fn a_node_that_stops_heartbeating_is_tainted_and_its_pods_evicted() {
    // The grace period must outlast the Lease renewal interval (10 s, as the kubelet's):
    // shorter ones make healthy nodes flap NotReady between renewals.
    let server = start_cluster(
        &[
            "--no-local-node",
            "--sim-nodes",
            "3",
            "--node-monitor-grace-period",
            "15",
        ],
        &["sim-0001", "sim-0002", "sim-0003"],
    );
    create_pod(
        &server,
        "short-lived",
        "  nodeName: sim-0001\n  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 2\n",
    );
    create_pod(&server, "patient", "  nodeName: sim-0001\n");
    wait_running_on(&server, "short-lived", "sim-0001");
    wait_running_on(&server, "patient", "sim-0001");
    // DefaultTolerationSeconds admission gave the second pod upstream's 300 s tolerations.
    assert_eq!(
        pod_jsonpath(
            &server,
            "patient",
            "{range .spec.tolerations[*]}{.key}:{.effect}:{.tolerationSeconds} {end}"
        ),
        "node.kubernetes.io/not-ready:NoExecute:300 node.kubernetes.io/unreachable:NoExecute:300 "
    );

    assert_eq!(
        server.ok(&[
            "annotate",
            "node",
            "sim-0001",
            "skiff.dev/heartbeat=stopped"
        ]),
        "node/sim-0001 annotated\n"
    );
    wait_until("sim-0001 NotReady", Duration::from_secs(45), || {
        let status = node_status(&server, "sim-0001");
        if status == "NotReady" {
            Ok(())
        } else {
            Err(status)
        }
    });
    assert_eq!(
        server.ok(&[
            "get",
            "node",
            "sim-0001",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason}/{.message}\n{end}"
        ]),
        "MemoryPressure=Unknown/NodeStatusUnknown/Kubelet stopped posting node status.\n\
         DiskPressure=Unknown/NodeStatusUnknown/Kubelet stopped posting node status.\n\
         PIDPressure=Unknown/NodeStatusUnknown/Kubelet stopped posting node status.\n\
         Ready=Unknown/NodeStatusUnknown/Kubelet stopped posting node status.\n"
    );
    wait_until("the unreachable taints", SETTLE, || {
        let seen = taints(&server, "sim-0001");
        if seen
            == [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
            ]
        {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    wait_event(
        &server,
        "Node",
        "sim-0001",
        "NodeNotReady",
        "Node sim-0001 status is now: NodeNotReady",
    );
    // Evicted after its 2 s; with the kubelet gone it stays Terminating.
    wait_event(
        &server,
        "Pod",
        "short-lived",
        "TaintManagerEviction",
        "Marking for deletion Pod default/short-lived",
    );
    assert_ne!(
        pod_jsonpath(&server, "short-lived", "{.metadata.deletionTimestamp}"),
        ""
    );
    assert_eq!(
        pod_jsonpath(&server, "patient", "{.metadata.deletionTimestamp}"),
        ""
    );
    assert_eq!(node_status(&server, "sim-0002"), "Ready");

    // Heartbeats resume: the taints go, the evicted pod finishes and the other stays.
    assert_eq!(
        server.ok(&["annotate", "node", "sim-0001", "skiff.dev/heartbeat-"]),
        "node/sim-0001 annotated\n"
    );
    wait_until("sim-0001 Ready and untainted", SETTLE, || {
        let (status, seen) = (
            node_status(&server, "sim-0001"),
            taints(&server, "sim-0001"),
        );
        if status == "Ready" && seen.is_empty() {
            Ok(())
        } else {
            Err(format!("{status} {seen:?}"))
        }
    });
    wait_until("the evicted pod removed", SETTLE, || {
        let names = server.ok(&["get", "pods", "-o", "name"]);
        if names == "pod/patient\n" {
            Ok(())
        } else {
            Err(names)
        }
    });
    wait_running_on(&server, "patient", "sim-0001");
    wait_event(
        &server,
        "Pod",
        "patient",
        "TaintManagerEviction",
        "Cancelling deletion of Pod default/patient",
    );
}

#[test]
fn deleting_a_node_garbage_collects_its_pods() {
    // A short grace period also shortens pod GC's quarantine of a deleted node's pods.
    let server = start_cluster(
        &[
            "--no-local-node",
            "--sim-nodes",
            "3",
            "--node-monitor-grace-period",
            "4",
        ],
        &["sim-0001", "sim-0002", "sim-0003"],
    );
    create_pod(&server, "orphan", "  nodeName: sim-0002\n");
    create_pod(&server, "kept", "  nodeName: sim-0001\n");
    wait_running_on(&server, "orphan", "sim-0002");
    wait_running_on(&server, "kept", "sim-0001");
    // The node lifecycle controller reports removing only nodes it has seen.
    wait_event(
        &server,
        "Node",
        "sim-0002",
        "RegisteredNode",
        "Node sim-0002 event: Registered Node sim-0002 in Controller",
    );

    assert_eq!(
        server.ok(&["delete", "node", "sim-0002"]),
        "node \"sim-0002\" deleted\n"
    );
    wait_event(
        &server,
        "Node",
        "sim-0002",
        "RemovingNode",
        "Node sim-0002 event: Removing Node sim-0002 from Controller",
    );
    wait_until(
        "the orphaned pod collected",
        Duration::from_secs(100),
        || {
            let names = server.ok(&["get", "pods", "-o", "name"]);
            if names == "pod/kept\n" {
                Ok(())
            } else {
                Err(names)
            }
        },
    );
    wait_running_on(&server, "kept", "sim-0001");
}

#[test]
fn a_simulated_node_joins_with_kubectl_apply_and_leaves_with_delete() {
    let server = three_sim_nodes();
    create_pod(&server, "gpu-job", "  nodeSelector:\n    pool: gpu\n");
    wait_unschedulable(
        &server,
        "gpu-job",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    apply(
        &server,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: gpu-1\n  labels:\n    pool: gpu\n  annotations:\n    skiff.dev/simulated: \"true\"\n",
        "node/gpu-1 created",
    );
    wait_until("gpu-1 Ready", SETTLE, || {
        let status = node_status(&server, "gpu-1");
        if status == "Ready" {
            Ok(())
        } else {
            Err(status)
        }
    });
    wait_running_on(&server, "gpu-job", "gpu-1");
    // The simulator creates the node's Lease on its next renewal round (within 10 s).
    wait_until("the gpu-1 Lease", SETTLE, || {
        let leases = server.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
        if leases.contains("/gpu-1\n") {
            Ok(())
        } else {
            Err(leases)
        }
    });

    assert_eq!(
        server.ok(&["delete", "node", "gpu-1"]),
        "node \"gpu-1\" deleted\n"
    );
    assert_eq!(
        server.run(&["get", "node", "gpu-1"]).failure(),
        "Error from server (NotFound): nodes \"gpu-1\" not found\n"
    );
    // Its heartbeat Lease, owned by the Node, is garbage-collected; by then the simulator,
    // had it kept the node, would have registered it again.
    wait_until("the gpu-1 Lease collected", SETTLE, || {
        let leases = server.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
        if leases.contains("/gpu-1\n") {
            Err(leases)
        } else {
            Ok(())
        }
    });
    assert_eq!(
        server.ok(&["get", "nodes", "-o", "name"]),
        "node/sim-0001\nnode/sim-0002\nnode/sim-0003\n"
    );
}

#[test]
fn node_listing_and_description() {
    let server = three_sim_nodes();
    create_pod(
        &server,
        "sized",
        "    resources:\n      requests:\n        cpu: \"8\"\n        memory: 64Gi\n  nodeName: sim-0001\n",
    );
    wait_running_on(&server, "sized", "sim-0001");

    let wide = parse_table(&server.ok(&["get", "nodes", "-o", "wide"]));
    for name in ["sim-0001", "sim-0002", "sim-0003"] {
        let node = row(&wide, name);
        // A simulated node's InternalIP is numbered after its pod CIDR: 10.a.b.0/24 gives
        // 172.(16+10).a.b.
        let cidr = server.ok(&["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"]);
        let octets: Vec<&str> = cidr.trim_end_matches(".0/24").split('.').collect();
        assert_eq!(octets[0], "10", "pod CIDR {cidr}");
        let internal_ip = format!("172.26.{}.{}", octets[1], octets[2]);
        let columns: Vec<(&str, &str)> = node
            .iter()
            .filter(|(header, _)| header != "AGE")
            .map(|(header, value)| (header.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("NAME", name),
                ("STATUS", "Ready"),
                ("ROLES", "<none>"),
                ("VERSION", "v1.33.0"),
                ("INTERNAL-IP", internal_ip.as_str()),
                ("EXTERNAL-IP", "<none>"),
                ("OS-IMAGE", "skiff simulated node"),
                ("KERNEL-VERSION", "<unknown>"),
                ("CONTAINER-RUNTIME", "skiff-sim://0.1.0"),
            ]
        );
    }

    let described = wait_until("the RegisteredNode event in describe", SETTLE, || {
        let described = server.ok(&["describe", "node", "sim-0001"]);
        // The event and the first Lease renewal come shortly after registration.
        if described.contains("RegisteredNode") && described.contains("HolderIdentity:  sim-0001") {
            Ok(described)
        } else {
            Err(described)
        }
    });
    let expected_blocks = [
        "Name:               sim-0001\nRoles:              <none>\nLabels:             beta.kubernetes.io/arch=amd64\n",
        "Annotations:        skiff.dev/simulated: true\n",
        "Taints:             <none>\nUnschedulable:      false\nLease:\n  HolderIdentity:  sim-0001\n",
        "Capacity:\n  cpu:                32\n  ephemeral-storage:  100Gi\n  hugepages-1Gi:      0\n  hugepages-2Mi:      0\n  memory:             256Gi\n  pods:               110\n\
         Allocatable:\n  cpu:                32\n  ephemeral-storage:  100Gi\n  hugepages-1Gi:      0\n  hugepages-2Mi:      0\n  memory:             256Gi\n  pods:               110\n",
        "  Operating System:           linux\n  Architecture:               amd64\n  Container Runtime Version:  skiff-sim://0.1.0\n  Kubelet Version:            v1.33.0\n",
        "Non-terminated Pods:          (1 in total)\n",
        "  Resource           Requests    Limits\n  --------           --------    ------\n  cpu                8 (25%)     0 (0%)\n  memory             64Gi (25%)  0 (0%)\n  ephemeral-storage  0 (0%)      0 (0%)\n",
        "  Namespace                   Name     CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age\n  ---------                   ----     ------------  ----------  ---------------  -------------  ---\n  default                     sized    8 (25%)       0 (0%)      64Gi (25%)       0 (0%)         ",
    ];
    for block in expected_blocks {
        assert!(
            described.contains(block),
            "describe node lacks\n{block}\nin\n{described}"
        );
    }
    let conditions: Vec<(String, String)> = described
        .lines()
        .skip_while(|l| !l.starts_with("Conditions:"))
        .skip(3)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // Type, Status, two timestamps of six words each, Reason, Message.
            (format!("{} {}", words[0], words[1]), words[14..].join(" "))
        })
        .collect();
    let expected: Vec<(String, String)> = [
        (
            "MemoryPressure False",
            "KubeletHasSufficientMemory kubelet has sufficient memory available",
        ),
        (
            "DiskPressure False",
            "KubeletHasNoDiskPressure kubelet has no disk pressure",
        ),
        (
            "PIDPressure False",
            "KubeletHasSufficientPID kubelet has sufficient PID available",
        ),
        ("Ready True", "KubeletReady kubelet is posting ready status"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(conditions, expected, "{described}");
    let registered = described
        .lines()
        .find(|l| l.contains("RegisteredNode"))
        .unwrap_or_else(|| panic!("no RegisteredNode event in\n{described}"));
    let words: Vec<&str> = registered.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[3], words[4..].join(" ")),
        (
            "Normal",
            "RegisteredNode",
            "node-controller",
            "Node sim-0001 event: Registered Node sim-0001 in Controller".to_owned()
        ),
        "{described}"
    );
}

/// The pods as (name, uid, node, phase, pod IP, restart count), sorted by name.
fn pod_identities(server: &Server) -> Vec<Value> {
    let list = server.get_json(&["get", "pods"]);
    list["items"]
        .as_array()
        .expect("a pod list")
        .iter()
        .map(|p| {
            serde_json::json!([
                p["metadata"]["name"],
                p["metadata"]["uid"],
                p["spec"]["nodeName"],
                p["status"]["phase"],
                p["status"]["podIP"],
                p["status"]["containerStatuses"][0]["restartCount"],
            ])
        })
        .collect()
}

#[test]
fn a_restarted_server_keeps_nodes_and_pods_where_they_are() {
    let local = host_node_name();
    let mut expected_nodes = [local.clone(), "sim-0001".to_owned(), "sim-0002".to_owned()];
    expected_nodes.sort();
    let expected_refs: Vec<&str> = expected_nodes.iter().map(String::as_str).collect();
    let mut server = start_cluster(&["--sim-nodes", "2"], &expected_refs);
    for (pod, node) in [("a", "sim-0001"), ("b", "sim-0002"), ("c", local.as_str())] {
        create_pod(&server, pod, &format!("  nodeName: {node}\n"));
    }
    create_pod(&server, "scheduled", "");
    for (pod, node) in [("a", "sim-0001"), ("b", "sim-0002"), ("c", local.as_str())] {
        wait_running_on(&server, pod, node);
    }
    let scheduled_on = wait_until("pod scheduled placed", SETTLE, || {
        let node = pod_jsonpath(&server, "scheduled", "{.spec.nodeName}");
        if node.is_empty() { Err(node) } else { Ok(node) }
    });
    wait_running_on(&server, "scheduled", &scheduled_on);
    let nodes_before = server.ok(&[
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,UID:.metadata.uid,CIDR:.spec.podCIDR",
    ]);
    let pods_before = pod_identities(&server);

    // Every node's Lease exists before the restart (the first renewal can lag registration).
    let renewals_before = wait_until("every node's Lease", SETTLE, || {
        let renewals = lease_renewals(&server);
        if renewals.len() == expected_nodes.len() {
            Ok(renewals)
        } else {
            Err(format!("{renewals:?}"))
        }
    });
    server.restart();
    // Every agent is back once each Lease has been renewed again.
    // Generous: on a loaded 2-core machine a restarted server's agents can take a while.
    wait_until("every Lease renewed after the restart", 2 * SETTLE, || {
        let renewals = lease_renewals(&server);
        let stale: Vec<_> = renewals
            .iter()
            .filter(|renewal| renewals_before.contains(renewal))
            .collect();
        if renewals.len() == renewals_before.len() && stale.is_empty() {
            Ok(())
        } else {
            Err(format!("before: {renewals_before:?}\nnow: {renewals:?}"))
        }
    });
    assert_eq!(
        server.ok(&[
            "get",
            "nodes",
            "-o",
            "custom-columns=NAME:.metadata.name,UID:.metadata.uid,CIDR:.spec.podCIDR",
        ]),
        nodes_before
    );
    assert_eq!(pod_identities(&server), pods_before);

    // A pod created after the restart gets an address of its own.
    create_pod(&server, "later", "  nodeName: sim-0001\n");
    wait_running_on(&server, "later", "sim-0001");
    let ips = server.ok(&[
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[?(@.spec.nodeName==\"sim-0001\")]}{.status.podIP} {end}",
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "pod IPs on sim-0001: {ips:?}");
    assert_eq!(pod_identities(&server).len(), pods_before.len() + 1);
}

/// Each node Lease's holder and renew time.
fn lease_renewals(server: &Server) -> Vec<String> {
    server
        .ok(&[
            "get",
            "leases",
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={range .items[*]}{.spec.holderIdentity} {.spec.renewTime}\n{end}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The local node's name as `skiff server` registers it: the host name, lower-cased.
fn host_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

//! The ReplicaSet controller through the real kubectl, as upstream's: it keeps `replicas` pods,
//! scales, adopts matching orphans, releases pods whose labels stop matching, and reports
//! every status field.

mod common;
mod workloads;

use common::{Server, cell, parse_table, row, wait_until};
use serde_json::json;
use workloads::{
    NAME_ALPHABET, SETTLE, apply, controller_of, events_about, is_ready, live_pods, name,
};

/// A ReplicaSet selecting `tier=frontend`, whose template adds `app=guestbook`.
fn frontend_manifest(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
        app: guestbook
    spec:
      containers:
      - name: php-redis
        image: nginx:1.25
"#
    )
}

/// Waits until the counts and observedGeneration of the ReplicaSet's status equal `wanted`
/// (an absent count is 0: upstream omits zero counts).
#[track_caller]
fn wait_status(server: &Server, rs: &str, wanted: Status) {
    wait_until(&format!("status {wanted:?} of rs/{rs}"), SETTLE, || {
        let object = server.get_json(&["get", "rs", rs]);
        let count = |field: &str| object["status"][field].as_u64().unwrap_or(0);
        let seen = Status {
            replicas: count("replicas"),
            fully_labeled: count("fullyLabeledReplicas"),
            ready: count("readyReplicas"),
            available: count("availableReplicas"),
            observed_generation: count("observedGeneration"),
        };
        if seen == wanted {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
}

/// The fields of a ReplicaSet's status the controller computes.
#[derive(Debug, PartialEq)]
struct Status {
    replicas: u64,
    fully_labeled: u64,
    ready: u64,
    available: u64,
    observed_generation: u64,
}

/// A [`Status`] from (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
/// observedGeneration).
fn status(
    replicas: u64,
    fully_labeled: u64,
    ready: u64,
    available: u64,
    generation: u64,
) -> Status {
    Status {
        replicas,
        fully_labeled,
        ready,
        available,
        observed_generation: generation,
    }
}

/// The names of the live pods selected by `selector`, sorted.
fn pod_names(server: &Server, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = live_pods(server, "default", selector)
        .iter()
        .map(|p| name(p).to_owned())
        .collect();
    names.sort();
    names
}

/// Waits until exactly `count` live pods match `selector`, all ready, and returns their names.
#[track_caller]
fn wait_ready_pods(server: &Server, selector: &str, count: usize) -> Vec<String> {
    wait_until(&format!("{count} ready pods {selector}"), SETTLE, || {
        let pods = live_pods(server, "default", selector);
        let names: Vec<String> = pods.iter().map(|p| name(p).to_owned()).collect();
        if pods.len() == count && pods.iter().all(is_ready) {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
}

#[test]
fn replicaset_keeps_its_replicas_scales_and_reports_status() {
    let server = Server::start();
    assert_eq!(
        apply(&server, "default", &frontend_manifest(3)),
        "replicaset.apps/frontend created\n"
    );
    let first = wait_ready_pods(&server, "tier=frontend", 3);
    wait_status(&server, "frontend", status(3, 3, 3, 3, 1));

    // Pods are named from generateName `frontend-` and controlled by the ReplicaSet.
    let rs = server.get_json(&["get", "rs", "frontend"]);
    for pod in live_pods(&server, "default", "tier=frontend") {
        let pod_name = name(&pod);
        let suffix = pod_name.strip_prefix("frontend-").unwrap_or_default();
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| NAME_ALPHABET.contains(c)),
            "pod name {pod_name}"
        );
        assert_eq!(pod["metadata"]["generateName"], "frontend-");
        assert_eq!(pod["metadata"]["labels"]["app"], "guestbook");
        assert_eq!(
            controller_of(&pod),
            Some(&json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "frontend",
                "uid": rs["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }))
        );
    }
    let events = events_about(&server, "default", "ReplicaSet", "frontend");
    for pod in &first {
        let created = (
            "Normal".into(),
            "SuccessfulCreate".into(),
            format!("Created pod: {pod}"),
        );
        assert!(events.contains(&created), "{pod}: {events:#?}");
    }

    let table = parse_table(&server.ok(&["get", "rs"]));
    let frontend = row(&table, "frontend");
    let columns: Vec<&str> = frontend.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(columns, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(
        [
            cell(frontend, "DESIRED"),
            cell(frontend, "CURRENT"),
            cell(frontend, "READY")
        ],
        ["3", "3", "3"]
    );

    // A deleted pod is replaced.
    let victim = first[0].clone();
    server.ok(&["delete", "pod", &victim]);
    let replaced = wait_ready_pods(&server, "tier=frontend", 3);
    assert!(
        !replaced.contains(&victim),
        "{victim} still listed: {replaced:?}"
    );

    // Scaling bumps the generation, which the status reports once acted on.
    assert_eq!(
        server.ok(&["scale", "rs", "frontend", "--replicas=5"]),
        "replicaset.apps/frontend scaled\n"
    );
    let five = wait_ready_pods(&server, "tier=frontend", 5);
    wait_status(&server, "frontend", status(5, 5, 5, 5, 2));

    assert_eq!(
        server.ok(&["scale", "rs", "frontend", "--replicas=1"]),
        "replicaset.apps/frontend scaled\n"
    );
    let survivor = wait_ready_pods(&server, "tier=frontend", 1);
    wait_status(&server, "frontend", status(1, 1, 1, 1, 3));
    let events = events_about(&server, "default", "ReplicaSet", "frontend");
    for pod in five.iter().filter(|p| !survivor.contains(p)) {
        let deleted = (
            "Normal".into(),
            "SuccessfulDelete".into(),
            format!("Deleted pod: {pod}"),
        );
        assert!(events.contains(&deleted), "{pod}: {events:#?}");
    }
    let table = parse_table(&server.ok(&["get", "rs", "frontend"]));
    let frontend = row(&table, "frontend");
    assert_eq!(
        [
            cell(frontend, "DESIRED"),
            cell(frontend, "CURRENT"),
            cell(frontend, "READY")
        ],
        ["1", "1", "1"]
    );
}

#[test]
fn replicaset_adopts_a_matching_orphan_and_releases_a_pod_that_stops_matching() {
    // Upstream's conformance test "should adopt matching pods on creation and release no
    // longer matching pods", with a template label the orphan lacks (fullyLabeledReplicas).
    let server = Server::start();
    let orphan = r#"apiVersion: v1
kind: Pod
metadata:
  name: pod-adoption-release
  labels:
    name: pod-adoption-release
spec:
  containers:
  - name: app
    image: nginx:1.25
"#;
    assert_eq!(
        apply(&server, "default", orphan),
        "pod/pod-adoption-release created\n"
    );
    wait_ready_pods(&server, "name=pod-adoption-release", 1);

    let replica_set = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: pod-adoption-release
spec:
  replicas: 1
  selector:
    matchLabels:
      name: pod-adoption-release
  template:
    metadata:
      labels:
        name: pod-adoption-release
        extra: template-only
    spec:
      containers:
      - name: app
        image: nginx:1.25
"#;
    assert_eq!(
        apply(&server, "default", replica_set),
        "replicaset.apps/pod-adoption-release created\n"
    );
    let rs = server.get_json(&["get", "rs", "pod-adoption-release"]);
    let rs_uid = rs["metadata"]["uid"].clone();
    wait_until("the orphan adopted", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "pod-adoption-release"]);
        match controller_of(&pod) {
            Some(owner) if owner["uid"] == rs_uid => Ok(()),
            _ => Err(format!("{}", pod["metadata"])),
        }
    });
    // The adopted pod counts: no second pod, and it lacks the template's `extra` label.
    wait_status(&server, "pod-adoption-release", status(1, 0, 1, 1, 1));
    assert_eq!(
        pod_names(&server, "name=pod-adoption-release"),
        ["pod-adoption-release"]
    );
    let adopted = server.get_json(&["get", "pod", "pod-adoption-release"]);
    assert_eq!(
        adopted["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "pod-adoption-release",
            "uid": rs_uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }])
    );

    // Relabelled out of the selector: released (its reference removed) and replaced.
    assert_eq!(
        server.ok(&[
            "label",
            "pod",
            "pod-adoption-release",
            "name=not-matching",
            "--overwrite"
        ]),
        "pod/pod-adoption-release labeled\n"
    );
    wait_until("the pod released", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "pod-adoption-release"]);
        let refs = &pod["metadata"]["ownerReferences"];
        if refs.is_null() || refs == &json!([]) {
            Ok(())
        } else {
            Err(format!("{refs}"))
        }
    });
    let replacement = wait_ready_pods(&server, "name=pod-adoption-release", 1);
    assert_ne!(replacement, ["pod-adoption-release"]);
    let pod = server.get_json(&["get", "pod", &replacement[0]]);
    assert_eq!(controller_of(&pod).map(|o| &o["uid"]), Some(&rs_uid));
    wait_status(&server, "pod-adoption-release", status(1, 1, 1, 1, 1));
    // The released pod keeps running, on its own.
    let released = server.get_json(&["get", "pod", "pod-adoption-release"]);
    assert!(is_ready(&released), "{}", released["status"]);
}

#[test]
fn scaling_down_deletes_a_pod_that_is_not_ready_first() {
    // Upstream's ranking deletes not-ready pods before ready ones. The orphan never becomes
    // ready (a simulated-pod script) and is adopted as the ReplicaSet's third pod.
    let server = Server::start();
    let orphan = r#"apiVersion: v1
kind: Pod
metadata:
  name: never-ready
  labels:
    tier: frontend
  annotations:
    skiff.dev/sim-ready-after: never
spec:
  containers:
  - name: app
    image: nginx:1.25
"#;
    apply(&server, "default", orphan);
    wait_until("the orphan running", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "never-ready"]);
        match pod["status"]["phase"].as_str() {
            Some("Running") => Ok(()),
            phase => Err(format!("{phase:?}")),
        }
    });
    apply(&server, "default", &frontend_manifest(3));
    wait_status(&server, "frontend", status(3, 2, 2, 2, 1));
    assert!(pod_names(&server, "tier=frontend").contains(&"never-ready".to_owned()));

    server.ok(&["scale", "rs", "frontend", "--replicas=2"]);
    wait_status(&server, "frontend", status(2, 2, 2, 2, 2));
    let names = pod_names(&server, "tier=frontend");
    assert!(!names.contains(&"never-ready".to_owned()), "{names:?}");
}

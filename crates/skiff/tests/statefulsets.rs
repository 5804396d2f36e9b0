//! StatefulSets through the real kubectl, as upstream's controller behaves: the tutorial's
//! `nginx-statefulset` with its headless Service creates its pods one at a time in ordinal
//! order, scales up and down (removing the highest ordinal first), gives each pod its own
//! claim that outlives it, brings a deleted pod back with the same name and volume, and is
//! reported by `get sts`, `describe sts` and the headless Service's endpoints. Rollouts are
//! ControllerRevisions that `kubectl rollout` reads, undoes and restarts; partitions, OnDelete
//! and the Parallel policy behave as upstream; the claim retention policy decides, through the
//! garbage collector, which claims a scale-down or a deletion removes; a pod on a failed node
//! keeps its identity until the node answers or goes.
//!
//! The ordering invariants (pod n never created while a lower ordinal is not Running and
//! Ready; at most one pod per name at any moment; scale-down from the highest ordinal, one at
//! a time) are checked on every state a kube-rs pod watcher sees.

mod common;
mod workloads;

use common::{Server, cell, example, parse_table, row, wait_until};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use workloads::{PodWatch, SETTLE, apply, is_ready, live_pods, name};

/// The tutorial's StatefulSet and the label its pods carry.
const TUTORIAL_SET: &str = "nginx-statefulset";
const TUTORIAL_SELECTOR: &str = "app=nginx-statefulset";

/// The simulated-pod annotation that delays readiness.
const SIM_READY_AFTER: &str = "skiff.dev/sim-ready-after";
/// The simulated-pod annotation that delays stopping on SIGTERM.
const SIM_STOP_AFTER: &str = "skiff.dev/sim-stop-after";

/// Starts a server with `nodes` simulated nodes and no local node, passing `extra_args` too,
/// and waits until every node is Ready.
fn start_cluster(nodes: usize, extra_args: &[&str]) -> Server {
    let count = nodes.to_string();
    let mut args = vec!["--no-local-node", "--sim-nodes", &count];
    args.extend_from_slice(extra_args);
    let server = Server::start_with(&args);
    wait_until("every node Ready", SETTLE, || {
        let listed = server.ok(&["get", "nodes", "--no-headers"]);
        let ready = listed
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == nodes { Ok(()) } else { Err(listed) }
    });
    server
}

/// A StatefulSet `name` governed by the headless Service `name`, selecting `app=<name>`, with
/// one container `app` running `image` and one claim template `data`. Tests adjust the rest.
fn stateful_set(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }],
        },
    })
}

/// Applies a manifest value in the default namespace; returns kubectl's output.
#[track_caller]
fn apply_value(server: &Server, manifest: &Value) -> String {
    apply(server, "default", &manifest.to_string())
}

/// The ordinal at the end of a pod name (`web-3` → 3).
fn ordinal(pod_name: &str) -> i32 {
    pod_name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{pod_name} has no ordinal"))
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn pod_running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What happened to a set's pods, in the order a watcher saw it.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// A pod (a new UID) appeared.
    Created(String),
    /// A pod got its deletion timestamp.
    Terminating(String),
    /// A pod disappeared.
    Gone(String),
}

/// Watches the pods matching `selector`, records every [`Change`] into the returned log, and
/// checks the OrderedReady invariants on every state: a pod appears only while every lower
/// ordinal exists Running and Ready (when `ordered`), a name never changes UID without
/// disappearing in between, and (when `ordered`) at most one pod is terminating at a time.
fn watch_set(
    server: &Server,
    selector: &str,
    ordered: bool,
) -> (PodWatch, Arc<Mutex<Vec<Change>>>) {
    watch_set_across_restarts(server, selector, ordered, false)
}

/// [`watch_set`] for a server that may restart (`restarts`). A state that comes from a relist
/// may hide changes made while the watch was down: a pod that appeared or changed UID in it is
/// recorded but not judged.
fn watch_set_across_restarts(
    server: &Server,
    selector: &str,
    ordered: bool,
    restarts: bool,
) -> (PodWatch, Arc<Mutex<Vec<Change>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let changes = log.clone();
    let mut seen: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let watch = PodWatch::start_across_restarts(
        server,
        selector,
        restarts,
        move |pods, relisted| {
            let mut problems = Vec::new();
            let mut now: BTreeMap<String, (String, bool)> = BTreeMap::new();
            for pod in pods {
                let name = pod_name(pod).to_owned();
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let terminating = pod.metadata.deletion_timestamp.is_some();
                match seen.get(&name) {
                    Some((old_uid, _)) if relisted && *old_uid != uid => {
                        let mut changes = changes.lock().unwrap();
                        changes.push(Change::Gone(name.clone()));
                        changes.push(Change::Created(name.clone()));
                    }
                    None if relisted => changes.lock().unwrap().push(Change::Created(name.clone())),
                    None => {
                        changes.lock().unwrap().push(Change::Created(name.clone()));
                        let blocking: Vec<&str> = pods
                            .iter()
                            .filter(|other| ordinal(pod_name(other)) < ordinal(&name))
                            .filter(|other| {
                                !pod_running_and_ready(other)
                                    || other.metadata.deletion_timestamp.is_some()
                            })
                            .map(|other| pod_name(other))
                            .collect();
                        let missing = (0..ordinal(&name))
                            .filter(|n| !pods.iter().any(|p| ordinal(pod_name(p)) == *n))
                            .count();
                        if ordered && (!blocking.is_empty() || missing > 0) {
                            problems.push(format!(
                            "{name} created while {blocking:?} not ready and {missing} lower missing"
                        ));
                        }
                    }
                    Some((old_uid, _)) if *old_uid != uid => {
                        problems.push(format!("{name} replaced by a new pod without disappearing"));
                    }
                    Some((_, was_terminating)) if terminating && !was_terminating => {
                        changes
                            .lock()
                            .unwrap()
                            .push(Change::Terminating(name.clone()));
                    }
                    Some(_) => {}
                }
                now.insert(name, (uid, terminating));
            }
            for name in seen.keys().filter(|n| !now.contains_key(*n)) {
                changes.lock().unwrap().push(Change::Gone(name.clone()));
            }
            let terminating = now.values().filter(|(_, t)| *t).count();
            if ordered && terminating > 1 {
                problems.push(format!("{terminating} pods terminating at once"));
            }
            seen = now;
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        },
    );
    (watch, log)
}

/// Stops `watch` and fails on any invariant it saw broken.
#[track_caller]
fn finish_watch(watch: PodWatch) {
    let observed = watch.finish();
    assert!(observed.violations.is_empty(), "{:#?}", observed.violations);
    assert!(observed.states > 0, "the watcher saw no state");
}

/// The `kubectl get sts <name>` READY cell.
fn sts_ready(server: &Server, name: &str) -> String {
    let table = parse_table(&server.ok(&["get", "sts", name]));
    cell(row(&table, name), "READY").to_owned()
}

/// Waits until `kubectl get sts <name>` shows READY `wanted` and exactly the live pods
/// `<name>-0 ... <name>-<n-1>` exist, all Running and Ready.
#[track_caller]
fn wait_set_ready(server: &Server, name: &str, replicas: usize) -> Vec<Value> {
    let wanted = format!("{replicas}/{replicas}");
    let names: Vec<String> = (0..replicas).map(|n| format!("{name}-{n}")).collect();
    wait_until(&format!("sts {name} READY {wanted}"), SETTLE, || {
        let ready = sts_ready(server, name);
        let pods = server.get_json(&["get", "pods", "-l", &format!("app={name}")]);
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        let seen: Vec<&str> = pods.iter().map(workloads::name).collect();
        let settled = ready == wanted
            && seen == names
            && pods
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && is_ready(p));
        if settled {
            Ok(pods.clone())
        } else {
            Err(format!("READY {ready}, pods {seen:?}"))
        }
    })
}

/// The claims of the default namespace as name → (phase, volume), `data-...` or `www-...`.
fn claims(server: &Server) -> BTreeMap<String, (String, String)> {
    let list = server.get_json(&["get", "pvc"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                name(c).to_owned(),
                (text(&c["status"]["phase"]), text(&c["spec"]["volumeName"])),
            )
        })
        .collect()
}

/// Waits until the claims of the default namespace are exactly `names`, all Bound; returns
/// them with their volumes.
#[track_caller]
fn wait_claims_bound(server: &Server, names: &[String]) -> BTreeMap<String, String> {
    wait_until(&format!("claims {names:?} bound"), SETTLE, || {
        let claims = claims(server);
        let bound = claims.keys().eq(names.iter())
            && claims
                .values()
                .all(|(phase, volume)| phase == "Bound" && !volume.is_empty());
        if bound {
            Ok(claims.into_iter().map(|(n, (_, v))| (n, v)).collect())
        } else {
            Err(format!("{claims:?}"))
        }
    })
}

/// `<claim>-<set>-<n>` for each ordinal in `ordinals`.
fn claim_names(claim: &str, set: &str, ordinals: impl IntoIterator<Item = i32>) -> Vec<String> {
    ordinals
        .into_iter()
        .map(|n| format!("{claim}-{set}-{n}"))
        .collect()
}

/// `kubectl delete pod <name> --wait=false`. kubectl's wait GETs the pod, then lists and
/// watches it by name for its deletion; simulated pods stop at once and the controller
/// recreates the name at once, so under load the new pod can be in that list and kubectl
/// waits for the deletion of the replacement (seen: no end within 120 s).
#[track_caller]
fn delete_without_waiting(server: &Server, pod: &str) {
    assert_eq!(
        server.ok(&["delete", "pod", pod, "--wait=false"]),
        format!("pod \"{pod}\" deleted\n")
    );
}

/// `kubectl describe` output with runs of whitespace collapsed, line by line.
fn described_lines(described: &str) -> Vec<String> {
    described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_tutorials_statefulset_orders_pods_scales_and_keeps_claims() {
    let server = start_cluster(3, &[]);
    let (watch, log) = watch_set(&server, TUTORIAL_SELECTOR, true);
    let manifest = example("seed/statefulset.yaml");
    assert_eq!(
        server.ok(&["apply", "-f", manifest.to_str().unwrap()]),
        "service/nginx created\nstatefulset.apps/nginx-statefulset created\n"
    );
    let pods = wait_set_ready(&server, TUTORIAL_SET, 3);
    let table = parse_table(&server.ok(&["get", "sts"]));
    assert_eq!(
        table[0].iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["NAME", "READY", "AGE"]
    );
    assert_eq!(cell(row(&table, TUTORIAL_SET), "READY"), "3/3");

    // Identity: hostname and subdomain, the identity labels, the claim as the volume `www`.
    for (n, pod) in pods.iter().enumerate() {
        let pod_name = format!("{TUTORIAL_SET}-{n}");
        assert_eq!(pod["spec"]["hostname"], pod_name.as_str());
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            pod_name.as_str()
        );
        assert_eq!(
            labels["apps.kubernetes.io/pod-index"],
            n.to_string().as_str()
        );
        let volume = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "www")
            .unwrap_or_else(|| panic!("no www volume: {pod:#}"));
        assert_eq!(
            volume["persistentVolumeClaim"]["claimName"],
            format!("www-{pod_name}").as_str()
        );
    }
    let three = claim_names("www", TUTORIAL_SET, 0..3);
    let volumes = wait_claims_bound(&server, &three);

    // The headless Service lists the pods with their hostnames.
    wait_until("endpoints of nginx with hostnames", SETTLE, || {
        let endpoints = server.get_json(&["get", "endpoints", "nginx"]);
        let mut hostnames: Vec<&str> = endpoints["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["hostname"].as_str())
            .collect();
        hostnames.sort();
        if hostnames
            == [
                "nginx-statefulset-0",
                "nginx-statefulset-1",
                "nginx-statefulset-2",
            ]
            && endpoints["subsets"][0]["ports"][0]["port"] == 80
        {
            Ok(())
        } else {
            Err(endpoints.to_string())
        }
    });

    // Describe: counts, strategy and upstream's events, claims before their pods.
    let described = described_lines(&server.ok(&["describe", "sts", TUTORIAL_SET]));
    for wanted in [
        "Name: nginx-statefulset",
        "Replicas: 3 desired | 3 total",
        "Update Strategy: RollingUpdate",
        "Partition: 0",
        "Pods Status: 3 Running / 0 Waiting / 0 Succeeded / 0 Failed",
    ] {
        assert!(
            described.iter().any(|l| l == wanted),
            "{wanted}: {described:#?}"
        );
    }
    let events: Vec<&String> = described
        .iter()
        .filter(|l| l.starts_with("Normal SuccessfulCreate"))
        .collect();
    let mut expected = Vec::new();
    for n in 0..3 {
        expected.push(format!(
            "create Claim www-nginx-statefulset-{n} Pod nginx-statefulset-{n} in StatefulSet nginx-statefulset success"
        ));
        expected.push(format!(
            "create Pod nginx-statefulset-{n} in StatefulSet nginx-statefulset successful"
        ));
    }
    for message in &expected {
        assert!(
            events
                .iter()
                .any(|l| l.ends_with(&format!("statefulset-controller {message}"))),
            "{message}: {described:#?}"
        );
    }

    // A deleted pod comes back with its name, its claim and its volume.
    // Without `--wait`: see `delete_without_waiting`.
    let deleted_uid = pods[1]["metadata"]["uid"].clone();
    delete_without_waiting(&server, "nginx-statefulset-1");
    let back = wait_set_ready(&server, TUTORIAL_SET, 3);
    assert_ne!(back[1]["metadata"]["uid"], deleted_uid);
    assert_eq!(wait_claims_bound(&server, &three), volumes);

    // Scaling up adds 3 then 4; scaling down removes 4, 3, 2, 1, one at a time.
    assert_eq!(
        server.ok(&["scale", "sts", TUTORIAL_SET, "--replicas=5"]),
        "statefulset.apps/nginx-statefulset scaled\n"
    );
    wait_set_ready(&server, TUTORIAL_SET, 5);
    let five = claim_names("www", TUTORIAL_SET, 0..5);
    let volumes = wait_claims_bound(&server, &five);
    log.lock().unwrap().clear();
    assert_eq!(
        server.ok(&["scale", "sts", TUTORIAL_SET, "--replicas=1"]),
        "statefulset.apps/nginx-statefulset scaled\n"
    );
    wait_set_ready(&server, TUTORIAL_SET, 1);
    // Retain (the default): every claim stays bound to its volume.
    assert_eq!(wait_claims_bound(&server, &five), volumes);
    wait_until("the watcher saw the scale-down", SETTLE, || {
        let changes = log.lock().unwrap().clone();
        let wanted: Vec<Change> = (1..5)
            .rev()
            .flat_map(|n| {
                let pod = format!("{TUTORIAL_SET}-{n}");
                [Change::Terminating(pod.clone()), Change::Gone(pod)]
            })
            .collect();
        if changes == wanted {
            Ok(())
        } else {
            Err(format!("{changes:?}"))
        }
    });
    finish_watch(watch);

    // Deleting the set collects its pods and leaves its claims (whenDeleted: Retain).
    assert_eq!(
        server.ok(&["delete", "sts", TUTORIAL_SET]),
        "statefulset.apps \"nginx-statefulset\" deleted\n"
    );
    wait_until("the pods collected", SETTLE, || {
        let left = server.ok(&["get", "pods", "-l", TUTORIAL_SELECTOR, "-o", "name"]);
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(wait_claims_bound(&server, &five), volumes);
}

#[test]
fn the_retention_policy_deletes_claims_on_scale_down_and_with_the_set() {
    let server = start_cluster(2, &[]);
    let mut set = stateful_set("web", 3, "nginx:1.25");
    set["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenScaled": "Delete", "whenDeleted": "Delete"});
    assert_eq!(apply_value(&server, &set), "statefulset.apps/web created\n");
    wait_set_ready(&server, "web", 3);
    wait_claims_bound(&server, &claim_names("data", "web", 0..3));

    assert_eq!(
        server.ok(&["scale", "sts", "web", "--replicas=1"]),
        "statefulset.apps/web scaled\n"
    );
    wait_set_ready(&server, "web", 1);
    // The garbage collector removes the claims of the removed pods only.
    let kept = wait_claims_bound(&server, &claim_names("data", "web", 0..1));
    let claim = server.get_json(&["get", "pvc", "data-web-0"]);
    let owners = &claim["metadata"]["ownerReferences"];
    assert_eq!(owners.as_array().map(Vec::len), Some(1), "{claim:#}");
    assert_eq!(owners[0]["kind"], "StatefulSet");
    assert_eq!(owners[0]["name"], "web");
    assert_eq!(owners[0]["controller"], true);
    assert_eq!(owners[0]["blockOwnerDeletion"], true);

    // Scaling up again creates fresh claims for the new pods; the kept one stays.
    server.ok(&["scale", "sts", "web", "--replicas=2"]);
    wait_set_ready(&server, "web", 2);
    let again = wait_claims_bound(&server, &claim_names("data", "web", 0..2));
    assert_eq!(again["data-web-0"], kept["data-web-0"]);

    assert_eq!(
        server.ok(&["delete", "sts", "web"]),
        "statefulset.apps \"web\" deleted\n"
    );
    wait_until("every claim collected", SETTLE, || {
        let left = claims(&server);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

/// `kubectl rollout status statefulset/<name>`, bounded so that a stuck controller fails the
/// test; returns its last line.
#[track_caller]
fn rollout_status(server: &Server, name: &str) -> String {
    let stdout = server.ok(&[
        "rollout",
        "status",
        &format!("statefulset/{name}"),
        "--timeout=90s",
    ]);
    stdout.lines().last().unwrap_or_default().to_owned()
}

/// `kubectl rollout history statefulset/<name>` revision numbers.
fn history(server: &Server, name: &str) -> Vec<u64> {
    let stdout = server.ok(&["rollout", "history", &format!("statefulset/{name}")]);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().map(str::trim_end),
        Some(format!("statefulset.apps/{name}").as_str()),
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
            assert_eq!(cause.trim(), "<none>", "{stdout}");
            number.parse().unwrap_or_else(|_| panic!("{stdout}"))
        })
        .collect()
}

/// The images of the set's live pods by name.
fn images(server: &Server, name: &str) -> BTreeMap<String, String> {
    live_pods(server, "default", &format!("app={name}"))
        .iter()
        .map(|p| {
            (
                workloads::name(p).to_owned(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// Waits until the set's live pods run exactly `wanted` images by name, ready.
#[track_caller]
fn wait_images(server: &Server, name: &str, wanted: &[&str]) {
    let wanted: BTreeMap<String, String> = wanted
        .iter()
        .enumerate()
        .map(|(n, image)| (format!("{name}-{n}"), (*image).to_owned()))
        .collect();
    wait_until(&format!("{name} pods running {wanted:?}"), SETTLE, || {
        let seen = images(server, name);
        let ready = live_pods(server, "default", &format!("app={name}"))
            .iter()
            .all(is_ready);
        if seen == wanted && ready {
            Ok(())
        } else {
            Err(format!("{seen:?} (all ready: {ready})"))
        }
    });
}

#[test]
fn rollout_status_history_undo_restart_and_partition() {
    let server = start_cluster(2, &[]);
    let (watch, _) = watch_set(&server, "app=web", true);
    apply_value(&server, &stateful_set("web", 3, "nginx:1.25"));
    assert_eq!(
        rollout_status(&server, "web"),
        "partitioned roll out complete: 3 new pods have been updated..."
    );
    assert_eq!(history(&server, "web"), [1]);

    assert_eq!(
        server.ok(&["set", "image", "sts/web", "app=nginx:1.26"]),
        "statefulset.apps/web image updated\n"
    );
    assert_eq!(
        rollout_status(&server, "web"),
        "partitioned roll out complete: 3 new pods have been updated..."
    );
    wait_images(&server, "web", &["nginx:1.26"; 3]);
    assert_eq!(history(&server, "web"), [1, 2]);
    let detail =
        described_lines(&server.ok(&["rollout", "history", "statefulset/web", "--revision=1"]));
    assert_eq!(detail[0], "statefulset.apps/web with revision #1");
    assert!(
        detail.iter().any(|l| l == "Image: nginx:1.25"),
        "{detail:#?}"
    );

    // Undo patches the set with revision 1's data (`$patch: replace` on the template).
    assert_eq!(
        server.ok(&["rollout", "undo", "statefulset/web"]),
        "statefulset.apps/web rolled back\n"
    );
    rollout_status(&server, "web");
    wait_images(&server, "web", &["nginx:1.25"; 3]);
    assert_eq!(history(&server, "web"), [2, 3]);
    let status = server.get_json(&["get", "sts", "web"])["status"].clone();
    assert_eq!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );
    assert_eq!(status["updatedReplicas"], 3, "{status}");

    // Restart stamps the template: every pod is replaced under its name.
    let before: Vec<Value> = live_pods(&server, "default", "app=web")
        .iter()
        .map(|p| p["metadata"]["uid"].clone())
        .collect();
    assert_eq!(
        server.ok(&["rollout", "restart", "statefulset/web"]),
        "statefulset.apps/web restarted\n"
    );
    rollout_status(&server, "web");
    wait_until("every pod restarted", SETTLE, || {
        let pods = live_pods(&server, "default", "app=web");
        let restarted = pods.len() == 3
            && pods.iter().all(|p| {
                is_ready(p)
                    && !before.contains(&p["metadata"]["uid"])
                    && p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string()
            });
        if restarted {
            Ok(())
        } else {
            Err(format!("{}", pods.len()))
        }
    });
    assert_eq!(history(&server, "web"), [2, 3, 4]);

    // A canary: with partition 2 only web-2 moves to the new image.
    server.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    server.ok(&["set", "image", "sts/web", "app=nginx:1.27"]);
    assert_eq!(
        rollout_status(&server, "web"),
        "partitioned roll out complete: 1 new pods have been updated..."
    );
    wait_images(&server, "web", &["nginx:1.25", "nginx:1.25", "nginx:1.27"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        images(&server, "web"),
        BTreeMap::from([
            ("web-0".to_owned(), "nginx:1.25".to_owned()),
            ("web-1".to_owned(), "nginx:1.25".to_owned()),
            ("web-2".to_owned(), "nginx:1.27".to_owned()),
        ])
    );
    let status = server.get_json(&["get", "sts", "web"])["status"].clone();
    assert_ne!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );
    assert_eq!(status["updatedReplicas"], 1, "{status}");
    assert_eq!(status["currentReplicas"], 2, "{status}");
    // Lowering the partition rolls out the rest.
    server.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    assert_eq!(
        rollout_status(&server, "web"),
        "partitioned roll out complete: 3 new pods have been updated..."
    );
    wait_images(&server, "web", &["nginx:1.27"; 3]);
    finish_watch(watch);
}

#[test]
fn on_delete_waits_for_deletions_and_parallel_creates_at_once() {
    let server = start_cluster(2, &[]);
    let mut set = stateful_set("ondel", 2, "nginx:1.25");
    set["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    apply_value(&server, &set);
    wait_set_ready(&server, "ondel", 2);
    assert_eq!(
        server
            .run(&["rollout", "status", "statefulset/ondel"])
            .failure(),
        "error: rollout status is only available for RollingUpdate strategy type\n"
    );
    server.ok(&["set", "image", "sts/ondel", "app=nginx:1.26"]);
    std::thread::sleep(Duration::from_secs(3));
    wait_images(&server, "ondel", &["nginx:1.25", "nginx:1.25"]);
    let deleted_uid = server.get_json(&["get", "pod", "ondel-1"])["metadata"]["uid"].clone();
    delete_without_waiting(&server, "ondel-1");
    wait_images(&server, "ondel", &["nginx:1.25", "nginx:1.26"]);
    let replaced = server.get_json(&["get", "pod", "ondel-1"]);
    assert_ne!(replaced["metadata"]["uid"], deleted_uid);

    // Parallel: every pod is created without waiting for the lower ordinals to be ready.
    let (watch, log) = watch_set(&server, "app=par", false);
    let mut set = stateful_set("par", 3, "nginx:1.25");
    set["spec"]["podManagementPolicy"] = json!("Parallel");
    // Slow to become ready and to stop, so that the watcher sees each step overlap.
    set["spec"]["template"]["metadata"]["annotations"] =
        json!({SIM_READY_AFTER: "5s", SIM_STOP_AFTER: "5s"});
    apply_value(&server, &set);
    wait_until("three pods before any is ready", SETTLE, || {
        let pods = live_pods(&server, "default", "app=par");
        if pods.len() == 3 {
            Ok(())
        } else {
            Err(format!("{}", pods.len()))
        }
    });
    assert!(
        live_pods(&server, "default", "app=par")
            .iter()
            .all(|p| !is_ready(p)),
        "a pod became ready before all three existed"
    );
    wait_set_ready(&server, "par", 3);
    // Scale-down removes every condemned pod at once.
    server.ok(&["scale", "sts", "par", "--replicas=0"]);
    wait_until("par emptied", SETTLE, || {
        let left = live_pods(&server, "default", "app=par");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{}", left.len()))
        }
    });
    let changes = log.lock().unwrap().clone();
    let terminating: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Change::Terminating(_)))
        .map(|(i, _)| i)
        .collect();
    let first_gone = changes
        .iter()
        .position(|c| matches!(c, Change::Gone(_)))
        .unwrap_or(usize::MAX);
    assert_eq!(terminating.len(), 3, "{changes:?}");
    assert!(
        terminating.iter().all(|&i| i < first_gone),
        "Parallel deletes at once: {changes:?}"
    );
    finish_watch(watch);
}

#[test]
fn a_pod_on_a_failed_node_keeps_its_identity() {
    // The grace period must outlast the Lease renewal interval (10 s, as the kubelet's).
    let server = start_cluster(2, &["--node-monitor-grace-period", "15"]);
    let (watch, _) = watch_set(&server, "app=web", true);
    apply_value(&server, &stateful_set("web", 2, "nginx:1.25"));
    let pods = wait_set_ready(&server, "web", 2);
    let node = pods[0]["spec"]["nodeName"].as_str().unwrap().to_owned();
    let uid = pods[0]["metadata"]["uid"].clone();
    server.ok(&["annotate", "node", &node, "skiff.dev/heartbeat=stopped"]);
    wait_until(&format!("{node} NotReady"), Duration::from_secs(90), || {
        let listed = server.ok(&["get", "node", &node, "--no-headers"]);
        if listed.split_whitespace().nth(1) == Some("NotReady") {
            Ok(())
        } else {
            Err(listed)
        }
    });
    // Deleting the pod cannot complete without its kubelet: it stays Terminating on the
    // node, and no second web-0 appears.
    server.ok(&["delete", "pod", "web-0", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(10));
    let pod = server.get_json(&["get", "pod", "web-0"]);
    assert_eq!(pod["metadata"]["uid"], uid, "{pod:#}");
    assert!(!pod["metadata"]["deletionTimestamp"].is_null(), "{pod:#}");
    assert_eq!(pod["spec"]["nodeName"], node.as_str());
    let status = server.get_json(&["get", "sts", "web"])["status"].clone();
    assert_eq!(status["replicas"], 2, "{status}");

    // Removing the node releases the name: pod GC deletes the pod and web-0 is created
    // again (it stays Pending: its volume lived on the removed node).
    server.ok(&["delete", "node", &node]);
    wait_until("web-0 back", Duration::from_secs(100), || {
        let pod = server.get_json(&["get", "pods", "-l", "app=web"]);
        let back = pod["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| name(p) == "web-0");
        match back {
            Some(p) if p["metadata"]["uid"] != uid => Ok(()),
            _ => Err(pod.to_string()),
        }
    });
    finish_watch(watch);
}

/// A xorshift generator for the randomized test: small, and replayable from its seed.
struct Rng(u64);

impl Rng {
    /// Seeded from `SKIFF_CHAOS_SEED` when set (to replay a run), else from the clock.
    fn seeded() -> Rng {
        let seed = std::env::var("SKIFF_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
            });
        eprintln!("chaos seed {seed} (SKIFF_CHAOS_SEED={seed} replays this run's faults)");
        Rng(seed)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Waits until the node's `kubectl get node` STATUS is `status`.
#[track_caller]
fn wait_node_status(server: &Server, node: &str, status: &str) {
    wait_until(&format!("{node} {status}"), Duration::from_secs(90), || {
        let listed = server.ok(&["get", "node", node, "--no-headers"]);
        if listed.split_whitespace().nth(1) == Some(status) {
            Ok(())
        } else {
            Err(listed)
        }
    });
}

#[test]
fn randomized_faults_keep_identities_order_and_claims() {
    let mut rng = Rng::seeded();
    let mut server = start_cluster(3, &["--node-monitor-grace-period", "12"]);
    let (watch, _) = watch_set_across_restarts(&server, "app=chaos", true, true);
    let mut set = stateful_set("chaos", 3, "nginx:1.25");
    set["spec"]["template"]["metadata"]["annotations"] = json!({SIM_READY_AFTER: "200ms"});
    apply_value(&server, &set);
    let mut replicas = 3;
    let mut most = 3;
    wait_set_ready(&server, "chaos", replicas);
    let mut volumes = wait_claims_bound(&server, &claim_names("data", "chaos", 0..most as i32));

    let mut faults = Vec::new();
    for _ in 0..6 {
        let victim = format!("chaos-{}", rng.below(replicas as u64));
        match rng.below(5) {
            0 => {
                faults.push(format!("delete {victim}"));
                delete_without_waiting(&server, &victim);
            }
            1 => {
                faults.push(format!("force-delete {victim}"));
                server.ok(&["delete", "pod", &victim, "--grace-period=0", "--force"]);
            }
            2 => {
                // A dead kubelet: the pod deleted on its node stays Terminating, and its name
                // is not reused, until the node answers again.
                let pod = server.get_json(&["get", "pod", &victim]);
                let node = pod["spec"]["nodeName"].as_str().unwrap().to_owned();
                faults.push(format!("fail {node}, delete {victim} on it"));
                server.ok(&["annotate", "node", &node, "skiff.dev/heartbeat=stopped"]);
                wait_node_status(&server, &node, "NotReady");
                delete_without_waiting(&server, &victim);
                std::thread::sleep(Duration::from_secs(3));
                let stuck = server.get_json(&["get", "pod", &victim]);
                assert_eq!(
                    stuck["metadata"]["uid"], pod["metadata"]["uid"],
                    "{faults:?}"
                );
                server.ok(&["annotate", "node", &node, "skiff.dev/heartbeat-"]);
                wait_node_status(&server, &node, "Ready");
            }
            3 => {
                faults.push("restart the server".to_owned());
                server.restart();
            }
            _ => {
                replicas = 1 + rng.below(4) as usize;
                most = most.max(replicas);
                faults.push(format!("scale to {replicas}"));
                server.ok(&["scale", "sts", "chaos", &format!("--replicas={replicas}")]);
            }
        }
        wait_set_ready(&server, "chaos", replicas);
        // Claims are kept on scale-down (Retain) and never rebound: each ordinal's claim keeps
        // its volume whatever happened to its pods.
        let now = wait_claims_bound(&server, &claim_names("data", "chaos", 0..most as i32));
        for (claim, volume) in &volumes {
            assert_eq!(&now[claim], volume, "{claim} after {faults:?}");
        }
        volumes = now;
    }
    eprintln!("faults: {faults:?}");
    let observed = watch.finish();
    assert!(
        observed.violations.is_empty(),
        "after {faults:?}: {:#?}",
        observed.violations
    );
    assert!(observed.states > 0, "the watcher saw no state");
}

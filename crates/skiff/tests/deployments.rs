//! Deployments through the real kubectl, as upstream's controller behaves: ReplicaSets named
//! `<deployment>-<pod-template-hash>`, scaling, rolling and Recreate rollouts, revision
//! history, undo, pause/resume, restart, the progress deadline, cascading deletion, and a
//! rollout that survives a SIGKILL of the server.
//!
//! The rollout invariants (never more than `replicas + maxSurge` pods, never fewer than
//! `replicas - maxUnavailable` ready) are checked on every state a kube-rs pod watcher sees,
//! which kubectl cannot observe state by state.

mod common;
mod workloads;

use common::{Output, Server, cell, create_namespace, parse_table, row, wait_until};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use workloads::{
    NAME_ALPHABET, PodWatch, SETTLE, apply, controller_of, events_about, is_ready, is_terminating,
    list, live_pods, name, wait_event,
};

/// The annotation a Deployment's revision and its ReplicaSets' revisions are kept in.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The simulated-pod annotation that delays (or, with `never`, prevents) readiness.
const SIM_READY_AFTER: &str = "skiff.dev/sim-ready-after";

/// A Deployment manifest: `name` selects `app=<name>`, one container `nginx` runs `image`.
/// Tests adjust the rest of `spec` (strategy, deadlines, pod annotations) on the value.
fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": image}]},
            },
        },
    })
}

/// `deployment` with a RollingUpdate strategy of `max_surge` / `max_unavailable` and the
/// template's pods becoming ready `ready_after` (a sim duration, or `never`) after starting.
fn rolling_deployment(
    name: &str,
    replicas: u32,
    image: &str,
    (max_surge, max_unavailable): (u32, u32),
    ready_after: &str,
) -> Value {
    let mut manifest = deployment(name, replicas, image);
    manifest["spec"]["strategy"] = json!({
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
    });
    manifest["spec"]["template"]["metadata"]["annotations"] = json!({SIM_READY_AFTER: ready_after});
    manifest
}

/// Applies a manifest value in the default namespace; returns kubectl's output.
#[track_caller]
fn apply_value(server: &Server, manifest: &Value) -> String {
    apply(server, "default", &manifest.to_string())
}

/// `kubectl rollout status deployment/<name>`, bounded so that a stuck controller fails the
/// test instead of hanging it.
fn rollout_status(server: &Server, namespace: &str, name: &str) -> Output {
    server
        .kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "-n",
            namespace,
            "--timeout=120s",
        ])
        .run()
}

/// Runs `kubectl rollout status` and checks that the rollout succeeded.
#[track_caller]
fn wait_rolled_out(server: &Server, namespace: &str, name: &str) {
    let stdout = rollout_status(server, namespace, name).success();
    assert_eq!(
        stdout.lines().last(),
        Some(format!("deployment \"{name}\" successfully rolled out").as_str()),
        "{stdout}"
    );
}

/// The ReplicaSets of Deployment `name` (selected by `app=<name>`), oldest revision first.
fn replica_sets(server: &Server, namespace: &str, name: &str) -> Vec<Value> {
    let mut sets = list(server, namespace, "rs", &format!("app={name}"));
    sets.sort_by_key(|rs| revision(rs).parse::<u64>().unwrap_or(0));
    sets
}

/// An object's `deployment.kubernetes.io/revision` annotation ("" without one).
fn revision(object: &Value) -> &str {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .unwrap_or_default()
}

/// The `pod-template-hash` label of a ReplicaSet or pod.
fn template_hash(object: &Value) -> &str {
    object["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or_default()
}

/// The image of the first container of a ReplicaSet's or Deployment's template.
fn template_image(object: &Value) -> &str {
    object["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

/// The (status, reason, message) of a Deployment's condition of `kind`.
fn condition(deployment: &Value, kind: &str) -> Option<(String, String, String)> {
    let found = deployment["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?;
    let text = |field: &str| found[field].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// `(status, reason, message)` as owned strings, to compare with [`condition`].
fn expected(status: &str, reason: &str, message: &str) -> Option<(String, String, String)> {
    Some((status.into(), reason.into(), message.into()))
}

/// A status count of a Deployment or ReplicaSet (absent = 0: upstream omits zero counts).
fn count(object: &Value, field: &str) -> u64 {
    object["status"][field].as_u64().unwrap_or(0)
}

/// `kubectl rollout history deployment/<name>` as (revision, change-cause) rows.
fn history(server: &Server, name: &str) -> Vec<(u64, String)> {
    let stdout = server.ok(&["rollout", "history", &format!("deployment/{name}")]);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().map(str::trim_end),
        Some(format!("deployment.apps/{name}").as_str()),
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

/// Waits until `kubectl rollout history` lists exactly `wanted`.
#[track_caller]
fn wait_history(server: &Server, name: &str, wanted: &[(u64, &str)]) {
    let wanted: Vec<(u64, String)> = wanted.iter().map(|&(n, c)| (n, c.to_owned())).collect();
    wait_until(&format!("rollout history {wanted:?}"), SETTLE, || {
        let seen = history(server, name);
        if seen == wanted {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
}

/// The images of the live pods of Deployment `name`, sorted.
fn pod_images(server: &Server, name: &str) -> Vec<String> {
    let mut images: Vec<String> = live_pods(server, "default", &format!("app={name}"))
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    images.sort();
    images
}

/// Waits until Deployment `name` has exactly `replicas` pods (terminating ones included), all
/// ready and running `image`.
#[track_caller]
fn wait_pods_settled(server: &Server, name: &str, replicas: usize, image: &str) {
    wait_until(
        &format!("{replicas} ready {image} pods of {name}"),
        SETTLE,
        || {
            let pods = list(server, "default", "pods", &format!("app={name}"));
            let settled = pods.len() == replicas
                && pods.iter().all(|p| {
                    is_ready(p)
                        && !is_terminating(p)
                        && p["spec"]["containers"][0]["image"] == image
                });
            if settled {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter().map(name_and_hash).collect::<Vec<_>>()
                ))
            }
        },
    );
}

/// A pod's name and template hash, for failure messages.
fn name_and_hash(pod: &Value) -> (String, String) {
    (name(pod).to_owned(), template_hash(pod).to_owned())
}

/// The rows of the `Conditions:` table of `kubectl describe deployment` as (type, status,
/// reason), sorted.
fn described_conditions(described: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = described
        .lines()
        .skip_while(|l| !l.starts_with("Conditions:"))
        .skip(3)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].into(), cells[1].into(), cells[2].into())
        })
        .collect();
    rows.sort();
    rows
}

/// The value after `label` on its line of `kubectl describe` output.
fn described_field<'a>(described: &'a str, label: &str) -> &'a str {
    described
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in:\n{described}"))
        .trim()
}

#[test]
fn create_get_scale_and_describe_a_deployment() {
    let server = Server::start();
    create_namespace(&server, "shop");
    assert_eq!(
        server.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=3",
            "-n",
            "shop"
        ]),
        "deployment.apps/web created\n"
    );
    wait_rolled_out(&server, "shop", "web");

    let table = parse_table(&server.ok(&["get", "deploy", "-n", "shop"]));
    let web = row(&table, "web");
    let columns: Vec<&str> = web.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(columns, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(
        [
            cell(web, "READY"),
            cell(web, "UP-TO-DATE"),
            cell(web, "AVAILABLE")
        ],
        ["3/3", "3", "3"]
    );

    // One ReplicaSet `web-<hash>`, selecting and labelling its pods with the hash.
    let deploy = server.get_json(&["get", "deploy", "web", "-n", "shop"]);
    let sets = replica_sets(&server, "shop", "web");
    assert_eq!(sets.len(), 1, "{sets:#?}");
    let rs = &sets[0];
    let hash = template_hash(rs);
    assert!(
        !hash.is_empty() && hash.len() <= 10 && hash.chars().all(|c| NAME_ALPHABET.contains(c)),
        "pod-template-hash {hash:?}"
    );
    let rs_name = format!("web-{hash}");
    assert_eq!(name(rs), rs_name);
    assert_eq!(
        rs["spec"]["selector"],
        json!({"matchLabels": {"app": "web", "pod-template-hash": hash}})
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web", "pod-template-hash": hash})
    );
    let annotations = &rs["metadata"]["annotations"];
    assert_eq!(
        (
            &annotations[REVISION],
            &annotations["deployment.kubernetes.io/desired-replicas"],
            &annotations["deployment.kubernetes.io/max-replicas"],
        ),
        (&json!("1"), &json!("3"), &json!("4")),
        "{annotations}"
    );
    assert_eq!(
        controller_of(rs),
        Some(&json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": deploy["metadata"]["uid"],
            "controller": true,
            "blockOwnerDeletion": true,
        }))
    );
    let pods = live_pods(&server, "shop", "app=web");
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(pod["metadata"]["generateName"], format!("{rs_name}-"));
        assert_eq!(template_hash(pod), hash);
        assert_eq!(
            controller_of(pod).map(|o| (&o["kind"], &o["name"])),
            Some((&json!("ReplicaSet"), &json!(rs_name)))
        );
    }

    // Every status field, and both conditions with upstream's reasons and messages.
    assert_eq!(revision(&deploy), "1");
    let status_counts: Vec<u64> = [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "observedGeneration",
    ]
    .iter()
    .map(|f| count(&deploy, f))
    .collect();
    assert_eq!(status_counts, [3, 3, 3, 3, 0, 1], "{}", deploy["status"]);
    assert_eq!(
        condition(&deploy, "Available"),
        expected(
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability."
        )
    );
    assert_eq!(
        condition(&deploy, "Progressing"),
        expected(
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
        )
    );

    let table = parse_table(&server.ok(&["get", "rs", "-n", "shop"]));
    let rs_row = row(&table, &rs_name);
    assert_eq!(
        [
            cell(rs_row, "DESIRED"),
            cell(rs_row, "CURRENT"),
            cell(rs_row, "READY")
        ],
        ["3", "3", "3"]
    );

    let scaled_up = format!("Scaled up replica set {rs_name} from 0 to 3");
    wait_event(
        &server,
        "shop",
        "Deployment",
        "web",
        "ScalingReplicaSet",
        &scaled_up,
    );
    let described = server.ok(&["describe", "deploy", "web", "-n", "shop"]);
    assert_eq!(
        described_conditions(&described),
        [
            (
                "Available".into(),
                "True".into(),
                "MinimumReplicasAvailable".into()
            ),
            (
                "Progressing".into(),
                "True".into(),
                "NewReplicaSetAvailable".into()
            ),
        ],
        "{described}"
    );
    assert_eq!(
        described_field(&described, "NewReplicaSet:"),
        format!("{rs_name} (3/3 replicas created)")
    );
    assert_eq!(
        described_field(&described, "StrategyType:"),
        "RollingUpdate"
    );
    assert_eq!(
        described_field(&described, "RollingUpdateStrategy:"),
        "25% max unavailable, 25% max surge"
    );
    assert!(
        described.lines().any(|l| {
            l.contains("ScalingReplicaSet")
                && l.contains("deployment-controller")
                && l.ends_with(&scaled_up)
        }),
        "{described}"
    );

    // Scaling a settled Deployment scales its one ReplicaSet, with an event each way.
    assert_eq!(
        server.ok(&["scale", "deploy", "web", "--replicas=5", "-n", "shop"]),
        "deployment.apps/web scaled\n"
    );
    wait_rolled_out(&server, "shop", "web");
    wait_event(
        &server,
        "shop",
        "Deployment",
        "web",
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} from 3 to 5"),
    );
    let table = parse_table(&server.ok(&["get", "deploy", "web", "-n", "shop"]));
    assert_eq!(cell(row(&table, "web"), "READY"), "5/5");
    assert_eq!(
        server.ok(&["scale", "deploy", "web", "--replicas=2", "-n", "shop"]),
        "deployment.apps/web scaled\n"
    );
    wait_event(
        &server,
        "shop",
        "Deployment",
        "web",
        "ScalingReplicaSet",
        &format!("Scaled down replica set {rs_name} from 5 to 2"),
    );
    wait_until("2 pods of web", SETTLE, || {
        let pods = list(&server, "shop", "pods", "app=web");
        if pods.len() == 2 {
            Ok(())
        } else {
            Err(format!("{:?}", pods.iter().map(name).collect::<Vec<_>>()))
        }
    });
    let rs = server.get_json(&["get", "rs", &rs_name, "-n", "shop"]);
    let annotations = &rs["metadata"]["annotations"];
    // maxSurge 25% of 2 rounds up to 1.
    assert_eq!(
        (
            &annotations["deployment.kubernetes.io/desired-replicas"],
            &annotations["deployment.kubernetes.io/max-replicas"],
        ),
        (&json!("2"), &json!("3")),
        "{annotations}"
    );
    assert_eq!(replica_sets(&server, "shop", "web").len(), 1);
}

#[test]
fn set_image_history_and_undo() {
    let server = Server::start();
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ]);
    wait_rolled_out(&server, "default", "web");
    assert_eq!(
        server.ok(&[
            "annotate",
            "deployment",
            "web",
            &format!("{CHANGE_CAUSE}=created with nginx:1.25")
        ]),
        "deployment.apps/web annotated\n"
    );
    // The controller copies the Deployment's annotations onto its new ReplicaSet.
    wait_history(&server, "web", &[(1, "created with nginx:1.25")]);

    assert_eq!(
        server.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]),
        "deployment.apps/web image updated\n"
    );
    server.ok(&[
        "annotate",
        "deployment",
        "web",
        "--overwrite",
        &format!("{CHANGE_CAUSE}=image updated to nginx:1.26"),
    ]);
    wait_rolled_out(&server, "default", "web");
    wait_history(
        &server,
        "web",
        &[
            (1, "created with nginx:1.25"),
            (2, "image updated to nginx:1.26"),
        ],
    );
    wait_pods_settled(&server, "web", 3, "nginx:1.26");
    let sets = replica_sets(&server, "default", "web");
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let (first, second) = (name(&sets[0]).to_owned(), name(&sets[1]).to_owned());
    // 3 replicas at 25%/25% surge by 1 and lose none: one pod at a time, each way.
    let mut scaling: Vec<String> = events_about(&server, "default", "Deployment", "web")
        .into_iter()
        .filter(|(_, reason, _)| reason == "ScalingReplicaSet")
        .map(|(_, _, message)| message)
        .collect();
    scaling.sort();
    let mut steps: Vec<String> = [
        format!("Scaled up replica set {first} from 0 to 3"),
        format!("Scaled up replica set {second} from 0 to 1"),
        format!("Scaled down replica set {first} from 3 to 2"),
        format!("Scaled up replica set {second} from 1 to 2"),
        format!("Scaled down replica set {first} from 2 to 1"),
        format!("Scaled up replica set {second} from 2 to 3"),
        format!("Scaled down replica set {first} from 1 to 0"),
    ]
    .into();
    steps.sort();
    assert_eq!(scaling, steps);
    assert_eq!(
        sets.iter()
            .map(|rs| (template_image(rs), rs["spec"]["replicas"].as_u64()))
            .collect::<Vec<_>>(),
        [("nginx:1.25", Some(0)), ("nginx:1.26", Some(3))]
    );

    let detail = server.ok(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert_eq!(
        detail.lines().next(),
        Some("deployment.apps/web with revision #2"),
        "{detail}"
    );
    assert!(detail.lines().any(|l| l == "Pod Template:"), "{detail}");
    assert_eq!(
        detail
            .lines()
            .find_map(|l| l.trim().strip_prefix("Image:"))
            .map(str::trim),
        Some("nginx:1.26"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("pod-template-hash={}", template_hash(&sets[1]))),
        "{detail}"
    );

    // Undo: the previous ReplicaSet becomes the new one again, with the next revision.
    assert_eq!(
        server.ok(&["rollout", "undo", "deployment/web"]),
        "deployment.apps/web rolled back\n"
    );
    wait_rolled_out(&server, "default", "web");
    wait_pods_settled(&server, "web", 3, "nginx:1.25");
    wait_history(
        &server,
        "web",
        &[
            (2, "image updated to nginx:1.26"),
            (3, "created with nginx:1.25"),
        ],
    );
    let reused = server.get_json(&["get", "rs", &first]);
    assert_eq!(
        (
            revision(&reused),
            &reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"]
        ),
        ("3", &json!("1"))
    );
    assert_eq!(revision(&server.get_json(&["get", "deploy", "web"])), "3");

    assert_eq!(
        server.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]),
        "deployment.apps/web rolled back\n"
    );
    wait_rolled_out(&server, "default", "web");
    wait_pods_settled(&server, "web", 3, "nginx:1.26");
    wait_history(
        &server,
        "web",
        &[
            (3, "created with nginx:1.25"),
            (4, "image updated to nginx:1.26"),
        ],
    );
    let reused = server.get_json(&["get", "rs", &second]);
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "2"
    );
    // Rollbacks reuse ReplicaSets: still two.
    let names: Vec<String> = replica_sets(&server, "default", "web")
        .iter()
        .map(|rs| name(rs).to_owned())
        .collect();
    assert_eq!(names, [first, second]);

    assert_eq!(
        server
            .run(&["rollout", "undo", "deployment/web", "--to-revision=9"])
            .failure(),
        "error: unable to find specified revision 9 in history\n"
    );
    assert_eq!(
        server.ok(&["rollout", "undo", "deployment/web", "--to-revision=4"]),
        "deployment.apps/web skipped rollback (current template already matches revision 4)\n"
    );
}

#[test]
fn pause_resume_and_restart() {
    let server = Server::start();
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
    ]);
    wait_rolled_out(&server, "default", "web");

    assert_eq!(
        server.ok(&["rollout", "pause", "deployment/web"]),
        "deployment.apps/web paused\n"
    );
    assert_eq!(
        server
            .run(&["rollout", "pause", "deployment/web"])
            .failure(),
        "error: deployments.apps \"web\" is already paused\n"
    );
    server.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]);
    // Scaling still works while paused; rolling out does not.
    server.ok(&["scale", "deployment/web", "--replicas=3"]);
    wait_until("the paused deployment observed", SETTLE, || {
        let deploy = server.get_json(&["get", "deploy", "web"]);
        let observed = deploy["metadata"]["generation"] == deploy["status"]["observedGeneration"];
        if observed && count(&deploy, "replicas") == 3 && count(&deploy, "readyReplicas") == 3 {
            Ok(deploy)
        } else {
            Err(format!("{}", deploy["status"]))
        }
    });
    let deploy = server.get_json(&["get", "deploy", "web"]);
    assert_eq!(
        condition(&deploy, "Progressing"),
        expected("Unknown", "DeploymentPaused", "Deployment is paused")
    );
    let sets = replica_sets(&server, "default", "web");
    assert_eq!(
        sets.len(),
        1,
        "a ReplicaSet was created while paused: {sets:#?}"
    );
    assert_eq!(pod_images(&server, "web"), ["nginx:1.25"; 3]);

    assert_eq!(
        server.ok(&["rollout", "resume", "deployment/web"]),
        "deployment.apps/web resumed\n"
    );
    assert_eq!(
        server
            .run(&["rollout", "resume", "deployment/web"])
            .failure(),
        "error: deployments.apps \"web\" is not paused\n"
    );
    wait_rolled_out(&server, "default", "web");
    wait_pods_settled(&server, "web", 3, "nginx:1.26");
    assert_eq!(replica_sets(&server, "default", "web").len(), 2);

    // A paused Deployment can be neither restarted nor rolled back (kubectl refuses once it
    // has found the revision to roll back to).
    server.ok(&["rollout", "pause", "deployment/web"]);
    assert_eq!(
        server
            .run(&["rollout", "restart", "deployment/web"])
            .failure(),
        "error: deployments.apps \"web\" can't restart paused deployment (run rollout resume first)\n"
    );
    assert_eq!(
        server.run(&["rollout", "undo", "deployment/web"]).failure(),
        "error: you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again\n"
    );
    server.ok(&["rollout", "resume", "deployment/web"]);

    // Restart: a template annotation, hence a new ReplicaSet and new pods.
    let before: BTreeSet<String> = live_pods(&server, "default", "app=web")
        .iter()
        .map(|p| name(p).to_owned())
        .collect();
    assert_eq!(
        server.ok(&["rollout", "restart", "deployment/web"]),
        "deployment.apps/web restarted\n"
    );
    wait_rolled_out(&server, "default", "web");
    wait_pods_settled(&server, "web", 3, "nginx:1.26");
    let sets = replica_sets(&server, "default", "web");
    assert_eq!(
        sets.iter().map(revision).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    let restarted_at =
        sets[2]["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .expect("restartedAt on the new template")
            .to_owned();
    for pod in live_pods(&server, "default", "app=web") {
        assert!(!before.contains(name(&pod)), "{} survived", name(&pod));
        assert_eq!(
            pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            restarted_at.as_str()
        );
    }
}

#[test]
fn delete_cascades_in_background_foreground_or_orphans() {
    let server = Server::start();
    for app in ["bg", "fg", "orphan"] {
        apply_value(&server, &deployment(app, 2, "nginx:1.25"));
    }
    for app in ["bg", "fg", "orphan"] {
        wait_rolled_out(&server, "default", app);
    }

    // Background (kubectl's default): the Deployment goes at once, the GC removes the rest.
    let stdout = server.ok(&["delete", "deploy", "bg"]);
    assert!(
        stdout.starts_with("deployment.apps \"bg\" deleted"),
        "{stdout}"
    );
    wait_until("bg's ReplicaSet and pods collected", SETTLE, || {
        let left: Vec<String> = ["rs", "pods"]
            .iter()
            .flat_map(|kind| list(&server, "default", kind, "app=bg"))
            .map(|o| name(&o).to_owned())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });

    // Foreground: the Deployment is gone only once its dependents (and theirs) are.
    server.ok(&["delete", "deploy", "fg", "--cascade=foreground"]);
    let left: Vec<String> = ["deploy", "rs", "pods"]
        .iter()
        .flat_map(|kind| list(&server, "default", kind, "app=fg"))
        .map(|o| name(&o).to_owned())
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left after a foreground delete");

    // Orphan: the ReplicaSet and its pods stay, without the reference to the Deployment.
    let rs_name = name(&replica_sets(&server, "default", "orphan")[0]).to_owned();
    server.ok(&["delete", "deploy", "orphan", "--cascade=orphan"]);
    let sets = replica_sets(&server, "default", "orphan");
    assert_eq!(sets.len(), 1, "{sets:#?}");
    let rs = &sets[0];
    assert_eq!(name(rs), rs_name);
    assert!(
        rs["metadata"]["ownerReferences"].is_null()
            || rs["metadata"]["ownerReferences"] == json!([]),
        "{}",
        rs["metadata"]
    );
    let pods = live_pods(&server, "default", "app=orphan");
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert_eq!(
            controller_of(pod).map(|o| &o["uid"]),
            Some(&rs["metadata"]["uid"])
        );
    }
    assert_eq!(count(rs, "readyReplicas"), 2);
}

/// A pod's `pod-template-hash` label.
fn pod_hash(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Whether a pod is Ready and not being deleted: what a rollout counts as available (with
/// minReadySeconds 0).
fn pod_available(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod-template-hashes a [`watch_pods`] check has seen.
type SeenHashes = Arc<Mutex<BTreeSet<String>>>;

/// A [`PodWatch`] of the pods matching `selector` whose check also records every pod's
/// template hash and describes the pods of a state that fails it.
fn watch_pods(
    server: &Server,
    selector: &str,
    mut check: impl FnMut(&[&Pod]) -> Result<(), String> + Send + 'static,
) -> (PodWatch, SeenHashes) {
    let seen = SeenHashes::default();
    let recorded = seen.clone();
    let watch = PodWatch::start(server, selector, move |pods| {
        recorded
            .lock()
            .unwrap()
            .extend(pods.iter().map(|p| pod_hash(p).to_owned()));
        check(pods).map_err(|what| {
            let summary: Vec<String> = pods
                .iter()
                .map(|p| {
                    format!(
                        "{} available={} terminating={}",
                        p.metadata.name.as_deref().unwrap_or_default(),
                        pod_available(p),
                        p.metadata.deletion_timestamp.is_some()
                    )
                })
                .collect();
            format!("{what} in state {summary:#?}")
        })
    });
    (watch, seen)
}

/// A check for [`PodWatch`]: at most `max_pods` pods not being deleted, at least
/// `min_available` of them ready.
fn rollout_bounds(
    max_pods: usize,
    min_available: usize,
) -> impl FnMut(&[&Pod]) -> Result<(), String> + Send + 'static {
    move |pods| {
        let live = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let available = pods.iter().filter(|p| pod_available(p)).count();
        if live > max_pods {
            Err(format!("{live} pods (at most {max_pods} allowed)"))
        } else if available < min_available {
            Err(format!(
                "{available} available (at least {min_available} required)"
            ))
        } else {
            Ok(())
        }
    }
}

#[test]
fn rolling_update_stays_within_max_surge_and_max_unavailable() {
    // 10 replicas, maxSurge 2, maxUnavailable 1: never more than 12 pods, never fewer than 9
    // available. New pods take a second to become ready, so the rollout takes several steps.
    let server = Server::start();
    let manifest = rolling_deployment("inv", 10, "nginx:1.25", (2, 1), "1s");
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "inv");
    wait_pods_settled(&server, "inv", 10, "nginx:1.25");
    let old_hash = template_hash(&replica_sets(&server, "default", "inv")[0]).to_owned();

    let (watch, hashes) = watch_pods(&server, "app=inv", rollout_bounds(12, 9));
    server.ok(&["set", "image", "deployment/inv", "nginx=nginx:1.26"]);
    wait_rolled_out(&server, "default", "inv");
    wait_pods_settled(&server, "inv", 10, "nginx:1.26");
    let observed = watch.finish();

    // The scaling steps, to tell a controller that over-scaled from pods deleted late.
    let steps: Vec<String> = events_about(&server, "default", "Deployment", "inv")
        .into_iter()
        .map(|(_, _, message)| message)
        .collect();
    assert!(
        observed.violations.is_empty(),
        "{:#?}\nscaling steps: {steps:#?}",
        observed.violations
    );
    let hashes = hashes.lock().unwrap();
    let new_hashes: Vec<&String> = hashes.iter().filter(|h| **h != old_hash).collect();
    assert_eq!(new_hashes.len(), 1, "{hashes:?}");
    // At least one state per pod created and per pod deleted.
    assert!(
        observed.states >= 20,
        "only {} states seen",
        observed.states
    );
}

#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let server = Server::start();
    let mut manifest = deployment("rec", 3, "nginx:1.25");
    manifest["spec"]["strategy"] = json!({"type": "Recreate"});
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "rec");
    wait_pods_settled(&server, "rec", 3, "nginx:1.25");
    let old_hash = template_hash(&replica_sets(&server, "default", "rec")[0]).to_owned();

    // Terminating old pods count: no new pod may exist until every old one is gone.
    let check_hash = old_hash.clone();
    let (watch, hashes) = watch_pods(&server, "app=rec", move |pods| {
        let old = pods.iter().filter(|p| pod_hash(p) == check_hash).count();
        let new = pods.len() - old;
        if old > 0 && new > 0 {
            Err(format!("{old} old and {new} new pods together"))
        } else {
            Ok(())
        }
    });
    server.ok(&["set", "image", "deployment/rec", "nginx=nginx:1.26"]);
    wait_rolled_out(&server, "default", "rec");
    wait_pods_settled(&server, "rec", 3, "nginx:1.26");
    let observed = watch.finish();

    assert_eq!(observed.violations, Vec::<String>::new());
    let hashes = hashes.lock().unwrap();
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    let deploy = server.get_json(&["get", "deploy", "rec"]);
    assert_eq!(
        condition(&deploy, "Available"),
        expected(
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability."
        )
    );
}

#[test]
fn stuck_rollout_exceeds_its_progress_deadline_and_undo_restores_it() {
    // 4 replicas, maxSurge 1, maxUnavailable 1, 10 s deadline; the new pods never get ready.
    let server = Server::start();
    let mut manifest = rolling_deployment("stuck", 4, "nginx:1.25", (1, 1), "0s");
    manifest["spec"]["progressDeadlineSeconds"] = json!(10);
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "stuck");
    wait_pods_settled(&server, "stuck", 4, "nginx:1.25");
    let old_rs = name(&replica_sets(&server, "default", "stuck")[0]).to_owned();

    let (watch, _) = watch_pods(&server, "app=stuck", rollout_bounds(5, 3));
    manifest["spec"]["template"]["metadata"]["annotations"][SIM_READY_AFTER] = json!("never");
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    assert_eq!(
        apply_value(&server, &manifest),
        "deployment.apps/stuck configured\n"
    );
    assert_eq!(
        rollout_status(&server, "default", "stuck").failure(),
        "error: deployment \"stuck\" exceeded its progress deadline\n"
    );

    // Stopped at the bound: old 4 -> 3 once the first new pod existed, new 1 -> 2; then no
    // step keeps 3 available.
    let sets = replica_sets(&server, "default", "stuck");
    let new_rs = name(&sets[1]).to_owned();
    assert_eq!(
        sets.iter()
            .map(|rs| (name(rs), rs["spec"]["replicas"].as_u64()))
            .collect::<Vec<_>>(),
        [(old_rs.as_str(), Some(3)), (new_rs.as_str(), Some(2))]
    );
    let deploy = server.get_json(&["get", "deploy", "stuck"]);
    assert_eq!(
        condition(&deploy, "Progressing"),
        expected(
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{new_rs}\" has timed out progressing.")
        )
    );
    assert_eq!(
        condition(&deploy, "Available"),
        expected(
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability."
        )
    );
    let described = server.ok(&["describe", "deploy", "stuck"]);
    assert!(
        described_conditions(&described).contains(&(
            "Progressing".into(),
            "False".into(),
            "ProgressDeadlineExceeded".into()
        )),
        "{described}"
    );

    assert_eq!(
        server.ok(&["rollout", "undo", "deployment/stuck"]),
        "deployment.apps/stuck rolled back\n"
    );
    wait_pods_settled(&server, "stuck", 4, "nginx:1.25");
    wait_until("the rollback complete", SETTLE, || {
        let deploy = server.get_json(&["get", "deploy", "stuck"]);
        let progressing = condition(&deploy, "Progressing");
        if progressing.as_ref().map(|c| c.1.as_str()) == Some("NewReplicaSetAvailable") {
            Ok(())
        } else {
            Err(format!("{}", deploy["status"]))
        }
    });
    wait_rolled_out(&server, "default", "stuck");
    let observed = watch.finish();
    assert_eq!(observed.violations, Vec::<String>::new());
    let sets = replica_sets(&server, "default", "stuck");
    assert_eq!(
        sets.iter()
            .map(|rs| (name(rs), revision(rs), rs["spec"]["replicas"].as_u64()))
            .collect::<Vec<_>>(),
        [
            (new_rs.as_str(), "2", Some(0)),
            (old_rs.as_str(), "3", Some(4))
        ]
    );
}

#[test]
fn rollout_completes_after_a_sigkill_mid_rollout() {
    // 6 replicas, maxSurge 1, maxUnavailable 0, pods ready 2 s after starting: at least 12 s
    // of rollout to kill the server in.
    let mut server = Server::start();
    let manifest = rolling_deployment("crash", 6, "nginx:1.25", (1, 0), "2s");
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "crash");
    wait_pods_settled(&server, "crash", 6, "nginx:1.25");

    server.ok(&["set", "image", "deployment/crash", "nginx=nginx:1.26"]);
    wait_until("the rollout half-way", SETTLE, || {
        let sets = replica_sets(&server, "default", "crash");
        let summary: Vec<(String, u64, u64)> = sets
            .iter()
            .map(|rs| {
                let replicas = rs["spec"]["replicas"].as_u64().unwrap_or(0);
                (name(rs).to_owned(), replicas, count(rs, "readyReplicas"))
            })
            .collect();
        match summary.as_slice() {
            [(_, old, _), (_, _, new_ready)] if *old > 0 && *new_ready > 0 => Ok(()),
            _ => Err(format!("{summary:?}")),
        }
    });
    server.restart();

    wait_rolled_out(&server, "default", "crash");
    wait_pods_settled(&server, "crash", 6, "nginx:1.26");
    let sets = replica_sets(&server, "default", "crash");
    assert_eq!(
        sets.iter()
            .map(|rs| (
                revision(rs),
                template_image(rs),
                rs["spec"]["replicas"].as_u64()
            ))
            .collect::<Vec<_>>(),
        [("1", "nginx:1.25", Some(0)), ("2", "nginx:1.26", Some(6))],
        "{sets:#?}"
    );
    let deploy = server.get_json(&["get", "deploy", "crash"]);
    assert_eq!(revision(&deploy), "2");
    let new_uid = &sets[1]["metadata"]["uid"];
    for pod in list(&server, "default", "pods", "app=crash") {
        assert_eq!(controller_of(&pod).map(|o| &o["uid"]), Some(new_uid));
    }
    assert_eq!(
        [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas"
        ]
        .map(|f| count(&deploy, f)),
        [6; 4],
        "{}",
        deploy["status"]
    );
    wait_history(&server, "crash", &[(1, "<none>"), (2, "<none>")]);
    let events = events_about(&server, "default", "Deployment", "crash");
    let created: Vec<&(String, String, String)> = events
        .iter()
        .filter(|(_, _, m)| m.contains(" from 0 to "))
        .collect();
    assert_eq!(created.len(), 2, "ReplicaSets created: {events:#?}");
}

/// The `spec.replicas` of Deployment `name`'s ReplicaSets, oldest revision first.
fn replica_counts(server: &Server, name: &str) -> Vec<u64> {
    replica_sets(server, "default", name)
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_u64().unwrap_or(0))
        .collect()
}

/// Waits until Deployment `name`'s ReplicaSets have `wanted` replicas, oldest first, and the
/// Deployment's generation has been observed.
#[track_caller]
fn wait_replica_counts(server: &Server, name: &str, wanted: &[u64]) {
    wait_until(
        &format!("ReplicaSets of {name} at {wanted:?}"),
        SETTLE,
        || {
            let deploy = server.get_json(&["get", "deploy", name]);
            let counts = replica_counts(server, name);
            if counts == wanted
                && deploy["metadata"]["generation"] == deploy["status"]["observedGeneration"]
            {
                Ok(())
            } else {
                Err(format!("{counts:?}, status {}", deploy["status"]))
            }
        },
    );
}

#[test]
fn scaling_a_stuck_rollout_is_proportional() {
    // Upstream's documented example: 10 replicas, maxSurge 3, maxUnavailable 2, a rollout
    // stuck at old 8 + new 5; scaling to 15 allows 18 pods, the 5 extra split 3/2 by size.
    let server = Server::start();
    let mut manifest = rolling_deployment("prop", 10, "nginx:1.25", (3, 2), "0s");
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "prop");
    manifest["spec"]["template"]["metadata"]["annotations"][SIM_READY_AFTER] = json!("never");
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    apply_value(&server, &manifest);
    wait_replica_counts(&server, "prop", &[8, 5]);

    assert_eq!(
        server.ok(&["scale", "deploy", "prop", "--replicas=15"]),
        "deployment.apps/prop scaled\n"
    );
    wait_replica_counts(&server, "prop", &[11, 7]);
    for rs in replica_sets(&server, "default", "prop") {
        let annotations = &rs["metadata"]["annotations"];
        assert_eq!(
            (
                &annotations["deployment.kubernetes.io/desired-replicas"],
                &annotations["deployment.kubernetes.io/max-replicas"],
            ),
            (&json!("15"), &json!("18")),
            "{}",
            name(&rs)
        );
    }
    wait_until("the deployment status after scaling", SETTLE, || {
        let deploy = server.get_json(&["get", "deploy", "prop"]);
        let counts = [
            "replicas",
            "updatedReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ]
        .map(|f| count(&deploy, f));
        if counts == [18, 7, 11, 7] {
            Ok(())
        } else {
            Err(format!("{}", deploy["status"]))
        }
    });
}

#[test]
fn revision_history_limit_deletes_the_oldest_replica_sets() {
    let server = Server::start();
    let mut manifest = deployment("hist", 2, "nginx:1.21");
    manifest["spec"]["revisionHistoryLimit"] = json!(2);
    apply_value(&server, &manifest);
    wait_rolled_out(&server, "default", "hist");
    for minor in 22..=25 {
        server.ok(&[
            "set",
            "image",
            "deployment/hist",
            &format!("nginx=nginx:1.{minor}"),
        ]);
        wait_rolled_out(&server, "default", "hist");
    }
    // The new ReplicaSet and the two newest old ones remain.
    wait_until("old ReplicaSets cleaned up", SETTLE, || {
        let sets = replica_sets(&server, "default", "hist");
        let kept: Vec<(&str, &str)> = sets
            .iter()
            .map(|rs| (revision(rs), template_image(rs)))
            .collect();
        if kept
            == [
                ("3", "nginx:1.23"),
                ("4", "nginx:1.24"),
                ("5", "nginx:1.25"),
            ]
        {
            Ok(())
        } else {
            Err(format!("{kept:?}"))
        }
    });
    wait_history(
        &server,
        "hist",
        &[(3, "<none>"), (4, "<none>"), (5, "<none>")],
    );
}

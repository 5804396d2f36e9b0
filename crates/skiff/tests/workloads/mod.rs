//! Helpers shared by the workload-controller tests (`replicasets.rs`, `deployments.rs`): pods,
//! ReplicaSets and events read through kubectl, readiness as the controllers count it, and a
//! kube-rs client for watches kubectl cannot check state by state.
#![allow(dead_code)]

use crate::common::{Server, wait_until};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use std::time::Duration;

/// How long pods may take to be created, scheduled and become ready, or a controller to react,
/// on a busy 2-core machine with a debug build.
pub const SETTLE: Duration = Duration::from_secs(60);

/// The alphabet of `pod-template-hash` values and generated name suffixes (upstream's
/// `rand.String` alphabet: no vowels, no confusable digits).
pub const NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// Writes `manifest` with `kubectl apply -n namespace -f -` and returns kubectl's output.
#[track_caller]
pub fn apply(server: &Server, namespace: &str, manifest: &str) -> String {
    server
        .kubectl(&["apply", "-n", namespace, "-f", "-"])
        .stdin(manifest)
        .run()
        .success()
}

/// The objects of `kind` in `namespace` matching `selector` (a `-l` argument).
pub fn list(server: &Server, namespace: &str, kind: &str, selector: &str) -> Vec<Value> {
    let list = server.get_json(&["get", kind, "-n", namespace, "-l", selector]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// `metadata.name` of an object.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Whether the object has a `deletionTimestamp`.
pub fn is_terminating(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// Whether a pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The pods matching `selector` that are not being deleted.
pub fn live_pods(server: &Server, namespace: &str, selector: &str) -> Vec<Value> {
    list(server, namespace, "pods", selector)
        .into_iter()
        .filter(|p| !is_terminating(p))
        .collect()
}

/// The controller ownerReference of an object (`controller: true`), if any.
pub fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

/// The (type, reason, message) of the events about `kind/name`, in the server's order.
pub fn events_about(
    server: &Server,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    let list = server.get_json(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (text("type"), text("reason"), text("message"))
        })
        .collect()
}

/// Waits until a Normal event about `kind/name` has `reason` and `message`.
#[track_caller]
pub fn wait_event(
    server: &Server,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
    message: &str,
) {
    wait_until(&format!("a {reason} event: {message}"), SETTLE, || {
        let events = events_about(server, namespace, kind, name);
        if events
            .iter()
            .any(|(t, r, m)| t == "Normal" && r == reason && m == message)
        {
            Ok(())
        } else {
            Err(format!("{events:#?}"))
        }
    });
}

/// A kube-rs client with the server's admin kubeconfig.
pub async fn kube_client(server: &Server) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

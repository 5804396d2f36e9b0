//! Helpers shared by the workload-controller tests (`replicasets.rs`, `deployments.rs`,
//! `daemonsets.rs`): pods, ReplicaSets and events read through kubectl, readiness as the
//! controllers count it, a kube-rs client, and a pod watch that checks every state, which
//! kubectl cannot observe.
#![allow(dead_code)]

use crate::common::{Server, wait_until};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::collections::BTreeMap;
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

/// What a [`PodWatch`] saw.
pub struct Observed {
    /// How many states were checked.
    pub states: usize,
    /// Each failed check, with the state it failed on.
    pub violations: Vec<String>,
    /// Watch failures of a watch started with restarts expected.
    pub outages: usize,
}

/// Watches the pods matching a label selector in the default namespace with a kube-rs watcher
/// (a list, then a watch) and checks every state it observes, from the first complete list
/// until [`PodWatch::finish`].
pub struct PodWatch {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Observed>,
}

impl PodWatch {
    /// Starts watching pods matching `selector`; returns once the first list has been seen.
    /// `check` gets every later state (all pods, terminating ones included) and returns a
    /// description of what is wrong, if anything; the first list is the baseline and is not
    /// checked. A watch failure is a violation.
    pub fn start(
        server: &Server,
        selector: &str,
        mut check: impl FnMut(&[&Pod]) -> Result<(), String> + Send + 'static,
    ) -> PodWatch {
        Self::start_across_restarts(server, selector, false, move |pods, _| check(pods))
    }

    /// As [`PodWatch::start`], for a server that may restart meanwhile (`restarts`): watch
    /// failures are then counted in [`Observed::outages`] rather than as violations. `check`
    /// also learns whether a state comes from a relist, across which changes may have been
    /// missed.
    pub fn start_across_restarts(
        server: &Server,
        selector: &str,
        restarts: bool,
        mut check: impl FnMut(&[&Pod], bool) -> Result<(), String> + Send + 'static,
    ) -> PodWatch {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let client = runtime.block_on(kube_client(server));
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let config = watcher::Config::default().labels(selector);
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (listed, first_list) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let mut events = watcher(pods, config).default_backoff().boxed();
            let mut observed = Observed {
                states: 0,
                violations: Vec::new(),
                outages: 0,
            };
            let mut listed = Some(listed);
            let mut state: BTreeMap<String, Pod> = BTreeMap::new();
            let mut relist: BTreeMap<String, Pod> = BTreeMap::new();
            let mut relisted = false;
            loop {
                let event = tokio::select! {
                    _ = &mut stopped => break,
                    event = events.next() => event,
                };
                match event {
                    Some(Ok(watcher::Event::Init)) => relist.clear(),
                    Some(Ok(watcher::Event::InitApply(pod))) => {
                        relist.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        state = std::mem::take(&mut relist);
                        relisted = true;
                        if let Some(listed) = listed.take() {
                            let _ = listed.send(());
                            continue; // the baseline
                        }
                    }
                    Some(Ok(watcher::Event::Apply(pod))) => {
                        state.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                    }
                    Some(Ok(watcher::Event::Delete(pod))) => {
                        state.remove(pod.metadata.name.as_deref().unwrap_or_default());
                    }
                    Some(Err(_)) if restarts => {
                        observed.outages += 1;
                        continue;
                    }
                    Some(Err(e)) => {
                        observed.violations.push(format!("watch error: {e}"));
                        continue;
                    }
                    None => break,
                }
                if listed.is_some() {
                    continue; // still in the first list
                }
                let pods: Vec<&Pod> = state.values().collect();
                observed.states += 1;
                if let Err(what) = check(&pods, std::mem::take(&mut relisted)) {
                    observed.violations.push(what);
                }
            }
            observed
        });
        runtime
            .block_on(async { tokio::time::timeout(SETTLE, first_list).await })
            .expect("the pod watch listed within the timeout")
            .expect("the pod watch task ended before listing");
        PodWatch {
            runtime,
            stop,
            task,
        }
    }

    /// Stops watching and returns what was seen.
    pub fn finish(self) -> Observed {
        let _ = self.stop.send(());
        self.runtime
            .block_on(self.task)
            .expect("the pod watch task panicked")
    }
}

//! The one pod informer the in-process controllers share, as upstream's kube-controller-manager
//! shares one pod informer through its `SharedInformerFactory`. A cluster holds far more pods
//! than anything else, so one watch and one slimmed copy of each pod replace a copy per
//! controller (ADR 10).
//!
//! Subscribers see every event after the store applied it, with the pod as the store held it
//! before. One that subscribes late first sees a replay of the whole store (`Init`, an
//! `InitApply` per pod, `InitDone`), as client-go replays adds to a handler added to a running
//! informer, so it never misses a pod however its task is scheduled.

use crate::replicaset::ranking::POD_DELETION_COST;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ContainerPort, ContainerStatus, Pod, PodCondition};
use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus, Volume};
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::{Arc, Mutex};

/// A subscriber: the event, and for `Apply` and `Delete` the pod as the store held it before.
type Handler = Box<dyn FnMut(&watcher::Event<Pod>, Option<&Pod>) + Send>;

/// A handle on the shared pod informer; clones share it.
#[derive(Clone)]
pub struct SharedPods {
    store: Store<Pod>,
    dispatch: Arc<Mutex<Dispatch>>,
    /// Whether the store holds a full list. A store's own readiness wakes only one waiter
    /// (kube-runtime's `DelayedInit` keeps a single waker), and many controllers wait here.
    ready: tokio::sync::watch::Receiver<bool>,
}

/// What applying and handing out events needs, under one lock so that a subscriber never sees
/// an event twice or misses one.
struct Dispatch {
    writer: Writer<Pod>,
    subscribers: Vec<Subscriber>,
    /// Between a (re)list's `Init` and its `InitDone`.
    listing: bool,
    /// Whether a first list completed.
    listed: bool,
}

struct Subscriber {
    handler: Handler,
    /// Subscribed during a list whose first pods it missed: it gets the whole list at `InitDone`.
    awaiting_list: bool,
}

impl SharedPods {
    /// Starts watching every pod on `client`.
    pub fn start(client: Client) -> Self {
        let (shared, ready_tx) = Self::unstarted();
        let dispatch = shared.dispatch.clone();
        let store = shared.store.clone();
        tokio::spawn(
            watcher(Api::<Pod>::all(client), watcher::Config::default())
                .default_backoff()
                .modify(slim_pod)
                .for_each(move |event| {
                    match event {
                        Ok(event) => {
                            let listed = matches!(event, watcher::Event::InitDone);
                            lock(&dispatch).apply(&store, &event);
                            if listed {
                                ready_tx.send_replace(true);
                            }
                        }
                        Err(err) => tracing::warn!(%err, "pod watch failed"),
                    }
                    futures::future::ready(())
                }),
        );
        shared
    }

    /// The informer before its watch starts, and the sender of its readiness.
    fn unstarted() -> (Self, tokio::sync::watch::Sender<bool>) {
        let (store, writer) = reflector::store::<Pod>();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let shared = Self {
            store,
            dispatch: Arc::new(Mutex::new(Dispatch {
                writer,
                subscribers: Vec::new(),
                listing: false,
                listed: false,
            })),
            ready,
        };
        (shared, ready_tx)
    }

    /// Every pod, slimmed by [`slim_pod`].
    pub fn store(&self) -> Store<Pod> {
        self.store.clone()
    }

    /// Calls `handler` with every event from now on, after the store applied it, and the pod
    /// as it was before for `Apply` and `Delete`; a store that already holds pods is replayed
    /// to it first as a list.
    pub fn subscribe(
        &self,
        handler: impl FnMut(&watcher::Event<Pod>, Option<&Pod>) + Send + 'static,
    ) {
        let mut dispatch = lock(&self.dispatch);
        let mut subscriber = Subscriber {
            handler: Box::new(handler),
            awaiting_list: dispatch.listing,
        };
        if dispatch.listed && !dispatch.listing {
            subscriber.replay(&self.store);
        }
        dispatch.subscribers.push(subscriber);
    }

    /// Waits until the store holds a full list; false if it never will.
    pub async fn synced(&self) -> bool {
        let mut ready = self.ready.clone();
        ready.wait_for(|listed| *listed).await.is_ok()
    }
}

fn lock(dispatch: &Mutex<Dispatch>) -> std::sync::MutexGuard<'_, Dispatch> {
    dispatch.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dispatch {
    fn apply(&mut self, store: &Store<Pod>, event: &watcher::Event<Pod>) {
        let old = match event {
            watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => {
                store.get(&ObjectRef::from_obj(pod))
            }
            _ => None,
        };
        self.writer.apply_watcher_event(event);
        match event {
            watcher::Event::Init => self.listing = true,
            watcher::Event::InitDone => {
                self.listing = false;
                self.listed = true;
            }
            _ => {}
        }
        for subscriber in &mut self.subscribers {
            if !subscriber.awaiting_list {
                (subscriber.handler)(event, old.as_deref());
            } else if matches!(event, watcher::Event::InitDone) {
                subscriber.replay(store);
                subscriber.awaiting_list = false;
            }
        }
    }
}

impl Subscriber {
    /// Hands the whole store over as one list.
    fn replay(&mut self, store: &Store<Pod>) {
        (self.handler)(&watcher::Event::Init, None);
        for pod in store.state() {
            (self.handler)(&watcher::Event::InitApply(Pod::clone(&pod)), None);
        }
        (self.handler)(&watcher::Event::InitDone, None);
    }
}

/// Keeps of a pod what the controllers sharing it read; the rest is most of a pod's memory.
///
/// - metadata, but for managed fields and annotations other than the deletion cost
///   (ReplicaSet ranking);
/// - `spec.nodeName` (ReplicaSet ranking, DaemonSet, pod GC, endpoints), `spec.affinity` (by
///   which an unbound daemon pod names its node), `hostname` and `subdomain` (endpoints),
///   containers only for their named ports (endpoints' `targetPort` by name), and volumes only
///   for the claims they mount (claim protection);
/// - `status.phase`, `reason` (pod GC), pod IPs (endpoints), the Ready condition without its
///   texts (readiness and availability), and restart counts (ReplicaSet ranking).
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = pod
        .metadata
        .annotations
        .take()
        .and_then(|mut a| a.remove_entry(POD_DELETION_COST))
        .map(|entry| [entry].into());
    let spec = pod.spec.take().unwrap_or_default();
    let init_containers = spec.init_containers.map(named_ports_only);
    pod.spec = Some(PodSpec {
        node_name: spec.node_name,
        affinity: spec.affinity,
        hostname: spec.hostname,
        subdomain: spec.subdomain,
        containers: named_ports_only(spec.containers),
        init_containers: init_containers.filter(|c| !c.is_empty()),
        volumes: spec.volumes.map(|volumes| {
            volumes
                .into_iter()
                .filter(|v| v.persistent_volume_claim.is_some())
                .map(|v| Volume {
                    name: v.name,
                    persistent_volume_claim: v.persistent_volume_claim,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    let status = pod.status.take().unwrap_or_default();
    pod.status = Some(PodStatus {
        phase: status.phase,
        reason: status.reason,
        pod_ip: status.pod_ip,
        pod_ips: status
            .pod_ips
            .map(|ips| ips.into_iter().map(|p| PodIP { ip: p.ip }).collect()),
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    message: None,
                    reason: None,
                    last_probe_time: None,
                    ..c
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|s| ContainerStatus {
                    restart_count: s.restart_count,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
}

/// The containers that have named ports, with only those ports (and whether an init container
/// is a sidecar, whose ports endpoints serve).
fn named_ports_only(containers: Vec<Container>) -> Vec<Container> {
    containers
        .into_iter()
        .filter_map(|c| {
            let ports: Vec<ContainerPort> = c
                .ports
                .into_iter()
                .flatten()
                .filter(|p| p.name.is_some())
                .map(|p| ContainerPort {
                    name: p.name,
                    container_port: p.container_port,
                    protocol: p.protocol,
                    ..Default::default()
                })
                .collect();
            (!ports.is_empty()).then(|| Container {
                ports: Some(ports),
                restart_policy: c.restart_policy,
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rv: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv}
        }))
        .unwrap()
    }

    /// A subscriber that records what it saw as `<event> <pod>@<rv> (old rv)` lines.
    fn recorder(shared: &SharedPods) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        shared.subscribe(move |event, old| {
            let at = |p: &Pod| {
                format!(
                    "{}@{}",
                    p.metadata.name.as_deref().unwrap(),
                    p.metadata.resource_version.as_deref().unwrap()
                )
            };
            let line = match event {
                watcher::Event::Init => "Init".to_string(),
                watcher::Event::InitApply(p) => format!("InitApply {}", at(p)),
                watcher::Event::InitDone => "InitDone".to_string(),
                watcher::Event::Apply(p) => format!("Apply {} (old {:?})", at(p), old.map(at)),
                watcher::Event::Delete(p) => format!("Delete {} (old {:?})", at(p), old.map(at)),
            };
            s.lock().unwrap().push(line);
        });
        seen
    }

    fn apply(shared: &SharedPods, event: watcher::Event<Pod>) {
        lock(&shared.dispatch).apply(&shared.store, &event);
    }

    fn taken(seen: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *seen.lock().unwrap())
    }

    #[test]
    fn every_subscriber_sees_the_whole_list_however_late_it_comes() {
        let (shared, _ready) = SharedPods::unstarted();
        let early = recorder(&shared);
        apply(&shared, watcher::Event::Init);
        apply(&shared, watcher::Event::InitApply(pod("a", "1")));
        let mid_list = recorder(&shared);
        apply(&shared, watcher::Event::InitApply(pod("b", "2")));
        apply(&shared, watcher::Event::InitDone);
        let listed = ["Init", "InitApply a@1", "InitApply b@2", "InitDone"];
        assert_eq!(taken(&early), listed);
        let mut replayed = taken(&mid_list);
        replayed[1..3].sort();
        assert_eq!(
            replayed, listed,
            "a subscriber that missed part of a list gets all of it"
        );

        let late = recorder(&shared);
        let mut replayed = taken(&late);
        replayed[1..3].sort();
        assert_eq!(
            replayed, listed,
            "a subscriber after the list gets a replay"
        );

        apply(&shared, watcher::Event::Apply(pod("a", "3")));
        apply(&shared, watcher::Event::Delete(pod("b", "4")));
        let changes = [
            "Apply a@3 (old Some(\"a@1\"))",
            "Delete b@4 (old Some(\"b@2\"))",
        ];
        for seen in [&early, &mid_list, &late] {
            assert_eq!(
                taken(seen),
                changes,
                "each change once, with the pod it replaced"
            );
        }
        assert_eq!(shared.store().state().len(), 1);
    }

    #[test]
    fn a_subscriber_during_a_relist_waits_for_its_end() {
        let (shared, _ready) = SharedPods::unstarted();
        apply(&shared, watcher::Event::Init);
        apply(&shared, watcher::Event::InitApply(pod("a", "1")));
        apply(&shared, watcher::Event::InitDone);
        apply(&shared, watcher::Event::Init);
        let relisting = recorder(&shared);
        apply(&shared, watcher::Event::InitApply(pod("b", "5")));
        assert!(taken(&relisting).is_empty(), "nothing of a half relist");
        apply(&shared, watcher::Event::InitDone);
        assert_eq!(taken(&relisting), ["Init", "InitApply b@5", "InitDone"]);
    }

    #[test]
    fn slimming_keeps_what_the_controllers_read() {
        let mut full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7",
                         "creationTimestamp": "2025-01-01T00:00:00Z", "deletionTimestamp": "2025-01-02T00:00:00Z",
                         "labels": {"a": "b"},
                         "annotations": {"big": "x", "controller.kubernetes.io/pod-deletion-cost": "-5"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r", "controller": true}],
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "n1", "hostname": "h", "subdomain": "s", "schedulerName": "default-scheduler",
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                         {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}},
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                                               {"containerPort": 81}]},
                                    {"name": "d", "image": "x"}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}},
                                 {"name": "e", "emptyDir": {}}]},
            "status": {"phase": "Failed", "reason": "Evicted", "hostIP": "10.0.0.9",
                       "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True", "message": "m", "reason": "r",
                                       "lastTransitionTime": "2025-01-01T00:00:05Z"},
                                      {"type": "Initialized", "status": "True"}],
                       "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "", "ready": true, "restartCount": 3}]}
        }))
        .unwrap();
        slim_pod(&mut full);
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7",
                             "creationTimestamp": "2025-01-01T00:00:00Z", "deletionTimestamp": "2025-01-02T00:00:00Z",
                             "labels": {"a": "b"},
                             "annotations": {"controller.kubernetes.io/pod-deletion-cost": "-5"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r", "controller": true}]},
                "spec": {"nodeName": "n1", "hostname": "h", "subdomain": "s",
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}},
                         "containers": [{"name": "", "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]}],
                         "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": "Failed", "reason": "Evicted", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                           "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:05Z"}],
                           "containerStatuses": [{"name": "", "image": "", "imageID": "", "ready": false, "restartCount": 3}]}
            })
        );
    }
}

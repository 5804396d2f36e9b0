//! The Services and pods both endpoint controllers read, watched once and shared (as upstream's
//! shared informers): pods are slimmed, and every change that may move a Service's endpoints
//! queues that Service with each subscribed controller.

use super::pods;
use crate::sharedpods::SharedPods;
use crate::workqueue::{WorkQueue, key_of};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Shared caches of Services and (slimmed) pods. Cloning gives another handle on the same.
#[derive(Clone)]
pub struct ServicePods {
    /// Every Service.
    pub services: Store<Service>,
    /// Every pod, slimmed to what endpoints need.
    pub pods: Store<Pod>,
    subscribers: Arc<Mutex<Vec<WorkQueue<String>>>>,
    /// Whether both caches hold a full list. A store's own readiness wakes only one waiter
    /// (kube-runtime's `DelayedInit` keeps a single waker), so it is awaited once, here.
    ready: tokio::sync::watch::Receiver<bool>,
}

impl ServicePods {
    /// Starts watching Services on `client`, and follows the shared pod informer `pods`.
    pub fn start(client: Client, shared_pods: &SharedPods) -> Self {
        let (services, mut service_writer) = reflector::store::<Service>();
        let pods = shared_pods.store();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let shared = Self {
            services,
            pods,
            subscribers: Arc::default(),
            ready,
        };
        let (s, p) = (shared.clone(), shared_pods.clone());
        tokio::spawn(async move {
            let listed = s.services.wait_until_ready().await.is_ok() && p.synced().await;
            ready_tx.send_replace(listed);
        });
        let s = shared.clone();
        tokio::spawn(
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(event) => {
                        service_writer.apply_watcher_event(&event);
                        s.service_event(&event);
                    }
                    Err(err) => tracing::warn!(%err, "service watch failed"),
                }
                futures::future::ready(())
            }),
        );
        let s = shared.clone();
        shared_pods.subscribe(move |event, old| s.pod_event(event, old));
        shared
    }

    /// A queue that receives the key of every Service whose endpoints may have changed,
    /// starting with every Service already known.
    pub fn subscribe(&self) -> WorkQueue<String> {
        let queue = WorkQueue::new();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for service in self.services.state() {
            queue.add(key_of(&service.metadata));
        }
        subscribers.push(queue.clone());
        queue
    }

    /// Waits until both caches hold a full list; false if they never will.
    pub async fn wait_until_ready(&self) -> bool {
        let mut ready = self.ready.clone();
        ready.wait_for(|listed| *listed).await.is_ok()
    }

    /// The pods `service` selects.
    pub fn selected_pods(&self, service: &Service) -> Vec<Arc<Pod>> {
        if pods::selector(service).is_none() {
            return Vec::new();
        }
        self.pods.state_filter(|pod| pods::selects(service, pod))
    }

    /// The Service `namespace/name`, if cached.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    fn queue(&self, keys: impl IntoIterator<Item = String>) {
        let subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            for queue in subscribers.iter() {
                queue.add(key.clone());
            }
        }
    }

    fn queue_all(&self) {
        self.queue(self.services.state().iter().map(|s| key_of(&s.metadata)));
    }

    fn service_event(&self, event: &watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(service) | watcher::Event::Delete(service) => {
                self.queue([key_of(&service.metadata)])
            }
            // A relist may have missed deletions: every Service is looked at again, and the
            // controllers sweep what the missing ones left.
            watcher::Event::InitDone => self.queue_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// Queues the Services a pod was or is selected by (upstream's `addPod`/`updatePod`/
    /// `deletePod`), unless nothing endpoints show changed.
    fn pod_event(&self, event: &watcher::Event<Pod>, old: Option<&Pod>) {
        let selecting = |pod: &Pod| -> BTreeSet<String> {
            self.services
                .state_filter(|s| pods::selects(s, pod))
                .iter()
                .map(|s| key_of(&s.metadata))
                .collect()
        };
        match event {
            watcher::Event::Apply(pod) => {
                let mut keys = selecting(pod);
                match old {
                    Some(old) if !pods::endpoints_changed(old, pod) => return,
                    Some(old) if old.labels() != pod.labels() => keys.extend(selecting(old)),
                    _ => {}
                }
                self.queue(keys);
            }
            watcher::Event::Delete(pod) => self.queue(selecting(pod)),
            watcher::Event::InitDone => self.queue_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

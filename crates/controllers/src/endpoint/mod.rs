//! The Endpoints controller (upstream `pkg/controller/endpoint`): keeps, for every Service with
//! a selector, an Endpoints object of the same name listing the selected pods' addresses,
//! ready and not ready, with the ports the Service's ports resolve to ([`subsets`]).
//!
//! [`informer`] and [`pods`] are shared with the EndpointSlice controller; [`apiserver`] keeps
//! the `kubernetes` Service's endpoints, as upstream's API server reconciler.

pub mod apiserver;
pub mod informer;
pub mod pods;
pub mod subsets;
pub mod triggertime;

use crate::apierror;
use crate::events::{self, EventRecorder, EventType};
use crate::workqueue::{WorkQueue, key_of};
use futures::StreamExt;
use informer::ServicePods;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use triggertime::TriggerTimeTracker;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "endpoint-controller";
/// Concurrent syncs (kube-controller-manager's `--concurrent-endpoint-syncs`).
const WORKERS: usize = 5;
/// The annotation of leader-election records kept in Endpoints, which have no Service and
/// must not be swept.
const LEADER_ELECTION_RECORD: &str = "control-plane.alpha.kubernetes.io/leader";

/// Runs the controller on the shared Service and pod caches until the process ends.
pub async fn run(client: Client, service_pods: ServicePods) {
    let (endpoints, writer) = reflector::store::<Endpoints>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        queue: service_pods.subscribe(),
        service_pods,
        endpoints,
        trigger_times: TriggerTimeTracker::default(),
        stale_versions: Mutex::default(),
    });
    let c = controller.clone();
    tokio::spawn(
        watcher(Api::<Endpoints>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(move |event| {
                match event {
                    // Endpoints deleted behind the controller's back come back.
                    Ok(watcher::Event::Delete(endpoints)) => {
                        c.queue.add(key_of(&endpoints.metadata))
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "endpoints watch failed"),
                }
                futures::future::ready(())
            }),
    );
    if !controller.service_pods.wait_until_ready().await
        || controller.endpoints.wait_until_ready().await.is_err()
    {
        return;
    }
    controller.queue_leftovers();
    let queue = controller.queue.clone();
    queue
        .run_workers(WORKERS, "endpoints", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    service_pods: ServicePods,
    endpoints: Store<Endpoints>,
    queue: WorkQueue<String>,
    trigger_times: TriggerTimeTracker,
    /// By key, the resource version of Endpoints this controller has since replaced: a cache
    /// still showing it is stale (upstream's `staleEndpointsTracker`).
    stale_versions: Mutex<HashMap<String, String>>,
}

impl Controller {
    /// Queues every Endpoints object once, so that those whose Service went away while the
    /// controller was down are deleted (upstream's `checkLeftoverEndpoints`).
    fn queue_leftovers(&self) {
        for endpoints in self.endpoints.state() {
            let annotations = endpoints.metadata.annotations.as_ref();
            if !annotations.is_some_and(|a| a.contains_key(LEADER_ELECTION_RECORD)) {
                self.queue.add(key_of(&endpoints.metadata));
            }
        }
    }

    fn stale_versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.stale_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// One sync of the Service `key` (upstream's `syncService`).
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let api = Api::<Endpoints>::namespaced(self.client.clone(), namespace);
        let Some(service) = self.service_pods.service(namespace, name) else {
            // The Service is gone: so are its endpoints.
            match api.delete(name, &DeleteParams::default()).await {
                Err(e) if !apierror::is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
            self.trigger_times.delete(key);
            self.stale_versions().remove(key);
            return Ok(None);
        };
        // ExternalName Services get none, and selectorless ones get theirs from elsewhere.
        if pods::is_external_name(&service) || pods::selector(&service).is_none() {
            return Ok(None);
        }
        let selected = self.service_pods.selected_pods(&service);
        let selected: Vec<&Pod> = selected.iter().map(Arc::as_ref).collect();
        let trigger_time = self
            .trigger_times
            .compute(key, &service, selected.iter().copied());
        let desired = subsets::desired_subsets(&service, &selected);

        let current = self.endpoints.get(&ObjectRef::new(name).within(namespace));
        if let Some(current) = &current
            && self.stale_versions().get(key) == current.metadata.resource_version.as_ref()
        {
            anyhow::bail!(
                "endpoints informer cache is out of date, resource version {} already processed for endpoints {key}",
                current
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default()
            );
        }
        let Some(endpoints) = subsets::plan(&service, desired, current.as_deref(), trigger_time)
        else {
            return Ok(None);
        };
        let reference = events::reference(&endpoints);
        let Some(current) = current else {
            return match api.create(&PostParams::default(), &endpoints).await {
                Ok(_) => Ok(None),
                // Nothing is created in a namespace being deleted; that is no failure.
                Err(e) if apierror::is_namespace_terminating(&e) => Ok(None),
                Err(e) => {
                    let message = format!(
                        "Failed to create endpoint for service {namespace}/{name}: {}",
                        apierror::message(&e)
                    );
                    self.recorder.record(
                        &reference,
                        EventType::Warning,
                        "FailedToCreateEndpoint",
                        message,
                    );
                    Err(e.into())
                }
            };
        };
        match api.replace(name, &PostParams::default(), &endpoints).await {
            Ok(updated) => {
                if updated.metadata.resource_version != current.metadata.resource_version
                    && let Some(version) = current.resource_version()
                {
                    self.stale_versions().insert(key.to_owned(), version);
                }
                Ok(None)
            }
            Err(e) => {
                let message = format!(
                    "Failed to update endpoint {namespace}/{name}: {}",
                    apierror::message(&e)
                );
                self.recorder.record(
                    &reference,
                    EventType::Warning,
                    "FailedToUpdateEndpoint",
                    message,
                );
                Err(e.into())
            }
        }
    }
}

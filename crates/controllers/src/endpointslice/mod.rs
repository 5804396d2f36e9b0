//! The EndpointSlice controller (upstream `pkg/controller/endpointslice`): keeps, for every
//! Service with a selector, EndpointSlices named `<service>-<random>` listing the selected
//! pods as endpoints with ready/serving/terminating conditions, at most
//! [`MAX_ENDPOINTS_PER_SLICE`] per slice ([`reconciler`]). The slices are owned by the Service
//! and go with it through the garbage collector.

pub mod reconciler;
pub mod tracker;

use crate::apierror;
use crate::endpoint::apiserver::SERVICE_NAME_LABEL;
use crate::endpoint::informer::ServicePods;
use crate::endpoint::pods;
use crate::endpoint::triggertime::TriggerTimeTracker;
use crate::events::{self, EventRecorder, EventType};
use crate::workqueue::WorkQueue;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use reconciler::{CONTROLLER_NAME, MANAGED_BY, NodeZone};
use std::sync::Arc;
use std::time::Duration;
use tracker::SliceTracker;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "endpointslice-controller";
/// Concurrent syncs (kube-controller-manager's `--concurrent-service-endpoint-syncs`).
const WORKERS: usize = 5;
/// The most endpoints in one slice (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The node label naming its zone, all the controller keeps of a node.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Runs the controller on the shared Service and pod caches until the process ends.
pub async fn run(client: Client, service_pods: ServicePods) {
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        queue: service_pods.subscribe(),
        service_pods,
        slices,
        nodes,
        tracker: SliceTracker::default(),
        trigger_times: TriggerTimeTracker::default(),
    });
    let managed = format!("{MANAGED_BY}={CONTROLLER_NAME}");
    let c = controller.clone();
    tokio::spawn(
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .default_backoff()
        .reflect(slice_writer)
        .for_each(move |event| {
            match event {
                Ok(event) => c.slice_event(&event),
                Err(err) => tracing::warn!(%err, "endpoint slice watch failed"),
            }
            futures::future::ready(())
        }),
    );
    tokio::spawn(
        watcher(Api::<Node>::all(client), watcher::Config::default())
            .default_backoff()
            .modify(slim_node)
            .reflect(node_writer)
            .for_each(|_| futures::future::ready(())),
    );
    if !controller.service_pods.wait_until_ready().await
        || controller.slices.wait_until_ready().await.is_err()
        || controller.nodes.wait_until_ready().await.is_err()
    {
        return;
    }
    let queue = controller.queue.clone();
    queue
        .run_workers(WORKERS, "endpoint slice", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

/// Keeps of a node its name and zone.
fn slim_node(node: &mut Node) {
    let zone = node
        .metadata
        .labels
        .take()
        .and_then(|mut labels| labels.remove_entry(ZONE_LABEL));
    node.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: node.metadata.name.take(),
        resource_version: node.metadata.resource_version.take(),
        labels: zone.map(|entry| [entry].into()),
        ..Default::default()
    };
    node.spec = None;
    node.status = None;
}

/// The key of the Service a slice belongs to, by its service-name label.
fn service_key(slice: &EndpointSlice) -> Option<String> {
    let name = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(format!("{}/{name}", slice.namespace().unwrap_or_default()))
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    service_pods: ServicePods,
    /// The slices this controller manages.
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    queue: WorkQueue<String>,
    tracker: SliceTracker,
    trigger_times: TriggerTimeTracker,
}

impl Controller {
    /// Queues a slice's Service when somebody else changed or deleted the slice.
    fn slice_event(&self, event: &watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) => {
                if let Some(key) = service_key(slice)
                    && self.tracker.should_sync(&key, slice)
                {
                    self.queue.add(key);
                }
            }
            watcher::Event::Delete(slice) => {
                if let Some(key) = service_key(slice)
                    && self.tracker.unexpected_deletion(&key, slice)
                {
                    self.queue.add(key);
                }
            }
            watcher::Event::InitDone => {
                for key in self.slices.state().iter().filter_map(|s| service_key(s)) {
                    self.queue.add(key);
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn node_zone(&self, name: &str) -> NodeZone {
        let node = self.nodes.get(&ObjectRef::new(name))?;
        Some(node.labels().get(ZONE_LABEL).cloned())
    }

    /// One sync of the Service `key` (upstream's `syncService`).
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let Some(service) = self.service_pods.service(namespace, name) else {
            // Its slices go with it, through the garbage collector.
            self.tracker.forget(key);
            self.trigger_times.delete(key);
            return Ok(None);
        };
        if pods::is_external_name(&service) || pods::selector(&service).is_none() {
            return Ok(None);
        }
        let selected = self.service_pods.selected_pods(&service);
        let selected: Vec<&Pod> = selected.iter().map(Arc::as_ref).collect();
        let cached = self.slices.state_filter(|s| {
            s.namespace().as_deref() == Some(namespace)
                && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                && s.metadata.deletion_timestamp.is_none()
        });
        let existing: Vec<&EndpointSlice> = cached.iter().map(Arc::as_ref).collect();
        if self.tracker.stale(key, &existing) {
            anyhow::bail!("EndpointSlice informer cache is out of date");
        }
        let trigger_time = self
            .trigger_times
            .compute(key, &service, selected.iter().copied());
        let plan = reconciler::reconcile(
            &service,
            &selected,
            &existing,
            |node| self.node_zone(node),
            MAX_ENDPOINTS_PER_SLICE,
            trigger_time,
        );
        if let Err(err) = self
            .apply(key, &service, plan.create, plan.update, &plan.delete)
            .await
        {
            let message =
                format!("Error updating Endpoint Slices for Service {namespace}/{name}: {err:#}");
            self.recorder.record(
                &events::reference(service.as_ref()),
                EventType::Warning,
                "FailedToUpdateEndpointSlices",
                message,
            );
            return Err(err);
        }
        if !plan.missing_nodes.is_empty() {
            anyhow::bail!("{}", plan.missing_nodes.join(", "));
        }
        Ok(None)
    }

    /// Writes a plan (upstream's `finalize`), recording each write in the tracker.
    async fn apply(
        &self,
        key: &str,
        service: &Service,
        create: Vec<EndpointSlice>,
        update: Vec<EndpointSlice>,
        delete: &[String],
    ) -> anyhow::Result<()> {
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let api = Api::<EndpointSlice>::namespaced(self.client.clone(), &namespace);
        for slice in create {
            match api.create(&PostParams::default(), &slice).await {
                Ok(created) => self.tracker.written(key, &created),
                // Nothing is created in a namespace being deleted; that is no failure.
                Err(e) if apierror::is_namespace_terminating(&e) => return Ok(()),
                Err(e) => anyhow::bail!(
                    "failed to create EndpointSlice for Service {namespace}/{name}: {}",
                    apierror::message(&e)
                ),
            }
        }
        for slice in update {
            let slice_name = slice.name_any();
            match api
                .replace(&slice_name, &PostParams::default(), &slice)
                .await
            {
                Ok(updated) => self.tracker.written(key, &updated),
                Err(e) => anyhow::bail!(
                    "failed to update {slice_name} EndpointSlice for Service {namespace}/{name}: {}",
                    apierror::message(&e)
                ),
            }
        }
        for slice_name in delete {
            match api.delete(slice_name, &DeleteParams::default()).await {
                Ok(_) => {
                    let cached = self
                        .slices
                        .get(&ObjectRef::new(slice_name).within(&namespace));
                    if let Some(slice) = cached {
                        self.tracker.deleted(key, &slice);
                    }
                }
                Err(e) if apierror::is_not_found(&e) => {}
                Err(e) => anyhow::bail!(
                    "failed to delete {slice_name} EndpointSlice for Service {namespace}/{name}: {}",
                    apierror::message(&e)
                ),
            }
        }
        Ok(())
    }
}

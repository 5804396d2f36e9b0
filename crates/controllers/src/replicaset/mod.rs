//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps `spec.replicas`
//! active pods matching each ReplicaSet's selector, adopting matching orphans and releasing
//! pods that stop matching, and reports what it sees in the status.
//!
//! Each sync claims the pods, creates or deletes the difference (at most 500 per sync, creates
//! in slow-start batches, deletes chosen by [`ranking`]) and writes [`status`]. Expectations
//! keep a sync from acting again before the informer has shown its last creates and deletes.

pub mod ranking;
pub mod status;

use crate::controller_ref::{self, ControllerRefManager, plan_claims};
use crate::events::{self, EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::podevents::{PodEvents, PodOwners, selecting_owners};
use crate::sharedpods::SharedPods;
use crate::slowstart::slow_start_batch;
use crate::workqueue::WorkQueue;
use crate::workqueue::key_of;
use crate::{apierror, informer, podutil, statuswriter};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_api::selector::LabelSelector;
use status::ManageError;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "replicaset-controller";
/// The most pods created or deleted in one sync (upstream's `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Concurrent syncs (kube-controller-manager's `--concurrent-replicaset-syncs`).
const WORKERS: usize = 5;

/// Runs the controller until the process ends, on the shared pod informer `pods`.
pub async fn run(client: Client, pods: SharedPods) {
    let (replica_sets, rs_writer) = reflector::store::<ReplicaSet>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        replica_sets,
        pods: pods.store(),
        queue: WorkQueue::new(),
        expectations: Expectations::new(),
        pod_events: PodEvents::default(),
    });
    let c = controller.clone();
    informer::spawn(
        Api::all(client),
        rs_writer,
        informer::keep_all,
        move |event| c.replica_set_event(event),
    );
    let c = controller.clone();
    pods.subscribe(move |event, _| c.pod_events.handle(event, &*c, &c.expectations, &c.queue));
    if !(informer::synced(&controller.replica_sets).await && pods.synced().await) {
        return;
    }
    let queue = controller.queue.clone();
    queue
        .run_workers(WORKERS, "replica set", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<String>,
    expectations: Expectations,
    pod_events: PodEvents,
}

impl Controller {
    fn replica_set_event(&self, event: watcher::Event<ReplicaSet>) {
        match event {
            watcher::Event::Apply(rs) => self.queue.add(key_of(&rs.metadata)),
            watcher::Event::Delete(rs) => {
                let key = key_of(&rs.metadata);
                self.expectations.forget(&key);
                self.queue.add(key);
            }
            // The store holds the relisted objects only once the relist is done.
            watcher::Event::InitDone => {
                for rs in self.replica_sets.state() {
                    self.queue.add(key_of(&rs.metadata));
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

impl PodOwners for Controller {
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        controller_ref::resolve_controller(&self.replica_sets, &pod.metadata)
            .map(|rs| key_of(&rs.metadata))
    }

    fn selecting(&self, pod: &Pod) -> Vec<String> {
        selecting_owners(&self.replica_sets, pod, selector_of)
    }

    fn all_keys(&self) -> Vec<String> {
        self.replica_sets
            .state()
            .iter()
            .map(|rs| key_of(&rs.metadata))
            .collect()
    }
}

impl Controller {
    /// One sync of the ReplicaSet `key` (upstream's `syncReplicaSet`); `Ok(Some(d))` asks to
    /// be synced again after `d`.
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let Some(rs) = self
            .replica_sets
            .get(&ObjectRef::new(name).within(namespace))
        else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(selector) = selector_of(&rs) else {
            tracing::warn!(%key, "replica set has an invalid selector; not syncing it");
            return Ok(None);
        };
        let needs_sync = self.expectations.satisfied(key);
        let deleting = rs.metadata.deletion_timestamp.is_some();

        let all_pods = self.pods.state();
        let active: Vec<&Pod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && podutil::is_active(p))
            .collect();
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let manager = ControllerRefManager {
            children: &pod_api,
            owner: controller_ref::owner_reference(rs.as_ref()),
        };
        let rs_api = Api::<ReplicaSet>::namespaced(self.client.clone(), namespace);
        let owned = manager
            .claim(
                plan_claims(&uid, deleting, &selector, active.iter().copied()),
                || async {
                    let fresh = rs_api.get_opt(name).await?;
                    Ok(fresh
                        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
                        .and_then(|rs| rs.metadata.uid))
                },
            )
            .await?;

        let manage_error = if needs_sync && !deleting {
            self.manage_replicas(key, &rs, &owned, &active).await
        } else {
            None
        };

        let now = Timestamp::now();
        let new_status = status::calculate(&rs, &owned, manage_error.as_ref(), now);
        if rs.status.as_ref() != Some(&new_status) {
            statuswriter::replace_status(&rs_api, &rs, |rs| rs.status = Some(new_status.clone()))
                .await?;
        }
        if let Some(error) = manage_error {
            anyhow::bail!("managing pods: {error:?}");
        }
        let min_ready_seconds = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let ready = new_status.ready_replicas.unwrap_or(0);
        let waiting_for_availability = min_ready_seconds > 0
            && ready == new_status.replicas
            && new_status.available_replicas.unwrap_or(0) != new_status.replicas;
        Ok(waiting_for_availability.then(|| Duration::from_secs(min_ready_seconds as u64)))
    }

    /// Creates or deletes pods so that `owned` matches `spec.replicas` (upstream's
    /// `manageReplicas`); `active` are the namespace's active pods, for deletion ranking.
    async fn manage_replicas(
        &self,
        key: &str,
        rs: &ReplicaSet,
        owned: &[&Pod],
        active: &[&Pod],
    ) -> Option<ManageError> {
        let spec = rs.spec.as_ref()?;
        let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let reference = events::reference(rs);
        if owned.len() < wanted {
            let count = (wanted - owned.len()).min(BURST_REPLICAS);
            let template = spec.template.clone().unwrap_or_default();
            let owner = controller_ref::owner_reference(rs);
            let generate_name = format!("{}-", rs.name_any());
            self.expectations.expect(key, count, []);
            let (created, error) = slow_start_batch(count, 1, || async {
                let pod = podutil::pod_from_template(
                    &template,
                    namespace,
                    generate_name.clone(),
                    owner.clone(),
                );
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(pod) => {
                        let message = format!("Created pod: {}", pod.name_any());
                        self.recorder.record(
                            &reference,
                            EventType::Normal,
                            "SuccessfulCreate",
                            message,
                        );
                        Ok(())
                    }
                    // Nothing is created in a namespace being deleted; that is no failure.
                    Err(e) if apierror::is_namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        let message = format!("Error creating: {}", apierror::message(&e));
                        self.recorder.record(
                            &reference,
                            EventType::Warning,
                            "FailedCreate",
                            message,
                        );
                        Err(e)
                    }
                }
            })
            .await;
            // Creates that failed or never ran will not be observed.
            self.expectations.lowered_creations(key, count - created);
            return error.map(|e| ManageError::Create(apierror::message(&e)));
        }
        if owned.len() > wanted {
            let count = (owned.len() - wanted).min(BURST_REPLICAS);
            let related = self.related_pods(rs, active);
            let doomed = ranking::pods_to_delete(owned, &related, count, Timestamp::now());
            self.expectations
                .expect(key, 0, doomed.iter().map(|p| key_of(&p.metadata)));
            let results = join_all(doomed.iter().map(|pod| async {
                let name = pod.name_any();
                match pod_api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let message = format!("Deleted pod: {name}");
                        self.recorder.record(
                            &reference,
                            EventType::Normal,
                            "SuccessfulDelete",
                            message,
                        );
                        Ok(())
                    }
                    Err(e) => {
                        // No deletion will be observed: do not wait for it.
                        self.expectations
                            .deletion_observed(key, &key_of(&pod.metadata));
                        if apierror::is_not_found(&e) {
                            return Ok(());
                        }
                        let message = format!("Error deleting: {}", apierror::message(&e));
                        self.recorder.record(
                            &reference,
                            EventType::Warning,
                            "FailedDelete",
                            message,
                        );
                        Err(e)
                    }
                }
            }))
            .await;
            let error = results.into_iter().find_map(Result::err);
            return error.map(|e| ManageError::Delete(apierror::message(&e)));
        }
        None
    }

    /// The active pods of every ReplicaSet that shares `rs`'s controller (a Deployment's
    /// ReplicaSets), or `rs`'s own when it has none (upstream's `getIndirectlyRelatedPods`).
    fn related_pods<'a>(&self, rs: &ReplicaSet, active: &[&'a Pod]) -> Vec<&'a Pod> {
        let siblings: HashSet<String> = match controller_ref::controller_of(&rs.metadata) {
            Some(owner) => self
                .replica_sets
                .state()
                .iter()
                .filter(|other| other.metadata.namespace == rs.metadata.namespace)
                .filter(|other| {
                    controller_ref::controller_of(&other.metadata)
                        .is_some_and(|o| o.uid == owner.uid)
                })
                .filter_map(|other| other.metadata.uid.clone())
                .collect(),
            None => rs.metadata.uid.iter().cloned().collect(),
        };
        active
            .iter()
            .copied()
            .filter(|p| {
                controller_ref::controller_of(&p.metadata)
                    .is_some_and(|o| siblings.contains(&o.uid))
            })
            .collect()
    }
}

/// The ReplicaSet's selector, if it parses.
fn selector_of(rs: &ReplicaSet) -> Option<LabelSelector> {
    let selector = &rs.spec.as_ref()?.selector;
    LabelSelector::from_label_selector(selector).ok()
}

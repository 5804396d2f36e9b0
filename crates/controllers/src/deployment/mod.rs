//! The Deployment controller (upstream `pkg/controller/deployment`): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`, with the
//! RollingUpdate or Recreate strategy, proportional scaling mid-rollout, revision history,
//! pause/resume, progress deadlines and every status field.
//!
//! Each sync is decided without I/O by [`plan`] ([`sync`], `rolling`, `recreate`, `rollback`,
//! [`progress`], [`util`]); this module holds the I/O: informers on Deployments, ReplicaSets
//! and (slimmed) pods, the work queue keyed by Deployment, claiming ReplicaSets through the
//! [`ControllerRefManager`], and carrying out a plan's steps in order, stopping at the first
//! that fails.

pub mod progress;
mod recreate;
mod rollback;
mod rolling;
pub mod sync;
#[cfg(test)]
mod tests;
pub mod util;

pub use sync::{Event, Plan, Step, plan};

use crate::apierror;
use crate::controller_ref::{
    ControllerRefManager, controller_of, owner_reference, plan_claims, resolve_controller,
};
use crate::events::{self, EventRecorder};
use crate::sharedpods::SharedPods;
use crate::workqueue::{WorkQueue, key_of};
use crate::{informer, podutil};
use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_api::selector::LabelSelector;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How many Deployments are synced at once (kube-controller-manager's
/// `--concurrent-deployment-syncs`).
const WORKERS: usize = 5;

/// Runs the controller until the process ends, on the shared pod informer `pods`.
pub async fn run(client: Client, shared_pods: SharedPods) {
    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let (replica_sets, replica_set_writer) = reflector::store::<ReplicaSet>();
    let pods = shared_pods.store();
    let queue = WorkQueue::<String>::new();

    let (deployment_queue, all_deployments) = (queue.clone(), deployments.clone());
    informer::spawn(
        Api::all(client.clone()),
        deployment_writer,
        informer::keep_all,
        move |event| match event {
            watcher::Event::Apply(d) | watcher::Event::Delete(d) => {
                deployment_queue.add(key_of(&d.metadata))
            }
            // The store holds the relisted objects only once the relist is done.
            watcher::Event::InitDone => {
                for d in all_deployments.state() {
                    deployment_queue.add(key_of(&d.metadata));
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        },
    );
    let (rs_queue, rs_deployments) = (queue.clone(), deployments.clone());
    informer::spawn(
        Api::all(client.clone()),
        replica_set_writer,
        informer::keep_all,
        move |event| {
            if let watcher::Event::Apply(rs) | watcher::Event::Delete(rs) = event {
                for key in deployments_for_replica_set(&rs, &rs_deployments) {
                    rs_queue.add(key);
                }
            }
        },
    );
    let (pod_queue, pod_deployments, pod_replica_sets) =
        (queue.clone(), deployments.clone(), replica_sets.clone());
    shared_pods.subscribe(move |event, _| {
        // Only Recreate waits for pods: the last old pod going lets it proceed
        // (upstream's `deletePod`).
        if let watcher::Event::Delete(pod) = event
            && let Some(rs) = resolve_controller(&pod_replica_sets, &pod.metadata)
            && let Some(d) = resolve_controller(&pod_deployments, &rs.metadata)
            && !util::is_rolling_update(&d)
        {
            pod_queue.add(key_of(&d.metadata));
        }
    });
    if !(informer::synced(&deployments).await
        && informer::synced(&replica_sets).await
        && shared_pods.synced().await)
    {
        return;
    }
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), "deployment-controller"),
        client,
        deployments,
        replica_sets,
        pods,
    });
    queue
        .run_workers(WORKERS, "deployment", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

/// The Deployments to sync when a ReplicaSet changes (upstream's `addReplicaSet`,
/// `updateReplicaSet`, `deleteReplicaSet`): its controller, or for an orphan every Deployment
/// in its namespace whose selector matches it, which may adopt it.
fn deployments_for_replica_set(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<String> {
    if controller_of(&rs.metadata).is_some() {
        return resolve_controller(deployments, &rs.metadata)
            .map(|d| key_of(&d.metadata))
            .into_iter()
            .collect();
    }
    let labels = rs.labels();
    deployments
        .state_filter(|d| {
            d.metadata.namespace == rs.metadata.namespace
                && d.spec
                    .as_ref()
                    .and_then(|s| LabelSelector::from_label_selector(&s.selector).ok())
                    .is_some_and(|selector| !selector.is_empty() && selector.matches(labels))
        })
        .iter()
        .map(|d| key_of(&d.metadata))
        .collect()
}

/// The controller's caches and clients.
struct Controller {
    client: Client,
    recorder: EventRecorder,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

impl Controller {
    /// Syncs one Deployment (upstream's `syncDeployment`): claims its ReplicaSets, plans, and
    /// carries the plan out. Returns when to come back regardless of changes.
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let Some(deployment) = self
            .deployments
            .get(&ObjectRef::new(name).within(namespace))
        else {
            return Ok(None);
        };
        let replica_sets = self.claim_replica_sets(&deployment, namespace).await?;
        let rs_with_live_pods = if util::is_rolling_update(&deployment) {
            HashSet::new()
        } else {
            self.rs_with_live_pods(namespace, &replica_sets)
        };
        // Whole seconds, as the API server stores condition times.
        let now = Timestamp::from_second(Timestamp::now().as_second())?;
        let plan = plan(&deployment, replica_sets, &rs_with_live_pods, now);
        self.apply(&deployment, plan.steps, now).await?;
        match plan.failure {
            Some(failure) => Err(anyhow::anyhow!(failure)),
            None => Ok(plan.requeue),
        }
    }

    /// The ReplicaSets the Deployment controls after adopting matching orphans and releasing
    /// those that stopped matching (upstream's `getReplicaSetsForDeployment`).
    async fn claim_replica_sets(
        &self,
        deployment: &Deployment,
        namespace: &str,
    ) -> anyhow::Result<Vec<ReplicaSet>> {
        let selector = deployment
            .spec
            .as_ref()
            .map(|s| LabelSelector::from_label_selector(&s.selector))
            .transpose()
            .with_context(|| {
                format!(
                    "deployment {namespace}/{} has invalid label selector",
                    deployment.name_any()
                )
            })?
            .unwrap_or_else(LabelSelector::nothing);
        let candidates = self
            .replica_sets
            .state_filter(|rs| rs.namespace().as_deref() == Some(namespace));
        let claims = plan_claims(
            deployment.metadata.uid.as_deref().unwrap_or_default(),
            deployment.metadata.deletion_timestamp.is_some(),
            &selector,
            candidates.iter().map(Arc::as_ref),
        );
        let api = Api::<ReplicaSet>::namespaced(self.client.clone(), namespace);
        let manager = ControllerRefManager {
            children: &api,
            owner: owner_reference(deployment),
        };
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), namespace);
        let name = deployment.name_any();
        // Adoption re-reads the Deployment past the cache: one being deleted must not adopt.
        let fresh_uid = || async move {
            let fresh = deployments.get_opt(&name).await?;
            Ok(fresh
                .filter(|d| d.metadata.deletion_timestamp.is_none())
                .and_then(|d| d.metadata.uid))
        };
        let owned = manager.claim(claims, fresh_uid).await?;
        Ok(owned.into_iter().cloned().collect())
    }

    /// The uids of `replica_sets` that have pods not in a terminal phase (upstream's
    /// `getPodMapForDeployment`, reduced to what Recreate asks of it).
    fn rs_with_live_pods(&self, namespace: &str, replica_sets: &[ReplicaSet]) -> HashSet<String> {
        let owned: HashSet<&str> = replica_sets
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        self.pods
            .state_filter(|pod| {
                pod.namespace().as_deref() == Some(namespace) && !podutil::is_terminated(pod)
            })
            .iter()
            .filter_map(|pod| controller_of(&pod.metadata))
            .filter(|owner| owned.contains(owner.uid.as_str()))
            .map(|owner| owner.uid.clone())
            .collect()
    }

    /// Makes the plan's writes in order, stopping at the first failure. An object written
    /// twice in one sync is written the second time at the resourceVersion the first write
    /// returned.
    async fn apply(
        &self,
        deployment: &Deployment,
        steps: Vec<Step>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let namespace = deployment.namespace().unwrap_or_default();
        let replica_sets = Api::<ReplicaSet>::namespaced(self.client.clone(), &namespace);
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &namespace);
        let reference = events::reference(deployment);
        let record = |event: Option<Event>| {
            if let Some(event) = event {
                self.recorder
                    .record(&reference, event.type_, event.reason, event.message);
            }
        };
        let mut written: HashMap<String, Option<String>> = HashMap::new();
        let mut deployment_version = None;
        for step in steps {
            match step {
                Step::CreateReplicaSet { replica_set, event } => {
                    let created = self
                        .create_replica_set(deployment, &replica_sets, &replica_set, now)
                        .await?;
                    written.insert(created.name_any(), created.metadata.resource_version);
                    record(event);
                }
                Step::UpdateReplicaSet {
                    mut replica_set,
                    event,
                } => {
                    let name = replica_set.name_any();
                    if let Some(version) = written.get(&name) {
                        replica_set.metadata.resource_version.clone_from(version);
                    }
                    let updated = replica_sets
                        .replace(&name, &PostParams::default(), &replica_set)
                        .await
                        .with_context(|| format!("updating replica set {name}"))?;
                    written.insert(name, updated.metadata.resource_version);
                    record(event);
                }
                Step::DeleteReplicaSet { name } => {
                    match replica_sets.delete(&name, &DeleteParams::default()).await {
                        Err(error) if apierror::is_not_found(&error) => {}
                        other => {
                            other.with_context(|| format!("deleting replica set {name}"))?;
                        }
                    }
                }
                Step::UpdateStatus(updated) => {
                    let written = deployments
                        .replace_status(&updated.name_any(), &PostParams::default(), &updated)
                        .await
                        .context("updating deployment status")?;
                    deployment_version = written.metadata.resource_version;
                }
                Step::UpdateDeployment {
                    deployment: mut updated,
                    event,
                } => {
                    if deployment_version.is_some() {
                        updated
                            .metadata
                            .resource_version
                            .clone_from(&deployment_version);
                    }
                    deployments
                        .replace(&updated.name_any(), &PostParams::default(), &updated)
                        .await
                        .context("updating deployment")?;
                    record(event);
                }
                Step::Record(event) => record(Some(event)),
            }
        }
        Ok(())
    }

    /// Creates the new ReplicaSet. A name taken by a ReplicaSet that is not this Deployment's
    /// new one is a hash collision: `status.collisionCount` goes up so the next sync picks
    /// another name. Other failures are reported on the Deployment (upstream's
    /// `getNewReplicaSet`).
    async fn create_replica_set(
        &self,
        deployment: &Deployment,
        api: &Api<ReplicaSet>,
        replica_set: &ReplicaSet,
        now: Timestamp,
    ) -> anyhow::Result<ReplicaSet> {
        let name = replica_set.name_any();
        let error = match api.create(&PostParams::default(), replica_set).await {
            Ok(created) => return Ok(created),
            Err(error) => error,
        };
        let deployments = Api::<Deployment>::namespaced(
            self.client.clone(),
            &deployment.namespace().unwrap_or_default(),
        );
        match &error {
            kube::Error::Api(status) if status.reason == "AlreadyExists" => {
                let existing = api.get_opt(&name).await?;
                let ours = existing.as_ref().is_some_and(|rs| {
                    controller_of(&rs.metadata).map(|o| &o.uid) == deployment.metadata.uid.as_ref()
                        && rs
                            .spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| {
                                util::equal_ignoring_hash(
                                    t,
                                    &util::template_of_deployment(deployment),
                                )
                            })
                });
                if !ours {
                    let bumped = sync::after_collision(deployment);
                    deployments
                        .replace_status(&deployment.name_any(), &PostParams::default(), &bumped)
                        .await
                        .context("recording a replica set name collision")?;
                    tracing::info!(deployment = %deployment.name_any(), rs = %name, "hash collision; bumped collisionCount");
                }
                // Either way the cache is behind: the next sync sees the ReplicaSet or the new
                // collision count.
                Err(error).with_context(|| format!("replica set {name} already exists"))
            }
            _ if apierror::is_namespace_terminating(&error) => {
                Err(error).context("namespace is terminating")
            }
            _ => {
                let message = apierror::message(&error);
                let (updated, event) = sync::after_create_failure(deployment, &name, &message, now);
                if let Some(updated) = updated
                    && let Err(err) = deployments
                        .replace_status(&updated.name_any(), &PostParams::default(), &updated)
                        .await
                {
                    tracing::debug!(%err, "could not record the replica set creation failure");
                }
                self.recorder.record(
                    &events::reference(deployment),
                    event.type_,
                    event.reason,
                    event.message,
                );
                Err(error).with_context(|| format!("creating replica set {name}"))
            }
        }
    }
}

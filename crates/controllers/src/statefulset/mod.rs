//! The StatefulSet controller (upstream `pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>`, each with its own claims from `volumeClaimTemplates`, created in order,
//! removed in reverse order and updated from the highest ordinal down.
//!
//! Each sync finds the current and update revisions ([`crate::history`]), plans what to do
//! ([`control::plan`]), carries the plan out here (claims before pods, claim owner references
//! as the retention policy says) and writes the status.

pub mod control;
pub mod identity;

use crate::controller_ref::{self, ControllerRefManager, plan_claims};
use crate::events::{self, EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::history::{self, HistoryError};
use crate::podevents::{PodEvents, PodOwners, selecting_owners};
use crate::sharedpods::SharedPods;
use crate::workqueue::{WorkQueue, key_of};
use crate::{apierror, informer, statuswriter};
use control::{Action, Revisions};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::selector::LabelSelector;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "statefulset-controller";
/// Concurrent syncs (kube-controller-manager's `--concurrent-statefulset-syncs`).
const WORKERS: usize = 5;

/// Runs the controller until the process ends, on the shared pod informer `shared_pods`.
pub async fn run(client: Client, shared_pods: SharedPods) {
    let (sets, set_writer) = reflector::store::<StatefulSet>();
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (revisions, revision_writer) = reflector::store::<ControllerRevision>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        sets,
        pods: shared_pods.store(),
        claims,
        revisions,
        queue: WorkQueue::new(),
        pod_events: PodEvents::default(),
        no_expectations: Expectations::new(),
    });
    let c = controller.clone();
    informer::spawn(
        Api::all(client.clone()),
        set_writer,
        informer::keep_all,
        move |event| match event {
            watcher::Event::Apply(set) | watcher::Event::Delete(set) => {
                c.queue.add(key_of(&set.metadata))
            }
            // The store holds the relisted objects only once the relist is done.
            watcher::Event::InitDone => c.queue_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        },
    );
    let c = controller.clone();
    shared_pods.subscribe(move |event, _| {
        c.pod_events
            .handle(event, &*c, &c.no_expectations, &c.queue)
    });
    informer::spawn(
        Api::all(client.clone()),
        claim_writer,
        informer::keep_all,
        informer::ignore,
    );
    informer::spawn(
        Api::all(client),
        revision_writer,
        informer::keep_all,
        informer::ignore,
    );
    if !(informer::synced(&controller.sets).await
        && shared_pods.synced().await
        && informer::synced(&controller.claims).await
        && informer::synced(&controller.revisions).await)
    {
        return;
    }
    let queue = controller.queue.clone();
    queue
        .run_workers(WORKERS, "stateful set", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        })
        .await;
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue<String>,
    pod_events: PodEvents,
    /// The StatefulSet controller acts on what its cache shows, without expectations, as
    /// upstream's; pod events are routed with this empty set.
    no_expectations: Expectations,
}

impl PodOwners for Controller {
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        controller_ref::resolve_controller(&self.sets, &pod.metadata).map(|s| key_of(&s.metadata))
    }

    fn selecting(&self, pod: &Pod) -> Vec<String> {
        selecting_owners(&self.sets, pod, selector_of)
    }

    fn all_keys(&self) -> Vec<String> {
        self.sets
            .state()
            .iter()
            .map(|s| key_of(&s.metadata))
            .collect()
    }
}

/// Why a sync stopped early without failing.
enum Outcome {
    /// The plan was carried out.
    Done,
    /// A claim still belongs to an earlier pod of the same name; the garbage collector
    /// removes it first.
    WaitingForStaleClaim,
}

impl Controller {
    fn queue_all(&self) {
        for key in self.all_keys() {
            self.queue.add(key);
        }
    }

    /// One sync of the StatefulSet `key` (upstream's `syncStatefulSet`).
    async fn sync(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let Some(selector) = selector_of(&set) else {
            tracing::warn!(%key, "stateful set has an invalid selector; not syncing it");
            return Ok(None);
        };
        let set_api = Api::<StatefulSet>::namespaced(self.client.clone(), namespace);
        let revision_api = Api::<ControllerRevision>::namespaced(self.client.clone(), namespace);
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let deleting = set.metadata.deletion_timestamp.is_some();
        let uid = set.metadata.uid.clone().unwrap_or_default();

        // Pods: the set's by selector and by name.
        let all_pods = self.pods.state();
        let candidates: Vec<&Pod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                identity::member_ordinal(&set, p).is_some()
                    || controller_ref::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
            })
            .collect();
        let manager = ControllerRefManager {
            children: &pod_api,
            owner: controller_ref::owner_reference(set.as_ref()),
        };
        let pods: Vec<&Pod> = manager
            .claim(
                plan_claims(&uid, deleting, &selector, candidates),
                || async {
                    let fresh = set_api.get_opt(name).await?;
                    Ok(fresh
                        .filter(|s| s.metadata.deletion_timestamp.is_none())
                        .and_then(|s| s.metadata.uid))
                },
            )
            .await?
            .into_iter()
            .filter(|p| identity::member_ordinal(&set, p).is_some())
            .collect();

        // Revisions.
        let spec = set.spec.clone().unwrap_or_default();
        let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
        let all_revisions = self.revisions.state();
        let in_namespace: Vec<&ControllerRevision> = all_revisions
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let owner = history::Owner {
            object: set.as_ref(),
            selector: &selector,
            template: &spec.template,
            collision_count,
        };
        let history = match history::construct(&revision_api, &set_api, owner, &in_namespace).await
        {
            Ok(history) => history,
            Err(HistoryError::Collision(revision)) => {
                let count = collision_count.unwrap_or(0) + 1;
                statuswriter::replace_status(&set_api, &set, |s| {
                    s.status
                        .get_or_insert_with(Default::default)
                        .collision_count = Some(count)
                })
                .await?;
                anyhow::bail!("revision {revision} collides; collision count raised to {count}");
            }
            Err(e) => return Err(e.into()),
        };
        let update_name = history.current.name_any();
        let current_revision = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .and_then(|wanted| history.old.iter().find(|r| r.name_any() == wanted))
            .unwrap_or(&history.current);
        let current_name = current_revision.name_any();
        let current_template =
            history::template_of(current_revision).unwrap_or_else(|| spec.template.clone());
        let revisions = Revisions {
            current: (&current_name, &current_template),
            update: (&update_name, &spec.template),
        };

        let now = Timestamp::now();
        let (actions, mut status) = control::plan(&set, &revisions, &pods, now);
        let outcome = self.carry_out(&set, &pods, actions).await;

        control::complete_rolling_update(&set, &mut status);
        let old_status = set.status.clone().unwrap_or_default();
        status.conditions = old_status.conditions.clone();
        if status != old_status {
            statuswriter::replace_status(&set_api, &set, |s| s.status = Some(status.clone()))
                .await?;
        }
        if matches!(outcome?, Outcome::Done) {
            let live: HashSet<&str> = pods
                .iter()
                .filter_map(|p| control::revision_of(p))
                .chain([current_name.as_str(), update_name.as_str()])
                .collect();
            let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
            let old = history.old.clone();
            history::truncate(
                &revision_api,
                old,
                |r| live.contains(r.name_any().as_str()),
                limit,
            )
            .await?;
        }
        let min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
        let waiting = min_ready_seconds > 0 && status.ready_replicas != status.available_replicas;
        Ok(waiting.then(|| Duration::from_secs(min_ready_seconds as u64)))
    }

    /// Carries out `actions` in order, stopping at the first error.
    async fn carry_out(
        &self,
        set: &StatefulSet,
        pods: &[&Pod],
        actions: Vec<Action>,
    ) -> anyhow::Result<Outcome> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let pod_api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let reference = events::reference(set);
        let set_name = set.name_any();
        for action in actions {
            match action {
                Action::CreatePod(pod) => {
                    let ordinal = identity::member_ordinal(set, &pod).unwrap_or_default();
                    let pod_name = pod.name_any();
                    if self.has_stale_claim(set, ordinal) {
                        return Ok(Outcome::WaitingForStaleClaim);
                    }
                    self.create_missing_claims(set, &pod_name, ordinal).await?;
                    match pod_api.create(&PostParams::default(), &pod).await {
                        Ok(_) => self.recorder.record(
                            &reference,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        ),
                        Err(e) if apierror::is_already_exists(&e) => return Err(e.into()),
                        Err(e) => {
                            self.recorder.record(
                                &reference,
                                EventType::Warning,
                                "FailedCreate",
                                format!(
                                    "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                                    apierror::message(&e)
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                }
                Action::CreateMissingClaims { pod, ordinal } => {
                    self.create_missing_claims(set, &pod, ordinal).await?;
                }
                Action::DeletePod(pod) => {
                    match pod_api.delete(&pod, &DeleteParams::default()).await {
                        Ok(_) => self.recorder.record(
                            &reference,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod} in StatefulSet {set_name} successful"),
                        ),
                        Err(e) if apierror::is_not_found(&e) => {}
                        Err(e) => {
                            self.recorder.record(
                                &reference,
                                EventType::Warning,
                                "FailedDelete",
                                format!(
                                    "delete Pod {pod} in StatefulSet {set_name} failed error: {}",
                                    apierror::message(&e)
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                }
                Action::FixIdentity { pod, ordinal } => {
                    let labels = json!({
                        identity::POD_NAME_LABEL: pod,
                        identity::POD_INDEX_LABEL: ordinal.to_string(),
                    });
                    let patch = Patch::Merge(json!({"metadata": {"labels": labels}}));
                    pod_api.patch(&pod, &PatchParams::default(), &patch).await?;
                }
                Action::SyncClaimOwners {
                    pod,
                    ordinal,
                    condemned,
                } => {
                    let pod_uid = pods
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                        .and_then(|p| p.metadata.uid.clone());
                    if let Some(pod_uid) = pod_uid {
                        self.sync_claim_owners(set, &pod, &pod_uid, ordinal, condemned)
                            .await?;
                    }
                }
            }
        }
        Ok(Outcome::Done)
    }

    fn claim_in_cache(&self, claim: &PersistentVolumeClaim) -> Option<Arc<PersistentVolumeClaim>> {
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        self.claims
            .get(&ObjectRef::new(&claim.name_any()).within(namespace))
    }

    /// Whether a claim of the pod-to-be still names an earlier pod as its owner (the retention
    /// policy made it the pod's), so it is about to be deleted (upstream's `PodClaimIsStale`).
    fn has_stale_claim(&self, set: &StatefulSet, ordinal: i32) -> bool {
        identity::claims(set, ordinal).iter().any(|(_, claim)| {
            self.claim_in_cache(claim).is_some_and(|existing| {
                existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.kind == "Pod")
            })
        })
    }

    /// Creates the pod's claims that do not exist yet (upstream's
    /// `createPersistentVolumeClaims`).
    async fn create_missing_claims(
        &self,
        set: &StatefulSet,
        pod: &str,
        ordinal: i32,
    ) -> anyhow::Result<()> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace);
        let reference = events::reference(set);
        let set_name = set.name_any();
        for (_, claim) in identity::claims(set, ordinal) {
            let claim_name = claim.name_any();
            if let Some(existing) = self.claim_in_cache(&claim) {
                if existing.metadata.deletion_timestamp.is_some() {
                    anyhow::bail!("pvc {claim_name} is being deleted");
                }
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.recorder.record(
                    &reference,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success"
                    ),
                ),
                Err(e) if apierror::is_already_exists(&e) => {}
                Err(e) => {
                    self.recorder.record(
                        &reference,
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {}",
                            apierror::message(&e)
                        ),
                    );
                    anyhow::bail!(
                        "failed to create PVC {claim_name}: {}",
                        apierror::message(&e)
                    );
                }
            }
        }
        Ok(())
    }

    /// Makes the owner references of the pod's claims say what the retention policy wants
    /// (upstream's `updateClaimOwnerRefForSetAndPod`): the set owns them when they go with
    /// the set, the pod owns those of a condemned pod when they go with scale-downs.
    async fn sync_claim_owners(
        &self,
        set: &StatefulSet,
        pod: &str,
        pod_uid: &str,
        ordinal: i32,
        condemned: bool,
    ) -> anyhow::Result<()> {
        let policy = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
            .unwrap_or_default();
        let deletes = |p: Option<&String>| p.is_some_and(|p| p == "Delete");
        let pod_owns = condemned && deletes(policy.when_scaled.as_ref());
        let set_owns = deletes(policy.when_deleted.as_ref()) && !pod_owns;
        let set_uid = set.metadata.uid.clone().unwrap_or_default();
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace);
        for (_, claim) in identity::claims(set, ordinal) {
            let Some(existing) = self.claim_in_cache(&claim) else {
                continue;
            };
            let refs = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            // A claim another controller owns is left alone.
            if refs
                .iter()
                .any(|r| r.controller == Some(true) && r.uid != set_uid && r.uid != pod_uid)
            {
                continue;
            }
            let mut wanted: Vec<OwnerReference> = refs
                .iter()
                .filter(|r| r.uid != set_uid && r.uid != pod_uid)
                .cloned()
                .collect();
            if set_owns {
                wanted.push(controller_ref::owner_reference(set));
            }
            if pod_owns {
                wanted.push(OwnerReference {
                    api_version: Pod::api_version(&()).into_owned(),
                    kind: Pod::kind(&()).into_owned(),
                    name: pod.to_owned(),
                    uid: pod_uid.to_owned(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                });
            }
            let have: HashSet<&str> = refs.iter().map(|r| r.uid.as_str()).collect();
            let want: HashSet<&str> = wanted.iter().map(|r| r.uid.as_str()).collect();
            if have != want {
                let patch = Patch::Merge(json!({"metadata": {"ownerReferences": wanted}}));
                api.patch(&claim.name_any(), &PatchParams::default(), &patch)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The StatefulSet's selector, if it parses.
fn selector_of(set: &StatefulSet) -> Option<LabelSelector> {
    LabelSelector::from_label_selector(&set.spec.as_ref()?.selector).ok()
}

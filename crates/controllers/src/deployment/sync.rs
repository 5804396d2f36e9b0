//! One sync of one Deployment, decided without I/O (upstream's `syncDeployment` and
//! `sync.go`): [`plan`] looks at the Deployment, the ReplicaSets it owns and which of those
//! still have pods, and returns the writes to make in order. This module holds the sync's
//! shared state and the paths common to all strategies: revision bookkeeping and creating the
//! new ReplicaSet, scaling (proportionally, mid-rollout), cleanup of old ReplicaSets, and the
//! status write that ends every sync.

use super::progress;
use super::util::{self, rs_replicas};
use super::{recreate, rollback, rolling};
use crate::controller_ref::owner_reference;
use crate::events::EventType;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// An event about the Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// The machine-readable reason, e.g. `ScalingReplicaSet`.
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
}

impl Event {
    fn scaling(message: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason: "ScalingReplicaSet",
            message,
        }
    }
}

/// One write of a sync. The controller makes them in order and stops at the first that fails.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create the new ReplicaSet; once created, record the event.
    CreateReplicaSet {
        /// The ReplicaSet to create.
        replica_set: Box<ReplicaSet>,
        /// `Scaled up replica set X from 0 to N`, when N > 0.
        event: Option<Event>,
    },
    /// Update a ReplicaSet (its `resourceVersion` is the precondition); once updated, record
    /// the event.
    UpdateReplicaSet {
        /// The ReplicaSet as it should be.
        replica_set: Box<ReplicaSet>,
        /// `Scaled up|down replica set X from A to B`, when its size changes.
        event: Option<Event>,
    },
    /// Delete an old ReplicaSet (revision history cleanup); one already gone is no failure.
    DeleteReplicaSet {
        /// Its name.
        name: String,
    },
    /// Write the Deployment through `/status`: its status, and its revision annotation (which
    /// upstream's status strategy lets through).
    UpdateStatus(Box<Deployment>),
    /// Update the Deployment itself (a legacy rollback: its template and annotations, the
    /// rollback request cleared); once updated, record the event.
    UpdateDeployment {
        /// The Deployment as it should be.
        deployment: Box<Deployment>,
        /// `Rolled back deployment "x" to revision N`, when the template changed.
        event: Option<Event>,
    },
    /// Record an event that goes with no write.
    Record(Event),
}

/// What one sync decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The writes, in order.
    pub steps: Vec<Step>,
    /// When to sync again even if nothing changes (deadlines, minReadySeconds).
    pub requeue: Option<Duration>,
    /// Why the sync fails after its writes, as upstream reports some refusals: the Deployment
    /// comes back with the queue's back-off.
    pub failure: Option<String>,
}

/// Plans one sync of `deployment` (upstream's `syncDeployment`, after claiming):
/// `replica_sets` are the ReplicaSets it controls, `rs_with_live_pods` the uids of those that
/// still have pods not in a terminal phase (only Recreate looks), `now` the time of the sync.
pub fn plan(
    deployment: &Deployment,
    replica_sets: Vec<ReplicaSet>,
    rs_with_live_pods: &HashSet<String>,
    now: Timestamp,
) -> Plan {
    let mut sync = Sync::new(deployment.clone(), replica_sets, now);
    if selects_everything(deployment) {
        return sync.selecting_all();
    }
    if deployment.metadata.deletion_timestamp.is_some() {
        sync.sync_revision();
        let status = sync.status();
        return sync.finish(status, None);
    }
    progress::check_paused_conditions(&mut sync.deployment, now);
    sync.sync_revision();
    let paused = deployment
        .spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false);
    if paused {
        return sync.sync();
    }
    if let Some(revision) = util::rollback_to(deployment) {
        return rollback::rollback(sync, revision);
    }
    if sync.is_scaling_event() {
        return sync.sync();
    }
    if util::is_rolling_update(deployment) {
        rolling::rollout(sync)
    } else {
        recreate::rollout(sync, rs_with_live_pods)
    }
}

/// Whether the selector is `{}`, which would select every pod of the namespace.
fn selects_everything(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .is_some_and(|s| is_empty_selector(&s.selector))
}

fn is_empty_selector(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// The state of one sync: the Deployment as the sync changes it and its ReplicaSets.
pub(super) struct Sync {
    /// The Deployment with this sync's changes to its annotations and status (upstream's `d`).
    pub(super) deployment: Deployment,
    /// Its annotations and status as read: the sync writes only if it changed them.
    read: (Option<BTreeMap<String, String>>, Option<DeploymentStatus>),
    /// Its ReplicaSets oldest first, as read, plus the one this sync creates. As upstream,
    /// status is computed from these, not from this sync's scaling.
    pub(super) replica_sets: Vec<ReplicaSet>,
    /// The index of the new ReplicaSet, if there is one.
    pub(super) new: Option<usize>,
    /// The time of the sync.
    pub(super) now: Timestamp,
    steps: Vec<Step>,
}

impl Sync {
    fn new(deployment: Deployment, mut replica_sets: Vec<ReplicaSet>, now: Timestamp) -> Self {
        replica_sets.sort_by(util::by_creation);
        let new = util::find_new_replica_set(&deployment, &replica_sets);
        let read = (
            deployment.metadata.annotations.clone(),
            deployment.status.clone(),
        );
        Self {
            deployment,
            read,
            replica_sets,
            new,
            now,
            steps: Vec::new(),
        }
    }

    /// `spec.replicas` of the Deployment.
    pub(super) fn replicas(&self) -> i32 {
        util::replicas(&self.deployment)
    }

    /// The new ReplicaSet.
    pub(super) fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.replica_sets[i])
    }

    /// The old ReplicaSets (all but the new one), oldest first.
    pub(super) fn old(&self) -> impl Iterator<Item = &ReplicaSet> + Clone {
        let new = self.new;
        self.replica_sets
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != new)
            .map(|(_, rs)| rs)
    }

    /// Empty selector: a Warning event and the generation observed, nothing else (validation
    /// of apps/v1 rejects such selectors, but older objects may have one).
    fn selecting_all(mut self) -> Plan {
        self.steps.push(Step::Record(Event {
            type_: EventType::Warning,
            reason: "SelectingAll",
            message: "This deployment is selecting all pods. A non-empty selector is required."
                .into(),
        }));
        let mut status = self.deployment.status.clone().unwrap_or_default();
        let generation = self.deployment.metadata.generation;
        if status.observed_generation < generation {
            status.observed_generation = generation;
        }
        self.finish(status, None)
    }

    /// Brings the existing new ReplicaSet's annotations and minReadySeconds up to date, or,
    /// when they are, the Deployment's revision and its FoundNewReplicaSet condition (the
    /// existing half of upstream's `getNewReplicaSet`).
    pub(super) fn sync_revision(&mut self) {
        let Some(index) = self.new else {
            return;
        };
        let new_revision = util::max_revision(self.old()) + 1;
        let mut rs = self.replica_sets[index].clone();
        let annotations_updated =
            util::set_new_replica_set_annotations(&self.deployment, &mut rs, new_revision, true);
        let min_ready_seconds = self.min_ready_seconds();
        let spec = rs.spec.get_or_insert_default();
        if annotations_updated || spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds {
            spec.min_ready_seconds = Some(min_ready_seconds).filter(|&s| s != 0);
            self.replica_sets[index] = rs.clone();
            self.steps.push(Step::UpdateReplicaSet {
                replica_set: Box::new(rs),
                event: None,
            });
            return;
        }
        let revision = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        util::set_deployment_revision(&mut self.deployment, &revision);
        let progressing = self
            .deployment
            .status
            .as_ref()
            .and_then(|s| progress::condition(s, progress::PROGRESSING));
        if progress::has_progress_deadline(&self.deployment) && progressing.is_none() {
            let message = format!("Found new replica set {:?}", name(&rs));
            let found = progress::new_condition(
                progress::PROGRESSING,
                "True",
                progress::FOUND_NEW_REPLICA_SET,
                message,
                self.now,
            );
            progress::set_condition(self.deployment.status.get_or_insert_default(), found);
        }
    }

    fn min_ready_seconds(&self) -> i32 {
        self.deployment
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    /// Creates the new ReplicaSet (the creating half of upstream's `getNewReplicaSet`):
    /// named `<deployment>-<pod-template-hash>`, the hash added to its labels, selector and
    /// template, as many replicas as the strategy allows now, the revision after all old
    /// ones. Returns its index.
    pub(super) fn create_new_replica_set(&mut self) -> usize {
        let deployment = &self.deployment;
        let spec = deployment.spec.clone().unwrap_or_default();
        let collision_count = deployment.status.as_ref().and_then(|s| s.collision_count);
        let mut template = spec.template.clone();
        let hash = util::pod_template_hash(&template, collision_count);
        let labels = template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default();
        labels.insert(util::POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let labels = labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(util::POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", name_of(&deployment.metadata))),
                namespace: deployment.metadata.namespace.clone(),
                owner_references: Some(vec![owner_reference(deployment)]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = util::new_rs_new_replicas(deployment, self.replica_sets.iter(), &rs);
        rs.spec.get_or_insert_default().replicas = Some(replicas);
        let new_revision = util::max_revision(self.replica_sets.iter()) + 1;
        util::set_new_replica_set_annotations(deployment, &mut rs, new_revision, false);
        let event = (replicas > 0).then(|| {
            Event::scaling(format!(
                "Scaled up replica set {} from 0 to {replicas}",
                name(&rs)
            ))
        });
        util::set_deployment_revision(&mut self.deployment, &new_revision.to_string());
        if progress::has_progress_deadline(&self.deployment) {
            let created = progress::new_condition(
                progress::PROGRESSING,
                "True",
                progress::NEW_REPLICA_SET_CREATED,
                format!("Created new replica set {:?}", name(&rs)),
                self.now,
            );
            progress::set_condition(self.deployment.status.get_or_insert_default(), created);
        }
        self.steps.push(Step::CreateReplicaSet {
            replica_set: Box::new(rs.clone()),
            event,
        });
        self.replica_sets.push(rs);
        let index = self.replica_sets.len() - 1;
        self.new = Some(index);
        index
    }

    /// Whether the Deployment is being scaled rather than rolled out (upstream's
    /// `isScalingEvent`): an active ReplicaSet was last written for other `spec.replicas`.
    fn is_scaling_event(&self) -> bool {
        let desired = self.replicas();
        self.replica_sets
            .iter()
            .filter(|rs| util::is_active(rs))
            .any(|rs| util::desired_replicas_annotation(rs).is_some_and(|d| d != desired))
    }

    /// Scales `rs` to `new_scale` and refreshes its replicas annotations, if either is out of
    /// date (upstream's `scaleReplicaSet`); whether its size changes. `operation` ("up" or
    /// "down") words the event.
    pub(super) fn scale_replica_set(
        &mut self,
        mut rs: ReplicaSet,
        new_scale: i32,
        operation: &str,
    ) -> bool {
        let old_scale = rs_replicas(&rs);
        let resize = old_scale != new_scale;
        if !resize && !util::replicas_annotations_need_update(&rs, &self.deployment) {
            return false;
        }
        rs.spec.get_or_insert_default().replicas = Some(new_scale);
        util::set_replicas_annotations(&mut rs, &self.deployment);
        let event = resize.then(|| {
            Event::scaling(format!(
                "Scaled {operation} replica set {} from {old_scale} to {new_scale}",
                name(&rs)
            ))
        });
        self.steps.push(Step::UpdateReplicaSet {
            replica_set: Box::new(rs),
            event,
        });
        resize
    }

    /// Scales `rs` to `new_scale` unless it has that size already (upstream's
    /// `scaleReplicaSetAndRecordEvent`); whether it scales.
    pub(super) fn scale_and_record(&mut self, rs: ReplicaSet, new_scale: i32) -> bool {
        let old_scale = rs_replicas(&rs);
        if old_scale == new_scale {
            return false;
        }
        let operation = if old_scale < new_scale { "up" } else { "down" };
        self.scale_replica_set(rs, new_scale, operation)
    }

    /// Scales the ReplicaSets to `spec.replicas` outside a rollout step (upstream's `scale`):
    /// the only active one (or the newest) takes all; a saturated new one leaves the old ones
    /// none; otherwise, in a rolling Deployment, the difference to `replicas + maxSurge` is
    /// spread over the active ReplicaSets in proportion to their size.
    fn scale(&mut self) {
        let desired = self.replicas();
        if let Some(rs) = self.active_or_latest() {
            if rs_replicas(&rs) != desired {
                self.scale_and_record(rs, desired);
            }
            return;
        }
        if self
            .new_rs()
            .is_some_and(|rs| util::is_saturated(&self.deployment, rs))
        {
            let active_old: Vec<ReplicaSet> = self
                .old()
                .filter(|rs| util::is_active(rs))
                .cloned()
                .collect();
            for rs in active_old {
                self.scale_and_record(rs, 0);
            }
            return;
        }
        if util::is_rolling_update(&self.deployment) {
            self.scale_proportionally();
        }
    }

    /// The only active ReplicaSet, or with none active the new one or else the newest old
    /// one; `None` with several active (upstream's `FindActiveOrLatest`).
    fn active_or_latest(&self) -> Option<ReplicaSet> {
        let mut active = self.replica_sets.iter().filter(|rs| util::is_active(rs));
        match (active.next(), active.next()) {
            (Some(only), None) => Some(only.clone()),
            (Some(_), Some(_)) => None,
            (None, _) => self.new_rs().or_else(|| self.old().last()).cloned(),
        }
    }

    /// Upstream's proportional scaling: `replicas + maxSurge` minus what the active
    /// ReplicaSets have is added to (or taken from) each in proportion to its share of the
    /// max-replicas it was last written for, largest first; what rounding leaves over goes to
    /// the largest.
    fn scale_proportionally(&mut self) {
        let desired = self.replicas();
        let mut active: Vec<ReplicaSet> = self
            .replica_sets
            .iter()
            .filter(|rs| util::is_active(rs))
            .cloned()
            .collect();
        let allowed = if desired > 0 {
            desired + util::max_surge(&self.deployment)
        } else {
            0
        };
        let to_add = allowed - util::total_replicas(&active);
        // Equal sizes: newer ones grow first, older ones shrink first.
        let operation = match to_add.signum() {
            1 => {
                active.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| util::by_creation(b, a))
                });
                "up"
            }
            -1 => {
                active.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| util::by_creation(a, b))
                });
                "down"
            }
            _ => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = active
            .iter()
            .map(|rs| {
                let proportion = self.proportion(rs, to_add, added);
                added += proportion;
                rs_replicas(rs) + proportion
            })
            .collect();
        if let Some(largest) = sizes.first_mut()
            && to_add != 0
        {
            *largest = (*largest + to_add - added).max(0);
        }
        for (rs, size) in active.into_iter().zip(sizes) {
            self.scale_replica_set(rs, size, operation);
        }
    }

    /// How many replicas `rs` gains (or loses) of `to_add`, `added` being handed out already
    /// (upstream's `GetProportion`).
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// The change that keeps `rs`'s share of the Deployment (upstream's
    /// `getReplicaSetFraction`): its size scaled from the max-replicas it was written for
    /// (else the Deployment's current pods) to `replicas + maxSurge`, rounded half away from
    /// zero.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let desired = self.replicas();
        let size = rs_replicas(rs);
        if desired == 0 {
            return -size;
        }
        let target = desired + util::max_surge(&self.deployment);
        let base = util::max_replicas_annotation(rs).unwrap_or_else(|| {
            self.deployment
                .status
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(0)
        });
        if base == 0 {
            return 0;
        }
        let scaled = (f64::from(size) * f64::from(target) / f64::from(base)).round();
        scaled as i32 - size
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` (upstream's
    /// `cleanupDeployment`): of the surplus, only those with no pods, none wanted, and their
    /// latest spec observed.
    pub(super) fn cleanup(&mut self) {
        let Some(limit) = self
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|&l| l != i32::MAX)
        else {
            return;
        };
        let mut cleanable: Vec<&ReplicaSet> = self
            .old()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        let doomed: Vec<String> = cleanable[..surplus]
            .iter()
            .filter(|rs| {
                let status = rs.status.clone().unwrap_or_default();
                status.replicas == 0
                    && rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= status.observed_generation.unwrap_or(0)
            })
            .map(|rs| name(rs).to_owned())
            .collect();
        self.steps.extend(
            doomed
                .into_iter()
                .map(|name| Step::DeleteReplicaSet { name }),
        );
    }

    /// Scaling and paused Deployments (upstream's `sync`): scale, clean up when paused, and
    /// write the plain status (no progress estimate).
    fn sync(mut self) -> Plan {
        self.scale();
        let paused = self
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.paused)
            .unwrap_or(false);
        if paused {
            self.cleanup();
        }
        let status = self.status();
        self.finish(status, None)
    }

    /// The status the ReplicaSets give the Deployment, without a progress estimate.
    fn status(&self) -> DeploymentStatus {
        progress::calculate_status(
            &self.deployment,
            self.replica_sets.iter(),
            self.new_rs(),
            self.now,
        )
    }

    /// Ends a rollout step with the status and its progress estimate (upstream's
    /// `syncRolloutStatus`).
    pub(super) fn finish_rollout(self) -> Plan {
        let all: Vec<&ReplicaSet> = self.replica_sets.iter().collect();
        let (status, requeue) =
            progress::rollout_status(&self.deployment, &all, self.new_rs(), self.now);
        self.finish(status, requeue)
    }

    /// Ends a sync that upstream fails with `failure` after the writes planned so far.
    pub(super) fn fail(self, failure: String) -> Plan {
        Plan {
            steps: self.steps,
            requeue: None,
            failure: Some(failure),
        }
    }

    /// Records an event that goes with no write.
    pub(super) fn record(&mut self, event: Event) {
        self.steps.push(Step::Record(event));
    }

    /// Writes the Deployment's status if this sync changed it or its annotations.
    pub(super) fn write_status_if_changed(&mut self) {
        let current = (
            &self.deployment.metadata.annotations,
            &self.deployment.status,
        );
        if current != (&self.read.0, &self.read.1) {
            self.steps
                .push(Step::UpdateStatus(Box::new(self.deployment.clone())));
            self.read = (
                self.deployment.metadata.annotations.clone(),
                self.deployment.status.clone(),
            );
        }
    }

    /// Ends a legacy rollback (upstream's `updateDeploymentAndClearRollbackTo`): the
    /// Deployment as the rollback left it, without its rollback request, is updated.
    pub(super) fn clear_rollback(mut self, event: Option<Event>) -> Plan {
        if let Some(annotations) = self.deployment.metadata.annotations.as_mut() {
            annotations.remove(util::ROLLBACK_TO_ANNOTATION);
        }
        self.steps.push(Step::UpdateDeployment {
            deployment: Box::new(self.deployment),
            event,
        });
        Plan {
            steps: self.steps,
            requeue: None,
            failure: None,
        }
    }

    /// Ends the sync: the Deployment is written with `status` if it or its annotations
    /// changed. Pods that are ready but not yet available bring the Deployment back after
    /// minReadySeconds, when they may count as available.
    fn finish(mut self, status: DeploymentStatus, requeue: Option<Duration>) -> Plan {
        self.deployment.status = Some(status);
        self.write_status_if_changed();
        let min_ready_seconds = self.min_ready_seconds();
        let becoming_available = self.replica_sets.iter().any(|rs| {
            let status = rs.status.clone().unwrap_or_default();
            status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0)
        });
        let min_ready = (min_ready_seconds > 0 && becoming_available)
            .then(|| Duration::from_secs(min_ready_seconds.unsigned_abs().into()));
        Plan {
            steps: self.steps,
            requeue: requeue.into_iter().chain(min_ready).min(),
            failure: None,
        }
    }
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn name(rs: &ReplicaSet) -> &str {
    name_of(&rs.metadata)
}

/// The Deployment after a name collision of its new ReplicaSet: `status.collisionCount`
/// raised by one, so that the next sync hashes the template to another name.
pub fn after_collision(deployment: &Deployment) -> Deployment {
    let mut deployment = deployment.clone();
    let status = deployment.status.get_or_insert_default();
    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
    deployment
}

/// What the controller writes when the new ReplicaSet cannot be created (upstream's
/// `getNewReplicaSet` error path): the Deployment with Progressing False/ReplicaSetCreateError
/// when it has a deadline, and the Warning event.
pub fn after_create_failure(
    deployment: &Deployment,
    rs_name: &str,
    error: &str,
    now: Timestamp,
) -> (Option<Deployment>, Event) {
    let message = format!("Failed to create new replica set {rs_name:?}: {error}");
    let updated = progress::has_progress_deadline(deployment).then(|| {
        let mut deployment = deployment.clone();
        let failed = progress::new_condition(
            progress::PROGRESSING,
            "False",
            progress::FAILED_RS_CREATE,
            message.clone(),
            now,
        );
        progress::set_condition(deployment.status.get_or_insert_default(), failed);
        deployment
    });
    let event = Event {
        type_: EventType::Warning,
        reason: progress::FAILED_RS_CREATE,
        message,
    };
    (updated, event)
}

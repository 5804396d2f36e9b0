//! The planners against a simulated cluster: table tests of single syncs with the exact
//! objects, conditions and events upstream produces, and a property test that rolls out over
//! many sizes, fenceposts and readiness patterns and checks the rollout's bounds.

use super::progress;
use super::sync::{Event, Plan, Step, after_collision, plan};
use super::util::{self, rs_replicas};
use crate::events::EventType;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

fn start() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), "web".to_owned())])
}

/// A Deployment `web` as the API server stores it after `kubectl create`, rolling with the
/// given fenceposts.
fn deployment(replicas: i32, max_surge: IntOrString, max_unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            creation_timestamp: Some(Time(start())),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(max_surge),
                    max_unavailable: Some(max_unavailable),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: Some("nginx:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: Some(DeploymentStatus::default()),
    }
}

fn percent(value: &str) -> IntOrString {
    IntOrString::String(value.into())
}

fn recreate(replicas: i32) -> Deployment {
    let mut d = deployment(replicas, IntOrString::Int(0), IntOrString::Int(1));
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    d
}

/// A pod of the simulation: available once `ready_in` ticks have passed (never when `None`).
#[derive(Clone, Copy, Debug)]
struct SimPod {
    ready_in: Option<u32>,
}

impl SimPod {
    fn available(self) -> bool {
        self.ready_in == Some(0)
    }
}

/// A cluster as the Deployment controller sees it: an API server that stores what the plans
/// write, and a ReplicaSet controller that creates pods up to each ReplicaSet's replicas and
/// deletes unavailable pods first, as upstream's ranking does.
struct World {
    deployment: Deployment,
    replica_sets: Vec<ReplicaSet>,
    pods: HashMap<String, Vec<SimPod>>,
    now: Timestamp,
    /// Ticks until each new pod becomes available, cycled; `None` never.
    readiness: Vec<Option<u32>>,
    created_pods: usize,
    events: Vec<Event>,
    next_uid: usize,
}

impl World {
    fn new(deployment: Deployment) -> Self {
        Self {
            deployment,
            replica_sets: Vec::new(),
            pods: HashMap::new(),
            now: start(),
            readiness: vec![Some(0)],
            created_pods: 0,
            events: Vec::new(),
            next_uid: 0,
        }
    }

    /// One sync of the Deployment controller, its writes stored.
    fn sync(&mut self) -> Plan {
        let live: HashSet<String> = self
            .replica_sets
            .iter()
            .filter(|rs| !self.pods[name(rs)].is_empty())
            .filter_map(|rs| rs.metadata.uid.clone())
            .collect();
        let plan = plan(&self.deployment, self.replica_sets.clone(), &live, self.now);
        self.store(&plan.steps);
        plan
    }

    fn store(&mut self, steps: &[Step]) {
        for step in steps {
            match step {
                Step::CreateReplicaSet { replica_set, event } => {
                    let mut rs = (**replica_set).clone();
                    self.next_uid += 1;
                    rs.metadata.uid = Some(format!("rs-uid-{}", self.next_uid));
                    rs.metadata.generation = Some(1);
                    // Creation times are whole seconds: later ones are later by one.
                    rs.metadata.creation_timestamp = Some(Time(
                        self.now + SignedDuration::from_secs(self.next_uid as i64),
                    ));
                    rs.status = Some(ReplicaSetStatus::default());
                    self.pods.insert(name(&rs).to_owned(), Vec::new());
                    self.replica_sets.push(rs);
                    self.events.extend(event.clone());
                }
                Step::UpdateReplicaSet { replica_set, event } => {
                    let stored = self
                        .replica_sets
                        .iter_mut()
                        .find(|rs| rs.metadata.name == replica_set.metadata.name)
                        .expect("updates name a stored replica set");
                    if stored.spec != replica_set.spec {
                        let generation = stored.metadata.generation.unwrap_or(0) + 1;
                        stored.metadata.generation = Some(generation);
                    }
                    stored.spec.clone_from(&replica_set.spec);
                    stored
                        .metadata
                        .annotations
                        .clone_from(&replica_set.metadata.annotations);
                    self.events.extend(event.clone());
                }
                Step::DeleteReplicaSet { name } => {
                    self.replica_sets
                        .retain(|rs| rs.metadata.name.as_ref() != Some(name));
                    self.pods.remove(name);
                }
                Step::UpdateStatus(d) => {
                    self.deployment.status.clone_from(&d.status);
                    self.deployment
                        .metadata
                        .annotations
                        .clone_from(&d.metadata.annotations);
                }
                Step::UpdateDeployment { deployment, event } => {
                    let changed = (&deployment.spec, &deployment.metadata.annotations)
                        != (&self.deployment.spec, &self.deployment.metadata.annotations);
                    self.deployment.spec.clone_from(&deployment.spec);
                    self.deployment
                        .metadata
                        .annotations
                        .clone_from(&deployment.metadata.annotations);
                    if changed {
                        bump_generation(&mut self.deployment);
                    }
                    self.events.extend(event.clone());
                }
                Step::Record(event) => self.events.push(event.clone()),
            }
        }
    }

    /// The ReplicaSet controller: pods up or down to each ReplicaSet's replicas, unavailable
    /// pods deleted first, then the statuses.
    fn run_replica_sets(&mut self) {
        for rs in &self.replica_sets {
            let want = usize::try_from(rs_replicas(rs)).unwrap();
            let pods = self.pods.get_mut(name(rs)).unwrap();
            while pods.len() < want {
                let ready_in = self.readiness[self.created_pods % self.readiness.len()];
                self.created_pods += 1;
                pods.push(SimPod { ready_in });
            }
            pods.sort_by_key(|pod| pod.available());
            pods.drain(..pods.len() - want.min(pods.len()));
        }
        self.refresh_statuses();
    }

    /// Time passes: one second, and pods become ready as their pattern says.
    fn tick(&mut self) {
        self.now += SignedDuration::from_secs(1);
        for pod in self.pods.values_mut().flatten() {
            if let Some(ticks) = pod.ready_in.as_mut() {
                *ticks = ticks.saturating_sub(1);
            }
        }
        self.refresh_statuses();
    }

    fn refresh_statuses(&mut self) {
        for rs in &mut self.replica_sets {
            let pods = &self.pods[rs.metadata.name.as_deref().unwrap()];
            let available = pods.iter().filter(|p| p.available()).count() as i32;
            rs.status = Some(ReplicaSetStatus {
                replicas: pods.len() as i32,
                ready_replicas: Some(available).filter(|&n| n > 0),
                available_replicas: Some(available).filter(|&n| n > 0),
                observed_generation: rs.metadata.generation,
                terminating_replicas: Some(0),
                ..Default::default()
            });
        }
    }

    fn total_pods(&self) -> i32 {
        self.pods.values().map(Vec::len).sum::<usize>() as i32
    }

    fn available(&self) -> i32 {
        self.pods
            .values()
            .flatten()
            .filter(|p| p.available())
            .count() as i32
    }

    fn set_image(&mut self, image: &str) {
        let spec = self.deployment.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        bump_generation(&mut self.deployment);
    }

    fn rs(&self, name: &str) -> &ReplicaSet {
        self.replica_sets
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no replica set {name}"))
    }

    /// The ReplicaSet whose template runs `image`.
    fn rs_running(&self, image: &str) -> &ReplicaSet {
        self.replica_sets
            .iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .unwrap()
                    .template
                    .as_ref()
                    .unwrap()
                    .spec
                    .as_ref()
                    .unwrap()
                    .containers[0]
                    .image
                    .as_deref()
                    == Some(image)
            })
            .unwrap_or_else(|| panic!("no replica set runs {image}"))
    }

    /// Syncs, lets the ReplicaSets act and time pass until the Deployment reports a complete
    /// rollout; the number of rounds it took.
    fn roll_out(&mut self, rounds: usize) -> Option<usize> {
        for round in 0..rounds {
            self.sync();
            self.run_replica_sets();
            self.tick();
            if self.is_complete() {
                return Some(round);
            }
        }
        None
    }

    fn is_complete(&self) -> bool {
        let status = self.deployment.status.clone().unwrap_or_default();
        progress::deployment_complete(&self.deployment, &status)
            && progress::condition(&status, progress::PROGRESSING)
                .is_some_and(|c| c.reason.as_deref() == Some(progress::NEW_RS_AVAILABLE))
    }

    /// Overrides a ReplicaSet's reported pods, as when its pods are terminating.
    fn set_status_replicas(&mut self, name: &str, replicas: i32) {
        let rs = self
            .replica_sets
            .iter_mut()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
            .unwrap();
        rs.status.as_mut().unwrap().replicas = replicas;
    }

    fn messages(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.message.as_str()).collect()
    }
}

fn bump_generation(d: &mut Deployment) {
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(0) + 1);
}

fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap()
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn condition(d: &Deployment, type_: &str) -> (String, String, String) {
    let status = d.status.clone().unwrap_or_default();
    let c = progress::condition(&status, type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

fn owned(s: (&str, &str, &str)) -> (String, String, String) {
    (s.0.into(), s.1.into(), s.2.into())
}

#[test]
fn a_new_deployment_creates_its_replica_set_as_upstream_names_and_annotates_it() {
    let mut d = deployment(3, percent("25%"), percent("25%"));
    d.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/change-cause".into(),
        "first".into(),
    )]));
    let mut world = World::new(d.clone());
    let plan = world.sync();
    let hash = util::pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    let rs_name = format!("web-{hash}");
    let Step::CreateReplicaSet { replica_set, event } = &plan.steps[0] else {
        panic!("the first step creates the replica set: {plan:?}");
    };
    assert_eq!(name(replica_set), rs_name);
    let spec = replica_set.spec.as_ref().unwrap();
    // 25% of 3: surge rounds up to 1, unavailable down to 0; the new RS may take all 3.
    assert_eq!(spec.replicas, Some(3));
    let mut hashed = labels();
    hashed.insert("pod-template-hash".into(), hash.clone());
    assert_eq!(replica_set.metadata.labels.as_ref(), Some(&hashed));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&hashed));
    let template_meta = spec.template.as_ref().unwrap().metadata.as_ref().unwrap();
    assert_eq!(template_meta.labels.as_ref(), Some(&hashed));
    let owner = &replica_set.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Deployment", "web", "d-uid")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(
        replica_set.metadata.annotations.as_ref().unwrap(),
        &BTreeMap::from([
            (
                "deployment.kubernetes.io/desired-replicas".into(),
                "3".into()
            ),
            ("deployment.kubernetes.io/max-replicas".into(), "4".into()),
            ("deployment.kubernetes.io/revision".into(), "1".into()),
            ("kubernetes.io/change-cause".into(), "first".into()),
        ])
    );
    assert_eq!(
        event.as_ref().unwrap(),
        &Event {
            type_: EventType::Normal,
            reason: "ScalingReplicaSet",
            message: format!("Scaled up replica set {rs_name} from 0 to 3"),
        }
    );
    let Step::UpdateStatus(written) = plan.steps.last().unwrap() else {
        panic!("the sync ends with the status: {plan:?}");
    };
    assert_eq!(
        annotation(&written.metadata, util::REVISION_ANNOTATION),
        Some("1")
    );
    assert_eq!(
        condition(written, "Progressing"),
        owned((
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{rs_name}\"")
        ))
    );
    assert_eq!(
        condition(written, "Available"),
        owned((
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability."
        ))
    );
    let status = written.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.unavailable_replicas, Some(3));
    assert_eq!(
        status.replicas, None,
        "zero counts are omitted, as upstream serializes them"
    );
    assert_eq!(plan.steps.len(), 2);
}

#[test]
fn a_rollout_completes_with_the_upstream_conditions() {
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).expect("the first rollout completes");
    let rs_name = name(&world.replica_sets[0]).to_owned();
    assert_eq!(
        condition(&world.deployment, "Progressing"),
        owned((
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
        ))
    );
    assert_eq!(
        condition(&world.deployment, "Available"),
        owned((
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability."
        ))
    );
    let status = world.deployment.status.clone().unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(
        (status.unavailable_replicas, status.terminating_replicas),
        (None, Some(0))
    );
    // A complete rollout is steady: nothing more to write, no requeue.
    assert_eq!(world.sync(), Plan::default());
}

#[test]
fn rolling_update_of_three_with_25_percent_surges_one_then_trades_old_for_new() {
    // The documented walk: surge 1, unavailable 0.
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    let old = name(&world.replica_sets[0]).to_owned();
    world.set_image("nginx:2");
    world.events.clear();
    let mut sizes = Vec::new();
    for _ in 0..12 {
        world.sync();
        world.run_replica_sets();
        let new = world.rs_running("nginx:2");
        sizes.push((rs_replicas(world.rs(&old)), rs_replicas(new)));
        world.tick();
    }
    sizes.dedup();
    assert_eq!(sizes, [(3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]);
    let new = name(world.rs_running("nginx:2")).to_owned();
    assert_eq!(
        world.messages(),
        [
            format!("Scaled up replica set {new} from 0 to 1"),
            format!("Scaled down replica set {old} from 3 to 2"),
            format!("Scaled up replica set {new} from 1 to 2"),
            format!("Scaled down replica set {old} from 2 to 1"),
            format!("Scaled up replica set {new} from 2 to 3"),
            format!("Scaled down replica set {old} from 1 to 0"),
        ]
    );
    assert!(world.is_complete());
    assert_eq!(
        annotation(&world.deployment.metadata, util::REVISION_ANNOTATION),
        Some("2")
    );
    assert_eq!(
        annotation(&world.rs(&new).metadata, util::REVISION_ANNOTATION),
        Some("2")
    );
}

#[test]
fn progress_refreshes_the_update_time_but_keeps_the_transition_time() {
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    world.set_image("nginx:2");
    world.sync();
    world.run_replica_sets();
    world.tick();
    let created = progress::condition(world.deployment.status.as_ref().unwrap(), "Progressing")
        .unwrap()
        .clone();
    world.now += SignedDuration::from_secs(30);
    world.sync();
    let status = world.deployment.status.clone().unwrap();
    let progressing = progress::condition(&status, "Progressing").unwrap();
    let new = name(world.rs_running("nginx:2"));
    assert_eq!(progressing.reason.as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(
        progressing.message.as_deref(),
        Some(format!("ReplicaSet \"{new}\" is progressing.").as_str())
    );
    assert_eq!(
        progressing.last_transition_time,
        created.last_transition_time
    );
    assert_eq!(progressing.last_update_time, Some(Time(world.now)));
}

#[test]
fn a_stuck_rollout_is_requeued_for_its_deadline_then_reported_exceeded() {
    let mut world = World::new(deployment(4, IntOrString::Int(1), IntOrString::Int(0)));
    world.roll_out(10).unwrap();
    world.readiness = vec![None];
    world.set_image("nginx:2");
    world.sync();
    world.run_replica_sets();
    // The new pod is created (progress), and never becomes ready.
    world.sync();
    let created_at = world.now;
    // No progress: nothing to write, and a requeue for the deadline (plus a second).
    world.now += SignedDuration::from_secs(100);
    let plan = world.sync();
    assert_eq!(plan.steps, []);
    assert_eq!(plan.requeue, Some(Duration::from_secs(501)));
    world.now = created_at + SignedDuration::from_secs(601);
    world.sync();
    let new = name(world.rs_running("nginx:2")).to_owned();
    assert_eq!(
        condition(&world.deployment, "Progressing"),
        owned((
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{new}\" has timed out progressing.")
        ))
    );
    // The report sticks and no further requeue is needed.
    world.now += SignedDuration::from_secs(60);
    assert_eq!(world.sync(), Plan::default());
    // The bound holds: 4 + 1 pods, 4 available.
    assert_eq!((world.total_pods(), world.available()), (5, 4));
}

#[test]
fn scaling_mid_rollout_is_proportional_as_the_documented_example() {
    // 10 replicas, surge 3, unavailable 2, stuck at old 8 + new 5; scaled to 15: +5 split
    // 3 to the old and 2 to the new ReplicaSet.
    let mut world = World::new(deployment(10, IntOrString::Int(3), IntOrString::Int(2)));
    world.roll_out(10).unwrap();
    let old = name(&world.replica_sets[0]).to_owned();
    world.readiness = vec![None];
    world.set_image("nginx:2");
    for _ in 0..4 {
        world.sync();
        world.run_replica_sets();
        world.tick();
    }
    let new = name(world.rs_running("nginx:2")).to_owned();
    assert_eq!(
        (rs_replicas(world.rs(&old)), rs_replicas(world.rs(&new))),
        (8, 5)
    );
    world.events.clear();
    world.deployment.spec.as_mut().unwrap().replicas = Some(15);
    bump_generation(&mut world.deployment);
    world.sync();
    assert_eq!(
        (rs_replicas(world.rs(&old)), rs_replicas(world.rs(&new))),
        (11, 7)
    );
    assert_eq!(
        world.messages(),
        [
            format!("Scaled up replica set {old} from 8 to 11"),
            format!("Scaled up replica set {new} from 5 to 7"),
        ]
    );
    for rs in [&old, &new] {
        let meta = &world.rs(rs).metadata;
        assert_eq!(
            annotation(meta, util::DESIRED_REPLICAS_ANNOTATION),
            Some("15")
        );
        assert_eq!(annotation(meta, util::MAX_REPLICAS_ANNOTATION), Some("18"));
    }
}

#[test]
fn scaling_a_finished_deployment_scales_its_only_replica_set() {
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    let rs = name(&world.replica_sets[0]).to_owned();
    world.events.clear();
    world.deployment.spec.as_mut().unwrap().replicas = Some(5);
    bump_generation(&mut world.deployment);
    world.sync();
    assert_eq!(rs_replicas(world.rs(&rs)), 5);
    assert_eq!(
        world.messages(),
        [format!("Scaled up replica set {rs} from 3 to 5")]
    );
    assert_eq!(
        annotation(&world.rs(&rs).metadata, util::MAX_REPLICAS_ANNOTATION),
        Some("7")
    );
}

#[test]
fn recreate_takes_every_old_pod_down_before_creating_the_new_replica_set() {
    let mut world = World::new(recreate(3));
    world.roll_out(10).unwrap();
    let old = name(&world.replica_sets[0]).to_owned();
    world.set_image("nginx:2");
    world.events.clear();
    let plan = world.sync();
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CreateReplicaSet { .. })),
        "no new replica set while old pods run"
    );
    assert_eq!(
        world.messages(),
        [format!("Scaled down replica set {old} from 3 to 0")]
    );
    // The old ReplicaSet says 0 pods but one still exists (terminating): wait.
    world.pods.get_mut(&old).unwrap().truncate(1);
    world.refresh_statuses();
    world.set_status_replicas(&old, 0);
    assert!(
        !world
            .sync()
            .steps
            .iter()
            .any(|s| matches!(s, Step::CreateReplicaSet { .. }))
    );
    world.pods.get_mut(&old).unwrap().clear();
    world.refresh_statuses();
    let plan = world.sync();
    let Step::CreateReplicaSet { replica_set, .. } = &plan.steps[0] else {
        panic!("the new replica set comes once the old pods are gone: {plan:?}");
    };
    assert_eq!(
        rs_replicas(replica_set),
        3,
        "Recreate creates it at full size"
    );
    world.run_replica_sets();
    world.tick();
    world.roll_out(5).expect("the recreate completes");
}

#[test]
fn paused_deployments_make_no_new_replica_set_and_say_so() {
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    world.deployment.spec.as_mut().unwrap().paused = Some(true);
    world.set_image("nginx:2");
    let plan = world.sync();
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CreateReplicaSet { .. }))
    );
    assert_eq!(
        condition(&world.deployment, "Progressing"),
        owned(("Unknown", "DeploymentPaused", "Deployment is paused"))
    );
    assert_eq!(
        world
            .deployment
            .status
            .as_ref()
            .unwrap()
            .observed_generation,
        Some(2)
    );
    // Resumed, the template change rolls out.
    world.deployment.spec.as_mut().unwrap().paused = Some(false);
    bump_generation(&mut world.deployment);
    let plan = world.sync();
    assert!(matches!(plan.steps[0], Step::CreateReplicaSet { .. }));
    assert_eq!(
        condition(&world.deployment, "Progressing").1,
        "NewReplicaSetCreated"
    );
}

#[test]
fn resuming_restarts_the_deadline_and_a_missed_deadline_is_kept() {
    let mut d = deployment(1, percent("25%"), percent("25%"));
    d.spec.as_mut().unwrap().paused = Some(true);
    progress::check_paused_conditions(&mut d, start());
    assert_eq!(
        condition(&d, "Progressing"),
        owned(("Unknown", "DeploymentPaused", "Deployment is paused"))
    );
    d.spec.as_mut().unwrap().paused = Some(false);
    let later = start() + SignedDuration::from_secs(5);
    progress::check_paused_conditions(&mut d, later);
    assert_eq!(
        condition(&d, "Progressing"),
        owned(("Unknown", "DeploymentResumed", "Deployment is resumed"))
    );
    let status = d.status.clone().unwrap();
    let resumed = progress::condition(&status, "Progressing").unwrap();
    assert_eq!(resumed.last_update_time, Some(Time(later)));
    assert_eq!(
        resumed.last_transition_time,
        Some(Time(start())),
        "same status, new reason"
    );
    let timed_out = progress::new_condition(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        "m".into(),
        start(),
    );
    progress::set_condition(d.status.as_mut().unwrap(), timed_out);
    d.spec.as_mut().unwrap().paused = Some(true);
    progress::check_paused_conditions(&mut d, later);
    assert_eq!(condition(&d, "Progressing").1, "ProgressDeadlineExceeded");
}

#[test]
fn rolling_back_makes_the_old_replica_set_new_with_the_next_revision() {
    let mut world = World::new(deployment(2, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    let first = name(&world.replica_sets[0]).to_owned();
    world.set_image("nginx:2");
    world.roll_out(20).unwrap();
    // kubectl rollout undo: the template goes back to revision 1's.
    world.set_image("nginx:1");
    world.events.clear();
    world.roll_out(20).unwrap();
    assert_eq!(
        world.replica_sets.len(),
        2,
        "no replica set is created for a rollback"
    );
    let meta = &world.rs(&first).metadata;
    assert_eq!(annotation(meta, util::REVISION_ANNOTATION), Some("3"));
    assert_eq!(
        annotation(meta, util::REVISION_HISTORY_ANNOTATION),
        Some("1")
    );
    assert_eq!(
        annotation(&world.deployment.metadata, util::REVISION_ANNOTATION),
        Some("3")
    );
}

/// Asks for a legacy rollback (the annotation `extensions/v1beta1` clients set).
fn request_rollback(world: &mut World, revision: &str) {
    world
        .deployment
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(util::ROLLBACK_TO_ANNOTATION.into(), revision.into());
    bump_generation(&mut world.deployment);
}

fn image(d: &Deployment) -> &str {
    let template = &d.spec.as_ref().unwrap().template;
    template.spec.as_ref().unwrap().containers[0]
        .image
        .as_deref()
        .unwrap()
}

#[test]
fn a_legacy_rollback_copies_the_revision_back_and_clears_the_request() {
    let mut d = deployment(2, percent("25%"), percent("25%"));
    d.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/change-cause".into(),
        "first".into(),
    )]));
    let mut world = World::new(d);
    world.roll_out(10).unwrap();
    world.set_image("nginx:2");
    world
        .deployment
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("kubernetes.io/change-cause".into(), "second".into());
    world.roll_out(20).unwrap();
    world.events.clear();

    // Revision 0: the one before the current.
    request_rollback(&mut world, "0");
    let plan = world.sync();
    assert!(
        matches!(plan.steps.last(), Some(Step::UpdateDeployment { .. })),
        "{plan:?}"
    );
    assert_eq!(image(&world.deployment), "nginx:1");
    let annotations = world.deployment.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["kubernetes.io/change-cause"], "first");
    assert!(!annotations.contains_key(util::ROLLBACK_TO_ANNOTATION));
    assert_eq!(
        world.messages(),
        [r#"Rolled back deployment "web" to revision 1"#]
    );
    world.roll_out(20).expect("the rollback rolls out");
    assert_eq!(world.replica_sets.len(), 2);

    // A revision that does not exist, then the current one: refused, request cleared.
    world.events.clear();
    request_rollback(&mut world, "9");
    world.sync();
    request_rollback(&mut world, "3");
    world.sync();
    assert_eq!(
        world.events,
        [
            Event {
                type_: EventType::Warning,
                reason: "DeploymentRollbackRevisionNotFound",
                message: "Unable to find the revision to rollback to.".into(),
            },
            Event {
                type_: EventType::Warning,
                reason: "DeploymentRollbackTemplateUnchanged",
                message: r#"The rollback revision contains the same template as current deployment "web""#
                    .into(),
            },
        ]
    );
    assert!(util::rollback_to(&world.deployment).is_none());
    assert_eq!(image(&world.deployment), "nginx:1");
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_revision_first() {
    let mut d = deployment(1, percent("25%"), percent("25%"));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let mut world = World::new(d);
    world.roll_out(10).unwrap();
    let first = name(&world.replica_sets[0]).to_owned();
    world.set_image("nginx:2");
    world.roll_out(20).unwrap();
    let second = name(world.rs_running("nginx:2")).to_owned();
    assert!(world.replica_sets.len() == 2, "one old revision is kept");
    world.set_image("nginx:3");
    world.roll_out(20).unwrap();
    world.sync();
    let names: HashSet<&str> = world.replica_sets.iter().map(name).collect();
    assert!(!names.contains(first.as_str()), "revision 1 is deleted");
    assert!(names.contains(second.as_str()), "revision 2 is kept");
    assert_eq!(names.len(), 2);
}

#[test]
fn a_deleting_deployment_only_gets_its_status_written() {
    let mut world = World::new(deployment(3, percent("25%"), percent("25%")));
    world.roll_out(10).unwrap();
    world.deployment.metadata.deletion_timestamp = Some(Time(world.now));
    world.deployment.spec.as_mut().unwrap().replicas = Some(1);
    bump_generation(&mut world.deployment);
    let plan = world.sync();
    assert!(
        matches!(plan.steps.as_slice(), [Step::UpdateStatus(_)]),
        "{plan:?}"
    );
    assert_eq!(
        world
            .deployment
            .status
            .as_ref()
            .unwrap()
            .observed_generation,
        Some(2)
    );
}

#[test]
fn a_name_collision_moves_the_next_replica_set_to_another_hash() {
    let d = deployment(1, percent("25%"), percent("25%"));
    let first = World::new(d.clone()).sync();
    let bumped = after_collision(&d);
    assert_eq!(bumped.status.as_ref().unwrap().collision_count, Some(1));
    let second = plan(&bumped, Vec::new(), &HashSet::new(), start());
    let created = |plan: &Plan| match &plan.steps[0] {
        Step::CreateReplicaSet { replica_set, .. } => name(replica_set).to_owned(),
        other => panic!("expected a create, got {other:?}"),
    };
    assert_ne!(created(&first), created(&second));
}

#[test]
fn ready_but_not_yet_available_pods_bring_the_deployment_back_after_min_ready_seconds() {
    let mut d = deployment(1, percent("25%"), percent("25%"));
    d.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    let mut world = World::new(d);
    world.sync();
    world.run_replica_sets();
    let rs = &mut world.replica_sets[0];
    assert_eq!(rs.spec.as_ref().unwrap().min_ready_seconds, Some(10));
    let status = rs.status.as_mut().unwrap();
    status.ready_replicas = Some(1);
    status.available_replicas = None;
    let plan = world.sync();
    assert_eq!(plan.requeue, Some(Duration::from_secs(10)));
}

#[test]
fn an_empty_selector_is_refused_with_a_warning() {
    let mut d = deployment(1, percent("25%"), percent("25%"));
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    let plan = plan(&d, Vec::new(), &HashSet::new(), start());
    assert_eq!(
        plan.steps[0],
        Step::Record(Event {
            type_: EventType::Warning,
            reason: "SelectingAll",
            message: "This deployment is selecting all pods. A non-empty selector is required."
                .into(),
        })
    );
    let Step::UpdateStatus(written) = &plan.steps[1] else {
        panic!("{plan:?}")
    };
    assert_eq!(
        written.status.as_ref().unwrap().observed_generation,
        Some(1)
    );
}

/// Fenceposts as the user writes them: an integer or a percentage.
fn fencepost() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        (0..=4i32).prop_map(IntOrString::Int),
        prop::sample::select(vec![0, 1, 10, 25, 33, 50, 100])
            .prop_map(|p| IntOrString::String(format!("{p}%"))),
    ]
}

fn literally_zero(value: &IntOrString) -> bool {
    matches!(value, IntOrString::Int(0)) || matches!(value, IntOrString::String(s) if s == "0%")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// During any rolling update, pods never exceed `replicas + maxSurge` and available pods
    /// never drop below `replicas - maxUnavailable`; with pods that become ready the rollout
    /// completes, with new pods that never do it reports the missed deadline.
    #[test]
    fn rolling_updates_stay_within_their_bounds(
        replicas in 0..=12i32,
        max_surge in fencepost(),
        max_unavailable in fencepost(),
        readiness in prop::collection::vec(0..=3u32, 1..6),
        stuck in any::<bool>(),
    ) {
        // Validation forbids both being literally 0.
        prop_assume!(!(literally_zero(&max_surge) && literally_zero(&max_unavailable)));
        let d = deployment(replicas, max_surge, max_unavailable);
        let (surge, unavailable) = (util::max_surge(&d), util::max_unavailable(&d));
        let mut world = World::new(d);
        world.readiness = readiness.iter().copied().map(Some).collect();
        prop_assert!(world.roll_out(200).is_some(), "the first rollout completes");
        prop_assert_eq!(world.available(), replicas);
        if stuck {
            world.readiness = vec![None];
        }
        world.set_image("nginx:2");
        for _ in 0..700 {
            world.sync();
            world.run_replica_sets();
            prop_assert!(
                world.total_pods() <= replicas + surge,
                "{} pods exceed {} + {}", world.total_pods(), replicas, surge
            );
            prop_assert!(
                world.available() >= replicas - unavailable,
                "{} available is below {} - {}", world.available(), replicas, unavailable
            );
            world.tick();
            if world.is_complete() {
                break;
            }
        }
        let status = world.deployment.status.clone().unwrap_or_default();
        let reason = progress::condition(&status, "Progressing").and_then(|c| c.reason.clone());
        let new_replicas = rs_replicas(world.rs_running("nginx:2"));
        if !stuck || replicas == 0 {
            prop_assert!(world.is_complete(), "the rollout completes: {:?}", status);
            prop_assert_eq!(new_replicas, replicas);
            prop_assert!(world.replica_sets.iter().filter(|rs| rs_replicas(rs) > 0).count() <= 1);
        } else {
            prop_assert_eq!(reason.as_deref(), Some("ProgressDeadlineExceeded"));
            prop_assert_eq!(world.available(), replicas - unavailable.min(replicas));
        }
    }
}

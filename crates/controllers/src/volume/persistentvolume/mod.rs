//! The PersistentVolume controller (upstream `pkg/controller/volume/persistentvolume`, the
//! "binder"): binds each claim to a matching volume, or asks its class's provisioner for one,
//! keeps both sides' phases, and reclaims the volumes of deleted claims by their policy.
//!
//! [`binder`] decides; this module watches claims, volumes and classes, queues claims and
//! volumes separately (one worker each, as upstream, so two claims never race for a volume
//! within the controller), writes the plans and resyncs everything every 15 s.

pub mod binder;

use super::{ANN_BETA_STORAGE_PROVISIONER, ANN_STORAGE_PROVISIONER, annotation, claim_ref_key};
use crate::events::{self, EventRecorder};
use crate::workqueue::{WorkQueue, key_of};
use crate::{apierror, statuswriter};
use binder::{ClaimPlan, Cluster, Event, Reclaim, VolumePlan};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// The controller's name, its events' `source.component`.
const COMPONENT: &str = "persistentvolume-controller";
/// How often every claim and volume is synced again (`--pvclaimbinder-sync-period`).
const RESYNC_PERIOD: Duration = Duration::from_secs(15);

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let controller = Arc::new(Controller {
        recorder: EventRecorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        claims,
        volumes,
        classes,
        claim_queue: WorkQueue::new(),
        volume_queue: WorkQueue::new(),
    });
    let c = controller.clone();
    tokio::spawn(
        watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(claim_writer)
        .for_each(move |event| {
            c.claim_event(event);
            futures::future::ready(())
        }),
    );
    let c = controller.clone();
    tokio::spawn(
        watcher(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(volume_writer)
        .for_each(move |event| {
            c.volume_event(event);
            futures::future::ready(())
        }),
    );
    tokio::spawn(
        watcher(Api::<StorageClass>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(class_writer)
            .for_each(|_| futures::future::ready(())),
    );
    let ready = (
        controller.claims.wait_until_ready().await,
        controller.volumes.wait_until_ready().await,
        controller.classes.wait_until_ready().await,
    );
    if ready.0.is_err() || ready.1.is_err() || ready.2.is_err() {
        return;
    }
    tokio::spawn(controller.clone().resync_periodically());
    let (claim_queue, volume_queue) = (
        controller.claim_queue.clone(),
        controller.volume_queue.clone(),
    );
    let c = controller.clone();
    tokio::join!(
        claim_queue.run_workers(1, "persistent volume claim", move |key| {
            let controller = c.clone();
            async move { controller.sync_claim(&key).await }
        }),
        volume_queue.run_workers(1, "persistent volume", move |key| {
            let controller = controller.clone();
            async move { controller.sync_volume(&key).await }
        }),
    );
}

struct Controller {
    client: Client,
    recorder: EventRecorder,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    claim_queue: WorkQueue<String>,
    volume_queue: WorkQueue<String>,
}

impl Cluster for Controller {
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }

    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes.state()
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }
}

impl Controller {
    fn claim_event(&self, event: Result<watcher::Event<PersistentVolumeClaim>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(claim) | watcher::Event::Delete(claim)) => {
                // A deleted claim releases its volume.
                if let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                    self.volume_queue.add(volume);
                }
                self.claim_queue.add(key_of(&claim.metadata));
            }
            Ok(watcher::Event::InitDone) => self.queue_everything(),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(err) => tracing::warn!(%err, "persistent volume claim watch failed"),
        }
    }

    fn volume_event(&self, event: Result<watcher::Event<PersistentVolume>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(volume)) => {
                // A new volume may be the one a pending claim waits for.
                if let Some(claim) = claim_ref_key(&volume) {
                    self.claim_queue.add(claim);
                }
                self.volume_queue.add(volume.name_any());
            }
            Ok(watcher::Event::Delete(volume)) => {
                if let Some(claim) = claim_ref_key(&volume) {
                    self.claim_queue.add(claim);
                }
            }
            Ok(watcher::Event::InitDone) => self.queue_everything(),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(err) => tracing::warn!(%err, "persistent volume watch failed"),
        }
    }

    fn queue_everything(&self) {
        for claim in self.claims.state() {
            self.claim_queue.add(key_of(&claim.metadata));
        }
        for volume in self.volumes.state() {
            self.volume_queue.add(volume.name_any());
        }
    }

    /// Upstream's `resync`: claims waiting for volumes that appear by other means than a
    /// watched change (a class created later, a provisioner that gave up) are retried.
    async fn resync_periodically(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RESYNC_PERIOD).await;
            self.queue_everything();
        }
    }

    fn record<K: Resource<DynamicType = ()>>(&self, object: &K, event: Event) {
        self.recorder.record(
            &events::reference(object),
            event.event_type,
            event.reason,
            event.message,
        );
    }

    fn claims_api(&self, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
        Api::namespaced(
            self.client.clone(),
            claim.metadata.namespace.as_deref().unwrap_or_default(),
        )
    }

    async fn sync_claim(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        match binder::sync_claim(&claim, self) {
            ClaimPlan::Bind(volume) => {
                let Some(volume) = Cluster::volume(self, &volume) else {
                    return Ok(None);
                };
                self.bind(&volume, &claim).await?;
            }
            ClaimPlan::Pending(event) => {
                if let Some(event) = event {
                    self.record(claim.as_ref(), event);
                }
                self.write_claim_status(&claim, "Pending", None).await?;
            }
            ClaimPlan::Lost(event) => {
                let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase != Some("Lost") {
                    self.write_claim_status(&claim, "Lost", None).await?;
                    self.record(claim.as_ref(), event);
                }
            }
            ClaimPlan::Provision { provisioner } => self.provision(&claim, &provisioner).await?,
            ClaimPlan::Report(event) => self.record(claim.as_ref(), event),
            ClaimPlan::Error(message) => anyhow::bail!(message),
        }
        Ok(None)
    }

    /// Upstream's `provisionClaimOperationExternal`: tells the class's provisioner, through
    /// the claim's annotations, to create a volume, and says so in an event.
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> anyhow::Result<()> {
        if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(provisioner) {
            let mut annotated = claim.clone();
            let annotations = annotated.metadata.annotations.get_or_insert_default();
            for key in [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER] {
                annotations.insert(key.into(), provisioner.into());
            }
            if let Err(e) = self
                .claims_api(claim)
                .replace(&claim.name_any(), &PostParams::default(), &annotated)
                .await
            {
                self.record(
                    claim,
                    Event {
                        event_type: events::EventType::Warning,
                        reason: "ProvisioningFailed",
                        message: format!("Error saving claim: {}", apierror::message(&e)),
                    },
                );
                return Err(e.into());
            }
        }
        self.record(
            claim,
            Event {
                event_type: events::EventType::Normal,
                reason: "ExternalProvisioning",
                message: format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
                     or manually by the system administrator. If volume creation is delayed, please verify \
                     that the provisioner is running and correctly registered."
                ),
            },
        );
        Ok(())
    }

    /// Upstream's `bind`: the volume points at the claim and is `Bound`, then the claim names
    /// the volume and is `Bound` with its capacity. Each step writes only what differs.
    async fn bind(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> anyhow::Result<()> {
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume = match binder::bind_volume_to_claim(volume, claim) {
            Some(bound) => {
                volumes
                    .replace(&volume.name_any(), &PostParams::default(), &bound)
                    .await?
            }
            None => volume.clone(),
        };
        let volume = self.write_volume_phase(&volume, "Bound", "").await?;
        let claims = self.claims_api(claim);
        let claim = match binder::bind_claim_to_volume(claim, &volume) {
            Some(bound) => {
                claims
                    .replace(&claim.name_any(), &PostParams::default(), &bound)
                    .await?
            }
            None => claim.clone(),
        };
        self.write_claim_status(&claim, "Bound", Some(&volume))
            .await
    }

    /// Upstream's `updateClaimStatus`.
    async fn write_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> anyhow::Result<()> {
        if let Some(status) = binder::claim_status(claim, phase, volume) {
            statuswriter::replace_status(&self.claims_api(claim), claim, |c| {
                c.status = Some(status.clone());
            })
            .await?;
        }
        Ok(())
    }

    /// Upstream's `updateVolumePhase`: writes only a change of phase; the API server stamps
    /// `lastPhaseTransitionTime`.
    async fn write_volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: &str,
    ) -> anyhow::Result<PersistentVolume> {
        if super::volume_phase(volume) == phase {
            return Ok(volume.clone());
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        Ok(statuswriter::replace_status(&api, volume, |v| {
            let status = v.status.get_or_insert_default();
            status.phase = Some(phase.into());
            status.message = (!message.is_empty()).then(|| message.into());
        })
        .await?)
    }

    async fn sync_volume(&self, name: &str) -> anyhow::Result<Option<Duration>> {
        let Some(volume) = Cluster::volume(self, name) else {
            return Ok(None);
        };
        let claim = self.claim_of(&volume).await?;
        match binder::sync_volume(&volume, claim.as_deref()) {
            VolumePlan::Phase(phase) => {
                self.write_volume_phase(&volume, phase, "").await?;
            }
            VolumePlan::SyncClaim(key) => self.claim_queue.add(key),
            VolumePlan::Release(reclaim) => {
                let phase = super::volume_phase(&volume);
                let volume = if phase == "Released" || phase == "Failed" {
                    volume.as_ref().clone()
                } else {
                    self.write_volume_phase(&volume, "Released", "").await?
                };
                if let Reclaim::Fail(event) = reclaim
                    && super::volume_phase(&volume) != "Failed"
                {
                    let failed = self
                        .write_volume_phase(&volume, "Failed", &event.message)
                        .await?;
                    self.record(&failed, event);
                }
            }
            VolumePlan::Unbind => {
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let unbound = api
                    .replace(
                        name,
                        &PostParams::default(),
                        &binder::unbind_volume(&volume),
                    )
                    .await?;
                self.write_volume_phase(&unbound, "Available", "").await?;
            }
        }
        Ok(None)
    }

    /// The claim `volume` points at. A claim the informer has not shown is looked up in the
    /// API before a volume in use is released (as upstream, a provisioned volume can reach
    /// the binder before its claim does).
    async fn claim_of(
        &self,
        volume: &PersistentVolume,
    ) -> anyhow::Result<Option<Arc<PersistentVolumeClaim>>> {
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            return Ok(None);
        };
        let (namespace, name) = (
            claim_ref.namespace.as_deref().unwrap_or_default(),
            claim_ref.name.as_deref().unwrap_or_default(),
        );
        if let Some(claim) = self.claims.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(claim));
        }
        let phase = super::volume_phase(volume);
        if phase == "Released" || phase == "Failed" {
            return Ok(None);
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(claim) => Ok(Some(Arc::new(claim))),
            Err(e) if apierror::is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

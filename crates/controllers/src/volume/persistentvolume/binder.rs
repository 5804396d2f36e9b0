//! The binder's decisions, as upstream's `syncClaim` and `syncVolume` make them, without I/O:
//! each sync looks at one claim (or volume) and what the informers hold, and returns what to
//! write. The I/O loop in the parent module carries the plans out.

use super::super::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    WAIT_FOR_FIRST_CONSUMER, annotation, claim_class, claim_volume_name, requested_bytes,
    volume_class, volume_phase,
};
use crate::events::EventType;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use skiff_api::selector::LabelSelector;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What the binder reads besides the object it syncs: the informers' caches.
pub trait Cluster {
    /// The volume named `name`.
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// Every volume.
    fn volumes(&self) -> Vec<Arc<PersistentVolume>>;
    /// The StorageClass named `name`.
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
}

/// An event to record about the synced object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub event_type: EventType,
    /// The reason, e.g. `WaitForFirstConsumer`.
    pub reason: &'static str,
    /// The message, as upstream words it.
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            event_type: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            event_type: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// What to do for one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimPlan {
    /// Bind the claim and the named volume, both sides (upstream's `bind`).
    Bind(String),
    /// Record `event`, if any, and keep the claim `Pending` without a volume's capacity.
    Pending(Option<Event>),
    /// The claim lost its volume: `Lost`, with the event recorded on the transition.
    Lost(Event),
    /// Ask `provisioner` for a volume: annotate the claim and record `ExternalProvisioning`.
    Provision {
        /// The class's provisioner.
        provisioner: String,
    },
    /// Only record an event; the next sync tries again.
    Report(Event),
    /// A state upstream reports as an error and retries.
    Error(String),
}

/// What to do for one volume.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumePlan {
    /// Make the phase this (writing nothing if it already is).
    Phase(&'static str),
    /// The volume points at a claim that has not caught up yet: sync that claim (`ns/name`).
    SyncClaim(String),
    /// The claim is gone: mark the volume `Released` (unless it is `Released` or `Failed`
    /// already), then reclaim it.
    Release(Reclaim),
    /// The binder bound the volume to a claim that got another one: free it again.
    Unbind,
}

/// What reclaiming a released volume takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Reclaim {
    /// Nothing here: `Retain` keeps the volume, and an external provisioner deletes its own.
    Nothing,
    /// The volume cannot be reclaimed: `Failed` with this event's message, recorded once.
    Fail(Event),
}

/// Upstream's `syncClaim`.
pub fn sync_claim(claim: &PersistentVolumeClaim, cluster: &impl Cluster) -> ClaimPlan {
    if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some() {
        sync_bound_claim(claim, cluster)
    } else {
        sync_unbound_claim(claim, cluster)
    }
}

/// Upstream's `syncUnboundClaim`: a claim not bound yet.
fn sync_unbound_claim(claim: &PersistentVolumeClaim, cluster: &impl Cluster) -> ClaimPlan {
    let volume_name = claim_volume_name(claim);
    if volume_name.is_empty() {
        let class_name = claim_class(claim);
        let class = (!class_name.is_empty())
            .then(|| cluster.class(class_name))
            .flatten();
        let delay_binding = class
            .as_ref()
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some(WAIT_FOR_FIRST_CONSUMER));
        let volumes = cluster.volumes();
        if let Some(volume) = find_best_match(claim, &volumes, delay_binding) {
            return ClaimPlan::Bind(volume.metadata.name.clone().unwrap_or_default());
        }
        let node_selected =
            annotation(&claim.metadata, ANN_SELECTED_NODE).is_some_and(|node| !node.is_empty());
        return if delay_binding && !node_selected {
            ClaimPlan::Pending(Some(Event::normal(
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )))
        } else if !class_name.is_empty() {
            match class {
                Some(class) => ClaimPlan::Provision {
                    provisioner: class.provisioner.clone(),
                },
                None => ClaimPlan::Report(Event::warning(
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                )),
            }
        } else {
            ClaimPlan::Pending(Some(Event::normal(
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )))
        };
    }
    // The user asked for a particular volume.
    let Some(volume) = cluster.volume(volume_name) else {
        return ClaimPlan::Pending(None);
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claim_ref.is_none() || is_volume_bound_to_claim(&volume, claim) {
        ClaimPlan::Bind(volume_name.to_string())
    } else if annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        // Bound to another claim by the user: wait for it to come free.
        ClaimPlan::Pending(None)
    } else {
        ClaimPlan::Error(format!(
            "Invalid binding of claim \"{}\" to volume \"{volume_name}\": volume already claimed by \"{}\"",
            claim_key(claim),
            super::super::claim_ref_key(&volume).unwrap_or_default()
        ))
    }
}

/// Upstream's `syncBoundClaim`: a claim bound before.
fn sync_bound_claim(claim: &PersistentVolumeClaim, cluster: &impl Cluster) -> ClaimPlan {
    let volume_name = claim_volume_name(claim);
    if volume_name.is_empty() {
        return ClaimPlan::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(volume) = cluster.volume(volume_name) else {
        return ClaimPlan::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    match volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        // Unbound volume (or one whose binding the informer has not shown yet): bind again.
        None => ClaimPlan::Bind(volume_name.to_string()),
        Some(claim_ref) if claim_ref.uid == claim.metadata.uid => {
            ClaimPlan::Bind(volume_name.to_string())
        }
        Some(_) => ClaimPlan::Lost(Event::warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )),
    }
}

/// Upstream's `syncVolume`; `claim` is the claim the volume points at, if it exists.
pub fn sync_volume(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumePlan {
    let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumePlan::Phase("Available");
    };
    if claim_ref.uid.as_deref().unwrap_or_default().is_empty() {
        // Reserved for a claim by name; that claim's sync binds it.
        return VolumePlan::Phase("Available");
    }
    // A claim of the same name but another uid replaced the one the volume was bound to.
    let claim = claim.filter(|c| c.metadata.uid == claim_ref.uid);
    let Some(claim) = claim else {
        return VolumePlan::Release(reclaim(volume));
    };
    let claim_volume = claim_volume_name(claim);
    let volume_name = volume.metadata.name.as_deref().unwrap_or_default();
    if claim_volume.is_empty() {
        VolumePlan::SyncClaim(claim_key(claim))
    } else if claim_volume == volume_name {
        VolumePlan::Phase("Bound")
    } else if annotation(&volume.metadata, ANN_PROVISIONED_BY).is_some()
        && reclaim_policy(volume) == "Delete"
    {
        // Provisioned for this claim, which got another volume: not needed any more.
        VolumePlan::Release(reclaim(volume))
    } else {
        VolumePlan::Unbind
    }
}

/// Upstream's `reclaimVolume`, for what skiff supports: nothing in-tree deletes or recycles
/// volumes, so `Delete` is left to the external provisioner that made the volume.
fn reclaim(volume: &PersistentVolume) -> Reclaim {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    match reclaim_policy(volume) {
        "Retain" => Reclaim::Nothing,
        "Delete" => match annotation(&volume.metadata, ANN_PROVISIONED_BY) {
            Some(provisioner)
                if !provisioner.is_empty() && !provisioner.starts_with("kubernetes.io/") =>
            {
                Reclaim::Nothing
            }
            _ => Reclaim::Fail(Event::warning(
                "VolumeFailedDelete",
                deleter_error(volume, name),
            )),
        },
        "Recycle" => Reclaim::Fail(Event::warning(
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!",
        )),
        _ => Reclaim::Fail(Event::warning(
            "VolumeUnknownReclaimPolicy",
            "Volume has unrecognized PersistentVolumeReclaimPolicy",
        )),
    }
}

/// Why a volume no provisioner made cannot be deleted: upstream's hostPath deleter refuses
/// paths outside `/tmp`, and no other in-tree plugin deletes.
fn deleter_error(volume: &PersistentVolume, name: &str) -> String {
    match volume.spec.as_ref().and_then(|s| s.host_path.as_ref()) {
        Some(host_path) if !is_under_tmp(&host_path.path) => format!(
            "host_path deleter only supports /tmp/.+ but received provided {}",
            host_path.path
        ),
        _ => format!(
            "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
        ),
    }
}

/// Whether upstream's `/tmp/.+` (unanchored) matches `path`.
fn is_under_tmp(path: &str) -> bool {
    path.match_indices("/tmp/")
        .any(|(at, _)| path.len() > at + 5)
}

/// `spec.persistentVolumeReclaimPolicy`, or `""`.
fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or_default()
}

/// `namespace/name` of a claim.
fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Upstream's `IsVolumeBoundToClaim`: the volume points at the claim, by name and namespace
/// and, once the binding is complete, by uid.
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    claim_ref.name == claim.metadata.name
        && claim_ref.namespace == claim.metadata.namespace
        && claim_ref
            .uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
}

/// The access modes of a claim or volume.
fn access_modes(modes: Option<&Vec<String>>) -> BTreeSet<&str> {
    modes.into_iter().flatten().map(String::as_str).collect()
}

/// Upstream's `findBestMatchForClaim`: volumes are grouped by their access modes; groups
/// that offer every mode the claim asks for are tried with the fewest modes first, and in
/// each, a volume pre-bound to the claim wins, else the smallest that fits.
pub fn find_best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<&'a Arc<PersistentVolume>> {
    let wanted = access_modes(claim.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    // Claims of delaying classes only take volumes pre-bound to them, so the others need no
    // look (which keeps a sync cheap among thousands of volumes).
    let candidates: Vec<(BTreeSet<&str>, &Arc<PersistentVolume>)> = volumes
        .iter()
        .filter(|v| !delay_binding || is_volume_bound_to_claim(v, claim))
        .map(|v| {
            let modes = v.spec.as_ref().and_then(|s| s.access_modes.as_ref());
            (access_modes(modes), v)
        })
        .filter(|(modes, _)| wanted.is_subset(modes))
        .collect();
    let mut groups: Vec<&BTreeSet<&str>> = candidates
        .iter()
        .map(|(modes, _)| modes)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    groups.sort_by_key(|modes| modes.len());
    groups.into_iter().find_map(|group| {
        let members = candidates
            .iter()
            .filter(|(modes, _)| modes == group)
            .map(|(_, volume)| *volume);
        find_matching_volume(claim, members, delay_binding)
    })
}

/// Upstream's `FindMatchingVolume` on the binder's path (no node).
fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a Arc<PersistentVolume>>,
    delay_binding: bool,
) -> Option<&'a Arc<PersistentVolume>> {
    let spec = claim.spec.as_ref();
    // VolumeAttributesClasses are off by default: a claim asking for one matches nothing.
    if spec
        .and_then(|s| s.volume_attributes_class_name.as_deref())
        .is_some_and(|c| !c.is_empty())
    {
        return None;
    }
    let requested = requested_bytes(claim);
    let requested_class = claim_class(claim);
    let claim_mode = spec
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let selector = spec
        .and_then(|s| s.selector.as_ref())
        .map(LabelSelector::from_label_selector);
    let mut smallest: Option<(&Arc<PersistentVolume>, f64)> = None;
    for volume in volumes {
        let volume_spec = volume.spec.as_ref();
        let bound_here = is_volume_bound_to_claim(volume, claim);
        if volume_spec.and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_here {
            continue;
        }
        let capacity = volume_spec
            .and_then(|s| s.capacity.as_ref()?.get("storage"))
            .and_then(|q| skiff_api::quantity::parse(&q.0))
            .unwrap_or(0.0);
        let volume_mode = volume_spec
            .and_then(|s| s.volume_mode.as_deref())
            .unwrap_or("Filesystem");
        if capacity < requested
            || volume_mode != claim_mode
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if bound_here {
            return Some(volume);
        }
        // Claims of WaitForFirstConsumer classes are bound where the scheduler places them.
        if delay_binding || volume_phase(volume) != "Available" {
            continue;
        }
        let labels = volume.metadata.labels.clone().unwrap_or_default();
        if selector.as_ref().is_some_and(|s| !matches(s, &labels))
            || volume_class(volume) != requested_class
        {
            continue;
        }
        if smallest.is_none_or(|(_, size)| size > capacity) {
            smallest = Some((volume, capacity));
        }
    }
    smallest.map(|(volume, _)| volume)
}

/// Whether `selector` selects `labels`; an invalid selector selects nothing.
fn matches(
    selector: &Result<LabelSelector, skiff_api::selector::SelectorError>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.as_ref().is_ok_and(|s| s.matches(labels))
}

/// Upstream's `GetBindVolumeToClaim`: the volume pointing at the claim, marked bound by the
/// controller unless the user had pointed it there; `None` when nothing changes.
pub fn bind_volume_to_claim(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let set_bound_by_controller = !is_volume_bound_to_claim(volume, claim);
    let mut bound = volume.clone();
    let mut dirty = false;
    let current = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if current.is_none_or(|r| {
        r.name != claim.metadata.name
            || r.namespace != claim.metadata.namespace
            || r.uid != claim.metadata.uid
    }) {
        bound.spec.get_or_insert_default().claim_ref = Some(claim_reference(claim));
        dirty = true;
    }
    if set_bound_by_controller && annotation(&bound.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        bound
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    dirty.then_some(bound)
}

/// client-go's `GetReference` of a claim, as a volume's `claimRef` holds it.
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Upstream's `bindClaimToVolume`: the claim naming the volume, marked bound by the
/// controller unless the user named it, and bind-completed; `None` when nothing changes.
pub fn bind_claim_to_volume(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Option<PersistentVolumeClaim> {
    let volume_name = volume.metadata.name.as_deref().unwrap_or_default();
    let mut bound = claim.clone();
    let mut dirty = false;
    if claim_volume_name(claim) != volume_name {
        bound.spec.get_or_insert_default().volume_name = Some(volume_name.into());
        let annotations = bound.metadata.annotations.get_or_insert_default();
        annotations
            .entry(ANN_BOUND_BY_CONTROLLER.into())
            .or_insert_with(|| "yes".into());
        dirty = true;
    }
    if annotation(&bound.metadata, ANN_BIND_COMPLETED).is_none() {
        bound
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(ANN_BIND_COMPLETED.into(), "yes".into());
        dirty = true;
    }
    dirty.then_some(bound)
}

/// Upstream's `updateClaimStatus`: the phase, and the volume's access modes and capacity (or
/// none without a volume); `None` when the status already says so.
pub fn claim_status(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Option<PersistentVolumeClaimStatus> {
    let current = claim.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.phase = Some(phase.into());
    match volume.and_then(|v| v.spec.as_ref()) {
        None => {
            status.access_modes = None;
            status.capacity = None;
        }
        Some(spec) => {
            status.access_modes = spec.access_modes.clone();
            let storage = |c: &Option<
                std::collections::BTreeMap<
                    String,
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                >,
            >| {
                c.as_ref()
                    .and_then(|c| c.get("storage"))
                    .and_then(|q| skiff_api::quantity::parse(&q.0))
            };
            if storage(&current.capacity) != storage(&spec.capacity) {
                status.capacity = spec.capacity.clone();
            }
        }
    }
    (status != current).then_some(status)
}

/// Upstream's `unbindVolume`: a volume the binder bound loses its claim; one the user
/// pre-bound keeps the claim's name but not its uid.
pub fn unbind_volume(volume: &PersistentVolume) -> PersistentVolume {
    let mut unbound = volume.clone();
    let spec = unbound.spec.get_or_insert_default();
    if annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
        spec.claim_ref = None;
        if let Some(annotations) = unbound.metadata.annotations.as_mut() {
            annotations.remove(ANN_BOUND_BY_CONTROLLER);
            if annotations.is_empty() {
                unbound.metadata.annotations = None;
            }
        }
    } else if let Some(claim_ref) = spec.claim_ref.as_mut() {
        claim_ref.uid = None;
    }
    unbound
}

#[cfg(test)]
mod tests;

//! Which EndpointSlices to create, update and delete for a Service (upstream's `Reconciler`
//! in `k8s.io/endpointslice`): one endpoint per selected pod with an IP, grouped by the ports
//! the Service's ports resolve to on it, at most `max_per_slice` per slice; existing slices are
//! kept and filled before new ones are made, and a Service with no endpoints keeps one empty
//! placeholder slice.

use crate::endpoint::apiserver::SERVICE_NAME_LABEL;
use crate::endpoint::pods;
use crate::endpoint::triggertime::{self, LAST_CHANGE_TRIGGER_TIME};
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, BTreeSet};

/// The label naming the controller that manages an EndpointSlice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name, the value of [`MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label on the slices of a Service without a cluster IP.
const HEADLESS: &str = "service.kubernetes.io/headless";
/// The only address type skiff's Services have.
const IPV4: &str = "IPv4";

/// What is known of a pod's node: `None` if it does not exist, else its zone, if labelled.
pub type NodeZone = Option<Option<String>>;

/// The writes that bring a Service's slices in line.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New slices, named by the server from their `generateName`.
    pub create: Vec<EndpointSlice>,
    /// Changed slices, to replace.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
    /// Pods left out because their node does not exist, as messages; the Service is synced
    /// again until they resolve.
    pub missing_nodes: Vec<String>,
}

/// A set of ports as a key, independent of order (upstream's `PortMapKey`).
type PortsKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// An endpoint's identity (upstream's `hashEndpoint`): its addresses, hostname and pod.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone(),
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

/// Whether two endpoints of the same identity differ in what a write would change (upstream's
/// `EndpointsEqualBeyondHash`), a target's resource version aside.
fn endpoint_changed(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name != b.node_name
        || a.zone != b.zone
        || a.conditions.clone().unwrap_or_default() != b.conditions.clone().unwrap_or_default()
        || a.hints != b.hints
        || target(a) != target(b)
}

/// The ports `service`'s ports resolve to on `pod` (upstream's `getEndpointPorts`).
fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    pods::ports(service)
        .iter()
        .filter_map(|service_port| {
            let port = pods::find_port(pod, service_port)?;
            Some(EndpointPort {
                name: Some(service_port.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: service_port.protocol.clone(),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint for `pod` (upstream's `podToEndpoint`): serving when ready, terminating when
/// being deleted, ready when serving and not terminating, or always when the Service
/// publishes not-ready addresses.
fn pod_endpoint(pod: &Pod, zone: Option<String>, service: &Service) -> Endpoint {
    let serving = podutil::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = pods::publishes_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: pods::ipv4_addresses(pod)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone,
        hostname: pods::published_hostname(pod, service).map(str::to_owned),
        ..Default::default()
    }
}

/// Whether `slice` belongs to this incarnation of `service` (upstream's `ownedBy`).
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|o| {
        Some(&o.uid) == service.metadata.uid.as_ref()
            && o.kind == "Service"
            && o.api_version == "v1"
    })
}

/// The labels a slice of `service` carries, and whether `slice`'s own (the Service's copies)
/// are out of date (upstream's `setEndpointSliceLabels`).
fn slice_labels(slice: &EndpointSlice, service: &Service) -> (BTreeMap<String, String>, bool) {
    let reserved = |k: &String| k == SERVICE_NAME_LABEL || k == MANAGED_BY || k == HEADLESS;
    let own = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| !reserved(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = own(service.metadata.labels.as_ref());
    let changed = own(slice.metadata.labels.as_ref()) != labels;
    if !pods::has_cluster_ip(service) {
        labels.insert(HEADLESS.into(), String::new());
    }
    let name = service.metadata.name.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name);
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

/// A new, empty slice of `service` with `ports` (upstream's `newEndpointSlice`).
fn new_slice(service: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: IPV4.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    };
    slice.metadata.labels = Some(slice_labels(&slice, service).0);
    slice
}

/// Whether `slice` is an empty placeholder equal to `placeholder` (upstream's
/// `placeholderSliceCompare`: namespace, labels, address type, no endpoints, no ports).
fn same_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// Sets or clears the trigger-time annotation (upstream's `addTriggerTimeAnnotation`).
fn annotate_trigger_time(slice: &mut EndpointSlice, trigger_time: Option<Timestamp>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger_time {
        Some(time) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), triggertime::format(time));
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if annotations.is_empty() {
        slice.metadata.annotations = None;
    }
}

/// The plan for `service` over the pods it selects, the slices it has (`existing`, managed by
/// this controller and not being deleted) and `node_zone` to look up pods' nodes.
pub fn reconcile(
    service: &Service,
    selected: &[&Pod],
    existing: &[&EndpointSlice],
    node_zone: impl Fn(&str) -> NodeZone,
    max_per_slice: usize,
    trigger_time: Option<Timestamp>,
) -> Plan {
    let mut plan = Plan::default();
    let mut to_delete: Vec<&EndpointSlice> = Vec::new();
    // Existing slices of this Service by their ports; others (of another address type, or an
    // earlier Service of the same name) go.
    let mut existing_by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for &slice in existing {
        if slice.address_type == IPV4 && owned_by(slice, service) {
            let key = ports_key(slice.ports.as_deref().unwrap_or_default());
            existing_by_ports.entry(key).or_default().push(slice);
        } else {
            to_delete.push(slice);
        }
    }

    let mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for &pod in selected {
        if !pods::should_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let key = ports_key(&ports);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let zone = match node_zone(node_name) {
            Some(zone) => zone,
            // A pod whose node is gone is left out, unless its address is to be published
            // regardless.
            None if !pods::publishes_not_ready(service) => {
                plan.missing_nodes.push(format!(
                    "skipping Pod {} for Service {}/{}: Node {node_name} Not Found",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    service.metadata.namespace.as_deref().unwrap_or_default(),
                    service.metadata.name.as_deref().unwrap_or_default(),
                ));
                continue;
            }
            None => None,
        };
        let endpoint = pod_endpoint(pod, zone, service);
        let (_, endpoints) = desired
            .entry(key)
            .or_insert_with(|| (ports, BTreeMap::new()));
        if !endpoint.addresses.is_empty() {
            endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    let (mut to_create, mut to_update) = (Vec::new(), Vec::new());
    for (key, (ports, endpoints)) in desired.iter_mut() {
        let group = existing_by_ports
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let changes = reconcile_ports(
            service,
            group,
            std::mem::take(endpoints),
            ports,
            max_per_slice,
        );
        to_create.extend(changes.create);
        to_update.extend(changes.update);
        to_delete.extend(changes.delete);
    }
    for (key, group) in &existing_by_ports {
        if !desired.contains_key(key) {
            to_delete.extend(group.iter().copied());
        }
    }

    // A Service without endpoints keeps one empty placeholder slice.
    if existing.len() == to_delete.len() && to_create.is_empty() {
        let placeholder = new_slice(service, Vec::new());
        if to_delete.len() == 1 && same_placeholder(to_delete[0], &placeholder) {
            to_delete.clear();
        } else {
            to_create.push(placeholder);
        }
    }

    // Rather than delete one slice and create another, reuse the first (upstream's
    // `finalize`), if it belongs to this Service.
    let mut kept_deletes = Vec::new();
    for slice in to_delete {
        match to_create.pop() {
            Some(mut created) if owned_by(slice, service) && slice.address_type == IPV4 => {
                created.metadata = ObjectMeta {
                    labels: created.metadata.labels,
                    ..slice.metadata.clone()
                };
                to_update.push(created);
            }
            unused => {
                to_create.extend(unused);
                kept_deletes.push(slice);
            }
        }
    }
    // No new slices for a Service being deleted: the garbage collector is removing them.
    if service.metadata.deletion_timestamp.is_none() {
        plan.create = to_create;
    }
    for slice in plan.create.iter_mut().chain(to_update.iter_mut()) {
        annotate_trigger_time(slice, trigger_time);
    }
    plan.update = to_update;
    plan.delete = kept_deletes
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    plan
}

/// The changes to one group of slices sharing ports.
struct PortChanges<'a> {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<&'a EndpointSlice>,
}

/// Fits `desired` endpoints into `existing` slices with `ports` (upstream's
/// `reconcileByPortMapping`): drops endpoints no longer desired and refreshes changed ones,
/// fills slices being updated anyway, then puts what is left into the unchanged slice it fits
/// best, or new slices.
fn reconcile_ports<'a>(
    service: &Service,
    existing: &[&'a EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    max_per_slice: usize,
) -> PortChanges<'a> {
    let mut updated: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    let mut deleted: Vec<&EndpointSlice> = Vec::new();
    // 1. Keep what is still desired in each slice.
    for &slice in existing {
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(wanted) = desired.remove(&endpoint_key(endpoint)) {
                changed |= endpoint_changed(&wanted, endpoint);
                kept.push(wanted);
            }
        }
        let (labels, labels_changed) = slice_labels(slice, service);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                deleted.push(slice);
            } else {
                let mut slice = slice.clone();
                slice.endpoints = kept;
                slice.metadata.labels = Some(labels);
                updated.push(slice);
            }
        } else if labels_changed {
            let mut slice = slice.clone();
            slice.metadata.labels = Some(labels);
            updated.push(slice);
        } else {
            unchanged.push(slice.clone());
        }
    }
    // 2. Fill the slices being written anyway, fullest first.
    updated.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for slice in &mut updated {
        fill(slice, &mut desired, max_per_slice);
    }
    // 3. The rest goes into the unchanged slice it fills best, or into new slices.
    let mut created = Vec::new();
    let mut filled: BTreeSet<usize> = BTreeSet::new();
    while !desired.is_empty() {
        let closest = (desired.len() < max_per_slice)
            .then(|| closest_fit(&unchanged, &filled, desired.len(), max_per_slice))
            .flatten();
        match closest {
            Some(index) => {
                fill(&mut unchanged[index], &mut desired, max_per_slice);
                filled.insert(index);
            }
            None => {
                let mut slice = new_slice(service, ports.to_vec());
                fill(&mut slice, &mut desired, max_per_slice);
                created.push(slice);
            }
        }
    }
    let mut unchanged = unchanged.into_iter().enumerate();
    updated.extend(
        unchanged
            .by_ref()
            .filter(|(i, _)| filled.contains(i))
            .map(|(_, s)| s),
    );
    PortChanges {
        create: created,
        update: updated,
        delete: deleted,
    }
}

/// Moves endpoints from `desired` into `slice` until it is full or none are left.
fn fill(
    slice: &mut EndpointSlice,
    desired: &mut BTreeMap<EndpointKey, Endpoint>,
    max_per_slice: usize,
) {
    while slice.endpoints.len() < max_per_slice {
        let Some((_, endpoint)) = desired.pop_first() else {
            break;
        };
        slice.endpoints.push(endpoint);
    }
}

/// The unchanged slice (not yet filled) that `count` more endpoints bring closest to full
/// without overflowing (upstream's `getSliceToFill`).
fn closest_fit(
    slices: &[EndpointSlice],
    filled: &BTreeSet<usize>,
    count: usize,
    max_per_slice: usize,
) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(i, _)| !filled.contains(i))
        .filter(|(_, s)| s.endpoints.len() + count <= max_per_slice)
        .min_by_key(|(_, s)| max_per_slice - (s.endpoints.len() + count))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;

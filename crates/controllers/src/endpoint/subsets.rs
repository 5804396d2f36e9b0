//! The Endpoints object a Service should have (upstream's `syncService` without its I/O):
//! one address per selected pod (ready or not ready), with the ports the Service's ports
//! resolve to on that pod, repacked into subsets of addresses sharing ports, truncated at
//! [`MAX_CAPACITY`] addresses, labelled and annotated as upstream.

use super::pods;
use super::triggertime::{self, LAST_CHANGE_TRIGGER_TIME};
use crate::podutil;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, HashMap};

/// The most addresses an Endpoints object holds (upstream's `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// The annotation marking an Endpoints object cut down to [`MAX_CAPACITY`].
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The label on the Endpoints of a Service without a cluster IP.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// The label marking Endpoints this controller manages.
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// This controller's name, the value of [`MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpoint-controller";

/// The subsets `service` should publish for the pods it selects, `selected`, repacked.
pub fn desired_subsets(service: &Service, selected: &[&Pod]) -> Vec<EndpointSubset> {
    let publish_not_ready = pods::publishes_not_ready(service);
    let service_ports = pods::ports(service);
    let mut subsets = Vec::new();
    for &pod in selected {
        if !pods::should_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        // Skiff's services are IPv4: a pod without an IPv4 address has none for them.
        let Some(&ip) = pods::ipv4_addresses(pod).first() else {
            continue;
        };
        let address = EndpointAddress {
            ip: ip.to_owned(),
            hostname: pods::published_hostname(pod, service).map(str::to_owned),
            node_name: Some(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            ),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let ready = publish_not_ready || podutil::is_ready(pod);
        let subset = |ports: Option<Vec<EndpointPort>>| {
            let addresses = Some(vec![address.clone()]);
            EndpointSubset {
                addresses: if ready { addresses.clone() } else { None },
                not_ready_addresses: if ready { None } else { addresses },
                ports,
            }
        };
        if service_ports.is_empty() {
            // Only a headless Service may have no ports; its addresses stand alone.
            if pods::is_headless(service) {
                subsets.push(subset(None));
            }
            continue;
        }
        for service_port in service_ports {
            let Some(port) = pods::find_port(pod, service_port) else {
                continue;
            };
            subsets.push(subset(Some(vec![EndpointPort {
                name: service_port.name.clone(),
                port,
                protocol: service_port.protocol.clone(),
                app_protocol: service_port.app_protocol.clone(),
            }])));
        }
    }
    repack(&subsets)
}

/// A port as a map key: name, number, protocol, application protocol.
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

/// An address's identity when repacking: IP and target uid.
type AddressKey = (String, Option<String>);

/// Regroups subsets into the canonical layout (upstream's `RepackSubsets`): every address
/// once per set of ports it offers, not ready for a port if any subset says so, addresses
/// sharing exactly the same ports (and readiness) in one subset; sorted.
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: Vec<&EndpointAddress> = Vec::new();
    let mut address_index: HashMap<AddressKey, usize> = HashMap::new();
    // Per port (`None` for "no ports"), each address's readiness.
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<usize, bool>> = BTreeMap::new();
    for subset in subsets {
        let ports: Vec<Option<PortKey>> = match subset.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ports) => ports
                .iter()
                .map(|p| {
                    Some((
                        p.name.clone(),
                        p.port,
                        p.protocol.clone(),
                        p.app_protocol.clone(),
                    ))
                })
                .collect(),
        };
        let listed = [
            (subset.addresses.iter().flatten(), true),
            (subset.not_ready_addresses.iter().flatten(), false),
        ];
        for (list, ready) in listed {
            for address in list {
                let key = (
                    address.ip.clone(),
                    address.target_ref.as_ref().and_then(|r| r.uid.clone()),
                );
                let index = *address_index.entry(key).or_insert_with(|| {
                    addresses.push(address);
                    addresses.len() - 1
                });
                for port in &ports {
                    // Not ready for a port anywhere means not ready for it.
                    let readiness = by_port.entry(port.clone()).or_default();
                    let was_ready = readiness.entry(index).or_insert(ready);
                    *was_ready &= ready;
                }
            }
        }
    }
    // Group ports by the exact set of (address, readiness) that offers them.
    let mut by_addresses: BTreeMap<Vec<(usize, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, readiness) in by_port {
        let ports = by_addresses
            .entry(readiness.into_iter().collect())
            .or_default();
        ports.extend(port);
    }
    let mut repacked: Vec<EndpointSubset> = by_addresses
        .into_iter()
        .map(|(members, mut ports)| {
            ports.sort();
            let mut ready: Vec<EndpointAddress> = Vec::new();
            let mut not_ready: Vec<EndpointAddress> = Vec::new();
            for (index, is_ready) in members {
                let list = if is_ready { &mut ready } else { &mut not_ready };
                list.push(addresses[index].clone());
            }
            for list in [&mut ready, &mut not_ready] {
                list.sort_by(|a, b| address_order(a).cmp(&address_order(b)));
            }
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol, app_protocol)| EndpointPort {
                            name,
                            port,
                            protocol,
                            app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect();
    repacked.sort_by(|a, b| subset_order(a).cmp(&subset_order(b)));
    repacked
}

/// Addresses sort by IP, then target uid (upstream's `addrsByIPAndUID`).
fn address_order(address: &EndpointAddress) -> (&str, Option<&str>) {
    let uid = address.target_ref.as_ref().and_then(|r| r.uid.as_deref());
    (address.ip.as_str(), uid)
}

/// Subsets sort by their first address, then their first port. Upstream sorts subsets (and
/// ports) by a hash of their contents: an order with no meaning, which clients do not rely on.
fn subset_order(subset: &EndpointSubset) -> (Option<&str>, Option<i32>) {
    let first = subset
        .addresses
        .iter()
        .chain(&subset.not_ready_addresses)
        .flatten()
        .map(|a| a.ip.as_str())
        .min();
    let port = subset.ports.iter().flatten().map(|p| p.port).min();
    (first, port)
}

/// Cuts `endpoints` down to [`MAX_CAPACITY`] addresses (upstream's `truncateEndpoints`):
/// not-ready addresses go first; each subset keeps its share, rounded up, of what remains.
/// Returns whether anything was cut.
pub fn truncate(endpoints: &mut Endpoints) -> bool {
    let Some(subsets) = endpoints.subsets.as_mut() else {
        return false;
    };
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (room, total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        // Floating point as upstream, whose rounding decides the last address of a share.
        let share = ((count(list) as f64 / total as f64) * room as f64).ceil() as usize;
        let share = share.min(left);
        if let Some(addresses) = list {
            addresses.truncate(share);
        }
        left -= count(list);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// Whether the over-capacity annotation is as it should be for `endpoints` as stored
/// (upstream's `capacityAnnotationSetCorrectly`): an object over capacity still needs cutting.
fn capacity_annotation_correct(endpoints: &Endpoints) -> bool {
    let addresses: usize = endpoints
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    addresses <= MAX_CAPACITY
        && !endpoints
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY))
}

/// Whether `endpoint_labels` are those the controller derives from `service_labels`
/// (upstream's `labelsCorrectForEndpoints`): marked managed, the headless label aside.
fn labels_correct(
    endpoint_labels: Option<&BTreeMap<String, String>>,
    service_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let endpoint_labels = endpoint_labels.unwrap_or(&empty);
    let service_labels = service_labels.unwrap_or(&empty);
    if endpoint_labels.get(MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return false;
    }
    let own = endpoint_labels
        .iter()
        .filter(|(k, _)| *k != HEADLESS && *k != MANAGED_BY);
    own.clone().all(|(k, v)| service_labels.get(k) == Some(v))
        && own.count() == service_labels.len()
}

/// Subsets as compared: empty lists as absent, target resource versions ignored (upstream
/// compares semantically, ignoring pods' resource versions).
fn comparable(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let non_empty = |list: &Option<Vec<EndpointAddress>>| -> Option<Vec<EndpointAddress>> {
        let list: Vec<EndpointAddress> = list
            .iter()
            .flatten()
            .cloned()
            .map(|mut a| {
                if let Some(r) = &mut a.target_ref {
                    r.resource_version = None;
                }
                a
            })
            .collect();
        (!list.is_empty()).then_some(list)
    };
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: non_empty(&s.addresses),
            not_ready_addresses: non_empty(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|p| !p.is_empty()),
        })
        .collect()
}

/// The Endpoints object to write for `service` given the one stored, `current`, if any, or
/// `None` when it is up to date: `subsets` (from [`desired_subsets`]), the Service's labels
/// plus the controller's, the trigger-time and over-capacity annotations.
pub fn plan(
    service: &Service,
    subsets: Vec<EndpointSubset>,
    current: Option<&Endpoints>,
    trigger_time: Option<Timestamp>,
) -> Option<Endpoints> {
    let service_labels = service.metadata.labels.as_ref();
    if let Some(current) = current
        && comparable(current.subsets.as_ref()) == comparable(Some(&subsets))
        && labels_correct(current.metadata.labels.as_ref(), service_labels)
        && capacity_annotation_correct(current)
    {
        return None;
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    endpoints.subsets = (!subsets.is_empty()).then_some(subsets);
    let mut labels = service_labels.cloned().unwrap_or_default();
    if !pods::has_cluster_ip(service) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    endpoints.metadata.labels = Some(labels);
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(time) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), triggertime::format(time));
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if truncate(&mut endpoints) {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    endpoints.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(endpoints)
}

#[cfg(test)]
mod tests;

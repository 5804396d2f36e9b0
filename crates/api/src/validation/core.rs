//! Core and small API-group kinds besides pods: services, config, storage, nodes,
//! endpoints, events, leases.

use super::meta::{immutable, nonnegative, validate_label_selector, validate_labels};
use super::names;
use super::pod::validate_port_num_or_name;
use super::{Errors, Path, list, text};
use crate::errors::FieldError;
use crate::quantity;
use serde_json::Value;
use std::collections::HashSet;

/// Upstream's `MaxSecretSize` (1 MiB), also the bound of a ConfigMap.
const MAX_DATA_BYTES: usize = 1024 * 1024;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// `ValidateService` without `metadata` (and without cluster IP allocation, which the
/// registry does).
pub fn validate_service(service: &Value, errs: &mut Errors) {
    let spec = &service["spec"];
    let path = Path::new("spec");
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP");
    let headless = text(spec, "clusterIP") == "None";
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required(path.child("ports").as_str(), ""));
    }
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p_path = path.child("ports").index(i);
        let name = text(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(p_path.child("name").as_str(), ""));
        } else if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(
                    p_path.child("name").as_str(),
                    name,
                    msg,
                ));
            }
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(p_path.child("name").as_str(), name));
            }
        }
        let number = port["port"].as_i64().unwrap_or(0);
        for msg in names::port_num(number) {
            errs.push(FieldError::invalid(
                p_path.child("port").as_str(),
                number,
                msg,
            ));
        }
        if let Some(protocol) = port["protocol"]
            .as_str()
            .filter(|p| !matches!(*p, "SCTP" | "TCP" | "UDP"))
        {
            errs.push(FieldError::not_supported(
                p_path.child("protocol").as_str(),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if !port["targetPort"].is_null() {
            validate_port_num_or_name(&port["targetPort"], &p_path.child("targetPort"), errs);
        }
        if service_type == "ClusterIP" && port["nodePort"].as_i64().is_some_and(|n| n != 0) {
            errs.push(FieldError::forbidden(
                p_path.child("nodePort").as_str(),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if !matches!(
        service_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.push(FieldError::not_supported(
            path.child("type").as_str(),
            service_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if service_type == "ExternalName" {
        let external_name = text(spec, "externalName");
        if external_name.is_empty() {
            errs.push(FieldError::required(
                path.child("externalName").as_str(),
                "",
            ));
        }
    }
    if let Some(affinity) = spec["sessionAffinity"]
        .as_str()
        .filter(|a| !matches!(*a, "ClientIP" | "None"))
    {
        errs.push(FieldError::not_supported(
            path.child("sessionAffinity").as_str(),
            affinity,
            &["ClientIP", "None"],
        ));
    }
    validate_labels(&spec["selector"], &path.child("selector"), errs);
}

/// `ValidateServiceUpdate`: the primary cluster IP may not change once set.
pub fn validate_service_update(new: &Value, old: &Value, errs: &mut Errors) {
    let is_external = |s: &Value| text(&s["spec"], "type") == "ExternalName";
    if is_external(new) || is_external(old) {
        return;
    }
    let old_ips = list(&old["spec"], "clusterIPs");
    let new_ips = list(&new["spec"], "clusterIPs");
    // An update that leaves the IPs out keeps them (the registry fills them back in).
    if let (Some(old_ip), Some(new_ip)) = (old_ips.first(), new_ips.first())
        && old_ip != new_ip
    {
        errs.push(FieldError::invalid(
            Path::new("spec").child("clusterIPs").index(0).as_str(),
            new["spec"]["clusterIPs"].clone(),
            "may not change once set",
        ));
    }
}

/// Keys of `data` (and `binaryData`) and the total size, as `ValidateConfigMap` and
/// `ValidateSecret`.
fn validate_data_keys(object: &Value, fields: &[&str], errs: &mut Errors) -> usize {
    let mut size = 0;
    let mut seen = HashSet::new();
    for field in fields {
        for (key, value) in object[*field].as_object().into_iter().flatten() {
            let key_path = Path::new(field).key(key);
            for msg in names::config_map_key(key) {
                errs.push(FieldError::invalid(key_path.as_str(), key.as_str(), msg));
            }
            if !seen.insert(key) {
                errs.push(FieldError::invalid(
                    key_path.as_str(),
                    key.as_str(),
                    "duplicate of key present in data",
                ));
            }
            size += value.as_str().map_or(0, str::len);
        }
    }
    size
}

/// `ValidateConfigMap` without `metadata`.
pub fn validate_config_map(config_map: &Value, errs: &mut Errors) {
    if validate_data_keys(config_map, &["data", "binaryData"], errs) > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", "", MAX_DATA_BYTES));
    }
}

/// `ValidateSecret` without `metadata`: keys, size and the keys each type requires.
pub fn validate_secret(secret: &Value, errs: &mut Errors) {
    // `data` holds base64: the decoded size is about three quarters of it.
    if validate_data_keys(secret, &["data"], errs) * 3 / 4 > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", "", MAX_DATA_BYTES));
    }
    let data = Path::new("data");
    let has = |key: &str| !secret["data"][key].is_null();
    let require = |key: &str, errs: &mut Errors| {
        if !has(key) {
            errs.push(FieldError::required(data.key(key).as_str(), ""));
        }
    };
    match text(secret, "type") {
        "kubernetes.io/service-account-token"
            if secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .is_null() =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        "kubernetes.io/dockercfg" => require(".dockercfg", errs),
        "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson", errs),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require("username", errs);
            require("password", errs);
        }
        "kubernetes.io/ssh-auth" => require("ssh-privatekey", errs),
        "kubernetes.io/tls" => {
            require("tls.key", errs);
            require("tls.crt", errs);
        }
        _ => {}
    }
}

/// `immutable: true` freezes a ConfigMap's or Secret's data; a Secret's type never changes.
pub fn validate_immutable_data(kind: &str, new: &Value, old: &Value, errs: &mut Errors) {
    if kind == "Secret" {
        immutable(&new["type"], &old["type"], &Path::new("type"), errs);
    }
    if old["immutable"] != Value::Bool(true) {
        return;
    }
    const FROZEN: &str = "field is immutable when `immutable` is set";
    if new["immutable"] != Value::Bool(true) {
        errs.push(FieldError::forbidden("immutable", FROZEN));
    }
    for field in ["data", "binaryData", "stringData"] {
        if new[field] != old[field] {
            errs.push(FieldError::forbidden(field, FROZEN));
        }
    }
}

/// Access modes: at least one, all supported, `ReadWriteOncePod` alone.
fn validate_access_modes(spec: &Value, path: &Path, required_detail: &str, errs: &mut Errors) {
    let modes: Vec<&str> = list(spec, "accessModes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if modes.is_empty() {
        errs.push(FieldError::required(path.as_str(), required_detail));
    }
    for mode in &modes {
        if !ACCESS_MODES.contains(mode) {
            errs.push(FieldError::not_supported(
                path.as_str(),
                *mode,
                ACCESS_MODES,
            ));
        }
    }
    if modes.contains(&"ReadWriteOncePod")
        && modes
            .iter()
            .any(|m| *m != "ReadWriteOncePod" && ACCESS_MODES.contains(m))
    {
        errs.push(FieldError::forbidden(
            path.as_str(),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// A storage class name, when set.
fn validate_class_name(spec: &Value, path: &Path, errs: &mut Errors) {
    let class = text(spec, "storageClassName");
    if !class.is_empty() {
        for msg in names::dns1123_subdomain(class) {
            errs.push(FieldError::invalid(
                path.child("storageClassName").as_str(),
                class,
                msg,
            ));
        }
    }
}

/// `ValidatePersistentVolumeClaimSpec` without `metadata`.
pub fn validate_pvc(claim: &Value, errs: &mut Errors) {
    validate_pvc_spec(&claim["spec"], &Path::new("spec"), errs);
}

/// `ValidatePersistentVolumeClaimSpec`.
fn validate_pvc_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    validate_access_modes(
        spec,
        &path.child("accessModes"),
        "at least 1 access mode is required",
        errs,
    );
    if !spec["selector"].is_null() {
        validate_label_selector(&spec["selector"], &path.child("selector"), errs);
    }
    let storage_path = path.child("resources").key("storage");
    match spec["resources"]["requests"]["storage"].as_str() {
        None => errs.push(FieldError::required(storage_path.as_str(), "")),
        Some(storage) if quantity::parse(storage).is_some_and(|q| q <= 0.0) => {
            errs.push(FieldError::invalid(
                storage_path.as_str(),
                storage,
                "must be greater than zero",
            ));
        }
        Some(_) => {}
    }
    validate_class_name(spec, path, errs);
    if let Some(mode) = spec["volumeMode"]
        .as_str()
        .filter(|m| !matches!(*m, "Block" | "Filesystem"))
    {
        errs.push(FieldError::not_supported(
            path.child("volumeMode").as_str(),
            mode,
            &["Block", "Filesystem"],
        ));
    }
}

/// `ValidatePersistentVolumeClaimUpdate`: the spec is immutable except the requested size
/// (which may only grow) and, once, `volumeName`.
pub fn validate_pvc_update(new: &Value, old: &Value, errs: &mut Errors) {
    let comparable = |spec: &Value, volume_name: &Value| {
        let mut spec = spec.clone();
        spec["resources"]["requests"]["storage"] = Value::Null;
        spec["volumeName"] = volume_name.clone();
        spec
    };
    let volume_name = if text(&old["spec"], "volumeName").is_empty() {
        &new["spec"]["volumeName"]
    } else {
        &old["spec"]["volumeName"]
    };
    if comparable(&new["spec"], volume_name) != comparable(&old["spec"], volume_name) {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size =
        |claim: &Value| quantity::parse(text(&claim["spec"]["resources"]["requests"], "storage"));
    // With RecoverVolumeExpansionFailure (on by default) a claim may shrink back, but not
    // to or below what the volume already has.
    let capacity = quantity::parse(text(&old["status"]["capacity"], "storage")).unwrap_or(0.0);
    if let (Some(new_size), Some(old_size)) = (size(new), size(old))
        && new_size < old_size
        && new_size <= capacity
    {
        errs.push(FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        ));
    }
}

/// `ValidatePersistentVolumeSpec` (the common parts) without `metadata`.
pub fn validate_pv(volume: &Value, errs: &mut Errors) {
    let spec = &volume["spec"];
    let path = Path::new("spec");
    validate_access_modes(spec, &path.child("accessModes"), "", errs);
    let capacity = spec["capacity"].as_object();
    let capacity_path = path.child("capacity");
    if capacity.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(capacity_path.as_str(), ""));
    }
    if capacity.is_none_or(|c| c.len() != 1 || !c.contains_key("storage")) {
        errs.push(FieldError::not_supported(
            capacity_path.as_str(),
            spec["capacity"].clone(),
            &["storage"],
        ));
    }
    for (name, q) in capacity.into_iter().flatten() {
        let q = q.as_str().unwrap_or_default();
        if quantity::parse(q).is_some_and(|v| v <= 0.0) {
            errs.push(FieldError::invalid(
                capacity_path.key(name).as_str(),
                q,
                "must be greater than zero",
            ));
        }
    }
    if let Some(policy) = spec["persistentVolumeReclaimPolicy"]
        .as_str()
        .filter(|p| !matches!(*p, "Delete" | "Recycle" | "Retain"))
    {
        errs.push(FieldError::not_supported(
            path.child("persistentVolumeReclaimPolicy").as_str(),
            policy,
            &["Delete", "Recycle", "Retain"],
        ));
    }
    const SOURCES: &[&str] = &[
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "glusterfs",
        "flocker",
        "nfs",
        "rbd",
        "quobyte",
        "cephfs",
        "iscsi",
        "cinder",
        "fc",
        "flexVolume",
        "azureFile",
        "vsphereVolume",
        "photonPersistentDisk",
        "portworxVolume",
        "azureDisk",
        "scaleIO",
        "local",
        "storageos",
        "csi",
    ];
    let mut sources = SOURCES.iter().filter(|s| !spec[**s].is_null());
    match sources.next() {
        None => errs.push(FieldError::required(
            path.as_str(),
            "must specify a volume type",
        )),
        Some(_) => {
            for extra in sources {
                errs.push(FieldError::forbidden(
                    path.child(extra).as_str(),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    validate_class_name(spec, &path, errs);
}

/// Nodes: taints have keys and supported effects.
pub fn validate_node(node: &Value, errs: &mut Errors) {
    let path = Path::new("spec").child("taints");
    let mut seen = HashSet::new();
    for (i, taint) in list(&node["spec"], "taints").iter().enumerate() {
        let t_path = path.index(i);
        let key = text(taint, "key");
        super::meta::validate_label_name(key, &t_path.child("key"), errs);
        let value = text(taint, "value");
        for msg in names::label_value(value) {
            errs.push(FieldError::invalid(
                t_path.child("value").as_str(),
                value,
                msg,
            ));
        }
        let effect = text(taint, "effect");
        if effect.is_empty() {
            errs.push(FieldError::required(t_path.child("effect").as_str(), ""));
        } else if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.push(FieldError::not_supported(
                t_path.child("effect").as_str(),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
        if !seen.insert((key, effect)) {
            errs.push(FieldError::duplicate(t_path.as_str(), taint.clone()));
        }
    }
}

/// `ValidateEndpoints` without `metadata`: addresses have IPs, ports are valid.
pub fn validate_endpoints(endpoints: &Value, errs: &mut Errors) {
    for (i, subset) in list(endpoints, "subsets").iter().enumerate() {
        let s_path = Path::new("subsets").index(i);
        for field in ["addresses", "notReadyAddresses"] {
            for (j, address) in list(subset, field).iter().enumerate() {
                if text(address, "ip").is_empty() {
                    errs.push(FieldError::required(
                        s_path.child(field).index(j).child("ip").as_str(),
                        "",
                    ));
                }
            }
        }
        for (j, port) in list(subset, "ports").iter().enumerate() {
            let p_path = s_path.child("ports").index(j);
            let number = port["port"].as_i64().unwrap_or(0);
            for msg in names::port_num(number) {
                errs.push(FieldError::invalid(
                    p_path.child("port").as_str(),
                    number,
                    msg,
                ));
            }
        }
    }
}

/// `ValidateEndpointSlice` (the basics): a supported address type, endpoints with addresses.
pub fn validate_endpoint_slice(slice: &Value, errs: &mut Errors) {
    let address_type = text(slice, "addressType");
    if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        errs.push(FieldError::not_supported(
            "addressType",
            address_type,
            &["IPv4", "IPv6", "FQDN"],
        ));
    }
    for (i, endpoint) in list(slice, "endpoints").iter().enumerate() {
        if list(endpoint, "addresses").is_empty() {
            errs.push(FieldError::required(
                Path::new("endpoints").index(i).child("addresses").as_str(),
                "must contain at least 1 address",
            ));
        }
    }
}

/// Legacy `ValidateEvent`: the involved object's namespace matches the event's.
pub fn validate_event(event: &Value, errs: &mut Errors) {
    let event_namespace = text(&event["metadata"], "namespace");
    let involved_namespace = text(&event["involvedObject"], "namespace");
    if !involved_namespace.is_empty() && involved_namespace != event_namespace {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_namespace,
            "does not match event.namespace",
        ));
    }
}

/// `ValidateServiceAccount`: secret references name something.
pub fn validate_service_account(account: &Value, errs: &mut Errors) {
    for (i, secret) in list(account, "secrets").iter().enumerate() {
        let name = text(secret, "name");
        if !name.is_empty() {
            for msg in names::dns1123_subdomain(name) {
                errs.push(FieldError::invalid(
                    Path::new("secrets").index(i).child("name").as_str(),
                    name,
                    msg,
                ));
            }
        }
    }
}

/// `ValidateLeaseSpec`: positive durations, non-negative transitions.
pub fn validate_lease(lease: &Value, errs: &mut Errors) {
    let spec = &lease["spec"];
    let path = Path::new("spec");
    if let Some(duration) = spec["leaseDurationSeconds"].as_i64().filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            path.child("leaseDurationSeconds").as_str(),
            duration,
            "must be greater than 0",
        ));
    }
    nonnegative(
        spec["leaseTransitions"].as_i64(),
        &path.child("leaseTransitions"),
        errs,
    );
}

/// `ValidateStorageClass` without `metadata`.
pub fn validate_storage_class(class: &Value, errs: &mut Errors) {
    let provisioner = text(class, "provisioner");
    if provisioner.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        for msg in names::qualified_name(&provisioner.to_lowercase()) {
            errs.push(FieldError::invalid("provisioner", provisioner, msg));
        }
    }
    if let Some(policy) = class["reclaimPolicy"]
        .as_str()
        .filter(|p| !matches!(*p, "Delete" | "Retain"))
    {
        errs.push(FieldError::not_supported(
            "reclaimPolicy",
            policy,
            &["Delete", "Retain"],
        ));
    }
    if let Some(mode) = class["volumeBindingMode"]
        .as_str()
        .filter(|m| !matches!(*m, "Immediate" | "WaitForFirstConsumer"))
    {
        errs.push(FieldError::not_supported(
            "volumeBindingMode",
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
}

/// `ValidateStorageClassUpdate`: parameters, provisioner, reclaim policy and binding mode
/// are fixed.
pub fn validate_storage_class_update(new: &Value, old: &Value, errs: &mut Errors) {
    if new["parameters"] != old["parameters"] {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if new["provisioner"] != old["provisioner"] {
        errs.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if new["reclaimPolicy"] != old["reclaimPolicy"] {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    immutable(
        &new["volumeBindingMode"],
        &old["volumeBindingMode"],
        &Path::new("volumeBindingMode"),
        errs,
    );
}

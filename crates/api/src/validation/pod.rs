//! Pods, pod specs and pod templates, as upstream's `ValidatePodSpec`,
//! `ValidatePodTemplateSpec` and `ValidatePodUpdate`.

use super::meta::{
    nonnegative, validate_annotations, validate_label_name, validate_label_selector,
    validate_labels,
};
use super::names::{self, inclusive_range_error};
use super::{Errors, Path, list, text};
use crate::errors::FieldError;
use crate::quantity;
use serde_json::Value;
use std::collections::HashSet;

/// Volume sources in the order upstream's `validateVolumeSource` looks at them; the second
/// one found is the one reported.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// Wording of the forbidden pod update, as upstream's `ValidatePodUpdate`.
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Whether the spec belongs to a Pod itself rather than a template (upstream's
/// `ResourceIsPod` and the pod-only container checks).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Pod,
    Template,
}

/// `validatePodMetadataAndSpec` without `metadata`.
pub fn validate_pod(pod: &Value, errs: &mut Errors) {
    validate_pod_spec(&pod["spec"], &Path::new("spec"), Owner::Pod, errs);
}

/// `ValidatePodTemplateSpec`; note upstream reports template labels at `<path>.labels`.
pub fn validate_pod_template_spec(template: &Value, path: &Path, errs: &mut Errors) {
    validate_labels(&template["metadata"]["labels"], &path.child("labels"), errs);
    validate_annotations(
        &template["metadata"]["annotations"],
        &path.child("annotations"),
        errs,
    );
    validate_pod_spec(
        &template["spec"],
        &path.child("spec"),
        Owner::Template,
        errs,
    );
    if !list(&template["spec"], "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers").as_str(),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`.
fn validate_pod_spec(spec: &Value, path: &Path, owner: Owner, errs: &mut Errors) {
    let volumes = validate_volumes(spec, &path.child("volumes"), errs);
    let containers = list(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(path.child("containers").as_str(), ""));
    }
    let mut names = HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let c_path = path.child("containers").index(i);
        validate_container(container, &volumes, &c_path, owner, errs);
        if !names.insert(text(container, "name")) {
            errs.push(FieldError::duplicate(
                c_path.child("name").as_str(),
                text(container, "name"),
            ));
        }
        validate_probes(container, &c_path, errs);
        if !container["restartPolicy"].is_null() {
            errs.push(FieldError::forbidden(
                c_path.child("restartPolicy").as_str(),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(containers, &path.child("containers"), errs);
    for (i, container) in list(spec, "initContainers").iter().enumerate() {
        let c_path = path.child("initContainers").index(i);
        validate_container(container, &volumes, &c_path, owner, errs);
        let name = text(container, "name");
        if !name.is_empty() && !names.insert(name) {
            errs.push(FieldError::duplicate(c_path.child("name").as_str(), name));
        }
        let sidecar = match text(container, "restartPolicy") {
            "" => false,
            "Always" => true,
            other => {
                errs.push(FieldError::not_supported(
                    c_path.child("restartPolicy").as_str(),
                    other,
                    &["Always"],
                ));
                false
            }
        };
        if sidecar {
            validate_probes(container, &c_path, errs);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if !container[field].is_null() {
                    errs.push(FieldError::forbidden(
                        c_path.child(field).as_str(),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    one_of(
        spec,
        "restartPolicy",
        &["Always", "OnFailure", "Never"],
        path,
        errs,
    );
    one_of(
        spec,
        "dnsPolicy",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        path,
        errs,
    );
    validate_labels(&spec["nodeSelector"], &path.child("nodeSelector"), errs);
    validate_affinity(&spec["affinity"], &path.child("affinity"), errs);
    for (field, check) in [
        (
            "serviceAccountName",
            names::dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", names::dns1123_subdomain),
        ("hostname", names::dns1123_label),
        ("subdomain", names::dns1123_label),
        ("priorityClassName", names::dns1123_subdomain),
    ] {
        let value = text(spec, field);
        if !value.is_empty() {
            for msg in check(value) {
                errs.push(FieldError::invalid(path.child(field).as_str(), value, msg));
            }
        }
    }
    if let Some(deadline) = spec["activeDeadlineSeconds"]
        .as_i64()
        .filter(|d| !(1..=i64::from(i32::MAX)).contains(d))
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds").as_str(),
            deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    validate_tolerations(list(spec, "tolerations"), &path.child("tolerations"), errs);
}

/// Upstream's `NotSupported` check of an enumerated field, when it is set.
fn one_of(object: &Value, field: &str, supported: &[&str], path: &Path, errs: &mut Errors) {
    if let Some(value) = object[field].as_str().filter(|v| !supported.contains(v)) {
        errs.push(FieldError::not_supported(
            path.child(field).as_str(),
            value,
            supported,
        ));
    }
}

/// `ValidateVolumes`: the names of the volumes that are valid, for mounts to refer to.
fn validate_volumes<'a>(spec: &'a Value, path: &Path, errs: &mut Errors) -> HashSet<&'a str> {
    let mut valid = HashSet::new();
    for (i, volume) in list(spec, "volumes").iter().enumerate() {
        let v_path = path.index(i);
        let mut volume_errs = validate_volume_source(volume, &v_path);
        let name = text(volume, "name");
        if name.is_empty() {
            volume_errs.push(FieldError::required(v_path.child("name").as_str(), ""));
        } else {
            for msg in names::dns1123_label(name) {
                volume_errs.push(FieldError::invalid(
                    v_path.child("name").as_str(),
                    name,
                    msg,
                ));
            }
        }
        if valid.contains(name) {
            volume_errs.push(FieldError::duplicate(v_path.child("name").as_str(), name));
        }
        // Only a fully valid volume can be mounted: mounts of a broken one are "Not found".
        if volume_errs.is_empty() {
            valid.insert(name);
        }
        errs.extend(volume_errs);
    }
    valid
}

/// `validateVolumeSource`: exactly one source, and the required field of the common ones.
fn validate_volume_source(volume: &Value, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut sources = VOLUME_SOURCES.iter().filter(|s| !volume[**s].is_null());
    match sources.next() {
        None => errs.push(FieldError::required(
            path.as_str(),
            "must specify a volume type",
        )),
        Some(&source) => {
            for &extra in sources {
                errs.push(FieldError::forbidden(
                    path.child(extra).as_str(),
                    "may not specify more than 1 volume type",
                ));
            }
            let required = match source {
                "configMap" => Some("name"),
                "secret" => Some("secretName"),
                "persistentVolumeClaim" => Some("claimName"),
                "hostPath" | "nfs" => Some("path"),
                _ => None,
            };
            if let Some(field) = required.filter(|f| text(&volume[source], f).is_empty()) {
                errs.push(FieldError::required(
                    path.child(source).child(field).as_str(),
                    "",
                ));
            }
            if source == "nfs" && text(&volume["nfs"], "server").is_empty() {
                errs.push(FieldError::required(
                    path.child("nfs").child("server").as_str(),
                    "",
                ));
            }
        }
    }
    errs
}

/// `validateContainerCommon` plus the pod-only image check.
fn validate_container(
    container: &Value,
    volumes: &HashSet<&str>,
    path: &Path,
    owner: Owner,
    errs: &mut Errors,
) {
    let name = text(container, "name");
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name").as_str(), ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(path.child("name").as_str(), name, msg));
        }
    }
    let image = text(container, "image");
    if image.is_empty() {
        errs.push(FieldError::required(path.child("image").as_str(), ""));
    }
    one_of(
        container,
        "terminationMessagePolicy",
        &["File", "FallbackToLogsOnError"],
        path,
        errs,
    );
    validate_ports(list(container, "ports"), &path.child("ports"), errs);
    validate_env(list(container, "env"), &path.child("env"), errs);
    validate_volume_mounts(
        list(container, "volumeMounts"),
        volumes,
        &path.child("volumeMounts"),
        errs,
    );
    one_of(
        container,
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
        path,
        errs,
    );
    validate_resources(&container["resources"], &path.child("resources"), errs);
    if owner == Owner::Pod && image.trim() != image {
        errs.push(FieldError::invalid(
            path.child("image").as_str(),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
}

/// `validateContainerPorts`.
fn validate_ports(ports: &[Value], path: &Path, errs: &mut Errors) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p_path = path.index(i);
        let name = text(port, "name");
        if !name.is_empty() {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(
                        p_path.child("name").as_str(),
                        name,
                        msg,
                    ));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(p_path.child("name").as_str(), name));
            }
        }
        match port["containerPort"].as_i64().unwrap_or(0) {
            0 => errs.push(FieldError::required(
                p_path.child("containerPort").as_str(),
                "",
            )),
            n => {
                for msg in names::port_num(n) {
                    errs.push(FieldError::invalid(
                        p_path.child("containerPort").as_str(),
                        n,
                        msg,
                    ));
                }
            }
        }
        if let Some(n) = port["hostPort"].as_i64().filter(|n| *n != 0) {
            for msg in names::port_num(n) {
                errs.push(FieldError::invalid(
                    p_path.child("hostPort").as_str(),
                    n,
                    msg,
                ));
            }
        }
        one_of(port, "protocol", &["SCTP", "TCP", "UDP"], &p_path, errs);
    }
}

/// `checkHostPortConflicts`: a `protocol/hostIP/hostPort` may be used once per pod.
fn check_host_port_conflicts(containers: &[Value], path: &Path, errs: &mut Errors) {
    let mut used = HashSet::new();
    for (ci, container) in containers.iter().enumerate() {
        for (pi, port) in list(container, "ports").iter().enumerate() {
            let host_port = port["hostPort"].as_i64().unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            let key = format!("{protocol}/{}/{host_port}", text(port, "hostIP"));
            if !used.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci)
                        .child("ports")
                        .index(pi)
                        .child("hostPort")
                        .as_str(),
                    key,
                ));
            }
        }
    }
}

/// `ValidateEnv`: names, and at most one `valueFrom` source.
fn validate_env(vars: &[Value], path: &Path, errs: &mut Errors) {
    for (i, var) in vars.iter().enumerate() {
        let v_path = path.index(i);
        let name = text(var, "name");
        if name.is_empty() {
            errs.push(FieldError::required(v_path.child("name").as_str(), ""));
        } else {
            for msg in names::env_var_name(name) {
                errs.push(FieldError::invalid(
                    v_path.child("name").as_str(),
                    name,
                    msg,
                ));
            }
        }
        let Some(value_from) = var["valueFrom"].as_object() else {
            continue;
        };
        let from_path = v_path.child("valueFrom");
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .iter()
        .filter(|s| value_from.contains_key(**s))
        .count();
        let problem = match sources {
            0 => Some(
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ),
            _ if !text(var, "value").is_empty() => {
                Some("may not be specified when `value` is not empty")
            }
            1 => None,
            _ => Some("may not have more than one field specified at a time"),
        };
        if let Some(problem) = problem {
            errs.push(FieldError::invalid(from_path.as_str(), "", problem));
        }
        for source in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(selector) = value_from.get(source) {
                let key = text(selector, "key");
                let key_path = from_path.child(source).child("key");
                if key.is_empty() {
                    errs.push(FieldError::required(key_path.as_str(), ""));
                } else {
                    for msg in names::config_map_key(key) {
                        errs.push(FieldError::invalid(key_path.as_str(), key, msg));
                    }
                }
            }
        }
    }
}

/// `ValidateVolumeMounts`: each mount names a declared volume and a unique path.
fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &HashSet<&str>,
    path: &Path,
    errs: &mut Errors,
) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let m_path = path.index(i);
        let name = text(mount, "name");
        if name.is_empty() {
            errs.push(FieldError::required(m_path.child("name").as_str(), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(m_path.child("name").as_str(), name));
        }
        let mount_path = text(mount, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(m_path.child("mountPath").as_str(), ""));
        }
        if !mount_paths.insert(mount_path) {
            errs.push(FieldError::invalid(
                m_path.child("mountPath").as_str(),
                mount_path,
                "must be unique",
            ));
        }
    }
}

/// Whether requests may be below limits: native resources except hugepages
/// (upstream's `IsOvercommitAllowed`).
fn overcommit_allowed(resource: &str) -> bool {
    let native = !resource.contains('/') || resource.contains("kubernetes.io/");
    native && !resource.starts_with("hugepages-")
}

/// `ValidateResourceRequirements`: non-negative quantities, requests within limits.
fn validate_resources(resources: &Value, path: &Path, errs: &mut Errors) {
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let limits = resources["limits"].as_object();
    for (name, quantity) in limits.into_iter().flatten() {
        nonnegative_quantity(quantity, &limits_path.key(name), errs);
    }
    for (name, request) in resources["requests"].as_object().into_iter().flatten() {
        nonnegative_quantity(request, &requests_path.key(name), errs);
        let request_text = request.as_str().unwrap_or_default();
        match limits.and_then(|l| l.get(name)) {
            Some(limit) => {
                let limit_text = limit.as_str().unwrap_or_default();
                let (Some(req), Some(lim)) =
                    (quantity::parse(request_text), quantity::parse(limit_text))
                else {
                    continue;
                };
                if req != lim && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        requests_path.as_str(),
                        request_text,
                        format!("must be equal to {name} limit of {limit_text}"),
                    ));
                } else if req > lim {
                    errs.push(FieldError::invalid(
                        requests_path.as_str(),
                        request_text,
                        format!("must be less than or equal to {name} limit of {limit_text}"),
                    ));
                }
            }
            None if !overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    limits_path.as_str(),
                    "Limit must be set for non overcommitable resources",
                ));
            }
            None => {}
        }
    }
}

/// `ValidateNonnegativeQuantity`.
fn nonnegative_quantity(quantity: &Value, path: &Path, errs: &mut Errors) {
    let text = quantity.as_str().unwrap_or_default();
    if quantity::parse(text).is_some_and(|q| q < 0.0) {
        errs.push(FieldError::invalid(
            path.as_str(),
            text,
            "must be greater than or equal to 0",
        ));
    }
}

/// Liveness, readiness and startup probes and the lifecycle hooks of a container.
fn validate_probes(container: &Value, path: &Path, errs: &mut Errors) {
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let probe = &container[probe_name];
        if probe.is_null() {
            continue;
        }
        let p_path = path.child(probe_name);
        validate_handler(
            probe,
            &["exec", "httpGet", "tcpSocket", "grpc"],
            &p_path,
            errs,
        );
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonnegative(probe[field].as_i64(), &p_path.child(field), errs);
        }
        if let Some(grace) = probe["terminationGracePeriodSeconds"].as_i64() {
            if probe_name == "readinessProbe" {
                errs.push(FieldError::invalid(
                    p_path.child("terminationGracePeriodSeconds").as_str(),
                    grace,
                    "must not be set for readinessProbes",
                ));
            } else if grace <= 0 {
                errs.push(FieldError::invalid(
                    p_path.child("terminationGracePeriodSeconds").as_str(),
                    grace,
                    "must be greater than 0",
                ));
            }
        }
        if probe_name != "readinessProbe"
            && let Some(threshold) = probe["successThreshold"].as_i64().filter(|t| *t != 1)
        {
            errs.push(FieldError::invalid(
                p_path.child("successThreshold").as_str(),
                threshold,
                "must be 1",
            ));
        }
    }
    for hook in ["postStart", "preStop"] {
        let handler = &container["lifecycle"][hook];
        if !handler.is_null() {
            validate_handler(
                handler,
                &["exec", "httpGet", "tcpSocket", "sleep"],
                &path.child("lifecycle").child(hook),
                errs,
            );
        }
    }
}

/// `validateHandler`: exactly one handler type, each well formed.
fn validate_handler(handler: &Value, kinds: &[&str], path: &Path, errs: &mut Errors) {
    let mut found = false;
    for &kind in kinds.iter().filter(|k| !handler[**k].is_null()) {
        let h_path = path.child(kind);
        if found {
            errs.push(FieldError::forbidden(
                h_path.as_str(),
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        found = true;
        let action = &handler[kind];
        match kind {
            "exec" if list(action, "command").is_empty() => {
                errs.push(FieldError::required(h_path.child("command").as_str(), ""))
            }
            "httpGet" => {
                validate_port_num_or_name(&action["port"], &h_path.child("port"), errs);
                one_of(action, "scheme", &["HTTP", "HTTPS"], &h_path, errs);
            }
            "tcpSocket" | "grpc" => {
                validate_port_num_or_name(&action["port"], &h_path.child("port"), errs)
            }
            _ => {}
        }
    }
    if !found {
        errs.push(FieldError::required(
            path.as_str(),
            "must specify a handler type",
        ));
    }
}

/// `ValidatePortNumOrName`.
pub fn validate_port_num_or_name(port: &Value, path: &Path, errs: &mut Errors) {
    match port {
        Value::String(name) => {
            for msg in names::port_name(name) {
                errs.push(FieldError::invalid(path.as_str(), name.as_str(), msg));
            }
        }
        other => {
            let n = other.as_i64().unwrap_or(0);
            for msg in names::port_num(n) {
                errs.push(FieldError::invalid(path.as_str(), n, msg));
            }
        }
    }
}

/// `ValidateTolerations`.
fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Errors) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let t_path = path.index(i);
        let key = text(toleration, "key");
        if !key.is_empty() {
            validate_label_name(key, &t_path.child("key"), errs);
        }
        let operator = text(toleration, "operator");
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                t_path.child("operator").as_str(),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = text(toleration, "effect");
        if !toleration["tolerationSeconds"].is_null() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                t_path.child("effect").as_str(),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = text(toleration, "value");
        match operator {
            "Equal" | "" => {
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        t_path.child("operator").as_str(),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                t_path.child("operator").as_str(),
                toleration.clone(),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(
                t_path.child("operator").as_str(),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                t_path.child("effect").as_str(),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// `validateAffinity`: node selector terms, weights, pod affinity terms.
fn validate_affinity(affinity: &Value, path: &Path, errs: &mut Errors) {
    let node = &affinity["nodeAffinity"];
    let required = &node["requiredDuringSchedulingIgnoredDuringExecution"];
    if !required.is_null() {
        let terms_path = path
            .child("nodeAffinity")
            .child("requiredDuringSchedulingIgnoredDuringExecution")
            .child("nodeSelectorTerms");
        let terms = list(required, "nodeSelectorTerms");
        if terms.is_empty() {
            errs.push(FieldError::required(
                terms_path.as_str(),
                "must have at least one node selector term",
            ));
        }
        for (i, term) in terms.iter().enumerate() {
            validate_node_selector_term(term, &terms_path.index(i), errs);
        }
    }
    let preferred_path = path
        .child("nodeAffinity")
        .child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in list(node, "preferredDuringSchedulingIgnoredDuringExecution")
        .iter()
        .enumerate()
    {
        validate_weight(term, &preferred_path.index(i), errs);
        validate_node_selector_term(
            &term["preference"],
            &preferred_path.index(i).child("preference"),
            errs,
        );
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let pod_affinity = &affinity[kind];
        let k_path = path.child(kind);
        let required_path = k_path.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in list(
            pod_affinity,
            "requiredDuringSchedulingIgnoredDuringExecution",
        )
        .iter()
        .enumerate()
        {
            validate_pod_affinity_term(term, &required_path.index(i), errs);
        }
        let preferred_path = k_path.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in list(
            pod_affinity,
            "preferredDuringSchedulingIgnoredDuringExecution",
        )
        .iter()
        .enumerate()
        {
            validate_weight(term, &preferred_path.index(i), errs);
            validate_pod_affinity_term(
                &term["podAffinityTerm"],
                &preferred_path.index(i).child("podAffinityTerm"),
                errs,
            );
        }
    }
}

fn validate_weight(term: &Value, path: &Path, errs: &mut Errors) {
    let weight = term["weight"].as_i64().unwrap_or(0);
    if !(1..=100).contains(&weight) {
        errs.push(FieldError::invalid(
            path.child("weight").as_str(),
            weight,
            "must be in the range 1-100",
        ));
    }
}

/// `ValidateNodeSelectorTerm` (match expressions; field selectors only by operator).
fn validate_node_selector_term(term: &Value, path: &Path, errs: &mut Errors) {
    for (j, req) in list(term, "matchExpressions").iter().enumerate() {
        let r_path = path.child("matchExpressions").index(j);
        let values = list(req, "values");
        let values_path = r_path.child("values");
        match text(req, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(FieldError::required(
                    values_path.as_str(),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                values_path.as_str(),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => errs.push(FieldError::required(
                values_path.as_str(),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errs.push(FieldError::invalid(
                r_path.child("operator").as_str(),
                other,
                "not a valid selector operator",
            )),
        }
        validate_label_name(text(req, "key"), &r_path.child("key"), errs);
    }
}

/// `validatePodAffinityTerm`.
fn validate_pod_affinity_term(term: &Value, path: &Path, errs: &mut Errors) {
    if !term["labelSelector"].is_null() {
        validate_label_selector(&term["labelSelector"], &path.child("labelSelector"), errs);
    }
    for namespace in list(term, "namespaces").iter().filter_map(Value::as_str) {
        for msg in names::dns1123_label(namespace) {
            errs.push(FieldError::invalid(
                path.child("namespace").as_str(),
                namespace,
                msg,
            ));
        }
    }
    let topology_key = text(term, "topologyKey");
    if topology_key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey").as_str(),
            "can not be empty",
        ));
    }
    validate_label_name(topology_key, &path.child("topologyKey"), errs);
}

/// `ValidatePodUpdate` without `metadata`: the new spec must be valid, and only images,
/// `activeDeadlineSeconds`, added tolerations and a negative grace period may change.
pub fn validate_pod_update(new: &Value, old: &Value, errs: &mut Errors) {
    validate_pod(new, errs);
    let spec_path = Path::new("spec");
    let (new_spec, old_spec) = (&new["spec"], &old["spec"]);
    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (
        new_spec["activeDeadlineSeconds"].as_i64(),
        old_spec["activeDeadlineSeconds"].as_i64(),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                deadline_path.as_str(),
                n,
                inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                deadline_path.as_str(),
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                deadline_path.as_str(),
                Value::Null,
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }

    // Take from the old spec everything an update may change, then compare what is left.
    let mut munged = new_spec.clone();
    for kind in ["containers", "initContainers"] {
        let old_containers = list(old_spec, kind);
        // `get_mut`, as indexing a missing key would insert a `null` and spoil the comparison.
        if let Some(containers) = munged.get_mut(kind).and_then(Value::as_array_mut) {
            for (container, old_container) in containers.iter_mut().zip(old_containers) {
                container["image"] = old_container["image"].clone();
            }
        }
    }
    set_like(&mut munged, old_spec, "activeDeadlineSeconds");
    let old_grace = old_spec["terminationGracePeriodSeconds"].as_i64();
    if old_grace.is_some_and(|g| g < 0)
        && new_spec["terminationGracePeriodSeconds"].as_i64() == Some(1)
    {
        set_like(&mut munged, old_spec, "terminationGracePeriodSeconds");
    }
    let tolerations_path = spec_path.child("tolerations");
    if only_added_tolerations(list(new_spec, "tolerations"), list(old_spec, "tolerations")) {
        set_like(&mut munged, old_spec, "tolerations");
    } else {
        errs.push(FieldError::forbidden(
            tolerations_path.as_str(),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
        set_like(&mut munged, old_spec, "tolerations");
    }
    if munged != *old_spec {
        errs.push(FieldError::forbidden(
            spec_path.as_str(),
            POD_UPDATE_FORBIDDEN,
        ));
    }
}

/// Makes `target[field]` what it is in `source`, absent included.
fn set_like(target: &mut Value, source: &Value, field: &str) {
    let Some(object) = target.as_object_mut() else {
        return;
    };
    match source.get(field) {
        Some(value) => object.insert(field.to_string(), value.clone()),
        None => object.remove(field),
    };
}

/// `validateOnlyAddedTolerations`: every old toleration is still there, up to its
/// `tolerationSeconds`.
fn only_added_tolerations(new: &[Value], old: &[Value]) -> bool {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    old.iter()
        .all(|o| new.iter().any(|n| without_seconds(n) == without_seconds(o)))
}

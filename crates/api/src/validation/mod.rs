//! Validation of built-in kinds as upstream's `pkg/apis/core/validation` and
//! `pkg/apis/apps/validation`, with upstream's field paths and wording.
//!
//! Objects arrive normalized and defaulted, so fields upstream's defaulting always fills
//! (`restartPolicy`, `imagePullPolicy`, `protocol`, ...) are checked only when present: an
//! absent one is the default, never a user error. Object metadata is validated separately by
//! [`validate_object_meta`], which the generic store calls for every kind.

mod apps;
mod core;
mod meta;
pub mod names;
mod pod;

use crate::errors::FieldError;
use serde_json::Value;

pub use meta::validate_object_meta_update;
pub use names::NameRule;

/// The list every check appends to.
type Errors = Vec<FieldError>;

/// A field path as upstream's `field.Path` prints it: `spec.containers[0].name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    fn new(root: &str) -> Self {
        Self(root.to_string())
    }
    fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self::new(name)
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }
    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
    fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The string at `v[key]`, or `""` as Go's zero value.
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The array at `v[key]`, or an empty one.
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The entries of a string-to-string map, in the object's order.
fn string_map(v: &Value) -> impl Iterator<Item = (&str, &str)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
}

/// Validates a new object of a built-in kind (upstream's `Validate` of its strategy), not
/// counting `metadata` (see [`validate_object_meta`]). Unknown kinds have no rules.
pub fn validate(kind: &str, group: &str, object: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(object, &mut errs),
        ("", "PodTemplate") => {
            pod::validate_pod_template_spec(&object["template"], &Path::new("template"), &mut errs)
        }
        ("", "ReplicationController") => apps::validate_replication_controller(object, &mut errs),
        ("apps", "Deployment") => apps::validate_deployment(object, &mut errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set(object, &mut errs),
        ("apps", "StatefulSet") => apps::validate_stateful_set(object, &mut errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set(object, &mut errs),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(object, &mut errs),
        ("", "Service") => core::validate_service(object, &mut errs),
        ("", "ConfigMap") => core::validate_config_map(object, &mut errs),
        ("", "Secret") => core::validate_secret(object, &mut errs),
        ("", "PersistentVolumeClaim") => core::validate_pvc(object, &mut errs),
        ("", "PersistentVolume") => core::validate_pv(object, &mut errs),
        ("", "Node") => core::validate_node(object, &mut errs),
        ("", "Endpoints") => core::validate_endpoints(object, &mut errs),
        ("", "Event") => core::validate_event(object, &mut errs),
        ("", "ServiceAccount") => core::validate_service_account(object, &mut errs),
        ("coordination.k8s.io", "Lease") => core::validate_lease(object, &mut errs),
        ("storage.k8s.io", "StorageClass") => core::validate_storage_class(object, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => core::validate_endpoint_slice(object, &mut errs),
        _ => {}
    }
    errs
}

/// Validates an update of a built-in kind (upstream's `ValidateUpdate`): what may not change,
/// plus the rules of [`validate`] for the new object. `metadata` is checked by
/// [`validate_object_meta_update`].
pub fn validate_update(kind: &str, group: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    if (group, kind) == ("", "Pod") {
        let mut errs = Vec::new();
        pod::validate_pod_update(new, old, &mut errs);
        return errs;
    }
    let mut errs = validate(kind, group, new);
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            apps::validate_selector_update(new, old, &mut errs)
        }
        ("apps", "StatefulSet") => apps::validate_stateful_set_update(new, old, &mut errs),
        ("apps", "ControllerRevision") => {
            meta::immutable(&new["data"], &old["data"], &Path::new("data"), &mut errs)
        }
        ("", "Service") => core::validate_service_update(new, old, &mut errs),
        ("", "ConfigMap" | "Secret") => core::validate_immutable_data(kind, new, old, &mut errs),
        ("", "PersistentVolumeClaim") => core::validate_pvc_update(new, old, &mut errs),
        ("storage.k8s.io", "StorageClass") => {
            core::validate_storage_class_update(new, old, &mut errs)
        }
        _ => {}
    }
    errs
}

/// Validates `metadata` of a new object as upstream's `ValidateObjectMeta`: name (or
/// generateName), namespace presence, labels, annotations, owner references, finalizers.
///
/// `name_is_dns_label` selects the stricter name rule of the two kinds that have one:
/// cluster-scoped names (Namespace) must be RFC 1123 labels, namespaced ones (Service)
/// DNS-1035 labels. Other name rules: [`validate_object_meta_with_rule`].
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_is_dns_label: bool,
) -> Vec<FieldError> {
    let rule = match (name_is_dns_label, namespaced) {
        (false, _) => NameRule::Dns1123Subdomain,
        (true, false) => NameRule::Dns1123Label,
        (true, true) => NameRule::Dns1035Label,
    };
    meta::validate_object_meta_with_rule(meta, namespaced, rule)
}

/// Validates `metadata` of a new object with an explicit name rule, e.g.
/// `NameRule::for_kind(kind, group)`.
pub fn validate_object_meta_with_rule(
    meta: &Value,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    meta::validate_object_meta_with_rule(meta, namespaced, rule)
}

#[cfg(test)]
mod tests;

//! Object metadata, labels, annotations and label selectors, as apimachinery's
//! `pkg/api/validation` and `pkg/apis/meta/v1/validation`.

use super::names::{self, NameRule};
use super::{Errors, Path, list, string_map, text};
use crate::errors::FieldError;
use serde_json::Value;

/// Upstream's `TotalAnnotationSizeLimitB` (256 KiB).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Upstream's `FieldImmutableErrorMsg`.
pub const IMMUTABLE: &str = "field is immutable";

/// `ValidateLabels`: every key a qualified name, every value a label value, all reported at
/// `path` itself as upstream does.
pub fn validate_labels(labels: &Value, path: &Path, errs: &mut Errors) {
    for (key, value) in string_map(labels) {
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(path.as_str(), key, msg));
        }
        for msg in names::label_value(value) {
            errs.push(FieldError::invalid(path.as_str(), value, msg));
        }
    }
}

/// `ValidateAnnotations`: keys are case-insensitive qualified names; total size is bounded.
pub fn validate_annotations(annotations: &Value, path: &Path, errs: &mut Errors) {
    let mut size = 0;
    for (key, value) in string_map(annotations) {
        for msg in names::qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(path.as_str(), key, msg));
        }
        size += key.len() + value.len();
    }
    if size > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(
            path.as_str(),
            "",
            ANNOTATIONS_MAX_BYTES,
        ));
    }
}

/// `ValidateLabelSelector`: requirement operators and values, and `matchLabels`.
pub fn validate_label_selector(selector: &Value, path: &Path, errs: &mut Errors) {
    for (i, req) in list(selector, "matchExpressions").iter().enumerate() {
        let req_path = path.child("matchExpressions").index(i);
        let values = list(req, "values");
        match text(req, "operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                req_path.child("values").as_str(),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                req_path.child("values").as_str(),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                req_path.child("operator").as_str(),
                other,
                "not a valid selector operator",
            )),
        }
        validate_label_name(text(req, "key"), &req_path.child("key"), errs);
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or_default();
            for msg in names::label_value(value) {
                errs.push(FieldError::invalid(
                    req_path.child("values").index(j).as_str(),
                    value,
                    msg,
                ));
            }
        }
    }
    validate_labels(&selector["matchLabels"], &path.child("matchLabels"), errs);
}

/// `ValidateLabelName`: a qualified name reported at `path`.
pub fn validate_label_name(name: &str, path: &Path, errs: &mut Errors) {
    for msg in names::qualified_name(name) {
        errs.push(FieldError::invalid(path.as_str(), name, msg));
    }
}

/// `ValidateNonnegativeField`.
pub fn nonnegative(value: Option<i64>, path: &Path, errs: &mut Errors) {
    if let Some(v) = value.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(
            path.as_str(),
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// `ValidateImmutableField`: `new` must equal `old`; the error shows the new value.
pub fn immutable(new: &Value, old: &Value, path: &Path, errs: &mut Errors) {
    if new != old {
        errs.push(FieldError::invalid(path.as_str(), new.clone(), IMMUTABLE));
    }
}

/// Upstream's `ValidateObjectMetaAccessor` on `metadata` of a new object, with the
/// name rule given explicitly.
pub fn validate_object_meta_with_rule(
    meta: &Value,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    let generate_name = text(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName").as_str(),
                generate_name,
                msg,
            ));
        }
    }
    let name = text(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name").as_str(),
            "name or generateName is required",
        ));
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid(path.child("name").as_str(), name, msg));
        }
    }
    let namespace = text(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace").as_str(), ""));
        } else {
            for msg in names::dns1123_label(namespace) {
                errs.push(FieldError::invalid(
                    path.child("namespace").as_str(),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace").as_str(),
            "not allowed on this type",
        ));
    }
    nonnegative(
        meta["generation"].as_i64(),
        &path.child("generation"),
        &mut errs,
    );
    validate_mutable_meta(meta, &path, &mut errs);
    errs
}

/// What both create and update check: labels, annotations, owner references, finalizers.
fn validate_mutable_meta(meta: &Value, path: &Path, errs: &mut Errors) {
    validate_labels(&meta["labels"], &path.child("labels"), errs);
    validate_annotations(&meta["annotations"], &path.child("annotations"), errs);
    validate_owner_references(meta, &path.child("ownerReferences"), errs);
    validate_finalizers(meta, &path.child("finalizers"), errs);
}

/// `ValidateOwnerReferences`: each reference complete, at most one controller.
fn validate_owner_references(meta: &Value, path: &Path, errs: &mut Errors) {
    let mut first_controller: Option<String> = None;
    for owner in list(meta, "ownerReferences") {
        let api_version = text(owner, "apiVersion");
        // `schema.FromAPIVersionAndKind`: the version is what follows the last '/'.
        let version = api_version.rsplit('/').next().unwrap_or_default();
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion").as_str(),
                api_version,
                "version must not be empty",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if text(owner, field).is_empty() {
                errs.push(FieldError::invalid(
                    path.child(field).as_str(),
                    "",
                    "must not be empty",
                ));
            }
        }
        if owner["controller"] == Value::Bool(true) {
            let this = format!("{}/{}", text(owner, "kind"), text(owner, "name"));
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path.as_str(),
                    meta["ownerReferences"].clone(),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => first_controller = Some(this),
            }
        }
    }
}

/// `ValidateFinalizers` plus core's `validateKubeFinalizerName`.
fn validate_finalizers(meta: &Value, path: &Path, errs: &mut Errors) {
    let finalizers: Vec<&str> = list(meta, "finalizers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for finalizer in &finalizers {
        for msg in names::qualified_name(finalizer) {
            errs.push(FieldError::invalid(path.as_str(), *finalizer, msg));
        }
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path.as_str(),
            meta["finalizers"].clone(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, finalizer) in finalizers.iter().enumerate() {
        // Unprefixed finalizers are reserved for the standard ones.
        if !finalizer.contains('/')
            && !matches!(*finalizer, "orphan" | "foregroundDeletion" | "kubernetes")
        {
            errs.push(FieldError::invalid(
                path.index(i).as_str(),
                *finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Upstream's `ValidateObjectMetaAccessorUpdate` on `metadata`.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if !old["deletionTimestamp"].is_null() {
        let old_finalizers: Vec<&Value> = list(old, "finalizers").iter().collect();
        let mut extra: Vec<&str> = list(new, "finalizers")
            .iter()
            .filter(|f| !old_finalizers.contains(f))
            .filter_map(Value::as_str)
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let listed = extra
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            errs.push(FieldError::forbidden(
                path.child("finalizers").as_str(),
                format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{listed}}}"),
            ));
        }
    }
    let resource_version = text(new, "resourceVersion");
    if resource_version.is_empty() {
        errs.push(FieldError::invalid(
            path.child("resourceVersion").as_str(),
            "",
            "must be specified for an update",
        ));
    }
    let generation = |m: &Value| m["generation"].as_i64().unwrap_or(0);
    if generation(new) < generation(old) {
        errs.push(FieldError::invalid(
            path.child("generation").as_str(),
            generation(new),
            "must not be decremented",
        ));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        immutable(
            &empty_as_null(&new[field]),
            &empty_as_null(&old[field]),
            &path.child(field),
            &mut errs,
        );
    }
    validate_mutable_meta(new, &path, &mut errs);
    errs
}

/// Go compares zero values: an absent string field equals an empty one.
fn empty_as_null(v: &Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::Null,
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_metadata_has_no_errors() {
        let meta = json!({
            "name": "web", "namespace": "default",
            "labels": {"app.kubernetes.io/name": "web", "tier": ""},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true}],
            "finalizers": ["example.com/cleanup"]
        });
        assert!(validate_object_meta_with_rule(&meta, true, NameRule::Dns1123Subdomain).is_empty());
    }

    #[test]
    fn metadata_errors_have_upstream_paths_and_messages() {
        let cases: Vec<(Value, bool, NameRule, Vec<&str>)> = vec![
            (
                json!({"namespace": "default"}),
                true,
                NameRule::Dns1123Subdomain,
                vec!["metadata.name: Required value: name or generateName is required"],
            ),
            (
                json!({"name": "web"}),
                true,
                NameRule::Dns1123Subdomain,
                vec!["metadata.namespace: Required value"],
            ),
            (
                json!({"name": "n1", "namespace": "default"}),
                false,
                NameRule::Dns1123Label,
                vec!["metadata.namespace: Forbidden: not allowed on this type"],
            ),
            (
                json!({"name": "a.b"}),
                false,
                NameRule::Dns1123Label,
                vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"],
            ),
            (
                json!({"name": "w", "namespace": "d", "labels": {"app": "-bad"}}),
                true,
                NameRule::Dns1123Subdomain,
                vec![
                    "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ],
            ),
            (
                json!({"name": "w", "namespace": "d", "finalizers": ["cleanup"]}),
                true,
                NameRule::Dns1123Subdomain,
                vec![
                    "metadata.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified",
                ],
            ),
            (
                json!({"name": "w", "namespace": "d", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "", "uid": "x"}]}),
                true,
                NameRule::Dns1123Subdomain,
                vec!["metadata.ownerReferences.name: Invalid value: \"\": must not be empty"],
            ),
        ];
        for (meta, namespaced, rule, want) in cases {
            assert_eq!(
                rendered(&validate_object_meta_with_rule(&meta, namespaced, rule)),
                want,
                "{meta}"
            );
        }
    }

    #[test]
    fn updates_keep_identity_fields() {
        let old = json!({"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "5", "creationTimestamp": "2024-01-01T00:00:00Z"});
        let mut new = old.clone();
        assert!(validate_object_meta_update(&new, &old).is_empty());
        new["uid"] = json!("u2");
        new["name"] = json!("other");
        assert_eq!(
            rendered(&validate_object_meta_update(&new, &old)),
            [
                "metadata.name: Invalid value: \"other\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable"
            ]
        );
    }
}

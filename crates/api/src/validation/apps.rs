//! Workload controllers, as upstream's `pkg/apis/apps/validation` (and core's
//! ReplicationController).

use super::meta::{immutable, nonnegative, validate_label_selector};
use super::names;
use super::pod::validate_pod_template_spec;
use super::{Errors, Path, list, string_map, text};
use crate::errors::FieldError;
use serde_json::Value;

/// Upstream's forbidden-update wording for statefulsets.
const STATEFULSET_FORBIDDEN_UPDATE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
/// Upstream's selector-mismatch wording.
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// Whether `selector` (a `metav1.LabelSelector` object) matches `labels`.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels[key].as_str();
    let contains = |req: &Value, value: &str| {
        list(req, "values")
            .iter()
            .any(|v| v.as_str() == Some(value))
    };
    string_map(&selector["matchLabels"]).all(|(k, v)| label(k) == Some(v))
        && list(selector, "matchExpressions").iter().all(|req| {
            let value = label(text(req, "key"));
            match text(req, "operator") {
                "In" => value.is_some_and(|v| contains(req, v)),
                "NotIn" => value.is_none_or(|v| !contains(req, v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// `spec.selector` present and non-empty, and matching `spec.template.metadata.labels`;
/// `kind` is the word in upstream's empty-selector message.
fn validate_selector_and_template(spec: &Value, path: &Path, kind: &str, errs: &mut Errors) {
    let selector = &spec["selector"];
    if selector.is_null() {
        errs.push(FieldError::required(path.child("selector").as_str(), ""));
        return;
    }
    validate_label_selector(selector, &path.child("selector"), errs);
    let terms = selector["matchLabels"].as_object().map_or(0, |m| m.len())
        + list(selector, "matchExpressions").len();
    if terms == 0 {
        errs.push(FieldError::invalid(
            path.child("selector").as_str(),
            selector.clone(),
            format!("empty selector is invalid for {kind}"),
        ));
        return;
    }
    let labels = &spec["template"]["metadata"]["labels"];
    if !selector_matches(selector, labels) {
        let shown = if labels.is_null() {
            Value::Object(Default::default())
        } else {
            labels.clone()
        };
        errs.push(FieldError::invalid(
            path.child("template")
                .child("metadata")
                .child("labels")
                .as_str(),
            shown,
            SELECTOR_MISMATCH,
        ));
    }
}

/// Template restart policy `Always` and no `activeDeadlineSeconds`, for controllers that
/// keep pods running.
fn validate_long_running_template(spec: &Value, path: &Path, kind: &str, errs: &mut Errors) {
    let template_spec = path.child("template").child("spec");
    let restart = text(&spec["template"]["spec"], "restartPolicy");
    if !restart.is_empty() && restart != "Always" {
        errs.push(FieldError::not_supported(
            template_spec.child("restartPolicy").as_str(),
            restart,
            &["Always"],
        ));
    }
    if !spec["template"]["spec"]["activeDeadlineSeconds"].is_null() {
        errs.push(FieldError::forbidden(
            template_spec.child("activeDeadlineSeconds").as_str(),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// `ValidateReplicaSetSpec` (shared by Deployments for the selector and template).
fn validate_replicated_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    nonnegative(spec["replicas"].as_i64(), &path.child("replicas"), errs);
    nonnegative(
        spec["minReadySeconds"].as_i64(),
        &path.child("minReadySeconds"),
        errs,
    );
    // Upstream says "deployment" for replicasets too.
    validate_selector_and_template(spec, path, "deployment", errs);
    validate_pod_template_spec(&spec["template"], &path.child("template"), errs);
    validate_long_running_template(spec, path, "ReplicaSet", errs);
}

/// `ValidateDeployment` without `metadata`.
pub fn validate_deployment(deployment: &Value, errs: &mut Errors) {
    let spec = &deployment["spec"];
    let path = Path::new("spec");
    validate_replicated_spec(spec, &path, errs);
    validate_deployment_strategy(&spec["strategy"], &path.child("strategy"), errs);
    nonnegative(
        spec["revisionHistoryLimit"].as_i64(),
        &path.child("revisionHistoryLimit"),
        errs,
    );
    if let Some(deadline) = spec["progressDeadlineSeconds"].as_i64() {
        nonnegative(Some(deadline), &path.child("progressDeadlineSeconds"), errs);
        if deadline <= spec["minReadySeconds"].as_i64().unwrap_or(0) {
            errs.push(FieldError::invalid(
                path.child("progressDeadlineSeconds").as_str(),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// `ValidateDeploymentStrategy`.
fn validate_deployment_strategy(strategy: &Value, path: &Path, errs: &mut Errors) {
    let rolling = &strategy["rollingUpdate"];
    match text(strategy, "type") {
        "Recreate" if !rolling.is_null() => errs.push(FieldError::forbidden(
            path.child("rollingUpdate").as_str(),
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" | "" => {}
        "RollingUpdate" => {
            if rolling.is_null() {
                return;
            }
            let rolling_path = path.child("rollingUpdate");
            let unavailable = &rolling["maxUnavailable"];
            let surge = &rolling["maxSurge"];
            int_or_percent(unavailable, &rolling_path.child("maxUnavailable"), errs);
            int_or_percent(surge, &rolling_path.child("maxSurge"), errs);
            if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                errs.push(FieldError::invalid(
                    rolling_path.child("maxUnavailable").as_str(),
                    unavailable.clone(),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            not_more_than_100_percent(unavailable, &rolling_path.child("maxUnavailable"), errs);
        }
        other => errs.push(FieldError::not_supported(
            path.as_str(),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// `ValidatePositiveIntOrPercent`.
fn int_or_percent(value: &Value, path: &Path, errs: &mut Errors) {
    match value {
        Value::String(s) => {
            for msg in names::percent(s) {
                errs.push(FieldError::invalid(path.as_str(), s.as_str(), msg));
            }
        }
        other => nonnegative(other.as_i64(), path, errs),
    }
}

/// `getIntOrPercentValue`: the number of an int or of a valid percent.
fn int_or_percent_value(value: &Value) -> i64 {
    match value {
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// `IsNotMoreThan100Percent`.
fn not_more_than_100_percent(value: &Value, path: &Path, errs: &mut Errors) {
    if value.is_string()
        && names::percent(value.as_str().unwrap_or_default()).is_empty()
        && int_or_percent_value(value) > 100
    {
        errs.push(FieldError::invalid(
            path.as_str(),
            value.clone(),
            "must not be greater than 100%",
        ));
    }
}

/// `ValidateReplicaSet` without `metadata`.
pub fn validate_replica_set(replica_set: &Value, errs: &mut Errors) {
    validate_replicated_spec(&replica_set["spec"], &Path::new("spec"), errs);
}

/// `ValidateReplicationController` without `metadata`: a map selector that must match.
pub fn validate_replication_controller(rc: &Value, errs: &mut Errors) {
    let spec = &rc["spec"];
    let path = Path::new("spec");
    nonnegative(spec["replicas"].as_i64(), &path.child("replicas"), errs);
    nonnegative(
        spec["minReadySeconds"].as_i64(),
        &path.child("minReadySeconds"),
        errs,
    );
    let selector = &spec["selector"];
    let template = &spec["template"];
    if string_map(selector).next().is_none() {
        errs.push(FieldError::required(path.child("selector").as_str(), ""));
    } else {
        super::meta::validate_labels(selector, &path.child("selector"), errs);
    }
    if template.is_null() {
        errs.push(FieldError::required(path.child("template").as_str(), ""));
        return;
    }
    let labels = &template["metadata"]["labels"];
    if string_map(selector).next().is_some()
        && !string_map(selector).all(|(k, v)| labels[k].as_str() == Some(v))
    {
        errs.push(FieldError::invalid(
            path.child("template")
                .child("metadata")
                .child("labels")
                .as_str(),
            labels.clone(),
            SELECTOR_MISMATCH,
        ));
    }
    validate_pod_template_spec(template, &path.child("template"), errs);
    validate_long_running_template(spec, &path, "ReplicationController", errs);
}

/// `ValidateStatefulSetSpec`; like upstream, the pod template's spec is not validated.
pub fn validate_stateful_set(set: &Value, errs: &mut Errors) {
    let spec = &set["spec"];
    let path = Path::new("spec");
    if let Some(policy) = spec["podManagementPolicy"]
        .as_str()
        .filter(|p| !matches!(*p, "OrderedReady" | "Parallel"))
    {
        errs.push(FieldError::invalid(
            path.child("podManagementPolicy").as_str(),
            policy,
            "must be 'OrderedReady' or 'Parallel'",
        ));
    }
    let strategy = &spec["updateStrategy"];
    let rolling = &strategy["rollingUpdate"];
    let rolling_path = path.child("updateStrategy").child("rollingUpdate");
    match text(strategy, "type") {
        "OnDelete" if !rolling.is_null() => errs.push(FieldError::invalid(
            rolling_path.as_str(),
            rolling.clone(),
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "RollingUpdate" if !rolling.is_null() => {
            nonnegative(
                rolling["partition"].as_i64(),
                &rolling_path.child("partition"),
                errs,
            );
            let unavailable = &rolling["maxUnavailable"];
            if !unavailable.is_null() {
                let u_path = rolling_path.child("maxUnavailable");
                int_or_percent(unavailable, &u_path, errs);
                if int_or_percent_value(unavailable) == 0 {
                    errs.push(FieldError::invalid(
                        u_path.as_str(),
                        unavailable.clone(),
                        "cannot be 0",
                    ));
                }
                not_more_than_100_percent(unavailable, &u_path, errs);
            }
        }
        "OnDelete" | "RollingUpdate" | "" => {}
        _ => errs.push(FieldError::invalid(
            path.child("updateStrategy").as_str(),
            strategy.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let retention = &spec["persistentVolumeClaimRetentionPolicy"];
    for field in ["whenDeleted", "whenScaled"] {
        if let Some(policy) = retention[field]
            .as_str()
            .filter(|p| !matches!(*p, "Retain" | "Delete"))
        {
            errs.push(FieldError::not_supported(
                path.child("persistentVolumeClaimRetentionPolicy")
                    .child(field)
                    .as_str(),
                policy,
                &["Retain", "Delete"],
            ));
        }
    }
    nonnegative(spec["replicas"].as_i64(), &path.child("replicas"), errs);
    nonnegative(
        spec["minReadySeconds"].as_i64(),
        &path.child("minReadySeconds"),
        errs,
    );
    nonnegative(
        spec["ordinals"]["start"].as_i64(),
        &path.child("ordinals.start"),
        errs,
    );
    validate_selector_and_template(spec, &path, "statefulset", errs);
    let template_path = path.child("template");
    super::meta::validate_labels(
        &spec["template"]["metadata"]["labels"],
        &template_path.child("labels"),
        errs,
    );
    super::meta::validate_annotations(
        &spec["template"]["metadata"]["annotations"],
        &template_path.child("annotations"),
        errs,
    );
    validate_long_running_template(spec, &path, "StatefulSet", errs);
}

/// `ValidateStatefulSetUpdate` beyond the spec checks: only some fields may change.
pub fn validate_stateful_set_update(new: &Value, old: &Value, errs: &mut Errors) {
    let mutable = [
        "replicas",
        "template",
        "updateStrategy",
        "minReadySeconds",
        "ordinals",
        "persistentVolumeClaimRetentionPolicy",
    ];
    let rest = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(o) = spec.as_object_mut() {
            o.retain(|k, _| !mutable.contains(&k.as_str()));
        }
        spec
    };
    if rest(&new["spec"]) != rest(&old["spec"]) {
        errs.push(FieldError::forbidden("spec", STATEFULSET_FORBIDDEN_UPDATE));
    }
}

/// `ValidateDaemonSetSpec`.
pub fn validate_daemon_set(set: &Value, errs: &mut Errors) {
    let spec = &set["spec"];
    let path = Path::new("spec");
    validate_selector_and_template(spec, &path, "daemonset", errs);
    validate_pod_template_spec(&spec["template"], &path.child("template"), errs);
    validate_long_running_template(spec, &path, "DaemonSet", errs);
    nonnegative(
        spec["minReadySeconds"].as_i64(),
        &path.child("minReadySeconds"),
        errs,
    );
    nonnegative(
        spec["templateGeneration"].as_i64(),
        &path.child("templateGeneration"),
        errs,
    );
    let strategy = &spec["updateStrategy"];
    let s_path = path.child("updateStrategy");
    match text(strategy, "type") {
        "OnDelete" | "" => {}
        "RollingUpdate" => {
            let rolling = &strategy["rollingUpdate"];
            if rolling.is_null() {
                errs.push(FieldError::required(
                    s_path.child("rollingUpdate").as_str(),
                    "",
                ));
            } else {
                let r_path = s_path.child("rollingUpdate");
                let (unavailable, surge) = (&rolling["maxUnavailable"], &rolling["maxSurge"]);
                int_or_percent(unavailable, &r_path.child("maxUnavailable"), errs);
                int_or_percent(surge, &r_path.child("maxSurge"), errs);
                not_more_than_100_percent(unavailable, &r_path.child("maxUnavailable"), errs);
                not_more_than_100_percent(surge, &r_path.child("maxSurge"), errs);
                match (
                    int_or_percent_value(unavailable) != 0,
                    int_or_percent_value(surge) != 0,
                ) {
                    (true, true) => errs.push(FieldError::invalid(
                        r_path.child("maxSurge").as_str(),
                        surge.clone(),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => errs.push(FieldError::required(
                        r_path.child("maxUnavailable").as_str(),
                        "cannot be 0 when maxSurge is 0",
                    )),
                    _ => {}
                }
            }
        }
        other => errs.push(FieldError::not_supported(
            s_path.as_str(),
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonnegative(
        spec["revisionHistoryLimit"].as_i64(),
        &path.child("revisionHistoryLimit"),
        errs,
    );
}

/// `spec.selector` may not change (the `apps/v1` strategies' `ValidateUpdate`).
pub fn validate_selector_update(new: &Value, old: &Value, errs: &mut Errors) {
    immutable(
        &new["spec"]["selector"],
        &old["spec"]["selector"],
        &Path::new("spec").child("selector"),
        errs,
    );
}

/// `ValidateControllerRevision` without `metadata`.
pub fn validate_controller_revision(revision: &Value, errs: &mut Errors) {
    if revision["data"].is_null() {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    nonnegative(revision["revision"].as_i64(), &Path::new("revision"), errs);
}

//! Subresources with their own shapes: `scale` (an `autoscaling/v1` Scale over
//! `spec.replicas`) and `pods/binding`.

use crate::registry::{Registry, apply_patch, now_rfc3339};
use serde_json::{Value, json};
use skiff_api::patch::PatchType;
use skiff_api::selector::LabelSelector;
use skiff_api::{ApiError, FieldError, ResourceInfo};

/// The Scale view of a workload.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = LabelSelector::from_json(object["spec"].get("selector"))
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// `GET …/scale`.
pub async fn get_scale(
    registry: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    Ok(scale_of(&registry.get(info, ns, name).await?.0))
}

/// Writes `desired` (a whole Scale) to the workload: its `spec.replicas`, with its
/// `metadata.resourceVersion` as a precondition when set.
async fn write_scale<F>(
    registry: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    mut desired: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let updated = registry
        .guaranteed_update(info, ns, name, dry_run, |current| {
            let scale = desired(&scale_of(current))?;
            if let Some(rv) = scale["metadata"]["resourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
                && Some(rv) != current["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::conflict(info.plural, info.group, name));
            }
            let replicas = match &scale["spec"]["replicas"] {
                Value::Number(n)
                    if n.as_i64()
                        .is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) =>
                {
                    n.as_i64().expect("checked")
                }
                Value::Null => 0,
                other => {
                    return Err(ApiError::invalid(
                        "Scale",
                        "autoscaling",
                        name,
                        &[FieldError::invalid(
                            "spec.replicas",
                            other.clone(),
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
            };
            let mut next = current.clone();
            if next["spec"]["replicas"].as_i64() != Some(replicas) {
                next["spec"]["replicas"] = replicas.into();
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                next["metadata"]["generation"] = (generation + 1).into();
            }
            Ok(next)
        })
        .await?;
    Ok(scale_of(&updated))
}

/// `PUT …/scale`.
pub async fn update_scale(
    registry: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    body: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    write_scale(registry, info, ns, name, dry_run, |_| Ok(body.clone())).await
}

/// `PATCH …/scale`.
pub async fn patch_scale(
    registry: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    patch_type: PatchType,
    patch: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    write_scale(registry, info, ns, name, dry_run, |current| {
        apply_patch("Scale.autoscaling", current, patch_type, patch)
    })
    .await
}

/// `POST pods/<name>/binding`: assigns an unassigned pod to a node, as upstream's
/// `BindingREST` (which also records the PodScheduled condition).
pub async fn bind(
    registry: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "Binding",
                "",
                name,
                &[FieldError::required("target.name", "")],
            )
        })?;
    registry
        .guaranteed_update(info, ns, name, dry_run, |pod| {
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict_with(info.plural, info.group, name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_with(info.plural, info.group, name, &format!("pod {name} is already assigned to node \"{current}\"")));
            }
            let mut next = pod.clone();
            next["spec"]["nodeName"] = node.into();
            let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
            let conditions = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(condition);
            next["status"]["conditions"] = Value::Array(conditions);
            Ok(next)
        })
        .await?;
    Ok(())
}

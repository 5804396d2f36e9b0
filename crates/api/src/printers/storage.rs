//! PersistentVolumes, PersistentVolumeClaims and StorageClasses.

use super::format::{annotation, array_at, get, or, str_at};
use super::{AGE, Column, NAME, age, docs, name};
use jiff::Timestamp;
use serde_json::Value;

pub(super) const PV_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Capacity", docs::PV_CAPACITY),
    Column::string("Access Modes", docs::PV_ACCESS_MODES),
    Column::string("Reclaim Policy", docs::PV_RECLAIM),
    Column::string("Status", docs::PV_PHASE),
    Column::string("Claim", docs::PV_CLAIM),
    Column::string("StorageClass", "StorageClass of the pv"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    Column::string("Reason", docs::PV_REASON),
    AGE,
    Column::wide("VolumeMode", docs::PV_VOLUME_MODE),
];

pub(super) const PVC_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", docs::PVC_PHASE),
    Column::string("Volume", docs::PVC_VOLUME_NAME),
    Column::string("Capacity", docs::PVC_CAPACITY),
    Column::string("Access Modes", docs::PVC_ACCESS_MODES),
    Column::string("StorageClass", "StorageClass of the pvc"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    AGE,
    Column::wide("VolumeMode", docs::PVC_VOLUME_MODE),
];

pub(super) const STORAGECLASS_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Provisioner", docs::SC_PROVISIONER),
    Column::string("ReclaimPolicy", docs::SC_RECLAIM),
    Column::string("VolumeBindingMode", docs::SC_BINDING_MODE),
    Column::string("AllowVolumeExpansion", docs::SC_EXPANSION),
    AGE,
];

/// The annotation that, when present, overrides `spec.storageClassName`.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The annotations marking the default StorageClass.
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

pub(super) fn pv_row(volume: &Value, now: Timestamp) -> Vec<Value> {
    let claim = get(volume, "/spec/claimRef").map_or_else(String::new, |claim| {
        format!("{}/{}", str_at(claim, "/namespace"), str_at(claim, "/name"))
    });
    let class = annotation(volume, BETA_STORAGE_CLASS_ANNOTATION)
        .unwrap_or_else(|| str_at(volume, "/spec/storageClassName"));
    vec![
        name(volume),
        storage_quantity(volume, "/spec/capacity/storage").into(),
        access_modes(array_at(volume, "/spec/accessModes")).into(),
        str_at(volume, "/spec/persistentVolumeReclaimPolicy").into(),
        phase(volume).into(),
        claim.into(),
        class.into(),
        or(str_at(volume, "/spec/volumeAttributesClassName"), "<unset>").into(),
        str_at(volume, "/status/reason").into(),
        age(volume, now),
        or(str_at(volume, "/spec/volumeMode"), "<unset>").into(),
    ]
}

pub(super) fn pvc_row(claim: &Value, now: Timestamp) -> Vec<Value> {
    let volume_name = str_at(claim, "/spec/volumeName");
    // Capacity and access modes are the bound volume's, so only shown once bound.
    let (capacity, modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            storage_quantity(claim, "/status/capacity/storage"),
            access_modes(array_at(claim, "/status/accessModes")),
        )
    };
    let class = annotation(claim, BETA_STORAGE_CLASS_ANNOTATION)
        .unwrap_or_else(|| str_at(claim, "/spec/storageClassName"));
    vec![
        name(claim),
        phase(claim).into(),
        volume_name.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        or(str_at(claim, "/spec/volumeAttributesClassName"), "<unset>").into(),
        age(claim, now),
        or(str_at(claim, "/spec/volumeMode"), "<unset>").into(),
    ]
}

pub(super) fn storageclass_row(class: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|key| annotation(class, key) == Some("true"));
    let class_name = str_at(class, "/metadata/name");
    let shown_name = if is_default {
        format!("{class_name} (default)")
    } else {
        class_name.to_string()
    };
    vec![
        shown_name.into(),
        str_at(class, "/provisioner").into(),
        or(str_at(class, "/reclaimPolicy"), "Delete").into(),
        or(str_at(class, "/volumeBindingMode"), "Immediate").into(),
        // A boolean cell under a string column, as upstream emits it.
        get(class, "/allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .into(),
        age(class, now),
    ]
}

/// The phase, or `Terminating` once deletion started.
fn phase(object: &Value) -> String {
    if get(object, "/metadata/deletionTimestamp").is_some() {
        "Terminating".to_string()
    } else {
        str_at(object, "/status/phase").to_string()
    }
}

/// A storage quantity as stored; a missing one prints as Go's zero `Quantity`, `0`.
fn storage_quantity(object: &Value, pointer: &str) -> String {
    or(str_at(object, pointer), "0")
}

/// Upstream's `GetAccessModesAsString`: abbreviations in a fixed order, duplicates dropped.
fn access_modes(modes: &[Value]) -> String {
    const ABBREVIATIONS: [(&str, &str); 4] = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    ABBREVIATIONS
        .iter()
        .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
        .map(|(_, abbreviation)| *abbreviation)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    #[test]
    fn bound_volume_and_claim() {
        let pv = json!({
            "metadata": {"name": "pvc-3f1c", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
                     "storageClassName": "standard", "volumeMode": "Filesystem",
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "demo", "name": "data"}},
            "status": {"phase": "Bound"}
        });
        assert_eq!(
            pv_row(&pv, now()),
            [
                json!("pvc-3f1c"),
                json!("10Gi"),
                json!("RWO"),
                json!("Delete"),
                json!("Bound"),
                json!("demo/data"),
                json!("standard"),
                json!("<unset>"),
                json!(""),
                json!("120m"),
                json!("Filesystem"),
            ]
        );
        let pvc = json!({
            "metadata": {"name": "data", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}},
                     "storageClassName": "standard", "volumeName": "pvc-3f1c", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}
        });
        assert_eq!(
            pvc_row(&pvc, now()),
            [
                json!("data"),
                json!("Bound"),
                json!("pvc-3f1c"),
                json!("10Gi"),
                json!("RWO"),
                json!("standard"),
                json!("<unset>"),
                json!("120m"),
                json!("Filesystem"),
            ]
        );
    }

    #[test]
    fn pending_and_released() {
        let pvc = json!({
            "metadata": {"name": "scratch", "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "slow"},
            "status": {"phase": "Pending"}
        });
        assert_eq!(
            pvc_row(&pvc, now())[1..7],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("fast"),
                json!("<unset>")
            ]
        );
        let pv = json!({
            "metadata": {"name": "old", "deletionTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"accessModes": ["ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce", "ReadWriteMany"],
                     "persistentVolumeReclaimPolicy": "Retain", "volumeAttributesClassName": "gold"},
            "status": {"phase": "Released", "reason": "Retained"}
        });
        let cells = pv_row(&pv, now());
        assert_eq!(
            cells[1..9],
            [
                json!("0"),
                json!("RWO,ROX,RWX"),
                json!("Retain"),
                json!("Terminating"),
                json!(""),
                json!(""),
                json!("gold"),
                json!("Retained")
            ]
        );
        assert_eq!(cells[10], "<unset>");
    }

    #[test]
    fn storage_classes() {
        let default_class = json!({
            "metadata": {"name": "standard", "creationTimestamp": "2024-04-30T12:00:00Z",
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"
        });
        assert_eq!(
            storageclass_row(&default_class, now()),
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("24h"),
            ]
        );
        let bare = json!({"metadata": {"name": "fast"}, "provisioner": "csi.example.com", "allowVolumeExpansion": true});
        assert_eq!(
            storageclass_row(&bare, now())[..5],
            [
                json!("fast"),
                json!("csi.example.com"),
                json!("Delete"),
                json!("Immediate"),
                json!(true)
            ]
        );
    }
}

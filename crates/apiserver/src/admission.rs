//! Admission: mutations the API server applies to new objects after defaulting, as upstream's
//! built-in admission plugins do.

use crate::cache::Cache;
use serde_json::{Value, json};
use skiff_api::ResourceInfo;

/// How long pods tolerate a not-ready or unreachable node by default (upstream's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The annotation marking a StorageClass as the cluster's default.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`IS_DEFAULT_CLASS_ANNOTATION`], still honoured upstream.
const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta annotation that names a claim's class in place of `spec.storageClassName`.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Runs every admission plugin for a create; `cache` stands for upstream's informers (the
/// StorageClasses the DefaultStorageClass plugin reads).
pub fn admit_create(info: &ResourceInfo, object: &mut Value, cache: &Cache) {
    if !info.group.is_empty() {
        return;
    }
    match info.kind {
        "Pod" => default_toleration_seconds(object),
        "PersistentVolumeClaim" => {
            let classes = skiff_api::resources::find_kind("storage.k8s.io", "StorageClass")
                .map(|info| cache.resource(info).list(None))
                .unwrap_or_default();
            let classes: Vec<Value> = classes.iter().map(|c| c.value()).collect();
            default_storage_class(object, &classes);
            add_finalizer(object, PVC_PROTECTION_FINALIZER);
        }
        "PersistentVolume" => add_finalizer(object, PV_PROTECTION_FINALIZER),
        _ => {}
    }
}

/// The finalizer that keeps a claim while pods use it.
const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is bound.
const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Upstream's `StorageObjectInUseProtection`: new claims and volumes carry the finalizer by
/// which the protection controllers hold their deletion while they are in use.
fn add_finalizer(object: &mut Value, finalizer: &str) {
    let finalizers = &mut object["metadata"]["finalizers"];
    if !finalizers.is_array() {
        *finalizers = json!([]);
    }
    let list = finalizers.as_array_mut().expect("an array");
    if !list.iter().any(|f| f == finalizer) {
        list.push(finalizer.into());
    }
}

/// Upstream's `DefaultStorageClass`: a claim that names no class (neither
/// `spec.storageClassName`, not even `""`, nor the beta annotation) gets the default class.
fn default_storage_class(claim: &mut Value, classes: &[Value]) {
    let names_class = claim["spec"].get("storageClassName").is_some()
        || claim["metadata"]["annotations"]
            .get(BETA_STORAGE_CLASS_ANNOTATION)
            .is_some();
    if names_class {
        return;
    }
    if let Some(name) = default_class(classes) {
        claim["spec"]["storageClassName"] = name.into();
    }
}

/// Upstream's `GetDefaultClass`: of the classes annotated as default, the newest, ties going
/// to the first name.
pub fn default_class(classes: &[Value]) -> Option<&str> {
    let is_default = |class: &&Value| {
        [
            IS_DEFAULT_CLASS_ANNOTATION,
            BETA_IS_DEFAULT_CLASS_ANNOTATION,
        ]
        .iter()
        .any(|key| class["metadata"]["annotations"][key] == "true")
    };
    let created = |class: &Value| {
        class["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    fn name(class: &Value) -> &str {
        class["metadata"]["name"].as_str().unwrap_or_default()
    }
    classes
        .iter()
        .filter(is_default)
        .min_by(|a, b| {
            created(b)
                .cmp(&created(a))
                .then_with(|| name(a).cmp(name(b)))
        })
        .map(name)
}

/// Upstream's `DefaultTolerationSeconds`: pods tolerate `not-ready` and `unreachable` NoExecute
/// taints for 300 s unless they already tolerate them.
fn default_toleration_seconds(pod: &mut Value) {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            let key_ok = t["key"].as_str().is_none_or(|k| k.is_empty() || k == key);
            effect_ok
                && key_ok
                && (t["key"].as_str().is_some_and(|k| !k.is_empty()) || t["operator"] == "Exists")
        })
    };
    let mut added = tolerations.clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if added.len() != tolerations.len() {
        pod["spec"]["tolerations"] = Value::Array(added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_volumes_get_their_protection_finalizer_once() {
        let mut claim = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["example.com/keep", "kubernetes.io/pvc-protection"])
        );
        let mut volume = json!({"metadata": {"name": "pv"}});
        add_finalizer(&mut volume, PV_PROTECTION_FINALIZER);
        assert_eq!(
            volume["metadata"]["finalizers"],
            json!(["kubernetes.io/pv-protection"])
        );
    }

    #[test]
    fn adds_both_tolerations_once() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        let before = pod.clone();
        default_toleration_seconds(&mut pod);
        assert_eq!(pod, before);
    }

    #[test]
    fn claims_without_a_class_get_the_newest_default() {
        let class = |name: &str, created: &str, default: Option<&str>| {
            let mut class = json!({"metadata": {"name": name, "creationTimestamp": created}, "provisioner": "p"});
            if let Some(value) = default {
                class["metadata"]["annotations"] = json!({IS_DEFAULT_CLASS_ANNOTATION: value});
            }
            class
        };
        let classes = [
            class("old", "2024-01-01T00:00:00Z", Some("true")),
            class("plain", "2025-01-01T00:00:00Z", None),
            class("off", "2025-01-01T00:00:00Z", Some("false")),
            class("zeta", "2024-06-01T00:00:00Z", Some("true")),
            class("beta", "2024-06-01T00:00:00Z", Some("true")),
        ];
        assert_eq!(default_class(&classes), Some("beta"));
        assert_eq!(default_class(&classes[..2]), Some("old"));
        assert_eq!(default_class(&classes[1..3]), None);

        let mut claim =
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        default_storage_class(&mut claim, &classes);
        assert_eq!(claim["spec"]["storageClassName"], "beta");
        // An explicit class, even the empty one (no class at all), is kept.
        for named in [
            json!({"metadata": {}, "spec": {"storageClassName": ""}}),
            json!({"metadata": {}, "spec": {"storageClassName": "fast"}}),
            json!({"metadata": {"annotations": {BETA_STORAGE_CLASS_ANNOTATION: "slow"}}, "spec": {}}),
        ] {
            let mut claim = named.clone();
            default_storage_class(&mut claim, &classes);
            assert_eq!(claim, named);
        }
        // No default class: nothing changes.
        let mut claim = json!({"metadata": {}, "spec": {}});
        default_storage_class(&mut claim, &classes[1..3]);
        assert_eq!(claim, json!({"metadata": {}, "spec": {}}));
    }

    #[test]
    fn existing_tolerations_are_respected() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
        ]}});
        default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        // A pod tolerating everything gets nothing added.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }
}

//! Admission: mutations the API server applies to new objects after defaulting, as upstream's
//! built-in admission plugins do.

use serde_json::{Value, json};
use skiff_api::ResourceInfo;

/// How long pods tolerate a not-ready or unreachable node by default (upstream's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Runs every admission plugin for a create.
pub fn admit_create(info: &ResourceInfo, object: &mut Value) {
    if info.group.is_empty() && info.kind == "Pod" {
        default_toleration_seconds(object);
    }
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

//! Scheduling helpers on the API types, as upstream's `component-helpers/scheduling/corev1`:
//! node selector terms (ORed terms, ANDed requirements, `matchFields` on `metadata.name`) and
//! taints against tolerations. The scheduler, the DaemonSet controller and taint eviction all
//! decide with these.

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use std::collections::BTreeMap;

/// Whether any of the selector's terms matches a node with these labels and name.
pub fn node_selector_matches(
    selector: &NodeSelector,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|term| node_selector_term_matches(term, labels, node_name))
}

/// Whether every requirement of the term matches; an empty term matches nothing.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| label_requirement_matches(r, labels))
        && fields
            .iter()
            .all(|r| field_requirement_matches(r, node_name))
}

fn label_requirement_matches(
    r: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            // Both sides must be integers and the requirement must have exactly one value.
            let [wanted] = values else { return false };
            let (Ok(wanted), Some(Ok(actual))) =
                (wanted.parse::<i64>(), value.map(|v| v.parse::<i64>()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                actual > wanted
            } else {
                actual < wanted
            }
        }
        _ => false,
    }
}

/// `matchFields`: `In`/`NotIn` with exactly one value, against the node's fields (only
/// `metadata.name` exists; other keys read as empty).
fn field_requirement_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    let [wanted] = r.values.as_deref().unwrap_or_default() else {
        return false;
    };
    let actual = if r.key == "metadata.name" {
        node_name
    } else {
        ""
    };
    match r.operator.as_str() {
        "In" => actual == wanted,
        "NotIn" => actual != wanted,
        _ => false,
    }
}

/// Whether `toleration` tolerates `taint` (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let empty_or = |field: &Option<String>, value: &str| {
        field.as_deref().is_none_or(|f| f.is_empty() || f == value)
    };
    if !empty_or(&toleration.effect, &taint.effect) || !empty_or(&toleration.key, &taint.key) {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first of `taints` that passes `considered` and that no toleration tolerates (upstream's
/// `FindMatchingUntoleratedTaint`).
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    considered: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| considered(t))
        .find(|t| !tolerated(tolerations, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> BTreeMap<String, String> {
        [("zone", "a"), ("gpu", "2"), ("disk", "ssd")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    #[test]
    fn terms() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "missing", "operator": "NotIn", "values": ["b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "missing", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["2"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "gpu", "operator": "Lt", "values": ["3"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "disk", "operator": "Lt", "values": ["3"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1", "0"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, {"key": "disk", "operator": "In", "values": ["hdd"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-2"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1", "node-2"]}]}),
                false,
            ),
            (json!({}), false),
        ];
        for (term, want) in cases {
            let parsed: NodeSelectorTerm = serde_json::from_value(term.clone()).unwrap();
            assert_eq!(
                node_selector_term_matches(&parsed, &labels(), "node-1"),
                want,
                "{term}"
            );
        }
    }

    #[test]
    fn tolerations() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let cases = [
            (
                tol(json!({"key": "k", "value": "v", "effect": "NoSchedule"})),
                taint("k", Some("v"), "NoSchedule"),
                true,
            ),
            (
                tol(json!({"key": "k", "operator": "Equal", "value": "v"})),
                taint("k", Some("v"), "NoExecute"),
                true,
            ),
            (
                tol(json!({"key": "k", "value": "w"})),
                taint("k", Some("v"), "NoSchedule"),
                false,
            ),
            (
                tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
                taint("k", Some("v"), "NoSchedule"),
                false,
            ),
            (
                tol(json!({"key": "k", "operator": "Exists"})),
                taint("k", None, "NoSchedule"),
                true,
            ),
            (
                tol(json!({"operator": "Exists"})),
                taint("anything", Some("v"), "NoExecute"),
                true,
            ),
            (
                tol(json!({"key": "k"})),
                taint("k", None, "NoSchedule"),
                true,
            ),
        ];
        for (t, taint, want) in &cases {
            assert_eq!(tolerates(t, taint), *want, "{t:?} {taint:?}");
        }
        let taints = [
            taint("gpu", None, "NoSchedule"),
            taint("dedicated", None, "NoExecute"),
        ];
        let tolerations = [tol(json!({"key": "gpu", "operator": "Exists"}))];
        let untolerated = find_untolerated_taint(&taints, &tolerations, |_| true);
        assert_eq!(untolerated.map(|t| t.key.as_str()), Some("dedicated"));
        let no_schedule = |t: &Taint| t.effect == "NoSchedule";
        assert!(find_untolerated_taint(&taints, &tolerations, no_schedule).is_none());
    }
}

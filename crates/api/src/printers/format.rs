//! Reading stored objects and the small formatting helpers upstream's printers share
//! (`labels.FormatLabels`, `metav1.FormatLabelSelector`, `layoutContainerCells`, ...).

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The value at a JSON pointer, treating an explicit `null` as absent (clients send `null`
/// for unset fields).
pub(super) fn get<'a>(object: &'a Value, pointer: &str) -> Option<&'a Value> {
    object.pointer(pointer).filter(|v| !v.is_null())
}

/// The string at `pointer`, or `""` as Go's zero value.
pub(super) fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    get(object, pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `pointer`, or 0 as Go's zero value.
pub(super) fn int_at(object: &Value, pointer: &str) -> i64 {
    get(object, pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The boolean at `pointer`, or `false` as Go's zero value.
pub(super) fn bool_at(object: &Value, pointer: &str) -> bool {
    get(object, pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The array at `pointer`, or an empty slice.
pub(super) fn array_at<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    get(object, pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The object (map) at `pointer`, if any.
pub(super) fn map_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    get(object, pointer).and_then(Value::as_object)
}

/// The number of entries of the map at `pointer`.
pub(super) fn map_len(object: &Value, pointer: &str) -> i64 {
    map_at(object, pointer).map_or(0, |m| m.len() as i64)
}

/// The timestamp at `pointer` (RFC 3339, with or without fractional seconds). Go's zero time
/// (`0001-01-01T00:00:00Z`) counts as absent, as `metav1.Time.IsZero` does.
pub(super) fn timestamp_at(object: &Value, pointer: &str) -> Option<Timestamp> {
    let t: Timestamp = str_at(object, pointer).parse().ok()?;
    (t.as_second() != GO_ZERO_TIME_UNIX).then_some(t)
}

/// Seconds from the Unix epoch to Go's zero `time.Time`, January 1 of year 1 UTC.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// An annotation of the object, if set.
pub(super) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    map_at(object, "/metadata/annotations")?.get(key)?.as_str()
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, or `<none>`.
pub(super) fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// `metav1.LabelSelectorAsSelector(selector).String()`: requirements sorted by key; `""` for
/// a missing or empty selector; `None` when the selector is malformed.
pub(super) fn label_selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in map_at(selector, "/matchLabels").into_iter().flatten() {
        requirements.push((key.clone(), format!("{key}={}", value.as_str()?)));
    }
    for expression in array_at(selector, "/matchExpressions") {
        let key = str_at(expression, "/key");
        let mut values: Vec<&str> = array_at(expression, "/values")
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<_>>()?;
        values.sort_unstable();
        let requirement = match (str_at(expression, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), requirement));
    }
    // Upstream sorts by key only; the sort is stable here so equal keys keep their order.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        requirements
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: like [`label_selector_string`] but `<none>` when empty and
/// `<error>` when malformed.
pub(super) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// `layoutContainerCells`: container names and images of a pod spec, comma-separated.
pub(super) fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |spec| array_at(spec, "/containers"));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// `s`, or `placeholder` when `s` is empty (upstream's `<none>`/`<unknown>`/`<unset>` cells).
pub(super) fn or(s: &str, placeholder: &str) -> String {
    if s.is_empty() {
        placeholder.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_sorted_or_none() {
        let labels = json!({"tier": "web", "app": "nginx"});
        assert_eq!(format_labels(labels.as_object()), "app=nginx,tier=web");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(format_labels(json!({}).as_object()), "<none>");
    }

    #[test]
    fn label_selectors() {
        let selector = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "api"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}
            ]
        });
        assert_eq!(
            format_label_selector(Some(&selector)),
            "app=web,!canary,env notin (dev),tier in (api,front),zone"
        );
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
        assert_eq!(label_selector_string(None), Some(String::new()));
    }

    #[test]
    fn go_zero_time_is_absent() {
        let o = json!({"a": "0001-01-01T00:00:00Z", "b": "2024-01-02T03:04:05.123456Z", "c": null});
        assert_eq!(timestamp_at(&o, "/a"), None);
        assert_eq!(
            timestamp_at(&o, "/b").unwrap().to_string(),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(timestamp_at(&o, "/c"), None);
    }
}

//! Events, core/v1 and events.k8s.io/v1. Upstream converts the latter to the core type
//! before printing, so both read the same fields here under their own JSON names.

use super::format::{get, int_at, str_at, timestamp_at};
use super::{Column, NAME, docs, duration, name};
use jiff::Timestamp;
use serde_json::Value;

pub(super) const COLUMNS: &[Column] = &[
    Column::string("Last Seen", docs::EVENT_LAST),
    Column::string("Type", docs::EVENT_TYPE),
    Column::string("Reason", docs::EVENT_REASON),
    Column::string("Object", docs::EVENT_INVOLVED),
    Column::wide("Subobject", docs::EVENT_FIELD_PATH),
    Column::wide("Source", docs::EVENT_SOURCE),
    Column::string("Message", docs::EVENT_MESSAGE),
    Column::wide("First Seen", docs::EVENT_FIRST),
    Column::wide("Count", docs::EVENT_COUNT),
    Column {
        priority: 1,
        ..NAME
    },
];

/// Where each printed field lives in one Event API version (JSON pointers).
struct EventFields {
    involved_object: &'static str,
    message: &'static str,
    source: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    reporting_controller: &'static str,
}

const CORE_V1: EventFields = EventFields {
    involved_object: "/involvedObject",
    message: "/message",
    source: "/source",
    first_timestamp: "/firstTimestamp",
    last_timestamp: "/lastTimestamp",
    count: "/count",
    reporting_controller: "/reportingComponent",
};

const EVENTS_V1: EventFields = EventFields {
    involved_object: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first_timestamp: "/deprecatedFirstTimestamp",
    last_timestamp: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    reporting_controller: "/reportingController",
};

pub(super) fn core_row(event: &Value, now: Timestamp) -> Vec<Value> {
    event_row(event, &CORE_V1, now)
}

pub(super) fn events_v1_row(event: &Value, now: Timestamp) -> Vec<Value> {
    event_row(event, &EVENTS_V1, now)
}

fn event_row(event: &Value, fields: &EventFields, now: Timestamp) -> Vec<Value> {
    // New-style events carry only eventTime (and a series when repeated).
    let first_seen = match timestamp_at(event, fields.first_timestamp) {
        Some(first) => duration::since(Some(first), now),
        None => duration::since(timestamp_at(event, "/eventTime"), now),
    };
    let mut last_seen = match timestamp_at(event, fields.last_timestamp) {
        Some(last) => duration::since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, fields.count);
    if let Some(series) = get(event, "/series") {
        last_seen = duration::since(timestamp_at(series, "/lastObservedTime"), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }

    let involved = get(event, fields.involved_object).unwrap_or(&Value::Null);
    let kind = str_at(involved, "/kind").to_lowercase();
    let target = match str_at(involved, "/name") {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };

    let component = first_non_empty_at(
        event,
        &format!("{}/component", fields.source),
        fields.reporting_controller,
    );
    let instance = first_non_empty_at(
        event,
        &format!("{}/host", fields.source),
        "/reportingInstance",
    );
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };

    vec![
        last_seen.into(),
        str_at(event, "/type").into(),
        str_at(event, "/reason").into(),
        target.into(),
        str_at(involved, "/fieldPath").into(),
        source.into(),
        str_at(event, fields.message).trim().into(),
        first_seen.into(),
        count.into(),
        name(event),
    ]
}

/// The string at `first`, or at `fallback` when that is empty (upstream's `firstNonEmpty`).
fn first_non_empty_at(event: &Value, first: &str, fallback: &str) -> String {
    match str_at(event, first) {
        "" => str_at(event, fallback).to_string(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    #[test]
    fn core_event_from_a_controller() {
        let event = json!({
            "metadata": {"name": "nginx.17c9a0b2d3e4f5a6", "namespace": "demo", "creationTimestamp": "2024-05-01T11:50:00Z"},
            "involvedObject": {"kind": "Deployment", "namespace": "demo", "name": "nginx", "apiVersion": "apps/v1"},
            "reason": "ScalingReplicaSet",
            "message": "Scaled up replica set nginx-7c5ddbdf54 to 3\n",
            "source": {"component": "deployment-controller"},
            "firstTimestamp": "2024-05-01T11:50:00Z",
            "lastTimestamp": "2024-05-01T11:58:00Z",
            "count": 2,
            "type": "Normal",
            "eventTime": null,
            "reportingComponent": "deployment-controller",
            "reportingInstance": ""
        });
        assert_eq!(
            core_row(&event, now()),
            [
                json!("2m"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/nginx"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up replica set nginx-7c5ddbdf54 to 3"),
                json!("10m"),
                json!(2),
                json!("nginx.17c9a0b2d3e4f5a6"),
            ]
        );
    }

    #[test]
    fn core_event_from_the_kubelet() {
        let event = json!({
            "metadata": {"name": "web-0.17c9"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T09:00:00Z", "lastTimestamp": null, "count": 14
        });
        let cells = core_row(&event, now());
        assert_eq!(
            cells[..8],
            [
                json!("3h"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("3h"),
            ]
        );
        assert_eq!(cells[8], 14);
    }

    #[test]
    fn events_without_timestamps_or_with_series() {
        let unknown = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}, "reportingComponent": "skiff", "reportingInstance": "cp-1"});
        let cells = core_row(&unknown, now());
        assert_eq!(
            (&cells[0], &cells[3], &cells[5], &cells[7], &cells[8]),
            (
                &json!("<unknown>"),
                &json!("node"),
                &json!("skiff, cp-1"),
                &json!("<unknown>"),
                &json!(1)
            )
        );

        let series = json!({
            "metadata": {"name": "e2"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2024-05-01T11:00:00.000000Z",
            "series": {"count": 5, "lastObservedTime": "2024-05-01T11:59:30.123456Z"}
        });
        let cells = core_row(&series, now());
        assert_eq!(
            (&cells[0], &cells[7], &cells[8]),
            (&json!("29s"), &json!("60m"), &json!(5))
        );
    }

    #[test]
    fn events_k8s_io_v1() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "fluentd.17c9", "namespace": "kube-system"},
            "eventTime": "2024-05-01T11:59:00.000000Z",
            "reportingController": "daemonset-controller", "reportingInstance": "skiff-controller-manager",
            "action": "Create", "reason": "SuccessfulCreate", "type": "Normal",
            "regarding": {"kind": "DaemonSet", "namespace": "kube-system", "name": "fluentd", "apiVersion": "apps/v1"},
            "note": "Created pod: fluentd-x7k2p"
        });
        assert_eq!(
            events_v1_row(&event, now()),
            [
                json!("60s"),
                json!("Normal"),
                json!("SuccessfulCreate"),
                json!("daemonset/fluentd"),
                json!(""),
                json!("daemonset-controller, skiff-controller-manager"),
                json!("Created pod: fluentd-x7k2p"),
                json!("60s"),
                json!(1),
                json!("fluentd.17c9"),
            ]
        );
        let deprecated = json!({
            "metadata": {"name": "old"}, "regarding": {"kind": "Pod", "name": "p"},
            "deprecatedSource": {"component": "kubelet", "host": "n1"},
            "deprecatedFirstTimestamp": "2024-05-01T11:00:00Z", "deprecatedLastTimestamp": "2024-05-01T11:30:00Z", "deprecatedCount": 3
        });
        let cells = events_v1_row(&deprecated, now());
        assert_eq!(
            (&cells[0], &cells[5], &cells[7], &cells[8]),
            (
                &json!("30m"),
                &json!("kubelet, n1"),
                &json!("60m"),
                &json!(3)
            )
        );
    }
}

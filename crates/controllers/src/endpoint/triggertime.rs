//! The `endpoints.kubernetes.io/last-change-trigger-time` annotation (upstream's
//! `TriggerTimeTracker`): when the change that an endpoints write reflects happened, so that
//! latency from a pod becoming ready to its address being published can be measured.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use std::collections::HashMap;
use std::sync::Mutex;

/// The annotation's key.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What the last sync of each Service saw.
#[derive(Default)]
pub struct TriggerTimeTracker {
    /// By `namespace/name`.
    services: Mutex<HashMap<String, ServiceState>>,
}

#[derive(Default)]
struct ServiceState {
    /// Each selected pod's trigger time (its Ready condition's last transition), by name.
    pod_times: HashMap<String, Timestamp>,
    /// The Service's own trigger time: its creation.
    service_time: Option<Timestamp>,
}

impl TriggerTimeTracker {
    /// The trigger time to publish for a sync of `service` (key `key`) over `pods`, remembering
    /// what it saw (upstream's `ComputeEndpointLastChangeTriggerTime`): the Service's creation
    /// on its first sync, else the earliest pod or Service time that moved since the last sync;
    /// `None` when nothing did (the annotation is then cleared).
    pub fn compute<'a>(
        &self,
        key: &str,
        service: &Service,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Option<Timestamp> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let known = services.contains_key(key);
        let state = services.entry(key.to_owned()).or_default();
        let mut earliest_changed: Option<Timestamp> = None;
        let mut pod_times = HashMap::new();
        for pod in pods {
            let Some(time) = crate::podutil::ready_condition(pod)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
            else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pod_times.get(&name).is_none_or(|&last| time > last) {
                earliest_changed = Some(earliest_changed.map_or(time, |e| e.min(time)));
            }
            pod_times.insert(name, time);
        }
        let service_time = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(time) = service_time
            && state.service_time.is_none_or(|last| time > last)
        {
            earliest_changed = Some(earliest_changed.map_or(time, |e| e.min(time)));
        }
        *state = ServiceState {
            pod_times,
            service_time,
        };
        if known {
            earliest_changed
        } else {
            service_time
        }
    }

    /// Forgets a deleted Service.
    pub fn delete(&self, key: &str) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The annotation's value for `time`: RFC 3339 in UTC, fractional seconds only as needed (Go's
/// `time.RFC3339Nano`).
pub fn format(time: Timestamp) -> String {
    time.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z"}}))
        .unwrap()
    }

    fn pod(name: &str, ready_since: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": ready_since}]}}),
        )
        .unwrap()
    }

    #[test]
    fn first_sync_uses_the_service_creation_then_the_earliest_change() {
        let tracker = TriggerTimeTracker::default();
        let svc = service();
        let a = pod("a", "2026-01-01T00:00:05Z");
        let first = tracker.compute("default/web", &svc, [&a]);
        assert_eq!(format(first.unwrap()), "2026-01-01T00:00:00Z");
        assert_eq!(
            tracker.compute("default/web", &svc, [&a]),
            None,
            "nothing moved"
        );

        let b = pod("b", "2026-01-01T00:00:09Z");
        let a_again = pod("a", "2026-01-01T00:00:07.5Z");
        let changed = tracker.compute("default/web", &svc, [&a_again, &b]);
        assert_eq!(format(changed.unwrap()), "2026-01-01T00:00:07.5Z");

        tracker.delete("default/web");
        let recreated = tracker.compute("default/web", &svc, [&a_again, &b]);
        assert_eq!(format(recreated.unwrap()), "2026-01-01T00:00:00Z");
    }
}

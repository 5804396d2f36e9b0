//! The scheduler's Events, written as core/v1 Events with the fields upstream's
//! `events.k8s.io` recorder produces (eventTime, action, reportingComponent and
//! reportingInstance), plus `source.component` so older readers show "default-scheduler".

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// Writes Events about pods on behalf of one scheduler.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
}

/// Who reports: the component and its instance.
#[derive(Clone, Debug)]
struct Reporter {
    component: String,
    instance: String,
}

impl Recorder {
    /// A recorder reporting as `component` (e.g. `default-scheduler`), instance
    /// `<component>-<host>`.
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        Recorder {
            client,
            reporter: Reporter {
                component: component.to_string(),
                instance: format!("{component}-{host}"),
            },
        }
    }

    /// Records an Event about `pod`; failures are logged, never fatal.
    pub async fn record(&self, pod: &Pod, type_: &str, reason: &str, action: &str, message: &str) {
        let event = self
            .reporter
            .event(pod, type_, reason, action, message, Timestamp::now());
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        let event: k8s_openapi::api::core::v1::Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => return tracing::warn!(%e, "building event"),
        };
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%e, reason, "recording event failed");
        }
    }
}

impl Reporter {
    /// The Event object: named `<pod>.<nanoseconds in hex>` like upstream's recorder.
    fn event(
        &self,
        pod: &Pod,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
        now: Timestamp,
    ) -> Value {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        json!({
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
            "involvedObject": {
                "kind": "Pod",
                "namespace": namespace,
                "name": name,
                "uid": pod.metadata.uid,
                "apiVersion": "v1",
                "resourceVersion": pod.metadata.resource_version,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "action": action,
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_upstream_fields() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7"}})).unwrap();
        let reporter = Reporter {
            component: "default-scheduler".into(),
            instance: "default-scheduler-host1".into(),
        };
        let now: Timestamp = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        let event = reporter.event(
            &pod,
            "Normal",
            "Scheduled",
            "Binding",
            "Successfully assigned ns/web to n1",
            now,
        );
        assert_eq!(
            event,
            json!({
                "metadata": {"name": format!("web.{:x}", now.as_nanosecond()), "namespace": "ns"},
                "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "web", "uid": "u1", "apiVersion": "v1", "resourceVersion": "7"},
                "reason": "Scheduled",
                "message": "Successfully assigned ns/web to n1",
                "type": "Normal",
                "source": {"component": "default-scheduler"},
                "eventTime": "2026-01-02T03:04:05.123456Z",
                "action": "Binding",
                "reportingComponent": "default-scheduler",
                "reportingInstance": "default-scheduler-host1",
            })
        );
    }
}

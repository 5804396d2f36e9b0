//! What the agent remembers of a pod, and the status it reports for it: phase, conditions and
//! container statuses as upstream's kubelet computes them (`getPhase`,
//! `generateAPIPodStatus` and `pkg/kubelet/status/generate.go`).

use crate::runtime::RuntimePodStatus;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::net::Ipv4Addr;

/// A container of the pod spec, as far as status reporting needs it.
#[derive(Clone, Debug)]
pub(crate) struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// An init container with `restartPolicy: Always` (a sidecar).
    pub restartable: bool,
}

/// The agent's compact record of a pod bound to one of its nodes (150,000 of them must fit).
#[derive(Clone, Debug)]
pub(crate) struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub restart_policy: String,
    pub init_containers: Vec<ContainerSpec>,
    pub containers: Vec<ContainerSpec>,
    pub host_network: bool,
    /// `metadata.deletionGracePeriodSeconds` once the pod is being deleted.
    pub deletion_grace_seconds: Option<i64>,
    /// The status the API has.
    pub status: PodStatus,
    /// The IP the agent gave the pod, once its node has a pod CIDR.
    pub ip: Option<Ipv4Addr>,
    /// Whether the runtime was asked to start it.
    pub started: bool,
    /// Whether the runtime was asked to stop it.
    pub stopping: bool,
    /// A hash of the last status written, so a status the API normalizes is not written forever.
    pub written: Option<u64>,
}

impl PodRecord {
    /// The record of a pod from the API, keeping what the agent already did for an older
    /// version of the same pod.
    pub fn from_pod(pod: &Pod, previous: Option<&PodRecord>) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let container = |c: &k8s_openapi::api::core::v1::Container| ContainerSpec {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            restartable: c.restart_policy.as_deref() == Some("Always"),
        };
        let status = pod.status.clone().unwrap_or_default();
        let ip = previous
            .and_then(|p| p.ip)
            .or_else(|| status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()));
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: spec.node_name.clone().unwrap_or_default(),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(container)
                .collect(),
            containers: spec.containers.iter().map(container).collect(),
            host_network: spec.host_network == Some(true),
            deletion_grace_seconds: pod
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|_| pod.metadata.deletion_grace_period_seconds.unwrap_or(0)),
            status,
            ip,
            started: previous.is_some_and(|p| p.started),
            stopping: previous.is_some_and(|p| p.stopping),
            written: previous.and_then(|p| p.written),
        }
    }

    /// Whether the pod reached Succeeded or Failed: its containers never run again.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// The pod conditions the kubelet owns (upstream `PodConditionByKubelet`).
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// A container that has not started yet.
fn creating(spec: &ContainerSpec) -> ContainerStatus {
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        }),
        ready: false,
        started: Some(false),
        restart_count: 0,
        ..Default::default()
    }
}

fn terminated_with(status: &ContainerStatus) -> Option<i32> {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn waiting_after_exit(status: &ContainerStatus) -> Option<i32> {
    let waiting = status.state.as_ref().is_some_and(|s| s.waiting.is_some());
    waiting
        .then(|| {
            status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
        })
        .flatten()
}

fn is_running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// Upstream's `getPhase`. `terminal` says the pod is being deleted and its containers are done,
/// so a pod that would restart is Succeeded or Failed instead.
fn phase(
    record: &PodRecord,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for (spec, status) in record.init_containers.iter().zip(init) {
        if spec.restartable {
            pending_init += usize::from(!is_running(status));
        } else if let Some(code) = terminated_with(status).or_else(|| waiting_after_exit(status)) {
            failed_init += usize::from(code != 0);
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        if is_running(status) {
            running += 1;
        } else if let Some(code) = terminated_with(status) {
            stopped += 1;
            succeeded += usize::from(code == 0);
        } else if waiting_after_exit(status).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let policy = record.restart_policy.as_str();
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    if policy == "Always" && !terminal {
        return "Running"; // Every container is restarting.
    }
    if stopped == succeeded {
        return "Succeeded";
    }
    if policy == "Never" || terminal {
        "Failed"
    } else {
        "Running"
    }
}

/// Upstream's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// The status to report for `record`, given what the runtime says (`None`: not started) and
/// the node's IP. `terminal`: the pod is being deleted and all its containers stopped.
pub(crate) fn pod_status(
    record: &PodRecord,
    runtime: Option<&RuntimePodStatus>,
    host_ip: Option<Ipv4Addr>,
    terminal: bool,
    now: &Time,
) -> PodStatus {
    let pod_ip = if record.host_network || runtime.is_some_and(|r| r.host_network) {
        host_ip
    } else {
        record.ip
    };
    let runtime = runtime.filter(|_| pod_ip.is_some());
    let init: Vec<ContainerStatus> = match runtime {
        Some(r) => r.init_container_statuses.clone(),
        None => record.init_containers.iter().map(creating).collect(),
    };
    let containers: Vec<ContainerStatus> = match runtime {
        Some(r) => r.container_statuses.clone(),
        None => record.containers.iter().map(creating).collect(),
    };
    let phase = phase(record, &init, &containers, terminal);
    let completed = matches!(phase, "Succeeded" | "Failed");

    let incomplete_init: Vec<&str> = record
        .init_containers
        .iter()
        .zip(&init)
        .filter(|(spec, status)| {
            if spec.restartable {
                status.started != Some(true)
            } else {
                terminated_with(status) != Some(0)
            }
        })
        .map(|(spec, _)| spec.name.as_str())
        .collect();
    let unready: Vec<&str> = record
        .init_containers
        .iter()
        .zip(&init)
        .filter(|(spec, status)| spec.restartable && !status.ready)
        .chain(
            record
                .containers
                .iter()
                .zip(&containers)
                .filter(|(_, status)| !status.ready),
        )
        .map(|(spec, _)| spec.name.as_str())
        .collect();

    let old = &record.status;
    let condition = |type_: &str, status: bool, reason: Option<&str>, message: Option<String>| {
        let status = if status { "True" } else { "False" };
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.map(Into::into),
            message,
            last_transition_time: Some(transition.unwrap_or_else(|| now.clone())),
            ..Default::default()
        }
    };
    let (all_ready, ready_reason, ready_message) = if completed {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        )
    };
    let ready = condition("Ready", all_ready, ready_reason, ready_message.clone());
    let containers_ready = condition("ContainersReady", all_ready, ready_reason, ready_message);
    let initialized = if incomplete_init.is_empty() {
        condition("Initialized", true, None, None)
    } else if completed {
        condition("Initialized", false, Some("PodCompleted"), None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete_init)
            )),
        )
    };
    let sandbox_ready = runtime.is_some_and(|r| r.sandbox_ready) && !completed;

    let mut conditions: Vec<PodCondition> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    conditions.extend([
        condition("PodReadyToStartContainers", sandbox_ready, None, None),
        initialized,
        ready,
        containers_ready,
        condition("PodScheduled", true, None, None),
    ]);

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: host_ip.map(|ip| ip.to_string()),
        host_ips: host_ip.map(|ip| vec![HostIP { ip: ip.to_string() }]),
        pod_ip: pod_ip.map(|ip| ip.to_string()),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(old.start_time.clone().unwrap_or_else(|| now.clone())),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ..old.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStateRunning, ContainerStateTerminated};

    fn record(restart_policy: &str) -> PodRecord {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "restartPolicy": restart_policy, "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]},
        }))
        .unwrap();
        PodRecord::from_pod(&pod, None)
    }

    fn now() -> Time {
        Time("2025-01-01T00:00:10Z".parse().unwrap())
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(now()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exited(name: &str, code: i32) -> ContainerStatus {
        let terminated = ContainerStateTerminated {
            exit_code: code,
            ..Default::default()
        };
        ContainerStatus {
            name: name.into(),
            started: Some(false),
            state: Some(ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn conditions(status: &PodStatus) -> Vec<(String, String, Option<String>, Option<String>)> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_pod_without_ip_is_pending_with_containers_creating() {
        let status = pod_status(
            &record("Always"),
            Some(&RuntimePodStatus::default()),
            Some("172.16.0.1".parse().unwrap()),
            false,
            &now(),
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["phase"], "Pending");
        assert_eq!(json["qosClass"], "BestEffort");
        assert_eq!(
            json["containerStatuses"][0],
            serde_json::json!({"image": "nginx", "imageID": "", "name": "a", "ready": false, "restartCount": 0, "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}})
        );
        let unready = Some("containers with unready status: [a b]".to_string());
        assert_eq!(
            conditions(&status),
            [
                (
                    "PodReadyToStartContainers".into(),
                    "False".into(),
                    None,
                    None
                ),
                ("Initialized".into(), "True".into(), None, None),
                (
                    "Ready".into(),
                    "False".into(),
                    Some("ContainersNotReady".into()),
                    unready.clone()
                ),
                (
                    "ContainersReady".into(),
                    "False".into(),
                    Some("ContainersNotReady".into()),
                    unready
                ),
                ("PodScheduled".into(), "True".into(), None, None),
            ]
        );
        assert_eq!(
            status.conditions.unwrap()[4].last_transition_time,
            Some(Time("2025-01-01T00:00:00Z".parse().unwrap())),
            "kept"
        );
        assert_eq!(json["hostIP"], "172.16.0.1");
        assert_eq!(json["podIP"], serde_json::Value::Null);
    }

    #[test]
    fn phases_follow_restart_policy() {
        let mut r = record("Always");
        r.ip = Some("10.244.0.2".parse().unwrap());
        let rt = |containers: Vec<ContainerStatus>| RuntimePodStatus {
            sandbox_ready: true,
            init_container_statuses: vec![],
            container_statuses: containers,
            host_network: false,
        };
        let host = Some("172.16.0.1".parse().unwrap());
        let ready = pod_status(
            &r,
            Some(&rt(vec![running("a", true), running("b", true)])),
            host,
            false,
            &now(),
        );
        assert_eq!(ready.phase.as_deref(), Some("Running"));
        assert_eq!(ready.pod_ip.as_deref(), Some("10.244.0.2"));
        assert!(
            ready
                .conditions
                .iter()
                .flatten()
                .all(|c| c.status == "True")
        );
        let partly = pod_status(
            &r,
            Some(&rt(vec![running("a", true), running("b", false)])),
            host,
            false,
            &now(),
        );
        assert_eq!(
            conditions(&partly)[2].3.as_deref(),
            Some("containers with unready status: [b]")
        );

        let all_exited = rt(vec![exited("a", 0), exited("b", 1)]);
        assert_eq!(
            pod_status(&r, Some(&all_exited), host, false, &now())
                .phase
                .as_deref(),
            Some("Running")
        );
        assert_eq!(
            pod_status(&r, Some(&all_exited), host, true, &now())
                .phase
                .as_deref(),
            Some("Failed")
        );
        r.restart_policy = "Never".into();
        let failed = pod_status(&r, Some(&all_exited), host, false, &now());
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        assert_eq!(
            conditions(&failed)[2],
            (
                "Ready".into(),
                "False".into(),
                Some("PodCompleted".into()),
                None
            )
        );
        let done = rt(vec![exited("a", 0), exited("b", 0)]);
        assert_eq!(
            pod_status(&r, Some(&done), host, false, &now())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        r.restart_policy = "OnFailure".into();
        assert_eq!(
            pod_status(&r, Some(&all_exited), host, false, &now())
                .phase
                .as_deref(),
            Some("Running")
        );
        assert_eq!(
            pod_status(&r, Some(&done), host, false, &now())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
    }
}

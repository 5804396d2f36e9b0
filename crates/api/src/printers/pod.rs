//! Pods: upstream's `printPod`, the most intricate printer (STATUS and RESTARTS summarise
//! every container's state).

use super::format::{array_at, bool_at, get, int_at, or, str_at, timestamp_at};
use super::{AGE, Column, NAME, age, docs, duration, name};
use jiff::Timestamp;
use serde_json::Value;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::string(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    Column::string(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    Column::wide("IP", docs::POD_IP),
    Column::wide("Node", docs::POD_NODE_NAME),
    Column::wide("Nominated Node", docs::POD_NOMINATED),
    Column::wide("Readiness Gates", docs::POD_READINESS_GATES),
];

/// The `reason` kubelet sets on pods of a node the node controller lost.
const NODE_UNREACHABLE_REASON: &str = "NodeLost";

/// Restart count and time of the latest restart, summed over some containers.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "/restartCount");
        let finished = timestamp_at(status, "/lastState/terminated/finishedAt");
        if finished > self.last {
            self.last = finished;
        }
    }
}

pub(super) fn row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = str_at(pod, "/status/phase");
    let status_reason = str_at(pod, "/status/reason");
    let conditions = array_at(pod, "/status/conditions");
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_containers = array_at(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_containers
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
    };
    let total_containers = array_at(pod, "/spec/containers").len()
        + init_containers
            .iter()
            .filter(|c| str_at(c, "/restartPolicy") == "Always")
            .count();
    let mut ready_containers = 0;

    // Init containers first: the first one not done yet decides the status.
    let mut all_restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in array_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let sidecar = is_sidecar(str_at(status, "/name"));
        all_restarts.add(status);
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = get(status, "/state/terminated");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && bool_at(status, "/started") {
            if bool_at(status, "/ready") {
                ready_containers += 1;
            }
            continue;
        }
        let waiting_reason = str_at(status, "/state/waiting/reason");
        reason = if let Some(terminated) = terminated {
            match str_at(terminated, "/reason") {
                "" => exit_description("Init:", terminated),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let mut restarts = all_restarts;
    if !initializing || condition_is_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in array_at(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting_reason = str_at(status, "/state/waiting/reason");
            let terminated = get(status, "/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match str_at(terminated, "/reason") {
                    "" => exit_description("", terminated),
                    r => r.to_string(),
                };
            } else if bool_at(status, "/ready") && get(status, "/state/running").is_some() {
                has_running = true;
                ready_containers += 1;
            }
        }
        // A container still running means the pod is not completed yet.
        if reason == "Completed" && has_running {
            reason = if condition_is_true_anywhere(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if get(pod, "/metadata/deletionTimestamp").is_some() {
        if status_reason == NODE_UNREACHABLE_REASON {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => format!(
            "{} ({} ago)",
            restarts.count,
            duration::since(Some(last), now)
        ),
        _ => restarts.count.to_string(),
    };

    vec![
        name(pod),
        format!("{ready_containers}/{total_containers}").into(),
        reason.into(),
        restarts_cell.into(),
        age(pod, now),
        or(pod_ip(pod), "<none>").into(),
        or(str_at(pod, "/spec/nodeName"), "<none>").into(),
        or(str_at(pod, "/status/nominatedNodeName"), "<none>").into(),
        readiness_gates(pod).into(),
    ]
}

/// `ExitCode:N` or `Signal:N` (with `prefix`) for a container terminated without a reason.
fn exit_description(prefix: &str, terminated: &Value) -> String {
    match int_at(terminated, "/signal") {
        0 => format!("{prefix}ExitCode:{}", int_at(terminated, "/exitCode")),
        signal => format!("{prefix}Signal:{signal}"),
    }
}

/// Upstream's `isPodInitializedConditionTrue`: the first condition of the type decides.
fn condition_is_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, "/type") == kind)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// Upstream's `hasPodReadyCondition`: any condition of the type that is true.
fn condition_is_true_anywhere(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, "/type") == kind && str_at(c, "/status") == "True")
}

/// The pod's primary IP. The v1 to internal conversion makes `podIP` authoritative over
/// `podIPs[0]`.
fn pod_ip(pod: &Value) -> &str {
    match str_at(pod, "/status/podIP") {
        "" => array_at(pod, "/status/podIPs")
            .first()
            .map_or("", |ip| str_at(ip, "/ip")),
        ip => ip,
    }
}

/// `true/declared` readiness gates, or `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = array_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = array_at(pod, "/status/conditions");
    let true_gates = gates
        .iter()
        .filter(|gate| condition_is_true(conditions, str_at(gate, "/conditionType")))
        .count();
    format!("{true_gates}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    fn cells(pod: Value) -> Vec<Value> {
        row(&pod, now())
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "started": true,
               "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}})
    }

    #[test]
    fn running_pod_with_wide_columns() {
        let pod = json!({
            "metadata": {"name": "nginx-7c5ddbdf54-x2x9k", "namespace": "demo", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx:1.25"}]},
            "status": {
                "phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running("nginx", true, 0)]
            }
        });
        assert_eq!(
            cells(pod),
            [
                json!("nginx-7c5ddbdf54-x2x9k"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.244.1.5"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pending_pod_is_unscheduled() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:15Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending"}
        });
        assert_eq!(
            cells(pod)[..6],
            [
                json!("web"),
                json!("0/2"),
                json!("Pending"),
                json!("0"),
                json!("45s"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn waiting_and_terminated_reasons() {
        let container_creating = json!({
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}
        });
        assert_eq!(cells(container_creating)[2], "ContainerCreating");

        // Three restarts, the last one finished two minutes ago.
        let crash_loop = json!({
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:58:00Z"}}}
            ]}
        });
        let c = cells(crash_loop);
        assert_eq!(
            (&c[1], &c[2], &c[3]),
            (
                &json!("0/1"),
                &json!("CrashLoopBackOff"),
                &json!("3 (2m ago)")
            )
        );

        let completed = json!({
            "spec": {"containers": [{"name": "job"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "job", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        assert_eq!(cells(completed)[2], "Completed");

        let failed = json!({
            "spec": {"containers": [{"name": "job"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "job", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}
            ]}
        });
        assert_eq!(cells(failed)[2], "Error");

        let no_reason = |terminated: Value| {
            json!({"spec": {"containers": [{"name": "c"}]},
                   "status": {"phase": "Running", "containerStatuses": [{"name": "c", "state": {"terminated": terminated}}]}})
        };
        assert_eq!(
            cells(no_reason(json!({"exitCode": 137, "signal": 9})))[2],
            "Signal:9"
        );
        assert_eq!(cells(no_reason(json!({"exitCode": 3})))[2], "ExitCode:3");
    }

    #[test]
    fn completed_container_next_to_a_running_one() {
        // Containers are walked last to first, so the first container's state wins the reason.
        let pod = |ready_condition: &str| {
            json!({
                "spec": {"containers": [{"name": "main"}, {"name": "helper"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready_condition}],
                    "containerStatuses": [
                        {"name": "main", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        running("helper", true, 0)
                    ]}
            })
        };
        assert_eq!(cells(pod("True"))[1..3], [json!("1/2"), json!("Running")]);
        assert_eq!(cells(pod("False"))[1..3], [json!("1/2"), json!("NotReady")]);
    }

    #[test]
    fn init_containers() {
        let pod = |init_statuses: Value| {
            json!({
                "spec": {"initContainers": [{"name": "migrate"}, {"name": "seed"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": init_statuses,
                    "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}
            })
        };
        let waiting = json!({"waiting": {"reason": "PodInitializing"}});
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": {"running": {}}}, {"name": "seed", "state": waiting}])
            ))[2],
            "Init:0/2"
        );
        let done = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": done}, {"name": "seed", "state": {"running": {}}}])
            ))[2],
            "Init:1/2"
        );
        let crash = json!([{"name": "migrate", "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:50:00Z"}}}]);
        let c = cells(pod(crash));
        assert_eq!(
            (&c[2], &c[3]),
            (&json!("Init:CrashLoopBackOff"), &json!("4 (10m ago)"))
        );
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}])
            ))[2],
            "Init:Error"
        );
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 2}}}])
            ))[2],
            "Init:ExitCode:2"
        );
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 2, "signal": 15}}}])
            ))[2],
            "Init:Signal:15"
        );
        // All init containers done: the app container's waiting reason shows.
        assert_eq!(
            cells(pod(
                json!([{"name": "migrate", "state": done}, {"name": "seed", "state": done}])
            ))[2],
            "PodInitializing"
        );
    }

    #[test]
    fn init_container_failing_after_initialization() {
        // Once Initialized, the app containers' restarts count (not the init container's),
        // yet the failing init container still names the status.
        let pod = json!({
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "a", "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:30:00Z"}}}]}
        });
        assert_eq!(
            cells(pod)[1..4],
            [
                json!("1/1"),
                json!("Init:CrashLoopBackOff"),
                json!("2 (30m ago)")
            ]
        );
        // Restarts without a recorded termination time print the bare count.
        let pod = json!({"spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [running("a", true, 7)]}});
        assert_eq!(cells(pod)[3], "7");
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 2,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T10:00:00Z"}}}],
                "containerStatuses": [running("app", true, 1)]}
        });
        let c = cells(pod);
        assert_eq!(
            c[1..4],
            [json!("2/2"), json!("Running"), json!("3 (120m ago)")]
        );
    }

    #[test]
    fn deletion_and_lost_nodes() {
        let pod = |phase: &str, reason: &str| {
            json!({
                "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": phase, "reason": reason, "containerStatuses": [running("c", true, 0)]}
            })
        };
        assert_eq!(cells(pod("Running", ""))[2], "Terminating");
        assert_eq!(cells(pod("Succeeded", ""))[2], "Succeeded");
        assert_eq!(cells(pod("Running", "NodeLost"))[2], "Unknown");
        let lost = json!({"spec": {"containers": []}, "status": {"phase": "Unknown", "reason": "NodeLost"}});
        assert_eq!(cells(lost)[2], "NodeLost");
        let gated = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(cells(gated)[2], "SchedulingGated");
    }

    #[test]
    fn ips_and_readiness_gates() {
        let pod = json!({
            "spec": {"containers": [], "nodeName": "n1",
                     "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]},
            "status": {"podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.5"}], "nominatedNodeName": "n2",
                       "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}
        });
        assert_eq!(
            cells(pod)[5..],
            [json!("fd00::5"), json!("n1"), json!("n2"), json!("1/2")]
        );
    }
}

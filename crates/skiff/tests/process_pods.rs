//! Issue 7 end to end: pods that really run, through the real kubectl against `skiff server
//! --local-runtime process`, whose local node (the only node) runs each container as an isolated
//! process. The tutorial's Deployment serves HTTP on its pod IPs, logs the requests, and is
//! restarted one pod at a time; the tutorial's StatefulSet pod comes back with its hostname and
//! finds what its predecessor wrote in its volume; a crashing container backs off as upstream's
//! kubelet does; a container over its memory limit is OOMKilled.
//!
//! Isolation needs root on Linux: elsewhere every test prints a notice and passes. Each test
//! deletes what it created and checks that none of its pods' processes survive; a failed test
//! kills them when its server goes (see [`ProcessServer`]). Two tests are ignored until the
//! node agent does what they check: BackOff events, and pods reachable at once on a reused IP.

mod common;
mod workloads;

use common::{Server, cell, parse_table, row, wait_until};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use skiff_agent::process::state::PodState;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use workloads::{PodWatch, SETTLE, apply, events_about, is_ready, live_pods, name};

/// The tutorial's Deployment, serving its working directory over HTTP on port 8080 of every
/// address of the pod, ready once it answers. (http.server looks its host name up before it
/// listens: the pod's `/etc/hosts` answers, as pods have no DNS.)
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: nginx
          image: nginx:1.14.2
          command: ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"]
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
"#;

/// The cluster CIDR of the Deployment's server, and how its pods' IPs start.
const DEPLOYMENT_CIDR: &str = "10.241.0.0/16";
const DEPLOYMENT_PODS_PREFIX: &str = "10.241.";

/// The tutorial's StatefulSet and its headless Service (`examples/seed/statefulset.yaml`), whose
/// container records its hostname in a new file of its volume and lists the volume.
const STATEFUL_SET: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx-statefulset
spec:
  clusterIP: None
  selector:
    app: nginx-statefulset
  ports:
    - name: web
      port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nginx-statefulset
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels:
      app: nginx-statefulset
  template:
    metadata:
      labels:
        app: nginx-statefulset
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: nginx
          image: nginx:1.14.2
          command: ["sh", "-c", "hostname > /usr/share/nginx/html/host-$(date +%s%N); ls /usr/share/nginx/html; sleep 3600"]
          ports:
            - name: web
              containerPort: 80
          volumeMounts:
            - name: www
              mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
    - metadata:
        name: www
      spec:
        accessModes:
          - ReadWriteOnce
        resources:
          requests:
            storage: 1Gi
"#;

/// A `skiff server` whose local node runs pods as processes. When it goes, whatever its pods
/// still run is killed: the server's own death leaves them running on purpose (a restarted
/// server adopts them), which a test must not.
struct ProcessServer {
    server: Option<Server>,
}

impl ProcessServer {
    /// Starts the server with its pod network on `cluster_cidr`, or prints why this machine
    /// cannot run the test and returns `None`. Every server's pods join the host's one bridge:
    /// each test takes its own CIDR, apart from the default, so that servers running at the
    /// same time never give two pods the same IP.
    fn start(cluster_cidr: &str) -> Option<ProcessServer> {
        if let Some(missing) = missing_isolation() {
            eprintln!("skipping: process pods cannot be isolated here ({missing})");
            return None;
        }
        let args = ["--local-runtime", "process", "--cluster-cidr", cluster_cidr];
        Some(ProcessServer {
            server: Some(Server::start_with(&args)),
        })
    }
}

impl std::ops::Deref for ProcessServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        self.server.as_ref().expect("the server runs until dropped")
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let pods_dir = server.data_dir().join("agent/pods");
        let states: Vec<PodState> = std::fs::read_dir(&pods_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|pod_dir| PodState::load(&pod_dir.path()))
            .collect();
        // Stopped first, so that its agent restarts nothing; the data directory goes with it.
        drop(server);
        for state in states {
            // Killing a pod's sandbox holder, PID 1 of its PID namespace, ends all its
            // processes; each container's group is killed too, in case the pod had no sandbox.
            let groups = state.runs.values().map(|run| run.process);
            for process in state.sandbox.into_iter().chain(groups) {
                if process.is_alive() {
                    let (pid, group) = (process.pid.to_string(), format!("-{}", process.pid));
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &group, &pid])
                        .status();
                }
            }
        }
    }
}

/// What this machine lacks to isolate pods (the runtime needs root and PID namespaces).
fn missing_isolation() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if effective_uid != Some("0") {
        Some("not root")
    } else if !Path::new("/proc/self/ns/pid").exists() {
        Some("no PID namespaces")
    } else {
        None
    }
}

/// The processes (pid and command line) whose environment says they run in one of the pods
/// `pod_names`: the runtime gives every container `HOSTNAME=<pod hostname>`.
fn processes_of(pod_names: &BTreeSet<String>) -> Vec<String> {
    let wanted: BTreeSet<Vec<u8>> = pod_names
        .iter()
        .map(|name| format!("HOSTNAME={name}").into_bytes())
        .collect();
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            if !environ.split(|&b| b == 0).any(|var| wanted.contains(var)) {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            Some(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                cmdline.trim()
            ))
        })
        .collect()
}

/// Waits until no pod matching `selector` is left and none of `pod_names` runs a process.
fn wait_gone(server: &Server, selector: &str, pod_names: &BTreeSet<String>) {
    wait_until(&format!("the pods {selector} gone"), SETTLE, || {
        let left = server.ok(&["get", "pods", "-l", selector, "-o", "name"]);
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
    wait_until("no process of the deleted pods left", SETTLE, || {
        let left = processes_of(pod_names);
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("\n"))
        }
    });
}

/// The names of the pods matching `selector` that are not being deleted.
fn live_pod_names(server: &Server, selector: &str) -> BTreeSet<String> {
    live_pods(server, "default", selector)
        .iter()
        .map(|pod| name(pod).to_owned())
        .collect()
}

/// How long a rollout may take: its pods start in a couple of seconds each, but the machine
/// may be busy with other tests.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `kubectl rollout status <what>` until it reports success (each run bounded, as the
/// harness bounds every command) and returns its last line.
fn rollout_status(server: &Server, what: &str) -> String {
    wait_until(
        &format!("kubectl rollout status {what}"),
        ROLLOUT_TIMEOUT,
        || {
            let output = server.run(&["rollout", "status", what, "--timeout=60s"]);
            if output.code == 0 {
                Ok(output.stdout.lines().last().unwrap_or_default().to_owned())
            } else {
                Err(format!("{output:?}"))
            }
        },
    )
}

/// Sends `GET <path>` to port 8080 of `ip` and returns the response's status line.
fn try_http_get(ip: &str, path: &str) -> Result<String, String> {
    let address = SocketAddr::new(ip.parse().expect("a pod IP"), 8080);
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")
        .map_err(|e| format!("sending to {address}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading from {address}: {e}"))?;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

/// [`try_http_get`], failing the test if the request fails.
#[track_caller]
fn http_get(ip: &str, path: &str) -> String {
    try_http_get(ip, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Whether a pod from a kube-rs watch is Ready.
fn watched_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Checks that the 3 pods of `app=nginx` are Running and Ready, each answers HTTP on its own
/// IP, and logs the request; returns their names.
fn check_serving(server: &Server) -> BTreeSet<String> {
    let pods = live_pods(server, "default", "app=nginx");
    assert_eq!(pods.len(), 3, "{pods:#?}");
    let mut ips = BTreeSet::new();
    for pod in &pods {
        let pod_name = name(pod);
        assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
        assert!(is_ready(pod), "{pod_name} is not Ready: {pod:#}");
        let ip = pod["status"]["podIP"].as_str().expect("a pod IP");
        // The pod's own network namespace, on the node's pod CIDR: not the host's network.
        assert!(
            ip.starts_with(DEPLOYMENT_PODS_PREFIX),
            "{pod_name}'s IP {ip}"
        );
        assert!(ips.insert(ip.to_owned()), "two pods with IP {ip}");
        let path = format!("/?from={pod_name}");
        assert_eq!(http_get(ip, &path), "HTTP/1.0 200 OK", "GET {path} of {ip}");
        // http.server logs each request on stderr: `<client> - - [<time>] "<request>" 200 -`.
        let logged = format!("\"GET {path} HTTP/1.0\" 200 -");
        wait_until(&format!("{pod_name} logging {logged}"), SETTLE, || {
            let logs = server.ok(&["logs", pod_name]);
            if logs.lines().any(|line| line.ends_with(&logged)) {
                Ok(())
            } else {
                Err(logs)
            }
        });
    }
    pods.iter().map(|pod| name(pod).to_owned()).collect()
}

#[test]
fn the_tutorial_deployment_serves_http_and_restarts_one_pod_at_a_time() {
    let Some(server) = ProcessServer::start(DEPLOYMENT_CIDR) else {
        return;
    };
    assert_eq!(
        apply(&server, "default", DEPLOYMENT),
        "deployment.apps/nginx-deployment created\n"
    );
    assert_eq!(
        rollout_status(&server, "deployment/nginx-deployment"),
        "deployment \"nginx-deployment\" successfully rolled out"
    );
    let first = check_serving(&server);

    // maxSurge 25% of 3 rounds up to 1 and maxUnavailable rounds down to 0: one new pod at a
    // time, and an old one goes only once a new one is Ready.
    let watch = PodWatch::start(&server, "app=nginx", |pods| {
        let live: Vec<&&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| watched_ready(p)).count();
        if live.len() > 4 || ready < 3 {
            Err(format!("{} pods, {ready} Ready", live.len()))
        } else {
            Ok(())
        }
    });
    assert_eq!(
        server.ok(&["rollout", "restart", "deployment/nginx-deployment"]),
        "deployment.apps/nginx-deployment restarted\n"
    );
    assert_eq!(
        rollout_status(&server, "deployment/nginx-deployment"),
        "deployment \"nginx-deployment\" successfully rolled out"
    );
    let observed = watch.finish();
    assert!(observed.states > 0, "the watch saw no change");
    assert_eq!(observed.violations, Vec::<String>::new());
    // The rollout is complete before the last old pod is gone.
    wait_until("only the new pods left", SETTLE, || {
        let names = live_pod_names(&server, "app=nginx");
        if names.len() == 3 {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    let second = check_serving(&server);
    assert!(first.is_disjoint(&second), "{first:?} / {second:?}");

    assert_eq!(
        server.ok(&["delete", "deployment", "nginx-deployment"]),
        "deployment.apps \"nginx-deployment\" deleted\n"
    );
    wait_gone(
        &server,
        "app=nginx",
        &first.union(&second).cloned().collect(),
    );
}

/// Waits until `dir` holds `count` files, each written (ending in a newline), and the pod
/// `pod` has logged its listing of them (the container writes its file, then lists the
/// directory); returns the files with their contents, by name.
fn wait_files(server: &Server, dir: &str, count: usize, pod: &str) -> Vec<(String, String)> {
    wait_until(
        &format!("{count} files in {dir} listed by {pod}"),
        SETTLE,
        || {
            let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
                .map_err(|e| format!("reading {dir}: {e}"))?
                .flatten()
                .map(|entry| {
                    let contents = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    (entry.file_name().to_string_lossy().into_owned(), contents)
                })
                .collect();
            files.sort();
            let listing: String = files.iter().map(|(name, _)| format!("{name}\n")).collect();
            let logs = server.ok(&["logs", pod]);
            if files.len() == count
                && files.iter().all(|(_, c)| c.ends_with('\n'))
                && logs == listing
            {
                Ok(files)
            } else {
                Err(format!("files {files:?}, logs {logs:?}"))
            }
        },
    )
}

#[test]
fn a_replaced_stateful_set_pod_keeps_its_hostname_and_volume() {
    let Some(server) = ProcessServer::start("10.242.0.0/16") else {
        return;
    };
    assert_eq!(
        apply(&server, "default", STATEFUL_SET),
        "service/nginx created\nstatefulset.apps/nginx-statefulset created\n"
    );
    assert_eq!(
        rollout_status(&server, "statefulset/nginx-statefulset"),
        "partitioned roll out complete: 3 new pods have been updated..."
    );
    let pod = "nginx-statefulset-1";
    let volume = server.ok(&[
        "get",
        "pvc",
        "www-nginx-statefulset-1",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    let dir = server.ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"]);
    let written = wait_files(&server, &dir, 1, pod);
    let (first_file, hostname) = &written[0];
    assert!(first_file.starts_with("host-"), "{written:?}");
    assert_eq!(hostname, "nginx-statefulset-1\n");

    let old_uid = server.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    // kubectl's own wait for the deletion could miss a pod recreated at once under the name.
    assert_eq!(
        server.ok(&["delete", "pod", pod, "--wait=false"]),
        "pod \"nginx-statefulset-1\" deleted\n"
    );
    wait_until("a new nginx-statefulset-1 Ready", SETTLE, || {
        let current = server.run(&["get", "pod", pod, "-o", "json"]);
        let Ok(current) = serde_json::from_str::<Value>(&current.stdout) else {
            return Err(current.stderr);
        };
        if current["metadata"]["uid"] != old_uid.as_str() && is_ready(&current) {
            Ok(())
        } else {
            Err(format!("{current:#}"))
        }
    });
    // The new pod has the same hostname, and its volume still holds its predecessor's file.
    let written = wait_files(&server, &dir, 2, pod);
    assert_eq!(&written[0].0, first_file, "{written:?}");
    assert!(
        written
            .iter()
            .all(|(_, hostname)| hostname == "nginx-statefulset-1\n"),
        "{written:?}"
    );

    let pods: BTreeSet<String> = (0..3).map(|n| format!("nginx-statefulset-{n}")).collect();
    assert_eq!(
        server.ok(&["delete", "statefulset", "nginx-statefulset"]),
        "statefulset.apps \"nginx-statefulset\" deleted\n"
    );
    wait_gone(&server, "app=nginx-statefulset", &pods);
}

/// A pod `name` of one container `app` running `command`, with `restart_policy` and the
/// container's `resources`.
fn pod_manifest(name: &str, restart_policy: &str, command: &[&str], resources: Value) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox", "command": command, "resources": resources}],
        },
    })
    .to_string()
}

/// The `kubectl get pod <name>` row.
fn pod_row(server: &Server, name: &str) -> Vec<(String, String)> {
    let table = parse_table(&server.ok(&["get", "pod", name]));
    row(&table, name).to_vec()
}

/// A time field of a pod (`.metadata.creationTimestamp`, a container state's `startedAt`), in
/// seconds since the epoch (the API's precision).
fn seconds(pod: &Value, time: &Value) -> i64 {
    serde_json::from_value::<Time>(time.clone())
        .unwrap_or_else(|e| panic!("{time} is no time ({e}): {pod:#}"))
        .0
        .as_second()
}

/// Deletes the pod `name` and waits until it and its processes are gone.
fn delete_pod(server: &Server, name: &str) {
    assert_eq!(
        server.ok(&["delete", "pod", name, "--wait=false"]),
        format!("pod \"{name}\" deleted\n")
    );
    wait_gone(
        server,
        &format!("test={name}"),
        &BTreeSet::from([name.to_owned()]),
    );
}

/// Waits until the pod `crasher` waits in CrashLoopBackOff after its `restarts`th restart and
/// returns it.
fn wait_crash_loop(server: &Server, restarts: u32) -> Value {
    wait_until(&format!("restart {restarts} backing off"), SETTLE, || {
        let pod = server.get_json(&["get", "pod", "crasher"]);
        let status = &pod["status"]["containerStatuses"][0];
        if status["restartCount"] == restarts
            && status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        {
            Ok(pod)
        } else {
            Err(format!("{pod:#}"))
        }
    })
}

#[test]
fn a_failing_container_crash_loops_with_growing_back_off() {
    let Some(server) = ProcessServer::start("10.243.0.0/16") else {
        return;
    };
    let manifest = pod_manifest("crasher", "Always", &["sh", "-c", "exit 1"], Value::Null);
    assert_eq!(
        apply(&server, "default", &manifest),
        "pod/crasher created\n"
    );

    // Upstream's kubelet restarts a container that exited for the first time at once, then
    // waits 10 s, 20 s, ... (doubling up to 5 minutes) in CrashLoopBackOff, saying so.
    let pod = wait_crash_loop(&server, 1);
    let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_owned();
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        status["state"]["waiting"]["message"],
        format!("back-off 10s restarting failed container=app pod=crasher_default({uid})")
    );
    let last = &status["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{pod:#}");
    assert_eq!(last["reason"], "Error", "{pod:#}");
    let created = seconds(&pod, &pod["metadata"]["creationTimestamp"]);
    assert!(
        seconds(&pod, &last["startedAt"]) - created < 10,
        "the first restart waited: {pod:#}"
    );
    let first_restart_ended = seconds(&pod, &last["finishedAt"]);

    let pod = wait_crash_loop(&server, 2);
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        status["state"]["waiting"]["message"],
        format!("back-off 20s restarting failed container=app pod=crasher_default({uid})")
    );
    // Whole seconds: the difference of truncated times is at least the truncated difference.
    let second_restart_started = seconds(&pod, &status["lastState"]["terminated"]["startedAt"]);
    assert!(
        second_restart_started - first_restart_ended >= 10,
        "the second restart came {} s after the first ended",
        second_restart_started - first_restart_ended
    );
    assert_eq!(pod["status"]["phase"], "Running");
    let row = pod_row(&server, "crasher");
    assert_eq!(cell(&row, "READY"), "0/1");
    assert_eq!(cell(&row, "STATUS"), "CrashLoopBackOff");
    let restarts = cell(&row, "RESTARTS");
    assert!(
        restarts.starts_with("2 (") && restarts.ends_with(" ago)"),
        "{restarts}"
    );
    delete_pod(&server, "crasher");
}

#[test]
fn a_crash_loop_is_told_by_container_events() {
    let Some(server) = ProcessServer::start("10.244.0.0/16") else {
        return;
    };
    let manifest = pod_manifest("crasher", "Always", &["sh", "-c", "exit 1"], Value::Null);
    assert_eq!(
        apply(&server, "default", &manifest),
        "pod/crasher created\n"
    );
    let pod = wait_crash_loop(&server, 1);
    let uid = pod["metadata"]["uid"].as_str().expect("a uid");
    // Upstream's kuberuntime_manager: events.BackOffStartContainer, from the kubelet.
    let message = format!("Back-off restarting failed container app in pod crasher_default({uid})");
    wait_until("a BackOff event", SETTLE, || {
        let events = events_about(&server, "default", "Pod", "crasher");
        if events.contains(&("Warning".to_owned(), "BackOff".to_owned(), message.clone())) {
            Ok(())
        } else {
            Err(format!("{events:#?}"))
        }
    });
    let described = server.ok(&["describe", "pod", "crasher"]);
    assert!(described.contains(&message), "{described}");
    // Each run was created and started, as the kubelet tells it.
    let events = events_about(&server, "default", "Pod", "crasher");
    for (reason, message) in [
        ("Created", "Created container: app"),
        ("Started", "Started container app"),
    ] {
        let told = ("Normal".to_owned(), reason.to_owned(), message.to_owned());
        assert!(events.contains(&told), "{reason} in {events:#?}");
    }
    delete_pod(&server, "crasher");
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let Some(server) = ProcessServer::start("10.245.0.0/16") else {
        return;
    };
    let command = [
        "python3",
        "-c",
        "x=bytearray(300*1024*1024); import time; time.sleep(60)",
    ];
    let resources = serde_json::json!({"limits": {"memory": "50Mi"}});
    let manifest = pod_manifest("hog", "Never", &command, resources);
    assert_eq!(apply(&server, "default", &manifest), "pod/hog created\n");
    let pod = wait_until("the pod Failed", SETTLE, || {
        let pod = server.get_json(&["get", "pod", "hog"]);
        if pod["status"]["phase"] == "Failed" {
            Ok(pod)
        } else {
            Err(format!("{pod:#}"))
        }
    });
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["state"]["terminated"]["reason"], "OOMKilled");
    assert_eq!(status["state"]["terminated"]["exitCode"], 137);
    assert_eq!(status["restartCount"], 0);
    let row = pod_row(&server, "hog");
    assert_eq!(cell(&row, "READY"), "0/1");
    assert_eq!(cell(&row, "STATUS"), "OOMKilled");
    assert_eq!(cell(&row, "RESTARTS"), "0");
    delete_pod(&server, "hog");
}

/// The command of a pod serving HTTP on port 8080.
const HTTP_SERVER: [&str; 6] = ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"];

/// Waits until the pod `name` is Running with an IP, and returns the IP.
fn wait_pod_ip(server: &Server, name: &str) -> String {
    wait_until(&format!("{name} Running"), SETTLE, || {
        let pod = server.get_json(&["get", "pod", name]);
        match pod["status"]["podIP"].as_str() {
            Some(ip) if pod["status"]["phase"] == "Running" => Ok(ip.to_owned()),
            _ => Err(format!("{pod:#}")),
        }
    })
}

#[test]
fn a_pod_on_a_just_freed_ip_answers_at_once() {
    let Some(server) = ProcessServer::start("10.246.0.0/16") else {
        return;
    };
    let first = pod_manifest("first", "Always", &HTTP_SERVER, Value::Null);
    assert_eq!(apply(&server, "default", &first), "pod/first created\n");
    let first_ip = wait_pod_ip(&server, "first");
    // Talking to the pod puts its MAC in the node's neighbour table.
    wait_until("first answering", SETTLE, || try_http_get(&first_ip, "/"));
    delete_pod(&server, "first");

    let second = pod_manifest("second", "Always", &HTTP_SERVER, Value::Null);
    assert_eq!(apply(&server, "default", &second), "pod/second created\n");
    let second_ip = wait_pod_ip(&server, "second");
    eprintln!("first had {first_ip}, second has {second_ip}");
    // http.server listens within a second or two of starting.
    let status = wait_until("second answering", Duration::from_secs(5), || {
        try_http_get(&second_ip, "/")
    });
    assert_eq!(status, "HTTP/1.0 200 OK");
    delete_pod(&server, "second");
}

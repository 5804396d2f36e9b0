//! `kubectl logs`, `exec` and `port-forward` through the real kubectl against `skiff server`:
//! the API server's `pods/log`, `pods/exec` and `pods/portforward` proxied to the node agent's
//! kubelet server (ADR 13).

mod common;

use common::{Server, wait_until};
use serde_json::Value;
use std::time::Duration;

/// How long a pod may take to start, or its output to appear, on a busy machine.
const SETTLE: Duration = Duration::from_secs(60);

/// A pod pinned to `node` whose containers run `sh -c <script>` each.
fn pod_manifest(name: &str, node: &str, containers: &[(&str, &str)], restart: &str) -> String {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(container, script)| {
            serde_json::json!({"name": container, "image": "busybox", "command": ["sh", "-c", script]})
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "restartPolicy": restart, "containers": containers,
                 "terminationGracePeriodSeconds": 1},
    })
    .to_string()
}

fn create_pod(server: &Server, name: &str, node: &str, containers: &[(&str, &str)], restart: &str) {
    let manifest = server.write_file(
        &format!("{name}.json"),
        &pod_manifest(name, node, containers, restart),
    );
    server.ok(&["apply", "-f", manifest.to_str().unwrap()]);
}

fn wait_running(server: &Server, name: &str) {
    wait_until(&format!("pod {name} Running"), SETTLE, || {
        let phase = server.ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
        if phase == "Running" {
            Ok(())
        } else {
            Err(phase)
        }
    });
}

/// The node `skiff server` runs itself (the one not simulated).
fn local_node(server: &Server) -> String {
    wait_until("the local node registered", SETTLE, || {
        let nodes = server.get_json(&["get", "nodes"]);
        nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["metadata"]["annotations"]["skiff.dev/simulated"] != "true")
            .and_then(|n| Some(n["metadata"]["name"].as_str()?.to_string()))
            .ok_or_else(|| nodes.to_string())
    })
}

#[test]
fn simulated_pods_have_empty_logs_and_cannot_exec() {
    // The local node runs the sim runtime (the harness's default): it has a kubelet server
    // whose runtime keeps no logs and cannot exec.
    let server = Server::start_with(&["--sim-nodes", "1"]);
    let local = local_node(&server);
    create_pod(&server, "local", &local, &[("app", "true")], "Always");
    wait_running(&server, "local");
    assert_eq!(server.ok(&["logs", "local", "--timestamps"]), "");
    let failed = server.run(&["exec", "local", "--", "sh", "-c", "echo hi"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(
        failed.stderr.trim(),
        "error: Internal error occurred: error executing command in container: the skiff-sim://0.1.0 runtime cannot exec in containers"
    );

    // Pods of simulated nodes, which have no kubelet server.
    create_pod(&server, "sim", "sim-0001", &[("app", "true")], "Always");
    create_pod(
        &server,
        "pair",
        "sim-0001",
        &[("first", "true"), ("second", "true")],
        "Always",
    );
    wait_running(&server, "sim");
    assert_eq!(server.ok(&["logs", "sim"]), "");
    assert_eq!(server.ok(&["logs", "sim", "--tail=5", "-c", "app"]), "");
    // kubectl checks the container itself, with upstream's wording.
    let err = server.run(&["logs", "sim", "-c", "nope"]).failure();
    assert_eq!(err.trim(), "error: container nope is not valid for pod sim");
    let failed = server.run(&["exec", "sim", "--", "sh", "-c", "echo hi"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains(
            "container app of pod sim runs on the simulated node sim-0001, which cannot run commands"
        ),
        "{failed:?}"
    );
    // kubectl picks a container itself; the API's own choice shows on a bare request.
    let (code, body) = server.curl(
        "GET",
        "/api/v1/namespaces/default/pods/pair/log",
        Some(&server.token()),
        &[],
    );
    assert_eq!(code, 400);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        "a container name must be specified for pod pair, choose one of: [first second]"
    );
    let (code, body) = server.curl(
        "GET",
        "/api/v1/namespaces/default/pods/sim/log?tailLines=-1",
        Some(&server.token()),
        &[],
    );
    assert_eq!(code, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "PodLogOptions \"sim\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
    );
}

#[test]
fn logs_and_exec_of_process_pods() {
    let server = Server::start_with(&["--local-runtime", "process"]);
    let node = local_node(&server);
    create_pod(
        &server,
        "talker",
        &node,
        &[(
            "app",
            "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exec sleep 1000",
        )],
        "Always",
    );
    create_pod(
        &server,
        "ticker",
        &node,
        &[(
            "app",
            "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done",
        )],
        "Always",
    );
    create_pod(
        &server,
        "crasher",
        &node,
        &[("app", "echo run; sleep 1; exit 1")],
        "Always",
    );
    wait_running(&server, "talker");
    wait_until("talker's three lines", SETTLE, || {
        let out = server.ok(&["logs", "talker"]);
        if out == "one\ntwo\nthree\n" {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(server.ok(&["logs", "talker", "--tail=1"]), "three\n");
    assert_eq!(
        server.ok(&["logs", "talker", "-c", "app", "--tail=2"]),
        "two\nthree\n"
    );
    let stamped = server.ok(&["logs", "talker", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, text) in lines.iter().zip(["one", "two", "three"]) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, text);
        // RFC 3339 with nine fractional digits, as `2026-11-28T03:24:03.123456789Z`.
        assert!(
            time.len() == 30 && &time[19..20] == "." && time.ends_with('Z'),
            "{line}"
        );
    }
    assert_eq!(
        server.ok(&["logs", "talker", "--since=1h"]),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        server
            .run(&["logs", "talker", "--previous"])
            .failure()
            .trim(),
        "Error from server (BadRequest): previous terminated container \"app\" in pod \"talker\" not found"
    );

    // -f follows until the client goes away.
    wait_running(&server, "ticker");
    let mut follow = server.spawn(&["logs", "-f", "ticker"]);
    follow.wait_for_line("tick 1", |l| l == "tick 1");
    follow.wait_for_line("a later tick", |l| l == "tick 4");
    drop(follow);

    // exec: output and the exit code come back; stdin goes in with -i.
    let out = server.run(&["exec", "talker", "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!((out.code, out.stdout.as_str()), (3, "hi\n"), "{out:?}");
    let out = server
        .kubectl(&["exec", "-i", "talker", "--", "cat"])
        .stdin("piped\n")
        .run();
    assert_eq!((out.code, out.stdout.as_str()), (0, "piped\n"), "{out:?}");
    let out = server.run(&[
        "exec",
        "talker",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "echo err >&2",
    ]);
    assert_eq!((out.code, out.stderr.as_str()), (0, "err\n"), "{out:?}");

    // kubectl 1.29 and older exec over SPDY/3.1 instead of WebSocket: the same streams.
    let out = server
        .kubectl(&[
            "exec",
            "talker",
            "--",
            "sh",
            "-c",
            "echo hi; echo err >&2; exit 3",
        ])
        .version(29)
        .run();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "hi\n", "err\ncommand terminated with exit code 3\n"),
        "{out:?}"
    );
    // Input larger than a stream's buffers comes through whole, and its end ends `wc`.
    let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let out = server
        .kubectl(&["exec", "-i", "talker", "--", "wc", "-c"])
        .version(29)
        .stdin(&input)
        .run();
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, input.len().to_string().as_str()),
        "{out:?}"
    );

    // -it: the command runs on a terminal of its own, over WebSocket and over SPDY.
    for minor in [32, 29] {
        let out = server
            .kubectl(&["exec", "-it", "talker", "--", "sh", "-c", "tty; exit 4"])
            .version(minor)
            .on_terminal()
            .run();
        assert_eq!(out.code, 4, "kubectl 1.{minor}: {out:?}");
        assert!(
            out.stdout.contains("/dev/pts/"),
            "kubectl 1.{minor}: {out:?}"
        );
    }

    // --previous shows the run before the current one.
    wait_until("crasher restarted", SETTLE, || {
        let restarts = server.ok(&[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        if restarts.parse::<u32>().is_ok_and(|r| r >= 1) {
            Ok(())
        } else {
            Err(restarts)
        }
    });
    assert_eq!(server.ok(&["logs", "crasher", "--previous"]), "run\n");
}

/// Sends `GET <path>` over HTTP/1.0 to `127.0.0.1:port` and returns the response's status
/// line, or the error.
fn http_status(port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

/// The local port a `kubectl port-forward` of `:PORT` picked, from its first line
/// (`Forwarding from 127.0.0.1:41234 -> 8080`).
fn forwarded_port(forward: &mut common::Background) -> u16 {
    const PREFIX: &str = "Forwarding from 127.0.0.1:";
    let line = forward.wait_for_line("the forwarded port", |l| l.starts_with(PREFIX));
    line[PREFIX.len()..]
        .split(' ')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

#[test]
fn port_forward_reaches_the_pods_own_localhost() {
    let server = Server::start_with(&["--local-runtime", "process"]);
    let node = local_node(&server);
    // Bound to the pod's loopback only: nothing outside its network namespace reaches it.
    create_pod(
        &server,
        "web",
        &node,
        &[("app", "exec python3 -m http.server 8080 --bind 127.0.0.1")],
        "Always",
    );
    wait_running(&server, "web");
    // kubectl 1.32 tries WebSocket and falls back to SPDY, as 1.29 always uses.
    for minor in [32, 29] {
        let mut forward = server
            .kubectl(&["port-forward", "pod/web", ":8080"])
            .version(minor)
            .spawn();
        let port = forwarded_port(&mut forward);
        // The server may still be starting: the first connections can be refused in the pod.
        wait_until(
            "the pod's server through the forward",
            SETTLE,
            || match http_status(port, "/") {
                Ok(status) if status.starts_with("HTTP/1.0 200") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(
            http_status(port, "/missing").unwrap(),
            "HTTP/1.0 404 File not found",
            "kubectl 1.{minor}"
        );
    }

    // A port nobody listens on: the connection ends and kubectl reports the kubelet's error.
    let mut forward = server.spawn(&["port-forward", "pod/web", ":9"]);
    let port = forwarded_port(&mut forward);
    let _ = http_status(port, "/");
    let (code, stderr) = forward.wait_for_exit();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error forwarding port 9 to pod web_default")
            && stderr.contains("refused")
            && stderr.contains("lost connection to pod"),
        "{stderr}"
    );
}

#[test]
fn containers_get_the_variables_of_services() {
    let server = Server::start_with(&["--local-runtime", "process"]);
    let node = local_node(&server);
    server.ok(&["create", "service", "clusterip", "my-db", "--tcp=5432:5432"]);
    let db_ip = server.ok(&[
        "get",
        "service",
        "my-db",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let script =
        "echo $MY_DB_SERVICE_HOST $MY_DB_PORT $KUBERNETES_SERVICE_PORT $DB_URL; exec sleep 1000";
    for (name, links) in [("linked", true), ("unlinked", false)] {
        let manifest = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "enableServiceLinks": links,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": "busybox",
                        "command": ["sh", "-c", script],
                        // Service variables expand in the container's own values.
                        "env": [{"name": "DB_URL",
                                 "value": "postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"}]}]},
        });
        let file = server.write_file(&format!("{name}.json"), &manifest.to_string());
        server.ok(&["apply", "-f", file.to_str().unwrap()]);
    }
    let first_line = |pod: &str| {
        wait_until(&format!("{pod}'s output"), SETTLE, || {
            let out = server.ok(&["logs", pod]);
            out.lines()
                .next()
                .map(str::to_string)
                .ok_or_else(|| out.clone())
        })
    };
    assert_eq!(
        first_line("linked"),
        format!("{db_ip} tcp://{db_ip}:5432 443 postgres://{db_ip}:5432")
    );
    // Without service links only the API server's own Service is there, and a reference to
    // a missing variable stays as written.
    assert_eq!(
        first_line("unlinked"),
        "443 postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"
    );
}

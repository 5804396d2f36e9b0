//! Pod network namespaces on the real host: pods on one bridge reach each other, the host
//! reaches them and they reach the host, set-ups run in parallel and replace leftovers, and
//! teardown leaves nothing behind.
//!
//! Needs root, iproute2's `ip`, python3 and curl; without them each test prints why it is
//! skipped and passes. Every test uses its own bridge (never `skiff0`) and a `/24` of
//! 10.250.0.0/16 chosen from the process id among those the host does not route.

use skiff_agent::Ipv4Cidr;
use skiff_agent::podnet::PodNetwork;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why this machine cannot run the tests, if it cannot.
fn unsupported() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("not running as root".into());
    }
    for tool in ["ip", "python3", "curl"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs `ip ARGS` and returns its stdout, panicking when it fails.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(output.status.success(), "ip {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The netns name `PodNetwork` gives a pod.
fn netns(uid: &str) -> String {
    format!("skiff-{uid}")
}

/// One test's bridge, CIDR and pods; dropping it tears the pods down and deletes the bridge,
/// even when the test failed.
struct TestNet {
    bridge: String,
    cidr: Ipv4Cidr,
    tag: u8,
    uids: Vec<String>,
}

impl TestNet {
    /// The network of test number `tag`, or `None` (with a notice) when it cannot run here.
    fn new(tag: u8) -> Option<Self> {
        if let Some(reason) = unsupported() {
            eprintln!("skipping pod network test: {reason}");
            return None;
        }
        let pid = std::process::id();
        // A /24 the host does not route yet (a node's own bridge, e.g. the benchmark's
        // 10.250.0.0/24 on skiff0, would take the test's traffic): tried from one the process
        // id picks, in steps of 4 so the tests of one process never pick the same.
        let routes = ip(&["-4", "route"]);
        let subnet = (0..64)
            .map(|step| (pid.wrapping_add(step).wrapping_mul(4) + u32::from(tag)) % 256)
            .find(|subnet| !routes.contains(&format!("10.250.{subnet}.")))
            .expect("a free /24 of 10.250.0.0/16") as u8;
        Some(Self {
            bridge: format!("skt{pid}x{tag}"),
            cidr: format!("10.250.{subnet}.0/24").parse().unwrap(),
            tag,
            uids: Vec::new(),
        })
    }

    /// The `n`th pod's uid and IP (`.n+1`, after the gateway).
    fn pod(&mut self, n: u32) -> (String, Ipv4Addr) {
        let uid = format!("podnet-test-{}-{}-{n}", std::process::id(), self.tag);
        if !self.uids.contains(&uid) {
            self.uids.push(uid.clone());
        }
        (uid, self.cidr.host(n + 1).unwrap())
    }

    fn gateway(&self) -> Ipv4Addr {
        self.cidr.host(1).unwrap()
    }

    fn setup(&self, uid: &str, ip: Ipv4Addr) -> PodNetwork {
        PodNetwork::setup_on_bridge(&self.bridge, uid, ip, self.cidr)
            .unwrap_or_else(|err| panic!("setting up {uid} at {ip}: {err}"))
    }

    /// The interfaces attached to the bridge, one `ip -o link` line each.
    fn bridge_ports(&self) -> Vec<String> {
        ip(&["-o", "link", "show", "master", &self.bridge])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts that no pod of this test has a netns or a veth left.
    fn assert_torn_down(&self) {
        assert_eq!(self.bridge_ports(), Vec::<String>::new(), "veths left");
        let namespaces = ip(&["netns", "list"]);
        for uid in &self.uids {
            assert!(!namespaces.contains(&netns(uid)), "{uid}'s netns is left");
            assert!(!Path::new("/var/run/netns").join(netns(uid)).exists());
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for uid in &self.uids {
            PodNetwork::teardown(uid);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` inside the pod's network namespace.
fn in_pod(uid: &str, command: &[&str]) -> Command {
    let mut ip = Command::new("ip");
    ip.args(["netns", "exec", &netns(uid)]).args(command);
    ip
}

/// Asserts that the host reaches `ip` and the pod's kernel answers: a TCP connection to a
/// port nobody listens on is refused (a reset), not lost.
fn assert_refused_from_host(ip: Ipv4Addr) {
    let err = TcpStream::connect_timeout(&SocketAddr::from((ip, 9)), Duration::from_secs(5))
        .expect_err("nothing listens on port 9");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{ip}: {err}");
}

/// Connects from the host to `address` until it accepts, for up to 10 seconds.
fn connect_when_listening(address: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            Ok(stream) => return stream,
            Err(err) if Instant::now() > deadline => panic!("{address} never listened: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn pods_reach_each_other_and_the_host_reaches_them() {
    let Some(mut net) = TestNet::new(0) else {
        return;
    };
    let (server_uid, server_ip) = net.pod(1);
    let (client_uid, client_ip) = net.pod(2);
    let server = net.setup(&server_uid, server_ip);
    let client = net.setup(&client_uid, client_ip);
    assert_eq!(
        server.netns_path(),
        Path::new("/var/run/netns").join(netns(&server_uid))
    );
    assert!(client.netns_path().exists());
    // Each namespace holds only lo and eth0, and eth0 the pod IP with the CIDR's prefix and
    // a default route via the bridge.
    let links = ip(&["-n", &netns(&client_uid), "-o", "link"]);
    let names: Vec<&str> = links
        .lines()
        .map(|line| line.split(": ").nth(1).unwrap().split('@').next().unwrap())
        .collect();
    assert_eq!(names, ["lo", "eth0"]);
    assert!(
        ip(&[
            "-n",
            &netns(&client_uid),
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            "eth0"
        ])
        .contains(&format!("inet {client_ip}/24 ")),
    );
    assert_eq!(
        ip(&["-n", &netns(&client_uid), "route", "show", "default"]).trim(),
        format!("default via {} dev eth0", net.gateway())
    );
    assert_eq!(net.bridge_ports().len(), 2);

    // Bound to every address: http.server looks its bind address up in DNS, which pods cannot
    // reach without IP forwarding, and 0.0.0.0 resolves from /etc/hosts.
    let _http = Killed(
        in_pod(
            &server_uid,
            &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Host to pod: the bridge's connected route, no NAT.
    let mut stream = connect_when_listening(SocketAddr::from((server_ip, 8080)));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK\r\n"), "{response}");

    // Pod to pod across the bridge.
    let curl = in_pod(
        &client_uid,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{server_ip}:8080/"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200", "{curl:?}");

    // Pod to host at the gateway address, arriving from the pod's own IP.
    let listener = TcpListener::bind((net.gateway(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!(
        "import socket; socket.create_connection(('{}', {port}), 5).close()",
        net.gateway()
    );
    let status = in_pod(&client_uid, &["python3", "-c", &connect])
        .status()
        .unwrap();
    assert!(status.success());
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), client_ip);

    drop(_http);
    PodNetwork::teardown(&server_uid);
    PodNetwork::teardown(&client_uid);
    net.assert_torn_down();
    // Tearing down what is gone is not an error.
    PodNetwork::teardown(&server_uid);
}

#[test]
fn ten_pods_set_up_at_once() {
    let Some(mut net) = TestNet::new(1) else {
        return;
    };
    let pods: Vec<(String, Ipv4Addr)> = (1..=10).map(|n| net.pod(n)).collect();
    std::thread::scope(|threads| {
        let net = &net;
        let setups: Vec<_> = pods
            .iter()
            .map(|(uid, ip)| threads.spawn(move || net.setup(uid, *ip)))
            .collect();
        for setup in setups {
            assert!(setup.join().unwrap().netns_path().exists());
        }
    });
    assert_eq!(net.bridge_ports().len(), 10);
    for (_, ip) in &pods {
        assert_refused_from_host(*ip);
    }
    std::thread::scope(|threads| {
        for (uid, _) in &pods {
            threads.spawn(move || PodNetwork::teardown(uid));
        }
    });
    net.assert_torn_down();
}

#[test]
fn setup_replaces_the_leftovers_of_an_earlier_run() {
    let Some(mut net) = TestNet::new(2) else {
        return;
    };
    let (uid, first_ip) = net.pod(1);
    net.setup(&uid, first_ip);
    // An agent restarted after a crash sets the pod up again, here with another address.
    let second_ip = net.cidr.host(9).unwrap();
    let network = net.setup(&uid, second_ip);
    assert!(network.netns_path().exists());
    assert_eq!(net.bridge_ports().len(), 1);
    let addresses = ip(&[
        "-n",
        &netns(&uid),
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    assert_eq!(addresses.lines().count(), 1, "{addresses}");
    assert!(addresses.contains(&format!("inet {second_ip}/24 ")));
    assert_refused_from_host(second_ip);
    PodNetwork::teardown(&uid);
    net.assert_torn_down();
}

//! Shared harness for the integration tests: starts the real `skiff server` binary on a fresh
//! data directory and drives it with the real kubectl (and curl), as a user would.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The dispatcher that picks `kubectl.1.<minor>` from the server's `/version`.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// Directory holding the versioned kubectl binaries (`kubectl.1.29` ... `kubectl.1.33`).
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// How long the server may take to print its ready line. Generous: a debug build on a busy
/// 2-core machine is much slower than the < 300 ms target of a release build.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long any single kubectl or curl invocation may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The absolute path of a file under the repository's `examples/` directory.
pub fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(relative)
        .canonicalize()
        .unwrap_or_else(|e| panic!("examples/{relative}: {e}"))
}

/// A running `skiff server` on its own data directory. Killed (and its directories removed)
/// on drop; `restart` keeps the data directory.
pub struct Server {
    child: Child,
    data_dir: TempDir,
    /// Discovery and OpenAPI cache of the kubectl runs (`--cache-dir`), so that no test reads
    /// another server's cached discovery from `~/.kube/cache`.
    cache_dir: TempDir,
    /// Scratch space for files a test writes (manifests, editor scripts, kubeconfig copies).
    scratch: TempDir,
    log_path: PathBuf,
    /// `https://127.0.0.1:<port>` as printed on the ready line.
    pub url: String,
    /// The port the server listens on.
    pub port: u16,
    /// Flags given to `skiff server` after `--data-dir` and `--listen`, kept for `restart`.
    extra_args: Vec<String>,
}

impl Server {
    /// Starts a server on a new, empty data directory and an ephemeral port.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server like [`Server::start`], passing `extra_args` (e.g. `--sim-nodes 3`) to
    /// `skiff server`; [`Server::restart`] passes them again.
    pub fn start_with(extra_args: &[&str]) -> Server {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let extra_args = [local_runtime_default(&extra_args), extra_args].concat();
        let data_dir = tempfile::Builder::new()
            .prefix("skiff-data-")
            .tempdir()
            .expect("creating the data dir");
        let scratch = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir()
            .expect("creating the scratch dir");
        let log_path = scratch.path().join("server.log");
        let (child, url, port) =
            spawn_server(data_dir.path(), "127.0.0.1:0", &extra_args, &log_path);
        let cache_dir = tempfile::Builder::new()
            .prefix("skiff-kubecache-")
            .tempdir()
            .expect("creating the cache dir");
        Server {
            child,
            data_dir,
            cache_dir,
            scratch,
            log_path,
            url,
            port,
            extra_args,
        }
    }

    /// Stops the server (SIGKILL: nothing acknowledged may be lost) and starts it again on the
    /// same data directory and port, so that an old kubeconfig keeps pointing at it.
    pub fn restart(&mut self) {
        self.stop();
        let listen = format!("127.0.0.1:{}", self.port);
        let (child, url, port) = spawn_server(
            self.data_dir.path(),
            &listen,
            &self.extra_args,
            &self.log_path,
        );
        assert_eq!(
            url, self.url,
            "the restarted server announces a different URL"
        );
        self.child = child;
        self.port = port;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The data directory given to `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// `<data-dir>/kubeconfig.yaml`, written by the server with admin credentials.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    /// The kubeconfig parsed into JSON.
    pub fn kubeconfig_value(&self) -> Value {
        let text = std::fs::read_to_string(self.kubeconfig()).expect("reading kubeconfig.yaml");
        serde_saphyr::from_str(&text).expect("kubeconfig.yaml is YAML")
    }

    /// The admin bearer token from the kubeconfig.
    pub fn token(&self) -> String {
        self.kubeconfig_value()["users"][0]["user"]["token"]
            .as_str()
            .expect("kubeconfig has users[0].user.token")
            .to_owned()
    }

    /// Writes `contents` to `name` in this test's scratch directory and returns the path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A kubectl invocation through the dispatcher with this server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        Kubectl {
            binary: PathBuf::from(KUBECTL),
            args: args.iter().map(|a| a.to_string()).collect(),
            kubeconfig: self.kubeconfig(),
            cache_dir: self.cache_dir.path().to_owned(),
            env: Vec::new(),
            stdin: None,
            terminal: false,
        }
    }

    /// Runs `kubectl args` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.kubectl(args).run()
    }

    /// Runs `kubectl args`, fails the test unless it exits 0, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args).run().success()
    }

    /// Runs `kubectl args -o json` and parses the result.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("kubectl {args:?} -o json printed no JSON ({e}):\n{stdout}"))
    }

    /// Runs curl against this server: `curl -k -sS <extra args> <url><path>`, returning the
    /// HTTP status code and the body. `token` adds `Authorization: Bearer <token>`.
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> (u16, String) {
        let mut command = Command::new("curl");
        command.args(["-k", "-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}"]);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        command.args(extra).arg(format!("{}{path}", self.url));
        let output = run_with_timeout(command, None, COMMAND_TIMEOUT);
        assert!(
            output.code == 0,
            "curl {method} {path} failed: {}",
            output.stderr
        );
        let (body, code) = output
            .stdout
            .rsplit_once('\n')
            .expect("curl printed the status code");
        (
            code.trim().parse().expect("curl status code"),
            body.to_owned(),
        )
    }

    /// Starts `kubectl args` in the background (for `get -w`); killed on drop.
    pub fn spawn(&self, args: &[&str]) -> Background {
        self.kubectl(args).spawn()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        remove_process_pods(&self.data_dir.path().join("agent"));
        if std::thread::panicking() {
            // The server's own log is the first thing to read when a test fails.
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of the skiff server log ({}) ----",
                self.log_path.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The tests' pods use images (nginx, ...) without commands, which only the simulated runtime
/// runs: the local node is simulated unless a test picks its runtime. A test server that runs
/// real processes gets a cluster CIDR of its own, so that pods of servers running at once never
/// share an IP on the node's bridge.
fn local_runtime_default(extra_args: &[String]) -> Vec<String> {
    let given = |flag: &str| extra_args.iter().any(|a| a.starts_with(flag));
    if !given("--local-runtime") {
        return vec!["--local-runtime".into(), "sim".into()];
    }
    if given("--cluster-cidr") {
        return Vec::new();
    }
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let second_octet = 64 + (std::process::id().wrapping_mul(7).wrapping_add(n)) % 160;
    vec!["--cluster-cidr".into(), format!("10.{second_octet}.0.0/16")]
}

/// Kills what a stopped server's process runtime left running under `agent_root` (a server
/// stopping does not stop its pods, as a kubelet's does not) and removes the pods' network
/// namespaces: killing a pod's sandbox, PID 1 of its PID namespace, ends all its processes.
fn remove_process_pods(agent_root: &Path) {
    let Ok(pods) = std::fs::read_dir(agent_root.join("pods")) else {
        return;
    };
    for pod in pods.flatten() {
        let state: Value = std::fs::read(pod.path().join("state.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let sandbox = state["sandbox"]["pid"].as_i64();
        let runs = state["runs"].as_object().into_iter().flatten();
        // Without a sandbox (no isolation) each container leads its own process group.
        let groups = runs.filter_map(|(_, run)| run["process"]["pid"].as_i64());
        for pid in sandbox.into_iter().chain(groups.map(|pid| -pid)) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let netns = format!("skiff-{}", pod.file_name().to_string_lossy());
        let _ = Command::new("ip")
            .args(["netns", "delete", &netns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts `skiff server` and waits for `skiff server ready at <url> in <n> ms` followed by
/// `kubeconfig: <path>`. Returns the child, the URL and the port.
fn spawn_server(
    data_dir: &Path,
    listen: &str,
    extra_args: &[String],
    log_path: &Path,
) -> (Child, String, u16) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("opening the server log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", listen])
        .args(extra_args)
        .env("SKIFF_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("starting skiff server");
    let lines = line_channel(child.stdout.take().expect("piped stdout"));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut next_line = |what: &str| match lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!("skiff server printed no {what} line within {STARTUP_TIMEOUT:?}; log:\n{log}");
        }
    };
    let ready = next_line("ready");
    let (url, millis) = ready
        .strip_prefix("skiff server ready at ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|rest| rest.split_once(" in "))
        .unwrap_or_else(|| panic!("unexpected first line from skiff server: {ready:?}"));
    millis
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("ready line without a millisecond count: {ready:?}"));
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("ready line without https://127.0.0.1:<port>: {ready:?}"));
    let kubeconfig_line = next_line("kubeconfig");
    assert_eq!(
        kubeconfig_line,
        format!("kubeconfig: {}", data_dir.join("kubeconfig.yaml").display()),
        "second line from skiff server"
    );
    // Keep draining stdout so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.iter() {});
    (child, url.to_owned(), port)
}

/// Forwards each line read from `reader` to the returned channel, from a helper thread.
fn line_channel(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// A kubectl invocation being assembled.
pub struct Kubectl {
    binary: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    terminal: bool,
}

impl Kubectl {
    /// Uses `kubectl.1.<minor>` directly instead of the dispatcher.
    pub fn version(mut self, minor: u32) -> Self {
        self.binary = Path::new(KUBECTL_DIR).join(format!("kubectl.1.{minor}"));
        self
    }

    /// Uses another kubeconfig file (e.g. a copy with a wrong token).
    pub fn kubeconfig(mut self, path: &Path) -> Self {
        self.kubeconfig = path.to_owned();
        self
    }

    /// Uses another discovery cache directory (e.g. an empty one, to force rediscovery).
    pub fn cache_dir(mut self, path: &Path) -> Self {
        self.cache_dir = path.to_owned();
        self
    }

    /// Sets an environment variable for kubectl (e.g. `EDITOR`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs kubectl on a pseudo-terminal (through util-linux's `script`), as a user typing
    /// `kubectl exec -it` does; its output then has the terminal's `\r\n` line ends.
    pub fn on_terminal(mut self) -> Self {
        self.terminal = true;
        self
    }

    /// Feeds `input` to kubectl's standard input (for `-f -`).
    pub fn stdin(mut self, input: &str) -> Self {
        self.stdin = Some(input.to_owned());
        self
    }

    fn command(&self) -> Command {
        let mut command = if self.terminal {
            let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
            let line: Vec<String> = [self.binary.to_str().unwrap(), "--cache-dir"]
                .into_iter()
                .chain([self.cache_dir.to_str().unwrap()])
                .chain(self.args.iter().map(String::as_str))
                .map(quote)
                .collect();
            let mut script = Command::new("script");
            script.args(["-qec", &line.join(" "), "/dev/null"]);
            script
        } else {
            let mut command = Command::new(&self.binary);
            command
                .arg("--cache-dir")
                .arg(&self.cache_dir)
                .args(&self.args);
            command
        };
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Starts kubectl in the background (killed when the handle drops).
    pub fn spawn(&self) -> Background {
        Background::spawn(self.command())
    }

    /// Runs kubectl to completion (bounded by [`COMMAND_TIMEOUT`]).
    pub fn run(&self) -> Output {
        let mut output = run_with_timeout(self.command(), self.stdin.as_deref(), COMMAND_TIMEOUT);
        output.description = format!("{} {}", self.binary.display(), self.args.join(" "));
        output
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The command line, for failure messages.
    pub description: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails the test unless the command exited 0; returns stdout.
    #[track_caller]
    pub fn success(self) -> String {
        assert!(
            self.code == 0,
            "`{}` exited {}\nstdout:\n{}\nstderr:\n{}",
            self.description,
            self.code,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Fails the test unless the command exited 1 (kubectl's exit code for every error); returns
    /// stderr.
    #[track_caller]
    pub fn failure(self) -> String {
        assert!(
            self.code == 1,
            "`{}` exited {} (expected 1)\nstdout:\n{}\nstderr:\n{}",
            self.description,
            self.code,
            self.stdout,
            self.stderr
        );
        self.stderr
    }
}

/// Runs `command`, feeding it `stdin`, and kills it if it runs longer than `timeout`.
fn run_with_timeout(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {description}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    }
    let stdout = read_all_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_all_in_background(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        description,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_all_in_background(
    mut reader: impl Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    })
}

/// A long-running kubectl (such as `get -w`) whose stdout is read line by line. Killed on drop.
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    fn spawn(mut command: Command) -> Background {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {description}: {e}"));
        let lines = line_channel(child.stdout.take().expect("piped stdout"));
        let stderr = read_all_in_background(child.stderr.take().expect("piped stderr"));
        Background {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits for the next line that satisfies `wanted`, skipping others; fails the test after
    /// [`COMMAND_TIMEOUT`] or when the process ends first. Returns the matching line.
    #[track_caller]
    pub fn wait_for_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {what} within {COMMAND_TIMEOUT:?}; lines so far: {seen:#?}"
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    let stderr = self
                        .stderr
                        .take()
                        .and_then(|reader| reader.join().ok())
                        .unwrap_or_default();
                    panic!(
                        "the command ended before printing a line with {what}; lines: {seen:#?}\nstderr:\n{stderr}"
                    );
                }
            }
        }
    }
}

impl Background {
    /// Waits for the command to exit on its own (failing the test after [`COMMAND_TIMEOUT`])
    /// and returns its exit code and everything it wrote to stderr.
    #[track_caller]
    pub fn wait_for_exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the command did not exit within {COMMAND_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status.code(), stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `probe` every 200 ms until it returns `Ok`, and returns that value; fails the test
/// with `what` and the last `Err` (a description of what was seen) if `timeout` passes first.
#[track_caller]
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {timeout:?}; last seen:\n{last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Splits kubectl's column output into rows of (header, cell) pairs, using the positions
/// where the header's column names start (kubectl pads cells to those positions).
pub fn parse_table(text: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let mut starts = Vec::new();
    let mut previous = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && previous == ' ' && (i == 0 || header[..i].ends_with("  ")) {
            starts.push(i);
        }
        previous = c;
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            header[start..starts.get(n + 1).copied().unwrap_or(header.len())]
                .trim()
                .to_owned()
        })
        .collect();
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &start)| {
                    let end = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    let cell = if n + 1 == starts.len() {
                        line.get(start..).unwrap_or("")
                    } else {
                        line.get(start.min(end)..end).unwrap_or("")
                    };
                    (names[n].clone(), cell.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

/// The cell under `column` in a row from [`parse_table`].
#[track_caller]
pub fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(name, _)| name == column)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}

/// The row of `table` whose NAME cell is `name`.
#[track_caller]
pub fn row<'a>(table: &'a [Vec<(String, String)>], name: &str) -> &'a [(String, String)] {
    table
        .iter()
        .find(|r| cell(r, "NAME") == name)
        .unwrap_or_else(|| panic!("no row named {name} in {table:?}"))
}

/// A Namespace manifest.
pub fn namespace_manifest(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// Creates namespace `name` with `kubectl apply`, which sends JSON. (`kubectl create namespace`
/// sends protobuf; that has its own test, so that a protobuf problem fails one test, not all.)
pub fn create_namespace(server: &Server, name: &str) {
    let stdout = server
        .kubectl(&["apply", "-f", "-"])
        .stdin(&namespace_manifest(name))
        .run()
        .success();
    assert_eq!(stdout, format!("namespace/{name} created\n"));
}

/// Creates a ConfigMap with one entry with `kubectl apply` (JSON, like [`create_namespace`]).
pub fn create_config_map(server: &Server, namespace: &str, name: &str, key: &str, value: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {key}: {value:?}\n"
    );
    let stdout = server
        .kubectl(&["apply", "-n", namespace, "-f", "-"])
        .stdin(&manifest)
        .run()
        .success();
    assert_eq!(stdout, format!("configmap/{name} created\n"));
}

/// Creates namespace `name` and applies `examples/seed/deployment.yaml` into it.
pub fn apply_seed_deployment(server: &Server, namespace: &str) {
    create_namespace(server, namespace);
    let manifest = example("seed/deployment.yaml");
    assert_eq!(
        server.ok(&["apply", "-n", namespace, "-f", manifest.to_str().unwrap()]),
        "persistentvolumeclaim/demo-volume-claim created\ndeployment.apps/nginx-deployment created\n"
    );
}

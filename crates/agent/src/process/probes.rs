//! Startup, liveness and readiness probes as the kubelet's prober runs them: each probe waits
//! `initialDelaySeconds`, then runs every `periodSeconds` with `timeoutSeconds`, and its result
//! flips after `successThreshold` successes or `failureThreshold` failures in a row. Liveness
//! and readiness wait for the startup probe; a failed startup or liveness probe asks for the
//! container to be restarted.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the probes of one container run report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The startup probe succeeded (or there is none): the container is `started`.
    Started,
    /// The readiness result changed (without a readiness probe: ready once started).
    Ready(bool),
    /// The startup or liveness probe failed `failureThreshold` times: restart the container.
    Failed {
        /// `startup` or `liveness`.
        probe: &'static str,
        /// The last failure's message.
        message: String,
    },
}

/// Runs an exec probe's command in the container, resolving to its exit code.
pub type ExecProbe = Box<
    dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<i32, String>> + Send>> + Send + Sync,
>;

/// Where a container's probes connect and how they exec.
pub struct ProbeTarget {
    /// The default host of httpGet and tcpSocket probes (the pod's IP).
    pub host: IpAddr,
    /// Runs exec probes.
    pub exec: ExecProbe,
}

/// Upstream's defaults for unset probe fields.
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Timing {
    fn of(probe: &Probe) -> Self {
        let seconds = |value: Option<i32>, default: i32| {
            Duration::from_secs(value.unwrap_or(default).max(0) as u64)
        };
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Resolves a probe's port: a number, or the name of one of the container's ports.
fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name)),
    }
}

/// Runs one probe attempt: `Ok` on success, the failure message otherwise.
pub async fn probe_once(
    probe: &Probe,
    container: &Container,
    target: &ProbeTarget,
) -> Result<(), String> {
    let timeout = Timing::of(probe).timeout;
    let attempt = async {
        if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            match (target.exec)(command).await? {
                0 => Ok(()),
                code => Err(format!("command terminated with exit code {code}")),
            }
        } else if let Some(http) = &probe.http_get {
            let host = match http.host.as_deref().filter(|h| !h.is_empty()) {
                Some(host) => host.to_string(),
                None => target.host.to_string(),
            };
            let port = port(container, &http.port)?;
            let path = http
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or("/".into());
            http_get(
                http.scheme.as_deref() == Some("HTTPS"),
                &host,
                port,
                &path,
                http.http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.as_str(), h.value.as_str())),
            )
            .await
        } else if let Some(tcp) = &probe.tcp_socket {
            let host = tcp.host.clone().unwrap_or_else(|| target.host.to_string());
            let port = port(container, &tcp.port)?;
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else {
            Err("gRPC probes are not supported by the process runtime".into())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {}s", timeout.as_secs())))
}

/// An HTTP/1.1 GET as the kubelet sends it, over TLS with `https`; 2xx and 3xx are
/// successes.
async fn http_get<'a>(
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", authority(host, port));
    let failed = |e: &dyn std::fmt::Display| format!("Get \"{url}\": {e}");
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| failed(&format!("dial tcp {}: {e}", authority(host, port))))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n",
        authority(host, port)
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let response = if https {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| failed(&e))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls())
            .connect(name, stream)
            .await
            .map_err(|e| failed(&e))?;
        exchange(tls, &request).await
    } else {
        exchange(stream, &request).await
    }
    .map_err(|e| failed(&e))?;
    let status_line = String::from_utf8_lossy(&response[..response.len().min(64)]);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| failed(&"malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Sends `request` and reads the response: upstream reads up to 10 KiB of it, and reading it
/// (rather than dropping the connection with data unread, which resets it) spares the server
/// an error. A TLS server that closes without `close_notify` has still answered.
async fn exchange<S>(mut stream: S, request: &str) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    match (&mut stream)
        .take(10 * 1024)
        .read_to_end(&mut response)
        .await
    {
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        result => {
            result?;
        }
    }
    Ok(response)
}

/// TLS that accepts any server certificate, as the kubelet's HTTPS probes do
/// (`InsecureSkipVerify`): a probe asks whether the container answers, not who it is. The
/// handshake's signatures are still checked.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Takes any certificate; checks the handshake's signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Runs the container's probes for one run, reporting on `events` until the run ends (the
/// receiver is dropped) or a probe asks for a restart.
pub async fn run(container: Container, target: ProbeTarget, events: mpsc::Sender<ProbeEvent>) {
    let send = |event| {
        let events = events.clone();
        async move { events.send(event).await.is_ok() }
    };
    if let Some(startup) = &container.startup_probe {
        let timing = Timing::of(startup);
        tokio::time::sleep(timing.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe_once(startup, &container, &target).await {
                Ok(()) => break,
                Err(message) => {
                    failures += 1;
                    if failures >= timing.failure_threshold {
                        send(ProbeEvent::Failed {
                            probe: "startup",
                            message,
                        })
                        .await;
                        return;
                    }
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    }
    if !send(ProbeEvent::Started).await {
        return;
    }
    let readiness = async {
        let Some(probe) = &container.readiness_probe else {
            send(ProbeEvent::Ready(true)).await;
            return std::future::pending().await;
        };
        let timing = Timing::of(probe);
        tokio::time::sleep(timing.initial_delay).await;
        let (mut ready, mut successes, mut failures) = (false, 0, 0);
        loop {
            match probe_once(probe, &container, &target).await {
                Ok(()) => (successes, failures) = (successes + 1, 0),
                Err(_) => (successes, failures) = (0, failures + 1),
            }
            let now_ready = if successes >= timing.success_threshold {
                true
            } else if failures >= timing.failure_threshold {
                false
            } else {
                ready
            };
            if now_ready != ready {
                ready = now_ready;
                if !send(ProbeEvent::Ready(ready)).await {
                    return;
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let liveness = async {
        let Some(probe) = &container.liveness_probe else {
            return std::future::pending().await;
        };
        let timing = Timing::of(probe);
        tokio::time::sleep(timing.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe_once(probe, &container, &target).await {
                Ok(()) => failures = 0,
                Err(message) => {
                    failures += 1;
                    if failures >= timing.failure_threshold {
                        send(ProbeEvent::Failed {
                            probe: "liveness",
                            message,
                        })
                        .await;
                        return;
                    }
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}

/// The host probes use when the pod has no IP of its own.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ProbeTarget {
        ProbeTarget {
            host: LOCALHOST,
            exec: Box::new(|command: Vec<String>| {
                Box::pin(async move { Ok(if command == ["true"] { 0 } else { 1 }) })
            }),
        }
    }

    fn probe(json: serde_json::Value) -> Probe {
        serde_json::from_value(json).unwrap()
    }

    fn container() -> Container {
        serde_json::from_value(
            serde_json::json!({"name": "web", "ports": [{"name": "http", "containerPort": 1}]}),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn http_tcp_and_exec_probes_report_upstream_results() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable", "200 OK"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let read = socket.read(&mut buffer).await.unwrap();
                let request = String::from_utf8_lossy(&buffer[..read]).to_string();
                assert!(
                    request.starts_with("GET /healthz HTTP/1.1\r\n"),
                    "{request}"
                );
                assert!(request.contains("User-Agent: kube-probe/1.33\r\n"));
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let http = probe(serde_json::json!({"httpGet": {"path": "/healthz", "port": port}}));
        let target = target();
        assert_eq!(probe_once(&http, &container(), &target).await, Ok(()));
        assert_eq!(
            probe_once(&http, &container(), &target).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        let tcp = probe(serde_json::json!({"tcpSocket": {"port": port}}));
        assert_eq!(probe_once(&tcp, &container(), &target).await, Ok(()));
        let exec = probe(serde_json::json!({"exec": {"command": ["false"]}}));
        assert_eq!(
            probe_once(&exec, &container(), &target).await,
            Err("command terminated with exit code 1".into())
        );
        let named = probe(serde_json::json!({"tcpSocket": {"port": "metrics"}}));
        assert_eq!(
            probe_once(&named, &container(), &target).await,
            Err("couldn't find port: metrics in web".into())
        );
    }

    #[tokio::test]
    async fn https_probes_take_any_certificate() {
        // A self-signed certificate for a name the probe does not even use.
        let signed = rcgen::generate_simple_self_signed(vec!["elsewhere.example".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(signed.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![signed.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (socket, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(socket).await.unwrap();
                let mut buffer = [0u8; 1024];
                let read = tls.read(&mut buffer).await.unwrap();
                assert!(buffer[..read].starts_with(b"GET /secure HTTP/1.1\r\n"));
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                tls.write_all(response.as_bytes()).await.unwrap();
                // Closed without close_notify, as many servers do.
            }
        });
        let https = probe(serde_json::json!(
            {"httpGet": {"path": "/secure", "port": port, "scheme": "HTTPS"}}
        ));
        let target = target();
        assert_eq!(probe_once(&https, &container(), &target).await, Ok(()));
        assert_eq!(
            probe_once(&https, &container(), &target).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        // A plain HTTP server is not TLS: the handshake fails, with the URL in the message.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = plain.accept().await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        });
        let mismatched = probe(serde_json::json!(
            {"httpGet": {"port": plain_port, "scheme": "HTTPS"}}
        ));
        let err = probe_once(&mismatched, &container(), &target)
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!("Get \"https://127.0.0.1:{plain_port}/\": ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn liveness_fails_after_the_failure_threshold_and_readiness_follows_results() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "web",
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            "livenessProbe": {"exec": {"command": ["false"]}, "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 2},
        }))
        .unwrap();
        let (sender, mut events) = mpsc::channel(8);
        let started = tokio::time::Instant::now();
        tokio::spawn(run(container, target(), sender));
        assert_eq!(events.recv().await, Some(ProbeEvent::Started));
        assert_eq!(events.recv().await, Some(ProbeEvent::Ready(true)));
        let failed = events.recv().await;
        assert_eq!(
            failed,
            Some(ProbeEvent::Failed {
                probe: "liveness",
                message: "command terminated with exit code 1".into()
            })
        );
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_secs(2)..Duration::from_millis(2900)).contains(&elapsed),
            "1 s delay, then two failures 1 s apart: {elapsed:?}"
        );
    }
}

//! The kubelet's HTTP server: what the API server proxies `pods/log`, `pods/exec` and
//! `pods/portforward` to.
//!
//! * `GET /containerLogs/{namespace}/{pod}/{container}` streams the container's log (see
//!   [`logs`]) as upstream's kubelet, with its errors (`container "c" in pod "p" is waiting to
//!   start: ContainerCreating`) as `400` plain text, which the API server turns into `Status`es.
//! * `GET|POST /exec/{namespace}/{pod}/{container}?command=..` upgrades to a WebSocket speaking
//!   `v5.channel.k8s.io` or `v4.channel.k8s.io`, or to SPDY/3.1 speaking `v4.channel.k8s.io`
//!   (see [`exec`]).
//! * `GET|POST /portForward/{namespace}/{pod}` upgrades to SPDY/3.1 speaking
//!   `portforward.k8s.io` (see [`portforward`]).
//!
//! Plain HTTP with a bearer token the API server presents (ADR 13): the API server is the only
//! client, and pods reach the node IP too.

pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;

use crate::runtime::Runtime;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::core::v1::ContainerStatus;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// A response body: whole or streamed.
pub type KubeletBody = BoxBody<Bytes, Infallible>;

/// A pod the agent hosts, as the kubelet server needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRef {
    /// `metadata.uid`, the runtime's key.
    pub uid: String,
    /// The names of its init and app containers.
    pub containers: Vec<String>,
}

/// Finds a hosted pod by namespace and name.
pub type PodLookup = Arc<dyn Fn(&str, &str) -> Option<PodRef> + Send + Sync>;

/// The kubelet server's state.
pub struct Kubelet {
    runtime: Arc<dyn Runtime>,
    pods: PodLookup,
    /// The bearer token every request must carry.
    token: String,
}

impl Kubelet {
    /// A kubelet server for `runtime`'s pods, found through `pods`, answering only requests
    /// with `Authorization: Bearer <token>`.
    pub fn new(runtime: Arc<dyn Runtime>, pods: PodLookup, token: String) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            pods,
            token,
        })
    }

    /// Serves HTTP/1.1 (with upgrades) on `listener` until the future is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "kubelet server: accept failed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let kubelet = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let kubelet = kubelet.clone();
                    async move { Ok::<_, Infallible>(kubelet.handle(req, peer).await) }
                });
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%peer, %err, "kubelet connection ended with an error");
                }
            });
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<KubeletBody> {
        if !self.authorized(&req) {
            tracing::debug!(%peer, path = req.uri().path(), "kubelet server: unauthorized");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        let path: Vec<String> = req
            .uri()
            .path()
            .trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        match (req.method(), path.as_slice()) {
            (&Method::GET, [route, namespace, pod, container]) if route == "containerLogs" => {
                self.container_logs(namespace, pod, container, &query)
            }
            (&Method::GET | &Method::POST, [route, namespace, pod, container])
                if route == "exec" =>
            {
                let namespace = namespace.clone();
                let pod = pod.clone();
                let container = container.clone();
                self.exec(req, &namespace, &pod, &container, &query)
            }
            (&Method::GET | &Method::POST, [route, namespace, pod]) if route == "portForward" => {
                let namespace = namespace.clone();
                let pod = pod.clone();
                self.port_forward(req, &namespace, &pod)
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        presented.len() == self.token.len()
            && presented
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The pod, or the kubelet's 404 message.
    fn find_pod(&self, namespace: &str, pod: &str) -> Result<PodRef, String> {
        (self.pods)(namespace, pod).ok_or_else(|| format!("pod \"{pod}\" does not exist"))
    }

    /// The pod and the runtime status of its container, or the kubelet's 404 message.
    fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(PodRef, Option<ContainerStatus>), String> {
        let found = self.find_pod(namespace, pod)?;
        if !found.containers.iter().any(|c| c == container) {
            return Err(format!(
                "container \"{container}\" not found in pod \"{pod}\""
            ));
        }
        let status = self.runtime.pod_status(&found.uid).and_then(|s| {
            s.container_statuses
                .into_iter()
                .chain(s.init_container_statuses)
                .find(|c| c.name == container)
        });
        Ok((found, status))
    }

    fn container_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        query: &[(String, String)],
    ) -> Response<KubeletBody> {
        let options = match logs::LogOptions::from_query(query, jiff::Timestamp::now()) {
            Ok(options) => options,
            Err(message) => return text(StatusCode::BAD_REQUEST, &message),
        };
        let (found, status) = match self.find_container(namespace, pod, container) {
            Ok(found) => found,
            Err(message) => return text(StatusCode::NOT_FOUND, &message),
        };
        let run = match log_run(pod, container, status.as_ref(), options.previous) {
            Ok(run) => run,
            Err(message) => return text(StatusCode::BAD_REQUEST, &message),
        };
        let path = match run {
            LogRun::Current => self.runtime.container_log(&found.uid, container, false),
            LogRun::Previous => self.runtime.container_log(&found.uid, container, true),
            // A container waiting to restart: the run that ended is its latest.
            LogRun::LastEnded => self
                .runtime
                .container_log(&found.uid, container, false)
                .or_else(|| self.runtime.container_log(&found.uid, container, true)),
        };
        // A runtime that keeps no logs (the simulator) has nothing to show, as an empty file.
        let Some(path) = path else {
            return streamed_text(empty_stream());
        };
        let container_id = status.and_then(|s| s.container_id);
        let following_current = matches!(run, LogRun::Current);
        let runtime = self.runtime.clone();
        let uid = found.uid.clone();
        let container = container.to_string();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        tokio::task::spawn_blocking(move || {
            // Following ends when the container stops, or when the client went away.
            let running = || {
                following_current
                    && !tx.is_closed()
                    && runtime
                        .pod_status(&uid)
                        .and_then(|s| {
                            s.container_statuses
                                .into_iter()
                                .chain(s.init_container_statuses)
                                .find(|c| c.name == container)
                        })
                        .is_some_and(|c| {
                            c.container_id == container_id
                                && c.state.is_some_and(|s| s.running.is_some())
                        })
            };
            if let Err(err) = logs::stream_logs(&path, &options, &running, &mut |chunk| {
                tx.blocking_send(chunk).is_ok()
            }) {
                tracing::debug!(path = %path.display(), %err, "reading a container log");
            }
        });
        streamed_text(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        }))
    }
}

/// Which run of a container a log request reads.
#[derive(Debug, PartialEq)]
enum LogRun {
    /// The one running, or the one that just ended.
    Current,
    /// The one before (`previous=true`).
    Previous,
    /// The container waits to start again: the last run that ended.
    LastEnded,
}

/// Which run to read, or upstream kubelet's error (`validateContainerLogStatus`) for a
/// container with no such run.
fn log_run(
    pod: &str,
    container: &str,
    status: Option<&ContainerStatus>,
    previous: bool,
) -> Result<LogRun, String> {
    let Some(status) = status else {
        return Err(format!(
            "container \"{container}\" in pod \"{pod}\" is not available"
        ));
    };
    let state = status.state.clone().unwrap_or_default();
    let last_terminated = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let ended_before =
        last_terminated.is_some_and(|t| t.container_id.as_deref().is_some_and(|id| !id.is_empty()));
    if previous {
        return if ended_before {
            Ok(LogRun::Previous)
        } else {
            Err(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))
        };
    }
    if state.running.is_some() {
        return Ok(LogRun::Current);
    }
    if let Some(terminated) = &state.terminated {
        return match (
            terminated
                .container_id
                .as_deref()
                .filter(|id| !id.is_empty()),
            ended_before,
        ) {
            (Some(_), _) => Ok(LogRun::Current),
            (None, true) => Ok(LogRun::LastEnded),
            (None, false) => Err(format!(
                "container \"{container}\" in pod \"{pod}\" is terminated"
            )),
        };
    }
    if last_terminated.is_some() {
        return if ended_before {
            Ok(LogRun::LastEnded)
        } else {
            Err(format!(
                "container \"{container}\" in pod \"{pod}\" is terminated"
            ))
        };
    }
    match state.waiting.and_then(|w| w.reason) {
        Some(reason) if reason == "ErrImagePull" => Err(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: image can't be pulled"
        )),
        Some(reason) if reason == "ImagePullBackOff" => Err(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: trying and failing to pull image"
        )),
        Some(reason) => Err(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}"
        )),
        None => Err(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start - no logs yet"
        )),
    }
}

/// 32 random bytes from the kernel, hex-encoded: a kubelet token nobody else knows.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `session` on the connection once `req` has been upgraded, in a task of its own (the
/// `101` response must be returned first); `what` names it in the log when the upgrade fails.
fn on_upgrade<F, Fut>(req: &mut Request<Incoming>, what: &'static str, session: F)
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => session(hyper_util::rt::TokioIo::new(upgraded)).await,
            Err(err) => tracing::debug!(%err, what, "upgrade failed"),
        }
    });
}

/// Whether `req` asks to upgrade to `protocol` (its `Upgrade` header, case-insensitively).
fn upgrades_to<B>(req: &Request<B>, protocol: &str) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(protocol))
}

/// A plain-text response, as the kubelet writes its errors.
fn text(status: StatusCode, message: &str) -> Response<KubeletBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty_stream() -> impl futures::Stream<Item = Bytes> + Send + Sync + 'static {
    futures::stream::empty()
}

/// A `200` whose text body is streamed (chunked) as it is produced.
fn streamed_text(
    chunks: impl futures::Stream<Item = Bytes> + Send + Sync + 'static,
) -> Response<KubeletBody> {
    use futures::StreamExt;
    let body = StreamBody::new(chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn status(state: ContainerState, last: Option<ContainerStateTerminated>) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            state: Some(state),
            last_state: last.map(|t| ContainerState {
                terminated: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }
    }

    fn ended(id: &str) -> ContainerStateTerminated {
        ContainerStateTerminated {
            container_id: Some(id.into()),
            exit_code: 1,
            ..Default::default()
        }
    }

    #[test]
    fn log_runs_and_upstream_errors() {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        assert_eq!(
            log_run("p", "app", Some(&status(running.clone(), None)), false),
            Ok(LogRun::Current)
        );
        assert_eq!(
            log_run("p", "app", Some(&status(running, None)), true),
            Err("previous terminated container \"app\" in pod \"p\" not found".into())
        );
        assert_eq!(
            log_run(
                "p",
                "app",
                Some(&status(waiting("ContainerCreating"), None)),
                false
            ),
            Err("container \"app\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
        let crash_looping = status(waiting("CrashLoopBackOff"), Some(ended("skiff://1")));
        assert_eq!(
            log_run("p", "app", Some(&crash_looping), false),
            Ok(LogRun::LastEnded)
        );
        assert_eq!(
            log_run("p", "app", Some(&crash_looping), true),
            Ok(LogRun::Previous)
        );
        assert_eq!(
            log_run("p", "app", None, false),
            Err("container \"app\" in pod \"p\" is not available".into())
        );
        assert_eq!(
            log_run(
                "p",
                "app",
                Some(&status(ContainerState::default(), None)),
                false
            ),
            Err("container \"app\" in pod \"p\" is waiting to start - no logs yet".into())
        );
    }
}

//! `kubectl port-forward` as the kubelet serves it over SPDY (`portforward.k8s.io`): for each
//! connection to a forwarded local port the client opens two streams with the same
//! `requestID` header, `streamType: error` and `streamType: data`, both naming the pod's
//! `port`. The data stream is joined to a TCP connection to that port on the pod's own
//! `localhost`; a failure is written, as text, to the error stream.
//!
//! kubectl 1.31 and later first try WebSocket (SPDY tunnelled through it); that upgrade is
//! refused here, and they fall back to SPDY as they do against older servers.

use super::spdy::{self, Stream, StreamReader, StreamWriter};
use super::{Kubelet, KubeletBody, on_upgrade, text, upgrades_to};
use crate::runtime::Runtime;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The streaming protocol served (`X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";

impl Kubelet {
    /// `/portForward/{namespace}/{pod}`: upgrades to SPDY and forwards each pair of streams
    /// the client opens.
    pub(super) fn port_forward(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        namespace: &str,
        pod: &str,
    ) -> Response<KubeletBody> {
        let found = match self.find_pod(namespace, pod) {
            Ok(found) => found,
            Err(message) => return text(StatusCode::NOT_FOUND, &message),
        };
        if !upgrades_to(&req, spdy::UPGRADE) {
            return text(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: port forwarding is served over SPDY/3.1",
            );
        }
        if let Some(refusal) = super::exec::spdy_refusal(&req, PROTOCOL) {
            return refusal;
        }
        let runtime = self.runtime.clone();
        let pod_name = format!("{pod}_{namespace}");
        on_upgrade(&mut req, "port-forward", move |upgraded| {
            serve(spdy::Session::start(upgraded), runtime, found.uid, pod_name)
        });
        super::exec::switching_to_spdy(PROTOCOL)
    }
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Pairs the client's streams by `requestID` and forwards each complete pair, until the
/// client ends the connection.
async fn serve(
    mut session: spdy::Session,
    runtime: Arc<dyn Runtime>,
    pod_uid: String,
    pod_name: String,
) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = session.accept().await {
        let Some(request) = stream.header("requestid").map(str::to_string) else {
            continue;
        };
        let pair = pending.entry(request.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => pair.error = Some(stream),
            Some("data") => pair.data = Some(stream),
            _ => continue,
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Pair {
                error: Some(error),
                data: Some(data),
            } = pending.remove(&request).expect("just filled")
            else {
                unreachable!("both streams are present");
            };
            let forward = Forward {
                runtime: runtime.clone(),
                pod_uid: pod_uid.clone(),
                pod_name: pod_name.clone(),
            };
            tokio::spawn(forward.run(error, data, session.closed()));
        }
    }
}

/// What forwarding a pair of streams needs to know.
struct Forward {
    runtime: Arc<dyn Runtime>,
    pod_uid: String,
    pod_name: String,
}

impl Forward {
    /// Connects to the data stream's port and copies both ways until the pod's side ends (or
    /// the client's connection does); reports a failure on the error stream.
    async fn run(
        self,
        error: Stream,
        data: Stream,
        session_closed: impl Future<Output = ()> + Send + 'static,
    ) {
        let port_header = data.header("port").unwrap_or_default().to_string();
        let (_, error) = error.split();
        let (from_client, to_client) = data.split();
        let result = match port_header.parse::<u16>() {
            Ok(port) if port > 0 => {
                tokio::select! {
                    result = self.copy(port, from_client, &to_client) => result,
                    () = session_closed => Ok(()),
                }
            }
            _ => Err(format!("unable to parse '{port_header}' as a port")),
        };
        if let Err(message) = result {
            let _ = error.write(message.as_bytes()).await;
        }
        let _ = to_client.finish().await;
        let _ = error.finish().await;
    }

    /// Joins the data stream to the pod's `localhost:port`.
    async fn copy(
        &self,
        port: u16,
        mut from_client: StreamReader,
        to_client: &StreamWriter,
    ) -> Result<(), String> {
        let runtime = self.runtime.clone();
        let uid = self.pod_uid.clone();
        let connected = tokio::task::spawn_blocking(move || runtime.port_forward(&uid, port))
            .await
            .map_err(|e| e.to_string())
            .and_then(|connected| connected)
            .and_then(|stream| {
                stream.set_nonblocking(true).map_err(|e| e.to_string())?;
                tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
            });
        let stream = connected.map_err(|err| {
            format!(
                "error forwarding port {port} to pod {}, uid {}: {err}",
                self.pod_name, self.pod_uid
            )
        })?;
        let (mut pod_read, mut pod_write) = stream.into_split();
        // Once the client's side ends, the pod is told (a half close) and may still answer.
        let inbound = async {
            while let Some(bytes) = from_client.read().await {
                if pod_write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = pod_write.shutdown().await;
            std::future::pending::<()>().await
        };
        let outbound = async {
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                match pod_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_client.write(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        // The pair ends when the pod's side does (as upstream's kubelet): kubectl closes its
        // local connection only after the streams end.
        tokio::select! {
            () = inbound => {}
            () = outbound => {}
        }
        Ok(())
    }
}

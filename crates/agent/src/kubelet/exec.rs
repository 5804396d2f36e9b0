//! `kubectl exec` as the kubelet streams it, over WebSocket (`v5.channel.k8s.io` and
//! `v4.channel.k8s.io`, kubectl 1.30 and later) or SPDY (`v4.channel.k8s.io`, older clients).
//! Both carry the same channels: stdin, stdout, stderr, the error channel (one `metav1.Status`
//! JSON when the command ends) and terminal resizes. Over WebSocket every binary message starts
//! with its channel number, and in v5 a message `[255, c]` closes channel `c` (stdin, when the
//! client's input ends); over SPDY each channel is a stream the client opens, named by its
//! `streamType` header, and a FIN ends it.

use super::spdy::{self, StreamReader, StreamWriter};
use super::{Kubelet, KubeletBody, on_upgrade, text, upgrades_to};
use crate::process::child::Child;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role};

/// The streaming subprotocols served over WebSocket, newest first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The streaming protocol served over SPDY (`X-Stream-Protocol-Version`).
pub const SPDY_PROTOCOL: &str = "v4.channel.k8s.io";

/// How long a SPDY client has to open the streams it asked for (the kubelet's default
/// `streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's "close this channel" message.
const CLOSE: u8 = 255;

/// What to run and which streams to attach (upstream's `remotecommand.Options`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Forward the client's input.
    pub stdin: bool,
    /// Send the command's standard output.
    pub stdout: bool,
    /// Send the command's standard error (never with a terminal, as upstream).
    pub stderr: bool,
    /// Run the command on a terminal (its output and errors are one stream, on stdout).
    pub tty: bool,
}

impl ExecOptions {
    /// Reads the query (`command` repeated, flags as `1` or `true`); the error is upstream's.
    pub fn from_query(query: &[(String, String)]) -> Result<Self, String> {
        let flag = |key: &str| {
            query
                .iter()
                .any(|(k, v)| k == key && matches!(v.as_str(), "1" | "true"))
        };
        let tty = flag("tty");
        let options = Self {
            command: query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr") && !tty,
            tty,
        };
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(options)
    }
}

/// The subprotocol to speak: the first the client offers that is served.
fn negotiate<B>(req: &Request<B>) -> Option<&'static str> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|offered| PROTOCOLS.into_iter().find(|p| *p == offered.trim()))
}

/// The `metav1.Status` the error channel carries for a command that ended with `code`, as
/// upstream's `ServeExec` writes it.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `metav1.Status` for a command that could not run (upstream's `NewInternalError`).
fn internal_error(message: &str) -> Value {
    let message = format!("error executing command in container: {message}");
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// Ends the session with a normal closure, which clients read as the end of every channel
/// (a close without a code is an error to client-go).
async fn close<S>(sink: &mut S)
where
    S: futures::Sink<Message> + Unpin,
{
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
}

/// A resize message's `{"Width": w, "Height": h}` (upstream's `TerminalSize`).
fn terminal_size(message: &[u8]) -> Option<(u16, u16)> {
    dimensions(&serde_json::from_slice(message).ok()?)
}

/// The width and height of a `TerminalSize` value.
fn dimensions(size: &Value) -> Option<(u16, u16)> {
    let dimension = |key: &str| size.get(key)?.as_u64()?.try_into().ok();
    Some((dimension("Width")?, dimension("Height")?))
}

/// Reads from a pipe that may be gone (then never ready); 0 at its end (for a terminal, the
/// EIO once the command and everything it started have closed it).
async fn read_pipe<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> usize {
    match pipe {
        Some(pipe) => pipe.read(buf).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

impl Kubelet {
    /// `/exec/{namespace}/{pod}/{container}`: checks the container runs, then upgrades to a
    /// WebSocket or SPDY connection and runs the command in a task of its own.
    pub(super) fn exec(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        namespace: &str,
        pod: &str,
        container: &str,
        query: &[(String, String)],
    ) -> Response<KubeletBody> {
        let options = match ExecOptions::from_query(query) {
            Ok(options) => options,
            Err(message) => return text(StatusCode::BAD_REQUEST, &message),
        };
        let (found, status) = match self.find_container(namespace, pod, container) {
            Ok(found) => found,
            Err(message) => return text(StatusCode::NOT_FOUND, &message),
        };
        let running = status.is_some_and(|s| s.state.is_some_and(|s| s.running.is_some()));
        if !running {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("container not found (\"{container}\")"),
            );
        }
        let runtime = self.runtime.clone();
        let container = container.to_string();
        let (command, tty) = (options.command.clone(), options.tty);
        let start = move || runtime.exec(&found.uid, &container, &command, tty);
        if upgrades_to(&req, spdy::UPGRADE) {
            return upgrade_to_spdy(&mut req, options, start);
        }
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
        let (Some(key), true) = (key, upgrades_to(&req, "websocket")) else {
            return text(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing upgrade headers in request (WebSocket or SPDY/3.1)",
            );
        };
        let Some(protocol) = negotiate(&req) else {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("requested protocol(s) are not supported; supports {PROTOCOLS:?}"),
            );
        };
        on_upgrade(&mut req, "exec", move |upgraded| async move {
            let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
            let (sink, source) = socket.split();
            let mut transport = WebSocketTransport {
                sink,
                source,
                v5: protocol == PROTOCOLS[0],
            };
            // An empty message on the first output channel tells the client the streams are
            // up.
            let first = if options.stdout {
                STDOUT
            } else if options.stderr {
                STDERR
            } else {
                ERROR
            };
            if transport.send(first, &[]).await {
                run_session(transport, start(), &options).await;
            }
        });
        let mut response = switching_protocols("websocket");
        let headers = response.headers_mut();
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes())
                .parse()
                .expect("base64 is a valid header value"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(protocol),
        );
        response
    }
}

/// A `101 Switching Protocols` response upgrading to `protocol`.
fn switching_protocols(protocol: &'static str) -> Response<KubeletBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, http::HeaderValue::from_static(protocol));
    headers.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    response
}

/// The `X-Stream-Protocol-Version` header of SPDY upgrades.
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Upstream's `403` refusal (`httpstream.Handshake`) unless the SPDY client offers `protocol`
/// in `X-Stream-Protocol-Version`.
pub(super) fn spdy_refusal<B>(req: &Request<B>, protocol: &str) -> Option<Response<KubeletBody>> {
    let offered: Vec<String> = req
        .headers()
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    if offered.iter().any(|p| p == protocol) {
        return None;
    }
    Some(text(
        StatusCode::FORBIDDEN,
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{protocol}\"]"
        ),
    ))
}

/// The `101` upgrading to SPDY with the negotiated `protocol`.
pub(super) fn switching_to_spdy(protocol: &'static str) -> Response<KubeletBody> {
    let mut response = switching_protocols(spdy::UPGRADE);
    response.headers_mut().insert(
        STREAM_PROTOCOL_HEADER,
        http::HeaderValue::from_static(protocol),
    );
    response
}

/// Upgrades an exec request to SPDY: once the client has opened the streams it asked for,
/// the command runs.
fn upgrade_to_spdy(
    req: &mut Request<Incoming>,
    options: ExecOptions,
    start: impl FnOnce() -> Result<Child, String> + Send + 'static,
) -> Response<KubeletBody> {
    if let Some(refusal) = spdy_refusal(req, SPDY_PROTOCOL) {
        return refusal;
    }
    on_upgrade(req, "exec", move |upgraded| async move {
        let session = spdy::Session::start(upgraded);
        let accepted = tokio::time::timeout(
            STREAM_CREATION_TIMEOUT,
            SpdyTransport::accept(session, &options),
        )
        .await;
        match accepted {
            Ok(Some(transport)) => run_session(transport, start(), &options).await,
            Ok(None) => tracing::debug!("exec: the client left before opening its streams"),
            Err(_) => tracing::debug!("exec: timed out waiting for the client's streams"),
        }
    });
    switching_to_spdy(SPDY_PROTOCOL)
}

/// What the client of a session sends.
enum ClientEvent {
    /// Input for the command.
    Stdin(Bytes),
    /// The end of the input.
    StdinClosed,
    /// The terminal's new width and height.
    Resize(u16, u16),
    /// The client has gone.
    Gone,
}

/// How a session reaches its client: the channels over one WebSocket, or SPDY streams.
trait Transport {
    /// Sends `data` on `channel`; false once the client is gone.
    async fn send(&mut self, channel: u8, data: &[u8]) -> bool;
    /// What the client sends next (cancel-safe: nothing is lost when the future is dropped).
    async fn next_event(&mut self) -> ClientEvent;
    /// Ends the session, once the error channel has its status.
    async fn close(self);
}

/// The channels of a WebSocket: each binary message starts with its channel number.
struct WebSocketTransport<S> {
    sink: futures::stream::SplitSink<WebSocketStream<S>, Message>,
    source: futures::stream::SplitStream<WebSocketStream<S>>,
    v5: bool,
}

impl<S> Transport for WebSocketTransport<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn send(&mut self, channel: u8, data: &[u8]) -> bool {
        self.sink.send(frame(channel, data)).await.is_ok()
    }

    async fn next_event(&mut self) -> ClientEvent {
        loop {
            match self.source.next().await {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => return ClientEvent::Stdin(data.slice(1..)),
                    Some(&CLOSE) if self.v5 && data.get(1) == Some(&STDIN) => {
                        return ClientEvent::StdinClosed;
                    }
                    Some(&RESIZE) => {
                        if let Some((width, height)) = terminal_size(&data[1..]) {
                            return ClientEvent::Resize(width, height);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => return ClientEvent::Gone,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn close(mut self) {
        close(&mut self.sink).await;
    }
}

/// The streams of a SPDY connection, one per channel.
struct SpdyTransport {
    /// The connection (its reader runs while it is kept).
    session: spdy::Session,
    /// Resolves once the client's side of the connection ends.
    closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Writers of stdout, stderr and the error channel, by channel number.
    writers: [Option<StreamWriter>; 4],
    stdin: Option<StreamReader>,
    resize: Option<StreamReader>,
    /// Resize messages are JSON values one after another; this holds an incomplete one.
    resize_pending: Vec<u8>,
}

impl SpdyTransport {
    /// Waits until the client has opened every stream `options` ask for (streams of other
    /// types are ignored); `None` if it leaves first.
    async fn accept(session: spdy::Session, options: &ExecOptions) -> Option<Self> {
        let mut transport = SpdyTransport {
            closed: Box::pin(session.closed()),
            writers: [None, None, None, None],
            stdin: None,
            resize: None,
            resize_pending: Vec::new(),
            session,
        };
        let wanted = |channel: u8| match channel {
            STDIN => options.stdin,
            STDOUT => options.stdout,
            STDERR => options.stderr,
            RESIZE => options.tty,
            _ => true,
        };
        let mut missing: Vec<u8> = [ERROR, STDIN, STDOUT, STDERR, RESIZE]
            .into_iter()
            .filter(|channel| wanted(*channel))
            .collect();
        while !missing.is_empty() {
            let stream = transport.session.accept().await?;
            let channel = match stream.header("streamtype") {
                Some("error") => ERROR,
                Some("stdin") => STDIN,
                Some("stdout") => STDOUT,
                Some("stderr") => STDERR,
                Some("resize") => RESIZE,
                _ => continue,
            };
            missing.retain(|c| *c != channel);
            let (reader, writer) = stream.split();
            match channel {
                STDIN => transport.stdin = Some(reader),
                RESIZE => transport.resize = Some(reader),
                _ => transport.writers[usize::from(channel)] = Some(writer),
            }
        }
        Some(transport)
    }
}

/// Reads a stream that may be gone (then never ready).
async fn read_stream(stream: &mut Option<StreamReader>) -> Option<Bytes> {
    match stream {
        Some(stream) => stream.read().await,
        None => std::future::pending().await,
    }
}

impl Transport for SpdyTransport {
    async fn send(&mut self, channel: u8, data: &[u8]) -> bool {
        match &self.writers[usize::from(channel)] {
            Some(writer) => writer.write(data).await.is_ok(),
            None => true,
        }
    }

    async fn next_event(&mut self) -> ClientEvent {
        loop {
            tokio::select! {
                data = read_stream(&mut self.stdin) => match data {
                    Some(data) => return ClientEvent::Stdin(data),
                    None => {
                        self.stdin = None;
                        return ClientEvent::StdinClosed;
                    }
                },
                data = read_stream(&mut self.resize) => match data {
                    Some(data) => {
                        self.resize_pending.extend_from_slice(&data);
                        if let Some((width, height)) = last_terminal_size(&mut self.resize_pending) {
                            return ClientEvent::Resize(width, height);
                        }
                    }
                    None => self.resize = None,
                },
                () = &mut self.closed => return ClientEvent::Gone,
            }
        }
    }

    async fn close(self) {
        for writer in self.writers.iter().flatten() {
            let _ = writer.finish().await;
        }
    }
}

/// The last complete `{"Width": w, "Height": h}` in `pending`, which keeps what follows it.
fn last_terminal_size(pending: &mut Vec<u8>) -> Option<(u16, u16)> {
    let mut values = serde_json::Deserializer::from_slice(pending).into_iter::<Value>();
    let mut size = None;
    let mut consumed = 0;
    while let Some(value) = values.next() {
        match value {
            Ok(value) => {
                consumed = values.byte_offset();
                size = dimensions(&value).or(size);
            }
            Err(err) if err.is_eof() => break,
            Err(_) => {
                consumed = pending.len(); // not JSON: drop it
                break;
            }
        }
    }
    pending.drain(..consumed);
    size
}

/// Pumps the command's streams through the transport until its output ends, then sends its
/// exit status on the error channel and closes. A client that goes away kills the command.
async fn run_session(
    mut transport: impl Transport,
    child: Result<Child, String>,
    options: &ExecOptions,
) {
    let mut child = match child {
        Ok(child) => child,
        Err(message) => {
            let status = internal_error(&message).to_string();
            transport.send(ERROR, status.as_bytes()).await;
            transport.close().await;
            return;
        }
    };
    let mut stdin = child.stdin.take().filter(|_| options.stdin);
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut client_open = true;
    let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_pipe(&mut stdout, &mut out_buf) => {
                if n == 0 {
                    stdout = None;
                } else if options.stdout && !transport.send(STDOUT, &out_buf[..n]).await {
                    break;
                }
            }
            n = read_pipe(&mut stderr, &mut err_buf) => {
                if n == 0 {
                    stderr = None;
                } else if options.stderr && !transport.send(STDERR, &err_buf[..n]).await {
                    break;
                }
            }
            event = transport.next_event(), if client_open => match event {
                ClientEvent::Stdin(data) => {
                    if let Some(pipe) = &mut stdin
                        && pipe.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ClientEvent::StdinClosed => stdin = None,
                ClientEvent::Resize(width, height) => {
                    let _ = child.resize_terminal(width, height);
                }
                ClientEvent::Gone => {
                    client_open = false;
                    break;
                }
            },
        }
    }
    if !client_open || stdout.is_some() || stderr.is_some() {
        // The client is gone: nobody waits for the command any more.
        let _ = child.start_kill();
        let _ = child.wait().await;
        return;
    }
    drop(stdin);
    let status = match child.wait().await {
        Ok(status) => {
            let code = status.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
            });
            exit_status(&options.command, code)
        }
        Err(err) => internal_error(&err.to_string()),
    };
    transport.send(ERROR, status.to_string().as_bytes()).await;
    transport.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_from_the_query() {
        let options = ExecOptions::from_query(&query(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "1"),
            ("stderr", "true"),
        ]))
        .unwrap();
        assert_eq!(options.command, ["sh", "-c", "echo hi"]);
        assert!(options.stdout && options.stderr && !options.stdin && !options.tty);
        let tty = ExecOptions::from_query(&query(&[("stdin", "1"), ("stderr", "1"), ("tty", "1")]))
            .unwrap();
        assert!(tty.tty && !tty.stderr, "a terminal has no separate stderr");
        assert_eq!(
            ExecOptions::from_query(&query(&[("command", "ls")])),
            Err("you must specify at least 1 of stdin, stdout, stderr".into())
        );
    }

    #[test]
    fn spdy_clients_must_offer_the_protocol() {
        let offering = |values: &[&str]| {
            let mut req = Request::builder();
            for value in values {
                req = req.header(STREAM_PROTOCOL_HEADER, *value);
            }
            req.body(()).unwrap()
        };
        let old_kubectl = offering(&["v4.channel.k8s.io", "v3.channel.k8s.io, v2.channel.k8s.io"]);
        assert!(spdy_refusal(&old_kubectl, SPDY_PROTOCOL).is_none());
        let ancient = offering(&["v3.channel.k8s.io, v2.channel.k8s.io"]);
        let refusal = spdy_refusal(&ancient, SPDY_PROTOCOL).unwrap();
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        assert!(spdy_refusal(&offering(&[]), "portforward.k8s.io").is_some());
    }

    #[test]
    fn resize_messages_split_across_spdy_frames() {
        let mut pending = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        assert_eq!(last_terminal_size(&mut pending), Some((80, 24)));
        assert_eq!(pending, br#"{"Width":100,"#);
        pending.extend_from_slice(br#""Height":30}"#);
        assert_eq!(last_terminal_size(&mut pending), Some((100, 30)));
        assert!(pending.is_empty());
        let mut garbage = b"]]".to_vec();
        assert_eq!(last_terminal_size(&mut garbage), None);
        assert!(garbage.is_empty());
    }

    #[test]
    fn exit_statuses_as_upstream_writes_them() {
        let command = ["sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(
            exit_status(&command, 0).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            exit_status(&command, 3).to_string(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }
}

//! `kubectl exec` as the kubelet streams it over WebSocket (`v5.channel.k8s.io` and
//! `v4.channel.k8s.io`): every binary message starts with its channel, 0 stdin, 1 stdout,
//! 2 stderr, 3 the error channel (one `metav1.Status` JSON when the command ends), 4 terminal
//! resizes; in v5 a message `[255, c]` closes channel `c` (stdin, when the client's input ends).

use super::{Kubelet, KubeletBody, text};
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

/// The streaming subprotocols served, newest first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

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
    let size: Value = serde_json::from_slice(message).ok()?;
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
    /// WebSocket and runs the command in a task of its own.
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
        let is_websocket = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
        let (Some(key), true) = (key, is_websocket) else {
            return text(
                StatusCode::BAD_REQUEST,
                "skiff's kubelet streams exec only over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io)",
            );
        };
        let Some(protocol) = negotiate(&req) else {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("requested protocol(s) are not supported; supports {PROTOCOLS:?}"),
            );
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let runtime = self.runtime.clone();
        let container = container.to_string();
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(%err, "exec: upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            let child = runtime.exec(&found.uid, &container, &options.command, options.tty);
            run_session(socket, protocol == PROTOCOLS[0], child, &options).await;
        });
        let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
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

/// Pumps the command's streams through the WebSocket until its output ends, then sends its
/// exit status on the error channel and closes. A client that goes away kills the command.
async fn run_session<S>(
    socket: WebSocketStream<S>,
    v5: bool,
    child: Result<crate::process::child::Child, String>,
    options: &ExecOptions,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut source) = socket.split();
    let mut child = match child {
        Ok(child) => child,
        Err(message) => {
            let status = internal_error(&message).to_string();
            let _ = sink.send(frame(ERROR, status.as_bytes())).await;
            close(&mut sink).await;
            return;
        }
    };
    // An empty message on the first output channel tells the client the streams are up.
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    if sink.send(frame(first, &[])).await.is_err() {
        let _ = child.start_kill();
        return;
    }
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
                } else if options.stdout && sink.send(frame(STDOUT, &out_buf[..n])).await.is_err() {
                    break;
                }
            }
            n = read_pipe(&mut stderr, &mut err_buf) => {
                if n == 0 {
                    stderr = None;
                } else if options.stderr && sink.send(frame(STDERR, &err_buf[..n])).await.is_err() {
                    break;
                }
            }
            message = source.next(), if client_open => match message {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => {
                        if let Some(pipe) = &mut stdin
                            && pipe.write_all(&data[1..]).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin = None,
                    Some(&RESIZE) => {
                        if let Some((width, height)) = terminal_size(&data[1..]) {
                            let _ = child.resize_terminal(width, height);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    client_open = false;
                    break;
                }
                Some(Ok(_)) => {}
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
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }),
        Err(err) => {
            let status = internal_error(&err.to_string()).to_string();
            let _ = sink.send(frame(ERROR, status.as_bytes())).await;
            close(&mut sink).await;
            return;
        }
    };
    let status = exit_status(&options.command, code).to_string();
    let _ = sink.send(frame(ERROR, status.as_bytes())).await;
    close(&mut sink).await;
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

//! `pods/log`, `pods/exec` and `pods/portforward`, as upstream's
//! `pkg/registry/core/pod/rest/{log,subresources}.go`: validate the request against the pod, find
//! its node's kubelet server (the Node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`) and proxy to it. Logs stream through as they
//! come; an upgraded exec or port-forward connection is copied byte for byte both ways, so the
//! API server does not need to understand the streaming protocols. Kubelet servers are plain HTTP and
//! require the bearer token set with [`crate::ApiServer::set_kubelet_token`] (ADR 13).

use crate::ApiState;
use crate::request::{Query, ResourcePath};
use crate::response;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};
use skiff_api::{ApiError, FieldError, Subresource, resources};
use std::time::Duration;

/// The annotation of nodes the built-in simulator hosts: they have no kubelet server.
const SIMULATED_ANNOTATION: &str = "skiff.dev/simulated";

/// How long connecting to a kubelet server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a kubelet's error body is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The kubelet port upstream assumes when a Node reports none.
const DEFAULT_KUBELET_PORT: i64 = 10250;

/// Serves `GET pods/<name>/log` and `GET|POST pods/<name>/{exec,portforward}`.
pub async fn serve(
    state: &ApiState,
    path: ResourcePath,
    req: Request,
) -> Result<Response, ApiError> {
    let name = path.name.as_deref().unwrap_or_default();
    let ns = path.namespace.as_deref();
    let (pod, _) = state.registry.get(path.info, ns, name).await?;
    let query = Query::parse(req.uri().query());
    match (path.subresource, req.method()) {
        (Some(Subresource::Log), &Method::GET) => logs(state, &pod, name, &query).await,
        (Some(Subresource::Exec), &Method::GET | &Method::POST) => {
            exec(state, &pod, name, &query, req).await
        }
        (Some(Subresource::PortForward), &Method::GET | &Method::POST) => {
            port_forward(state, &pod, name, req).await
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// The names of a pod's init and app containers, in that order (`podutil.VisitContainers`).
fn container_names<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

fn has_container(pod: &Value, container: &str) -> bool {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .any(|field| container_names(pod, field).contains(&container))
}

/// The container a log request reads (upstream's `validateContainer` in `LogLocation`).
pub fn log_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(container) if has_container(pod, container) => Ok(container.to_string()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let all: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
                    .iter()
                    .flat_map(|field| container_names(pod, field))
                    .collect();
                Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    }
}

/// The container an exec runs in (upstream's `streamLocation`), which words the choice a
/// little differently from logs.
pub fn exec_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(container) if has_container(pod, container) => Ok(container.to_string()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                let init = container_names(pod, "initContainers");
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(message))
            }
        },
    }
}

/// Checks the log options as upstream's `ValidatePodLogOptions` and returns the kubelet's
/// query for them.
pub fn log_query(name: &str, query: &Query) -> Result<String, ApiError> {
    let tail_lines = query.int("tailLines")?;
    let limit_bytes = query.int("limitBytes")?;
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.get("sinceTime").filter(|t| !t.is_empty());
    let mut errors = Vec::new();
    if let Some(tail) = tail_lines.filter(|t| *t < 0) {
        errors.push(FieldError::invalid(
            "tailLines",
            tail,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(limit) = limit_bytes.filter(|l| *l < 1) {
        errors.push(FieldError::invalid(
            "limitBytes",
            limit,
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(seconds), None) if seconds < 1 => errors.push(FieldError::invalid(
            "sinceSeconds",
            seconds,
            "must be greater than 0",
        )),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("PodLogOptions", "", name, &errors));
    }
    let since_time = since_time
        .map(|t| {
            t.parse::<jiff::Timestamp>().map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time \"{t}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"{t}\" as \"2006\""
                ))
            })
        })
        .transpose()?;
    let mut params = form_urlencoded::Serializer::new(String::new());
    for flag in ["follow", "previous", "timestamps"] {
        if query.flag(flag) {
            params.append_pair(flag, "true");
        }
    }
    if let Some(seconds) = since_seconds {
        params.append_pair("sinceSeconds", &seconds.to_string());
    }
    if let Some(time) = since_time {
        params.append_pair(
            "sinceTime",
            &time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    if let Some(tail) = tail_lines {
        params.append_pair("tailLines", &tail.to_string());
    }
    if let Some(limit) = limit_bytes {
        params.append_pair("limitBytes", &limit.to_string());
    }
    Ok(params.finish())
}

/// Where a node's kubelet server listens, or `None` for a simulated node (which has none).
async fn kubelet_address(state: &ApiState, node_name: &str) -> Result<Option<String>, ApiError> {
    let info = resources::find_kind("", "Node").expect("nodes are registered");
    let (node, _) = state.registry.get(info, None, node_name).await?;
    if node["metadata"]["annotations"][SIMULATED_ANNOTATION] == "true" {
        return Ok(None);
    }
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no InternalIP address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(Some(if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }))
}

/// Sends `req` to the kubelet server at `address` on a connection of its own (which lives as
/// long as the response and any upgrade).
async fn send_to_kubelet(
    address: &str,
    mut req: http::Request<Empty<Bytes>>,
    token: Option<&str>,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let url = format!("http://{address}{}", req.uri());
    let dial_error = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!(
            "{} \"{url}\": dial tcp {address}: {e}",
            title_case(req.method())
        ))
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(dial_error(&e)),
        Err(_) => return Err(dial_error(&"i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| ApiError::internal(format!("{url}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%e, "kubelet connection ended with an error");
        }
    });
    let headers = req.headers_mut();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(address).expect("an address is a valid header"),
    );
    if let Some(token) = token {
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ApiError::internal("the kubelet token is not a valid header"))?,
        );
    }
    sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::internal(format!("{url}: {e}")))
}

/// Go's `http.Method` as its client errors print it (`Get`, `Post`).
fn title_case(method: &Method) -> String {
    let lower = method.as_str().to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The API error for a kubelet's failed answer (upstream's `GenericHttpResponseChecker`).
async fn kubelet_error(
    response: http::Response<hyper::body::Incoming>,
    resource: &str,
    name: &str,
) -> ApiError {
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(body),
        StatusCode::NOT_FOUND => ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "the server could not find the requested resource ( {resource} {name})"
            ),
            details: Some(json!({"name": name, "kind": resource})),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ApiError::internal(format!(
            "the kubelet rejected the API server's credentials ({status})"
        )),
        _ => ApiError::internal(body),
    }
}

async fn logs(
    state: &ApiState,
    pod: &Value,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let container = log_container(pod, name, query.get("container"))?;
    let kubelet_query = log_query(name, query)?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    let empty = || response::with_type(StatusCode::OK, Bytes::new(), "text/plain");
    // A pod not on a node yet has no logs: upstream answers with an empty stream.
    if node_name.is_empty() {
        return Ok(empty());
    }
    let Some(address) = kubelet_address(state, node_name).await? else {
        // Simulated containers write nothing.
        return Ok(empty());
    };
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let uri = format!("/containerLogs/{namespace}/{name}/{container}?{kubelet_query}");
    let req = http::Request::get(uri)
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let answer =
        send_to_kubelet(&address, req, state.kubelet_token.get().map(String::as_str)).await?;
    if !answer.status().is_success() {
        return Err(kubelet_error(answer, "pods/log", name).await);
    }
    let mut resp = Response::new(Body::new(answer.into_body()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// The request headers a streaming upgrade needs on the kubelet side.
const UPGRADE_HEADERS: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

async fn exec(
    state: &ApiState,
    pod: &Value,
    name: &str,
    query: &Query,
    req: Request,
) -> Result<Response, ApiError> {
    let container = exec_container(pod, name, query.get("container"))?;
    let address = streaming_kubelet(state, pod, name, |node| {
        format!(
            "container {container} of pod {name} runs on the simulated node {node}, which cannot run commands"
        )
    })
    .await?;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    // The kubelet reads command, stdin, stdout, stderr and tty from the same query.
    let uri = format!(
        "/exec/{namespace}/{name}/{container}?{}",
        req.uri().query().unwrap_or_default()
    );
    proxy_upgrade(state, &address, uri, req).await
}

/// `pods/<name>/portforward`: the kubelet's `/portForward/{namespace}/{name}`.
async fn port_forward(
    state: &ApiState,
    pod: &Value,
    name: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let address = streaming_kubelet(state, pod, name, |node| {
        format!("pod {name} runs on the simulated node {node}, which has no ports to forward")
    })
    .await?;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let uri = format!(
        "/portForward/{namespace}/{name}?{}",
        req.uri().query().unwrap_or_default()
    );
    proxy_upgrade(state, &address, uri, req).await
}

/// The kubelet server of the node `pod` runs on, for a streaming request (upstream's
/// `does not have a host assigned` when it runs nowhere yet); `simulated(node)` words the
/// error for a pod on a simulated node, which has no kubelet server.
async fn streaming_kubelet(
    state: &ApiState,
    pod: &Value,
    name: &str,
    simulated: impl FnOnce(&str) -> String,
) -> Result<String, ApiError> {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    kubelet_address(state, node_name)
        .await?
        .ok_or_else(|| ApiError::bad_request(simulated(node_name)))
}

/// Sends `req`'s upgrade to the kubelet at `address` as `uri` and, once it switches protocols,
/// relays the two upgraded connections byte for byte.
async fn proxy_upgrade(
    state: &ApiState,
    address: &str,
    uri: String,
    mut req: Request,
) -> Result<Response, ApiError> {
    let mut forward = http::Request::builder()
        .method(req.method().clone())
        .uri(uri);
    for (key, value) in req.headers() {
        if UPGRADE_HEADERS.contains(&key.as_str()) {
            forward = forward.header(key, value);
        }
    }
    let forward = forward
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut answer = send_to_kubelet(
        address,
        forward,
        state.kubelet_token.get().map(String::as_str),
    )
    .await?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Errors before the upgrade reach the client as the kubelet wrote them, as upstream's
        // upgrade-aware proxy passes them on.
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = http_body_util::Limited::new(answer.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
        }
        return Ok(resp);
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let kubelet_upgrade = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, kubelet_upgrade) {
            Ok((client, kubelet)) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut kubelet = hyper_util::rt::TokioIo::new(kubelet);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                    tracing::debug!(%e, "upgraded stream ended with an error");
                }
            }
            Err(e) => tracing::debug!(%e, "upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (key, value) in answer.headers() {
        resp.headers_mut().append(key, value.clone());
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: &[&str], containers: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"spec": {"initContainers": list(init), "containers": list(containers)}})
    }

    #[test]
    fn log_container_defaults_to_the_only_one() {
        let single = pod(&[], &["app"]);
        assert_eq!(log_container(&single, "p", None).unwrap(), "app");
        assert_eq!(
            log_container(&single, "p", Some("other"))
                .unwrap_err()
                .message,
            "container other is not valid for pod p"
        );
        let two = pod(&["setup"], &["a", "b"]);
        assert_eq!(log_container(&two, "p", Some("setup")).unwrap(), "setup");
        let err = log_container(&two, "p", None).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [setup a b]"
        );
    }

    #[test]
    fn exec_container_names_init_containers_apart() {
        let two = pod(&["setup"], &["a", "b"]);
        assert_eq!(
            exec_container(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [setup]"
        );
        assert_eq!(
            exec_container(&pod(&[], &["a", "b"]), "p", None)
                .unwrap_err()
                .message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(exec_container(&two, "p", Some("b")).unwrap(), "b");
    }

    #[test]
    fn log_options_are_validated_and_forwarded() {
        let query = Query::parse(Some(
            "container=app&follow=true&tailLines=10&timestamps=true&sinceSeconds=5",
        ));
        assert_eq!(
            log_query("p", &query).unwrap(),
            "follow=true&timestamps=true&sinceSeconds=5&tailLines=10"
        );
        let bad = Query::parse(Some("tailLines=-1&limitBytes=0"));
        let err = log_query("p", &bad).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "PodLogOptions \"p\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: 0: must be greater than 0]"
        );
        let both = Query::parse(Some("sinceSeconds=5&sinceTime=2026-11-28T03:00:00Z"));
        assert_eq!(
            log_query("p", &both).unwrap_err().message,
            "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        let time = Query::parse(Some("sinceTime=2026-11-28T03:00:00.5Z"));
        assert_eq!(
            log_query("p", &time).unwrap(),
            "sinceTime=2026-11-28T03%3A00%3A00Z"
        );
    }
}

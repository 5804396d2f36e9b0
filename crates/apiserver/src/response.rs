//! Building responses: JSON bodies, `Status` errors and `Warning` headers.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use skiff_api::ApiError;

/// A JSON response.
pub fn json(status: StatusCode, body: &Value) -> Response {
    raw_json(
        status,
        Bytes::from(serde_json::to_vec(body).expect("a JSON value always serializes")),
    )
}

/// A JSON response from bytes already serialized.
pub fn raw_json(status: StatusCode, body: Bytes) -> Response {
    with_type(status, body, "application/json")
}

/// A response with an explicit Content-Type.
pub fn with_type(status: StatusCode, body: Bytes, content_type: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("valid content type"),
    );
    resp
}

/// The `Status` response for an error.
pub fn error(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &err.to_status())
}

/// Adds `Warning: 299 - "<text>"` headers, as upstream reports unknown fields.
pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

//! Reading requests: which endpoint a path names, query parameters, and body decoding.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use skiff_api::{ApiError, ResourceInfo, Subresource, resources};
use std::collections::HashMap;

/// The largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What a request path names.
#[derive(Debug)]
pub enum Endpoint {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their `/…/<check>` forms).
    Health,
    /// `/api`.
    CoreRoot,
    /// `/apis`.
    GroupsRoot,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/<path>`.
    OpenApiDocument(String),
    /// A resource collection, object or subresource.
    Resource(ResourcePath),
}

/// A path under a served resource.
#[derive(Debug)]
pub struct ResourcePath {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
}

/// Resolves a request path.
pub fn route(path: &str) -> Result<Endpoint, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Ok(Endpoint::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Endpoint::Health),
        ["api"] => Ok(Endpoint::CoreRoot),
        ["apis"] => Ok(Endpoint::GroupsRoot),
        ["apis", group] => Ok(Endpoint::Group(group.to_string())),
        ["api", version] => Ok(Endpoint::GroupVersion(String::new(), version.to_string())),
        ["apis", group, version] => Ok(Endpoint::GroupVersion(
            group.to_string(),
            version.to_string(),
        )),
        ["openapi", "v3"] => Ok(Endpoint::OpenApiIndex),
        ["openapi", "v3", rest @ ..] => Ok(Endpoint::OpenApiDocument(rest.join("/"))),
        ["api", version, rest @ ..] => resource_path("", version, rest).map(Endpoint::Resource),
        ["apis", group, version, rest @ ..] => {
            resource_path(group, version, rest).map(Endpoint::Resource)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn lookup(group: &str, version: &str, plural: &str) -> Result<&'static ResourceInfo, ApiError> {
    resources::find(group, version, plural).ok_or_else(ApiError::no_route)
}

fn subresource(info: &ResourceInfo, name: &str) -> Result<Subresource, ApiError> {
    Subresource::parse(name)
        .filter(|s| info.has_subresource(*s))
        .ok_or_else(ApiError::no_route)
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Result<ResourcePath, ApiError> {
    let path = |info, namespace: Option<&str>, name: Option<&str>, sub: Option<Subresource>| {
        ResourcePath {
            info,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub,
        }
    };
    match rest {
        // `namespaces/<ns>/<resource>...` names namespaced objects, unless the third segment is
        // a subresource of the namespace itself (`namespaces/<ns>/status`).
        ["namespaces", ns, plural, tail @ ..]
            if group.is_empty() && matches!(*plural, "status" | "finalize") && tail.is_empty() =>
        {
            let info = lookup(group, version, "namespaces")?;
            Ok(path(info, None, Some(ns), Some(subresource(info, plural)?)))
        }
        ["namespaces", ns, plural, tail @ ..] => {
            let info = lookup(group, version, plural)?;
            if !info.namespaced {
                return Err(ApiError::no_route());
            }
            match tail {
                [] => Ok(path(info, Some(ns), None, None)),
                [name] => Ok(path(info, Some(ns), Some(name), None)),
                [name, sub] => Ok(path(
                    info,
                    Some(ns),
                    Some(name),
                    Some(subresource(info, sub)?),
                )),
                _ => Err(ApiError::no_route()),
            }
        }
        [plural] => Ok(path(lookup(group, version, plural)?, None, None, None)),
        [plural, name] => {
            let info = lookup(group, version, plural)?;
            if info.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(path(info, None, Some(name), None))
        }
        [plural, name, sub] => {
            let info = lookup(group, version, plural)?;
            if info.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(path(info, None, Some(name), Some(subresource(info, sub)?)))
        }
        _ => Err(ApiError::no_route()),
    }
}

/// Query parameters, decoded.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// An integer parameter; malformed values are a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }

    /// Whether `dryRun=All` was given; other values are a 400.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}"
            ))),
        }
    }
}

/// The media type of a request body (parameters dropped, lower-cased).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body: JSON, YAML or Kubernetes protobuf.
pub fn decode_body(media_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    match media_type {
        "application/json" | "" => decode_json(body),
        "application/yaml" | "application/apply-patch+yaml" => decode_yaml(body),
        "application/vnd.kubernetes.protobuf" => skiff_api::protobuf::decode_protobuf(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Decodes a JSON body; malformed input is a 400 that quotes the parser.
pub fn decode_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))
}

/// Decodes a YAML body (JSON is YAML too).
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: body is not UTF-8"))?;
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Whether the client asked for a `meta.k8s.io` Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| {
            accept.split(',').any(|offer| {
                let params: Vec<&str> = offer.split(';').map(str::trim).collect();
                params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match route(path).unwrap() {
            Endpoint::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        let r = resource("/apis/apps/v1/namespaces/data/deployments/web/scale");
        assert_eq!(
            (
                r.info.plural,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource
            ),
            (
                "deployments",
                Some("data"),
                Some("web"),
                Some(Subresource::Scale)
            )
        );
        let r = resource("/api/v1/namespaces/data");
        assert_eq!(
            (r.info.plural, r.namespace, r.name.as_deref()),
            ("namespaces", None, Some("data"))
        );
        let r = resource("/api/v1/namespaces/data/status");
        assert_eq!(
            (r.info.plural, r.name.as_deref(), r.subresource),
            ("namespaces", Some("data"), Some(Subresource::Status))
        );
        let r = resource("/api/v1/nodes/n1/status");
        assert_eq!(r.subresource, Some(Subresource::Status));
        let r = resource("/api/v1/pods");
        assert!(r.namespace.is_none() && r.name.is_none());
        assert!(route("/apis/apps/v1/namespaces/x/daemonsets/y/scale").is_err());
        assert!(route("/apis/apps/v1/namespaces/x/nopes").is_err());
        assert!(route("/api/v1/namespaces/x/nodes").is_err());
        assert!(
            matches!(route("/openapi/v3/apis/apps/v1").unwrap(), Endpoint::OpenApiDocument(p) if p == "apis/apps/v1")
        );
    }

    #[test]
    fn table_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_table(&h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&h));
    }
}

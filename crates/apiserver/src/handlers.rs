//! Request dispatch: one handler for every path, thin per verb. The generic registry, lists,
//! watches and subresources do the work.

use crate::ApiState;
use crate::discovery;
use crate::list::{self, IncludeObject, render_list, render_table};
use crate::pod_streams;
use crate::registry::{
    DeleteOptions, Deleted, FieldValidation, Registry, UpdateTarget, WriteOptions,
};
use crate::request::{self, Endpoint, MAX_BODY_BYTES, Query, ResourcePath};
use crate::response;
use crate::subresources;
use crate::watch::{Format, WatchRequest};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use skiff_api::patch::PatchType;
use skiff_api::{ApiError, Subresource};
use std::sync::Arc;

/// The single entry point of the API.
pub async fn handle(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    match dispatch(&state, req).await {
        Ok(resp) => resp,
        Err(err) => response::error(&err),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return ApiError::too_large();
                }
                source = s.source();
            }
            ApiError::bad_request(format!("error reading request body: {e}"))
        })
}

async fn dispatch(state: &Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    let endpoint = request::route(parts.uri.path())?;
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let is_get = parts.method == Method::GET;
    match endpoint {
        // Logs stream, exec and port-forward upgrade the connection: they take the request
        // whole.
        Endpoint::Resource(path)
            if matches!(
                path.subresource,
                Some(Subresource::Log | Subresource::Exec | Subresource::PortForward)
            ) =>
        {
            pod_streams::serve(state, path, Request::from_parts(parts, body)).await
        }
        Endpoint::Resource(path) => {
            let body = read_body(body).await?;
            resource(state, parts.method, &parts.headers, path, &query, body).await
        }
        _ if !is_get => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
        Endpoint::Version => Ok(response::json(StatusCode::OK, &state.version)),
        Endpoint::Health => Ok(response::with_type(
            StatusCode::OK,
            Bytes::from_static(b"ok"),
            "text/plain; charset=utf-8",
        )),
        Endpoint::CoreRoot | Endpoint::GroupsRoot => {
            let core = matches!(endpoint, Endpoint::CoreRoot);
            Ok(match discovery::aggregated_version(&accept) {
                Some(v) => response::raw_json(StatusCode::OK, state.aggregated_discovery(core, v))
                    .map_content_type(&discovery::aggregated_content_type(v)),
                None if core => response::json(
                    StatusCode::OK,
                    &discovery::api_versions(&state.server_address),
                ),
                None => response::json(StatusCode::OK, &discovery::api_group_list()),
            })
        }
        Endpoint::Group(group) => discovery::api_group_doc(&group)
            .map(|d| response::json(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route),
        Endpoint::GroupVersion(group, version) => discovery::api_resource_list(&group, &version)
            .map(|d| response::json(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route),
        Endpoint::OpenApiIndex => Ok(response::json(StatusCode::OK, &skiff_api::openapi::index())),
        Endpoint::OpenApiDocument(path) => skiff_api::openapi::document(&path)
            .map(|doc| response::raw_json(StatusCode::OK, Bytes::copy_from_slice(&doc.body)))
            .ok_or_else(ApiError::no_route),
    }
}

trait ContentType {
    fn map_content_type(self, content_type: &str) -> Self;
}

impl ContentType for Response {
    fn map_content_type(mut self, content_type: &str) -> Self {
        self.headers_mut().insert(
            http::header::CONTENT_TYPE,
            content_type.parse().expect("valid content type"),
        );
        self
    }
}

fn write_options(query: &Query) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: query.dry_run()?,
        field_validation: FieldValidation::parse(query.get("fieldValidation"))?,
    })
}

fn written(status: StatusCode, w: crate::registry::Written) -> Response {
    let mut resp = response::json(status, &w.object);
    response::add_warnings(&mut resp, &w.warnings);
    resp
}

async fn resource(
    state: &Arc<ApiState>,
    method: Method,
    headers: &HeaderMap,
    path: ResourcePath,
    query: &Query,
    body: Bytes,
) -> Result<Response, ApiError> {
    let info = path.info;
    let ns = path.namespace.as_deref();
    let registry: &Registry = &state.registry;
    let table = request::wants_table(headers);
    match (method, path.name.as_deref(), path.subresource) {
        (Method::GET, None, None) if query.flag("watch") => {
            let format = if table {
                Format::Table(IncludeObject::from_query(query))
            } else {
                Format::Object
            };
            let watch = WatchRequest::from_query(info, path.namespace.clone(), query, format)?;
            let stream = watch.start(registry.store(), state.cache.clone()).await?;
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                "application/json".parse().expect("valid"),
            );
            Ok(resp)
        }
        (Method::GET, None, None) => {
            let page = list::list(registry.store(), &state.cache, info, ns, query).await?;
            if table {
                let objects: Vec<Value> = page.items.iter().map(|(_, o)| o.value()).collect();
                let mut meta = json!({"resourceVersion": page.revision.to_string()});
                if let Some(c) = &page.continue_token {
                    meta["continue"] = c.clone().into();
                }
                let t = render_table(
                    info,
                    objects.iter(),
                    meta,
                    IncludeObject::from_query(query),
                    true,
                );
                Ok(response::json(StatusCode::OK, &t))
            } else {
                Ok(response::raw_json(StatusCode::OK, render_list(info, &page)))
            }
        }
        (Method::GET, Some(name), None | Some(Subresource::Status)) => {
            let (object, _) = registry.get(info, ns, name).await?;
            if table {
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                Ok(response::json(
                    StatusCode::OK,
                    &render_table(
                        info,
                        std::iter::once(&object),
                        meta,
                        IncludeObject::from_query(query),
                        true,
                    ),
                ))
            } else {
                Ok(response::json(StatusCode::OK, &object))
            }
        }
        (Method::GET, Some(name), Some(Subresource::Scale)) => Ok(response::json(
            StatusCode::OK,
            &subresources::get_scale(registry, info, ns, name).await?,
        )),
        (Method::POST, None, None) => {
            let object = request::decode_body(&request::content_type(headers), &body)?;
            let opts = write_options(query)?;
            Ok(written(
                StatusCode::CREATED,
                registry.create(info, ns, object, &opts).await?,
            ))
        }
        (Method::POST, Some(name), Some(Subresource::Binding)) => {
            let binding = request::decode_body(&request::content_type(headers), &body)?;
            subresources::bind(registry, info, ns, name, &binding, query.dry_run()?).await?;
            Ok(response::json(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::POST, Some(name), Some(Subresource::Eviction)) => {
            // Without PodDisruptionBudgets every eviction is allowed: it is a delete with the
            // eviction's options.
            let eviction = request::decode_body(&request::content_type(headers), &body)?;
            let options = serde_json::to_vec(&eviction["deleteOptions"]).expect("serializes");
            let opts = delete_options(
                query,
                &Bytes::from(if eviction["deleteOptions"].is_object() {
                    options
                } else {
                    b"{}".to_vec()
                }),
            )?;
            registry.delete(info, ns, name, &opts).await?;
            Ok(response::json(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::PUT, Some(name), sub @ (None | Some(Subresource::Status))) => {
            let object = request::decode_body(&request::content_type(headers), &body)?;
            let target = if sub.is_some() {
                UpdateTarget::Status
            } else {
                UpdateTarget::Main
            };
            Ok(written(
                StatusCode::OK,
                registry
                    .update(info, ns, name, object, target, &write_options(query)?)
                    .await?,
            ))
        }
        (Method::PUT, Some(name), Some(Subresource::Finalize)) => {
            let object = request::decode_body(&request::content_type(headers), &body)?;
            Ok(response::json(
                StatusCode::OK,
                &registry
                    .finalize_namespace(info, name, &object, query.dry_run()?)
                    .await?,
            ))
        }
        (Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let scale = request::decode_body(&request::content_type(headers), &body)?;
            Ok(response::json(
                StatusCode::OK,
                &subresources::update_scale(registry, info, ns, name, &scale, query.dry_run()?)
                    .await?,
            ))
        }
        (
            Method::PATCH,
            Some(name),
            sub @ (None | Some(Subresource::Status) | Some(Subresource::Scale)),
        ) => {
            let media = request::content_type(headers);
            let patch_type = PatchType::from_content_type(&media)
                .ok_or_else(|| ApiError::unsupported_media_type(&media))?;
            let patch = match patch_type {
                PatchType::Apply => request::decode_yaml(&body)?,
                _ => request::decode_json(&body)?,
            };
            let opts = write_options(query)?;
            match sub {
                Some(Subresource::Scale) => Ok(response::json(
                    StatusCode::OK,
                    &subresources::patch_scale(
                        registry,
                        info,
                        ns,
                        name,
                        patch_type,
                        &patch,
                        opts.dry_run,
                    )
                    .await?,
                )),
                _ => {
                    let target = if sub.is_some() {
                        UpdateTarget::Status
                    } else {
                        UpdateTarget::Main
                    };
                    match registry
                        .patch(info, ns, name, (patch_type, &patch), target, &opts)
                        .await
                    {
                        // Server-side apply creates what does not exist yet.
                        Err(e)
                            if e.code == 404
                                && patch_type == PatchType::Apply
                                && target == UpdateTarget::Main =>
                        {
                            Ok(written(
                                StatusCode::CREATED,
                                registry.create(info, ns, patch, &opts).await?,
                            ))
                        }
                        other => Ok(written(StatusCode::OK, other?)),
                    }
                }
            }
        }
        (Method::DELETE, Some(name), None) => {
            let opts = delete_options(query, &body)?;
            match registry.delete(info, ns, name, &opts).await? {
                Deleted::Pending(object) => Ok(response::json(StatusCode::ACCEPTED, &object)),
                Deleted::Gone(object) => Ok(response::json(
                    StatusCode::OK,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": object["metadata"]["uid"]},
                    }),
                )),
            }
        }
        (Method::DELETE, None, None) => {
            let opts = delete_options(query, &body)?;
            let page = list::list(registry.store(), &state.cache, info, ns, query).await?;
            let mut deleted = Vec::new();
            for (_, o) in &page.items {
                let obj_ns = Some(o.namespace.as_str()).filter(|n| !n.is_empty());
                match registry.delete(info, obj_ns, &o.name, &opts).await {
                    Ok(Deleted::Gone(v) | Deleted::Pending(v)) => deleted.push(v),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(response::json(
                StatusCode::OK,
                &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": {"resourceVersion": page.revision.to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// Reads `DeleteOptions` from the body (as kubectl sends them) and the query.
fn delete_options(query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let from_body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        request::decode_json(body)?
    };
    if !from_body.is_object() {
        return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
    }
    let dry_run = match &from_body["dryRun"] {
        Value::Array(v) if v.iter().any(|x| x == "All") => true,
        Value::Array(v) if !v.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {}",
                v[0]
            )));
        }
        _ => query.dry_run()?,
    };
    let grace_period_seconds = match from_body["gracePeriodSeconds"].as_i64() {
        Some(g) => Some(g),
        None => query.int("gracePeriodSeconds")?,
    };
    let orphan = from_body["orphanDependents"]
        .as_bool()
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let propagation_policy = from_body["propagationPolicy"]
        .as_str()
        .map(str::to_string)
        .or_else(|| query.get("propagationPolicy").map(str::to_string))
        .or_else(|| orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
    if let Some(p) = &propagation_policy
        && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
    {
        return Err(ApiError::unprocessable(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        )));
    }
    let pre = &from_body["preconditions"];
    Ok(DeleteOptions {
        dry_run,
        grace_period_seconds,
        propagation_policy,
        precondition_uid: pre["uid"].as_str().map(str::to_string),
        precondition_resource_version: pre["resourceVersion"].as_str().map(str::to_string),
    })
}

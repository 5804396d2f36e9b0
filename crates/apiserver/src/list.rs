//! Lists and their building blocks: selector filters, paging with continue tokens, the
//! resourceVersion semantics of a list, and rendering as a `<Kind>List` or a `Table`.

use crate::cache::{Cache, CachedObject};
use crate::request::Query;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use skiff_api::selector::{FieldSelector, LabelSelector, SelectorError};
use skiff_api::{ApiError, ResourceInfo, printers};
use skiff_store::{Revision, Store};
use std::sync::Arc;
use std::time::Duration;

/// How long a read waits for the cache to reach a requested resourceVersion.
const WAIT_FOR_REVISION: Duration = Duration::from_secs(5);

/// Label and field selectors of a list or watch.
pub struct Filter {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector`, checking field labels against those the
    /// resource supports.
    pub fn from_query(info: &ResourceInfo, query: &Query) -> Result<Self, ApiError> {
        let label = query
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .map(LabelSelector::parse)
            .transpose()?;
        let field = query
            .get("fieldSelector")
            .filter(|s| !s.is_empty())
            .map(FieldSelector::parse)
            .transpose()?;
        if let Some(unsupported) = field.as_ref().and_then(|f| {
            f.unsupported_field(|name| {
                matches!(name, "metadata.name" | "metadata.namespace")
                    || info.selectable_fields.iter().any(|(l, _)| *l == name)
            })
        }) {
            return Err(SelectorError::field_label_not_supported(&unsupported.field).into());
        }
        Ok(Self { label, field })
    }

    /// Whether an object passes both selectors.
    pub fn matches(&self, object: &CachedObject) -> bool {
        self.label
            .as_ref()
            .is_none_or(|l| l.matches(&object.labels))
            && self
                .field
                .as_ref()
                .is_none_or(|f| f.matches(|name| object.field(name)))
    }
}

/// A continue token: the revision of the first page and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &str) -> String {
    let json = serde_json::to_vec(&ContinueToken {
        rv,
        start: last_key.to_string(),
    })
    .expect("token serializes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))
}

/// One page of a list.
pub struct Page {
    /// The objects, each with its storage key.
    pub items: Vec<(String, Arc<CachedObject>)>,
    /// The list's resourceVersion.
    pub revision: Revision,
    /// The token for the next page, if any.
    pub continue_token: Option<String>,
    /// How many matching objects follow this page.
    pub remaining: Option<usize>,
}

/// Reads a list with upstream's resourceVersion, paging and selector semantics.
pub async fn list(
    store: &Arc<dyn Store>,
    cache: &Cache,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Page, ApiError> {
    let filter = Filter::from_query(info, query)?;
    // As upstream's watch cache, `resourceVersion=0` answers the whole list at once: paging is
    // for consistent reads (informers list with `0` and a limit, and get everything).
    let limit = if query.get("resourceVersion") == Some("0")
        && query.get("continue").is_none_or(str::is_empty)
    {
        None
    } else {
        query.int("limit")?.filter(|l| *l > 0).map(|l| l as usize)
    };
    let resource = cache.resource(info);
    let key_of = |o: &CachedObject| {
        info.storage_key(
            Some(&o.namespace)
                .filter(|n| !n.is_empty())
                .map(String::as_str),
            &o.name,
        )
    };

    let (candidates, revision): (Vec<Arc<CachedObject>>, Revision) =
        if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
            let token = decode_continue(token)?;
            if cache.revision() >= token.rv
                && let Some(then) = resource.list_at(namespace, &token.start, token.rv)
            {
                // The cache rolled back to the first page's revision with its recent history.
                (then, token.rv)
            } else {
                (
                    from_store(store, info, namespace, token.rv)
                        .await?
                        .into_iter()
                        .filter(|o| key_of(o).as_str() > token.start.as_str())
                        .collect(),
                    token.rv,
                )
            }
        } else {
            let rv = query.get("resourceVersion").filter(|v| !v.is_empty());
            let exact = query.get("resourceVersionMatch") == Some("Exact");
            match rv {
                // Any state is fine.
                Some("0") => (resource.list(namespace), cache.revision()),
                Some(rv) => {
                    let rv: Revision = rv.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version: {rv}"))
                    })?;
                    if exact && resource.last_change() > rv {
                        (from_store(store, info, namespace, rv).await?, rv)
                    } else {
                        wait_for(cache, rv).await?;
                        (
                            resource.list(namespace),
                            if exact { rv } else { cache.revision() },
                        )
                    }
                }
                // A consistent read: the cache must have caught up with the store.
                None => {
                    let current = store
                        .current_revision()
                        .await
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    wait_for(cache, current).await?;
                    (resource.list(namespace), cache.revision().max(current))
                }
            }
        };

    let mut matching = candidates.into_iter().filter(|o| filter.matches(o));
    let mut items = Vec::new();
    for o in matching.by_ref() {
        items.push((key_of(&o), o));
        if limit.is_some_and(|l| items.len() == l) {
            break;
        }
    }
    let remaining = matching.count();
    let continue_token = (remaining > 0)
        .then(|| encode_continue(revision, &items.last().expect("a full page is not empty").0));
    Ok(Page {
        items,
        revision,
        continue_token,
        remaining: (remaining > 0).then_some(remaining),
    })
}

/// Waits for the cache to reach `revision`, as upstream's "Too large resource version".
pub async fn wait_for(cache: &Cache, revision: Revision) -> Result<(), ApiError> {
    if cache.wait_for(revision, WAIT_FOR_REVISION).await {
        Ok(())
    } else {
        Err(ApiError::timeout(format!(
            "Too large resource version: {revision}, current: {}",
            cache.revision()
        )))
    }
}

async fn from_store(
    store: &Arc<dyn Store>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    rv: Revision,
) -> Result<Vec<Arc<CachedObject>>, ApiError> {
    let prefix = match namespace {
        Some(ns) if info.namespaced => format!("{}{ns}/", info.storage_prefix()),
        _ => info.storage_prefix(),
    };
    let listed = store.list(&prefix, Some(rv)).await.map_err(|e| match e {
        skiff_store::StoreError::Compacted { .. } => ApiError::gone(format!(
            "The resourceVersion for the provided list is too old. ({e})"
        )),
        other => ApiError::internal(other.to_string()),
    })?;
    Ok(listed
        .items
        .iter()
        .filter_map(|kv| CachedObject::from_stored(info, &kv.value, kv.mod_revision))
        .map(Arc::new)
        .collect())
}

/// Renders a page as `<Kind>List` JSON, copying each object's bytes as they are.
pub fn render_list(info: &ResourceInfo, page: &Page) -> Bytes {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        meta["continue"] = token.clone().into();
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = n.into();
    }
    let head =
        json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": meta});
    let head = serde_json::to_vec(&head).expect("serializes");
    let mut out = BytesMut::with_capacity(
        head.len()
            + page
                .items
                .iter()
                .map(|(_, o)| o.json.len() + 1)
                .sum::<usize>()
            + 16,
    );
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, (_, o)) in page.items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&o.json);
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// What a Table row carries as its `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses `includeObject`.
    pub fn from_query(query: &Query) -> Self {
        match query.get("includeObject") {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// One Table row for an object.
pub fn table_row(
    info: &ResourceInfo,
    object: &Value,
    include: IncludeObject,
    now: jiff::Timestamp,
) -> Value {
    let cells = printers::row(info.group, info.kind, object, now);
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = object.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]});
        }
    }
    row
}

/// A `meta.k8s.io/v1` Table of `objects`; `headers` includes the column definitions.
pub fn render_table<'a>(
    info: &ResourceInfo,
    objects: impl Iterator<Item = &'a Value>,
    meta: Value,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects.map(|o| table_row(info, o, include, now)).collect();
    let columns = if headers {
        printers::column_definitions_json(printers::columns(info.group, info.kind))
    } else {
        json!([])
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

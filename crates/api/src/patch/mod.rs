//! The PATCH bodies the API server accepts, applied to objects as `serde_json::Value`s:
//! JSON patch (RFC 6902), JSON merge patch (RFC 7396) and strategic merge patch, with
//! errors answered as upstream's apiserver answers them
//! (`k8s.io/apiserver/pkg/endpoints/handlers/patch.go`).

mod gofmt;
pub mod schema;
mod strategic;

use crate::ApiError;
use serde_json::{Value, json};

/// The kind of a PATCH request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7396.
    Merge,
    /// `application/strategic-merge-patch+json`: see [`strategic_merge`].
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (the body may be JSON).
    Apply,
}

impl PatchType {
    const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type of a `Content-Type` header value; parameters such as `charset` and
    /// letter case are ignored. `None` for anything else (upstream answers 415).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        Self::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media_type))
    }

    /// The media type naming this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Upstream's answer to a patch that decodes but cannot be applied: 422 with a fixed
/// message and empty details (`NewGenericServerResponse(422, …)`), which kubectl prints as
/// `The request is invalid: the server rejected our request due to an error in our request`.
/// The reason the patch failed is not part of upstream's answer.
fn rejected() -> ApiError {
    let mut error =
        ApiError::unprocessable("the server rejected our request due to an error in our request");
    error.details = Some(json!({}));
    error
}

/// How Go's `encoding/json` names a JSON value that does not fit the Go type it decodes into.
fn json_type_word(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `json.Unmarshal` error for a value of the wrong type.
fn cannot_unmarshal(value: &Value, go_type: &str) -> ApiError {
    ApiError::bad_request(format!(
        "json: cannot unmarshal {} into Go value of type {go_type}",
        json_type_word(value)
    ))
}

/// Upstream's limit on the operations of one JSON patch.
const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

/// Applies an RFC 6902 JSON patch to `doc`.
///
/// A body that is not a list of operation objects is 400 BadRequest with Go's decoding
/// message; more than 10000 operations is 413; an operation that is malformed or does not
/// apply (missing path, failed `test`, ...) is upstream's generic 422 (see [`rejected`]).
/// A `null` body patches nothing, as upstream.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let operations = match patch {
        Value::Null => return Ok(doc.clone()),
        Value::Array(operations) => operations,
        other => return Err(cannot_unmarshal(other, "jsonpatch.Patch")),
    };
    if let Some(bad) = operations
        .iter()
        .find(|op| !op.is_object() && !op.is_null())
    {
        return Err(cannot_unmarshal(bad, "jsonpatch.Operation"));
    }
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                operations.len()
            ),
            details: None,
        });
    }
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|_| rejected())?;
    let mut patched = doc.clone();
    json_patch::patch(&mut patched, &operations).map_err(|_| rejected())?;
    Ok(patched)
}

/// Applies an RFC 7396 JSON merge patch to `doc`.
///
/// `null` and scalar bodies are 400 `Invalid JSON Patch` (evanphx/json-patch's
/// `ErrBadJSONPatch`); a list body becomes the whole document, as upstream, and is left for
/// decoding to reject.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    if !patch.is_object() && !patch.is_array() {
        return Err(ApiError::bad_request("Invalid JSON Patch"));
    }
    let mut patched = doc.clone();
    json_patch::merge(&mut patched, patch);
    Ok(patched)
}

/// Applies a strategic merge patch to `original`, an object of kind `group_kind` named as
/// upstream's `GroupKind.String()`: `Kind` for the core group, `Kind.group` otherwise
/// (`Pod`, `Deployment.apps`, `Scale.autoscaling`).
///
/// Lists merge element by element where upstream's Go types say so (see [`schema`]); every
/// directive (`$patch`, `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`)
/// is applied and none is stored. A kind without a schema ([`schema::kind_schema`] is
/// `None`; upstream answers 415 for those) merges as plain maps with lists replaced.
///
/// A body that is not an object is 400 with Go's decoding message (`null` patches nothing);
/// malformed directives are 400 with upstream's `mergepatch` wording.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    group_kind: &str,
) -> Result<Value, ApiError> {
    let patch = match patch {
        Value::Null => return Ok(original.clone()),
        Value::Object(patch) => patch,
        other => return Err(cannot_unmarshal(other, "map[string]interface {}")),
    };
    let original = original.as_object().cloned().unwrap_or_default();
    strategic::merge_map(original, patch, schema::kind_schema(group_kind)).map(Value::Object)
}

#[cfg(test)]
mod tests;

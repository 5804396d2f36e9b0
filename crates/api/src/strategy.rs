//! What each kind adds to the generic registry store, as upstream's `rest.RESTCreateStrategy`
//! and `rest.RESTUpdateStrategy`: decoding, defaults, validation and what an update may change.
//!
//! The API server's generic store owns everything common to all kinds (names, uid,
//! timestamps, resourceVersion, finalizers, deletion); a strategy owns the rest.

use crate::errors::{ApiError, FieldError};
use crate::resources::ResourceInfo;
use serde_json::Value;

/// The result of decoding a request body into a kind's typed form and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object as the kind's type serializes it: unknown fields dropped, `null`s removed.
    pub object: Value,
    /// Paths of fields the type does not know (`spec.foo`), for `fieldValidation`.
    pub unknown_fields: Vec<String>,
}

/// The per-kind behaviour of the generic store. Every method has the behaviour most kinds
/// want, so a kind overrides only what upstream's strategy for it does differently.
pub trait Strategy: Send + Sync {
    /// Decodes `object` as this kind. A value of the wrong type is a 400 naming the field path,
    /// worded as upstream's decoder (`... cannot be handled as a Deployment: ...`).
    fn decode(&self, info: &ResourceInfo, object: Value) -> Result<Decoded, ApiError>;

    /// Fills in upstream's defaults (`SetDefaults_*`).
    fn default(&self, _object: &mut Value) {}

    /// Prepares a new object before validation (upstream `PrepareForCreate`): for kinds with a
    /// status subresource this clears or initialises `.status`.
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Prepares an update of the main resource (upstream `PrepareForUpdate`): for kinds with a
    /// status subresource the old `.status` is kept.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Prepares an update through `/status`: everything but `.status` (and, as upstream, some
    /// metadata) is taken from `old`.
    fn prepare_for_status_update(&self, _new: &mut Value, _old: &Value) {}

    /// Validates a new object (upstream `Validate`), not counting object metadata, which the
    /// generic store validates.
    fn validate(&self, _object: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validates an update (upstream `ValidateUpdate`): immutable fields and the rules of
    /// `validate` for the new object.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Whether the change from `old` to `new` bumps `metadata.generation`.
    fn generation_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }
}

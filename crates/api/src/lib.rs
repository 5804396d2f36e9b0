//! skiff's API machinery: the registry of built-in resources, errors shaped as upstream's
//! `Status`, label and field selectors, patches (JSON, merge, strategic merge), per-kind
//! strategies (decoding, defaults, validation), server-side printing (Tables) and OpenAPI.
//!
//! Nothing here does I/O: the API server, controllers and tests all share these pure pieces.

pub mod errors;
pub mod resources;
pub mod strategy;

pub use errors::{ApiError, FieldError};
pub use resources::{RESOURCES, ResourceInfo, Subresource};
pub use strategy::{Decoded, Strategy};

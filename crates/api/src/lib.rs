//! skiff's API machinery: the registry of built-in resources, errors shaped as upstream's
//! `Status`, label and field selectors, patches (JSON, merge, strategic merge), per-kind
//! strategies (decoding, defaults, validation), server-side printing (Tables) and OpenAPI.
//!
//! Nothing here does I/O: the API server, controllers and tests all share these pure pieces.

pub mod codec;
pub mod defaults;
pub mod errors;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod scheduling;
pub mod selector;
pub mod strategy;
pub mod validation;

pub use errors::{ApiError, FieldError};
pub use resources::{RESOURCES, ResourceInfo, Subresource};
pub use strategy::{Decoded, Strategy};

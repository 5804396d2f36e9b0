//! skiff's store: a revisioned key-value store with etcd's semantics.
//!
//! Every successful write gets the next global revision, which the API server exposes as
//! `metadata.resourceVersion`. Writes are compare-and-swap on a key's mod revision, reads can be
//! made at a past revision, watches start from a revision, and compaction discards history
//! older than a revision (reads and watches below it fail with [`StoreError::Compacted`]).
//!
//! [`Store`] is the contract; [`sqlite::SqliteStore`] is the embedded default backend.
//! [`contract`] is the behaviour suite every backend must pass.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub mod bench;
pub mod contract;
pub mod sqlite;

/// A store revision; `0` means "no revision" (nothing written yet).
pub type Revision = i64;

/// A key with its current value and revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The revision at which the key was created (last created, if it was deleted before).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
}

/// What happened to a key in a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// One change, delivered to watchers in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// The key.
    pub key: String,
    /// The new value for a put; the last value for a delete.
    pub value: Bytes,
    /// The value before this change, if the key existed.
    pub prev_value: Option<Bytes>,
    /// The revision of this change.
    pub revision: Revision,
    /// The revision at which the key was created.
    pub create_revision: Revision,
}

/// The result of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A create found the key present.
    #[error("key already exists")]
    AlreadyExists,
    /// An update or delete found the key absent.
    #[error("key not found")]
    NotFound,
    /// The key's mod revision was not the expected one; carries the current value.
    #[error("revision conflict")]
    Conflict(Option<KeyValue>),
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still available.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {0} is a future revision")]
    FutureRevision(Revision),
    /// The backend failed (I/O, corruption, shutdown).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A live watch: events in revision order. The stream ends if the watcher falls too far
/// behind or the store shuts down; the watcher then re-lists, as a Kubernetes reflector does.
pub type WatchReceiver = mpsc::Receiver<Event>;

/// A revisioned key-value store with etcd's semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists every key starting with `prefix`, at `revision` (the current one when `None`).
    async fn list(&self, prefix: &str, revision: Option<Revision>) -> Result<ListResult>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if present.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces `key` if its mod revision is `expected` (any revision when `None`).
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
    -> Result<Revision>;

    /// Deletes `key` if its mod revision is `expected` (any when `None`); returns the deletion
    /// revision and the last value.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Streams changes under `prefix` with revisions greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver>;

    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision reads and watches may still start from.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Discards history below `revision`; the current value of every key is kept.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

//! The embedded SQLite backend, modelled on kine.
//!
//! # Layout
//!
//! * `log`: append-only history, one row per write keyed by its revision. A row stores the key,
//!   the new value (empty for a delete), the key's create revision, a `deleted` flag and the
//!   revision of the key's previous row (`prev_rev`), from which watch events take their
//!   previous value and delete events their last value.
//! * `current`: the latest value of every live key, maintained in the same transaction as the
//!   log, so `get` and current `list`s never scan history.
//! * `meta`: the compacted revision.
//!
//! # Writes
//!
//! One writer thread owns the only write connection. Callers send requests over a channel; the
//! writer drains everything queued into one transaction (each operation checked on its own, so one
//! conflict fails only that operation), commits once (one fsync for the whole group), publishes
//! the events to watchers and then answers every caller. The database runs in WAL mode with
//! `synchronous=FULL`, so an acknowledged write survives a process kill and a power loss.
//!
//! # Reads
//!
//! Reads run on tokio's blocking pool over a small pool of read connections, each in its own
//! snapshot (WAL readers never wait for the writer).
//!
//! # Revisions and compaction (etcd semantics)
//!
//! After `compact(c)`, [`Store::compacted_revision`] is `c`; reads at revision `c` or later
//! succeed and reads below it fail with [`StoreError::Compacted`], as etcd's range does; as
//! in etcd, a read at revision 0 reads the current state.
//! A watch delivers events with revisions greater than `after`, that is, it starts at revision
//! `after + 1`; etcd refuses a watch whose start revision is below the compacted revision, so
//! `watch(prefix, after)` fails with [`StoreError::Compacted`] exactly when `after + 1 < c`.
//! To serve both, compaction keeps every log row at revision `c` or later and, for each key, its
//! latest row below `c` unless that row is a delete; everything else below `c` is removed.

mod reader;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::{KeyValue, ListResult, Result, Revision, Store, StoreError, WatchReceiver};
use reader::ReadPool;
use watch::Hub;
use writer::{Request, Revisions, WriteOp};

/// How long a connection waits for a lock held by another connection before failing. Only the
/// in-memory database (rollback journal, no WAL) and a concurrently opened second store ever wait.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Live events a subscription may have queued before it is dropped as too slow. The writer
/// never waits for a watcher: a dropped watcher's stream ends and its owner re-lists or replays
/// history, which costs far more than queueing, so the bound is generous: about ten seconds of
/// writes at the rates a loaded 2-core machine sustains (the API server's watch cache is the
/// one subscriber in practice).
pub const LIVE_BUFFER: usize = 64 * 1024;

/// Events buffered for a watcher whose consumer is between reads; see [`Store::watch`].
const WATCH_BUFFER: usize = 256;

impl From<&rusqlite::Error> for StoreError {
    fn from(err: &rusqlite::Error) -> Self {
        StoreError::Backend(err.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::from(&err)
    }
}

/// Where the database lives; every connection of one store opens the same location.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    /// A process-private database of SQLite's `memdb` VFS, shared by the store's connections.
    Memory(String),
}

impl Location {
    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = match self {
            Location::File(path) => {
                let conn = Connection::open(path)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn
            }
            Location::Memory(uri) => Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // FULL: the WAL is synced on every commit, so a commit is durable once acknowledged.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(conn)
    }
}

/// The embedded SQLite [`Store`]. Dropping it stops the writer (after the queued writes) and
/// ends every watch stream.
pub struct SqliteStore {
    requests: Option<std::sync::mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    reads: Arc<ReadPool>,
    hub: Arc<Hub>,
    revisions: Arc<Revisions>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`; a reopened store continues from
    /// the revision it had reached.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::start(Location::File(path.as_ref().to_path_buf()))
    }

    /// Opens a fresh store that lives in memory until dropped (for tests).
    pub fn open_in_memory() -> Result<Self> {
        static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A name starting with '/' makes memdb share the database between connections.
        Self::start(Location::Memory(format!(
            "file:/skiff-{pid}-{id}?vfs=memdb"
        )))
    }

    fn start(location: Location) -> Result<Self> {
        let conn = location.connect()?;
        writer::create_schema(&conn)?;
        let revisions = Arc::new(Revisions::load(&conn)?);
        let hub = Arc::new(Hub::default());
        let (requests, writer) = writer::spawn(conn, Arc::clone(&revisions), Arc::clone(&hub))?;
        Ok(SqliteStore {
            requests: Some(requests),
            writer: Some(writer),
            reads: Arc::new(ReadPool::new(location)),
            hub,
            revisions,
        })
    }

    /// Sends `request` to the writer and waits for its answer.
    async fn submit<T>(&self, request: Request, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        let stopped = || StoreError::Backend("store writer has stopped".into());
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn write(&self, op: WriteOp) -> Result<writer::Applied> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Write { op, reply }, answer).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered everything queued; joining
        // it means the database is closed when drop returns, so it can be reopened at once.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.reads.run(move |conn| reader::get(conn, &key)).await
    }

    async fn list(&self, prefix: &str, revision: Option<Revision>) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.reads
            .run(move |conn| reader::list(conn, &prefix, revision))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        Ok(self.write(op).await?.event.revision)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        Ok(self.write(op).await?.event.revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected,
        };
        let applied = self.write(op).await?;
        let last = KeyValue {
            key: applied.event.key,
            value: applied.event.value,
            create_revision: applied.event.create_revision,
            mod_revision: applied.prev_mod_revision,
        };
        Ok((applied.event.revision, last))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver> {
        // Subscribe before reading history: every event committed after the history snapshot
        // then reaches the live subscription, and the overlap is dropped by revision.
        let live = self
            .hub
            .subscribe(prefix)
            .ok_or_else(|| StoreError::Backend("store is shut down".into()))?;
        let owned_prefix = prefix.to_owned();
        let history = self
            .reads
            .run(move |conn| reader::history(conn, &owned_prefix, after))
            .await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch::forward(history, live, after, sender));
        Ok(receiver)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.revisions.current())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.revisions.compacted())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Compact { revision, reply }, answer)
            .await
    }
}

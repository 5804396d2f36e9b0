//! The writer thread: group commit of writes and batched compaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::watch::Hub;
use crate::{Event, EventType, KeyValue, Result, Revision, StoreError};

/// The most requests committed in one transaction; bounds the burst a watcher must absorb.
const MAX_GROUP: usize = 1024;

/// Log rows examined per compaction transaction; writers get a turn between chunks.
const COMPACTION_CHUNK_ROWS: i64 = 1000;

/// Creates the tables if they do not exist yet.
pub(super) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS log (
            rev INTEGER PRIMARY KEY,
            key BLOB NOT NULL,
            value BLOB NOT NULL,
            create_rev INTEGER NOT NULL,
            prev_rev INTEGER,
            deleted INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
        CREATE TABLE IF NOT EXISTS current (
            key BLOB PRIMARY KEY,
            create_rev INTEGER NOT NULL,
            mod_rev INTEGER NOT NULL,
            value BLOB NOT NULL
        );
        CREATE TABLE IF NOT EXISTS meta (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );",
    )
}

/// The latest committed and the compacted revision, readable without touching the database.
pub(super) struct Revisions {
    current: AtomicI64,
    compacted: AtomicI64,
}

impl Revisions {
    /// Reads both revisions from the database (the log's last row is never compacted away).
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<Self> {
        Ok(Revisions {
            current: AtomicI64::new(super::reader::current_revision(conn)?),
            compacted: AtomicI64::new(super::reader::compacted_revision(conn)?),
        })
    }

    pub(super) fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    pub(super) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }
}

/// A write, checked against the key's state when its group is applied.
pub(super) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// A successful write: its event, and the mod revision the key had before it (0 if absent).
pub(super) struct Applied {
    pub(super) event: Event,
    pub(super) prev_mod_revision: Revision,
}

/// What callers send to the writer thread.
pub(super) enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<Applied>>,
    },
    /// Compact below `revision`.
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Request {
    fn fail(self, err: StoreError) {
        // A caller that stopped waiting does not care.
        match self {
            Request::Write { reply, .. } => drop(reply.send(Err(err))),
            Request::Compact { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// A request applied within its group, with the answer it gets if the group commits.
enum Answer {
    Write(oneshot::Sender<Result<Applied>>, Result<Applied>),
    /// A compaction recorded at this revision (its rows still to delete), or refused.
    Compact(oneshot::Sender<Result<()>>, Result<Revision>),
}

impl Answer {
    fn fail(self, err: StoreError) {
        match self {
            Answer::Write(reply, _) => drop(reply.send(Err(err))),
            Answer::Compact(reply, _) => drop(reply.send(Err(err))),
        }
    }
}

/// Starts the writer thread on `conn`.
pub(super) fn spawn(
    conn: Connection,
    revisions: Arc<Revisions>,
    hub: Arc<Hub>,
) -> Result<(Sender<Request>, JoinHandle<()>)> {
    let (sender, requests) = std::sync::mpsc::channel();
    let writer = Writer {
        conn,
        revisions,
        hub,
        compaction: None,
    };
    let handle = std::thread::Builder::new()
        .name("skiff-store-writer".into())
        .spawn(move || writer.run(requests))
        .map_err(|err| StoreError::Backend(format!("starting the store writer: {err}")))?;
    Ok((sender, handle))
}

/// Physical compaction in progress, done a chunk at a time between write groups.
struct Compaction {
    /// Rows below this revision are compacted.
    target: Revision,
    /// The next log revision to examine.
    cursor: Revision,
    /// Callers answered once the compaction is complete.
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

struct Writer {
    conn: Connection,
    revisions: Arc<Revisions>,
    hub: Arc<Hub>,
    compaction: Option<Compaction>,
}

impl Writer {
    fn run(mut self, requests: Receiver<Request>) {
        loop {
            // Block for work only when no compaction is waiting for idle time.
            let first = if self.compaction.is_some() {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match requests.try_recv() {
                        Ok(request) => group.push(request),
                        Err(_) => break,
                    }
                }
                self.commit_group(group);
            }
            self.compaction_step();
        }
        // Ends every watch stream: the store is gone.
        self.hub.close();
    }

    /// Applies `group` in one transaction, then publishes its events and answers its callers.
    fn commit_group(&mut self, group: Vec<Request>) {
        let mut current = self.revisions.current();
        let mut compacted = self.revisions.compacted();
        let mut answers = Vec::with_capacity(group.len());
        let mut requests = group.into_iter();
        let committed = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for request in requests.by_ref() {
                answers.push(match request {
                    Request::Write { op, reply } => match apply(&tx, op, current + 1) {
                        Ok(outcome) => {
                            current += i64::from(outcome.is_ok());
                            Answer::Write(reply, outcome)
                        }
                        Err(err) => {
                            answers.push(Answer::Write(reply, Err(StoreError::from(&err))));
                            return Err(err);
                        }
                    },
                    Request::Compact { revision, reply } => {
                        match record_compaction(&tx, revision, current, &mut compacted) {
                            Ok(outcome) => Answer::Compact(reply, outcome),
                            Err(err) => {
                                answers.push(Answer::Compact(reply, Err(StoreError::from(&err))));
                                return Err(err);
                            }
                        }
                    }
                });
            }
            tx.commit()
        })();

        if let Err(err) = committed {
            // Rolled back: nothing in the group happened.
            tracing::error!(error = %err, "store write transaction failed");
            let err = StoreError::from(err);
            answers
                .into_iter()
                .for_each(|answer| answer.fail(err.clone()));
            requests.for_each(|request| request.fail(err.clone()));
            return;
        }
        self.revisions.current.store(current, Ordering::Release);
        self.revisions.compacted.store(compacted, Ordering::Release);
        let events: Vec<&Event> = answers
            .iter()
            .filter_map(|answer| match answer {
                Answer::Write(_, Ok(applied)) => Some(&applied.event),
                _ => None,
            })
            .collect();
        self.hub.publish(&events);
        for answer in answers {
            match answer {
                Answer::Write(reply, outcome) => drop(reply.send(outcome)),
                Answer::Compact(reply, Ok(revision)) => self.schedule_compaction(revision, reply),
                Answer::Compact(reply, Err(err)) => drop(reply.send(Err(err))),
            }
        }
    }

    fn schedule_compaction(&mut self, target: Revision, waiter: oneshot::Sender<Result<()>>) {
        let compaction = self.compaction.get_or_insert_with(|| Compaction {
            target,
            cursor: 0,
            waiters: Vec::new(),
        });
        if target > compaction.target {
            // Rows kept for the old target may be superseded now: rescan from the start.
            compaction.target = target;
            compaction.cursor = 0;
        }
        compaction.waiters.push(waiter);
    }

    /// Compacts one chunk of the log, answering the waiters when the compaction is done.
    fn compaction_step(&mut self) {
        let Some(compaction) = self.compaction.as_mut() else {
            return;
        };
        let outcome = match compact_chunk(&self.conn, compaction.cursor, compaction.target) {
            Ok(Some(next)) => {
                compaction.cursor = next;
                return;
            }
            Ok(None) => Ok(()),
            Err(err) => Err(StoreError::from(err)),
        };
        if let Some(done) = self.compaction.take() {
            for waiter in done.waiters {
                let _ = waiter.send(outcome.clone());
            }
        }
    }
}

/// Compacts up to [`COMPACTION_CHUNK_ROWS`] log rows from revision `from` on (and below
/// `target`); returns the revision the next chunk starts at, or `None` when done.
fn compact_chunk(
    conn: &Connection,
    from: Revision,
    target: Revision,
) -> rusqlite::Result<Option<Revision>> {
    let next: Option<Revision> = conn
        .prepare_cached(
            "SELECT rev FROM log WHERE rev >= ?1 AND rev < ?2 ORDER BY rev LIMIT 1 OFFSET ?3",
        )?
        .query_row(params![from, target, COMPACTION_CHUNK_ROWS], |row| {
            row.get(0)
        })
        .optional()?;
    conn.prepare_cached(
        // A row below the target goes if it is a delete or a newer row below the target
        // supersedes it; rows at or above the target are all kept for watches.
        "DELETE FROM log WHERE rev IN (
            SELECT old.rev FROM log AS old
            WHERE old.rev >= ?1 AND old.rev < ?2
              AND (old.deleted = 1 OR EXISTS (
                SELECT 1 FROM log AS newer
                WHERE newer.key = old.key AND newer.rev > old.rev AND newer.rev < ?3)))",
    )?
    .execute(params![from, next.unwrap_or(target), target])?;
    Ok(next)
}

/// Validates a compaction to `revision` against the group's view of the store and records it.
/// It is recorded before any row is deleted, so no reader trusts a partly deleted revision.
fn record_compaction(
    tx: &Transaction,
    revision: Revision,
    current: Revision,
    compacted: &mut Revision,
) -> rusqlite::Result<Result<Revision>> {
    if revision <= *compacted {
        return Ok(Err(StoreError::Compacted {
            requested: revision,
            compacted: *compacted,
        }));
    }
    if revision > current {
        return Ok(Err(StoreError::FutureRevision(revision)));
    }
    tx.prepare_cached(
        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute([revision])?;
    *compacted = revision;
    Ok(Ok(revision))
}

/// Checks `op` against the key's current state and, if it holds, writes it at `revision`.
/// The outer error aborts the whole group; the inner one fails this operation alone.
fn apply(tx: &Transaction, op: WriteOp, revision: Revision) -> rusqlite::Result<Result<Applied>> {
    let (key, value, expected, kind) = match op {
        WriteOp::Create { key, value } => (key, value, None, None),
        WriteOp::Update {
            key,
            value,
            expected,
        } => (key, value, expected, Some(EventType::Put)),
        WriteOp::Delete { key, expected } => (key, Bytes::new(), expected, Some(EventType::Delete)),
    };
    let existing = tx
        .prepare_cached("SELECT create_rev, mod_rev, value FROM current WHERE key = ?1")?
        .query_row([key.as_bytes()], |row| {
            Ok(KeyValue {
                key: key.clone(),
                create_revision: row.get(0)?,
                mod_revision: row.get(1)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(2)?),
            })
        })
        .optional()?;

    let (kind, previous) = match (kind, existing) {
        (None, Some(_)) => return Ok(Err(StoreError::AlreadyExists)),
        (None, None) => (EventType::Put, None),
        (Some(_), None) => return Ok(Err(StoreError::NotFound)),
        (Some(_), Some(found)) if expected.is_some_and(|rev| rev != found.mod_revision) => {
            return Ok(Err(StoreError::Conflict(Some(found))));
        }
        (Some(kind), Some(found)) => (kind, Some(found)),
    };
    let create_revision = previous.as_ref().map_or(revision, |kv| kv.create_revision);
    let prev_mod_revision = previous.as_ref().map_or(0, |kv| kv.mod_revision);
    let deleted = kind == EventType::Delete;

    tx.prepare_cached(
        "INSERT INTO log (rev, key, value, create_rev, prev_rev, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key.as_bytes(),
        value.as_ref(),
        create_revision,
        previous.as_ref().map(|kv| kv.mod_revision),
        deleted,
    ])?;
    if deleted {
        tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
            .execute([key.as_bytes()])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO current (key, create_rev, mod_rev, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET mod_rev = excluded.mod_rev, value = excluded.value",
        )?
        .execute(params![
            key.as_bytes(),
            create_revision,
            revision,
            value.as_ref()
        ])?;
    }

    let prev_value = previous.map(|kv| kv.value);
    let event = Event {
        kind,
        key,
        // A delete event carries the value the key had.
        value: if deleted {
            prev_value.clone().unwrap_or_default()
        } else {
            value
        },
        prev_value,
        revision,
        create_revision,
    };
    Ok(Ok(Applied {
        event,
        prev_mod_revision,
    }))
}

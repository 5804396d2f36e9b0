//! Reads: a pool of read connections used from tokio's blocking threads, and the queries.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Location;
use crate::{Event, EventType, KeyValue, ListResult, Result, Revision, StoreError};

/// Idle read connections kept open; more are opened under load and closed afterwards.
const MAX_IDLE_READERS: usize = 8;

/// Read connections to one database.
pub(super) struct ReadPool {
    location: Location,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(location: Location) -> Self {
        ReadPool {
            location,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a pooled connection on the blocking pool, off the async runtime.
    pub(super) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.checkout()?;
            let result = read(&mut conn);
            pool.checkin(conn);
            result
        })
        .await
        .map_err(|err| StoreError::Backend(format!("store read task failed: {err}")))?
    }

    fn checkout(&self) -> Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let conn = self.location.connect()?;
                conn.pragma_update(None, "query_only", true)?;
                Ok(conn)
            }
        }
    }

    fn checkin(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// The smallest key greater than every key starting with `prefix`. Keys are UTF-8, which
/// never contains the byte 0xFF, so the last byte can always be incremented and `[0xFF]`
/// bounds every key.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

fn key_column(row: &Row, index: usize) -> rusqlite::Result<String> {
    String::from_utf8(row.get(index)?)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Blob, Box::new(err)))
}

fn bytes_column(row: &Row, index: usize) -> rusqlite::Result<Bytes> {
    Ok(Bytes::from(row.get::<_, Vec<u8>>(index)?))
}

/// Reads a [`KeyValue`] from columns `key, create_rev, mod_rev, value`.
fn key_value(row: &Row) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_column(row, 0)?,
        create_revision: row.get(1)?,
        mod_revision: row.get(2)?,
        value: bytes_column(row, 3)?,
    })
}

/// The latest revision (the log's last row survives every compaction).
pub(super) fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT COALESCE(MAX(rev), 0) FROM log")?
        .query_row([], |row| row.get(0))
}

/// The recorded compacted revision (0 before the first compaction).
pub(super) fn compacted_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(super) fn get(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(conn
        .prepare_cached("SELECT key, create_rev, mod_rev, value FROM current WHERE key = ?1")?
        .query_row([key.as_bytes()], key_value)
        .optional()?)
}

pub(super) fn list(
    conn: &mut Connection,
    prefix: &str,
    revision: Option<Revision>,
) -> Result<ListResult> {
    // As in etcd, a revision of 0 (or less) reads the current state.
    let revision = revision.filter(|revision| *revision > 0);
    // One transaction: the items and the revision come from the same snapshot.
    let tx = conn.transaction()?;
    let current = current_revision(&tx)?;
    let end = range_end(prefix);
    let items = match revision {
        None => tx
            .prepare_cached(
                "SELECT key, create_rev, mod_rev, value FROM current
                 WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )?
            .query_map(params![prefix.as_bytes(), end], key_value)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        Some(revision) => {
            check_readable(&tx, revision, current)?;
            tx.prepare_cached(
                // Each key's latest row at the revision, unless that row is a delete.
                "SELECT key, create_rev, rev, value FROM log
                 WHERE rev IN (SELECT MAX(rev) FROM log
                               WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key)
                   AND deleted = 0
                 ORDER BY key",
            )?
            .query_map(params![prefix.as_bytes(), end, revision], key_value)?
            .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    tx.commit()?;
    Ok(ListResult {
        items,
        revision: revision.unwrap_or(current),
    })
}

/// Fails unless state at `revision` is still (compaction) and already (current) readable.
fn check_readable(conn: &Connection, revision: Revision, current: Revision) -> Result<()> {
    let compacted = compacted_revision(conn)?;
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    if revision > current {
        return Err(StoreError::FutureRevision(revision));
    }
    Ok(())
}

/// Past events for a watch, read from one snapshot.
pub(super) struct History {
    /// Events under the prefix with revisions greater than the watch's start, in order.
    pub(super) events: Vec<Event>,
    /// The snapshot's revision: later events come from the live subscription.
    pub(super) head: Revision,
}

/// Reads the events under `prefix` with revisions greater than `after`.
pub(super) fn history(conn: &mut Connection, prefix: &str, after: Revision) -> Result<History> {
    let tx = conn.transaction()?;
    let head = current_revision(&tx)?;
    let compacted = compacted_revision(&tx)?;
    // etcd refuses a watch starting (at after + 1) below the compacted revision.
    if after.saturating_add(1) < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let events = tx
        .prepare_cached(
            "SELECT l.rev, l.key, l.value, l.create_rev, l.deleted, p.value
             FROM log AS l LEFT JOIN log AS p ON p.rev = l.prev_rev
             WHERE l.rev > ?1 AND l.key >= ?2 AND l.key < ?3
             ORDER BY l.rev",
        )?
        .query_map(
            params![after, prefix.as_bytes(), range_end(prefix)],
            |row| {
                let deleted: bool = row.get(4)?;
                let prev_value = row.get::<_, Option<Vec<u8>>>(5)?.map(Bytes::from);
                Ok(Event {
                    kind: if deleted {
                        EventType::Delete
                    } else {
                        EventType::Put
                    },
                    revision: row.get(0)?,
                    key: key_column(row, 1)?,
                    // A delete row stores no value; its event carries the value the key had.
                    value: if deleted {
                        prev_value.clone().unwrap_or_default()
                    } else {
                        bytes_column(row, 2)?
                    },
                    create_revision: row.get(3)?,
                    prev_value,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(History { events, head })
}

#[cfg(test)]
mod tests {
    use super::range_end;

    #[test]
    fn range_end_bounds_exactly_the_prefix() {
        assert_eq!(range_end("/registry/pods/"), b"/registry/pods0");
        assert_eq!(range_end(""), [0xFF]);
        // "/registry/podsx/" sorts after the end of "/registry/pods/".
        assert!(b"/registry/podsx/".as_slice() > range_end("/registry/pods/").as_slice());
    }
}

//! The store contract, run against the SQLite backend in memory and on disk, and behaviour
//! specific to this backend.

use std::sync::Arc;

use bytes::Bytes;
use skiff_store::sqlite::SqliteStore;
use skiff_store::{Store, StoreError};

async fn in_memory() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().unwrap())
}

mod in_memory {
    skiff_store::store_contract_tests!(super::in_memory);
}

mod on_disk {
    use super::*;

    /// A store in a fresh file under cargo's scratch directory for tests (left in place: the
    /// store outlives any guard the suite could hold).
    async fn on_disk() -> Arc<dyn Store> {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        Arc::new(SqliteStore::open(dir.join("store.db")).unwrap())
    }

    skiff_store::store_contract_tests!(on_disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    skiff_store::contract::persists_across_restart(|| {
        let path = path.clone();
        async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

/// A watcher that never reads is dropped once its buffer is full, and never slows writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_dropped_not_waited_for() {
    let store = in_memory().await;
    let mut stalled = store.watch("/s/", 0).await.unwrap();
    let writes = skiff_store::sqlite::LIVE_BUFFER + 1_000;
    for i in 0..writes {
        store
            .create(&format!("/s/{i}"), Bytes::from_static(b"v"))
            .await
            .unwrap();
    }
    let mut received = 0;
    while stalled.recv().await.is_some() {
        received += 1;
    }
    assert!(
        received < writes,
        "the stream ended early, after {received} events"
    );
}

/// Compaction in many chunks leaves exactly the current values and the history above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_compaction_keeps_current_values() {
    let store = in_memory().await;
    for round in 0..5 {
        for i in 0..1000 {
            let key = format!("/k/{i}");
            let value = Bytes::from(format!("{round}"));
            match round {
                0 => store.create(&key, value).await.unwrap(),
                _ => store.update(&key, value, None).await.unwrap(),
            };
        }
    }
    let current = store.current_revision().await.unwrap();
    assert_eq!(current, 5000);
    store.compact(current - 10).await.unwrap();
    let list = store.list("/k/", None).await.unwrap();
    assert_eq!(list.items.len(), 1000);
    assert!(list.items.iter().all(|item| item.value == "4"));
    let at_compaction = store.list("/k/", Some(current - 10)).await.unwrap();
    assert_eq!(at_compaction.items.len(), 1000);
    assert_eq!(
        store.list("/k/", Some(current - 11)).await,
        Err(StoreError::Compacted {
            requested: current - 11,
            compacted: current - 10,
        })
    );
    let mut watch = store.watch("/k/", current - 11).await.unwrap();
    for revision in current - 10..=current {
        assert_eq!(watch.recv().await.unwrap().revision, revision);
    }
}

/// Compaction physically removes superseded rows and deleted keys' history, keeping one row
/// per live key below the compacted revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_removes_superseded_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..1000 {
        let key = format!("/k/{i}");
        store.create(&key, Bytes::from_static(b"0")).await.unwrap();
        for round in 1..4u8 {
            store
                .update(&key, Bytes::from(vec![round]), None)
                .await
                .unwrap();
        }
    }
    for i in 0..100 {
        store.delete(&format!("/k/{i}"), None).await.unwrap();
    }
    let last = store.create("/k/last", Bytes::new()).await.unwrap();
    store.compact(last).await.unwrap();

    let db = rusqlite::Connection::open(&path).unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    // 900 live keys' latest rows below the target, plus the row at the target.
    assert_eq!(count("log"), 901);
    assert_eq!(count("current"), 901);
    assert_eq!(
        store.list("/k/", Some(last)).await.unwrap().items.len(),
        901
    );
}

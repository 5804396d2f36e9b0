//! The behaviour suite every [`Store`] backend must pass.
//!
//! Each behaviour is a public async function taking a fresh, empty store.
//! [`store_contract_tests!`](crate::store_contract_tests) turns all of them into one
//! `#[tokio::test]` each for a backend (the calling crate needs `tokio` as a dependency):
//!
//! ```ignore
//! skiff_store::store_contract_tests!(|| async {
//!     Arc::new(SqliteStore::open_in_memory().unwrap()) as Arc<dyn Store>
//! });
//! ```
//!
//! Backends that persist also run [`persists_across_restart`] with a function that reopens the
//! same storage.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Event, EventType, KeyValue, ListResult, Revision, Store, StoreError, WatchReceiver};

/// How long a test waits for an expected watch event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Generates one `#[tokio::test]` per behaviour of this module, each on a store from `fresh`
/// (an expression callable as `fresh().await`, yielding an empty `Arc<dyn Store>`).
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        $crate::store_contract_tests!(@each $fresh;
            create_get_update_delete,
            failed_writes_do_not_consume_revisions,
            revisions_increase_across_keys,
            list_at_current_and_past_revisions,
            prefixes_are_isolated,
            watch_from_zero_replays_history,
            watch_from_past_revision,
            watch_live,
            delete_events_carry_the_last_value,
            compaction,
            watch_below_compaction_fails,
            concurrent_writers,
            watches_started_during_writes,
        );
    };
    (@each $fresh:expr; $($behaviour:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $behaviour() {
                $crate::contract::$behaviour(($fresh)().await).await;
            }
        )*
    };
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: bytes(value),
        create_revision,
        mod_revision,
    }
}

fn put(key: &str, value: &str, prev: Option<&str>, revision: Revision, create: Revision) -> Event {
    Event {
        kind: EventType::Put,
        key: key.to_owned(),
        value: bytes(value),
        prev_value: prev.map(bytes),
        revision,
        create_revision: create,
    }
}

fn deleted(key: &str, last: &str, revision: Revision, create: Revision) -> Event {
    Event {
        kind: EventType::Delete,
        key: key.to_owned(),
        value: bytes(last),
        prev_value: Some(bytes(last)),
        revision,
        create_revision: create,
    }
}

/// Receives exactly `count` events, failing if they do not arrive in time.
async fn next_events(watch: &mut WatchReceiver, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match tokio::time::timeout(EVENT_TIMEOUT, watch.recv()).await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => panic!("watch ended after {} of {count} events", events.len()),
            Err(_) => panic!("timed out after {} of {count} events", events.len()),
        }
    }
    events
}

/// Asserts that no event is pending on `watch` (after giving a stray one time to arrive).
async fn assert_quiet(watch: &mut WatchReceiver) {
    let stray = tokio::time::timeout(Duration::from_millis(200), watch.recv()).await;
    assert!(stray.is_err(), "unexpected watch item: {stray:?}");
}

/// Keys of a list, for compact assertions.
fn keys(list: &ListResult) -> Vec<&str> {
    list.items.iter().map(|item| item.key.as_str()).collect()
}

/// Create, get, update and delete, with their CAS conflicts and missing/existing-key errors.
pub async fn create_get_update_delete(store: Arc<dyn Store>) {
    let created = store.create("/a", bytes("1")).await.unwrap();
    assert_eq!(
        store.get("/a").await.unwrap(),
        Some(kv("/a", "1", created, created))
    );
    assert_eq!(
        store.create("/a", bytes("again")).await,
        Err(StoreError::AlreadyExists)
    );

    // A stale expected revision conflicts and reports the current value.
    assert_eq!(
        store.update("/a", bytes("2"), Some(created + 100)).await,
        Err(StoreError::Conflict(Some(kv("/a", "1", created, created))))
    );
    let updated = store.update("/a", bytes("2"), Some(created)).await.unwrap();
    assert!(updated > created);
    let unconditional = store.update("/a", bytes("3"), None).await.unwrap();
    assert!(unconditional > updated);
    assert_eq!(
        store.get("/a").await.unwrap(),
        Some(kv("/a", "3", created, unconditional))
    );

    assert_eq!(
        store.delete("/a", Some(updated)).await,
        Err(StoreError::Conflict(Some(kv(
            "/a",
            "3",
            created,
            unconditional
        ))))
    );
    let (removed, last) = store.delete("/a", Some(unconditional)).await.unwrap();
    assert!(removed > unconditional);
    assert_eq!(last, kv("/a", "3", created, unconditional));
    assert_eq!(store.get("/a").await.unwrap(), None);

    assert_eq!(
        store.update("/a", bytes("4"), None).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.update("/a", bytes("4"), Some(unconditional)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.delete("/a", None).await, Err(StoreError::NotFound));

    // Re-creating starts a new life: a new create revision.
    let recreated = store.create("/a", bytes("5")).await.unwrap();
    assert!(recreated > removed);
    assert_eq!(
        store.get("/a").await.unwrap(),
        Some(kv("/a", "5", recreated, recreated))
    );
    let (_, last) = store.delete("/a", None).await.unwrap();
    assert_eq!(last, kv("/a", "5", recreated, recreated));
    assert_eq!(store.get("/missing").await.unwrap(), None);
}

/// A write that fails leaves the revision where it was, as a failed etcd transaction does.
pub async fn failed_writes_do_not_consume_revisions(store: Arc<dyn Store>) {
    let created = store.create("/a", bytes("1")).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), created);
    assert!(store.create("/a", bytes("1")).await.is_err());
    assert!(
        store
            .update("/a", bytes("2"), Some(created + 1))
            .await
            .is_err()
    );
    assert!(store.update("/b", bytes("2"), None).await.is_err());
    assert!(store.delete("/b", None).await.is_err());
    assert_eq!(store.current_revision().await.unwrap(), created);
    assert_eq!(store.create("/b", bytes("1")).await.unwrap(), created + 1);
}

/// Every write takes the next revision of one counter shared by all keys.
pub async fn revisions_increase_across_keys(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut revisions = vec![
        store.create("/x/1", bytes("a")).await.unwrap(),
        store.create("/y/2", bytes("b")).await.unwrap(),
        store.update("/x/1", bytes("c"), None).await.unwrap(),
        store.delete("/y/2", None).await.unwrap().0,
        store.create("/z", bytes("d")).await.unwrap(),
    ];
    assert!(revisions[0] > start);
    // etcd adds exactly one per write.
    let expected: Vec<Revision> = (revisions[0]..revisions[0] + 5).collect();
    assert_eq!(revisions, expected);
    assert_eq!(
        store.current_revision().await.unwrap(),
        revisions.pop().unwrap()
    );
}

/// Lists at the current revision and at each past one see exactly the state of that moment.
pub async fn list_at_current_and_past_revisions(store: Arc<dyn Store>) {
    let empty = store.list("/p/", None).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.revision, store.current_revision().await.unwrap());

    let a = store.create("/p/a", bytes("a1")).await.unwrap();
    let b = store.create("/p/b", bytes("b1")).await.unwrap();
    let a2 = store.update("/p/a", bytes("a2"), None).await.unwrap();
    let (b_gone, _) = store.delete("/p/b", None).await.unwrap();
    let c = store.create("/p/c", bytes("c1")).await.unwrap();

    let now = store.list("/p/", None).await.unwrap();
    assert_eq!(
        now,
        ListResult {
            items: vec![kv("/p/a", "a2", a, a2), kv("/p/c", "c1", c, c)],
            revision: c,
        }
    );
    let at = |revision| {
        let store = Arc::clone(&store);
        async move { store.list("/p/", Some(revision)).await.unwrap() }
    };
    assert_eq!(at(a).await.items, vec![kv("/p/a", "a1", a, a)]);
    assert_eq!(
        at(b).await.items,
        vec![kv("/p/a", "a1", a, a), kv("/p/b", "b1", b, b)]
    );
    assert_eq!(
        at(a2).await.items,
        vec![kv("/p/a", "a2", a, a2), kv("/p/b", "b1", b, b)]
    );
    assert_eq!(at(b_gone).await.items, vec![kv("/p/a", "a2", a, a2)]);
    assert_eq!(at(c).await, now);
    // As in etcd, revision 0 means the current one.
    assert_eq!(at(0).await, now);
    assert_eq!(at(b).await.revision, b);
    if a > 1 {
        assert!(at(a - 1).await.items.is_empty());
    }

    assert_eq!(
        store.list("/p/", Some(c + 1)).await,
        Err(StoreError::FutureRevision(c + 1))
    );
}

/// A prefix sees only keys under it: `/registry/pods/` never sees `/registry/podsx/`.
pub async fn prefixes_are_isolated(store: Arc<dyn Store>) {
    let mut pods = store.watch("/registry/pods/", 0).await.unwrap();
    store.create("/registry/pods", bytes("bare")).await.unwrap();
    store.create("/registry/podsx/a", bytes("x")).await.unwrap();
    let pod = store.create("/registry/pods/a", bytes("p")).await.unwrap();
    store
        .create("/registry/pods0", bytes("next"))
        .await
        .unwrap();
    store
        .create("/registry/pod/a", bytes("short"))
        .await
        .unwrap();

    let list = store.list("/registry/pods/", None).await.unwrap();
    assert_eq!(keys(&list), ["/registry/pods/a"]);
    let past = store.list("/registry/pods/", Some(pod)).await.unwrap();
    assert_eq!(keys(&past), ["/registry/pods/a"]);
    let all = store.list("/registry/", None).await.unwrap();
    assert_eq!(
        keys(&all),
        [
            "/registry/pod/a",
            "/registry/pods",
            "/registry/pods/a",
            "/registry/pods0",
            "/registry/podsx/a",
        ]
    );
    assert_eq!(keys(&store.list("", None).await.unwrap()).len(), 5);

    assert_eq!(
        next_events(&mut pods, 1).await,
        [put("/registry/pods/a", "p", None, pod, pod)]
    );
    assert_quiet(&mut pods).await;
    // History replays respect the prefix too.
    let mut replay = store.watch("/registry/pods/", 0).await.unwrap();
    assert_eq!(next_events(&mut replay, 1).await[0].key, "/registry/pods/a");
    assert_quiet(&mut replay).await;
}

/// Writes three keys: `/w/a` created, updated, deleted; `/w/b` created. Returns the revisions.
async fn write_history(store: &Arc<dyn Store>) -> [Revision; 4] {
    let a = store.create("/w/a", bytes("a1")).await.unwrap();
    let a2 = store.update("/w/a", bytes("a2"), Some(a)).await.unwrap();
    let b = store.create("/w/b", bytes("b1")).await.unwrap();
    let (gone, _) = store.delete("/w/a", None).await.unwrap();
    [a, a2, b, gone]
}

fn history_events([a, a2, b, gone]: [Revision; 4]) -> Vec<Event> {
    vec![
        put("/w/a", "a1", None, a, a),
        put("/w/a", "a2", Some("a1"), a2, a),
        put("/w/b", "b1", None, b, b),
        deleted("/w/a", "a2", gone, a),
    ]
}

/// A watch from revision 0 replays all history in order, then continues live.
pub async fn watch_from_zero_replays_history(store: Arc<dyn Store>) {
    let revisions = write_history(&store).await;
    let mut watch = store.watch("/w/", 0).await.unwrap();
    assert_eq!(next_events(&mut watch, 4).await, history_events(revisions));
    let later = store.update("/w/b", bytes("b2"), None).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 1).await,
        [put("/w/b", "b2", Some("b1"), later, revisions[2])]
    );
    assert_quiet(&mut watch).await;
}

/// A watch after revision r delivers exactly the events with revisions greater than r.
pub async fn watch_from_past_revision(store: Arc<dyn Store>) {
    let revisions = write_history(&store).await;
    let all = history_events(revisions);
    for (seen, after) in revisions.iter().enumerate() {
        let mut watch = store.watch("/w/", *after).await.unwrap();
        let rest = all.len() - seen - 1;
        assert_eq!(next_events(&mut watch, rest).await, all[seen + 1..]);
        assert_quiet(&mut watch).await;
    }
}

/// A watch from the current revision sees only later writes, in order.
pub async fn watch_live(store: Arc<dyn Store>) {
    store.create("/w/before", bytes("old")).await.unwrap();
    let now = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", now).await.unwrap();
    assert_quiet(&mut watch).await;
    let revisions = write_history(&store).await;
    assert_eq!(next_events(&mut watch, 4).await, history_events(revisions));
    assert_quiet(&mut watch).await;

    // A watch from a future revision waits for it.
    let current = store.current_revision().await.unwrap();
    let mut future = store.watch("/w/", current + 1).await.unwrap();
    store.create("/w/skipped", bytes("s")).await.unwrap();
    let wanted = store.create("/w/wanted", bytes("w")).await.unwrap();
    assert_eq!(next_events(&mut future, 1).await[0].revision, wanted);
}

/// Delete events, live and replayed, carry the deleted value and its create revision.
pub async fn delete_events_carry_the_last_value(store: Arc<dyn Store>) {
    let mut live = store
        .watch("/d/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    let created = store.create("/d/k", bytes("v1")).await.unwrap();
    store.update("/d/k", bytes("v2"), None).await.unwrap();
    let (gone, last) = store.delete("/d/k", None).await.unwrap();
    assert_eq!(last.value, bytes("v2"));
    let expected = deleted("/d/k", "v2", gone, created);
    assert_eq!(next_events(&mut live, 3).await[2], expected);
    let mut replay = store.watch("/d/", gone - 1).await.unwrap();
    assert_eq!(next_events(&mut replay, 1).await, [expected]);
}

/// Compaction discards history below a revision, keeps every current value and the state at
/// the compacted revision itself, and refuses repeated or future compactions.
pub async fn compaction(store: Arc<dyn Store>) {
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    let [a, a2, b, gone] = write_history(&store).await;
    let c = store.create("/w/c", bytes("c1")).await.unwrap();
    let b2 = store.update("/w/b", bytes("b2"), None).await.unwrap();
    let before_compaction = store.list("/w/", Some(gone)).await.unwrap();

    store.compact(gone).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), gone);
    assert_eq!(store.current_revision().await.unwrap(), b2);

    // Current values are untouched.
    assert_eq!(
        store.get("/w/b").await.unwrap(),
        Some(kv("/w/b", "b2", b, b2))
    );
    assert_eq!(
        store.list("/w/", None).await.unwrap().items,
        vec![kv("/w/b", "b2", b, b2), kv("/w/c", "c1", c, c)]
    );
    // The compacted revision itself stays readable; older ones do not.
    assert_eq!(
        store.list("/w/", Some(gone)).await.unwrap(),
        before_compaction
    );
    assert_eq!(
        store.list("/w/", Some(c)).await.unwrap().items,
        vec![kv("/w/b", "b1", b, b), kv("/w/c", "c1", c, c)]
    );
    for old in [a, a2, b, gone - 1] {
        assert_eq!(
            store.list("/w/", Some(old)).await,
            Err(StoreError::Compacted {
                requested: old,
                compacted: gone,
            })
        );
    }
    // A watch may start at the compacted revision: the delete there is still delivered.
    let mut watch = store.watch("/w/", gone - 1).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 3).await,
        [
            deleted("/w/a", "a2", gone, a),
            put("/w/c", "c1", None, c, c),
            put("/w/b", "b2", Some("b1"), b2, b),
        ]
    );

    assert_eq!(
        store.compact(gone).await,
        Err(StoreError::Compacted {
            requested: gone,
            compacted: gone,
        })
    );
    assert_eq!(
        store.compact(b2 + 1).await,
        Err(StoreError::FutureRevision(b2 + 1))
    );
    // Compacting up to the current revision keeps every live key.
    store.compact(b2).await.unwrap();
    assert_eq!(
        store.list("/w/", Some(b2)).await.unwrap().items,
        vec![kv("/w/b", "b2", b, b2), kv("/w/c", "c1", c, c)]
    );
    let next = store.update("/w/c", bytes("c2"), Some(c)).await.unwrap();
    assert_eq!(next, b2 + 1);
}

/// A watch that would start below the compacted revision fails with `Compacted`.
pub async fn watch_below_compaction_fails(store: Arc<dyn Store>) {
    let [a, _, _, gone] = write_history(&store).await;
    store.compact(gone).await.unwrap();
    // Watching after `gone - 2` would start at `gone - 1`, below the compacted revision.
    for after in [0, a, gone - 2] {
        match store.watch("/w/", after).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (after, gone)),
            other => panic!("watch after {after}: expected Compacted, got {other:?}"),
        }
    }
    assert!(store.watch("/w/", gone - 1).await.is_ok());
    assert!(store.watch("/w/", gone).await.is_ok());
}

/// Concurrent writers: 16 tasks x 200 creates get unique revisions, and a watcher sees every
/// event exactly once, in revision order.
pub async fn concurrent_writers(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const CREATES: usize = 200;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/c/", start).await.unwrap();
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut written = Vec::with_capacity(CREATES);
                for i in 0..CREATES {
                    let key = format!("/c/{task}/{i}");
                    let revision = store.create(&key, bytes(&key)).await.unwrap();
                    written.push((revision, key));
                }
                written
            })
        })
        .collect();
    let mut written = Vec::with_capacity(TASKS * CREATES);
    for writer in writers {
        let task_writes = writer.await.unwrap();
        // Each writer's own writes are ordered.
        assert!(task_writes.windows(2).all(|pair| pair[0].0 < pair[1].0));
        written.extend(task_writes);
    }
    written.sort();
    let revisions: HashSet<Revision> = written.iter().map(|(revision, _)| *revision).collect();
    assert_eq!(revisions.len(), TASKS * CREATES, "revisions must be unique");
    assert_eq!(
        store.current_revision().await.unwrap(),
        written.last().unwrap().0
    );

    let events = next_events(&mut watch, TASKS * CREATES).await;
    let seen: Vec<(Revision, String)> = events
        .iter()
        .map(|event| (event.revision, event.key.clone()))
        .collect();
    assert_eq!(seen, written, "events in revision order, each exactly once");
    assert!(
        events
            .iter()
            .all(|event| event.value == event.key.as_bytes())
    );
    assert_quiet(&mut watch).await;
    assert_eq!(
        store.list("/c/", None).await.unwrap().items.len(),
        TASKS * CREATES
    );
}

/// Watches started while writers are busy each deliver exactly the events after their start
/// revision: none lost between history and live delivery, none twice.
pub async fn watches_started_during_writes(store: Arc<dyn Store>) {
    const TASKS: usize = 4;
    const CREATES: usize = 200;
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..CREATES {
                    store
                        .create(&format!("/r/{task}/{i}"), bytes("v"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut watches = Vec::new();
    for _ in 0..20 {
        let after = store.current_revision().await.unwrap();
        watches.push((after, store.watch("/r/", after).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let last = store.current_revision().await.unwrap();
    let first = last - (TASKS * CREATES) as Revision + 1;
    for (after, watch) in &mut watches {
        // Every write in this store is under the prefix, so revisions are consecutive.
        let expected: Vec<Revision> = (first.max(*after + 1)..=last).collect();
        let events = next_events(watch, expected.len()).await;
        let revisions: Vec<Revision> = events.iter().map(|event| event.revision).collect();
        assert_eq!(revisions, expected, "watch after {after}");
    }
    // Nothing more, once any stray duplicate has had time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (after, watch) in &mut watches {
        let stray = watch.try_recv();
        assert!(stray.is_err(), "watch after {after}: unexpected {stray:?}");
    }
}

/// For backends that persist: state, revisions, history and the compacted revision survive
/// closing and reopening. `open` must open the same (initially empty) storage on every call,
/// and the store from one call is dropped before the next.
pub async fn persists_across_restart<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let revisions = {
        let store = open().await;
        let revisions = write_history(&store).await;
        store.compact(revisions[1]).await.unwrap();
        revisions
    };
    let [a, a2, b, gone] = revisions;
    let store = open().await;
    assert_eq!(store.current_revision().await.unwrap(), gone);
    assert_eq!(store.compacted_revision().await.unwrap(), a2);
    assert_eq!(
        store.list("/w/", None).await.unwrap(),
        ListResult {
            items: vec![kv("/w/b", "b1", b, b)],
            revision: gone,
        }
    );
    assert_eq!(
        store.list("/w/", Some(a2)).await.unwrap().items,
        vec![kv("/w/a", "a2", a, a2)]
    );
    let mut watch = store.watch("/w/", a2 - 1).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 3).await,
        history_events(revisions)[1..]
    );
    // Revisions continue where they stopped.
    assert_eq!(
        store.create("/w/a", bytes("again")).await.unwrap(),
        gone + 1
    );
}

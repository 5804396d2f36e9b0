//! The watch cache: every object of every resource held in memory, fed by one store watch,
//! as kube-apiserver's cacher does. Lists and watches are served from here, so many watchers
//! and frequent lists cost no store reads.
//!
//! Objects are kept as their serialized JSON (with `resourceVersion` filled in) plus the few
//! fields selectors need, so serving a list is mostly copying bytes.

use bytes::Bytes;
use serde_json::Value;
use skiff_api::{RESOURCES, ResourceInfo};
use skiff_store::{Event, EventType, Revision, Store};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How many recent events each resource keeps for watches that resume from a resourceVersion.
const HISTORY_CAPACITY: usize = 16 * 1024;
/// How many live events a watcher may fall behind before its stream is closed.
const BROADCAST_CAPACITY: usize = 16 * 1024;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Values of the resource's selectable fields (see [`ResourceInfo::selectable_fields`]).
    pub fields: Vec<(&'static str, String)>,
    /// The object's resourceVersion.
    pub revision: Revision,
    /// The object serialized as JSON, `metadata.resourceVersion` included.
    pub json: Bytes,
}

impl CachedObject {
    /// Builds the cached form of a stored value at `revision`.
    pub fn from_stored(info: &ResourceInfo, value: &[u8], revision: Revision) -> Option<Self> {
        let mut object: Value = serde_json::from_slice(value).ok()?;
        object
            .get_mut("metadata")?
            .as_object_mut()?
            .insert("resourceVersion".into(), revision.to_string().into());
        Some(Self::from_value(info, &object, revision))
    }

    /// Builds the cached form of an object whose resourceVersion is already set.
    pub fn from_value(info: &ResourceInfo, object: &Value, revision: Revision) -> Self {
        let meta = &object["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let labels = meta["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        let fields = info
            .selectable_fields
            .iter()
            .map(|(label, path)| (*label, field_text(object, path)))
            .collect();
        Self {
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
            labels,
            fields,
            revision,
            json: Bytes::from(serde_json::to_vec(object).expect("a JSON value always serializes")),
        }
    }

    /// The value of a field selector label for this object; absent fields read as "".
    pub fn field(&self, label: &str) -> Option<String> {
        match label {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self
                .fields
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.clone()),
        }
    }

    /// Parses the JSON back into a value.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("cached JSON is valid")
    }
}

/// Reads a dotted path as selector text: strings as they are, booleans and numbers printed.
fn field_text(object: &Value, path: &str) -> String {
    let v = path.split('.').fold(object, |v, seg| &v[seg]);
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The type of a change seen by the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was deleted; the object is its last state at the deletion revision.
    Deleted,
}

/// One change to one object.
#[derive(Debug)]
pub struct Change {
    /// What happened.
    pub kind: ChangeType,
    /// The object after the change (for deletes: its last state).
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed; filtered watches need it to turn updates
    /// into ADDED or DELETED when an object starts or stops matching.
    pub prev: Option<Arc<CachedObject>>,
}

impl Change {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.object.revision
    }
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<Change>>,
    /// Watches may resume from any revision >= this one.
    history_floor: Revision,
    /// The revision of the last change to this resource.
    last_change: Revision,
    /// Live changes for watchers; replaced (closing every watch) on a resync.
    live: broadcast::Sender<Arc<Change>>,
}

/// The cache of one resource.
pub struct ResourceCache {
    /// The resource.
    pub info: &'static ResourceInfo,
    state: RwLock<State>,
}

/// A watch's starting point: past changes to replay, then live changes.
pub struct WatchStart {
    /// Changes (or synthetic ADDED for current objects) to send first.
    pub initial: Vec<Arc<Change>>,
    /// Live changes; those at or below `after` are already covered by `initial`.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The revision `initial` brings the watcher up to.
    pub after: Revision,
}

/// The requested resourceVersion is older than the cache's history.
#[derive(Debug)]
pub struct TooOld {
    /// The oldest revision a watch may start from.
    pub oldest: Revision,
}

impl ResourceCache {
    fn new(info: &'static ResourceInfo, floor: Revision) -> Self {
        Self {
            info,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_floor: floor,
                last_change: 0,
                live: broadcast::channel(BROADCAST_CAPACITY).0,
            }),
        }
    }

    /// The objects in `namespace` (all when `None`), in key order.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<CachedObject>> {
        self.list_locked(&self.state.read().unwrap(), namespace)
    }

    fn list_locked(&self, state: &State, namespace: Option<&str>) -> Vec<Arc<CachedObject>> {
        match namespace {
            Some(ns) if self.info.namespaced => {
                let prefix = format!("{}{ns}/", self.info.storage_prefix());
                state
                    .objects
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, o)| o.clone())
                    .collect()
            }
            _ => state.objects.values().cloned().collect(),
        }
    }

    /// The objects whose storage key is greater than `after`, in key order, for paging.
    pub fn list_after(&self, namespace: Option<&str>, after: &str) -> Vec<Arc<CachedObject>> {
        let state = self.state.read().unwrap();
        let prefix = match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/", self.info.storage_prefix()),
            _ => self.info.storage_prefix(),
        };
        use std::ops::Bound;
        state
            .objects
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// One object by storage key.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap().objects.get(key).cloned()
    }

    /// The revision of the last change to this resource.
    pub fn last_change(&self) -> Revision {
        self.state.read().unwrap().last_change
    }

    /// Starts a watch after `from` (`None`: synthetic ADDED for every current object first).
    pub fn watch(
        &self,
        from: Option<Revision>,
        namespace: Option<&str>,
    ) -> Result<WatchStart, TooOld> {
        let state = self.state.read().unwrap();
        // Subscribe while holding the lock: the feeder appends to history and broadcasts under
        // the write lock, so nothing falls between the replay and the live stream.
        let live = state.live.subscribe();
        let initial = match from {
            None => self
                .list_locked(&state, namespace)
                .into_iter()
                .map(|o| {
                    Arc::new(Change {
                        kind: ChangeType::Added,
                        object: o,
                        prev: None,
                    })
                })
                .collect(),
            Some(rv) => {
                if rv < state.history_floor {
                    return Err(TooOld {
                        oldest: state.history_floor,
                    });
                }
                state
                    .history
                    .iter()
                    .filter(|c| c.revision() > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            live,
            after: from.unwrap_or(0).max(state.last_change),
        })
    }

    /// Replaces every object with a fresh list at `revision`. History before it is gone, so
    /// watches resuming from older revisions get 410 Expired, and open watches are closed so
    /// their clients relist, as after an upstream watch cache re-initialisation.
    fn resync(&self, objects: BTreeMap<String, Arc<CachedObject>>, revision: Revision) {
        let mut state = self.state.write().unwrap();
        state.objects = objects;
        state.history.clear();
        state.history_floor = revision;
        state.last_change = revision;
        state.live = broadcast::channel(BROADCAST_CAPACITY).0;
    }

    fn apply(&self, key: String, change_type: EventType, object: Arc<CachedObject>) {
        let mut state = self.state.write().unwrap();
        let (kind, prev) = match change_type {
            EventType::Put => {
                let prev = state.objects.insert(key, object.clone());
                (
                    if prev.is_some() {
                        ChangeType::Modified
                    } else {
                        ChangeType::Added
                    },
                    prev,
                )
            }
            EventType::Delete => (ChangeType::Deleted, state.objects.remove(&key)),
        };
        let change = Arc::new(Change { kind, object, prev });
        state.last_change = change.revision();
        if state.history.len() == HISTORY_CAPACITY {
            let dropped = state.history.pop_front().expect("history is full");
            state.history_floor = dropped.revision();
        }
        state.history.push_back(change.clone());
        let _ = state.live.send(change);
    }
}

/// The caches of all resources, fed by one store watch.
pub struct Cache {
    by_prefix: HashMap<String, Arc<ResourceCache>>,
    revision: watch::Sender<Revision>,
}

impl Cache {
    /// Loads every resource from the store and starts following its changes.
    pub async fn start(store: Arc<dyn Store>) -> anyhow::Result<Arc<Self>> {
        let listed = store.list("/registry/", None).await?;
        let by_prefix: HashMap<String, Arc<ResourceCache>> = RESOURCES
            .iter()
            .map(|info| {
                (
                    info.storage_prefix(),
                    Arc::new(ResourceCache::new(info, listed.revision)),
                )
            })
            .collect();
        let cache = Arc::new(Self {
            by_prefix,
            revision: watch::channel(listed.revision).0,
        });
        cache.load(&listed);
        let events = store.watch("/registry/", listed.revision).await?;
        tokio::spawn(cache.clone().follow(store, events));
        Ok(cache)
    }

    /// Replaces every resource's contents with one list of the store.
    fn load(&self, listed: &skiff_store::ListResult) {
        let mut fresh: HashMap<String, BTreeMap<String, Arc<CachedObject>>> = HashMap::new();
        for kv in &listed.items {
            if let Some(rc) = self.owner_of(&kv.key)
                && let Some(obj) = CachedObject::from_stored(rc.info, &kv.value, kv.mod_revision)
            {
                fresh
                    .entry(rc.info.storage_prefix())
                    .or_default()
                    .insert(kv.key.clone(), Arc::new(obj));
            }
        }
        for (prefix, rc) in &self.by_prefix {
            rc.resync(fresh.remove(prefix).unwrap_or_default(), listed.revision);
        }
        self.revision.send_replace(listed.revision);
    }

    fn owner_of(&self, key: &str) -> Option<&Arc<ResourceCache>> {
        // Keys are /registry/<plural>/... or /registry/<group>/<plural>/...; try both prefixes.
        let mut parts = key.splitn(5, '/');
        let (_, _, a, b) = (parts.next(), parts.next(), parts.next()?, parts.next());
        self.by_prefix
            .get(&format!("/registry/{a}/"))
            .or_else(|| b.and_then(|b| self.by_prefix.get(&format!("/registry/{a}/{b}/"))))
    }

    /// The cache of one resource.
    pub fn resource(&self, info: &ResourceInfo) -> &Arc<ResourceCache> {
        &self.by_prefix[&info.storage_prefix()]
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Subscribes to the cache revision (for bookmarks).
    pub fn revisions(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Waits until the cache has caught up to `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn apply(&self, event: Event) {
        if let Some(rc) = self.owner_of(&event.key)
            && let Some(obj) = CachedObject::from_stored(rc.info, &event.value, event.revision)
        {
            rc.apply(event.key, event.kind, Arc::new(obj));
        }
        self.revision.send_replace(event.revision);
    }

    async fn relist(
        &self,
        store: &Arc<dyn Store>,
    ) -> skiff_store::Result<skiff_store::WatchReceiver> {
        let listed = store.list("/registry/", None).await?;
        self.load(&listed);
        store.watch("/registry/", listed.revision).await
    }

    async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut events: skiff_store::WatchReceiver,
    ) {
        loop {
            while let Some(event) = events.recv().await {
                self.apply(event);
            }
            // The store dropped us (we fell behind): resume from the last revision applied, or,
            // when that history has been compacted away, start over from a fresh list.
            events = match store.watch("/registry/", self.revision()).await {
                Ok(rx) => rx,
                Err(err) => {
                    tracing::warn!(%err, "watch cache resyncing from a fresh list");
                    match self.relist(&store).await {
                        Ok(rx) => rx,
                        Err(err) => {
                            tracing::error!(%err, "watch cache lost the store");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::sqlite::SqliteStore;

    fn pod(name: &str) -> bytes::Bytes {
        serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}}}))
            .unwrap()
            .into()
    }

    #[tokio::test]
    async fn follows_the_store_and_resyncs_after_losing_history() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        store.create("/registry/pods/ns/a", pod("a")).await.unwrap();
        let cache = Cache::start(store.clone()).await.unwrap();
        let pods = cache
            .resource(skiff_api::resources::find("", "v1", "pods").unwrap())
            .clone();
        assert_eq!(pods.list(Some("ns")).len(), 1);

        let rev = store.create("/registry/pods/ns/b", pod("b")).await.unwrap();
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        let start = pods
            .watch(Some(rev - 1), None)
            .map_err(|_| "too old")
            .unwrap();
        assert_eq!(start.initial.len(), 1);
        assert_eq!(start.initial[0].object.name, "b");
        assert_eq!(
            pods.get("/registry/pods/ns/b")
                .unwrap()
                .field("metadata.name")
                .as_deref(),
            Some("b")
        );

        // Behind the cache's back: a delete, then a resync from a fresh list.
        let (deleted_at, _) = store.delete("/registry/pods/ns/a", None).await.unwrap();
        assert!(cache.wait_for(deleted_at, Duration::from_secs(5)).await);
        let mut old_watch = pods.watch(None, None).map_err(|_| "too old").unwrap().live;
        cache.relist(&store).await.unwrap();
        let names: Vec<String> = pods.list(None).iter().map(|o| o.name.clone()).collect();
        assert_eq!(names, ["b"]);
        assert!(
            pods.watch(Some(rev - 1), None).is_err(),
            "history before the resync is gone"
        );
        assert!(
            matches!(
                old_watch.recv().await,
                Err(broadcast::error::RecvError::Closed)
            ),
            "open watches are closed"
        );
    }
}

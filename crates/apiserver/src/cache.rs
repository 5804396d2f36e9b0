//! The watch cache: every object of every resource held in memory, fed by one store watch,
//! as kube-apiserver's cacher does. Lists and watches are served from here, so many watchers
//! and frequent lists cost no store reads.
//!
//! Objects are kept as their serialized JSON (with `resourceVersion` filled in) plus the few
//! fields selectors need, so serving a list is mostly copying bytes.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use skiff_api::{RESOURCES, ResourceInfo};
use skiff_store::{Event, EventType, Revision, Store};
use std::borrow::Cow;
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
    ///
    /// The registry already produced the JSON, so it is kept as it is with `resourceVersion`
    /// spliced into its metadata; only the metadata and the selectable fields are parsed (see
    /// [`Outline`]). A value the outline cannot read falls back to a full parse.
    pub fn from_stored(info: &ResourceInfo, value: &[u8], revision: Revision) -> Option<Self> {
        if let Some(outline) = Outline::read(info, value) {
            return Some(outline.into_cached(value, revision));
        }
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

/// Reads a dotted path (empty: the value itself) as selector text: strings as they are,
/// booleans and numbers printed.
fn field_text(object: &Value, path: &str) -> String {
    let v = path
        .split('.')
        .filter(|seg| !seg.is_empty())
        .fold(object, |v, seg| &v[seg]);
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// What the cache needs from a stored object, read in one pass over its JSON without building
/// a [`Value`]: the raw `metadata` (where `resourceVersion` goes), its name, namespace and
/// labels, and the values of the resource's selectable fields.
struct Outline<'a> {
    /// The `metadata` object as it appears in the stored bytes.
    metadata: &'a RawValue,
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    fields: Vec<(&'static str, String)>,
}

/// The metadata fields the cache keeps.
#[derive(Deserialize)]
struct MetaOutline {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    /// Never stored (the registry strips it); if present the value is not spliced into.
    #[serde(rename = "resourceVersion")]
    resource_version: Option<IgnoredAny>,
}

impl<'a> Outline<'a> {
    /// Reads the outline of `value`; `None` if it is not an object with a `metadata` object
    /// free of `resourceVersion`, or a label is not a string.
    fn read(info: &ResourceInfo, value: &'a [u8]) -> Option<Self> {
        let paths: Vec<Vec<&str>> = std::iter::once("metadata")
            .chain(info.selectable_fields.iter().map(|(_, path)| *path))
            .map(|path| path.split('.').collect())
            .collect();
        let mut picked = vec![None; paths.len()];
        let picker = Picker {
            wanted: paths
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.as_slice()))
                .collect(),
            picked: &mut picked,
        };
        picker
            .deserialize(&mut serde_json::Deserializer::from_slice(value))
            .ok()?;
        let metadata: &RawValue = picked[0]?;
        if !metadata.get().starts_with('{') {
            return None;
        }
        let meta: MetaOutline = serde_json::from_str(metadata.get()).ok()?;
        if meta.resource_version.is_some() {
            return None;
        }
        let fields = info
            .selectable_fields
            .iter()
            .zip(&picked[1..])
            .map(|((label, _), raw)| (*label, raw.map(raw_field_text).unwrap_or_default()))
            .collect();
        Some(Self {
            metadata,
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name.unwrap_or_default(),
            labels: meta.labels.unwrap_or_default(),
            fields,
        })
    }

    /// The cached object: `value` with `"resourceVersion"` appended to its metadata, as the
    /// registry's responses have it.
    fn into_cached(self, value: &[u8], revision: Revision) -> CachedObject {
        let meta = self.metadata.get();
        // The metadata slice borrows from `value`, so its end is an offset into it.
        let close = meta.as_ptr() as usize - value.as_ptr() as usize + meta.len() - 1;
        let empty = meta[1..meta.len() - 1].trim().is_empty();
        let revision_text = revision.to_string();
        let mut json = Vec::with_capacity(value.len() + revision_text.len() + 22);
        json.extend_from_slice(&value[..close]);
        if !empty {
            json.push(b',');
        }
        json.extend_from_slice(b"\"resourceVersion\":\"");
        json.extend_from_slice(revision_text.as_bytes());
        json.push(b'"');
        json.extend_from_slice(&value[close..]);
        CachedObject {
            namespace: self.namespace,
            name: self.name,
            labels: self.labels,
            fields: self.fields,
            revision,
            json: Bytes::from(json),
        }
    }
}

/// A selectable field's raw JSON as selector text, as [`field_text`] reads a value.
fn raw_field_text(raw: &RawValue) -> String {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => field_text(&v, ""),
        Err(_) => String::new(),
    }
}

/// Picks the raw JSON at a set of dotted paths out of a document in one pass, skipping
/// everything else without allocating.
struct Picker<'p, 'o, 'de> {
    /// The paths below the current value: (slot in `picked`, remaining segments).
    wanted: Vec<(usize, &'p [&'p str])>,
    picked: &'o mut [Option<&'de RawValue>],
}

impl<'de> DeserializeSeed<'de> for Picker<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.wanted.iter().any(|(_, rest)| rest.is_empty()) {
            let raw = <&RawValue>::deserialize(deserializer)?;
            for (slot, _) in self.wanted.iter().filter(|(_, rest)| rest.is_empty()) {
                self.picked[*slot] = Some(raw);
            }
            return Ok(());
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Picker<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let below: Vec<(usize, &[&str])> = self
                .wanted
                .iter()
                .filter(|(_, rest)| rest[0] == key.0)
                .map(|(slot, rest)| (*slot, &rest[1..]))
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Picker {
                    wanted: below,
                    picked: &mut *self.picked,
                })?;
            }
        }
        Ok(())
    }

    // Anything but an object has no fields to pick: the paths through it are absent.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed from the document unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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

    /// The objects whose storage key is greater than `after` as they were at `revision`, in
    /// key order, for the later pages of a list whose first page was read at `revision`.
    /// The current objects are rolled back with the history of changes since; `None` when the
    /// history no longer reaches back to `revision`. The caller checks that the cache has
    /// reached `revision`.
    pub fn list_at(
        &self,
        namespace: Option<&str>,
        after: &str,
        revision: Revision,
    ) -> Option<Vec<Arc<CachedObject>>> {
        let state = self.state.read().unwrap();
        if revision < state.history_floor {
            return None;
        }
        let prefix = match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/", self.info.storage_prefix()),
            _ => self.info.storage_prefix(),
        };
        let key_of = |o: &CachedObject| {
            self.info.storage_key(
                Some(o.namespace.as_str()).filter(|n| !n.is_empty()),
                &o.name,
            )
        };
        // What each key changed since `revision` was then: the state before its first change.
        let mut then: BTreeMap<String, Option<Arc<CachedObject>>> = BTreeMap::new();
        for change in state
            .history
            .iter()
            .rev()
            .take_while(|c| c.revision() > revision)
        {
            let key = key_of(&change.object);
            if key.as_str() > after && key.starts_with(&prefix) {
                let before = match change.kind {
                    ChangeType::Added => None,
                    ChangeType::Modified | ChangeType::Deleted => change.prev.clone(),
                };
                then.insert(key, before);
            }
        }
        use std::ops::Bound;
        let now = state
            .objects
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix));
        let mut rolled_back = then.into_iter().peekable();
        let mut out = Vec::new();
        for (key, object) in now {
            // Keys that existed then but are gone now come in between, in key order.
            while let Some((_, gone)) = rolled_back.next_if(|(k, _)| k.as_str() < key.as_str()) {
                out.extend(gone);
            }
            match rolled_back.next_if(|(k, _)| k == key) {
                Some((_, then)) => out.extend(then),
                None => out.push(object.clone()),
            }
        }
        out.extend(rolled_back.filter_map(|(_, then)| then));
        Some(out)
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

    /// The cached form as a full parse and re-serialization builds it.
    fn reparsed(info: &ResourceInfo, stored: &Value, revision: Revision) -> CachedObject {
        let mut object = stored.clone();
        object["metadata"]["resourceVersion"] = revision.to_string().into();
        CachedObject::from_value(info, &object, revision)
    }

    #[test]
    fn stored_bytes_get_the_revision_spliced_in_and_fields_picked_without_a_reparse() {
        let pods = skiff_api::resources::find("", "v1", "pods").unwrap();
        let stored = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "prod", "labels": {"app": "web", "tier\"x": "a\\b"},
                "annotations": {"note": "{\"metadata\":{\"name\":\"decoy\"}}"}},
            "spec": {"nodeName": "node-7", "hostNetwork": true, "containers": [{"name": "c", "image": "nginx"}],
                "metadata": {"name": "nested"}},
            "status": {"phase": "Running", "podIP": "10.0.0.7"},
        });
        let bytes = serde_json::to_vec(&stored).unwrap();
        let cached = CachedObject::from_stored(pods, &bytes, 42).unwrap();
        let expected = reparsed(pods, &stored, 42);
        assert_eq!(
            std::str::from_utf8(&cached.json).unwrap(),
            std::str::from_utf8(&expected.json).unwrap(),
            "byte for byte what a full parse and re-serialization gives"
        );
        assert_eq!(cached.value()["metadata"]["resourceVersion"], "42");
        assert_eq!(
            (cached.namespace.as_str(), cached.name.as_str()),
            ("prod", "web-0")
        );
        assert_eq!(cached.labels, expected.labels);
        assert_eq!(cached.fields, expected.fields);
        assert_eq!(cached.field("spec.nodeName").as_deref(), Some("node-7"));
        assert_eq!(cached.field("spec.hostNetwork").as_deref(), Some("true"));
        assert_eq!(
            cached.field("status.nominatedNodeName").as_deref(),
            Some("")
        );
    }

    #[test]
    fn odd_stored_values_are_read_as_a_full_parse_reads_them() {
        let pods = skiff_api::resources::find("", "v1", "pods").unwrap();
        for stored in [
            serde_json::json!({"metadata": {}, "spec": null, "status": "odd"}),
            serde_json::json!({"metadata": {"name": "a", "resourceVersion": "3"}}),
            serde_json::json!({"metadata": {"name": "a", "labels": {"n": 1}}, "spec": [1, 2]}),
        ] {
            let bytes = serde_json::to_vec(&stored).unwrap();
            let cached = CachedObject::from_stored(pods, &bytes, 7).unwrap();
            let expected = reparsed(pods, &stored, 7);
            assert_eq!(cached.json, expected.json, "{stored}");
            assert_eq!(cached.labels, expected.labels, "{stored}");
            assert_eq!(cached.fields, expected.fields, "{stored}");
        }
        assert!(CachedObject::from_stored(pods, b"{\"metadata\": 1}", 7).is_none());
        assert!(CachedObject::from_stored(pods, b"not json", 7).is_none());
    }

    #[tokio::test]
    async fn later_pages_see_the_first_pages_revision_through_recent_history() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        for name in ["a", "b", "c", "d"] {
            store
                .create(&format!("/registry/pods/ns/{name}"), pod(name))
                .await
                .unwrap();
        }
        let cache = Cache::start(store.clone()).await.unwrap();
        let pods = cache
            .resource(skiff_api::resources::find("", "v1", "pods").unwrap())
            .clone();
        let first_page_at = cache.revision();
        let names_then = |after: &str| -> Vec<String> {
            pods.list_at(Some("ns"), after, first_page_at)
                .unwrap()
                .iter()
                .map(|o| format!("{}@{}", o.name, o.revision))
                .collect()
        };
        let before: Vec<String> = names_then("/registry/pods/ns/a");

        // After the first page: b deleted, c updated twice, bb and e created.
        store.delete("/registry/pods/ns/b", None).await.unwrap();
        let c = store.get("/registry/pods/ns/c").await.unwrap().unwrap();
        store
            .update("/registry/pods/ns/c", pod("c"), Some(c.mod_revision))
            .await
            .unwrap();
        store
            .update("/registry/pods/ns/c", pod("c"), None)
            .await
            .unwrap();
        store
            .create("/registry/pods/ns/bb", pod("bb"))
            .await
            .unwrap();
        let last = store.create("/registry/pods/ns/e", pod("e")).await.unwrap();
        assert!(cache.wait_for(last, Duration::from_secs(5)).await);

        assert_eq!(before, ["b@2", "c@3", "d@4"]);
        assert_eq!(names_then("/registry/pods/ns/a"), before);
        assert_eq!(names_then("/registry/pods/ns/b"), ["c@3", "d@4"]);
        assert!(names_then("/registry/pods/ns/d").is_empty());
        assert!(
            pods.list_at(Some("other"), "", first_page_at)
                .unwrap()
                .is_empty()
        );

        // Once the history is gone (a resync), later pages must come from the store.
        cache.relist(&store).await.unwrap();
        assert!(pods.list_at(Some("ns"), "", first_page_at).is_none());
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

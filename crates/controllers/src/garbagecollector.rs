//! The garbage collector (upstream `pkg/controller/garbagecollector`): it completes the
//! API server's delete propagation policies through `metadata.ownerReferences`.
//!
//! One metadata watch per served resource feeds a graph of owners and their dependents, keyed
//! by uid (upstream's `GraphBuilder`). Two work queues act on it (upstream's `attemptToDelete`
//! and `attemptToOrphan`):
//! - **Background**: the owner is gone at once; its dependents are deleted once a live GET
//!   confirms that none of their owners exists (same name *and* uid). A dependent with another
//!   live owner only loses the dangling reference.
//! - **Foreground**: the owner stays with `deletionTimestamp` and the `foregroundDeletion`
//!   finalizer; its dependents are deleted in the foreground too, and the finalizer is removed
//!   once no dependent with `blockOwnerDeletion: true` remains, which lets the API server
//!   delete the owner.
//! - **Orphan**: the owner stays with the `orphan` finalizer until its references are removed
//!   from all of its dependents; then the finalizer is removed.
//!
//! An owner the graph has never seen (a "virtual" node, e.g. a dependent created after its
//! owner was deleted) is looked up live before its dependents are collected, so informer lag
//! never deletes anything.

use crate::workqueue::WorkQueue;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch,
    PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use skiff_api::{RESOURCES, ResourceInfo};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// The finalizer of an owner deleted with `propagationPolicy: Foreground`.
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an owner deleted with `propagationPolicy: Orphan`.
const ORPHAN_FINALIZER: &str = "orphan";
/// Workers per queue (kube-controller-manager's `--concurrent-gc-syncs`).
const WORKERS: usize = 20;
/// How many owners confirmed absent are remembered, so the dependents of one deleted owner
/// need one live GET between them (upstream's `absentOwnerCache` size).
const ABSENT_OWNER_CACHE_SIZE: usize = 500;
/// How many tries a finalizer removal gets on conflicts (client-go's `retry.DefaultBackoff`).
const FINALIZER_REMOVAL_TRIES: u32 = 4;
/// How many dependents are patched at once when an owner is orphaned.
const CONCURRENT_ORPHAN_PATCHES: usize = 32;

/// Runs the garbage collector until the process ends: watches start at once, the workers
/// once every resource has been listed (before that, the graph is not complete enough to
/// tell an absent owner from one not yet seen).
pub async fn run(client: Client) {
    let (changes, mut incoming) = mpsc::unbounded_channel();
    let collector = Arc::new(Collector {
        client: client.clone(),
        graph: Mutex::new(Graph::default()),
        changes: changes.clone(),
        attempt_to_delete: WorkQueue::new(),
        attempt_to_orphan: WorkQueue::new(),
        absent_owners: Mutex::new(AbsentOwners::default()),
    });
    for info in RESOURCES.iter() {
        tokio::spawn(watch(client.clone(), info, changes.clone()));
    }
    drop(changes);
    let mut unlisted = RESOURCES.len();
    while let Some(change) = incoming.recv().await {
        if let Change::Relisted { initial: true, .. } = change {
            unlisted -= 1;
            if unlisted == 0 {
                tracing::debug!("garbage collector graph synced, starting workers");
                for _ in 0..WORKERS {
                    tokio::spawn(collector.clone().delete_worker());
                    tokio::spawn(collector.clone().orphan_worker());
                }
            }
        }
        collector.apply(change);
    }
}

/// Feeds the metadata of every object of one resource into the graph.
async fn watch(
    client: Client,
    info: &'static ResourceInfo,
    changes: mpsc::UnboundedSender<Change>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &api_resource(info));
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // The uids seen by the current (re)list: whatever the graph holds beyond them was
    // deleted while the watch was down.
    let mut listed: HashSet<String> = HashSet::new();
    let mut initial = true;
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => {
                listed.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                listed.extend(object.metadata.uid.clone());
                Change::Upsert(info, slim(object))
            }
            Ok(watcher::Event::InitDone) => Change::Relisted {
                info,
                listed: std::mem::take(&mut listed),
                initial: std::mem::replace(&mut initial, false),
            },
            Ok(watcher::Event::Apply(object)) => Change::Upsert(info, slim(object)),
            Ok(watcher::Event::Delete(object)) => Change::Delete(info, slim(object)),
            Err(err) => {
                tracing::warn!(resource = info.plural, group = info.group, %err, "garbage collector watch failed");
                continue;
            }
        };
        if changes.send(change).is_err() {
            return;
        }
    }
}

fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(info.group, info.version, info.kind),
        info.plural,
    )
}

/// The served resource of an ownerReference's `apiVersion` and `kind`.
fn resource_for(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Keeps only the metadata the graph reads.
fn slim(object: PartialObjectMeta<DynamicObject>) -> ObjectMeta {
    let meta = object.metadata;
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        owner_references: meta.owner_references,
        deletion_timestamp: meta.deletion_timestamp,
        finalizers: meta.finalizers,
        ..Default::default()
    }
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// A uid, shared between the graph's index, dependents sets and owner references.
type Uid = Arc<str>;

/// What an ownerReference names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Coordinates {
    uid: Uid,
    api_version: Arc<str>,
    kind: Arc<str>,
    name: Arc<str>,
}

/// One entry of `metadata.ownerReferences`, as the graph keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnerRef {
    coordinates: Coordinates,
    block_owner_deletion: bool,
}

/// Where an object is: its coordinates and namespace (`None` when cluster-scoped).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Identity {
    coordinates: Coordinates,
    namespace: Option<Arc<str>>,
}

/// An object in the graph.
#[derive(Debug)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerRef>,
    dependents: HashSet<Uid>,
    /// Seen by a watch; otherwise a "virtual" node made for an ownerReference, whose
    /// existence is yet to be checked.
    observed: bool,
    being_deleted: bool,
    /// Deleting with the `foregroundDeletion` finalizer: waits for its blocking dependents.
    deleting_dependents: bool,
    /// Deleting with the `orphan` finalizer, as last observed.
    waiting_for_orphaning: bool,
}

/// What the watches report to the graph.
#[derive(Debug)]
enum Change {
    /// An object was added or modified.
    Upsert(&'static ResourceInfo, ObjectMeta),
    /// An object was deleted.
    Delete(&'static ResourceInfo, ObjectMeta),
    /// A (re)list of the resource completed with these objects; the others are gone.
    Relisted {
        info: &'static ResourceInfo,
        listed: HashSet<String>,
        initial: bool,
    },
    /// A live GET found no object with this identity (upstream's virtual delete event).
    Absent(Identity),
}

/// The work a graph change calls for.
#[derive(Debug, Default, PartialEq)]
struct Effects {
    attempt_to_delete: Vec<Uid>,
    attempt_to_orphan: Vec<Uid>,
    /// Owners known to be gone.
    absent: Vec<Identity>,
}

/// The owner/dependent graph (upstream's `uidToNode`).
#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<Uid, Node>,
    /// `apiVersion`, `kind` and namespace strings, shared by every node that names them.
    interned: HashSet<Arc<str>>,
}

impl Graph {
    fn apply(&mut self, change: Change) -> Effects {
        let mut effects = Effects::default();
        match change {
            Change::Upsert(info, meta) => self.upsert(info, &meta, &mut effects),
            Change::Delete(info, meta) => {
                let identity = self.identity(info, &meta);
                self.remove(&identity, &mut effects);
            }
            Change::Relisted { info, listed, .. } => {
                let api_version = info.api_version();
                let gone: Vec<Identity> = self
                    .nodes
                    .values()
                    .filter(|n| {
                        n.observed
                            && *n.identity.coordinates.kind == *info.kind
                            && *n.identity.coordinates.api_version == *api_version
                            && !listed.contains(&*n.identity.coordinates.uid)
                    })
                    .map(|n| n.identity.clone())
                    .collect();
                for identity in gone {
                    self.remove(&identity, &mut effects);
                }
            }
            Change::Absent(identity) => self.absent(&identity, &mut effects),
        }
        effects
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.interned.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.interned.insert(shared.clone());
        shared
    }

    /// The uid as the graph already holds it, so equal uids share one allocation.
    fn uid(&self, uid: &str) -> Uid {
        match self.nodes.get_key_value(uid) {
            Some((shared, _)) => shared.clone(),
            None => uid.into(),
        }
    }

    fn identity(&mut self, info: &ResourceInfo, meta: &ObjectMeta) -> Identity {
        Identity {
            coordinates: Coordinates {
                uid: self.uid(meta.uid.as_deref().unwrap_or_default()),
                api_version: self.intern(&info.api_version()),
                kind: self.intern(info.kind),
                name: meta.name.as_deref().unwrap_or_default().into(),
            },
            namespace: meta.namespace.as_deref().map(|ns| self.intern(ns)),
        }
    }

    fn owner_ref(&mut self, reference: &OwnerReference) -> OwnerRef {
        OwnerRef {
            coordinates: Coordinates {
                uid: self.uid(&reference.uid),
                api_version: self.intern(&reference.api_version),
                kind: self.intern(&reference.kind),
                name: reference.name.as_str().into(),
            },
            block_owner_deletion: reference.block_owner_deletion == Some(true),
        }
    }

    /// An object was observed: record it, follow changes of its ownerReferences, and start
    /// orphaning or foreground deletion when it just began waiting for that.
    fn upsert(&mut self, info: &ResourceInfo, meta: &ObjectMeta, effects: &mut Effects) {
        let identity = self.identity(info, meta);
        let owners: Vec<OwnerRef> = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| self.owner_ref(r))
            .collect();
        let uid = identity.coordinates.uid.clone();
        let being_deleted = meta.deletion_timestamp.is_some();
        let waits_for_orphaning = being_deleted && has_finalizer(meta, ORPHAN_FINALIZER);
        let waits_for_dependents = being_deleted && has_finalizer(meta, FOREGROUND_FINALIZER);

        let mut renamed = false;
        match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: identity.clone(),
                        owners: Vec::new(),
                        dependents: HashSet::new(),
                        observed: true,
                        being_deleted: false,
                        deleting_dependents: false,
                        waiting_for_orphaning: false,
                    },
                );
            }
            Some(node) if !node.observed => {
                node.observed = true;
                renamed = node.identity != identity;
                node.identity = identity.clone();
            }
            Some(_) => {}
        }
        if renamed {
            // Dependents that named this uid otherwise may point at nothing: check them.
            let (_, mismatched) = self.dependents_named(&uid, &identity.coordinates);
            effects.attempt_to_delete.extend(mismatched);
        }

        let node = self.nodes.get_mut(&uid).expect("inserted above");
        let old_owners = std::mem::replace(&mut node.owners, owners.clone());
        node.being_deleted |= being_deleted;
        let starts_orphaning = waits_for_orphaning && !node.waiting_for_orphaning;
        node.waiting_for_orphaning = waits_for_orphaning;
        let starts_deleting_dependents = waits_for_dependents && !node.deleting_dependents;

        let added: Vec<OwnerRef> = owners
            .iter()
            .filter(|new| {
                !old_owners
                    .iter()
                    .any(|old| old.coordinates.uid == new.coordinates.uid)
            })
            .cloned()
            .collect();
        let removed: Vec<&OwnerRef> = old_owners
            .iter()
            .filter(|old| {
                !owners
                    .iter()
                    .any(|new| new.coordinates.uid == old.coordinates.uid)
            })
            .collect();
        // Owners waiting on this dependent are unblocked when it drops its reference or
        // stops blocking them.
        let unblocked = removed
            .iter()
            .filter(|old| old.block_owner_deletion)
            .map(|old| &old.coordinates.uid)
            .chain(old_owners.iter().filter_map(|old| {
                let new = owners
                    .iter()
                    .find(|new| new.coordinates.uid == old.coordinates.uid)?;
                (old.block_owner_deletion && !new.block_owner_deletion)
                    .then_some(&new.coordinates.uid)
            }));
        for owner in unblocked {
            if self.nodes.contains_key(owner) {
                effects.attempt_to_delete.push(owner.clone());
            }
        }
        for old in &removed {
            if let Some(owner) = self.nodes.get_mut(&old.coordinates.uid) {
                owner.dependents.remove(&uid);
            }
        }
        self.add_to_owners(&identity, &added, effects);

        if starts_orphaning {
            effects.attempt_to_orphan.push(uid);
        } else if starts_deleting_dependents {
            let node = self.nodes.get_mut(&uid).expect("inserted above");
            node.deleting_dependents = true;
            effects
                .attempt_to_delete
                .extend(node.dependents.iter().cloned());
            effects.attempt_to_delete.push(uid);
        }
    }

    /// Links a dependent to its owners, making virtual nodes (to be checked live) for owners
    /// not seen yet; a reference that disagrees with the owner seen under its uid (kind, name
    /// or namespace) gets the dependent checked.
    fn add_to_owners(&mut self, dependent: &Identity, owners: &[OwnerRef], effects: &mut Effects) {
        let dependent_uid = &dependent.coordinates.uid;
        let mut suspicious = false;
        for owner in owners {
            let uid = &owner.coordinates.uid;
            match self.nodes.get_mut(uid) {
                None => {
                    let mut dependents = HashSet::new();
                    dependents.insert(dependent_uid.clone());
                    self.nodes.insert(
                        uid.clone(),
                        Node {
                            identity: Identity {
                                coordinates: owner.coordinates.clone(),
                                namespace: dependent.namespace.clone(),
                            },
                            owners: Vec::new(),
                            dependents,
                            observed: false,
                            being_deleted: false,
                            deleting_dependents: false,
                            waiting_for_orphaning: false,
                        },
                    );
                    effects.attempt_to_delete.push(uid.clone());
                }
                Some(node) => {
                    node.dependents.insert(dependent_uid.clone());
                    let other_namespace = node.identity.namespace.is_some()
                        && node.identity.namespace != dependent.namespace;
                    suspicious |= other_namespace
                        || node.identity.coordinates != owner.coordinates
                        || (!node.observed && node.identity.namespace != dependent.namespace);
                }
            }
        }
        if suspicious {
            effects.attempt_to_delete.push(dependent_uid.clone());
        }
    }

    /// The dependents of `owner` whose reference to it has these coordinates, and the others.
    fn dependents_named(&self, owner: &Uid, coordinates: &Coordinates) -> (Vec<Uid>, Vec<Uid>) {
        let Some(node) = self.nodes.get(owner) else {
            return Default::default();
        };
        node.dependents
            .iter()
            .filter_map(|d| {
                let reference = self
                    .nodes
                    .get(d)?
                    .owners
                    .iter()
                    .find(|o| o.coordinates.uid == *owner)?;
                Some((d.clone(), reference.coordinates == *coordinates))
            })
            .fold(
                (Vec::new(), Vec::new()),
                |(mut same, mut other), (d, matches)| {
                    if matches {
                        same.push(d)
                    } else {
                        other.push(d)
                    }
                    (same, other)
                },
            )
    }

    /// The object is gone: its dependents are checked, and owners waiting for it are too.
    fn remove(&mut self, identity: &Identity, effects: &mut Effects) {
        let Some(node) = self.nodes.remove(&identity.coordinates.uid) else {
            return;
        };
        for owner in &node.owners {
            if let Some(owner_node) = self.nodes.get_mut(&owner.coordinates.uid) {
                owner_node.dependents.remove(&identity.coordinates.uid);
                if owner_node.deleting_dependents {
                    effects
                        .attempt_to_delete
                        .push(owner.coordinates.uid.clone());
                }
            }
        }
        if !node.dependents.is_empty() {
            effects.absent.push(identity.clone());
        }
        effects.attempt_to_delete.extend(node.dependents);
    }

    /// A live GET found nothing with this identity. A virtual node goes with its dependents
    /// checked, unless some of them name its uid differently: then it stays, under such a
    /// name, to be checked again. An observed node is removed only when the identity is its own.
    fn absent(&mut self, identity: &Identity, effects: &mut Effects) {
        let uid = &identity.coordinates.uid;
        let Some(node) = self.nodes.get(uid) else {
            return;
        };
        let (observed, own_identity) = (node.observed, node.identity == *identity);
        if observed && own_identity {
            self.remove(identity, effects);
            return;
        }
        let (same, other) = self.dependents_named(uid, &identity.coordinates);
        if observed || !other.is_empty() {
            if !same.is_empty() {
                effects.absent.push(identity.clone());
                effects.attempt_to_delete.extend(same);
            }
            if !observed && own_identity {
                let alternative = other.iter().find_map(|d| {
                    let dependent = self.nodes.get(d)?;
                    let reference = dependent
                        .owners
                        .iter()
                        .find(|o| o.coordinates.uid == *uid)?;
                    Some(Identity {
                        coordinates: reference.coordinates.clone(),
                        namespace: dependent.identity.namespace.clone(),
                    })
                });
                if let Some(alternative) = alternative {
                    self.nodes.get_mut(uid).expect("checked above").identity = alternative;
                    effects.attempt_to_delete.push(uid.clone());
                }
            }
            return;
        }
        self.remove(identity, effects);
    }

    /// What a worker needs to know about a node, copied out of the graph.
    fn view(&self, uid: &str) -> Option<NodeView> {
        let node = self.nodes.get(uid)?;
        Some(NodeView {
            identity: node.identity.clone(),
            observed: node.observed,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            has_owners: !node.owners.is_empty(),
            has_dependents: !node.dependents.is_empty(),
            has_dependent_deleting_dependents: node
                .dependents
                .iter()
                .any(|d| self.nodes.get(d).is_some_and(|d| d.deleting_dependents)),
        })
    }

    /// The dependents that hold `owner` back (`blockOwnerDeletion: true`), with whether each
    /// is itself waiting for its own dependents.
    fn blocking_dependents(&self, owner: &str) -> Vec<(Uid, bool)> {
        let Some(node) = self.nodes.get(owner) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d).map(|n| (d, n)))
            .filter(|(_, n)| {
                n.owners
                    .iter()
                    .any(|o| *o.coordinates.uid == *owner && o.block_owner_deletion)
            })
            .map(|(d, n)| (d.clone(), n.deleting_dependents))
            .collect()
    }

    /// The identities of `owner`'s dependents.
    fn dependents(&self, owner: &str) -> Vec<Identity> {
        self.nodes
            .get(owner)
            .into_iter()
            .flat_map(|n| &n.dependents)
            .filter_map(|d| Some(self.nodes.get(d)?.identity.clone()))
            .collect()
    }
}

/// A node as a worker sees it.
#[derive(Debug)]
struct NodeView {
    identity: Identity,
    observed: bool,
    being_deleted: bool,
    deleting_dependents: bool,
    has_owners: bool,
    has_dependents: bool,
    has_dependent_deleting_dependents: bool,
}

/// Owners confirmed gone, the oldest forgotten first.
#[derive(Debug, Default)]
struct AbsentOwners {
    known: HashSet<Identity>,
    order: VecDeque<Identity>,
}

impl AbsentOwners {
    fn add(&mut self, identity: Identity) {
        if self.known.insert(identity.clone()) {
            self.order.push_back(identity);
            if self.order.len() > ABSENT_OWNER_CACHE_SIZE
                && let Some(oldest) = self.order.pop_front()
            {
                self.known.remove(&oldest);
            }
        }
    }

    fn contains(&self, identity: &Identity) -> bool {
        self.known.contains(identity)
    }
}

/// What a worker does with an item it handled.
#[derive(Debug, PartialEq)]
enum Outcome {
    Forget,
    Retry,
}

/// Ends a worker's handling of `uid`: forgotten, or back after its per-item back-off.
fn finish(queue: &WorkQueue<Uid>, uid: Uid, outcome: Outcome) {
    match outcome {
        Outcome::Forget => queue.forget(&uid),
        Outcome::Retry => queue.add_rate_limited(uid.clone()),
    }
    queue.done(&uid);
}

/// Why handling an item stopped short.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The item is gone; the graph was told (upstream's `enqueuedVirtualDeleteEventErr`).
    #[error("the object is gone")]
    Gone,
    /// A cluster-scoped object names a namespaced owner: never valid, never retried.
    #[error("a cluster-scoped object cannot have a namespaced owner")]
    NamespacedOwnerOfClusterScoped,
    /// The reference names a kind that is not served.
    #[error("no served resource for {0} {1}")]
    UnknownKind(String, String),
    /// The API server refused or failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    /// Where workers report owners found absent.
    changes: mpsc::UnboundedSender<Change>,
    attempt_to_delete: WorkQueue<Uid>,
    attempt_to_orphan: WorkQueue<Uid>,
    absent_owners: Mutex<AbsentOwners>,
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn absent_owners(&self) -> MutexGuard<'_, AbsentOwners> {
        self.absent_owners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(&self, change: Change) {
        let effects = self.graph().apply(change);
        for identity in effects.absent {
            self.absent_owners().add(identity);
        }
        for uid in effects.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in effects.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }

    /// The API of the object with this identity.
    fn api(
        &self,
        identity: &Identity,
    ) -> Result<(Api<DynamicObject>, &'static ResourceInfo), Failure> {
        let coordinates = &identity.coordinates;
        let info = resource_for(&coordinates.api_version, &coordinates.kind).ok_or_else(|| {
            Failure::UnknownKind(
                coordinates.api_version.to_string(),
                coordinates.kind.to_string(),
            )
        })?;
        let resource = api_resource(info);
        let api = match (&identity.namespace, info.namespaced) {
            (Some(namespace), true) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        };
        Ok((api, info))
    }

    /// The live object with this identity, `None` when there is none with its uid.
    async fn get_live(&self, identity: &Identity) -> Result<Option<ObjectMeta>, Failure> {
        let (api, _) = self.api(identity)?;
        match api.get_metadata(&identity.coordinates.name).await {
            Ok(object) if object.metadata.uid.as_deref() == Some(&*identity.coordinates.uid) => {
                Ok(Some(object.metadata))
            }
            Ok(_) => Ok(None),
            Err(err) if is_status(&err, 404) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn delete_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_delete.next().await;
            let outcome = match self.attempt_to_delete_item(&uid).await {
                Ok(true) => Outcome::Forget,
                // Checked before any watch saw it: check again until one does, or a virtual
                // node of an object created and deleted while a watch was down stays forever.
                Ok(false) => Outcome::Retry,
                Err(Failure::Gone | Failure::NamespacedOwnerOfClusterScoped) => Outcome::Forget,
                Err(err) => {
                    tracing::debug!(%uid, %err, "garbage collection of an object failed");
                    Outcome::Retry
                }
            };
            finish(&self.attempt_to_delete, uid, outcome);
        }
    }

    /// Upstream's `attemptToDeleteItem`: deletes the object when none of its owners exists
    /// any more, or when an owner waits for it (foreground); removes references to absent
    /// owners when others remain. Returns whether the object has been observed by a watch.
    async fn attempt_to_delete_item(&self, uid: &str) -> Result<bool, Failure> {
        let Some(item) = self.graph().view(uid) else {
            return Ok(true);
        };
        // Being deleted is a one-way trip: its dependents are handled once it is gone.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(true);
        }
        // Nothing to decide for an object seen without owners (the GET upstream makes here
        // would find the same, give or take informer lag, which a later event covers).
        if item.observed && !item.has_owners && !item.deleting_dependents {
            return Ok(true);
        }
        let Some(latest) = self.get_live(&item.identity).await? else {
            self.changes
                .send(Change::Absent(item.identity.clone()))
                .ok();
            return Err(Failure::Gone);
        };
        if item.deleting_dependents {
            self.process_deleting_dependents(uid, &item.identity)
                .await?;
            return Ok(item.observed);
        }
        let references = latest.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(item.observed);
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting_for_dependents = Vec::new();
        for reference in &references {
            match self.live_owner(reference, &item.identity).await? {
                None => dangling.push(reference),
                Some(owner)
                    if owner.deletion_timestamp.is_some()
                        && has_finalizer(&owner, FOREGROUND_FINALIZER) =>
                {
                    waiting_for_dependents.push(reference)
                }
                Some(_) => solid.push(reference),
            }
        }
        tracing::debug!(
            item = ?item.identity, solid = solid.len(), dangling = dangling.len(),
            waiting = waiting_for_dependents.len(), "classified owner references"
        );
        if !solid.is_empty() {
            if dangling.is_empty() && waiting_for_dependents.is_empty() {
                return Ok(item.observed);
            }
            // References to owners waiting for their dependents go too: those owners would
            // otherwise wait for an object that stays.
            let gone: Vec<&str> = dangling
                .iter()
                .chain(&waiting_for_dependents)
                .map(|r| r.uid.as_str())
                .collect();
            self.patch_owner_references(&item.identity, delete_owner_references_patch(uid, &gone))
                .await?;
            return Ok(item.observed);
        }
        let policy = if !waiting_for_dependents.is_empty() && item.has_dependents {
            if item.has_dependent_deleting_dependents {
                // An owner and a dependent both wait for their dependents: a possible cycle.
                // Stop blocking the owners so it cannot deadlock (upstream's detection).
                self.patch_owner_references(
                    &item.identity,
                    unblock_owner_references_patch(uid, &references),
                )
                .await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest, ORPHAN_FINALIZER) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest, FOREGROUND_FINALIZER) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!(item = ?item.identity, ?policy, "deleting object whose owners are gone");
        self.delete_object(&item.identity, &latest, policy).await?;
        Ok(item.observed)
    }

    /// The owner a reference names, live; `None` when absent (not found, or another uid).
    async fn live_owner(
        &self,
        reference: &OwnerReference,
        dependent: &Identity,
    ) -> Result<Option<ObjectMeta>, Failure> {
        let mut owner = Identity {
            coordinates: Coordinates {
                uid: reference.uid.as_str().into(),
                api_version: reference.api_version.as_str().into(),
                kind: reference.kind.as_str().into(),
                name: reference.name.as_str().into(),
            },
            namespace: None,
        };
        let cluster_scoped_absent = self.absent_owners().contains(&owner);
        owner.namespace = dependent.namespace.clone();
        if cluster_scoped_absent || self.absent_owners().contains(&owner) {
            return Ok(None);
        }
        let (_, info) = self.api(&owner)?;
        if !info.namespaced {
            owner.namespace = None;
        } else if dependent.namespace.is_none() {
            return Err(Failure::NamespacedOwnerOfClusterScoped);
        }
        let live = self.get_live(&owner).await?;
        if live.is_none() {
            self.absent_owners().add(owner);
        }
        Ok(live)
    }

    /// Upstream's `processDeletingDependentsItem`: an owner in foreground deletion loses its
    /// finalizer once nothing blocks it; until then its blocking dependents are collected.
    async fn process_deleting_dependents(
        &self,
        uid: &str,
        identity: &Identity,
    ) -> Result<(), Failure> {
        let blocking = self.graph().blocking_dependents(uid);
        if blocking.is_empty() {
            return self.remove_finalizer(identity, FOREGROUND_FINALIZER).await;
        }
        for (dependent, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(dependent);
            }
        }
        Ok(())
    }

    /// Deletes the object with uid and resourceVersion preconditions, so that only the
    /// version whose owners were checked goes; a conflict from a change that left the
    /// ownerReferences alone retries with the uid alone, so busy objects are not starved.
    async fn delete_object(
        &self,
        identity: &Identity,
        latest: &ObjectMeta,
        policy: PropagationPolicy,
    ) -> Result<(), Failure> {
        let (api, _) = self.api(identity)?;
        let name = &identity.coordinates.name;
        let mut params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(identity.coordinates.uid.to_string()),
                resource_version: latest.resource_version.clone(),
            }),
            ..Default::default()
        };
        let mut result = api.delete(name, &params).await.map(drop);
        if let Err(err) = &result
            && is_status(err, 409)
            && latest.resource_version.is_some()
        {
            match api.get_metadata(name).await {
                Err(err) if is_status(&err, 404) => return Ok(()),
                Ok(live)
                    if live.metadata.uid == latest.uid
                        && live.metadata.resource_version != latest.resource_version
                        && live.metadata.owner_references == latest.owner_references =>
                {
                    if let Some(preconditions) = &mut params.preconditions {
                        preconditions.resource_version = None;
                    }
                    result = api.delete(name, &params).await.map(drop);
                }
                _ => {}
            }
        }
        match result {
            Err(err) if is_status(&err, 404) => {
                self.changes.send(Change::Absent(identity.clone())).ok();
                Err(Failure::Gone)
            }
            other => other.map_err(Failure::from),
        }
    }

    /// Applies a strategic merge patch of `metadata.ownerReferences`.
    async fn patch_owner_references(
        &self,
        identity: &Identity,
        patch: Value,
    ) -> Result<(), Failure> {
        let (api, _) = self.api(identity)?;
        api.patch_metadata(
            &identity.coordinates.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await?;
        Ok(())
    }

    /// Upstream's `removeFinalizer`: re-reads the object and writes its finalizers without
    /// `finalizer`, guarded by its resourceVersion, retrying conflicts a few times. Removing
    /// the last finalizer of an object being deleted deletes it.
    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), Failure> {
        let (api, _) = self.api(identity)?;
        let mut pause = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            let Some(live) = self.get_live(identity).await? else {
                return Ok(());
            };
            let finalizers = live.finalizers.unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {
                "resourceVersion": live.resource_version,
                "finalizers": if remaining.is_empty() { Value::Null } else { json!(remaining) },
            }});
            match api
                .patch_metadata(
                    &identity.coordinates.name,
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
            {
                Err(err) if is_status(&err, 409) && attempt < FINALIZER_REMOVAL_TRIES => {
                    tokio::time::sleep(pause).await;
                    pause *= 5;
                    attempt += 1;
                }
                Err(err) if is_status(&err, 404) => return Ok(()),
                other => return other.map(drop).map_err(Failure::from),
            }
        }
    }

    async fn orphan_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_orphan.next().await;
            let outcome = match self.orphan_dependents(&uid).await {
                Ok(()) => Outcome::Forget,
                Err(err) => {
                    tracing::debug!(%uid, %err, "orphaning dependents failed");
                    Outcome::Retry
                }
            };
            finish(&self.attempt_to_orphan, uid, outcome);
        }
    }

    /// Upstream's `attemptToOrphanWorker`: removes the owner's references from all of its
    /// dependents, then the owner's `orphan` finalizer.
    async fn orphan_dependents(&self, uid: &Uid) -> Result<(), Failure> {
        let (identity, dependents) = {
            let graph = self.graph();
            let Some(owner) = graph.nodes.get(uid) else {
                return Ok(());
            };
            (owner.identity.clone(), graph.dependents(uid))
        };
        let failures: Vec<Failure> = futures::stream::iter(dependents)
            .map(|dependent| async move {
                let patch = delete_owner_references_patch(&dependent.coordinates.uid, &[uid]);
                match self.patch_owner_references(&dependent, patch).await {
                    Err(Failure::Api(err)) if is_status(&err, 404) => Ok(()),
                    other => other,
                }
            })
            .buffer_unordered(CONCURRENT_ORPHAN_PATCHES)
            .filter_map(|result| async move { result.err() })
            .collect()
            .await;
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        self.remove_finalizer(&identity, ORPHAN_FINALIZER).await
    }
}

/// Upstream's `GenerateDeleteOwnerRefStrategicMergeBytes`: deletes the references to
/// `owners`; the dependent's uid guards against a same-named successor.
fn delete_owner_references_patch(dependent: &str, owners: &[&str]) -> Value {
    let deletions: Vec<Value> = owners
        .iter()
        .map(|uid| json!({"$patch": "delete", "uid": uid}))
        .collect();
    json!({"metadata": {"ownerReferences": deletions, "uid": dependent}})
}

/// Upstream's `unblockOwnerReferencesStrategicMergePatch`: the blocking references again,
/// with `blockOwnerDeletion: false`.
fn unblock_owner_references_patch(dependent: &str, references: &[OwnerReference]) -> Value {
    let unblocked: Vec<OwnerReference> = references
        .iter()
        .filter(|r| r.block_owner_deletion == Some(true))
        .map(|r| OwnerReference {
            block_owner_deletion: Some(false),
            ..r.clone()
        })
        .collect();
    json!({"metadata": {"ownerReferences": unblocked, "uid": dependent}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn config_maps() -> &'static ResourceInfo {
        resource_for("v1", "ConfigMap").expect("served")
    }

    fn reference(uid: &str, name: &str, block_owner_deletion: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: Some(block_owner_deletion),
        }
    }

    fn meta(uid: &str, name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        }
    }

    fn deleting(mut meta: ObjectMeta, finalizer: &str) -> ObjectMeta {
        meta.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        meta.finalizers = Some(vec![finalizer.into()]);
        meta
    }

    fn uids(uids: &[&str]) -> Vec<Uid> {
        uids.iter().map(|u| Uid::from(*u)).collect()
    }

    fn upsert(graph: &mut Graph, meta: ObjectMeta) -> Effects {
        graph.apply(Change::Upsert(config_maps(), meta))
    }

    #[test]
    fn an_owner_not_seen_yet_is_a_virtual_node_checked_live() {
        let mut graph = Graph::default();
        let effects = upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "own", true)]),
        );
        assert_eq!(effects.attempt_to_delete, uids(&["o"]));
        assert!(!graph.nodes["o"].observed);

        let effects = upsert(&mut graph, meta("o", "own", vec![]));
        assert_eq!(effects, Effects::default());
        assert!(graph.nodes["o"].observed);
        assert_eq!(graph.blocking_dependents("o"), [(Uid::from("d"), false)]);
    }

    #[test]
    fn an_owner_seen_under_another_name_gets_its_dependents_checked() {
        let mut graph = Graph::default();
        upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "wrong", true)]),
        );
        let effects = upsert(&mut graph, meta("o", "own", vec![]));
        assert_eq!(effects.attempt_to_delete, uids(&["d"]));
    }

    #[test]
    fn a_deleted_owner_gets_its_dependents_checked() {
        let mut graph = Graph::default();
        let owner = meta("o", "own", vec![]);
        upsert(&mut graph, owner.clone());
        upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "own", true)]),
        );
        let effects = graph.apply(Change::Delete(config_maps(), owner));
        assert_eq!(effects.attempt_to_delete, uids(&["d"]));
        assert_eq!(effects.absent.len(), 1);
        assert!(!graph.nodes.contains_key("o"));
    }

    #[test]
    fn foreground_deletion_starts_once_and_blocking_dependents_release_the_owner() {
        let mut graph = Graph::default();
        upsert(&mut graph, meta("o", "own", vec![]));
        let dependent = meta("d", "dep", vec![reference("o", "own", true)]);
        upsert(&mut graph, dependent.clone());
        let owner = deleting(meta("o", "own", vec![]), FOREGROUND_FINALIZER);

        let effects = upsert(&mut graph, owner.clone());
        assert_eq!(effects.attempt_to_delete, uids(&["d", "o"]));
        assert!(graph.nodes["o"].deleting_dependents);
        assert_eq!(upsert(&mut graph, owner), Effects::default());

        let effects = graph.apply(Change::Delete(config_maps(), dependent));
        assert_eq!(effects.attempt_to_delete, uids(&["o"]));
    }

    #[test]
    fn a_dependent_that_stops_blocking_releases_its_owner() {
        let mut graph = Graph::default();
        upsert(&mut graph, meta("o", "own", vec![]));
        upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "own", true)]),
        );
        let effects = upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "own", false)]),
        );
        assert_eq!(effects.attempt_to_delete, uids(&["o"]));
        assert!(graph.blocking_dependents("o").is_empty());
    }

    #[test]
    fn orphaning_starts_once() {
        let mut graph = Graph::default();
        let owner = deleting(meta("o", "own", vec![]), ORPHAN_FINALIZER);
        let effects = upsert(&mut graph, owner.clone());
        assert_eq!(effects.attempt_to_orphan, uids(&["o"]));
        assert_eq!(upsert(&mut graph, owner), Effects::default());
    }

    #[test]
    fn a_relist_removes_what_it_no_longer_lists() {
        let mut graph = Graph::default();
        upsert(&mut graph, meta("o", "own", vec![]));
        upsert(
            &mut graph,
            meta("d", "dep", vec![reference("o", "own", true)]),
        );
        let effects = graph.apply(Change::Relisted {
            info: config_maps(),
            listed: ["d".to_string()].into(),
            initial: false,
        });
        assert_eq!(effects.attempt_to_delete, uids(&["d"]));
        assert!(!graph.nodes.contains_key("o"));
        assert!(graph.nodes.contains_key("d"));
    }

    #[test]
    fn an_absent_virtual_owner_stays_for_dependents_naming_it_otherwise() {
        let mut graph = Graph::default();
        let first = meta("a", "first", vec![reference("o", "own", true)]);
        upsert(&mut graph, first.clone());
        upsert(
            &mut graph,
            meta("b", "second", vec![reference("o", "other", true)]),
        );
        let identity = graph.nodes["o"].identity.clone();

        let effects = graph.apply(Change::Absent(identity.clone()));
        assert_eq!(effects.attempt_to_delete, uids(&["a", "o"]));
        assert_eq!(effects.absent, [identity]);
        assert_eq!(&*graph.nodes["o"].identity.coordinates.name, "other");

        // The dependent that named the absent identity is collected, then the other name
        // is checked and found absent as well.
        graph.apply(Change::Delete(config_maps(), first));
        let renamed = graph.nodes["o"].identity.clone();
        let effects = graph.apply(Change::Absent(renamed));
        assert!(!graph.nodes.contains_key("o"));
        assert_eq!(effects.attempt_to_delete, uids(&["b"]));
    }
}

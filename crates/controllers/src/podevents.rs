//! Pod watch events as controllers of pods (ReplicaSet, DaemonSet, ...) use them (upstream's
//! `addPod`/`updatePod`/`deletePod` handlers): a pod's first appearance under its controller is
//! an observed creation, its deletion timestamp or removal an observed deletion, and the
//! controllers to sync are its owner's, or for an orphan those that might adopt it.
//!
//! Events are handled after the informer's store has applied them, as upstream's handlers run,
//! so a sync woken by an observation sees the pod in its cache.

use crate::controller_ref::controller_of;
use crate::expectations::Expectations;
use crate::workqueue::{WorkQueue, key_of};
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use skiff_api::selector::LabelSelector;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// What the controller using [`PodEvents`] knows about owners.
pub trait PodOwners {
    /// The key of the owner in the cache that controls `pod` (matching uid), if any.
    fn owner_key(&self, pod: &Pod) -> Option<String>;
    /// The keys of the owners whose selector matches the orphan `pod`.
    fn selecting(&self, pod: &Pod) -> Vec<String>;
    /// The keys of every owner in the cache, synced after a relist.
    fn all_keys(&self) -> Vec<String>;
}

/// The keys of the owners in `owners` (a cache) in the pod's namespace whose selector
/// (`selector_of`; `None` if invalid) matches the pod's labels; an empty selector matches none.
pub fn selecting_owners<K>(
    owners: &Store<K>,
    pod: &Pod,
    selector_of: impl Fn(&K) -> Option<LabelSelector>,
) -> Vec<String>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    owners
        .state()
        .iter()
        .filter(|owner| owner.meta().namespace == pod.metadata.namespace)
        .filter(|owner| selector_of(owner).is_some_and(|s| !s.is_empty() && s.matches(&labels)))
        .map(|owner| key_of(owner.meta()))
        .collect()
}

/// The pods seen so far, so that a pod's first appearance counts as a creation and a relist can
/// tell which pods vanished meanwhile.
#[derive(Default)]
pub struct PodEvents {
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// By uid: the pod's key and its owner's key, if it has one.
    known: HashMap<String, (String, Option<String>)>,
    /// Pods of a relist in progress, handled when it ends (the store changes only then).
    relisted: Option<Vec<Pod>>,
}

impl PodEvents {
    /// Records expectations and queues owners for one watch event.
    pub fn handle(
        &self,
        event: &watcher::Event<Pod>,
        owners: &impl PodOwners,
        expectations: &Expectations,
        queue: &WorkQueue<String>,
    ) {
        let mut seen = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(pod) => {
                Self::changed(&mut seen, pod, owners, expectations, queue)
            }
            watcher::Event::Delete(pod) => {
                seen.known
                    .remove(pod.metadata.uid.as_deref().unwrap_or_default());
                if let Some(owner) = owners.owner_key(pod) {
                    expectations.deletion_observed(&owner, &key_of(&pod.metadata));
                    queue.add(owner);
                }
            }
            watcher::Event::Init => seen.relisted = Some(Vec::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(relisted) = &mut seen.relisted {
                    relisted.push(pod.clone());
                }
            }
            watcher::Event::InitDone => {
                let relisted = seen.relisted.take().unwrap_or_default();
                let present: HashSet<&str> = relisted
                    .iter()
                    .filter_map(|p| p.metadata.uid.as_deref())
                    .collect();
                let vanished: Vec<String> = seen
                    .known
                    .keys()
                    .filter(|uid| !present.contains(uid.as_str()))
                    .cloned()
                    .collect();
                for uid in vanished {
                    if let Some((key, Some(owner))) = seen.known.remove(&uid) {
                        expectations.deletion_observed(&owner, &key);
                    }
                }
                for pod in &relisted {
                    Self::changed(&mut seen, pod, owners, expectations, queue);
                }
                for key in owners.all_keys() {
                    queue.add(key);
                }
            }
        }
    }

    /// A pod appeared or changed.
    fn changed(
        seen: &mut Seen,
        pod: &Pod,
        owners: &impl PodOwners,
        expectations: &Expectations,
        queue: &WorkQueue<String>,
    ) {
        let key = key_of(&pod.metadata);
        let owner = owners.owner_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let first_sight = seen
            .known
            .insert(uid, (key.clone(), owner.clone()))
            .is_none();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match owner {
            Some(owner) => {
                if deleting {
                    // A pod that shows up already being deleted is not a creation.
                    expectations.deletion_observed(&owner, &key);
                } else if first_sight {
                    expectations.creation_observed(&owner);
                }
                queue.add(owner);
            }
            None if controller_of(&pod.metadata).is_none() && !deleting => {
                for owner in owners.selecting(pod) {
                    queue.add(owner);
                }
            }
            None => {}
        }
    }
}

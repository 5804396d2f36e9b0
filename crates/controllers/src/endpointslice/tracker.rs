//! What the controller last wrote to each slice (upstream's `EndpointSliceTracker`), so that its
//! own writes coming back through the watch wake nobody, and a sync never plans from a cache
//! that has not yet caught up with them.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// The last write to one slice.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Written {
    /// Created or updated, at this generation.
    Generation(i64),
    /// Deleted.
    Deleted,
}

/// The controller's writes, by Service key and slice uid.
#[derive(Default)]
pub struct SliceTracker {
    services: Mutex<HashMap<String, HashMap<String, Written>>>,
}

fn uid(slice: &EndpointSlice) -> String {
    slice.metadata.uid.clone().unwrap_or_default()
}

fn generation(slice: &EndpointSlice) -> i64 {
    slice.metadata.generation.unwrap_or(0)
}

impl SliceTracker {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Written>>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a create or update of `slice` (as the server returned it) for `service`.
    pub fn written(&self, service: &str, slice: &EndpointSlice) {
        self.lock()
            .entry(service.to_owned())
            .or_default()
            .insert(uid(slice), Written::Generation(generation(slice)));
    }

    /// Records the deletion of `slice`.
    pub fn deleted(&self, service: &str, slice: &EndpointSlice) {
        self.lock()
            .entry(service.to_owned())
            .or_default()
            .insert(uid(slice), Written::Deleted);
    }

    /// Whether a watched change of `slice` is news: not the controller's own last write.
    pub fn should_sync(&self, service: &str, slice: &EndpointSlice) -> bool {
        match self.lock().get(service).and_then(|s| s.get(&uid(slice))) {
            Some(Written::Generation(g)) => generation(slice) > *g,
            _ => true,
        }
    }

    /// Forgets a watched deletion of `slice`; true if the controller did not delete it.
    pub fn unexpected_deletion(&self, service: &str, slice: &EndpointSlice) -> bool {
        let mut services = self.lock();
        let Some(slices) = services.get_mut(service) else {
            return true;
        };
        slices.remove(&uid(slice)) != Some(Written::Deleted)
    }

    /// Whether the cached `slices` of `service` are older than the controller's writes: a
    /// written slice missing or at an older generation, or a deleted one still there.
    pub fn stale(&self, service: &str, slices: &[&EndpointSlice]) -> bool {
        let services = self.lock();
        let Some(written) = services.get(service) else {
            return false;
        };
        let cached: HashMap<String, i64> = slices.iter().map(|s| (uid(s), generation(s))).collect();
        written
            .iter()
            .any(|(uid, write)| match (write, cached.get(uid)) {
                (Written::Deleted, cached) => cached.is_some(),
                (Written::Generation(_), None) => true,
                (Written::Generation(g), Some(cached)) => cached < g,
            })
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, service: &str) {
        self.lock().remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(uid: &str, generation: i64) -> EndpointSlice {
        let mut slice = EndpointSlice::default();
        slice.metadata.uid = Some(uid.into());
        slice.metadata.generation = Some(generation);
        slice
    }

    #[test]
    fn own_writes_are_not_news_and_lagging_caches_are_stale() {
        let tracker = SliceTracker::default();
        let (a1, a2) = (slice("a", 1), slice("a", 2));
        assert!(tracker.should_sync("ns/web", &a1));
        assert!(!tracker.stale("ns/web", &[]));
        tracker.written("ns/web", &a2);
        assert!(!tracker.should_sync("ns/web", &a2));
        assert!(
            tracker.should_sync("ns/web", &slice("a", 3)),
            "somebody else changed it"
        );
        assert!(tracker.stale("ns/web", &[&a1]));
        assert!(
            tracker.stale("ns/web", &[]),
            "the written slice is not cached yet"
        );
        assert!(!tracker.stale("ns/web", &[&a2]));

        tracker.deleted("ns/web", &a2);
        assert!(tracker.stale("ns/web", &[&a2]));
        assert!(!tracker.stale("ns/web", &[]));
        assert!(!tracker.unexpected_deletion("ns/web", &a2));
        assert!(tracker.unexpected_deletion("ns/web", &slice("b", 1)));
    }
}

//! Expectations, as upstream's `UIDTrackingControllerExpectations`: a controller that created or
//! deleted children records what it expects to see, and does not act on that owner again until
//! its informer has shown those changes (or five minutes have passed), so that a stale cache never
//! makes it create or delete twice.
//!
//! Creations are counted; deletions are tracked by child key, so that seeing the same deletion
//! twice (a deletion timestamp, then the removal) counts once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How long expectations hold before the owner is synced regardless (upstream's
/// `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What each owner (by key) still expects to observe.
#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

/// One owner's outstanding expectations.
struct Pending {
    creations: usize,
    deletions: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `owner` may act: it expects nothing more, or its expectations expired.
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(pending) => {
                (pending.creations == 0 && pending.deletions.is_empty())
                    || pending.since.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// `owner` is about to create `creations` children and delete the children with keys
    /// `deletions`; replaces what it expected before.
    pub fn expect(
        &self,
        owner: &str,
        creations: usize,
        deletions: impl IntoIterator<Item = String>,
    ) {
        self.lock().insert(
            owner.to_owned(),
            Pending {
                creations,
                deletions: deletions.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// A child of `owner` appeared, or a creation failed or was never attempted.
    pub fn creation_observed(&self, owner: &str) {
        self.lowered_creations(owner, 1);
    }

    /// `count` planned creations of `owner` will not happen.
    pub fn lowered_creations(&self, owner: &str, count: usize) {
        if let Some(pending) = self.lock().get_mut(owner) {
            pending.creations = pending.creations.saturating_sub(count);
        }
    }

    /// The child `child` of `owner` is being deleted or is gone, or its deletion failed.
    pub fn deletion_observed(&self, owner: &str, child: &str) {
        if let Some(pending) = self.lock().get_mut(owner) {
            pending.deletions.remove(child);
        }
    }

    /// Forgets `owner`, which is gone.
    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_counted_down() {
        let expectations = Expectations::new();
        assert!(expectations.satisfied("ns/rs"));
        expectations.expect("ns/rs", 3, []);
        assert!(!expectations.satisfied("ns/rs"));
        expectations.creation_observed("ns/rs");
        expectations.lowered_creations("ns/rs", 1);
        assert!(!expectations.satisfied("ns/rs"));
        expectations.creation_observed("ns/rs");
        assert!(expectations.satisfied("ns/rs"));
        expectations.creation_observed("ns/rs");
        assert!(
            expectations.satisfied("ns/rs"),
            "extra observations do no harm"
        );
    }

    #[test]
    fn a_deletion_seen_twice_counts_once() {
        let expectations = Expectations::new();
        expectations.expect("ns/rs", 0, ["ns/a".to_owned(), "ns/b".to_owned()]);
        expectations.deletion_observed("ns/rs", "ns/a");
        expectations.deletion_observed("ns/rs", "ns/a");
        assert!(!expectations.satisfied("ns/rs"));
        expectations.deletion_observed("ns/rs", "ns/other");
        assert!(!expectations.satisfied("ns/rs"));
        expectations.deletion_observed("ns/rs", "ns/b");
        assert!(expectations.satisfied("ns/rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire() {
        let expectations = Expectations::new();
        expectations.expect("ns/rs", 1, []);
        tokio::time::advance(EXPECTATIONS_TIMEOUT).await;
        assert!(!expectations.satisfied("ns/rs"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(expectations.satisfied("ns/rs"));
        expectations.forget("ns/rs");
        assert!(expectations.satisfied("ns/rs"));
    }
}

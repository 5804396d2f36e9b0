//! A de-duplicating work queue, as client-go's `workqueue`: a key added while waiting is
//! queued once, and a key added while being processed is processed again afterwards, never by
//! two workers at once.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Keys waiting for a worker.
pub(crate) struct WorkQueue<K> {
    state: Mutex<QueueState<K>>,
    ready: Notify,
}

struct QueueState<K> {
    /// Keys in the order they became ready.
    order: VecDeque<K>,
    /// Keys waiting to be processed (in `order`, or re-added while processing).
    dirty: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(QueueState {
                order: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
            }),
            ready: Notify::new(),
        }
    }

    /// Queues `key` unless it is already waiting.
    pub(crate) fn add(&self, key: K) {
        let mut state = self.state.lock().unwrap();
        if !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.order.push_back(key);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] with it.
    pub(crate) async fn next(&self) -> K {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state.lock().unwrap();
                if let Some(key) = state.order.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    // Another key may be waiting for another idle worker.
                    if !state.order.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Releases `key`, queueing it again if it was added while being processed.
    pub(crate) fn done(&self, key: &K) {
        let mut state = self.state.lock().unwrap();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.order.push_back(key.clone());
            drop(state);
            self.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_after_processing() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        let first = queue.next().await;
        assert_eq!(first, "a");
        queue.add("a");
        assert_eq!(queue.next().await, "b", "a is held by a worker");
        queue.done(&"a");
        assert_eq!(queue.next().await, "a", "re-added while processing");
    }
}

//! Watch fan-out: the writer publishes committed events to live subscriptions; each watch
//! forwards its history and then its live events to the caller.

use std::sync::Mutex;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::reader::History;
use crate::{Event, Revision};

use super::LIVE_BUFFER;

/// A live subscription to keys under a prefix.
struct Subscriber {
    prefix: String,
    sender: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Subscribers {
    live: Vec<Subscriber>,
    closed: bool,
}

/// The live subscriptions of one store.
#[derive(Default)]
pub(super) struct Hub {
    subscribers: Mutex<Subscribers>,
}

impl Hub {
    /// Subscribes to events committed from now on under `prefix`; `None` once the store is closed.
    pub(super) fn subscribe(&self, prefix: &str) -> Option<mpsc::Receiver<Event>> {
        let mut subscribers = self.lock();
        if subscribers.closed {
            return None;
        }
        let (sender, receiver) = mpsc::channel(LIVE_BUFFER);
        subscribers.live.push(Subscriber {
            prefix: prefix.to_owned(),
            sender,
        });
        Some(receiver)
    }

    /// Delivers committed `events` (in revision order) to matching subscribers, dropping those
    /// that are full or gone.
    pub(super) fn publish(&self, events: &[&Event]) {
        let mut subscribers = self.lock();
        subscribers.live.retain(|subscriber| {
            if subscriber.sender.is_closed() {
                return false;
            }
            events
                .iter()
                .filter(|event| event.key.starts_with(&subscriber.prefix))
                .all(|event| match subscriber.sender.try_send((*event).clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        tracing::warn!(prefix = %subscriber.prefix, "dropping a watcher that fell behind");
                        false
                    }
                    Err(TrySendError::Closed(_)) => false,
                })
        });
    }

    /// Ends every subscription and refuses new ones.
    pub(super) fn close(&self) {
        let mut subscribers = self.lock();
        subscribers.closed = true;
        subscribers.live.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Sends `history`, then the live events newer than both it and `after`, to `out`; ends when
/// either the subscription or the caller goes away.
pub(super) async fn forward(
    history: History,
    mut live: mpsc::Receiver<Event>,
    after: Revision,
    out: mpsc::Sender<Event>,
) {
    for event in history.events {
        if out.send(event).await.is_err() {
            return;
        }
    }
    // Live events up to the history's snapshot were already sent (or predate `after`).
    let delivered = history.head.max(after);
    while let Some(event) = live.recv().await {
        if event.revision > delivered && out.send(event).await.is_err() {
            return;
        }
    }
}

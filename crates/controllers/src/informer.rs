//! Informers as controllers use them (client-go's informer with event handlers): a
//! kube-runtime reflector over every object of a kind, each object slimmed to what the
//! controller reads, and a handler called once the store holds the event.

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Runs a reflector on `api` into `writer` until the process ends: each object passes through
/// `slim` first, and `on_event` sees each event after the store applied it (watch failures
/// are logged and retried with back-off).
pub fn spawn<K>(
    api: Api<K>,
    writer: Writer<K>,
    slim: impl FnMut(&mut K) + Send + 'static,
    mut on_event: impl FnMut(watcher::Event<K>) + Send + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .for_each(move |event| {
                match event {
                    Ok(event) => on_event(event),
                    Err(err) => tracing::warn!(%err, kind = %K::kind(&()), "watch failed"),
                }
                futures::future::ready(())
            }),
    );
}

/// Keeps every object whole.
pub fn keep_all<K>(_: &mut K) {}

/// Ignores events (a store read only during syncs).
pub fn ignore<K>(_: watcher::Event<K>) {}

/// Waits for the store's first list; `false` if its reflector ended for good.
pub async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.wait_until_ready().await.is_ok()
}

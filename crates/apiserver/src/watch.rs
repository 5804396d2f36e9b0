//! Watches: a chunked stream of newline-delimited watch events, served from the cache.

use crate::cache::{Cache, CachedObject, Change, ChangeType};
use crate::list::{Filter, IncludeObject, render_table, wait_for};
use crate::request::Query;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::json;
use skiff_api::{ApiError, ResourceInfo};
use skiff_store::{Revision, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a watch that allows bookmarks gets one (upstream sends about one a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// How long before a watch's timeout its last bookmark is sent.
const FINAL_BOOKMARK_LEAD: Duration = Duration::from_secs(2);
/// A watch without timeoutSeconds ends after this long (upstream: 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// How events are rendered.
#[derive(Clone, Copy)]
pub enum Format {
    /// Plain objects.
    Object,
    /// One-row Tables (the first with column definitions).
    Table(IncludeObject),
}

/// Everything a watch needs to run.
pub struct WatchRequest {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    filter: Filter,
    from: Option<Revision>,
    bookmarks: bool,
    initial_events_end: bool,
    timeout: Duration,
    format: Format,
}

impl WatchRequest {
    /// Reads a watch request's parameters.
    pub fn from_query(
        info: &'static ResourceInfo,
        namespace: Option<String>,
        query: &Query,
        format: Format,
    ) -> Result<Self, ApiError> {
        let filter = Filter::from_query(info, query)?;
        let from =
            match query
                .get("resourceVersion")
                .filter(|v| !v.is_empty() && *v != "0")
            {
                Some(rv) => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?),
                None => None,
            };
        let send_initial = query.flag("sendInitialEvents");
        if send_initial && query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::unprocessable(
                "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
            ));
        }
        let timeout = query
            .int("timeoutSeconds")?
            .filter(|t| *t > 0)
            .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs(t as u64));
        Ok(Self {
            info,
            namespace,
            filter,
            // With sendInitialEvents the watch starts with the current state (at least `from`).
            from: if send_initial { None } else { from },
            bookmarks: query.flag("allowWatchBookmarks"),
            initial_events_end: send_initial,
            timeout,
            format,
        })
    }

    /// Starts the watch: resolves the starting point (410 Expired when it is too old) and
    /// returns the event stream.
    pub async fn start(
        self,
        store: &Arc<dyn Store>,
        cache: Arc<Cache>,
    ) -> Result<impl Stream<Item = Result<Bytes, std::convert::Infallible>> + use<>, ApiError> {
        match self.from {
            Some(rv) => wait_for(&cache, rv).await?,
            None => {
                let current = store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                wait_for(&cache, current).await?;
            }
        }
        let start = cache
            .resource(self.info)
            .watch(self.from, self.namespace.as_deref());
        let (initial, live, after, expired) = match start {
            Ok(s) => (s.initial, Some(s.live), s.after, None),
            Err(too_old) => (Vec::new(), None, 0, Some(too_old.oldest)),
        };
        let cache_rx = cache.revisions();
        let stream = async_stream(self, initial, live, after, expired, cache_rx);
        Ok(stream)
    }
}

/// Decides how a change looks to a filtered watcher: an object that starts matching is ADDED,
/// one that stops matching is DELETED, as upstream's cacher does.
fn visible(filter: &Filter, change: &Change) -> Option<&'static str> {
    let now = filter.matches(&change.object);
    let before = change.prev.as_ref().is_some_and(|p| filter.matches(p));
    match (change.kind, before, now) {
        (ChangeType::Deleted, _, _) => {
            (before || (change.prev.is_none() && now)).then_some("DELETED")
        }
        (ChangeType::Added, _, true) => Some("ADDED"),
        (ChangeType::Modified, true, true) => Some("MODIFIED"),
        (ChangeType::Modified, false, true) => Some("ADDED"),
        (ChangeType::Modified, true, false) => Some("DELETED"),
        _ => None,
    }
}

struct Renderer {
    info: &'static ResourceInfo,
    format: Format,
    sent_headers: bool,
}

impl Renderer {
    fn event(&mut self, kind: &str, object: &CachedObject) -> Bytes {
        let mut out = Vec::with_capacity(object.json.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.format {
            Format::Object => out.extend_from_slice(&object.json),
            Format::Table(include) => {
                let value = object.value();
                let table = render_table(
                    self.info,
                    std::iter::once(&value),
                    json!({"resourceVersion": object.revision.to_string()}),
                    include,
                    !self.sent_headers,
                );
                self.sent_headers = true;
                serde_json::to_writer(&mut out, &table).expect("serializes");
            }
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta});
        let mut out =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).expect("serializes");
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// The cache revision a bookmark may claim: every change up to it has been taken off `live`.
/// The revision is read before the queue is checked, because the cache broadcasts a change
/// before it publishes the revision; `None` while changes are still queued.
fn caught_up(
    revisions: &mut tokio::sync::watch::Receiver<Revision>,
    live: &tokio::sync::broadcast::Receiver<Arc<Change>>,
) -> Option<Revision> {
    let rev = *revisions.borrow_and_update();
    live.is_empty().then_some(rev)
}

fn error_event(err: &ApiError) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": err.to_status()}))
        .expect("serializes");
    out.push(b'\n');
    Bytes::from(out)
}

fn async_stream(
    req: WatchRequest,
    initial: Vec<Arc<Change>>,
    live: Option<tokio::sync::broadcast::Receiver<Arc<Change>>>,
    after: Revision,
    expired: Option<Revision>,
    mut revisions: tokio::sync::watch::Receiver<Revision>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut renderer = Renderer {
            info: req.info,
            format: req.format,
            sent_headers: false,
        };
        if let Some(oldest) = expired {
            let from = req.from.unwrap_or_default();
            let _ = tx
                .send(error_event(&ApiError::gone(format!(
                    "too old resource version: {from} ({oldest})"
                ))))
                .await;
            return;
        }
        let in_namespace =
            |o: &CachedObject| req.namespace.as_deref().is_none_or(|ns| o.namespace == ns);
        for change in &initial {
            if !in_namespace(&change.object) {
                continue;
            }
            if let Some(kind) = visible(&req.filter, change)
                && tx.send(renderer.event(kind, &change.object)).await.is_err()
            {
                return;
            }
        }
        let mut last_sent = after;
        if req.initial_events_end && tx.send(renderer.bookmark(last_sent, true)).await.is_err() {
            return;
        }
        let Some(mut live) = live else { return };
        let deadline = tokio::time::sleep(req.timeout);
        tokio::pin!(deadline);
        // As upstream's cacher, a watch that allows bookmarks gets one shortly before it ends,
        // so the client resumes from a fresh resourceVersion.
        let final_bookmark = tokio::time::sleep(req.timeout.saturating_sub(FINAL_BOOKMARK_LEAD));
        tokio::pin!(final_bookmark);
        let mut final_bookmark_sent = false;
        let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark_timer.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = &mut final_bookmark, if req.bookmarks && !final_bookmark_sent => {
                    final_bookmark_sent = true;
                    last_sent = last_sent.max(caught_up(&mut revisions, &live).unwrap_or(last_sent));
                    if tx.send(renderer.bookmark(last_sent, false)).await.is_err() { return; }
                }
                _ = tx.closed() => return,
                _ = bookmark_timer.tick(), if req.bookmarks => {
                    let rev = caught_up(&mut revisions, &live).unwrap_or(last_sent);
                    if rev > last_sent {
                        last_sent = rev;
                        if tx.send(renderer.bookmark(rev, false)).await.is_err() { return; }
                    }
                }
                msg = live.recv() => match msg {
                    Ok(change) => {
                        if change.revision() <= last_sent || !in_namespace(&change.object) {
                            continue;
                        }
                        last_sent = change.revision();
                        if let Some(kind) = visible(&req.filter, &change)
                            && tx.send(renderer.event(kind, &change.object)).await.is_err() { return; }
                    }
                    // Fell too far behind: end the stream; clients resume or relist.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}

//! core/v1 Events, written as client-go's `tools/record` recorder writes them.
//!
//! An [`EventRecorder`] is cheap to clone and never blocks: [`EventRecorder::record`] hands the
//! event to a background writer, as upstream's broadcaster does, which correlates it with the
//! events written before (upstream's `EventCorrelator`):
//! - the exact same event (source, involved object, type, reason, message) again becomes a
//!   strategic merge patch of the first one's `count`, `lastTimestamp` and `message`;
//! - more than [`AGGREGATE_MAX_EVENTS`] distinct messages for one (source, object, type,
//!   reason) within [`AGGREGATE_INTERVAL`] are combined into one event whose message starts
//!   with `(combined from similar events): `;
//! - a source may burst [`SPAM_BURST`] events about one object, then one every five minutes.
//!
//! Events about cluster-scoped objects (Nodes) go to the `default` namespace.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many distinct messages for one (source, object, type, reason) are written as they are
/// before further ones are combined (client-go's `defaultAggregateMaxEvents`).
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// How long similar events are remembered for aggregation (`defaultAggregateIntervalInSeconds`).
pub const AGGREGATE_INTERVAL: SignedDuration = SignedDuration::from_secs(600);
/// How many events a source may write about one object at once (`defaultSpamBurst`).
pub const SPAM_BURST: f64 = 25.0;
/// How fast that allowance refills: one event every five minutes (`defaultSpamQPS`).
const SPAM_QPS: f64 = 1.0 / 300.0;
/// Entries kept per correlation cache (`maxLruCacheEntries`).
const CACHE_ENTRIES: usize = 4096;
/// Events waiting to be written; more are dropped, as upstream's broadcaster queue drops them.
const QUEUE_LENGTH: usize = 1000;
/// Attempts to write one event while the API server is unreachable (`maxTriesPerEvent`).
const MAX_TRIES: u32 = 12;
/// Pause between those attempts (`defaultSleepDuration`).
const RETRY_SLEEP: Duration = Duration::from_secs(10);

/// `Event.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Nothing to worry about.
    Normal,
    /// Something may be wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes core/v1 Events on behalf of one component (`source.component`, e.g.
/// `node-controller`).
#[derive(Clone)]
pub struct EventRecorder {
    source: EventSource,
    queue: mpsc::Sender<Event>,
}

impl EventRecorder {
    /// A recorder for `component`, as controllers have it (no `source.host`).
    pub fn new(client: Client, component: &str) -> Self {
        Self::with_host(client, component, "")
    }

    /// A recorder for `component` running on `host` (the kubelet passes its node name), which
    /// becomes `source.host` and `reportingInstance`. Must be called within a Tokio runtime.
    pub fn with_host(client: Client, component: &str, host: &str) -> Self {
        let (queue, events) = mpsc::channel(QUEUE_LENGTH);
        tokio::spawn(write_events(client, events));
        let source = EventSource {
            component: Some(component.to_owned()),
            host: (!host.is_empty()).then(|| host.to_owned()),
        };
        Self { source, queue }
    }

    /// Records an event about `object` (see [`reference`]); never waits for the API server.
    pub fn record(
        &self,
        object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let event = make_event(
            &self.source,
            object,
            event_type,
            reason,
            message.into(),
            Timestamp::now(),
        );
        if self.queue.try_send(event).is_err() {
            tracing::warn!(reason, "event queue full or closed; dropping event");
        }
    }
}

/// A reference to `object` as client-go's `ref.GetReference` makes it: kind, namespace, name,
/// uid, apiVersion and resourceVersion.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        resource_version: object.meta().resource_version.clone(),
        ..object.object_ref(&())
    }
}

/// client-go's `makeEvent`: named `<object>.<hex nanoseconds>`, in the object's namespace or
/// `default`.
fn make_event(
    source: &EventSource,
    object: &ObjectReference,
    event_type: EventType,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Event {
    let namespace = object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                object.name.as_deref().unwrap_or_default(),
                now.as_nanosecond()
            )),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: object.clone(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        type_: Some(event_type.as_str().to_owned()),
        source: Some(source.clone()),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        ..Default::default()
    }
}

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default()
}

fn source_parts(event: &Event) -> [&str; 2] {
    let source = event.source.as_ref();
    [
        source
            .and_then(|s| s.component.as_deref())
            .unwrap_or_default(),
        source.and_then(|s| s.host.as_deref()).unwrap_or_default(),
    ]
}

/// client-go's `getEventKey`: what makes two events the same event.
fn event_key(event: &Event) -> String {
    let o = &event.involved_object;
    let [component, host] = source_parts(event);
    [
        component,
        host,
        text(&o.kind),
        text(&o.namespace),
        text(&o.name),
        text(&o.field_path),
        text(&o.uid),
        text(&o.api_version),
        text(&event.type_),
        text(&event.reason),
        text(&event.message),
    ]
    .concat()
}

/// client-go's `EventAggregatorByReasonFunc`: events that differ only in their message.
fn aggregate_key(event: &Event) -> String {
    let o = &event.involved_object;
    let [component, host] = source_parts(event);
    [
        component,
        host,
        text(&o.kind),
        text(&o.namespace),
        text(&o.name),
        text(&o.uid),
        text(&o.api_version),
        text(&event.type_),
        text(&event.reason),
        text(&event.reporting_component),
        text(&event.reporting_instance),
    ]
    .concat()
}

/// client-go's `getSpamKey`: one source talking about one object.
fn spam_key(event: &Event) -> String {
    let o = &event.involved_object;
    let [component, host] = source_parts(event);
    [
        component,
        host,
        text(&o.kind),
        text(&o.namespace),
        text(&o.name),
        text(&o.uid),
        text(&o.api_version),
    ]
    .concat()
}

/// A least-recently-used map of at most `capacity` entries (groupcache's `lru.Cache`).
struct Lru<V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<String, (u64, V)>,
    by_use: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn touch(&mut self, key: &str) {
        if let Some((used, _)) = self.entries.get_mut(key) {
            self.by_use.remove(used);
            self.clock += 1;
            *used = self.clock;
            self.by_use.insert(self.clock, key.to_owned());
        }
    }

    fn get(&mut self, key: &str) -> Option<&mut V> {
        self.touch(key);
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    fn insert(&mut self, key: String, value: V) {
        self.clock += 1;
        if let Some((used, _)) = self.entries.insert(key.clone(), (self.clock, value)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.clock, key);
        if self.entries.len() > self.capacity
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.entries.remove(&oldest);
        }
    }
}

/// Similar events seen recently (client-go's `aggregateRecord`).
struct AggregateRecord {
    messages: HashSet<String>,
    last_seen: Timestamp,
}

/// The first occurrence of an event, to be patched by the next ones (client-go's `eventLog`).
#[derive(Clone)]
struct Observation {
    count: i32,
    first_timestamp: Option<Time>,
    name: Option<String>,
    resource_version: Option<String>,
}

/// A token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter`).
struct TokenBucket {
    tokens: f64,
    refilled_at: Timestamp,
}

/// What to write for one recorded event.
#[derive(Debug, PartialEq)]
struct Correlated {
    event: Event,
    /// A strategic merge patch of the existing event, when this is a repeat.
    patch: Option<serde_json::Value>,
}

/// client-go's `EventCorrelator`: aggregation, de-duplication and spam filtering.
struct Correlator {
    aggregates: Lru<AggregateRecord>,
    observations: Lru<Observation>,
    spam: Lru<TokenBucket>,
}

impl Correlator {
    fn new() -> Self {
        Self {
            aggregates: Lru::new(CACHE_ENTRIES),
            observations: Lru::new(CACHE_ENTRIES),
            spam: Lru::new(CACHE_ENTRIES),
        }
    }

    /// Correlates `event`, recorded at `now`; `None` when the spam filter drops it.
    fn correlate(&mut self, event: Event, now: Timestamp) -> Option<Correlated> {
        let (event, key) = self.aggregate(event, now);
        let correlated = self.observe(event, key);
        self.allow(&correlated.event, now).then_some(correlated)
    }

    /// `EventAggregate`: the event itself keyed by [`event_key`], or once too many similar
    /// events were seen, a combined event keyed by [`aggregate_key`].
    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, String) {
        let group = aggregate_key(&event);
        let message = text(&event.message).to_owned();
        let record = match self.aggregates.get(&group) {
            Some(r) if now.duration_since(r.last_seen) <= AGGREGATE_INTERVAL => r,
            _ => {
                self.aggregates.insert(
                    group.clone(),
                    AggregateRecord {
                        messages: HashSet::new(),
                        last_seen: now,
                    },
                );
                self.aggregates.get(&group).expect("just inserted")
            }
        };
        record.messages.insert(message.clone());
        record.last_seen = now;
        if record.messages.len() < AGGREGATE_MAX_EVENTS {
            let key = event_key(&event);
            return (event, key);
        }
        // Keep the set from growing past the maximum, as client-go's PopAny does.
        if let Some(any) = record.messages.iter().next().cloned() {
            record.messages.remove(&any);
        }
        let combined = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    text(&event.involved_object.name),
                    now.as_nanosecond()
                )),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            message: Some(format!("(combined from similar events): {message}")),
            ..event
        };
        (combined, group)
    }

    /// `eventObserve`: a repeat of an event seen before becomes a patch of that event.
    fn observe(&mut self, mut event: Event, key: String) -> Correlated {
        let patch = match self.observations.get(&key) {
            Some(seen) => {
                event.metadata.name = seen.name.clone();
                event.metadata.resource_version = seen.resource_version.clone();
                event.first_timestamp = seen.first_timestamp.clone();
                event.count = Some(seen.count + 1);
                Some(
                    json!({"count": event.count, "lastTimestamp": event.last_timestamp, "message": event.message}),
                )
            }
            None => None,
        };
        self.remember(key, &event);
        Correlated { event, patch }
    }

    /// `updateState`: remembers what the server returned, under the written event's key.
    fn update_state(&mut self, written: &Event) {
        self.remember(event_key(written), written);
    }

    fn remember(&mut self, key: String, event: &Event) {
        let observation = Observation {
            count: event.count.unwrap_or(1),
            first_timestamp: event.first_timestamp.clone(),
            name: event.metadata.name.clone(),
            resource_version: event.metadata.resource_version.clone(),
        };
        self.observations.insert(key, observation);
    }

    /// `EventSourceObjectSpamFilter.Filter`, inverted: whether the event may be written.
    fn allow(&mut self, event: &Event, now: Timestamp) -> bool {
        let key = spam_key(event);
        if self.spam.get(&key).is_none() {
            self.spam.insert(
                key.clone(),
                TokenBucket {
                    tokens: SPAM_BURST,
                    refilled_at: now,
                },
            );
        }
        let bucket = self.spam.get(&key).expect("just inserted");
        let elapsed = now
            .duration_since(bucket.refilled_at)
            .as_secs_f64()
            .max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
        bucket.refilled_at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

/// The background writer behind a recorder (client-go's `recordToSink`).
async fn write_events(client: Client, mut events: mpsc::Receiver<Event>) {
    let mut correlator = Correlator::new();
    while let Some(event) = events.recv().await {
        let now = event
            .last_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let Some(correlated) = correlator.correlate(event, now) else {
            continue;
        };
        for attempt in 1..=MAX_TRIES {
            match write(&client, &correlated).await {
                Ok(written) => {
                    correlator.update_state(&written);
                    break;
                }
                // The server understood and refused: retrying will not help.
                Err(kube::Error::Api(status)) => {
                    tracing::debug!(reason = %status.reason, message = %status.message, "server rejected event");
                    break;
                }
                Err(err) if attempt == MAX_TRIES => {
                    tracing::error!(%err, "unable to write event (retry limit exceeded)")
                }
                Err(err) => {
                    tracing::warn!(%err, "unable to write event (will retry)");
                    // The first pause is random so that clients do not retry in lockstep.
                    let pause = if attempt == 1 {
                        RETRY_SLEEP.mul_f64(rand::random())
                    } else {
                        RETRY_SLEEP
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// `recordEvent`: patches a repeat, creating the event anew if it has gone.
async fn write(client: &Client, correlated: &Correlated) -> Result<Event, kube::Error> {
    let namespace = text(&correlated.event.metadata.namespace);
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Some(patch) = &correlated.patch {
        match api
            .patch(
                text(&correlated.event.metadata.name),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => return other,
        }
    }
    let mut event = correlated.event.clone();
    event.metadata.resource_version = None;
    api.create(&PostParams::default(), &event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("web-0".into()),
            namespace: Some("demo".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        }
    }

    fn source() -> EventSource {
        EventSource {
            component: Some("taint-eviction-controller".into()),
            host: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn events_are_named_after_the_object_and_the_time_in_hex_nanoseconds() {
        let now = Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap();
        let event = make_event(
            &source(),
            &pod_ref(),
            EventType::Normal,
            "TaintManagerEviction",
            "m".into(),
            now,
        );
        assert_eq!(
            event.metadata.name.as_deref(),
            Some("web-0.17979cfe3d85cd15")
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("demo"));
        assert_eq!(
            event.reporting_component.as_deref(),
            Some("taint-eviction-controller")
        );
        assert_eq!(event.reporting_instance, None);
        assert_eq!(event.count, Some(1));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
    }

    #[test]
    fn events_about_cluster_scoped_objects_go_to_default() {
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            namespace: None,
            ..Default::default()
        };
        let event = make_event(
            &source(),
            &node,
            EventType::Normal,
            "NodeNotReady",
            "m".into(),
            at(0),
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn repeats_patch_the_first_event_count_last_timestamp_and_message() {
        let mut correlator = Correlator::new();
        let first = make_event(
            &source(),
            &pod_ref(),
            EventType::Warning,
            "NodeNotReady",
            "Node is not ready".into(),
            at(0),
        );
        let written = correlator.correlate(first.clone(), at(0)).unwrap();
        assert_eq!(written.patch, None);
        let mut stored = written.event.clone();
        stored.metadata.resource_version = Some("42".into());
        correlator.update_state(&stored);

        let again = make_event(
            &source(),
            &pod_ref(),
            EventType::Warning,
            "NodeNotReady",
            "Node is not ready".into(),
            at(30),
        );
        let repeat = correlator.correlate(again, at(30)).unwrap();
        assert_eq!(repeat.event.metadata.name, first.metadata.name);
        assert_eq!(
            repeat.event.metadata.resource_version.as_deref(),
            Some("42")
        );
        assert_eq!(repeat.event.first_timestamp, first.first_timestamp);
        assert_eq!(repeat.event.count, Some(2));
        assert_eq!(
            repeat.patch,
            Some(
                json!({"count": 2, "lastTimestamp": "2023-11-14T22:13:50Z", "message": "Node is not ready"})
            )
        );
    }

    #[test]
    fn different_messages_are_different_events_until_ten_then_combined() {
        let mut correlator = Correlator::new();
        let mut names = HashSet::new();
        for i in 0..AGGREGATE_MAX_EVENTS - 1 {
            let e = make_event(
                &source(),
                &pod_ref(),
                EventType::Normal,
                "R",
                format!("m{i}"),
                at(i as i64),
            );
            let c = correlator.correlate(e, at(i as i64)).unwrap();
            assert_eq!(c.patch, None);
            names.insert(c.event.metadata.name.unwrap());
        }
        assert_eq!(names.len(), AGGREGATE_MAX_EVENTS - 1);
        let tenth = make_event(
            &source(),
            &pod_ref(),
            EventType::Normal,
            "R",
            "m9".into(),
            at(20),
        );
        let combined = correlator.correlate(tenth, at(20)).unwrap();
        assert_eq!(
            combined.event.message.as_deref(),
            Some("(combined from similar events): m9")
        );
        assert_eq!(combined.patch, None);
        let eleventh = make_event(
            &source(),
            &pod_ref(),
            EventType::Normal,
            "R",
            "m10".into(),
            at(21),
        );
        let repeat = correlator.correlate(eleventh, at(21)).unwrap();
        assert_eq!(repeat.event.metadata.name, combined.event.metadata.name);
        assert_eq!(repeat.event.count, Some(2));
        assert_eq!(
            repeat.event.message.as_deref(),
            Some("(combined from similar events): m10")
        );
    }

    #[test]
    fn similar_events_are_forgotten_after_ten_minutes() {
        let mut correlator = Correlator::new();
        for i in 0..AGGREGATE_MAX_EVENTS - 1 {
            let e = make_event(
                &source(),
                &pod_ref(),
                EventType::Normal,
                "R",
                format!("m{i}"),
                at(0),
            );
            correlator.correlate(e, at(0)).unwrap();
        }
        let later = at(601);
        let e = make_event(
            &source(),
            &pod_ref(),
            EventType::Normal,
            "R",
            "new".into(),
            later,
        );
        assert_eq!(
            correlator
                .correlate(e, later)
                .unwrap()
                .event
                .message
                .as_deref(),
            Some("new")
        );
    }

    #[test]
    fn a_source_may_burst_25_events_about_an_object_then_one_per_five_minutes() {
        let mut correlator = Correlator::new();
        let mut allowed = 0;
        for i in 0..30 {
            let e = make_event(
                &source(),
                &pod_ref(),
                EventType::Normal,
                "R",
                "same".into(),
                at(0),
            );
            allowed += usize::from(correlator.correlate(e, at(i / 10)).is_some());
        }
        assert_eq!(allowed, 25);
        let e = make_event(
            &source(),
            &pod_ref(),
            EventType::Normal,
            "R",
            "same".into(),
            at(303),
        );
        assert!(correlator.correlate(e, at(303)).is_some());
    }
}

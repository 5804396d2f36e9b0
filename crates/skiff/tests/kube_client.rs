//! The API as a kube-rs client (client-go's Rust peer) uses it: watch from a resourceVersion,
//! bookmarks, streaming lists and list paging with limit/continue.

mod common;

use common::Server;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long to wait for any one watch event before failing the test.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating a namespace");
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({"metadata": {"name": name}, "data": {"value": value}}),
    )
    .unwrap()
}

fn resource_version(object: &ConfigMap) -> String {
    object
        .metadata
        .resource_version
        .clone()
        .expect("resourceVersion")
}

/// The next event of `stream`, failing the test on a timeout, an error or the end of the stream.
async fn next_event<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("the watch ended early"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// (event type, object name, object resourceVersion) for comparing event sequences.
fn describe(event: &WatchEvent<ConfigMap>) -> (&'static str, String, String) {
    match event {
        WatchEvent::Added(o) => (
            "ADDED",
            o.metadata.name.clone().unwrap_or_default(),
            resource_version(o),
        ),
        WatchEvent::Modified(o) => (
            "MODIFIED",
            o.metadata.name.clone().unwrap_or_default(),
            resource_version(o),
        ),
        WatchEvent::Deleted(o) => (
            "DELETED",
            o.metadata.name.clone().unwrap_or_default(),
            resource_version(o),
        ),
        WatchEvent::Bookmark(b) => (
            "BOOKMARK",
            String::new(),
            b.metadata.resource_version.clone(),
        ),
        WatchEvent::Error(e) => panic!("watch error event: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_sees_exactly_the_later_changes() {
    let server = Server::start();
    let client = client(&server).await;
    create_namespace(&client, "watched").await;
    let config_maps = Api::<ConfigMap>::namespaced(client, "watched");
    let post = PostParams::default();

    let first = config_maps
        .create(&post, &config_map("first", "1"))
        .await
        .unwrap();
    let mut changed = first.clone();
    changed.data = Some([("value".to_owned(), "2".to_owned())].into());
    let modified = config_maps.replace("first", &post, &changed).await.unwrap();
    let second = config_maps
        .create(&post, &config_map("second", "1"))
        .await
        .unwrap();

    // Watching from the first object's creation replays what happened after it, in order.
    let params = WatchParams::default().timeout(120);
    let mut events = config_maps
        .watch(&params, &resource_version(&first))
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        describe(&next_event(&mut events).await),
        ("MODIFIED", "first".into(), resource_version(&modified))
    );
    assert_eq!(
        describe(&next_event(&mut events).await),
        ("ADDED", "second".into(), resource_version(&second))
    );

    // ... and then streams live changes.
    config_maps
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = next_event(&mut events).await;
    let (kind, name, deleted_version) = describe(&deleted);
    assert_eq!((kind, name.as_str()), ("DELETED", "second"));
    assert!(
        deleted_version.parse::<u64>().unwrap() > resource_version(&second).parse::<u64>().unwrap(),
        "a delete is a new revision"
    );

    // A watch without a resourceVersion starts with ADDED for every current object.
    let mut from_now = config_maps.watch(&params, "0").await.unwrap().boxed();
    assert_eq!(
        describe(&next_event(&mut from_now).await),
        ("ADDED", "first".into(), resource_version(&modified))
    );

    // Field selectors apply to watches (`kubectl rollout status` and `delete --wait` rely on it).
    let by_name = WatchParams::default()
        .timeout(120)
        .fields("metadata.name=third");
    let mut third_only = config_maps
        .watch(&by_name, &resource_version(&modified))
        .await
        .unwrap()
        .boxed();
    config_maps
        .create(&post, &config_map("fourth", "1"))
        .await
        .unwrap();
    let third = config_maps
        .create(&post, &config_map("third", "1"))
        .await
        .unwrap();
    assert_eq!(
        describe(&next_event(&mut third_only).await),
        ("ADDED", "third".into(), resource_version(&third))
    );
}

/// Creates namespace `namespace` with three config maps; returns their names and the
/// resourceVersion of a list taken afterwards.
async fn three_config_maps(
    client: &kube::Client,
    namespace: &str,
) -> (Api<ConfigMap>, BTreeSet<String>, u64) {
    create_namespace(client, namespace).await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let mut names = BTreeSet::new();
    for i in 0..3 {
        names.insert(
            config_maps
                .create(&PostParams::default(), &config_map(&format!("cm-{i}"), "x"))
                .await
                .unwrap()
                .metadata
                .name
                .unwrap(),
        );
    }
    let list = config_maps.list(&ListParams::default()).await.unwrap();
    let list_version = list.metadata.resource_version.unwrap().parse().unwrap();
    (config_maps, names, list_version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_with_bookmarks_allowed_get_one_before_their_timeout() {
    let server = Server::start();
    let (config_maps, _, list_version) = three_config_maps(&client(&server).await, "marked").await;
    // kube-apiserver's watch cache sends a bookmark 2 s before a watch's deadline (and every
    // minute otherwise) when allowWatchBookmarks=true.
    let params = WatchParams::default().timeout(5);
    let mut events = config_maps
        .watch(&params, &list_version.to_string())
        .await
        .unwrap()
        .boxed();
    let mut bookmarked = false;
    while let Some(event) = tokio::time::timeout(EVENT_TIMEOUT, events.try_next())
        .await
        .expect("the watch neither ended nor sent an event")
        .expect("watch error")
    {
        match event {
            WatchEvent::Bookmark(bookmark) => {
                assert!(bookmark.metadata.resource_version.parse::<u64>().unwrap() >= list_version);
                bookmarked = true;
            }
            other => panic!("nothing changed, yet the watch sent {other:?}"),
        }
    }
    assert!(bookmarked, "no BOOKMARK before the 5 s watch ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let server = Server::start();
    let (config_maps, names, list_version) =
        three_config_maps(&client(&server).await, "streamed").await;
    // sendInitialEvents=true: ADDED for each object, then a bookmark annotated initial-events-end.
    let mut stream = config_maps
        .watch(&WatchParams::streaming_lists().timeout(120), "")
        .await
        .unwrap()
        .boxed();
    let mut added = BTreeSet::new();
    loop {
        match next_event(&mut stream).await {
            WatchEvent::Added(o) => {
                added.insert(o.metadata.name.unwrap());
            }
            WatchEvent::Bookmark(bookmark) => {
                assert_eq!(
                    bookmark
                        .metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                assert!(bookmark.metadata.resource_version.parse::<u64>().unwrap() >= list_version);
                break;
            }
            other => panic!("unexpected event before the initial-events-end bookmark: {other:?}"),
        }
    }
    assert_eq!(added, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue() {
    const COUNT: usize = 520;
    let server = Server::start();
    let client = client(&server).await;
    create_namespace(&client, "paged").await;
    let config_maps = Api::<ConfigMap>::namespaced(client, "paged");
    let post = PostParams::default();
    let created: BTreeSet<String> = futures::stream::iter(0..COUNT)
        .map(|i| {
            let config_maps = config_maps.clone();
            let post = post.clone();
            async move {
                config_maps
                    .create(&post, &config_map(&format!("cm-{i:04}"), "x"))
                    .await
                    .expect("create")
                    .metadata
                    .name
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(created.len(), COUNT);

    let everything = config_maps.list(&ListParams::default()).await.unwrap();
    let total = everything.items.len();
    assert!(
        total >= COUNT,
        "an unpaged list returned {total} of at least {COUNT}"
    );

    let first = config_maps
        .list(&ListParams::default().limit(500))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 500);
    let token = first
        .metadata
        .continue_
        .clone()
        .filter(|t| !t.is_empty())
        .expect("a continue token on a partial page");
    assert_eq!(
        first.metadata.remaining_item_count,
        Some((total - 500) as i64)
    );
    let rest = config_maps
        .list(&ListParams::default().limit(500).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), total - 500);
    assert!(
        rest.metadata.continue_.as_deref().unwrap_or("").is_empty(),
        "the last page has no continue token"
    );
    // Pages are a consistent snapshot: the second page is served at the first page's revision.
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );

    let names: Vec<String> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "an object appeared on both pages"
    );
    assert!(
        created.iter().all(|n| unique.contains(n)),
        "paging lost objects"
    );
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "lists are ordered by name, as etcd keys are"
    );

    // kubectl follows the continue tokens itself (it asks for 500 at a time).
    let listed = server.ok(&["get", "cm", "-n", "paged", "-o", "name"]);
    assert_eq!(listed.lines().count(), total);
}

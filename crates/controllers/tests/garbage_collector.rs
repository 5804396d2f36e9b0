//! The garbage collector against an in-process API server: background, foreground and orphan
//! propagation through `ownerReferences`, dependents with two owners, and dependents whose
//! owner was gone before they were created.

mod common;

use common::{api_server, eventually};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_controllers::garbagecollector;
use std::fmt::Debug;
use std::time::Duration;

/// A finalizer no controller removes: it keeps a deleted object around until the test says.
const HOLD: &str = "example.com/hold";

/// An API server on an in-memory store, with the garbage collector running against it.
async fn start() -> Client {
    let client = api_server().await;
    tokio::spawn(garbagecollector::run(client.clone()));
    client
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    eventually(&format!("{name} to be deleted"), || async {
        api.get_opt(name)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
}

/// Waits until the object is marked for deletion and returns it.
async fn wait_deleting<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    eventually(&format!("{name} to be marked for deletion"), || async {
        api.get_opt(name)
            .await
            .expect("get")
            .filter(|o| o.meta().deletion_timestamp.is_some())
    })
    .await
}

/// A plain reference to `owner`.
fn owner_ref<K: Resource<DynamicType = ()>>(
    owner: &K,
    block_owner_deletion: bool,
) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().expect("uid"),
        controller: None,
        block_owner_deletion: Some(block_owner_deletion),
    }
}

/// A reference to `owner` as controllers write them for what they manage.
fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        ..owner_ref(owner, true)
    }
}

async fn create_config_map(
    api: &Api<ConfigMap>,
    name: &str,
    owners: Vec<OwnerReference>,
    finalizers: &[&str],
) -> ConfigMap {
    let mut config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": finalizers},
        "data": {"key": "value"},
    }))
    .unwrap();
    if !owners.is_empty() {
        config_map.metadata.owner_references = Some(owners);
    }
    api.create(&PostParams::default(), &config_map)
        .await
        .expect("creating config map")
}

async fn release(api: &Api<ConfigMap>, name: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("removing the hold finalizer");
}

fn owner_uids(object: &impl Resource) -> Vec<String> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect()
}

#[tokio::test]
async fn background_deletion_collects_the_pods_of_a_replicaset() {
    let client = start().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
            },
        },
    }))
    .unwrap();
    let replica_set = replica_sets
        .create(&PostParams::default(), &replica_set)
        .await
        .expect("creating replica set");
    let unowned: Pod = serde_json::from_value(json!({
        "metadata": {"name": "unowned", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &unowned).await.unwrap();
    for name in ["web-a", "web-b", "web-c"] {
        let mut pod = unowned.clone();
        pod.metadata.name = Some(name.into());
        pod.metadata.owner_references = Some(vec![controller_ref(&replica_set)]);
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    replica_sets
        .delete("web", &DeleteParams::default())
        .await
        .expect("deleting replica set");
    for name in ["web-a", "web-b", "web-c"] {
        wait_gone(&pods, name).await;
    }
    let left = pods.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = left.items.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["unowned"]);
}

#[tokio::test]
async fn background_deletion_cascades_through_generations() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let root = create_config_map(&config_maps, "root", vec![], &[]).await;
    let child = create_config_map(&config_maps, "child", vec![owner_ref(&root, false)], &[]).await;
    create_config_map(
        &config_maps,
        "grandchild",
        vec![owner_ref(&child, false)],
        &[],
    )
    .await;

    config_maps
        .delete("root", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&config_maps, "child").await;
    wait_gone(&config_maps, "grandchild").await;
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let root = create_config_map(&config_maps, "root", vec![], &[]).await;
    let middle = create_config_map(&config_maps, "middle", vec![owner_ref(&root, true)], &[]).await;
    create_config_map(&config_maps, "sibling", vec![owner_ref(&root, true)], &[]).await;
    create_config_map(
        &config_maps,
        "leaf",
        vec![owner_ref(&middle, true)],
        &[HOLD],
    )
    .await;

    config_maps
        .delete("root", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_gone(&config_maps, "sibling").await;
    let leaf = wait_deleting(&config_maps, "leaf").await;
    assert_eq!(leaf.metadata.finalizers, Some(vec![HOLD.to_string()]));
    // The leaf blocks the middle, which is deleted in the foreground too and blocks the root.
    let middle = wait_deleting(&config_maps, "middle").await;
    assert_eq!(
        middle.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let root = config_maps.get("root").await.expect("root stays");
    assert!(root.metadata.deletion_timestamp.is_some());
    assert_eq!(
        root.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    assert!(config_maps.get_opt("middle").await.unwrap().is_some());

    release(&config_maps, "leaf").await;
    wait_gone(&config_maps, "leaf").await;
    wait_gone(&config_maps, "middle").await;
    wait_gone(&config_maps, "root").await;
}

#[tokio::test]
async fn foreground_deletion_does_not_wait_for_non_blocking_dependents() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let root = create_config_map(&config_maps, "root", vec![], &[]).await;
    create_config_map(
        &config_maps,
        "loose",
        vec![owner_ref(&root, false)],
        &[HOLD],
    )
    .await;

    config_maps
        .delete("root", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_gone(&config_maps, "root").await;
    // It was deleted with its owner, and only its own finalizer keeps it.
    let loose = wait_deleting(&config_maps, "loose").await;
    assert_eq!(loose.metadata.finalizers, Some(vec![HOLD.to_string()]));
    release(&config_maps, "loose").await;
    wait_gone(&config_maps, "loose").await;
}

#[tokio::test]
async fn orphan_deletion_strips_the_owner_from_its_dependents() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let root = create_config_map(&config_maps, "root", vec![], &[]).await;
    let other = create_config_map(&config_maps, "other", vec![], &[]).await;
    create_config_map(
        &config_maps,
        "only-child",
        vec![owner_ref(&root, true)],
        &[],
    )
    .await;
    create_config_map(
        &config_maps,
        "shared-child",
        vec![owner_ref(&root, true), owner_ref(&other, false)],
        &[],
    )
    .await;

    config_maps
        .delete("root", &DeleteParams::orphan())
        .await
        .unwrap();
    wait_gone(&config_maps, "root").await;
    let only_child = config_maps.get("only-child").await.expect("orphan stays");
    // Upstream omits the emptied list (`omitempty`); skiff's API server keeps `[]` for now.
    assert_eq!(owner_uids(&only_child), Vec::<String>::new());
    assert_eq!(only_child.metadata.deletion_timestamp, None);
    let shared_child = config_maps.get("shared-child").await.expect("orphan stays");
    assert_eq!(
        shared_child.metadata.owner_references,
        Some(vec![owner_ref(&other, false)])
    );
    // They stay orphans: nothing deletes them afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(config_maps.get_opt("only-child").await.unwrap().is_some());
}

#[tokio::test]
async fn a_dependent_with_a_remaining_owner_only_loses_the_dangling_reference() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = create_config_map(&config_maps, "first", vec![], &[]).await;
    let second = create_config_map(&config_maps, "second", vec![], &[]).await;
    let both = vec![owner_ref(&first, true), owner_ref(&second, false)];
    create_config_map(&config_maps, "dependent", both, &[]).await;

    config_maps
        .delete("first", &DeleteParams::background())
        .await
        .unwrap();
    let dependent = eventually("the dangling reference to go", || async {
        let dependent = config_maps.get("dependent").await.expect("dependent stays");
        (owner_uids(&dependent).len() == 1).then_some(dependent)
    })
    .await;
    assert_eq!(
        dependent.metadata.owner_references,
        Some(vec![owner_ref(&second, false)])
    );

    config_maps
        .delete("second", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&config_maps, "dependent").await;
}

#[tokio::test]
async fn a_dependent_created_after_its_owner_was_deleted_is_collected() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let deleted = create_config_map(&config_maps, "owner", vec![], &[]).await;
    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // The same name again, with another uid: it does not own what named the first one.
    let successor = create_config_map(&config_maps, "owner", vec![], &[]).await;
    assert_ne!(successor.uid(), deleted.uid());
    create_config_map(&config_maps, "late", vec![owner_ref(&deleted, true)], &[]).await;
    create_config_map(
        &config_maps,
        "adopted",
        vec![owner_ref(&successor, true)],
        &[],
    )
    .await;

    wait_gone(&config_maps, "late").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let adopted = config_maps
        .get("adopted")
        .await
        .expect("live owner keeps it");
    assert_eq!(owner_uids(&adopted), [successor.uid().unwrap()]);
}

#[tokio::test]
async fn a_dependent_naming_a_missing_cluster_scoped_owner_is_collected() {
    let client = start().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let missing = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: "never-existed".into(),
        uid: "0d9f9e5e-4c1b-4c57-9a8e-4a1c1c1c1c1c".into(),
        controller: None,
        block_owner_deletion: None,
    };
    create_config_map(&config_maps, "stray", vec![missing], &[]).await;
    wait_gone(&config_maps, "stray").await;
}

/// Scale probe: 50 ReplicaSets with 100 pods each are deleted at once; reports how long the
/// collector takes to remove the 5,000 pods. `cargo test -p skiff-controllers --test
/// garbage_collector -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "scale probe, slow in debug builds"]
async fn scale_background_deletion_of_5000_pods() {
    const REPLICA_SETS: usize = 50;
    const PODS_EACH: usize = 100;
    let client = start().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for r in 0..REPLICA_SETS {
        let replica_set: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": format!("rs-{r}")},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"rs": r.to_string()}},
                "template": {
                    "metadata": {"labels": {"rs": r.to_string()}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        }))
        .unwrap();
        let replica_set = replica_sets
            .create(&PostParams::default(), &replica_set)
            .await
            .unwrap();
        let creates = (0..PODS_EACH).map(|p| {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("rs-{r}-{p}"),
                    "ownerReferences": [controller_ref(&replica_set)],
                },
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }))
            .unwrap();
            let pods = pods.clone();
            async move { pods.create(&PostParams::default(), &pod).await.unwrap() }
        });
        futures::future::join_all(creates).await;
    }
    let started = std::time::Instant::now();
    replica_sets
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .unwrap();
    eventually("every pod to be collected", || async {
        let left = pods.list_metadata(&ListParams::default()).await.unwrap();
        left.items.is_empty().then_some(())
    })
    .await;
    println!(
        "collected {} pods in {:?}",
        REPLICA_SETS * PODS_EACH,
        started.elapsed()
    );
}

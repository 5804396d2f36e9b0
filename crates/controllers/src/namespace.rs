//! The namespace lifecycle controller (upstream `pkg/controller/namespace`): a namespace marked
//! for deletion is emptied of every namespaced object, then its `kubernetes` finalizer is
//! removed through the `finalize` subresource, which lets the API server delete it.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_api::RESOURCES;
use std::sync::Arc;
use std::time::Duration;

/// The finalizer the API server puts in `spec.finalizers` of every namespace.
const FINALIZER: &str = "kubernetes";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] kube::Error);

fn api_resource(info: &skiff_api::ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.into(),
        version: info.version.into(),
        api_version: info.api_version(),
        kind: info.kind.into(),
        plural: info.plural.into(),
    }
}

/// Deletes what is left in `namespace`; returns how many objects remain (waiting for
/// finalizers or grace periods).
async fn empty(client: &Client, namespace: &str) -> Result<usize, kube::Error> {
    let mut remaining = 0;
    for info in RESOURCES.iter().filter(|r| r.namespaced) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(info));
        let left = api.list_metadata(&ListParams::default()).await?;
        if left.items.is_empty() {
            continue;
        }
        remaining += left.items.len();
        if left
            .items
            .iter()
            .any(|o| o.metadata.deletion_timestamp.is_none())
        {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
        }
    }
    Ok(remaining)
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let remaining = empty(&client, &name).await?;
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "waiting for namespace contents to go");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut finalized = (*ns).clone();
    finalized
        .spec
        .get_or_insert_with(Default::default)
        .finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    let api: Api<Namespace> = Api::all((*client).clone());
    api.replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _client: Arc<Client>) -> Action {
    tracing::warn!(%err, "namespace reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

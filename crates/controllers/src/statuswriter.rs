//! Writing a controller's view into an object's status subresource.

use crate::apierror;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Replaces the status of `object` (as read from a cache) with what `set_status` puts in;
/// when the cached copy was stale, once more on a fresh copy (as upstream's controllers'
/// `updateStatus` helpers).
pub async fn replace_status<K>(
    api: &Api<K>,
    object: &K,
    set_status: impl Fn(&mut K),
) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let mut updated = object.clone();
    set_status(&mut updated);
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Err(e) if apierror::is_conflict(&e) => {
            let mut fresh = api.get(&name).await?;
            set_status(&mut fresh);
            api.replace_status(&name, &PostParams::default(), &fresh)
                .await
        }
        other => other,
    }
}

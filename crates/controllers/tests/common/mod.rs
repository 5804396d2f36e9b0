//! What the controllers' integration tests share: an API server on an in-memory store, and
//! waiting for a condition without timing assumptions.

use kube::Client;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long any expected change may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A client of a fresh API server on an in-memory store, served in-process.
pub async fn api_server() -> Client {
    let store = Arc::new(skiff_store::sqlite::SqliteStore::open_in_memory().expect("store"));
    let api = skiff_apiserver::ApiServer::new(store, "127.0.0.1:6443".into())
        .await
        .expect("api server");
    Client::new(api.router(), "default")
}

/// Polls `check` until it yields a value, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

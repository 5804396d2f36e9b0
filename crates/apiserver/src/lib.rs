//! skiff's API server: the Kubernetes REST API over a [`skiff_store::Store`].
//!
//! One generic handler serves every resource in [`skiff_api::RESOURCES`]: discovery, OpenAPI,
//! get/list/watch from the watch cache, and writes through the generic [`registry::Registry`]
//! with each kind's strategy. [`ApiServer::router`] is the API as a tower service (used
//! in-process, without TCP); [`ApiServer::serve`] puts it behind HTTPS with bearer-token auth.

pub mod admission;
pub mod cache;
pub mod discovery;
mod handlers;
pub mod list;
pub mod pki;
mod pod_streams;
pub mod registry;
pub mod request;
mod response;
pub mod service_alloc;
mod subresources;
pub mod watch;

use anyhow::{Context, Result};
use axum::Router;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_store::Store;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// The Kubernetes version skiff reports (kubectl's dispatcher picks its client by the minor).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

/// The name of the default StorageClass every cluster starts with.
pub const DEFAULT_STORAGE_CLASS: &str = "standard";
/// The provisioner of the built-in local-path volumes (skiff's controllers serve it).
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.dev/local-path";

/// State shared by all requests.
pub struct ApiState {
    /// The generic registry store.
    pub registry: registry::Registry,
    /// The watch cache.
    pub cache: Arc<cache::Cache>,
    /// The `/version` document.
    pub version: Value,
    /// The address clients reach the server at, for legacy discovery.
    pub server_address: String,
    /// The bearer token presented to kubelet servers for `pods/log` and `pods/exec`.
    kubelet_token: OnceLock<String>,
    discovery: [OnceLock<Bytes>; 4],
}

impl ApiState {
    /// The aggregated discovery document, rendered once per (core, version).
    fn aggregated_discovery(&self, core: bool, version: &str) -> Bytes {
        let slot = usize::from(core) * 2 + usize::from(version == "v2beta1");
        self.discovery[slot]
            .get_or_init(|| {
                Bytes::from(
                    serde_json::to_vec(&discovery::aggregated(core, version)).expect("serializes"),
                )
            })
            .clone()
    }
}

/// The `/version` document.
fn version_info() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0"),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

/// How often the store's history is compacted, as kube-apiserver's default
/// `--etcd-compaction-interval`.
const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Compacts the store's history every `interval` up to the revision seen one interval
/// earlier, so clients resuming a watch or a paged list within that window still can.
async fn compact_periodically(store: Arc<dyn Store>, interval: std::time::Duration) {
    let mut previous = None;
    loop {
        tokio::time::sleep(interval).await;
        if let Some(revision) = previous
            && let Err(e) = store.compact(revision).await
        {
            tracing::debug!(%e, revision, "compaction skipped");
        }
        previous = store.current_revision().await.ok();
    }
}

/// A running API: store, cache and registry.
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<ApiState>,
}

impl ApiServer {
    /// Loads the watch cache from `store` and makes sure the built-in namespaces exist.
    pub async fn new(store: Arc<dyn Store>, server_address: String) -> Result<Self> {
        let cache = cache::Cache::start(store.clone())
            .await
            .context("loading the watch cache")?;
        let state = Arc::new(ApiState {
            registry: registry::Registry::new(store, cache.clone()),
            cache,
            version: version_info(),
            server_address,
            kubelet_token: OnceLock::new(),
            discovery: Default::default(),
        });
        tokio::spawn(compact_periodically(
            state.registry.store().clone(),
            COMPACTION_INTERVAL,
        ));
        let server = Self { state };
        server.ensure_system_objects().await?;
        server.ensure_default_storage_class().await?;
        Ok(server)
    }

    /// Creates what every cluster has: the system namespaces and the `kubernetes` Service.
    async fn ensure_system_objects(&self) -> Result<()> {
        let info =
            skiff_api::resources::find_kind("", "Namespace").expect("namespaces are registered");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match self
                .state
                .registry
                .create(info, None, ns, &Default::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => anyhow::bail!("creating namespace {name}: {e}"),
            }
        }
        let info = skiff_api::resources::find_kind("", "Service").expect("services are registered");
        let port = self
            .state
            .server_address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(6443);
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": service_alloc::KUBERNETES_SERVICE_IP.to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        });
        if self
            .state
            .registry
            .get(info, Some("default"), "kubernetes")
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .state
            .registry
            .create(info, Some("default"), service, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => anyhow::bail!("creating the kubernetes service: {e}"),
        }
    }

    /// Creates the default StorageClass, [`DEFAULT_STORAGE_CLASS`], served by the built-in
    /// local-path provisioner, unless a class of that name exists (as kind and minikube ship
    /// theirs).
    async fn ensure_default_storage_class(&self) -> Result<()> {
        let info = skiff_api::resources::find_kind("storage.k8s.io", "StorageClass")
            .expect("storage classes are registered");
        let class = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": DEFAULT_STORAGE_CLASS, "annotations": {admission::IS_DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        });
        match self
            .state
            .registry
            .create(info, None, class, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => anyhow::bail!("creating the default storage class: {e}"),
        }
    }

    /// Sets the bearer token presented to kubelet servers (once; later calls are ignored).
    pub fn set_kubelet_token(&self, token: String) {
        let _ = self.state.kubelet_token.set(token);
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    /// The API as an axum router, without authentication (for in-process clients).
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handlers::handle)
            .with_state(self.state.clone())
    }

    /// Serves the API over HTTPS on `listener` until the process ends, requiring `token` as
    /// a bearer token on everything but health and version endpoints.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: rustls::ServerConfig,
        token: String,
    ) -> Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let token: Arc<str> = token.into();
        let app = self
            .router()
            .layer(axum::middleware::from_fn(move |req, next| {
                auth(token.clone(), req, next)
            }));
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    tracing::debug!(%peer, "TLS handshake failed");
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(e) = builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, %e, "connection ended with an error");
                }
            });
        }
    }
}

/// Bearer-token authentication; health checks and `/version` are public, as upstream's
/// `system:public-info-viewer` role makes them.
async fn auth(
    token: Arc<str>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let public = matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/");
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if public || presented.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
        next.run(req).await
    } else {
        let mut resp = response::error(&skiff_api::ApiError::unauthorized());
        *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
        resp
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `addr`; a convenience for callers that want the bound address (port 0).
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

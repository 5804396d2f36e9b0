//! The `kubernetes` Service's endpoints, as upstream's API server keeps them (its endpoint
//! reconciler and `EndpointsAdapter`): the API server's advertised address and port, named
//! `https`, in an Endpoints object and an EndpointSlice both named `kubernetes`, rewritten if
//! they go missing or drift.

use crate::apierror;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The Service's name and namespace.
const SERVICE: (&str, &str) = ("default", "kubernetes");
/// How often the endpoints are checked (upstream's `--endpoint-reconciler` interval).
const INTERVAL: Duration = Duration::from_secs(10);
/// The label telling the EndpointSlice mirroring controller to leave the Endpoints alone.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Keeps the endpoints until the process ends.
pub async fn run(client: Client) {
    loop {
        if let Err(err) = reconcile(&client).await {
            tracing::warn!(err = %format!("{err:#}"), "reconciling the kubernetes service's endpoints failed");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One pass: reads the advertised address from discovery and writes what differs.
async fn reconcile(client: &Client) -> anyhow::Result<()> {
    let versions = client.list_core_api_versions().await?;
    let advertised = versions
        .server_address_by_client_cidrs
        .first()
        .map(|a| a.server_address.as_str())
        .unwrap_or_default();
    let address: SocketAddr = advertised
        .parse()
        .map_err(|e| anyhow::anyhow!("advertised address {advertised:?}: {e}"))?;
    // An API server that serves no port (benchmarks run it in process only) has no endpoints.
    if address.port() == 0 {
        return Ok(());
    }
    let (namespace, name) = SERVICE;

    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), namespace);
    let desired = endpoints(address);
    match endpoints_api.get_opt(name).await? {
        None => create(&endpoints_api, &desired).await?,
        Some(mut current) => {
            let labels = current.metadata.labels.get_or_insert_with(BTreeMap::new);
            let marked = labels.get(SKIP_MIRROR).map(String::as_str) == Some("true");
            if !marked || current.subsets != desired.subsets {
                labels.insert(SKIP_MIRROR.into(), "true".into());
                current.subsets = desired.subsets;
                endpoints_api
                    .replace(name, &PostParams::default(), &current)
                    .await?;
            }
        }
    }

    let slice_api = Api::<EndpointSlice>::namespaced(client.clone(), namespace);
    let desired = endpoint_slice(address);
    match slice_api.get_opt(name).await? {
        None => create(&slice_api, &desired).await?,
        Some(mut current) => {
            if current.endpoints != desired.endpoints
                || current.ports != desired.ports
                || current.metadata.labels != desired.metadata.labels
            {
                current.metadata.labels = desired.metadata.labels;
                current.endpoints = desired.endpoints;
                current.ports = desired.ports;
                slice_api
                    .replace(name, &PostParams::default(), &current)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Creates `object`, losing a race to another writer gracefully.
async fn create<K>(api: &Api<K>, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) if apierror::is_namespace_terminating(&e) => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

fn metadata(labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(SERVICE.1.into()),
        namespace: Some(SERVICE.0.into()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The Endpoints of the `kubernetes` Service for an API server at `address`.
pub fn endpoints(address: SocketAddr) -> Endpoints {
    Endpoints {
        metadata: metadata([(SKIP_MIRROR.into(), "true".into())].into()),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: address.ip().to_string(),
                ..Default::default()
            }]),
            not_ready_addresses: None,
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: address.port().into(),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        }]),
    }
}

/// The EndpointSlice of the `kubernetes` Service for an API server at `address`.
pub fn endpoint_slice(address: SocketAddr) -> EndpointSlice {
    EndpointSlice {
        metadata: metadata([(SERVICE_NAME_LABEL.into(), SERVICE.1.into())].into()),
        address_type: if address.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: vec![discovery::Endpoint {
            addresses: vec![address.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ports: Some(vec![discovery::EndpointPort {
            name: Some("https".into()),
            port: Some(address.port().into()),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_api_servers_address_is_published_as_upstream_does() {
        let address: SocketAddr = "192.168.1.10:6443".parse().unwrap();
        assert_eq!(
            serde_json::to_value(endpoints(address)).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "192.168.1.10"}],
                             "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
            })
        );
        assert_eq!(
            serde_json::to_value(endpoint_slice(address)).unwrap(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.168.1.10"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
            })
        );
    }
}

//! Service address allocation, as upstream's service storage does it: a ClusterIP from the
//! service CIDR (10.96.0.0/12) and NodePorts from 30000-32767. Each allocation is a key in the
//! store (`/ranges/...`), created with compare-and-swap, so two API servers or two concurrent
//! creates can never hand out the same address.

use rand::Rng;
use serde_json::Value;
use skiff_api::{ApiError, FieldError};
use skiff_store::{Store, StoreError};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The service CIDR's first address and prefix length.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The address of the `kubernetes` service: the first of the range.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
const IP_PREFIX: &str = "/ranges/serviceips/";
const PORT_PREFIX: &str = "/ranges/servicenodeports/";

fn in_range(ip: Ipv4Addr) -> bool {
    let (base, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(base)
}

/// The allocations a Service holds; released if its creation fails.
#[derive(Default)]
pub struct Allocation {
    keys: Vec<String>,
}

async fn claim(
    store: &Arc<dyn Store>,
    key: String,
    owner: &str,
    alloc: &mut Allocation,
) -> Result<bool, ApiError> {
    match store.create(&key, owner.as_bytes().to_vec().into()).await {
        Ok(_) => {
            alloc.keys.push(key);
            Ok(true)
        }
        Err(StoreError::AlreadyExists) => Ok(false),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

fn invalid(name: &str, field: &str, value: Value, detail: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        name,
        &[FieldError::invalid(field, value, detail)],
    )
}

/// Allocates what a new Service needs and writes it into `service`: `spec.clusterIP(s)` unless
/// headless or ExternalName, and `nodePort`s for NodePort and LoadBalancer services.
pub async fn allocate(store: &Arc<dyn Store>, service: &mut Value) -> Result<Allocation, ApiError> {
    let mut alloc = Allocation::default();
    match allocate_into(store, service, &mut alloc).await {
        Ok(()) => Ok(alloc),
        Err(e) => {
            release_allocation(store, alloc).await;
            Err(e)
        }
    }
}

async fn allocate_into(
    store: &Arc<dyn Store>,
    service: &mut Value,
    alloc: &mut Allocation,
) -> Result<(), ApiError> {
    let name = service["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let owner = format!(
        "{}/{name}",
        service["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    );
    let kind = service["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if kind != "ExternalName" {
        let requested = service["spec"]["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        match requested.as_deref() {
            Some("None") => {
                service["spec"]["clusterIPs"] = serde_json::json!(["None"]);
            }
            Some(ip) => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        ip.into(),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
                    )
                })?;
                if !in_range(parsed) {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        ip.into(),
                        format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                            SERVICE_CIDR.0, SERVICE_CIDR.1
                        ),
                    ));
                }
                if !claim(store, format!("{IP_PREFIX}{ip}"), &owner, alloc).await? {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        ip.into(),
                        format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                }
                service["spec"]["clusterIPs"] = serde_json::json!([ip]);
            }
            None => {
                let ip = random_ip(store, &owner, alloc).await?;
                service["spec"]["clusterIP"] = ip.clone().into();
                service["spec"]["clusterIPs"] = serde_json::json!([ip]);
            }
        }
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ports.len());
        for (i, mut port) in ports.into_iter().enumerate() {
            let node_port = match port["nodePort"].as_u64().filter(|p| *p != 0) {
                Some(p) => {
                    let p = u16::try_from(p).ok().filter(|p| NODE_PORTS.contains(p)).ok_or_else(|| {
                        invalid(&name, &format!("spec.ports[{i}].nodePort"), p.into(), "provided port is not in the valid range. The range of valid ports is 30000-32767".into())
                    })?;
                    if !claim(store, format!("{PORT_PREFIX}{p}"), &owner, alloc).await? {
                        return Err(invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            p.into(),
                            "provided port is already allocated".into(),
                        ));
                    }
                    p
                }
                None => random_port(store, &owner, alloc).await?,
            };
            port["nodePort"] = node_port.into();
            out.push(port);
        }
        service["spec"]["ports"] = Value::Array(out);
    }
    Ok(())
}

async fn random_ip(
    store: &Arc<dyn Store>,
    owner: &str,
    alloc: &mut Allocation,
) -> Result<String, ApiError> {
    let (base, bits) = SERVICE_CIDR;
    let size = 1u32 << (32 - bits);
    for _ in 0..64 {
        // Skip the network address and the `kubernetes` service's address.
        let offset = rand::rng().random_range(2..size - 1);
        let ip = Ipv4Addr::from(u32::from(base) + offset).to_string();
        if claim(store, format!("{IP_PREFIX}{ip}"), owner, alloc).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a service IP: range is full",
    ))
}

async fn random_port(
    store: &Arc<dyn Store>,
    owner: &str,
    alloc: &mut Allocation,
) -> Result<u16, ApiError> {
    for _ in 0..64 {
        let port = rand::rng().random_range(NODE_PORTS);
        if claim(store, format!("{PORT_PREFIX}{port}"), owner, alloc).await? {
            return Ok(port);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a node port: range is full",
    ))
}

/// Frees an allocation whose Service was not created.
pub async fn release_allocation(store: &Arc<dyn Store>, alloc: Allocation) {
    for key in alloc.keys {
        let _ = store.delete(&key, None).await;
    }
}

/// Frees what a deleted Service held.
pub async fn release(store: &Arc<dyn Store>, service: &Value) {
    let mut keys = Vec::new();
    for ip in service["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if ip != "None" {
            keys.push(format!("{IP_PREFIX}{ip}"));
        }
    }
    for port in service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
    {
        keys.push(format!("{PORT_PREFIX}{port}"));
    }
    release_allocation(store, Allocation { keys }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_range() {
        assert!(in_range(Ipv4Addr::new(10, 96, 0, 10)));
        assert!(in_range(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!in_range(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(!in_range(Ipv4Addr::new(192, 168, 0, 1)));
    }
}

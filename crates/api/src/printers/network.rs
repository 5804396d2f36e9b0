//! Services, Endpoints and EndpointSlices.

use super::format::{array_at, format_labels, get, int_at, map_at, or, str_at};
use super::{AGE, Column, NAME, age, docs, name};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;

pub(super) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Type", docs::SVC_TYPE),
    Column::string("Cluster-IP", docs::SVC_CLUSTER_IP),
    Column::string("External-IP", docs::SVC_EXTERNAL_IPS),
    Column::string("Port(s)", docs::SVC_PORTS),
    AGE,
    Column::wide("Selector", docs::SVC_SELECTOR),
];

pub(super) const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Endpoints", docs::ENDPOINTS_SUBSETS),
    AGE,
];

pub(super) const ENDPOINTSLICE_COLUMNS: &[Column] = &[
    NAME,
    Column::string("AddressType", docs::SLICE_ADDRESS_TYPE),
    Column::string("Ports", docs::SLICE_PORTS),
    Column::string("Endpoints", docs::SLICE_ENDPOINTS),
    AGE,
];

/// How many addresses or ports a cell lists before `+ N more...`.
const LIST_LIMIT: usize = 3;

pub(super) fn service_row(service: &Value, now: Timestamp) -> Vec<Value> {
    // Upstream prints `clusterIPs[0]`, which IP allocation always sets; `clusterIP` (equal to
    // it whenever both are set) covers objects stored before allocation filled the list.
    let cluster_ip = array_at(service, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(service, "/spec/clusterIP"));
    let ports = array_at(service, "/spec/ports")
        .iter()
        .map(|port| {
            let (number, protocol) = (int_at(port, "/port"), str_at(port, "/protocol"));
            match int_at(port, "/nodePort") {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(service),
        str_at(service, "/spec/type").into(),
        or(cluster_ip, "<none>").into(),
        external_ip(service).into(),
        if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }
        .into(),
        age(service, now),
        format_labels(map_at(service, "/spec/selector")).into(),
    ]
}

/// Upstream's `getServiceExternalIP`, printed wide (load-balancer addresses uncut).
fn external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = array_at(service, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(service, "/spec/type") {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(service);
            addresses.extend(external_ips.iter().map(|ip| ip.to_string()));
            if addresses.is_empty() {
                "<pending>".to_string()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => str_at(service, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The sorted, de-duplicated ingress IPs (or hostnames) of a load balancer.
fn load_balancer_addresses(service: &Value) -> Vec<String> {
    let addresses: BTreeSet<&str> = array_at(service, "/status/loadBalancer/ingress")
        .iter()
        .map(|ingress| match str_at(ingress, "/ip") {
            "" => str_at(ingress, "/hostname"),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect();
    addresses.into_iter().map(str::to_string).collect()
}

pub(super) fn endpoints_row(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(endpoints),
        format_endpoints(endpoints).into(),
        age(endpoints, now),
    ]
}

/// Upstream's `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = array_at(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut listed = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = array_at(subset, "/addresses");
        let ports = array_at(subset, "/ports");
        // A headless service may have no ports: list the bare IPs.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int_at(p, "/port"))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for address in addresses
                .iter()
                .take(LIST_LIMIT.saturating_sub(listed.len()))
            {
                let ip = str_at(address, "/ip");
                listed.push(match port {
                    None => ip.to_string(),
                    // Go's net.JoinHostPort brackets IPv6 addresses.
                    Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                    Some(port) => format!("{ip}:{port}"),
                });
            }
        }
    }
    with_more(listed, count, "")
}

pub(super) fn endpointslice_row(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports = array_at(slice, "/ports");
    let port_names = ports
        .iter()
        .take(LIST_LIMIT)
        .map(|port| match get(port, "/port") {
            Some(number) => number.to_string(),
            // Upstream's `*` for a port without number and name is unreachable: defaulting
            // always sets the name, to "" when not given.
            None => str_at(port, "/name").to_string(),
        });
    let addresses: Vec<&str> = array_at(slice, "/endpoints")
        .iter()
        .flat_map(|endpoint| array_at(endpoint, "/addresses"))
        .filter_map(Value::as_str)
        .collect();
    let listed_addresses = addresses
        .iter()
        .take(LIST_LIMIT)
        .map(|a| a.to_string())
        .collect();
    vec![
        name(slice),
        str_at(slice, "/addressType").into(),
        with_more(port_names.collect(), ports.len(), "<unset>").into(),
        with_more(listed_addresses, addresses.len(), "<unset>").into(),
        age(slice, now),
    ]
}

/// The listed items comma-separated, with `+ N more...` for the `total` beyond them; `empty`
/// when nothing is listed (upstream's `listWithMoreString`).
fn with_more(listed: Vec<String>, total: usize, empty: &str) -> String {
    if total > LIST_LIMIT {
        return format!("{} + {} more...", listed.join(","), total - LIST_LIMIT);
    }
    if listed.is_empty() {
        empty.to_string()
    } else {
        listed.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::now;
    use super::*;
    use serde_json::json;

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "nginx", "creationTimestamp": "2024-05-01T11:57:00Z"}, "spec": spec})
    }

    #[test]
    fn cluster_ip_service() {
        let svc = service(
            json!({"type": "ClusterIP", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
            "selector": {"app": "nginx"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
        );
        assert_eq!(
            service_row(&svc, now()),
            [
                json!("nginx"),
                json!("ClusterIP"),
                json!("10.96.12.34"),
                json!("<none>"),
                json!("80/TCP"),
                json!("3m"),
                json!("app=nginx"),
            ]
        );
    }

    #[test]
    fn node_port_headless_and_external_services() {
        let node_port = service(
            json!({"type": "NodePort", "clusterIP": "10.96.0.20", "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        );
        assert_eq!(
            service_row(&node_port, now())[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.20"),
                json!("<none>"),
                json!("80:30080/TCP,53:30053/UDP")
            ]
        );
        let headless = service(
            json!({"type": "ClusterIP", "clusterIP": "None", "externalIPs": ["1.2.3.4", "5.6.7.8"]}),
        );
        assert_eq!(
            service_row(&headless, now())[2..7],
            [
                json!("None"),
                json!("1.2.3.4,5.6.7.8"),
                json!("<none>"),
                json!("3m"),
                json!("<none>")
            ]
        );
        let external = service(json!({"type": "ExternalName", "externalName": "db.example.com"}));
        assert_eq!(
            service_row(&external, now())[2..5],
            [json!("<none>"), json!("db.example.com"), json!("<none>")]
        );
        assert_eq!(service_row(&service(json!({})), now())[3], "<unknown>");
    }

    #[test]
    fn load_balancer_service() {
        let mut lb = service(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.30", "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]}),
        );
        assert_eq!(service_row(&lb, now())[3], "<pending>");
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}});
        lb["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(
            service_row(&lb, now())[3],
            "203.0.113.9,lb.example.com,198.51.100.1"
        );
    }

    #[test]
    fn endpoints() {
        let ep = json!({"metadata": {"name": "nginx", "creationTimestamp": "2024-05-01T11:57:00Z"}, "subsets": [
            {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.7"}], "ports": [{"port": 80, "protocol": "TCP"}]}
        ]});
        assert_eq!(
            endpoints_row(&ep, now()),
            [
                json!("nginx"),
                json!("10.244.1.5:80,10.244.2.7:80"),
                json!("3m")
            ]
        );
        let many = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]},
            {"addresses": [{"ip": "fd00::1"}]}
        ]});
        assert_eq!(
            format_endpoints(&many),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
        );
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]});
        assert_eq!(format_endpoints(&v6), "[fd00::1]:53");
        assert_eq!(format_endpoints(&json!({"subsets": []})), "<none>");
    }

    #[test]
    fn endpointslices() {
        let slice = json!({
            "metadata": {"name": "nginx-abcde", "creationTimestamp": "2024-05-01T11:57:00Z"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}, {"addresses": ["10.244.2.7"]}]
        });
        assert_eq!(
            endpointslice_row(&slice, now()),
            [
                json!("nginx-abcde"),
                json!("IPv4"),
                json!("80"),
                json!("10.244.1.5,10.244.2.7"),
                json!("3m")
            ]
        );
        let odd = json!({"addressType": "IPv6", "ports": [{"name": "dns"}, {}, {"port": 1}, {"port": 2}],
            "endpoints": [{"addresses": ["fd00::1", "fd00::2", "fd00::3", "fd00::4", "fd00::5"]}]});
        let cells = endpointslice_row(&odd, now());
        assert_eq!(
            cells[2..4],
            [
                json!("dns,,1 + 1 more..."),
                json!("fd00::1,fd00::2,fd00::3 + 2 more...")
            ]
        );
        assert_eq!(
            endpointslice_row(&json!({}), now())[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }
}

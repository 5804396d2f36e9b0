//! A container's environment as the kubelet builds it (`makeEnvironmentVariables`): `envFrom`
//! sources first, then `env` in order, each value expanded against the variables before it;
//! then `command` and `args` expanded against the result.

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// Upstream's `expansion.Expand`: `$(NAME)` becomes the variable's value when `lookup` knows
/// it and stays as written otherwise; `$$` is an escaped `$`; any other `$` is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if after.is_empty() {
            // A trailing `$` is copied as is.
            out.push('$');
            rest = after;
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(close) => {
                    let name = &reference[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[close + 1..];
                }
                None => {
                    // An unclosed reference: `$(` is copied and scanning goes on after it.
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            // A `$` that starts no expression is kept with the character after it.
            let next = after.chars().next().expect("not empty");
            out.push('$');
            out.push(next);
            rest = &after[next.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// What the kubelet knows about a pod beyond its object: the values of `status.podIP` and
/// `status.hostIP` for `fieldRef`s.
#[derive(Clone, Copy, Debug)]
pub struct PodAddresses {
    /// The pod's IP (the node's for a host-network pod).
    pub pod_ip: Option<Ipv4Addr>,
    /// The node's IP.
    pub host_ip: Option<Ipv4Addr>,
}

/// The value of a `fieldRef.fieldPath` (upstream `podFieldSelectorRuntimeValue` and
/// `fieldpath.ExtractFieldPathAsString`), or upstream's error for a path it does not support.
pub fn field_value(pod: &Pod, path: &str, addresses: PodAddresses) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let ip = |ip: Option<Ipv4Addr>| ip.map(|ip| ip.to_string()).unwrap_or_default();
    let from_map = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    };
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ip(addresses.pod_ip),
        "status.hostIP" | "status.hostIPs" => ip(addresses.host_ip),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                from_map(&meta.labels, &key)
            } else if let Some(key) = subscript("metadata.annotations") {
                from_map(&meta.annotations, &key)
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// Upstream's `FormatMap`: sorted `key="value"` lines, values quoted as Go's `%q` does.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::from(v.as_str())))
        .collect::<String>()
        .trim_end_matches('\n')
        .to_string()
}

/// Reads the ConfigMaps and Secrets a container's environment refers to, once each.
pub struct EnvSources {
    client: Option<kube::Client>,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

/// The namespace and name of the API server's own Service, whose variables every pod gets.
const MASTER_SERVICE: (&str, &str) = ("default", "kubernetes");

impl EnvSources {
    /// Sources in the pod's namespace; without a client every reference is missing.
    pub fn new(client: Option<kube::Client>, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The ConfigMap's data (binary data left out), or `None` when it does not exist.
    pub async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        if !self.config_maps.contains_key(name) {
            let found = match &self.client {
                Some(client) => Api::<ConfigMap>::namespaced(client.clone(), &self.namespace)
                    .get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?,
                None => None,
            };
            self.config_maps.insert(name.to_string(), found);
        }
        Ok(self.config_maps[name]
            .as_ref()
            .map(|c| c.data.clone().unwrap_or_default()))
    }

    /// The Secret's decoded data (`stringData` is folded in by the API server), or `None`.
    pub async fn secret(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        if !self.secrets.contains_key(name) {
            let found = match &self.client {
                Some(client) => Api::<Secret>::namespaced(client.clone(), &self.namespace)
                    .get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?,
                None => None,
            };
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets[name].as_ref().map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        }))
    }

    /// The namespace the sources are read from.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Services whose variables a pod gets (upstream's `getServiceEnvVarMap`): the API
    /// server's own `default/kubernetes` always, and with `enableServiceLinks` every Service of
    /// the pod's namespace (which wins over the former on a name clash); sorted by name.
    pub async fn services(&self, service_links: bool) -> Result<Vec<Service>, String> {
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let (master_namespace, master_name) = MASTER_SERVICE;
        let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
        let master = Api::<Service>::namespaced(client.clone(), master_namespace)
            .get_opt(master_name)
            .await
            .map_err(|e| e.to_string())?;
        by_name.extend(master.map(|s| (master_name.to_string(), s)));
        if service_links {
            let listed = Api::<Service>::namespaced(client.clone(), &self.namespace)
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            for service in listed.items {
                by_name.insert(service.metadata.name.clone().unwrap_or_default(), service);
            }
        }
        Ok(by_name.into_values().collect())
    }
}

/// Upstream's `envvars.FromServices`: for each Service with a cluster IP, `{NAME}_SERVICE_HOST`,
/// `{NAME}_SERVICE_PORT` (its first port), `{NAME}_SERVICE_PORT_{PORT NAME}` for named ports,
/// and Docker's link variables (`{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}` with `_PROTO`,
/// `_PORT`, `_ADDR`); names upper-cased with `-` as `_`.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let variable = |name: &str| name.to_ascii_uppercase().replace('-', "_");
        let prefix = variable(service.metadata.name.as_deref().unwrap_or_default());
        env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let key = format!("{prefix}_SERVICE_PORT_{}", variable(name));
                env.push((key, port.port.to_string()));
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let (lower, upper) = (protocol.to_lowercase(), protocol.to_uppercase());
            let url = format!("{lower}://{ip}:{}", port.port);
            if i == 0 {
                env.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{upper}", port.port);
            env.extend([
                (format!("{port_prefix}_PROTO"), lower),
                (format!("{port_prefix}_PORT"), port.port.to_string()),
                (format!("{port_prefix}_ADDR"), ip.to_string()),
                (port_prefix, url),
            ]);
        }
    }
    env
}

/// The container's environment in order (later duplicates replace earlier ones), with
/// upstream's errors for missing references (shown as `CreateContainerConfigError`).
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    addresses: PodAddresses,
    sources: &mut EnvSources,
) -> Result<Vec<(String, String)>, String> {
    let service_links = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.enable_service_links)
        .unwrap_or(true);
    let services = service_env(&sources.services(service_links).await?);
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(reference) = &from.config_map_ref {
            match sources.config_map(&reference.name).await? {
                Some(data) => {
                    for (key, value) in data {
                        set(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", reference.name)),
            }
        }
        if let Some(reference) = &from.secret_ref {
            match sources.secret(&reference.name).await? {
                Some(data) => {
                    for (key, value) in data {
                        let value = String::from_utf8_lossy(&value).into_owned();
                        set(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", reference.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => {
                // The container's own variables first, then the Services'.
                let known = env.clone();
                expand(value, |name| {
                    known
                        .iter()
                        .rev()
                        .chain(&services)
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                })
            }
            (None, Some(from)) => {
                let namespace = sources.namespace().to_string();
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path, addresses)?
                } else if let Some(key_ref) = &from.config_map_key_ref {
                    let data = sources.config_map(&key_ref.name).await?;
                    match data.and_then(|d| d.get(&key_ref.key).cloned()) {
                        Some(value) => value,
                        None if key_ref.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                key_ref.key, key_ref.name
                            ));
                        }
                    }
                } else if let Some(key_ref) = &from.secret_key_ref {
                    let data = sources.secret(&key_ref.name).await?;
                    match data.and_then(|d| d.get(&key_ref.key).cloned()) {
                        Some(value) => String::from_utf8_lossy(&value).into_owned(),
                        None if key_ref.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                key_ref.key, key_ref.name
                            ));
                        }
                    }
                } else if let Some(resource) = &from.resource_field_ref {
                    resource_value(container, &resource.resource, resource.divisor.as_ref())?
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        set(&mut env, var.name.clone(), value);
    }
    // The Services' variables follow, unless the container sets the same name.
    for (name, value) in services {
        if !env.iter().any(|(n, _)| *n == name) {
            env.push((name, value));
        }
    }
    Ok(env)
}

/// A `resourceFieldRef` value: the container's limit or request divided by `divisor` and
/// rounded up, as upstream's `ExtractContainerResourceValue` (an unset CPU limit reads as 0
/// here, where upstream would report the node's allocatable CPU).
fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<String, String> {
    let (list, name) = match resource.split_once('.') {
        Some(("limits", name)) => (
            container.resources.as_ref().and_then(|r| r.limits.as_ref()),
            name,
        ),
        Some(("requests", name)) => (
            container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref()),
            name,
        ),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    let milli = |q: &str| skiff_api::quantity::parse_int(q, true);
    let value = list
        .and_then(|l| l.get(name))
        .and_then(|q| milli(&q.0))
        .unwrap_or(0);
    // Upstream's default divisor is 1 (one core, one byte).
    let divisor = divisor
        .and_then(|d| milli(&d.0))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    // Rounded up, as upstream's `ExtractContainerResourceValue`.
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// `command` + `args` with `$(VAR)` references expanded against the container's environment.
pub fn command_line(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|arg| expand(arg, lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_upstream_cases() {
        // Cases from upstream's third_party/forked/golang/expansion/expand_test.go.
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_A)___", "___A___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("$$", "$"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("héllo $(VAR_A) $é", "héllo A $é"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, lookup), expected, "{input}");
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front \"end\""}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "builder",
                "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    #[test]
    fn field_refs_read_the_pod() {
        let pod = pod();
        let addresses = PodAddresses {
            pod_ip: Some(Ipv4Addr::new(10, 244, 0, 5)),
            host_ip: Some(Ipv4Addr::new(192, 168, 1, 2)),
        };
        let value = |path: &str| field_value(&pod, path, addresses);
        assert_eq!(value("metadata.name").unwrap(), "web-0");
        assert_eq!(value("metadata.namespace").unwrap(), "shop");
        assert_eq!(value("metadata.uid").unwrap(), "u-1");
        assert_eq!(value("metadata.labels['app']").unwrap(), "web");
        assert_eq!(value("metadata.labels['missing']").unwrap(), "");
        assert_eq!(value("metadata.annotations['note']").unwrap(), "hi");
        assert_eq!(
            value("metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"front \\\"end\\\"\""
        );
        assert_eq!(value("spec.nodeName").unwrap(), "node-1");
        assert_eq!(value("spec.serviceAccountName").unwrap(), "builder");
        assert_eq!(value("status.podIP").unwrap(), "10.244.0.5");
        assert_eq!(value("status.hostIP").unwrap(), "192.168.1.2");
        assert_eq!(
            value("spec.hostname").unwrap_err(),
            "unsupported fieldPath: spec.hostname"
        );
    }

    #[test]
    fn service_variables_as_upstream_names_them() {
        let service =
            |value: serde_json::Value| -> Service { serde_json::from_value(value).unwrap() };
        let services = [
            service(serde_json::json!({
                "metadata": {"name": "my-db"},
                "spec": {"clusterIP": "10.96.0.7", "ports": [
                    {"port": 5432},
                    {"name": "metrics-http", "port": 9187, "protocol": "TCP"},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                ]},
            })),
            // Headless and ExternalName Services have no address: no variables.
            service(serde_json::json!({"metadata": {"name": "peers"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})),
            service(serde_json::json!({"metadata": {"name": "outside"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}})),
        ];
        let env: BTreeMap<String, String> = service_env(&services).into_iter().collect();
        let expected: BTreeMap<String, String> = [
            ("MY_DB_SERVICE_HOST", "10.96.0.7"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS_HTTP", "9187"),
            ("MY_DB_SERVICE_PORT_DNS", "53"),
            ("MY_DB_PORT", "tcp://10.96.0.7:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.96.0.7:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.96.0.7"),
            ("MY_DB_PORT_9187_TCP", "tcp://10.96.0.7:9187"),
            ("MY_DB_PORT_9187_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_9187_TCP_PORT", "9187"),
            ("MY_DB_PORT_9187_TCP_ADDR", "10.96.0.7"),
            ("MY_DB_PORT_53_UDP", "udp://10.96.0.7:53"),
            ("MY_DB_PORT_53_UDP_PROTO", "udp"),
            ("MY_DB_PORT_53_UDP_PORT", "53"),
            ("MY_DB_PORT_53_UDP_ADDR", "10.96.0.7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[tokio::test]
    async fn env_values_expand_earlier_variables_and_commands_expand_the_result() {
        let pod = pod();
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "command": ["sh", "-c", "echo $(GREETING) $$(GREETING) $(MISSING)"],
            "args": ["$(POD)"],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "hello $(POD)"},
                {"name": "LATER", "value": "$(AFTER)"},
                {"name": "AFTER", "value": "x"},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            ],
            "resources": {"limits": {"memory": "64Mi"}},
        }))
        .unwrap();
        let addresses = PodAddresses {
            pod_ip: None,
            host_ip: None,
        };
        let mut sources = EnvSources::new(None, "shop");
        let env = container_env(&pod, &container, addresses, &mut sources)
            .await
            .unwrap();
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            env,
            pairs(&[
                ("POD", "web-0"),
                ("GREETING", "hello web-0"),
                ("LATER", "$(AFTER)"),
                ("AFTER", "x"),
                ("MEM", "64"),
            ])
        );
        assert_eq!(
            command_line(&container, &env),
            [
                "sh",
                "-c",
                "echo hello web-0 $(GREETING) $(MISSING)",
                "web-0"
            ]
        );
    }

    #[tokio::test]
    async fn missing_references_fail_with_upstream_messages() {
        let pod = pod();
        let addresses = PodAddresses {
            pod_ip: None,
            host_ip: None,
        };
        let with_env = |env: serde_json::Value| -> Container {
            serde_json::from_value(serde_json::json!({"name": "c", "env": env})).unwrap()
        };
        let mut sources = EnvSources::new(None, "shop");
        let secret_key = with_env(serde_json::json!([{"name": "A", "valueFrom":
            {"secretKeyRef": {"name": "creds", "key": "password"}}}]));
        assert_eq!(
            container_env(&pod, &secret_key, addresses, &mut sources)
                .await
                .unwrap_err(),
            "couldn't find key password in Secret shop/creds"
        );
        let optional = with_env(serde_json::json!([{"name": "A", "valueFrom":
            {"configMapKeyRef": {"name": "settings", "key": "k", "optional": true}}}]));
        assert_eq!(
            container_env(&pod, &optional, addresses, &mut sources)
                .await
                .unwrap(),
            []
        );
        let env_from: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "settings"}}]}))
        .unwrap();
        assert_eq!(
            container_env(&pod, &env_from, addresses, &mut sources)
                .await
                .unwrap_err(),
            "configmap \"settings\" not found"
        );
    }
}

//! Upstream's defaulting (`SetDefaults_*` in `pkg/apis/<group>/v1/defaults.go` and the
//! generated `SetObjectDefaults_*` that walk nested types), on the k8s-openapi types.
//!
//! Go also always serializes struct fields that are not pointers (a container's
//! `resources: {}`, a template's `metadata: {}`, a Service's `status.loadBalancer: {}`); the
//! typed form here has `Option`s for those, so defaulting fills them in too, so that what
//! skiff stores prints exactly as a real cluster's objects.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Endpoints, EnvVar, EphemeralContainer, HTTPGetAction, Lifecycle,
    Namespace, NamespaceStatus, Node, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeStatus, Pod,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, Service,
    ServiceStatus, Volume,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A type upstream defaults: `apply_defaults` is its `SetObjectDefaults_*`.
pub trait Defaults {
    /// Fills in every default upstream applies to this object and the types nested in it.
    fn apply_defaults(&mut self) {}
}

/// Sets `slot` to `value` when it is unset.
fn or_set<T>(slot: &mut Option<T>, value: impl FnOnce() -> T) -> &mut T {
    slot.get_or_insert_with(value)
}

fn or_str(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().is_none_or(str::is_empty) {
        *slot = Some(value.to_string());
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`, as upstream's
/// `parsers.ParseImageName` reads the tag.
fn pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A tag is a `:` after the last `/`; an earlier `:` is a registry port.
    let last_component = name.rsplit('/').next().unwrap_or(name);
    let tag = last_component.split_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

/// `SetDefaults_Probe` plus its `httpGet`.
fn probe(probe: &mut Probe) {
    for (slot, value) in [
        (&mut probe.timeout_seconds, 1),
        (&mut probe.period_seconds, 10),
        (&mut probe.success_threshold, 1),
        (&mut probe.failure_threshold, 3),
    ] {
        if slot.is_none_or(|v| v == 0) {
            *slot = Some(value);
        }
    }
    if let Some(get) = &mut probe.http_get {
        http_get(get);
    }
}

/// `SetDefaults_HTTPGetAction`.
fn http_get(get: &mut HTTPGetAction) {
    or_str(&mut get.path, "/");
    or_str(&mut get.scheme, "HTTP");
}

fn lifecycle(lifecycle: &mut Lifecycle) {
    for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
        .into_iter()
        .flatten()
    {
        if let Some(get) = &mut handler.http_get {
            http_get(get);
        }
    }
}

fn ports(ports: &mut Option<Vec<ContainerPort>>) {
    for port in ports.iter_mut().flatten() {
        or_str(&mut port.protocol, "TCP");
    }
}

fn env(env: &mut Option<Vec<EnvVar>>) {
    for var in env.iter_mut().flatten() {
        if let Some(field_ref) = var.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            or_str(&mut field_ref.api_version, "v1");
        }
    }
}

/// `SetDefaults_Container` and the defaults of the types nested in a container; shared by
/// `Container` and `EphemeralContainer`, which have the same fields.
macro_rules! container_defaults {
    ($c:expr) => {{
        let c = $c;
        if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
            c.image_pull_policy =
                Some(pull_policy_for(c.image.as_deref().unwrap_or_default()).to_string());
        }
        or_str(&mut c.termination_message_path, "/dev/termination-log");
        or_str(&mut c.termination_message_policy, "File");
        ports(&mut c.ports);
        env(&mut c.env);
        or_set(&mut c.resources, ResourceRequirements::default);
        for p in [
            &mut c.liveness_probe,
            &mut c.readiness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            probe(p);
        }
        if let Some(l) = &mut c.lifecycle {
            lifecycle(l);
        }
    }};
}

fn container(c: &mut Container) {
    container_defaults!(c);
}

fn ephemeral_container(c: &mut EphemeralContainer) {
    container_defaults!(c);
}

/// `SetDefaults_Volume` and the defaults of each volume source.
fn volume(v: &mut Volume) {
    let only_name = serde_json::to_value(&*v)
        .ok()
        .and_then(|o| o.as_object().map(|o| o.len() <= 1))
        .unwrap_or(false);
    if only_name {
        v.empty_dir = Some(Default::default());
    }
    if let Some(host_path) = &mut v.host_path {
        // `HostPathUnset` is the empty string, and real clusters print `type: ""`.
        or_set(&mut host_path.type_, String::new);
    }
    if let Some(secret) = &mut v.secret {
        or_set(&mut secret.default_mode, || 0o644);
    }
    if let Some(config_map) = &mut v.config_map {
        or_set(&mut config_map.default_mode, || 0o644);
    }
    if let Some(downward) = &mut v.downward_api {
        or_set(&mut downward.default_mode, || 0o644);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = &mut item.field_ref {
                or_str(&mut field_ref.api_version, "v1");
            }
        }
    }
    if let Some(projected) = &mut v.projected {
        or_set(&mut projected.default_mode, || 0o644);
        for source in projected.sources.iter_mut().flatten() {
            for item in source
                .downward_api
                .iter_mut()
                .flat_map(|d| d.items.iter_mut().flatten())
            {
                if let Some(field_ref) = &mut item.field_ref {
                    or_str(&mut field_ref.api_version, "v1");
                }
            }
            if let Some(token) = &mut source.service_account_token {
                or_set(&mut token.expiration_seconds, || 3600);
            }
        }
    }
    if let Some(template) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        pvc_spec(&mut template.spec);
    }
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec; shared by pods and templates.
fn pod_spec(spec: &mut PodSpec) {
    or_str(&mut spec.dns_policy, "ClusterFirst");
    or_str(&mut spec.restart_policy, "Always");
    or_set(&mut spec.security_context, PodSecurityContext::default);
    or_set(&mut spec.termination_grace_period_seconds, || 30);
    or_str(&mut spec.scheduler_name, "default-scheduler");
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        ephemeral_container(c);
    }
}

/// A pod template: its spec's defaults and the `metadata: {}` Go always prints.
fn pod_template(template: &mut PodTemplateSpec) {
    or_set(&mut template.metadata, ObjectMeta::default);
    pod_spec(or_set(&mut template.spec, Default::default));
}

/// `SetDefaults_PersistentVolumeClaimSpec`, plus the `resources: {}` Go always prints.
fn pvc_spec(spec: &mut PersistentVolumeClaimSpec) {
    or_str(&mut spec.volume_mode, "Filesystem");
    or_set(&mut spec.resources, Default::default);
}

impl Defaults for Pod {
    /// `SetDefaults_Pod` (requests from limits, service links, host-network ports) then the
    /// pod spec's defaults.
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            let Some(resources) = &mut c.resources else {
                continue;
            };
            if let Some(limits) = &resources.limits {
                let requests = or_set(&mut resources.requests, Default::default);
                for (name, quantity) in limits {
                    requests
                        .entry(name.clone())
                        .or_insert_with(|| quantity.clone());
                }
            }
        }
        or_set(&mut spec.enable_service_links, || true);
        if spec.host_network == Some(true) {
            for c in spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut())
            {
                for port in c.ports.iter_mut().flatten() {
                    if port.host_port.is_none_or(|p| p == 0) {
                        port.host_port = Some(port.container_port);
                    }
                }
            }
        }
        pod_spec(spec);
    }
}

impl Defaults for k8s_openapi::api::core::v1::PodTemplate {
    fn apply_defaults(&mut self) {
        pod_template(or_set(&mut self.template, Default::default));
    }
}

impl Defaults for Deployment {
    /// `SetDefaults_Deployment`.
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        or_set(&mut spec.replicas, || 1);
        let strategy = or_set(&mut spec.strategy, DeploymentStrategy::default);
        or_str(&mut strategy.type_, "RollingUpdate");
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = or_set(
                &mut strategy.rolling_update,
                RollingUpdateDeployment::default,
            );
            or_set(&mut rolling.max_unavailable, || {
                IntOrString::String("25%".into())
            });
            or_set(&mut rolling.max_surge, || IntOrString::String("25%".into()));
        }
        or_set(&mut spec.revision_history_limit, || 10);
        or_set(&mut spec.progress_deadline_seconds, || 600);
        pod_template(&mut spec.template);
    }
}

impl Defaults for ReplicaSet {
    /// `SetDefaults_ReplicaSet`.
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        or_set(&mut spec.replicas, || 1);
        pod_template(or_set(&mut spec.template, Default::default));
    }
}

impl Defaults for StatefulSet {
    /// `SetDefaults_StatefulSet` (with `StatefulSetAutoDeletePVC`, on since 1.32) and the
    /// claim templates' PVC defaults.
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        or_str(&mut spec.pod_management_policy, "OrderedReady");
        let strategy = or_set(
            &mut spec.update_strategy,
            StatefulSetUpdateStrategy::default,
        );
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some("RollingUpdate".into());
            or_set(
                &mut strategy.rolling_update,
                RollingUpdateStatefulSetStrategy::default,
            );
        }
        if strategy.type_.as_deref() == Some("RollingUpdate")
            && let Some(rolling) = &mut strategy.rolling_update
        {
            or_set(&mut rolling.partition, || 0);
        }
        let retention = or_set(
            &mut spec.persistent_volume_claim_retention_policy,
            StatefulSetPersistentVolumeClaimRetentionPolicy::default,
        );
        or_str(&mut retention.when_deleted, "Retain");
        or_str(&mut retention.when_scaled, "Retain");
        or_set(&mut spec.replicas, || 1);
        or_set(&mut spec.revision_history_limit, || 10);
        pod_template(&mut spec.template);
        for claim in spec.volume_claim_templates.iter_mut().flatten() {
            claim.apply_defaults();
        }
    }
}

impl Defaults for DaemonSet {
    /// `SetDefaults_DaemonSet`.
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        let strategy = or_set(&mut spec.update_strategy, DaemonSetUpdateStrategy::default);
        or_str(&mut strategy.type_, "RollingUpdate");
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = or_set(
                &mut strategy.rolling_update,
                RollingUpdateDaemonSet::default,
            );
            or_set(&mut rolling.max_unavailable, || IntOrString::Int(1));
            or_set(&mut rolling.max_surge, || IntOrString::Int(0));
        }
        or_set(&mut spec.revision_history_limit, || 10);
        pod_template(&mut spec.template);
    }
}

impl Defaults for Service {
    /// `SetDefaults_Service`, plus the IP family fields upstream's service REST storage
    /// fills for a single-stack IPv4 cluster (clusterIP allocation itself is not here).
    fn apply_defaults(&mut self) {
        let spec = or_set(&mut self.spec, Default::default);
        or_str(&mut spec.session_affinity, "None");
        match spec.session_affinity.as_deref() {
            Some("None") => spec.session_affinity_config = None,
            Some("ClientIP") => {
                let config = or_set(&mut spec.session_affinity_config, Default::default);
                let client_ip = or_set(&mut config.client_ip, Default::default);
                or_set(&mut client_ip.timeout_seconds, || 10800);
            }
            _ => {}
        }
        or_str(&mut spec.type_, "ClusterIP");
        for port in spec.ports.iter_mut().flatten() {
            or_str(&mut port.protocol, "TCP");
            if matches!(&port.target_port, None | Some(IntOrString::Int(0)))
                || matches!(&port.target_port, Some(IntOrString::String(s)) if s.is_empty())
            {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        let service_type = spec.type_.clone().unwrap_or_default();
        let externally_accessible = matches!(service_type.as_str(), "LoadBalancer" | "NodePort")
            || (service_type == "ClusterIP"
                && spec
                    .external_ips
                    .as_ref()
                    .is_some_and(|ips| !ips.is_empty()));
        if externally_accessible {
            or_str(&mut spec.external_traffic_policy, "Cluster");
        }
        if matches!(
            service_type.as_str(),
            "ClusterIP" | "NodePort" | "LoadBalancer"
        ) {
            or_set(&mut spec.internal_traffic_policy, || "Cluster".into());
            let headless_without_selector = spec.cluster_ip.as_deref() == Some("None")
                && spec.selector.as_ref().is_none_or(|s| s.is_empty());
            let policy = if headless_without_selector {
                "RequireDualStack"
            } else {
                "SingleStack"
            };
            or_set(&mut spec.ip_family_policy, || policy.into());
            or_set(&mut spec.ip_families, || vec!["IPv4".into()]);
        }
        if service_type == "LoadBalancer" {
            or_set(&mut spec.allocate_load_balancer_node_ports, || true);
        }
        let status = or_set(&mut self.status, ServiceStatus::default);
        let load_balancer = or_set(&mut status.load_balancer, Default::default);
        if service_type == "LoadBalancer" {
            for ingress in load_balancer.ingress.iter_mut().flatten() {
                if ingress.ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
                    or_set(&mut ingress.ip_mode, || "VIP".into());
                }
            }
        }
    }
}

impl Defaults for PersistentVolume {
    /// `SetDefaults_PersistentVolume`.
    fn apply_defaults(&mut self) {
        let status = or_set(&mut self.status, PersistentVolumeStatus::default);
        or_str(&mut status.phase, "Pending");
        let spec = or_set(&mut self.spec, Default::default);
        or_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
        or_str(&mut spec.volume_mode, "Filesystem");
        if let Some(host_path) = &mut spec.host_path {
            or_set(&mut host_path.type_, String::new);
        }
    }
}

impl Defaults for PersistentVolumeClaim {
    /// `SetDefaults_PersistentVolumeClaim` and its spec's defaults.
    fn apply_defaults(&mut self) {
        let status = or_set(&mut self.status, PersistentVolumeClaimStatus::default);
        or_str(&mut status.phase, "Pending");
        pvc_spec(or_set(&mut self.spec, Default::default));
    }
}

impl Defaults for Namespace {
    /// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label) and
    /// `SetDefaults_NamespaceStatus`.
    fn apply_defaults(&mut self) {
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            or_set(&mut self.metadata.labels, Default::default)
                .insert("kubernetes.io/metadata.name".into(), name);
        }
        let status = or_set(&mut self.status, NamespaceStatus::default);
        or_str(&mut status.phase, "Active");
    }
}

impl Defaults for Node {
    /// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
    fn apply_defaults(&mut self) {
        if let Some(status) = &mut self.status
            && status.allocatable.is_none()
            && let Some(capacity) = &status.capacity
        {
            status.allocatable = Some(capacity.clone());
        }
    }
}

impl Defaults for Secret {
    /// `SetDefaults_Secret`.
    fn apply_defaults(&mut self) {
        or_str(&mut self.type_, "Opaque");
    }
}

impl Defaults for Endpoints {
    /// `SetDefaults_Endpoints`.
    fn apply_defaults(&mut self) {
        for port in self
            .subsets
            .iter_mut()
            .flatten()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            or_str(&mut port.protocol, "TCP");
        }
    }
}

impl Defaults for EndpointSlice {
    /// discovery/v1 `SetDefaults_EndpointPort`: name `""` and protocol `TCP`.
    fn apply_defaults(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            or_set(&mut port.name, String::new);
            or_str(&mut port.protocol, "TCP");
        }
    }
}

impl Defaults for StorageClass {
    /// storage/v1 `SetDefaults_StorageClass`.
    fn apply_defaults(&mut self) {
        or_str(&mut self.reclaim_policy, "Delete");
        or_str(&mut self.volume_binding_mode, "Immediate");
    }
}

impl Defaults for k8s_openapi::api::core::v1::ConfigMap {}
impl Defaults for k8s_openapi::api::core::v1::ServiceAccount {}
impl Defaults for k8s_openapi::api::core::v1::Event {}
impl Defaults for k8s_openapi::api::events::v1::Event {}
impl Defaults for k8s_openapi::api::coordination::v1::Lease {}
impl Defaults for k8s_openapi::api::apps::v1::ControllerRevision {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn defaulted<K: Defaults + DeserializeOwned + Serialize>(value: Value) -> Value {
        let mut typed: K = serde_json::from_value(value).unwrap();
        typed.apply_defaults();
        serde_json::to_value(typed).unwrap()
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy_for("localhost:5000/nginx:1.0"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx@sha256:abcd"), "IfNotPresent");
    }

    /// `kubectl create deployment nginx --image=nginx` against a 1.33 cluster, then
    /// `kubectl get deploy nginx -o yaml`: spec as shown there.
    #[test]
    fn deployment_defaults_match_a_real_cluster() {
        let d = defaulted::<Deployment>(json!({
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}}
            }
        }));
        assert_eq!(
            d["spec"],
            json!({
                "progressDeadlineSeconds": 600,
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "nginx"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{
                            "image": "nginx",
                            "imagePullPolicy": "Always",
                            "name": "nginx",
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        }],
                        "dnsPolicy": "ClusterFirst",
                        "restartPolicy": "Always",
                        "schedulerName": "default-scheduler",
                        "securityContext": {},
                        "terminationGracePeriodSeconds": 30
                    }
                }
            })
        );
    }

    #[test]
    fn pod_defaults_include_pod_only_fields_probes_and_volumes() {
        let p = defaulted::<Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{
                    "name": "c", "image": "busybox:1.36",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "readinessProbe": {"httpGet": {"port": 8080}},
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                }],
                "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "cm"}}, {"name": "c", "secret": {"secretName": "s"}}, {"name": "d", "hostPath": {"path": "/x"}}]
            }
        }));
        let spec = &p["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            c["ports"][0],
            json!({"containerPort": 8080, "protocol": "TCP"})
        );
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(
            c["readinessProbe"],
            json!({"failureThreshold": 3, "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1})
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"],
            json!({"apiVersion": "v1", "fieldPath": "metadata.name"})
        );
        assert_eq!(
            spec["volumes"],
            json!([
                {"name": "a", "emptyDir": {}},
                {"name": "b", "configMap": {"name": "cm", "defaultMode": 420}},
                {"name": "c", "secret": {"secretName": "s", "defaultMode": 420}},
                {"name": "d", "hostPath": {"path": "/x", "type": ""}}
            ])
        );
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        let d = defaulted::<Deployment>(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}),
        );
        assert!(
            d["spec"]["template"]["spec"]
                .get("enableServiceLinks")
                .is_none()
        );
        assert_eq!(d["spec"]["template"]["metadata"], json!({}));
    }

    #[test]
    fn statefulset_defaults_match_a_real_cluster() {
        let s = defaulted::<StatefulSet>(json!({
            "spec": {
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }));
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0],
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
                "status": {"phase": "Pending"}
            })
        );
        // An explicit RollingUpdate without rollingUpdate gets no partition, as upstream.
        let explicit = defaulted::<StatefulSet>(
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}}),
        );
        assert_eq!(
            explicit["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn daemonset_and_replicaset_defaults() {
        let ds =
            defaulted::<DaemonSet>(json!({"spec": {"template": {"spec": {"containers": []}}}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let rs = defaulted::<ReplicaSet>(json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn service_defaults_match_a_real_cluster() {
        let s = defaulted::<Service>(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
        );
        assert_eq!(
            s["spec"],
            json!({
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "protocol": "UDP", "targetPort": "https"}],
                "selector": {"app": "web"},
                "sessionAffinity": "None",
                "type": "ClusterIP"
            })
        );
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        let lb = defaulted::<Service>(
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let external = defaulted::<Service>(
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(external["spec"].get("ipFamilyPolicy").is_none());
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn storage_and_namespace_defaults() {
        let pv = defaulted::<PersistentVolume>(json!({"spec": {"hostPath": {"path": "/d"}}}));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["status"], json!({"phase": "Pending"}));
        let pvc =
            defaulted::<PersistentVolumeClaim>(json!({"spec": {"accessModes": ["ReadWriteOnce"]}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"], json!({"phase": "Pending"}));
        let ns = defaulted::<Namespace>(json!({"metadata": {"name": "demo"}}));
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "demo"})
        );
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        let sc =
            defaulted::<StorageClass>(json!({"metadata": {"name": "fast"}, "provisioner": "x"}));
        assert_eq!(
            (
                sc["reclaimPolicy"].as_str(),
                sc["volumeBindingMode"].as_str()
            ),
            (Some("Delete"), Some("Immediate"))
        );
        let secret = defaulted::<Secret>(json!({"metadata": {"name": "s"}}));
        assert_eq!(secret["type"], "Opaque");
        let slice = defaulted::<EndpointSlice>(
            json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"],
            json!([{"name": "", "port": 80, "protocol": "TCP"}])
        );
        let ep = defaulted::<Endpoints>(json!({"subsets": [{"ports": [{"port": 80}]}]}));
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    }
}

//! The [`Strategy`] of every served kind, as upstream's registry strategies
//! (`pkg/registry/<group>/<kind>/strategy.go`): one generic [`Typed`] strategy over the
//! k8s-openapi type, configured per kind by a [`KindRules`] table.

use crate::codec::{decode_typed, drop_required_pointer_placeholders};
use crate::defaults::Defaults;
use crate::errors::{ApiError, FieldError};
use crate::resources::ResourceInfo;
use crate::strategy::{Decoded, Strategy};
use k8s_openapi::api::{apps, coordination, core, discovery, events, storage};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::marker::PhantomData;

/// What bumps `metadata.generation` on an update.
#[derive(Clone, Copy)]
enum Generation {
    /// The kind has no generation.
    Untracked,
    /// Any change to `.spec`.
    Spec,
    /// Any change to `.spec` or to the annotations (Deployments).
    SpecOrAnnotations,
    /// Any change outside `metadata`, or to the labels (EndpointSlices).
    ContentOrLabels,
}

/// What one kind's upstream strategy does beyond the defaults of [`Typed`].
struct KindRules {
    /// `.status` belongs to the status subresource: reset on create, kept on update.
    status_subresource: bool,
    /// Create accepts the client's `.status` (nodes register with theirs).
    create_keeps_status: bool,
    /// What bumps the generation; kinds that track it start at generation 1.
    generation: Generation,
    /// Metadata a `/status` write may not change (beyond what the generic store keeps).
    status_keeps_metadata: &'static [&'static str],
    /// The kind's own `PrepareForCreate` steps, after status and generation.
    on_create: Option<fn(&mut Value)>,
    /// The kind's own `PrepareForUpdate` steps, after status.
    on_update: Option<fn(&mut Value, &Value)>,
}

const PLAIN: KindRules = KindRules {
    status_subresource: false,
    create_keeps_status: false,
    generation: Generation::Untracked,
    status_keeps_metadata: &[],
    on_create: None,
    on_update: None,
};

const WORKLOAD: KindRules = KindRules {
    status_subresource: true,
    generation: Generation::Spec,
    ..PLAIN
};

/// The strategy of kind `K`: decoding and defaults through the typed form, the rest by rules.
pub struct Typed<K> {
    rules: KindRules,
    kind: PhantomData<fn() -> K>,
}

impl<K> Typed<K> {
    const fn new(rules: KindRules) -> Self {
        Self {
            rules,
            kind: PhantomData,
        }
    }
}

impl<K> Strategy for Typed<K>
where
    K: DeserializeOwned + Serialize + JsonSchema + Defaults,
{
    fn decode(&self, info: &ResourceInfo, object: Value) -> Result<Decoded, ApiError> {
        decode_typed::<K>(info, object)
    }

    fn default(&self, object: &mut Value) {
        let Ok(mut typed) = serde_json::from_value::<K>(object.clone()) else {
            // Only decoded objects reach defaulting; an undecodable one is left for validation.
            return;
        };
        typed.apply_defaults();
        if let Ok(mut defaulted) = serde_json::to_value(&typed) {
            drop_required_pointer_placeholders(object, &mut defaulted);
            *object = defaulted;
        }
    }

    fn prepare_for_create(&self, object: &mut Value) {
        if self.rules.status_subresource && !self.rules.create_keeps_status {
            // The empty status is what Go prints for a zero status (`{}`, `{replicas: 0}`);
            // defaulting then fills what upstream's read path would (`phase: Pending`).
            object["status"] = json!({});
        }
        if !matches!(self.rules.generation, Generation::Untracked) {
            object["metadata"]["generation"] = json!(1);
        }
        if let Some(hook) = self.rules.on_create {
            hook(object);
        }
        self.default(object);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.rules.status_subresource {
            copy_field(new, old, "status");
        }
        if let Some(hook) = self.rules.on_update {
            hook(new, old);
        }
    }

    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let (Some(new_fields), Some(old_fields)) = (new.as_object_mut(), old.as_object()) else {
            return;
        };
        new_fields.retain(|key, _| key == "status" || key == "metadata");
        for (key, value) in old_fields {
            if key != "status" && key != "metadata" {
                new_fields.insert(key.clone(), value.clone());
            }
        }
        for field in self.rules.status_keeps_metadata {
            let (Some(new_meta), Some(old_meta)) =
                (new["metadata"].as_object_mut(), old["metadata"].as_object())
            else {
                break;
            };
            match old_meta.get(*field) {
                Some(value) => new_meta.insert(field.to_string(), value.clone()),
                None => new_meta.remove(*field),
            };
        }
        self.default(new);
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let (kind, group) = type_of(object);
        crate::validation::validate(kind, group, object)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (kind, group) = type_of(new);
        crate::validation::validate_update(kind, group, new, old)
    }

    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        match self.rules.generation {
            Generation::Untracked => false,
            Generation::Spec => differs(new.get("spec"), old.get("spec")),
            Generation::SpecOrAnnotations => {
                differs(new.get("spec"), old.get("spec"))
                    || differs(
                        new.pointer("/metadata/annotations"),
                        old.pointer("/metadata/annotations"),
                    )
            }
            Generation::ContentOrLabels => {
                differs(Some(&without_metadata(new)), Some(&without_metadata(old)))
                    || differs(
                        new.pointer("/metadata/labels"),
                        old.pointer("/metadata/labels"),
                    )
            }
        }
    }
}

/// `(kind, group)` of a decoded object, which always carries its `apiVersion` and `kind`.
fn type_of(object: &Value) -> (&str, &str) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    (
        kind,
        api_version.rsplit_once('/').map_or("", |(group, _)| group),
    )
}

/// The object without its `metadata`.
fn without_metadata(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(fields) = copy.as_object_mut() {
        fields.remove("metadata");
    }
    copy
}

/// Sets `new[key]` to `old[key]`, or removes it when `old` has none.
fn copy_field(new: &mut Value, old: &Value, key: &str) {
    let Some(fields) = new.as_object_mut() else {
        return;
    };
    match old.get(key) {
        Some(value) => fields.insert(key.to_string(), value.clone()),
        None => fields.remove(key),
    };
}

/// Whether two values differ as upstream's `Semantic.DeepEqual` sees them, where an empty
/// list or map equals an absent one.
fn differs(new: Option<&Value>, old: Option<&Value>) -> bool {
    fn pruned(v: &Value) -> Option<Value> {
        match v {
            Value::Object(o) => {
                let o: serde_json::Map<String, Value> = o
                    .iter()
                    .filter_map(|(k, v)| pruned(v).map(|v| (k.clone(), v)))
                    .collect();
                (!o.is_empty()).then_some(Value::Object(o))
            }
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(
                a.iter().map(|v| pruned(v).unwrap_or(json!({}))).collect(),
            )),
            Value::Null => None,
            other => Some(other.clone()),
        }
    }
    new.and_then(pruned) != old.and_then(pruned)
}

/// Pod `PrepareForCreate`: status `{phase: Pending, qosClass}`.
fn pod_on_create(pod: &mut Value) {
    let qos = qos_class(&pod["spec"]);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// Upstream's `qos.GetPodQOS` over CPU and memory of all (init) containers. The requests
/// have already been defaulted from the limits.
fn qos_class(spec: &Value) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| spec[k].as_array().into_iter().flatten());
    let mut requests = [0.0f64; 2];
    let mut limits = [0.0f64; 2];
    let mut any_request = [false; 2];
    let mut any_limit = [false; 2];
    let mut guaranteed = true;
    for c in containers {
        let mut limits_found = [false; 2];
        for (i, name) in COMPUTE.iter().enumerate() {
            if let Some(q) = quantity(&c["resources"]["requests"][name]).filter(|q| *q > 0.0) {
                requests[i] += q;
                any_request[i] = true;
            }
            if let Some(q) = quantity(&c["resources"]["limits"][name]).filter(|q| *q > 0.0) {
                limits[i] += q;
                any_limit[i] = true;
                limits_found[i] = true;
            }
        }
        if limits_found != [true, true] {
            guaranteed = false;
        }
    }
    if any_request == [false, false] && any_limit == [false, false] {
        return "BestEffort";
    }
    let requests_match_limits =
        (0..2).all(|i| !any_request[i] || (any_limit[i] && requests[i] == limits[i]));
    if guaranteed && requests_match_limits && any_request == any_limit {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The value of a `resource.Quantity` written as a string or a bare number.
fn quantity(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => crate::quantity::parse(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Namespace `PrepareForCreate`: the `kubernetes` finalizer is always there at first.
fn namespace_on_create(namespace: &mut Value) {
    let finalizers = &mut namespace["spec"]["finalizers"];
    if !finalizers
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "kubernetes"))
    {
        match finalizers.as_array_mut() {
            Some(list) => list.push(json!("kubernetes")),
            None => *finalizers = json!(["kubernetes"]),
        }
    }
}

/// Namespace `PrepareForUpdate`: finalizers change only through `/finalize`.
fn namespace_on_update(new: &mut Value, old: &Value) {
    let old_finalizers = old.pointer("/spec/finalizers").cloned();
    match (new["spec"].as_object_mut(), old_finalizers) {
        (Some(spec), Some(f)) => {
            spec.insert("finalizers".into(), f);
        }
        (Some(spec), None) => {
            spec.remove("finalizers");
        }
        (None, Some(f)) => new["spec"] = json!({"finalizers": f}),
        (None, None) => {}
    }
}

/// The annotation through which apps/v1 carries a DaemonSet's internal `templateGeneration`.
const DAEMONSET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn template_generation(daemon_set: &Value) -> i64 {
    daemon_set
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DAEMONSET_TEMPLATE_GENERATION))
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

fn set_template_generation(daemon_set: &mut Value, generation: i64) {
    daemon_set["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION] =
        json!(generation.to_string());
}

/// DaemonSet `PrepareForCreate`: template generation starts at 1.
fn daemon_set_on_create(daemon_set: &mut Value) {
    let generation = template_generation(daemon_set);
    if generation < 1 {
        set_template_generation(daemon_set, 1);
    }
}

/// DaemonSet `PrepareForUpdate`: the template generation is the server's, bumped with the
/// template.
fn daemon_set_on_update(new: &mut Value, old: &Value) {
    let mut generation = template_generation(old);
    if differs(new.pointer("/spec/template"), old.pointer("/spec/template")) {
        generation += 1;
    }
    if generation > 0 {
        set_template_generation(new, generation);
    }
}

/// PersistentVolume `PrepareForCreate`: a new volume is `Pending` since now.
fn persistent_volume_on_create(volume: &mut Value) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    volume["status"] = json!({"phase": "Pending", "lastPhaseTransitionTime": now});
}

static POD: Typed<core::v1::Pod> = Typed::new(KindRules {
    status_keeps_metadata: &["ownerReferences"],
    on_create: Some(pod_on_create),
    ..WORKLOAD
});
static SERVICE: Typed<core::v1::Service> = Typed::new(KindRules {
    status_subresource: true,
    ..PLAIN
});
static NAMESPACE: Typed<core::v1::Namespace> = Typed::new(KindRules {
    status_subresource: true,
    on_create: Some(namespace_on_create),
    on_update: Some(namespace_on_update),
    ..PLAIN
});
static NODE: Typed<core::v1::Node> = Typed::new(KindRules {
    status_subresource: true,
    create_keeps_status: true,
    ..PLAIN
});
static EVENT: Typed<core::v1::Event> = Typed::new(PLAIN);
static ENDPOINTS: Typed<core::v1::Endpoints> = Typed::new(PLAIN);
static CONFIG_MAP: Typed<core::v1::ConfigMap> = Typed::new(PLAIN);
static SECRET: Typed<core::v1::Secret> = Typed::new(PLAIN);
static SERVICE_ACCOUNT: Typed<core::v1::ServiceAccount> = Typed::new(PLAIN);
static PERSISTENT_VOLUME: Typed<core::v1::PersistentVolume> = Typed::new(KindRules {
    status_subresource: true,
    on_create: Some(persistent_volume_on_create),
    ..PLAIN
});
static PERSISTENT_VOLUME_CLAIM: Typed<core::v1::PersistentVolumeClaim> = Typed::new(KindRules {
    status_subresource: true,
    ..PLAIN
});
static DEPLOYMENT: Typed<apps::v1::Deployment> = Typed::new(KindRules {
    generation: Generation::SpecOrAnnotations,
    status_keeps_metadata: &["labels"],
    ..WORKLOAD
});
static REPLICA_SET: Typed<apps::v1::ReplicaSet> = Typed::new(WORKLOAD);
static STATEFUL_SET: Typed<apps::v1::StatefulSet> = Typed::new(WORKLOAD);
static DAEMON_SET: Typed<apps::v1::DaemonSet> = Typed::new(KindRules {
    on_create: Some(daemon_set_on_create),
    on_update: Some(daemon_set_on_update),
    ..WORKLOAD
});
static CONTROLLER_REVISION: Typed<apps::v1::ControllerRevision> = Typed::new(PLAIN);
static LEASE: Typed<coordination::v1::Lease> = Typed::new(PLAIN);
static ENDPOINT_SLICE: Typed<discovery::v1::EndpointSlice> = Typed::new(KindRules {
    generation: Generation::ContentOrLabels,
    ..PLAIN
});
static EVENTS_EVENT: Typed<events::v1::Event> = Typed::new(PLAIN);
static STORAGE_CLASS: Typed<storage::v1::StorageClass> = Typed::new(PLAIN);

/// The strategy for a served resource.
///
/// # Panics
/// For a resource that is not in [`crate::RESOURCES`]; every entry there has a strategy.
pub fn strategy_for(info: &ResourceInfo) -> &'static dyn Strategy {
    match (info.group, info.kind) {
        ("", "Pod") => &POD,
        ("", "Service") => &SERVICE,
        ("", "Namespace") => &NAMESPACE,
        ("", "Node") => &NODE,
        ("", "Event") => &EVENT,
        ("", "Endpoints") => &ENDPOINTS,
        ("", "ConfigMap") => &CONFIG_MAP,
        ("", "Secret") => &SECRET,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "PersistentVolume") => &PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &PERSISTENT_VOLUME_CLAIM,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("apps", "ControllerRevision") => &CONTROLLER_REVISION,
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("events.k8s.io", "Event") => &EVENTS_EVENT,
        ("storage.k8s.io", "StorageClass") => &STORAGE_CLASS,
        (group, kind) => panic!("no strategy for {kind} in group {group:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, find_kind};

    fn strategy(group: &str, kind: &str) -> &'static dyn Strategy {
        strategy_for(find_kind(group, kind).unwrap())
    }

    /// Decode, default and prepare a new object, as the API server's create path does.
    fn created(group: &str, kind: &str, body: Value) -> Value {
        let info = find_kind(group, kind).unwrap();
        let s = strategy_for(info);
        let mut object = s.decode(info, body).unwrap().object;
        s.default(&mut object);
        s.prepare_for_create(&mut object);
        object
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"a": "1"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}
            },
            "status": {"replicas": 5}
        })
    }

    #[test]
    fn every_resource_has_a_strategy_that_decodes_its_kind() {
        for info in RESOURCES {
            let body = json!({"apiVersion": info.api_version(), "kind": info.kind, "metadata": {"name": "x"}});
            let decoded = strategy_for(info).decode(info, body).unwrap();
            assert_eq!(decoded.object["kind"], info.kind);
            assert_eq!(
                decoded.unknown_fields,
                Vec::<String>::new(),
                "{}",
                info.kind
            );
        }
    }

    #[test]
    fn create_resets_status_and_starts_generation() {
        let d = created("apps", "Deployment", deployment());
        assert_eq!(d["status"], json!({}));
        assert_eq!(d["metadata"]["generation"], 1);
        let rs = created(
            "apps",
            "ReplicaSet",
            json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}, "status": {"replicas": 3}}),
        );
        assert_eq!(rs["status"], json!({"replicas": 0}));
        let cm = created(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"a": "b"}}),
        );
        assert!(cm["metadata"].get("generation").is_none());
        let svc = created(
            "",
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        );
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));
        assert!(svc["metadata"].get("generation").is_none());
        let pvc = created(
            "",
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(pvc["status"], json!({"phase": "Pending"}));
    }

    #[test]
    fn pod_create_sets_pending_and_qos_class() {
        let pod = |resources: Value| {
            created(
                "",
                "Pod",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": resources}]}}),
            )
        };
        let best_effort = pod(json!({}));
        assert_eq!(
            best_effort["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert_eq!(best_effort["metadata"]["generation"], 1);
        assert_eq!(
            pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))["status"]["qosClass"],
            "Guaranteed"
        );
        assert_eq!(
            pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}}))["status"]
                ["qosClass"],
            "Guaranteed"
        );
        assert_eq!(
            pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}))["status"]
                ["qosClass"],
            "Burstable"
        );
        assert_eq!(
            pod(json!({"requests": {"memory": "64Mi"}}))["status"]["qosClass"],
            "Burstable"
        );
    }

    #[test]
    fn namespace_create_adds_finalizer_label_and_phase() {
        let ns = created("", "Namespace", json!({"metadata": {"name": "demo"}}));
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "demo"
        );
    }

    #[test]
    fn node_create_keeps_status() {
        let node = created(
            "",
            "Node",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4"}}}),
        );
        assert_eq!(
            node["status"],
            json!({"allocatable": {"cpu": "4"}, "capacity": {"cpu": "4"}})
        );
    }

    #[test]
    fn update_keeps_status_and_status_update_keeps_the_rest() {
        let s = strategy("apps", "Deployment");
        let mut old = created("apps", "Deployment", deployment());
        old["status"] = json!({"replicas": 2, "observedGeneration": 1});
        let mut new = old.clone();
        new["status"] = json!({"replicas": 9});
        new["spec"]["replicas"] = json!(3);
        s.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"], old["status"]);
        assert_eq!(new["spec"]["replicas"], 3);

        let mut status_write = old.clone();
        status_write["spec"]["replicas"] = json!(7);
        status_write["metadata"]["labels"] = json!({"sneaky": "x"});
        status_write["metadata"]["annotations"] = json!({"b": "2"});
        status_write["status"] = json!({"replicas": 3, "observedGeneration": 1});
        s.prepare_for_status_update(&mut status_write, &old);
        assert_eq!(status_write["spec"], old["spec"]);
        assert!(status_write["metadata"].get("labels").is_none());
        assert_eq!(status_write["metadata"]["annotations"], json!({"b": "2"}));
        assert_eq!(
            status_write["status"],
            json!({"replicas": 3, "observedGeneration": 1})
        );
    }

    #[test]
    fn generation_follows_upstream_rules() {
        let s = strategy("apps", "Deployment");
        let old = created("apps", "Deployment", deployment());
        let mut new = old.clone();
        assert!(!s.generation_changed(&new, &old));
        new["metadata"]["labels"] = json!({"x": "y"});
        assert!(
            !s.generation_changed(&new, &old),
            "labels do not bump a Deployment"
        );
        new["metadata"]["annotations"]["a"] = json!("2");
        assert!(s.generation_changed(&new, &old), "annotations do");
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(4);
        assert!(s.generation_changed(&scaled, &old));

        let rs = strategy("apps", "ReplicaSet");
        let mut annotated = old.clone();
        annotated["metadata"]["annotations"]["a"] = json!("2");
        assert!(!rs.generation_changed(&annotated, &old));

        let cm = strategy("", "ConfigMap");
        assert!(!cm.generation_changed(&json!({"data": {"a": "1"}}), &json!({"data": {"a": "2"}})));

        let slice = strategy("discovery.k8s.io", "EndpointSlice");
        let old_slice = json!({"metadata": {"labels": {"a": "b"}}, "endpoints": [], "ports": []});
        let mut relabeled = old_slice.clone();
        relabeled["metadata"]["labels"]["a"] = json!("c");
        assert!(slice.generation_changed(&relabeled, &old_slice));
        let mut annotated_slice = old_slice.clone();
        annotated_slice["metadata"]["annotations"] = json!({"x": "y"});
        assert!(!slice.generation_changed(&annotated_slice, &old_slice));
    }

    #[test]
    fn daemonset_template_generation_annotation() {
        let s = strategy("apps", "DaemonSet");
        let body = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let old = created("apps", "DaemonSet", body);
        assert_eq!(
            old["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION],
            "1"
        );
        assert_eq!(
            old["status"],
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0})
        );
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        s.prepare_for_update(&mut new, &old);
        assert_eq!(
            new["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION],
            "2"
        );
        let mut unchanged = old.clone();
        unchanged["spec"]["minReadySeconds"] = json!(5);
        s.prepare_for_update(&mut unchanged, &old);
        assert_eq!(
            unchanged["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION],
            "1"
        );
    }

    #[test]
    fn defaulting_keeps_a_missing_selector_missing() {
        let d = created(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}}),
        );
        assert!(d["spec"].get("selector").is_none());
    }
}

//! Decoding request bodies into a kind's typed form, as upstream's JSON serializer does:
//! type errors name the field path in Go's wording, unknown fields are reported for
//! `fieldValidation`, and the stored form is what the type serializes back to.

use crate::errors::ApiError;
use crate::resources::ResourceInfo;
use crate::strategy::Decoded;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

/// Decodes `value` as the kind `K` of `info` and serializes it back to the normalized object.
///
/// A value of the wrong type is a 400 worded as upstream's decoder, e.g.
/// `DaemonSet in version "v1" cannot be handled as a DaemonSet: json: cannot unmarshal array
/// into Go struct field PodSpec.spec.template.spec.nodeSelector of type map[string]string`.
/// `apiVersion` and `kind`, when present, must be the resource's own.
pub fn decode_typed<K>(info: &ResourceInfo, value: Value) -> Result<Decoded, ApiError>
where
    K: DeserializeOwned + Serialize + JsonSchema,
{
    let Value::Object(mut fields) = value else {
        return Err(cannot_handle(
            info,
            format!(
                "json: cannot unmarshal {} into Go value of type {}",
                json_type(&value),
                go_type_name(&K::schema_name())
            ),
        ));
    };
    check_type_meta(info, &mut fields)?;
    let input = Value::Object(fields);

    let typed: K = serde_path_to_error::deserialize(&input).map_err(|e| {
        let segments: Vec<&Segment> = e.path().iter().collect();
        cannot_handle(info, describe_type_error::<K>(&input, &segments, e.inner()))
    })?;
    let mut object = serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))?;
    drop_required_pointer_placeholders(&input, &mut object);

    let mut unknown_fields = Vec::new();
    collect_unknown(&input, &object, "", &mut unknown_fields);
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// The 400 upstream answers for `fieldValidation=Strict` when a body has unknown fields:
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error:
/// unknown field "spec.foo", unknown field "spec.bar"`.
pub fn strict_decoding_error(info: &ResourceInfo, unknown_fields: &[String]) -> ApiError {
    let list = unknown_fields
        .iter()
        .map(|f| unknown_field_warning(f))
        .collect::<Vec<_>>()
        .join(", ");
    cannot_handle(info, format!("strict decoding error: {list}"))
}

/// The warning upstream returns for one unknown field under `fieldValidation=Warn`.
pub fn unknown_field_warning(path: &str) -> String {
    format!("unknown field \"{path}\"")
}

/// `<Kind> in version "<v>" cannot be handled as a <Kind>: <why>`.
fn cannot_handle(info: &ResourceInfo, why: String) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {why}",
        info.kind, info.version, info.kind
    ))
}

/// Checks `apiVersion` and `kind` against the resource and removes them: the typed form
/// writes its own.
fn check_type_meta(info: &ResourceInfo, fields: &mut Map<String, Value>) -> Result<(), ApiError> {
    let expected_version = info.api_version();
    match fields.remove("apiVersion") {
        Some(Value::String(v)) if !v.is_empty() && v != expected_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
        Some(Value::String(_) | Value::Null) | None => {}
        Some(other) => {
            return Err(cannot_handle(
                info,
                format!(
                    "json: cannot unmarshal {} into Go struct field TypeMeta.apiVersion of type string",
                    json_type(&other)
                ),
            ));
        }
    }
    match fields.remove("kind") {
        Some(Value::String(k)) if !k.is_empty() && k != info.kind => {
            Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )))
        }
        Some(Value::String(_) | Value::Null) | None => Ok(()),
        Some(other) => Err(cannot_handle(
            info,
            format!(
                "json: cannot unmarshal {} into Go struct field TypeMeta.kind of type string",
                json_type(&other)
            ),
        )),
    }
}

/// Workload selectors are pointers in Go but required in the OpenAPI schema, so the typed
/// form invents `selector: {}` when a body has none; upstream keeps it absent (and then
/// reports `spec.selector: Required value`).
pub(crate) fn drop_required_pointer_placeholders(input: &Value, object: &mut Value) {
    let absent = input.pointer("/spec/selector").is_none_or(Value::is_null);
    if absent
        && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        && spec
            .get("selector")
            .is_some_and(|s| s.as_object().is_some_and(Map::is_empty))
    {
        spec.remove("selector");
    }
}

/// Records every non-null field of `input` that `output` (the typed round trip) lost.
fn collect_unknown(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (key, value) in i {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match o.get(key) {
                    Some(kept) => collect_unknown(value, kept, &child, out),
                    None => out.push(child),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (index, (value, kept)) in i.iter().zip(o).enumerate() {
                collect_unknown(value, kept, &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

/// Words a deserialization failure as Go's `encoding/json` does. Go names the struct that
/// holds the field and the dotted path of struct fields (no indices or map keys).
fn describe_type_error<K: JsonSchema>(
    input: &Value,
    path: &[&Segment],
    inner: &serde_json::Error,
) -> String {
    let root = schemars::SchemaGenerator::default().into_root_schema_for::<K>();
    let root = root.as_value();
    let mut schema = root;
    let mut struct_name = go_short_name(&K::schema_name()).to_string();
    let mut field_struct = struct_name.clone();
    let mut go_path: Vec<String> = Vec::new();
    let mut value = Some(input);

    for segment in path {
        schema = resolve(root, schema, &mut struct_name);
        match segment {
            Segment::Map { key } => {
                value = value.and_then(|v| v.get(key));
                if let Some(field) = schema.get("properties").and_then(|p| p.get(key)) {
                    field_struct = struct_name.clone();
                    go_path.push(key.clone());
                    schema = field;
                } else if let Some(item) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    schema = item;
                } else {
                    break;
                }
            }
            Segment::Seq { index } => {
                value = value.and_then(|v| v.get(index));
                match schema.get("items") {
                    Some(item) => schema = item,
                    None => break,
                }
            }
            Segment::Enum { .. } | Segment::Unknown => break,
        }
    }

    let Some(value) = value else {
        return format!("{}: {}", go_path.join("."), serde_message(inner));
    };
    let target = go_type(root, schema);
    let resolved = resolve(root, schema, &mut struct_name);
    if resolved.get("format").and_then(Value::as_str) == Some("date-time")
        && let Value::String(s) = value
    {
        return format!(
            "parsing time \"{s}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"{s}\" as \"2006\""
        );
    }
    let found = match value {
        Value::Number(n) if target.starts_with("int") || target.starts_with("uint") => {
            format!("number {n}")
        }
        other => json_type(other).to_string(),
    };
    if go_path.is_empty() {
        format!("json: cannot unmarshal {found} into Go value of type {target}")
    } else {
        format!(
            "json: cannot unmarshal {found} into Go struct field {field_struct}.{} of type {target}",
            go_path.join(".")
        )
    }
}

/// Follows a `$ref` to its definition, remembering the Go struct it names.
fn resolve<'a>(root: &'a Value, schema: &'a Value, struct_name: &mut String) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => {
            *struct_name = go_short_name(name).to_string();
            root.get("$defs")
                .and_then(|d| d.get(name))
                .unwrap_or(schema)
        }
        None => schema,
    }
}

/// The Go spelling of the type a schema describes: `map[string]string`, `[]v1.Container`,
/// `int32`, `intstr.IntOrString`.
fn go_type(root: &Value, schema: &Value) -> String {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        let def = root.get("$defs").and_then(|d| d.get(name));
        // Quantity, Time and friends are named Go types whose schema is a plain string.
        return match def {
            Some(d)
                if d.get("properties").is_none()
                    && d.get("type").and_then(Value::as_str) == Some("object") =>
            {
                go_type(root, d)
            }
            _ => go_type_name(name),
        };
    }
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return "intstr.IntOrString".into();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("byte") => {
            "[]uint8".into()
        }
        Some("string") => "string".into(),
        Some("boolean") => "bool".into(),
        Some("integer") => match schema.get("format").and_then(Value::as_str) {
            Some("int32") => "int32".into(),
            _ => "int64".into(),
        },
        Some("number") => "float64".into(),
        Some("array") => format!(
            "[]{}",
            schema
                .get("items")
                .map_or("interface {}".into(), |i| go_type(root, i))
        ),
        Some("object") => match schema.get("additionalProperties").filter(|a| a.is_object()) {
            Some(v) => format!("map[string]{}", go_type(root, v)),
            None => "map[string]interface {}".into(),
        },
        _ => "interface {}".into(),
    }
}

/// `io.k8s.api.core.v1.PodSpec` → `v1.PodSpec`, the way Go prints a named type.
fn go_type_name(schema_name: &str) -> String {
    let mut parts = schema_name.rsplit('.');
    match (parts.next(), parts.next()) {
        (Some(name), Some(package)) => format!("{package}.{name}"),
        _ => schema_name.to_string(),
    }
}

/// `io.k8s.api.core.v1.PodSpec` → `PodSpec`, the struct name in `Go struct field ...`.
fn go_short_name(schema_name: &str) -> &str {
    schema_name.rsplit('.').next().unwrap_or(schema_name)
}

/// JSON type names as Go's `UnmarshalTypeError` prints them.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// serde_json's message without the line/column suffix, which means nothing for a `Value`.
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find_kind;
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{Pod, Service};
    use serde_json::json;

    fn decode<K: DeserializeOwned + Serialize + JsonSchema>(
        group: &str,
        kind: &str,
        value: Value,
    ) -> Result<Decoded, ApiError> {
        decode_typed::<K>(find_kind(group, kind).unwrap(), value)
    }

    fn tutorial_daemonset(node_selector: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "fluentd"},
            "spec": {
                "selector": {"matchLabels": {"name": "fluentd"}},
                "template": {
                    "metadata": {"labels": {"name": "fluentd"}},
                    "spec": {
                        "nodeSelector": node_selector,
                        "containers": [{"name": "fluentd", "image": "fluentd:v1"}]
                    }
                }
            }
        })
    }

    #[test]
    fn wrong_type_names_the_go_field_path() {
        let err = decode::<DaemonSet>(
            "apps",
            "DaemonSet",
            tutorial_daemonset(json!([{"log-enabled": "true"}])),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.reason, "BadRequest");
        assert_eq!(
            err.message,
            "DaemonSet in version \"v1\" cannot be handled as a DaemonSet: json: cannot unmarshal array into Go struct field PodSpec.spec.template.spec.nodeSelector of type map[string]string"
        );
    }

    #[test]
    fn wrong_types_inside_lists_and_maps() {
        let mut d = tutorial_daemonset(json!({"a": "b"}));
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!("80");
        let err = decode::<DaemonSet>("apps", "DaemonSet", d).unwrap_err();
        assert!(err.message.ends_with("json: cannot unmarshal string into Go struct field Container.spec.template.spec.containers.ports of type []v1.ContainerPort"), "{}", err.message);

        let err = decode::<DaemonSet>("apps", "DaemonSet", tutorial_daemonset(json!({"a": 1})))
            .unwrap_err();
        assert!(err.message.ends_with("json: cannot unmarshal number into Go struct field PodSpec.spec.template.spec.nodeSelector of type string"), "{}", err.message);

        let err = decode::<Deployment>(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "x"}, "spec": {"replicas": "3"}}),
        )
        .unwrap_err();
        assert!(err.message.ends_with("json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"), "{}", err.message);

        let err = decode::<Deployment>(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "x"}, "spec": {"replicas": 1.5}}),
        )
        .unwrap_err();
        assert!(err.message.ends_with("json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"), "{}", err.message);

        let err = decode::<Pod>(
            "",
            "Pod",
            json!({"metadata": {"creationTimestamp": "yesterday"}}),
        )
        .unwrap_err();
        assert!(err.message.ends_with("parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\""), "{}", err.message);

        let err = decode::<Pod>("", "Pod", json!({"metadata": {"labels": ["a"]}})).unwrap_err();
        assert_eq!(
            err.message,
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"
        );
    }

    #[test]
    fn type_meta_must_match_the_resource() {
        let err = decode::<Deployment>(
            "apps",
            "Deployment",
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)"
        );
        let ok =
            decode::<Deployment>("apps", "Deployment", json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(ok.object["apiVersion"], "apps/v1");
        assert_eq!(ok.object["kind"], "Deployment");
    }

    #[test]
    fn unknown_fields_are_reported_with_upstream_paths() {
        let mut d = tutorial_daemonset(json!({"a": "b"}));
        d["spec"]["foo"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        d["spec"]["nothing"] = Value::Null;
        let decoded = decode::<DaemonSet>("apps", "DaemonSet", d).unwrap();
        // In document order, as upstream's strict decoder reports them.
        assert_eq!(
            decoded.unknown_fields,
            vec!["spec.template.spec.containers[0].imagee", "spec.foo"]
        );
        assert!(decoded.object["spec"].get("foo").is_none());
        assert_eq!(
            strict_decoding_error(
                find_kind("apps", "DaemonSet").unwrap(),
                &decoded.unknown_fields
            )
            .message,
            "DaemonSet in version \"v1\" cannot be handled as a DaemonSet: strict decoding error: unknown field \"spec.template.spec.containers[0].imagee\", unknown field \"spec.foo\""
        );
    }

    #[test]
    fn realistic_objects_have_no_unknown_fields() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx", "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "name": "http"}],
                            "resources": {},
                            "securityContext": {},
                            "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 3},
                            "readinessProbe": {"tcpSocket": {"port": 80}},
                            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}]
                        }],
                        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}}],
                        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}}]}}
                    }
                }
            },
            "status": {}
        });
        let statefulset = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db", "replicas": 2,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16", "resources": {"requests": {"cpu": "100m", "memory": 1024}}, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "creationTimestamp": null}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}, "status": {}}]
            }
        });
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"port": 443, "targetPort": 8443, "protocol": "TCP"}], "type": "NodePort"}
        });
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
                "containers": [{"name": "c", "image": "busybox", "startupProbe": {"exec": {"command": ["true"]}}, "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}}],
                "volumes": [{"name": "s", "secret": {"secretName": "s", "defaultMode": 256}}, {"name": "h", "hostPath": {"path": "/tmp"}}, {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
            }
        });
        assert_eq!(
            decode::<Deployment>("apps", "Deployment", deployment)
                .unwrap()
                .unknown_fields,
            Vec::<String>::new()
        );
        assert_eq!(
            decode::<StatefulSet>("apps", "StatefulSet", statefulset)
                .unwrap()
                .unknown_fields,
            Vec::<String>::new()
        );
        assert_eq!(
            decode::<Service>("", "Service", service)
                .unwrap()
                .unknown_fields,
            Vec::<String>::new()
        );
        assert_eq!(
            decode::<Pod>("", "Pod", pod).unwrap().unknown_fields,
            Vec::<String>::new()
        );
    }

    #[test]
    fn normalized_object_drops_nulls_and_unknown_fields_but_keeps_empty_objects() {
        let decoded = decode::<Deployment>(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "x", "creationTimestamp": null}, "spec": {"bogus": 1, "template": {"spec": {"containers": [{"name": "c", "resources": {}}]}}}}),
        )
        .unwrap();
        assert_eq!(
            decoded.object,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "resources": {}}]}}}})
        );
    }
}

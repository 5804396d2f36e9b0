//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded to the
//! object's upstream JSON.
//!
//! kubectl's generator commands (`create namespace|deployment|configmap|secret|service`,
//! `expose`, ...) go through typed clientsets, which send protobuf: the 4-byte magic `k8s\0`,
//! then a `runtime.Unknown` whose `typeMeta` names the kind and whose `raw` is the object's
//! own protobuf encoding.
//!
//! How `raw` becomes JSON, generically:
//! - k8s-pb's prost messages (generated from upstream's `.proto` files) decode it. They have no
//!   serde derives and no descriptors, but prost derives `Debug`, which prints every field in
//!   declaration order (upstream's JSON order) with its struct's name. That text is parsed back
//!   into a [`Printed`] tree: the reflection prost does not otherwise offer.
//! - k8s-openapi's JSON schemas of the same types give each field's JSON name (prost's
//!   snake_case names lose upstream's acronyms: `pod_ip` is `podIP`, `target_ww_ns` is
//!   `targetWWNs`) and which strings are `bytes` (base64 in JSON).
//! - apimachinery's types with their own JSON form are recognised by name: `Quantity`,
//!   `IntOrString`, `Time`, `MicroTime`, `RawExtension` and `FieldsV1`.
//!
//! Go's protobuf encoder writes every non-pointer field, zero or not, and no absent pointer, so
//! the zero-valued scalars it wrote are dropped (Go's JSON encoder omits them as `omitempty`),
//! except for the pointer fields in [`POINTER_FIELDS`], whose zero was set on purpose. Empty
//! lists and maps are dropped too: protobuf cannot tell them from absent ones. Nested messages
//! stay, even empty: Go's JSON encoder writes struct fields (`resources: {}`, `status: {}`) and
//! non-nil pointers, and so does this module.

use crate::errors::ApiError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Number, Value};
use std::sync::OnceLock;

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// The media type of Kubernetes protobuf, as `Unknown.contentType` may repeat it.
const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Decodes a Kubernetes protobuf body into the object's upstream JSON (`kind`, `apiVersion`,
/// then its fields with their JSON names), for every built-in kind skiff serves.
///
/// Malformed bodies, unknown kinds and unsupported envelopes are 400 BadRequest errors.
pub fn decode_protobuf(body: &[u8]) -> Result<Value, ApiError> {
    // Wording as upstream's protobuf serializer.
    if body.is_empty() {
        return Err(ApiError::bad_request("empty data"));
    }
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(ApiError::bad_request(format!(
            "provided data does not appear to be a protobuf message, expected prefix {MAGIC:?}"
        )));
    };
    if envelope.is_empty() {
        return Err(ApiError::bad_request("empty body"));
    }
    let unknown = Unknown::decode(envelope).map_err(|e| protobuf_error("runtime.Unknown", &e))?;
    if let Some(encoding) = unknown
        .content_encoding
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "unsupported protobuf content encoding {encoding:?}"
        )));
    }
    if let Some(content_type) = unknown
        .content_type
        .as_deref()
        .filter(|t| !t.is_empty() && *t != CONTENT_TYPE)
    {
        return Err(ApiError::bad_request(format!(
            "unsupported protobuf content type {content_type:?}"
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in protobuf body",
        ));
    }
    let Some((index, codec)) = CODECS
        .iter()
        .enumerate()
        .find(|(_, c)| c.api_version == api_version && c.kind == kind)
    else {
        return Err(ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {api_version:?}"
        )));
    };
    let raw = unknown.raw.unwrap_or_default();
    let text = (codec.print)(&raw).map_err(|e| protobuf_error(codec.kind, &e))?;
    let printed = Parser::parse(&text)?;
    let schemas = schemas();
    let Value::Object(fields) = schemas.convert(&printed, &schemas.roots[index])? else {
        return Err(ApiError::bad_request(format!(
            "protobuf body of kind {kind:?} is not an object"
        )));
    };
    // Go's TypeMeta comes first, `kind` before `apiVersion`.
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind));
    object.insert("apiVersion".into(), Value::String(api_version));
    object.extend(fields);
    Ok(Value::Object(object))
}

fn protobuf_error(what: &str, error: &prost::DecodeError) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf {what}: {error}"))
}

/// How one kind is decoded: its prost message and its k8s-openapi schema.
struct KindCodec {
    api_version: &'static str,
    kind: &'static str,
    /// Decodes the object's protobuf and prints it with `Debug`.
    print: fn(&[u8]) -> Result<String, prost::DecodeError>,
    /// Adds the schema (and everything it references) to a generator; returns its `$ref`.
    register: fn(&mut SchemaGenerator) -> Schema,
}

fn print<M: Message + Default + std::fmt::Debug>(raw: &[u8]) -> Result<String, prost::DecodeError> {
    M::decode(raw).map(|message| format!("{message:?}"))
}

/// k8s-pb and k8s-openapi lay their types out under the same paths (`api::apps::v1::Deployment`).
macro_rules! codec {
    ($($segment:ident)::+) => {
        KindCodec {
            api_version: <k8s_openapi::$($segment)::+ as k8s_openapi::Resource>::API_VERSION,
            kind: <k8s_openapi::$($segment)::+ as k8s_openapi::Resource>::KIND,
            print: print::<k8s_pb::$($segment)::+>,
            register: SchemaGenerator::subschema_for::<k8s_openapi::$($segment)::+>,
        }
    };
}

/// Every kind of [`crate::RESOURCES`], and the kinds their subresources take.
static CODECS: &[KindCodec] = &[
    codec!(api::core::v1::Pod),
    codec!(api::core::v1::Service),
    codec!(api::core::v1::Namespace),
    codec!(api::core::v1::Node),
    codec!(api::core::v1::Event),
    codec!(api::core::v1::Endpoints),
    codec!(api::core::v1::ConfigMap),
    codec!(api::core::v1::Secret),
    codec!(api::core::v1::ServiceAccount),
    codec!(api::core::v1::PersistentVolume),
    codec!(api::core::v1::PersistentVolumeClaim),
    codec!(api::core::v1::Binding),
    codec!(api::apps::v1::Deployment),
    codec!(api::apps::v1::ReplicaSet),
    codec!(api::apps::v1::StatefulSet),
    codec!(api::apps::v1::DaemonSet),
    codec!(api::apps::v1::ControllerRevision),
    codec!(api::autoscaling::v1::Scale),
    codec!(api::coordination::v1::Lease),
    codec!(api::discovery::v1::EndpointSlice),
    codec!(api::events::v1::Event),
    codec!(api::policy::v1::Eviction),
    codec!(api::storage::v1::StorageClass),
];

/// Fields that are pointers in upstream's Go types, as `(struct, JSON field)`: Go's protobuf
/// encoder writes them only when set, so a zero there (`replicas: 0`, `optional: false`,
/// `storageClassName: ""`) was set on purpose and is kept.
const POINTER_FIELDS: &[(&str, &str)] = &[
    ("ObjectMeta", "deletionGracePeriodSeconds"),
    ("OwnerReference", "controller"),
    ("OwnerReference", "blockOwnerDeletion"),
    ("DeploymentSpec", "replicas"),
    ("DeploymentSpec", "revisionHistoryLimit"),
    ("DeploymentSpec", "progressDeadlineSeconds"),
    ("ReplicaSetSpec", "replicas"),
    ("StatefulSetSpec", "replicas"),
    ("StatefulSetSpec", "revisionHistoryLimit"),
    ("RollingUpdateStatefulSetStrategy", "partition"),
    ("DaemonSetSpec", "revisionHistoryLimit"),
    ("PodSpec", "terminationGracePeriodSeconds"),
    ("PodSpec", "activeDeadlineSeconds"),
    ("PodSpec", "automountServiceAccountToken"),
    ("PodSpec", "enableServiceLinks"),
    ("PodSpec", "shareProcessNamespace"),
    ("PodSpec", "hostUsers"),
    ("PodSpec", "priority"),
    ("PodSpec", "setHostnameAsFQDN"),
    ("PodSecurityContext", "runAsUser"),
    ("PodSecurityContext", "runAsGroup"),
    ("PodSecurityContext", "runAsNonRoot"),
    ("PodSecurityContext", "fsGroup"),
    ("SecurityContext", "runAsUser"),
    ("SecurityContext", "runAsGroup"),
    ("SecurityContext", "runAsNonRoot"),
    ("SecurityContext", "privileged"),
    ("SecurityContext", "readOnlyRootFilesystem"),
    ("SecurityContext", "allowPrivilegeEscalation"),
    ("Probe", "terminationGracePeriodSeconds"),
    ("ConfigMapVolumeSource", "defaultMode"),
    ("ConfigMapVolumeSource", "optional"),
    ("SecretVolumeSource", "defaultMode"),
    ("SecretVolumeSource", "optional"),
    ("ConfigMapKeySelector", "optional"),
    ("SecretKeySelector", "optional"),
    ("ConfigMapEnvSource", "optional"),
    ("SecretEnvSource", "optional"),
    ("ConfigMap", "immutable"),
    ("Secret", "immutable"),
    ("ServiceAccount", "automountServiceAccountToken"),
    ("ServiceSpec", "allocateLoadBalancerNodePorts"),
    ("PersistentVolumeClaimSpec", "storageClassName"),
    ("StorageClass", "allowVolumeExpansion"),
    ("LeaseSpec", "holderIdentity"),
    ("LeaseSpec", "leaseDurationSeconds"),
    ("LeaseSpec", "leaseTransitions"),
    ("EndpointConditions", "ready"),
    ("EndpointConditions", "serving"),
    ("EndpointConditions", "terminating"),
    ("EndpointPort", "name"),
    ("EndpointPort", "port"),
];

/// A value as prost's derived `Debug` prints it.
#[derive(Debug, PartialEq)]
enum Printed {
    /// A message: `Name { field: value, ... }`, or just `Name` without fields.
    Struct {
        name: String,
        fields: Vec<(String, Printed)>,
    },
    /// A set optional field: `Some(value)`.
    Some(Box<Printed>),
    /// An unset optional field.
    None,
    Str(String),
    /// A number, as printed.
    Number(String),
    Bool(bool),
    /// A repeated field, or `bytes`: `[a, b]`.
    List(Vec<Printed>),
    /// A map field: `{key: value, ...}`.
    Map(Vec<(Printed, Printed)>),
}

impl Printed {
    /// Whether this is the zero value of a scalar (or of `bytes`).
    fn is_scalar_zero(&self) -> bool {
        match self {
            Self::Str(s) => s.is_empty(),
            Self::Number(n) => n.parse::<f64>().is_ok_and(|n| n == 0.0),
            Self::Bool(b) => !b,
            Self::List(items) => items.is_empty(),
            _ => false,
        }
    }

    /// A field of a message, with `Some` unwrapped; `None` when unset.
    fn field<'p>(fields: &'p [(String, Printed)], name: &str) -> Option<&'p Printed> {
        match fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)? {
            Self::None => None,
            Self::Some(inner) => Some(inner),
            other => Some(other),
        }
    }
}

/// A parser of the `Debug` text of prost messages.
struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    /// Parses a whole text. Failing here is a bug in this parser, not in the request.
    fn parse(text: &'a str) -> Result<Printed, ApiError> {
        let mut parser = Parser { rest: text };
        let value = parser.value().and_then(|v| {
            if parser.rest.is_empty() {
                Ok(v)
            } else {
                Err(())
            }
        });
        value.map_err(|()| {
            ApiError::internal(format!(
                "cannot read back the decoded protobuf object at {:?}",
                parser.rest
            ))
        })
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ()> {
        if self.eat(token) { Ok(()) } else { Err(()) }
    }

    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let end = self.rest.find(|c| !accept(c)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    fn value(&mut self) -> Result<Printed, ()> {
        match self.rest.chars().next().ok_or(())? {
            '"' => self.string().map(Printed::Str),
            '[' => self.list().map(Printed::List),
            '{' => self.map().map(Printed::Map),
            c if c == '-' || c.is_ascii_digit() => Ok(Printed::Number(
                self.take_while(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    .into(),
            )),
            _ => {
                let name = self.identifier()?;
                match name {
                    "None" => Ok(Printed::None),
                    "true" => Ok(Printed::Bool(true)),
                    "false" => Ok(Printed::Bool(false)),
                    "Some" => {
                        self.expect("(")?;
                        let inner = self.value()?;
                        self.expect(")")?;
                        Ok(Printed::Some(Box::new(inner)))
                    }
                    _ => self.message_fields().map(|fields| Printed::Struct {
                        name: name.into(),
                        fields,
                    }),
                }
            }
        }
    }

    fn identifier(&mut self) -> Result<&'a str, ()> {
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '#');
        if name.is_empty() { Err(()) } else { Ok(name) }
    }

    fn message_fields(&mut self) -> Result<Vec<(String, Printed)>, ()> {
        let mut fields = Vec::new();
        if !self.eat(" { ") {
            return Ok(fields);
        }
        loop {
            let name = self.identifier()?.trim_start_matches("r#").to_owned();
            self.expect(": ")?;
            fields.push((name, self.value()?));
            if self.eat(" }") {
                return Ok(fields);
            }
            self.expect(", ")?;
        }
    }

    /// `[a, b]`.
    fn list(&mut self) -> Result<Vec<Printed>, ()> {
        self.expect("[")?;
        let mut items = Vec::new();
        if self.eat("]") {
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            if self.eat("]") {
                return Ok(items);
            }
            self.expect(", ")?;
        }
    }

    /// `{k: v, k2: v2}`.
    fn map(&mut self) -> Result<Vec<(Printed, Printed)>, ()> {
        self.expect("{")?;
        let mut entries = Vec::new();
        if self.eat("}") {
            return Ok(entries);
        }
        loop {
            let key = self.value()?;
            self.expect(": ")?;
            entries.push((key, self.value()?));
            if self.eat("}") {
                return Ok(entries);
            }
            self.expect(", ")?;
        }
    }

    /// A string as `str`'s `Debug` escapes it.
    fn string(&mut self) -> Result<String, ()> {
        self.expect("\"")?;
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[at + 1..];
                    return Ok(out);
                }
                '\\' => out.push(match chars.next().ok_or(())?.1 {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'u' => {
                        let rest = chars.as_str().strip_prefix('{').ok_or(())?;
                        let (hex, _) = rest.split_once('}').ok_or(())?;
                        let code = u32::from_str_radix(hex, 16).map_err(|_| ())?;
                        // Skip `{hex}`.
                        chars.nth(hex.len() + 1);
                        char::from_u32(code).ok_or(())?
                    }
                    escaped => escaped,
                }),
                c => out.push(c),
            }
        }
        Err(())
    }
}

/// k8s-openapi's schemas of every kind in [`CODECS`].
struct Schemas {
    /// Definitions by upstream's name (`io.k8s.api.apps.v1.Deployment`).
    definitions: Map<String, Value>,
    /// The `$ref` of each kind, in [`CODECS`]'s order.
    roots: Vec<Value>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = SchemaGenerator::default();
        let roots = CODECS
            .iter()
            .map(|codec| (codec.register)(&mut generator).to_value())
            .collect();
        Schemas {
            definitions: generator.take_definitions(true),
            roots,
        }
    })
}

impl Schemas {
    /// Follows a `$ref` (bare, or alone in an `allOf`) to its definition.
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        let reference = schema
            .get("$ref")
            .or_else(|| schema.pointer("/allOf/0/$ref"));
        match reference
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit_once('/'))
        {
            Some((_, name)) => self.definitions.get(name).unwrap_or(&Value::Null),
            None => schema,
        }
    }

    /// Converts a printed value to upstream's JSON, guided by its schema (`null` when unknown).
    fn convert(&self, printed: &Printed, schema: &Value) -> Result<Value, ApiError> {
        let schema = self.resolve(schema);
        match printed {
            Printed::None => Ok(Value::Null),
            Printed::Some(inner) => self.convert(inner, schema),
            Printed::Str(s) => Ok(Value::String(s.clone())),
            Printed::Bool(b) => Ok(Value::Bool(*b)),
            Printed::Number(n) => number(n),
            Printed::List(items)
                if schema.get("format").and_then(Value::as_str) == Some("byte") =>
            {
                Ok(Value::String(BASE64.encode(bytes(items)?)))
            }
            Printed::List(items) => {
                let item_schema = schema.get("items").unwrap_or(&Value::Null);
                items
                    .iter()
                    .map(|item| self.convert(item, item_schema))
                    .collect()
            }
            Printed::Map(entries) => {
                let value_schema = schema.get("additionalProperties").unwrap_or(&Value::Null);
                let mut map = Map::new();
                for (key, value) in entries {
                    let Printed::Str(key) = key else {
                        return Err(ApiError::bad_request("protobuf map keys must be strings"));
                    };
                    map.insert(key.clone(), self.convert(value, value_schema)?);
                }
                Ok(Value::Object(map))
            }
            Printed::Struct { name, fields } => match name.as_str() {
                "Quantity" => Ok(Value::String(
                    string_field(fields, "string").unwrap_or("0").into(),
                )),
                "IntOrString" => int_or_string(fields),
                "Time" => time(fields, "%Y-%m-%dT%H:%M:%SZ"),
                "MicroTime" => time(fields, "%Y-%m-%dT%H:%M:%S.%6fZ"),
                "RawExtension" | "FieldsV1" => embedded_json(fields),
                _ => self.object(name, fields, schema),
            },
        }
    }

    /// A message with JSON fields named as the schema's properties.
    fn object(
        &self,
        struct_name: &str,
        fields: &[(String, Printed)],
        schema: &Value,
    ) -> Result<Value, ApiError> {
        let properties = schema.get("properties").and_then(Value::as_object);
        let mut object = Map::new();
        for (rust_name, value) in fields {
            let property = properties.and_then(|p| {
                p.iter()
                    .find(|(json_name, _)| same_name(json_name, rust_name))
            });
            let (json_name, field_schema) = match property {
                Some((json_name, field_schema)) => (json_name.clone(), field_schema),
                None => (lower_camel_case(rust_name), &Value::Null),
            };
            let omitted = match value {
                Printed::None => true,
                Printed::List(items) => items.is_empty(),
                Printed::Map(entries) => entries.is_empty(),
                Printed::Some(inner) => {
                    inner.is_scalar_zero() && !POINTER_FIELDS.contains(&(struct_name, &json_name))
                }
                _ => false,
            };
            if !omitted {
                let converted = self.convert(value, field_schema)?;
                object.insert(json_name, converted);
            }
        }
        Ok(Value::Object(object))
    }
}

/// Whether upstream's JSON name and prost's snake_case name are the same field
/// (`podIP` and `pod_ip`).
fn same_name(json_name: &str, rust_name: &str) -> bool {
    let mut json = json_name.chars().map(|c| c.to_ascii_lowercase());
    let mut rust = rust_name.chars().filter(|&c| c != '_');
    loop {
        match (json.next(), rust.next()) {
            (None, None) => return true,
            (a, b) if a != b => return false,
            _ => {}
        }
    }
}

/// `int_val` as `intVal`, for fields k8s-openapi does not know yet.
fn lower_camel_case(rust_name: &str) -> String {
    let mut words = rust_name.split('_');
    let mut out = words.next().unwrap_or_default().to_owned();
    for word in words {
        let mut chars = word.chars();
        out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        out.push_str(chars.as_str());
    }
    out
}

fn number(text: &str) -> Result<Value, ApiError> {
    let number = if let Ok(n) = text.parse::<i64>() {
        Some(Number::from(n))
    } else if let Ok(n) = text.parse::<u64>() {
        Some(Number::from(n))
    } else {
        text.parse::<f64>().ok().and_then(Number::from_f64)
    };
    number
        .map(Value::Number)
        .ok_or_else(|| ApiError::bad_request(format!("protobuf number {text} has no JSON form")))
}

fn bytes(items: &[Printed]) -> Result<Vec<u8>, ApiError> {
    items
        .iter()
        .map(|item| match item {
            Printed::Number(n) => n.parse::<u8>().ok(),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| ApiError::internal("protobuf bytes printed as something other than bytes"))
}

fn string_field<'p>(fields: &'p [(String, Printed)], name: &str) -> Option<&'p str> {
    match Printed::field(fields, name)? {
        Printed::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

fn integer_field(fields: &[(String, Printed)], name: &str) -> i64 {
    match Printed::field(fields, name) {
        Some(Printed::Number(n)) => n.parse().unwrap_or_default(),
        _ => 0,
    }
}

/// `{type, intVal, strVal}`: a number when `type` is 0 (Int), a string when it is 1 (String).
fn int_or_string(fields: &[(String, Printed)]) -> Result<Value, ApiError> {
    match integer_field(fields, "type") {
        0 => Ok(Value::from(integer_field(fields, "int_val"))),
        1 => Ok(Value::String(
            string_field(fields, "str_val").unwrap_or_default().into(),
        )),
        other => Err(ApiError::bad_request(format!(
            "impossible IntOrString.Type value: {other}"
        ))),
    }
}

/// `{seconds, nanos}` formatted in UTC; Go's zero time (an empty message) is `null`.
fn time(fields: &[(String, Printed)], format: &str) -> Result<Value, ApiError> {
    /// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    if Printed::field(fields, "seconds").is_none() && Printed::field(fields, "nanos").is_none() {
        return Ok(Value::Null);
    }
    let seconds = integer_field(fields, "seconds");
    let nanos = integer_field(fields, "nanos");
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Ok(Value::Null);
    }
    let timestamp = i32::try_from(nanos)
        .ok()
        .and_then(|nanos| jiff::Timestamp::new(seconds, nanos).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "protobuf time {seconds}s {nanos}ns is out of range"
            ))
        })?;
    Ok(Value::String(timestamp.strftime(format).to_string()))
}

/// `{raw}` holding JSON, embedded as is; no `raw` is `null`.
fn embedded_json(fields: &[(String, Printed)]) -> Result<Value, ApiError> {
    match Printed::field(fields, "raw") {
        None => Ok(Value::Null),
        Some(Printed::List(items)) => serde_json::from_slice(&bytes(items)?).map_err(|e| {
            ApiError::bad_request(format!("error decoding embedded JSON in protobuf: {e}"))
        }),
        Some(_) => Err(ApiError::internal(
            "protobuf raw bytes printed as something other than bytes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use proptest::prelude::*;
    use serde_json::json;

    /// Wraps an object as kubectl sends it: magic, then a `runtime.Unknown`.
    fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(object.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    /// ObjectMeta as Go's encoder writes it: every non-pointer field, the zero time included.
    fn metadata(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            generate_name: Some(String::new()),
            namespace: Some(namespace.into()),
            uid: Some(String::new()),
            resource_version: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        })
    }

    /// The JSON text (key order matters: it is Go's field order).
    fn decoded_text(body: &[u8]) -> String {
        decode_protobuf(body).unwrap().to_string()
    }

    fn labels(app: &str) -> std::collections::BTreeMap<String, String> {
        [("app".to_owned(), app.to_owned())].into()
    }

    #[test]
    fn namespace() {
        let namespace = core::Namespace {
            metadata: metadata("data", ""),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus {
                phase: Some(String::new()),
                ..Default::default()
            }),
        };
        assert_eq!(
            decoded_text(&body("v1", "Namespace", &namespace)),
            r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"data","creationTimestamp":null},"spec":{},"status":{}}"#
        );
    }

    /// `kubectl create deployment web --image=nginx --replicas=N`, as Go encodes it.
    fn deployment(replicas: i32) -> apps::Deployment {
        let container = core::Container {
            name: Some("nginx".into()),
            image: Some("nginx".into()),
            working_dir: Some(String::new()),
            resources: Some(core::ResourceRequirements::default()),
            termination_message_path: Some(String::new()),
            image_pull_policy: Some(String::new()),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        let mut template_metadata = metadata("", "");
        template_metadata.as_mut().unwrap().labels = labels("web");
        let mut deployment_metadata = metadata("web", "");
        deployment_metadata.as_mut().unwrap().labels = labels("web");
        apps::Deployment {
            metadata: deployment_metadata,
            spec: Some(apps::DeploymentSpec {
                replicas: Some(replicas),
                selector: Some(meta::LabelSelector {
                    match_labels: labels("web"),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: template_metadata,
                    spec: Some(core::PodSpec {
                        containers: vec![container],
                        restart_policy: Some(String::new()),
                        dns_policy: Some(String::new()),
                        service_account_name: Some(String::new()),
                        host_network: Some(false),
                        ..Default::default()
                    }),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: Some(String::new()),
                    rolling_update: None,
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus {
                replicas: Some(0),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deployment_as_kubectl_create_deployment_sends_it() {
        // `kubectl create deployment web --image=nginx --replicas=3 --dry-run=client -o json`.
        let expected = r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx","resources":{}}]}},"strategy":{}},"status":{}}"#;
        assert_eq!(
            decoded_text(&body("apps/v1", "Deployment", &deployment(3))),
            expected
        );
    }

    #[test]
    fn zero_replicas_are_kept() {
        // `replicas` is a pointer in Go: a zero there was asked for.
        let decoded = decode_protobuf(&body("apps/v1", "Deployment", &deployment(0))).unwrap();
        assert_eq!(decoded["spec"]["replicas"], json!(0));
        assert_eq!(decoded["status"], json!({}));
    }

    #[test]
    fn configmap_keeps_empty_values() {
        // `kubectl create configmap c --from-literal=a=b --from-literal=empty=`.
        let config_map = core::ConfigMap {
            metadata: metadata("c", ""),
            data: [
                ("a".to_owned(), "b".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            decoded_text(&body("v1", "ConfigMap", &config_map)),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","creationTimestamp":null},"data":{"a":"b","empty":""}}"#
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let secret = core::Secret {
            metadata: metadata("s", "data"),
            data: [
                ("bin".to_owned(), vec![0, 1, 254, 255]),
                ("empty".to_owned(), vec![]),
            ]
            .into(),
            r#type: Some("Opaque".into()),
            immutable: Some(false),
            ..Default::default()
        };
        assert_eq!(
            decoded_text(&body("v1", "Secret", &secret)),
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","namespace":"data","creationTimestamp":null},"immutable":false,"data":{"bin":"AAH+/w==","empty":""},"type":"Opaque"}"#
        );
    }

    fn service_port(name: &str, port: i32, target_port: IntOrString) -> core::ServicePort {
        core::ServicePort {
            name: Some(name.into()),
            protocol: Some("TCP".into()),
            app_protocol: None,
            port: Some(port),
            target_port: Some(target_port),
            node_port: Some(0),
        }
    }

    #[test]
    fn service_ports_with_int_and_string_target_ports() {
        // `kubectl create service clusterip s --tcp=80:8080`, plus a named target port.
        let service = core::Service {
            metadata: metadata("s", ""),
            spec: Some(core::ServiceSpec {
                ports: vec![
                    service_port(
                        "80-8080",
                        80,
                        IntOrString {
                            r#type: Some(0),
                            int_val: Some(8080),
                            str_val: Some(String::new()),
                        },
                    ),
                    service_port(
                        "web",
                        81,
                        IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: Some("http".into()),
                        },
                    ),
                ],
                selector: labels("s"),
                cluster_ip: Some(String::new()),
                r#type: Some("ClusterIP".into()),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus::default()),
                conditions: vec![],
            }),
        };
        assert_eq!(
            decoded_text(&body("v1", "Service", &service)),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s","creationTimestamp":null},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080},{"name":"web","protocol":"TCP","port":81,"targetPort":"http"}],"selector":{"app":"s"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#
        );
    }

    #[test]
    fn quantities_times_and_acronyms() {
        use k8s_pb::apimachinery::pkg::api::resource::Quantity;
        let pod = core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: Some("p".into()),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(5),
                }),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                containers: vec![core::Container {
                    name: Some("c".into()),
                    resources: Some(core::ResourceRequirements {
                        limits: [(
                            "memory".to_owned(),
                            Quantity {
                                string: Some("1Gi".into()),
                            },
                        )]
                        .into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                termination_grace_period_seconds: Some(0),
                host_ipc: Some(true),
                ..Default::default()
            }),
            status: Some(core::PodStatus {
                pod_ip: Some("10.0.0.1".into()),
                pod_ips: vec![core::PodIp {
                    ip: Some("10.0.0.1".into()),
                }],
                ..Default::default()
            }),
        };
        assert_eq!(
            decoded_text(&body("v1", "Pod", &pod)),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","creationTimestamp":"2023-11-14T22:13:20Z"},"spec":{"containers":[{"name":"c","resources":{"limits":{"memory":"1Gi"}}}],"terminationGracePeriodSeconds":0,"hostIPC":true},"status":{"podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"}]}}"#
        );
    }

    #[test]
    fn micro_time() {
        let event = k8s_pb::api::events::v1::Event {
            metadata: metadata("e", "default"),
            event_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        };
        let decoded = decode_protobuf(&body("events.k8s.io/v1", "Event", &event)).unwrap();
        assert_eq!(decoded["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    }

    #[test]
    fn raw_extension_is_embedded_json() {
        use k8s_pb::apimachinery::pkg::runtime::RawExtension;
        let revision = apps::ControllerRevision {
            metadata: metadata("r", "default"),
            data: Some(RawExtension {
                raw: Some(br#"{"spec":{"a":1}}"#.to_vec()),
            }),
            revision: Some(2),
        };
        let decoded = decode_protobuf(&body("apps/v1", "ControllerRevision", &revision)).unwrap();
        assert_eq!(decoded["data"], json!({"spec": {"a": 1}}));
        assert_eq!(decoded["revision"], json!(2));
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let namespace = body("v1", "Namespace", &core::Namespace::default());
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty data"),
            (
                b"{}",
                "provided data does not appear to be a protobuf message, expected prefix [107, 56, 115, 0]",
            ),
            (MAGIC, "empty body"),
            (
                &body("v1", "Nope", &core::Namespace::default()),
                r#"no kind "Nope" is registered for version "v1""#,
            ),
            (
                &body("v2", "Namespace", &core::Namespace::default()),
                r#"no kind "Namespace" is registered for version "v2""#,
            ),
            (
                &namespace[..namespace.len() - 1],
                "error decoding protobuf runtime.Unknown",
            ),
        ];
        for (body, message) in cases {
            let error = decode_protobuf(body).unwrap_err();
            assert_eq!(error.code, 400, "{body:?}");
            assert!(
                error.message.starts_with(message),
                "{} does not start with {message}",
                error.message
            );
        }
    }

    #[test]
    fn every_served_kind_decodes() {
        for resource in crate::RESOURCES {
            let api_version = if resource.group.is_empty() {
                resource.version.to_owned()
            } else {
                format!("{}/{}", resource.group, resource.version)
            };
            let unknown = Unknown {
                type_meta: Some(TypeMeta {
                    api_version: Some(api_version.clone()),
                    kind: Some(resource.kind.into()),
                }),
                raw: Some(Vec::new()),
                ..Default::default()
            };
            let decoded = decode_protobuf(&[MAGIC, &unknown.encode_to_vec()].concat()).unwrap();
            assert_eq!(
                decoded,
                json!({"kind": resource.kind, "apiVersion": api_version})
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(error) = decode_protobuf(&[MAGIC, &bytes].concat()) {
                prop_assert_eq!(error.code, 400);
            }
        }

        #[test]
        fn arbitrary_objects_never_panic(kind in 0..CODECS.len(), raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let codec = &CODECS[kind];
            let unknown = Unknown {
                type_meta: Some(TypeMeta { api_version: Some(codec.api_version.into()), kind: Some(codec.kind.into()) }),
                raw: Some(raw),
                ..Default::default()
            };
            if let Err(error) = decode_protobuf(&[MAGIC, &unknown.encode_to_vec()].concat()) {
                prop_assert_eq!(error.code, 400, "{}", error.message);
            }
        }

        #[test]
        fn any_string_survives(key in "[a-z.]{1,8}", value in any::<String>()) {
            // The `Debug` escapes of every character must read back exactly.
            let config_map = core::ConfigMap { data: [(key.clone(), value.clone())].into(), ..Default::default() };
            let decoded = decode_protobuf(&body("v1", "ConfigMap", &config_map)).unwrap();
            prop_assert_eq!(&decoded["data"][&key], &json!(value));
        }
    }
}

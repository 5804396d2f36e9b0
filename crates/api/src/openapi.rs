//! OpenAPI v3 documents, as served under `/openapi/v3`.
//!
//! kubectl reads them for two things: `create`/`apply` look for a PATCH operation carrying the
//! object's `x-kubernetes-group-version-kind` and a `fieldValidation` parameter (then they
//! leave validation to the server), and `kubectl explain` walks `components.schemas` from the
//! schema whose `x-kubernetes-group-version-kind` matches the GVK found on the resource's paths.
//!
//! Schemas come from k8s-openapi's `schemars` implementations, which carry upstream's
//! definition names (`io.k8s.api.apps.v1.Deployment`) and descriptions. schemars' OpenAPI 3
//! settings already write references as `#/components/schemas/<name>` and wrap a `$ref` that
//! has siblings (a field's own description) in `allOf`, exactly as upstream's documents do, so
//! `kubectl explain deployment.spec.strategy` prints both the field's and the type's
//! description. Paths are derived from [`RESOURCES`].
//!
//! Known differences from upstream: k8s-openapi carries no `x-kubernetes-patch-*` extensions and
//! no `default` markers, and list schemas (which k8s-openapi does not describe) have no
//! descriptions of their own.
//!
//! Documents are built once, on the first request (building them all takes a few
//! milliseconds, which the API server should not spend at start-up), then served from memory.

use crate::resources::{RESOURCES, ResourceInfo, Subresource};
use k8s_openapi::ListableResource;
use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery, events, policy, storage};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// One group-version's OpenAPI v3 document, ready to serve.
#[derive(Debug)]
pub struct Document {
    /// The document itself.
    pub json: Value,
    /// The document serialized as JSON, as sent on the wire.
    pub body: Vec<u8>,
    /// A content hash of `body`, used in the index's `serverRelativeURL` (kubectl caches by it).
    pub hash: String,
}

/// The index served at `/openapi/v3`: every group-version path with the URL of its document.
pub fn index() -> Value {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The document of one group-version, by its index path (`api/v1`, `apis/apps/v1`).
pub fn document(path: &str) -> Option<Arc<Document>> {
    documents().get(path).cloned()
}

/// All documents, keyed by index path; built on first use.
fn documents() -> &'static BTreeMap<String, Arc<Document>> {
    static DOCUMENTS: OnceLock<BTreeMap<String, Arc<Document>>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut group_versions: Vec<(&str, &str)> = Vec::new();
        for r in RESOURCES {
            if !group_versions.contains(&(r.group, r.version)) {
                group_versions.push((r.group, r.version));
            }
        }
        group_versions
            .into_iter()
            .map(|(group, version)| {
                let json = build_document(group, version);
                let body = serde_json::to_vec(&json).expect("a JSON value always serializes");
                let hash = content_hash(&body);
                (
                    index_path(group, version),
                    Arc::new(Document { json, body, hash }),
                )
            })
            .collect()
    })
}

/// `api/v1` or `apis/<group>/<version>`: the document's path below `/openapi/v3/`.
fn index_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable 64-bit FNV-1a hash in upper-case hex (upstream uses SHA-512; kubectl only needs
/// the value to change when the content does).
fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016X}")
}

/// A Rust type whose schema describes a kind that the documents mention.
struct TypedKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// The kind of its list, when it is served as a resource.
    list_kind: Option<&'static str>,
    /// Upstream's definition name.
    schema_name: fn() -> Cow<'static, str>,
    /// Adds the schema (and everything it references) to a generator; returns its `$ref`.
    register: fn(&mut SchemaGenerator) -> Schema,
}

/// A served resource's type.
const fn listable<T: ListableResource + JsonSchema>() -> TypedKind {
    TypedKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: Some(T::LIST_KIND),
        schema_name: T::schema_name,
        register: SchemaGenerator::subschema_for::<T>,
    }
}

/// A type only taken and returned by subresources.
const fn plain<T: k8s_openapi::Resource + JsonSchema>() -> TypedKind {
    TypedKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: None,
        schema_name: T::schema_name,
        register: SchemaGenerator::subschema_for::<T>,
    }
}

/// Every kind that [`RESOURCES`] serves or that its subresources take.
static TYPED_KINDS: &[TypedKind] = &[
    listable::<core::v1::Pod>(),
    listable::<core::v1::Service>(),
    listable::<core::v1::Namespace>(),
    listable::<core::v1::Node>(),
    listable::<core::v1::Event>(),
    listable::<core::v1::Endpoints>(),
    listable::<core::v1::ConfigMap>(),
    listable::<core::v1::Secret>(),
    listable::<core::v1::ServiceAccount>(),
    listable::<core::v1::PersistentVolume>(),
    listable::<core::v1::PersistentVolumeClaim>(),
    listable::<apps::v1::Deployment>(),
    listable::<apps::v1::ReplicaSet>(),
    listable::<apps::v1::StatefulSet>(),
    listable::<apps::v1::DaemonSet>(),
    listable::<apps::v1::ControllerRevision>(),
    listable::<coordination::v1::Lease>(),
    listable::<discovery::v1::EndpointSlice>(),
    listable::<events::v1::Event>(),
    listable::<storage::v1::StorageClass>(),
    plain::<autoscaling::v1::Scale>(),
    plain::<core::v1::Binding>(),
    plain::<policy::v1::Eviction>(),
];

fn typed_kind(group: &str, version: &str, kind: &str) -> Option<&'static TypedKind> {
    TYPED_KINDS
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// The `#/components/schemas/...` reference to a definition.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Schemas of one document: generated definitions plus what k8s-openapi lacks (lists, GVKs).
struct Schemas {
    generator: SchemaGenerator,
    /// `(definition name, its GVK)` of every top-level kind added.
    kinds: Vec<(String, Value)>,
    /// List schemas, built here because k8s-openapi has no schema for `List<T>`.
    lists: Vec<(String, Value)>,
}

impl Schemas {
    fn new() -> Self {
        let mut generator = SchemaSettings::openapi3().into_generator();
        for common in [
            SchemaGenerator::subschema_for::<meta::Status>,
            SchemaGenerator::subschema_for::<meta::DeleteOptions>,
            SchemaGenerator::subschema_for::<meta::Patch>,
            SchemaGenerator::subschema_for::<meta::ListMeta>,
        ] {
            common(&mut generator);
        }
        let kinds = vec![(
            meta::Status::schema_name().into_owned(),
            gvk("", "v1", "Status"),
        )];
        Self {
            generator,
            kinds,
            lists: Vec::new(),
        }
    }

    /// Adds a kind's schema (once) and returns its definition name.
    fn add(&mut self, typed: &TypedKind) -> String {
        let name = (typed.schema_name)().into_owned();
        if !self.kinds.iter().any(|(n, _)| *n == name) {
            (typed.register)(&mut self.generator);
            self.kinds
                .push((name.clone(), gvk(typed.group, typed.version, typed.kind)));
        }
        name
    }

    /// Adds the list schema of a served kind and returns its definition name.
    fn add_list(&mut self, typed: &TypedKind, item_name: &str) -> String {
        let list_kind = typed.list_kind.expect("served kinds are listable");
        let name = format!(
            "{}{}",
            item_name.strip_suffix(typed.kind).unwrap_or(item_name),
            list_kind
        );
        let item = &self.generator.definitions()[item_name]["properties"];
        let schema = json!({
            "properties": {
                "apiVersion": item["apiVersion"],
                "items": { "items": schema_ref(item_name), "type": "array" },
                "kind": item["kind"],
                "metadata": {
                    "allOf": [schema_ref(&meta::ListMeta::schema_name())],
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                },
            },
            "required": ["items"],
            "type": "object",
        });
        self.lists.push((name.clone(), schema));
        self.kinds
            .push((name.clone(), gvk(typed.group, typed.version, list_kind)));
        name
    }

    /// The finished `components.schemas`.
    fn finish(mut self) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(true);
        definitions.extend(self.lists);
        for (name, gvk) in self.kinds {
            let Some(Value::Object(schema)) = definitions.get_mut(&name) else {
                continue;
            };
            // k8s-openapi marks `metadata` required (it is not an `Option`); upstream does not.
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|field| field != "metadata");
                if required.is_empty() {
                    schema.remove("required");
                }
            }
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
        definitions.sort_keys();
        definitions
    }
}

/// The document of one group-version.
fn build_document(group: &str, version: &str) -> Value {
    let mut schemas = Schemas::new();
    let mut paths = Map::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let typed = typed_kind(group, version, resource.kind)
            .expect("every served kind has a typed schema");
        let item = schemas.add(typed);
        let list = schemas.add_list(typed, &item);
        resource_paths(resource, &item, &list, &mut schemas, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": {
            "schemas": schemas.finish(),
            "securitySchemes": {
                "BearerToken": { "description": "Bearer Token authentication", "in": "header", "name": "authorization", "type": "apiKey" },
            },
        },
    })
}

/// What an operation does; decides its verb, parameters, body and responses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
    /// A streaming subresource (`exec`) reached with GET or POST.
    Connect(&'static str),
}

impl Action {
    /// The `x-kubernetes-action`.
    fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "post",
            Self::DeleteCollection => "deletecollection",
            Self::Read => "get",
            Self::Replace => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Connect(_) => "connect",
        }
    }

    /// The HTTP method, lower case as OpenAPI keys operations.
    fn method(self) -> &'static str {
        match self {
            Self::List | Self::Read => "get",
            Self::Create => "post",
            Self::Replace => "put",
            Self::Patch => "patch",
            Self::Delete | Self::DeleteCollection => "delete",
            Self::Connect(method) => method,
        }
    }

    /// The verb that starts upstream's `operationId`.
    fn id_verb(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "create",
            Self::DeleteCollection => "deleteCollection",
            Self::Read => "read",
            Self::Replace => "replace",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Connect(_) => "connect",
        }
    }
}

/// Where an operation lives relative to a resource.
#[derive(Clone, Copy)]
struct Target<'a> {
    resource: &'a ResourceInfo,
    /// Whether the path has a `{namespace}` segment.
    namespaced: bool,
    /// The subresource, if any.
    subresource: Option<Subresource>,
}

impl Target<'_> {
    /// Upstream's `operationId`, e.g. `patchAppsV1NamespacedDeploymentScale`.
    fn operation_id(&self, action: Action) -> String {
        let group = self
            .resource
            .group
            .split('.')
            .next()
            .filter(|g| !g.is_empty())
            .unwrap_or("core");
        let scope = if self.namespaced { "Namespaced" } else { "" };
        let sub = self
            .subresource
            .map(|s| capitalize(s.name()))
            .unwrap_or_default();
        let all = if self.resource.namespaced && !self.namespaced {
            "ForAllNamespaces"
        } else {
            ""
        };
        let kind = self.resource.kind;
        // Connect operations name their method after the version: `connectCoreV1GetNamespacedPodExec`.
        let method = if let Action::Connect(method) = action {
            capitalize(method)
        } else {
            String::new()
        };
        let (verb, group, version) = (
            action.id_verb(),
            capitalize(group),
            capitalize(self.resource.version),
        );
        format!("{verb}{group}{version}{method}{scope}{kind}{sub}{all}")
    }

    /// Upstream's operation description, e.g. `partially update status of the specified Pod`.
    fn description(&self, action: Action) -> String {
        let kind = self.resource.kind;
        let article = article(kind);
        match (self.subresource, action) {
            (None, Action::List) => format!("list or watch objects of kind {kind}"),
            (None, Action::Create) => format!("create {article}{kind}"),
            (None, Action::DeleteCollection) => format!("delete collection of {kind}"),
            (None, Action::Read) => format!("read the specified {kind}"),
            (None, Action::Replace) => format!("replace the specified {kind}"),
            (None, Action::Patch) => format!("partially update the specified {kind}"),
            (None, Action::Delete) => format!("delete {article}{kind}"),
            (Some(sub), Action::Create) => format!("create {} of {article}{kind}", sub.name()),
            (Some(sub), Action::Read) => format!("read {} of the specified {kind}", sub.name()),
            (Some(sub), Action::Replace) => {
                format!("replace {} of the specified {kind}", sub.name())
            }
            (Some(sub), Action::Patch) => {
                format!("partially update {} of the specified {kind}", sub.name())
            }
            (Some(sub), Action::Connect(method)) => {
                format!(
                    "connect {} requests to {} of {kind}",
                    method.to_uppercase(),
                    sub.name()
                )
            }
            (_, other) => format!("{} {kind}", other.name()),
        }
    }
}

/// The article (with its trailing space) upstream's `GetArticleForNoun` puts before a kind:
/// none for plurals such as `Endpoints`, `an` before a vowel, otherwise `a`.
fn article(kind: &str) -> &'static str {
    if kind.ends_with('s') && !kind.ends_with("ss") {
        ""
    } else if kind.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) {
        "an "
    } else {
        "a "
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Adds the collection, item and subresource paths of one resource.
fn resource_paths(
    resource: &ResourceInfo,
    item: &str,
    list: &str,
    schemas: &mut Schemas,
    paths: &mut Map<String, Value>,
) {
    let prefix = format!("/{}", index_path(resource.group, resource.version));
    let gvk = gvk(resource.group, resource.version, resource.kind);
    let deletes_collections = resource.verbs().contains(&"deletecollection");
    let scoped = |namespaced: bool| {
        let namespace = if namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        (
            format!("{prefix}{namespace}/{}", resource.plural),
            Target {
                resource,
                namespaced,
                subresource: None,
            },
        )
    };
    let (collection, target) = scoped(resource.namespaced);
    let mut collection_actions = vec![Action::List, Action::Create];
    if deletes_collections {
        collection_actions.push(Action::DeleteCollection);
    }
    let ops = operations(&target, &collection_actions, &gvk, item, list);
    paths.insert(collection.clone(), path_item(ops, &target, false));

    let item_path = format!("{collection}/{{name}}");
    let item_actions = [Action::Read, Action::Replace, Action::Patch, Action::Delete];
    paths.insert(
        item_path.clone(),
        path_item(
            operations(&target, &item_actions, &gvk, item, list),
            &target,
            true,
        ),
    );

    if resource.namespaced {
        let (all, target) = scoped(false);
        paths.insert(
            all,
            path_item(
                operations(&target, &[Action::List], &gvk, item, list),
                &target,
                false,
            ),
        );
    }

    for &sub in resource.subresources {
        let target = Target {
            subresource: Some(sub),
            ..target
        };
        let (body, sub_gvk) = match sub.response_kind() {
            None => (item.to_string(), gvk.clone()),
            Some((group, version, kind)) => {
                let body = typed_kind(group, version, kind)
                    .map(|t| schemas.add(t))
                    .unwrap_or_default();
                (body, self::gvk(group, version, kind))
            }
        };
        let actions: Vec<Action> = match sub {
            Subresource::Exec | Subresource::PortForward => {
                vec![Action::Connect("get"), Action::Connect("post")]
            }
            _ => sub
                .verbs()
                .iter()
                .map(|verb| match *verb {
                    "create" => Action::Create,
                    "update" => Action::Replace,
                    "patch" => Action::Patch,
                    _ => Action::Read,
                })
                .collect(),
        };
        let ops = operations(&target, &actions, &sub_gvk, &body, list);
        paths.insert(
            format!("{item_path}/{}", sub.name()),
            path_item(ops, &target, true),
        );
    }
}

/// A path item: its operations plus the parameters shared by all of them.
fn path_item(mut operations: Map<String, Value>, target: &Target, named: bool) -> Value {
    let mut parameters = Vec::new();
    if named {
        let kind = target.resource.kind;
        let what = match target.subresource {
            Some(Subresource::Binding) => "Binding".to_string(),
            Some(Subresource::Eviction) => "Eviction".to_string(),
            Some(Subresource::Exec) => "PodExecOptions".to_string(),
            Some(Subresource::PortForward) => "PodPortForwardOptions".to_string(),
            Some(Subresource::Log) => "Pod".to_string(),
            _ => kind.to_string(),
        };
        parameters.push(path_param("name", &format!("name of the {what}")));
    }
    if target.namespaced {
        parameters.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    if !matches!(
        target.subresource,
        Some(Subresource::Exec | Subresource::Log | Subresource::PortForward)
    ) {
        parameters.push(query_param("pretty"));
    }
    operations.insert("parameters".into(), Value::Array(parameters));
    Value::Object(operations)
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": { "type": "string", "uniqueItems": true } })
}

/// A query parameter with upstream's description and type.
fn query_param(name: &str) -> Value {
    let (description, kind) = match name {
        "pretty" => (
            "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
            "string",
        ),
        "dryRun" => (
            "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
            "string",
        ),
        "fieldManager" => (
            "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
            "string",
        ),
        "fieldValidation" => (
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
            "string",
        ),
        "labelSelector" => (
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
            "string",
        ),
        "fieldSelector" => (
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
            "string",
        ),
        "watch" => (
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
            "boolean",
        ),
        "allowWatchBookmarks" => (
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
            "boolean",
        ),
        "force" | "orphanDependents" | "sendInitialEvents" | "follow" | "previous"
        | "timestamps" | "stdin" | "stdout" | "stderr" | "tty" => ("", "boolean"),
        "limit" | "timeoutSeconds" | "gracePeriodSeconds" | "tailLines" | "sinceSeconds"
        | "limitBytes" => ("", "integer"),
        _ => ("", "string"),
    };
    let mut param =
        json!({ "name": name, "in": "query", "schema": { "type": kind, "uniqueItems": true } });
    if !description.is_empty() {
        param["description"] = description.into();
    }
    param
}

/// The query parameters an action takes (beyond the path item's shared ones).
fn action_params(action: Action, target: &Target) -> &'static [&'static str] {
    const LIST: &[&str] = &[
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    ];
    const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
    const PATCH: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
    const DELETE: &[&str] = &[
        "dryRun",
        "gracePeriodSeconds",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "orphanDependents",
        "propagationPolicy",
    ];
    const DELETE_COLLECTION: &[&str] = &[
        "continue",
        "dryRun",
        "fieldSelector",
        "gracePeriodSeconds",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "labelSelector",
        "limit",
        "orphanDependents",
        "propagationPolicy",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
    ];
    const LOG: &[&str] = &[
        "container",
        "follow",
        "insecureSkipTLSVerifyBackend",
        "limitBytes",
        "pretty",
        "previous",
        "sinceSeconds",
        "stream",
        "tailLines",
        "timestamps",
    ];
    const EXEC: &[&str] = &["command", "container", "stderr", "stdin", "stdout", "tty"];
    const PORT_FORWARD: &[&str] = &["ports"];
    match (target.subresource, action) {
        (Some(Subresource::Log), _) => LOG,
        (Some(Subresource::Exec), _) => EXEC,
        (Some(Subresource::PortForward), _) => PORT_FORWARD,
        (_, Action::List) => LIST,
        (_, Action::Create | Action::Replace) => WRITE,
        (_, Action::Patch) => PATCH,
        (_, Action::Delete) => DELETE,
        (_, Action::DeleteCollection) => DELETE_COLLECTION,
        (_, Action::Read | Action::Connect(_)) => &[],
    }
}

/// `content` serving one schema in the media types the server speaks.
fn content(schema: Value) -> Value {
    json!({
        "application/json": { "schema": schema },
        "application/vnd.kubernetes.protobuf": { "schema": schema },
        "application/yaml": { "schema": schema },
    })
}

/// The operations of one path item, keyed by lower-case method.
fn operations(
    target: &Target,
    actions: &[Action],
    gvk: &Value,
    body: &str,
    list: &str,
) -> Map<String, Value> {
    let streams_text = matches!(
        target.subresource,
        Some(Subresource::Log | Subresource::Exec | Subresource::PortForward)
    );
    let object = if streams_text {
        json!({ "type": "string" })
    } else {
        schema_ref(body)
    };
    let status = schema_ref(&meta::Status::schema_name());
    let ok = |schema: &Value| json!({ "description": "OK", "content": content(schema.clone()) });
    let mut out = Map::new();
    for &action in actions {
        let mut op = json!({
            "tags": [tag(target.resource)],
            "description": target.description(action),
            "operationId": target.operation_id(action),
        });
        let params: Vec<Value> = action_params(action, target)
            .iter()
            .map(|p| query_param(p))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let mut responses = Map::new();
        match action {
            Action::List => {
                responses.insert("200".into(), ok(&schema_ref(list)));
            }
            Action::Create | Action::Replace => {
                op["requestBody"] =
                    json!({ "content": { "*/*": { "schema": object } }, "required": true });
                responses.insert("200".into(), ok(&object));
                responses.insert(
                    "201".into(),
                    json!({ "description": "Created", "content": content(object.clone()) }),
                );
                if action == Action::Create {
                    responses.insert(
                        "202".into(),
                        json!({ "description": "Accepted", "content": content(object.clone()) }),
                    );
                }
            }
            Action::Patch => {
                let patch = json!({ "schema": schema_ref(&meta::Patch::schema_name()) });
                op["requestBody"] = json!({
                    "content": {
                        "application/apply-patch+yaml": patch,
                        "application/json-patch+json": patch,
                        "application/merge-patch+json": patch,
                        "application/strategic-merge-patch+json": patch,
                    },
                    "required": true,
                });
                responses.insert("200".into(), ok(&object));
                responses.insert(
                    "201".into(),
                    json!({ "description": "Created", "content": content(object.clone()) }),
                );
            }
            Action::Delete | Action::DeleteCollection => {
                let options = schema_ref(&meta::DeleteOptions::schema_name());
                op["requestBody"] = json!({ "content": { "*/*": { "schema": options } } });
                let deleted = if action == Action::Delete {
                    &object
                } else {
                    &status
                };
                responses.insert("200".into(), ok(deleted));
                if action == Action::Delete {
                    responses.insert(
                        "202".into(),
                        json!({ "description": "Accepted", "content": content(object.clone()) }),
                    );
                }
            }
            Action::Read | Action::Connect(_) if streams_text => {
                responses.insert(
                    "200".into(),
                    json!({ "description": "OK", "content": { "*/*": { "schema": object } } }),
                );
            }
            Action::Read | Action::Connect(_) => {
                responses.insert("200".into(), ok(&object));
            }
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        op["responses"] = Value::Object(responses);
        op["x-kubernetes-action"] = action.name().into();
        op["x-kubernetes-group-version-kind"] = gvk.clone();
        out.insert(action.method().into(), op);
    }
    out
}

/// Upstream's operation tag, e.g. `apps_v1`, `core_v1`, `coordination_v1`.
fn tag(resource: &ResourceInfo) -> String {
    let group = resource
        .group
        .split('.')
        .next()
        .filter(|g| !g.is_empty())
        .unwrap_or("core");
    format!("{group}_{}", resource.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn index_lists_every_group_version_with_its_hash() {
        let index = index();
        let paths = index["paths"].as_object().unwrap();
        let expected = [
            "api/v1",
            "apis/apps/v1",
            "apis/coordination.k8s.io/v1",
            "apis/discovery.k8s.io/v1",
            "apis/events.k8s.io/v1",
            "apis/storage.k8s.io/v1",
        ];
        let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
        listed.sort_unstable();
        assert_eq!(listed, expected);
        let apps = document("apis/apps/v1").unwrap();
        assert_eq!(
            paths["apis/apps/v1"]["serverRelativeURL"],
            format!("/openapi/v3/apis/apps/v1?hash={}", apps.hash)
        );
        assert_eq!(
            apps.hash,
            content_hash(&serde_json::to_vec(&apps.json).unwrap())
        );
        assert!(document("apis/batch/v1").is_none());
    }

    #[test]
    fn deployment_patch_declares_gvk_and_field_validation() {
        let doc = document("apis/apps/v1").unwrap();
        let patch =
            &doc.json["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(
            patch["description"],
            "partially update the specified Deployment"
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            params,
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        let post = &doc.json["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(
            post["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            post["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let scale = &doc.json["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["patch"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        let all = &doc.json["paths"]["/apis/apps/v1/deployments"]["get"];
        assert_eq!(all["operationId"], "listAppsV1DeploymentForAllNamespaces");
    }

    #[test]
    fn deployment_schema_describes_spec_strategy() {
        let doc = document("apis/apps/v1").unwrap();
        let schemas = &doc.json["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["description"],
            "Deployment enables declarative updates for Pods and ReplicaSets."
        );
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(
            deployment.get("required").is_none(),
            "upstream does not require metadata"
        );
        assert_eq!(
            deployment["properties"]["spec"]["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}])
        );
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["description"],
            "The deployment strategy to use to replace existing pods with new ones."
        );
        assert_eq!(
            strategy["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
        );
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentStrategy"]["description"],
            "DeploymentStrategy describes how to replace existing pods with new ones."
        );
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentSpec"]["required"],
            json!(["selector", "template"])
        );
        let list = &schemas["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        assert_eq!(list["required"], json!(["items"]));
    }

    #[test]
    fn core_paths_cover_cluster_scoped_and_subresources() {
        let doc = document("api/v1").unwrap();
        let paths = &doc.json["paths"];
        assert_eq!(
            paths["/api/v1/namespaces/{name}"]["get"]["operationId"],
            "readCoreV1Namespace"
        );
        assert!(
            paths["/api/v1/namespaces"].get("delete").is_none(),
            "namespaces have no deletecollection"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods"]["post"]["description"],
            "create a Pod"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/endpoints/{name}"]["delete"]["description"],
            "delete Endpoints"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/events"]["post"]["description"],
            "create an Event"
        );
        let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            json!({"group": "policy", "kind": "Eviction", "version": "v1"})
        );
        assert_eq!(eviction["operationId"], "createCoreV1NamespacedPodEviction");
        let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"];
        assert_eq!(exec["operationId"], "connectCoreV1PostNamespacedPodExec");
        assert_eq!(exec["description"], "connect POST requests to exec of Pod");
        let schemas = &doc.json["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]["x-kubernetes-group-version-kind"]
                [0]["kind"],
            "Status"
        );
    }

    #[test]
    fn every_ref_resolves() {
        for (path, doc) in documents() {
            let schemas = doc.json["components"]["schemas"].as_object().unwrap();
            let mut all = Vec::new();
            refs(&doc.json, &mut all);
            assert!(!all.is_empty());
            for r in all {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{path}: foreign ref {r}"));
                assert!(schemas.contains_key(name), "{path}: unresolved {r}");
            }
        }
    }
}

//! Server-side printing: the columns and cells of a `meta.k8s.io/v1` Table, as upstream's
//! `pkg/printers/internalversion` computes them.
//!
//! kubectl 1.32 has no client-side printers: what `kubectl get` shows is exactly what these
//! functions return. The API server always prints with upstream's `Wide: true`, so every row
//! carries the cells of the `priority: 1` columns too and kubectl hides them unless `-o wide`.

mod apps;
mod core;
mod docs;
mod duration;
mod events;
mod format;
mod network;
mod pod;
mod storage;

pub use duration::human_duration;

use jiff::Timestamp;
use serde_json::{Value, json};

/// One column of a Table (`TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Human-readable name; kubectl upper-cases it for the header.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean`, `number` or `date`.
    pub kind: &'static str,
    /// OpenAPI format hint, e.g. `name` for the column holding the object name.
    pub format: &'static str,
    /// What the column shows, as upstream describes it.
    pub description: &'static str,
    /// 0 for columns always shown; 1 for those `kubectl get -o wide` adds.
    pub priority: i32,
}

impl Column {
    /// A string column shown by default.
    const fn string(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            format: "",
            description,
            priority: 0,
        }
    }

    /// An integer column shown by default.
    const fn integer(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: "integer",
            format: "",
            description,
            priority: 0,
        }
    }

    /// A string column only `-o wide` shows.
    const fn wide(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            format: "",
            description,
            priority: 1,
        }
    }
}

/// The `Name` column that starts almost every table.
const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: docs::META_NAME,
    priority: 0,
};
/// The `Age` column, rendered from `metadata.creationTimestamp`.
const AGE: Column = Column::string("Age", docs::META_CREATION);
/// The `Containers` column of workloads (`-o wide`).
const CONTAINERS: Column = Column::wide("Containers", "Names of each container in the template.");
/// The `Images` column of workloads (`-o wide`).
const IMAGES: Column = Column::wide(
    "Images",
    "Images referenced by each container in the template.",
);

/// Upstream's default table convertor, for kinds without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        description: docs::META_CREATION,
        priority: 0,
    },
];

/// The cells of one row, computed from a stored object at a given time.
type RowFn = fn(&Value, Timestamp) -> Vec<Value>;

/// The printer of one kind.
struct Printer {
    group: &'static str,
    kind: &'static str,
    columns: &'static [Column],
    row: RowFn,
}

impl Printer {
    const fn new(
        group: &'static str,
        kind: &'static str,
        columns: &'static [Column],
        row: RowFn,
    ) -> Self {
        Self {
            group,
            kind,
            columns,
            row,
        }
    }
}

/// Every kind with its own printer; both Event kinds share one, as upstream converts
/// `events.k8s.io` Events to the core type before printing.
#[rustfmt::skip]
static PRINTERS: &[Printer] = &[
    Printer::new("", "Pod",                           pod::COLUMNS, pod::row),
    Printer::new("", "Service",                       network::SERVICE_COLUMNS, network::service_row),
    Printer::new("", "Endpoints",                     network::ENDPOINTS_COLUMNS, network::endpoints_row),
    Printer::new("", "Node",                          core::NODE_COLUMNS, core::node_row),
    Printer::new("", "Namespace",                     core::NAMESPACE_COLUMNS, core::namespace_row),
    Printer::new("", "ConfigMap",                     core::CONFIGMAP_COLUMNS, core::configmap_row),
    Printer::new("", "Secret",                        core::SECRET_COLUMNS, core::secret_row),
    Printer::new("", "ServiceAccount",                core::SERVICEACCOUNT_COLUMNS, core::serviceaccount_row),
    Printer::new("", "Event",                         events::COLUMNS, events::core_row),
    Printer::new("events.k8s.io", "Event",            events::COLUMNS, events::events_v1_row),
    Printer::new("", "PersistentVolume",              storage::PV_COLUMNS, storage::pv_row),
    Printer::new("", "PersistentVolumeClaim",         storage::PVC_COLUMNS, storage::pvc_row),
    Printer::new("storage.k8s.io", "StorageClass",    storage::STORAGECLASS_COLUMNS, storage::storageclass_row),
    Printer::new("apps", "Deployment",                apps::DEPLOYMENT_COLUMNS, apps::deployment_row),
    Printer::new("apps", "ReplicaSet",                apps::REPLICASET_COLUMNS, apps::replicaset_row),
    Printer::new("apps", "StatefulSet",               apps::STATEFULSET_COLUMNS, apps::statefulset_row),
    Printer::new("apps", "DaemonSet",                 apps::DAEMONSET_COLUMNS, apps::daemonset_row),
    Printer::new("apps", "ControllerRevision",        apps::CONTROLLERREVISION_COLUMNS, apps::controllerrevision_row),
    Printer::new("coordination.k8s.io", "Lease",      core::LEASE_COLUMNS, core::lease_row),
    Printer::new("discovery.k8s.io", "EndpointSlice", network::ENDPOINTSLICE_COLUMNS, network::endpointslice_row),
];

fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    PRINTERS.iter().find(|p| p.group == group && p.kind == kind)
}

/// The columns of a Table of `kind` objects in API group `group` (empty for core); kinds
/// without a printer get upstream's default `Name`, `Created At`.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    printer(group, kind).map_or(DEFAULT_COLUMNS, |p| p.columns)
}

/// The cells of `object`'s row, one per entry of [`columns`], as upstream emits them (JSON
/// strings, integers and booleans); ages are computed at `now`.
pub fn row(group: &str, kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, kind) {
        Some(p) => (p.row)(object, now),
        None => default_row(object),
    }
}

/// The default convertor's row: the name and the creation time in RFC 3339 (UTC, seconds).
fn default_row(object: &Value) -> Vec<Value> {
    let created = format::timestamp_at(object, "/metadata/creationTimestamp").map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    vec![name(object), created.into()]
}

/// A Table's `columnDefinitions` array.
pub fn column_definitions_json(cols: &[Column]) -> Value {
    cols.iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The `Name` cell.
fn name(object: &Value) -> Value {
    format::str_at(object, "/metadata/name").into()
}

/// The `Age` cell.
fn age(object: &Value, now: Timestamp) -> Value {
    duration::since(
        format::timestamp_at(object, "/metadata/creationTimestamp"),
        now,
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instant the printer tests render ages at.
    pub(super) fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn unknown_kinds_get_the_default_convertor() {
        let cols = columns("rbac.authorization.k8s.io", "Role");
        assert_eq!(
            cols.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["Name", "Created At"]
        );
        assert_eq!(cols[1].kind, "date");
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T08:15:00Z"}});
        assert_eq!(
            row("rbac.authorization.k8s.io", "Role", &role, now()),
            [json!("reader"), json!("2024-04-30T08:15:00Z")]
        );
    }

    #[test]
    fn column_definitions_shape() {
        let defs = column_definitions_json(&columns("apps", "Deployment")[..2]);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(defs[0]["priority"], 0);
        assert_eq!(
            defs[1],
            json!({"name": "Ready", "type": "string", "format": "", "description": "Number of the pod with ready state", "priority": 0})
        );
        assert!(
            defs[0]["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique within a namespace.")
        );
    }

    #[test]
    fn every_row_matches_its_columns() {
        let empty = json!({});
        for p in PRINTERS {
            assert_eq!((p.row)(&empty, now()).len(), p.columns.len(), "{}", p.kind);
        }
    }
}

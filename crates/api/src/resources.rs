//! The registry of built-in resources: every kind skiff serves, described once.
//!
//! Discovery, routing, OpenAPI, printing and field selection all read this table; adding a
//! resource is one entry here plus its strategy (see [`crate::strategy`]).

/// A subresource served under `/<resource>/<name>/<subresource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: writes change only `.status`.
    Status,
    /// `scale`: an `autoscaling/v1` Scale view of `spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: a `policy/v1` Eviction.
    Eviction,
    /// `pods/log`: container logs as text.
    Log,
    /// `pods/exec`: run a command in a container.
    Exec,
    /// `pods/portforward`: connect to a pod's ports.
    PortForward,
    /// `namespaces/finalize`: writes only `spec.finalizers`.
    Finalize,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Eviction => "eviction",
            Self::Log => "log",
            Self::Exec => "exec",
            Self::PortForward => "portforward",
            Self::Finalize => "finalize",
        }
    }

    /// Parses a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Status,
            Self::Scale,
            Self::Binding,
            Self::Eviction,
            Self::Log,
            Self::Exec,
            Self::PortForward,
            Self::Finalize,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }

    /// The verbs discovery lists for it.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Status | Self::Scale => &["get", "patch", "update"],
            Self::Binding | Self::Eviction => &["create"],
            Self::Log => &["get"],
            Self::Exec | Self::PortForward => &["create", "get"],
            Self::Finalize => &["update"],
        }
    }

    /// `(group, version, kind)` of the object this subresource takes and returns,
    /// or `None` when it is the parent's own kind.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Self::Status | Self::Log | Self::Finalize => None,
            Self::Scale => Some(("autoscaling", "v1", "Scale")),
            Self::Binding => Some(("", "v1", "Binding")),
            Self::Eviction => Some(("policy", "v1", "Eviction")),
            Self::Exec => Some(("", "v1", "PodExecOptions")),
            Self::PortForward => Some(("", "v1", "PodPortForwardOptions")),
        }
    }
}

/// One served resource, as discovery describes it.
#[derive(Debug)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Plural resource name used in paths, e.g. `deployments`.
    pub plural: &'static str,
    /// Singular resource name, e.g. `deployment`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl resolves, e.g. `deploy`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all`.
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Field selectors upstream supports beyond `metadata.name` and `metadata.namespace`:
    /// `(selector label, JSON path with dots)`.
    pub selectable_fields: &'static [(&'static str, &'static str)],
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `Kind` for the core group, `Kind.group` otherwise (e.g. `Deployment.apps`).
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The kind of a list of these objects, e.g. `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `sub` is served for this resource.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The verbs discovery lists for the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.plural == "namespaces" {
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// The key prefix under which objects of this resource are stored.
    pub fn storage_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The storage key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.storage_prefix()),
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }
}

use Subresource::*;

const POD_FIELDS: &[(&str, &str)] = &[
    ("spec.nodeName", "spec.nodeName"),
    ("spec.restartPolicy", "spec.restartPolicy"),
    ("spec.schedulerName", "spec.schedulerName"),
    ("spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.hostNetwork", "spec.hostNetwork"),
    ("status.phase", "status.phase"),
    ("status.podIP", "status.podIP"),
    ("status.nominatedNodeName", "status.nominatedNodeName"),
];

const CORE_EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject.kind", "involvedObject.kind"),
    ("involvedObject.namespace", "involvedObject.namespace"),
    ("involvedObject.name", "involvedObject.name"),
    ("involvedObject.uid", "involvedObject.uid"),
    ("involvedObject.apiVersion", "involvedObject.apiVersion"),
    (
        "involvedObject.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("involvedObject.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingComponent", "reportingComponent"),
    ("source", "source.component"),
    ("type", "type"),
];

/// The fields every entry shares unless it says otherwise: core/v1, namespaced, nothing extra.
const CORE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "",
    plural: "",
    singular: "",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    selectable_fields: &[],
};

/// Every resource skiff serves, in discovery order (which is also `kubectl get all` order).
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        subresources: &[Status, Binding, Eviction, Log, Exec, PortForward],
        selectable_fields: POD_FIELDS,
        ..CORE
    },
    ResourceInfo {
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[Status],
        selectable_fields: &[
            ("spec.clusterIP", "spec.clusterIP"),
            ("spec.type", "spec.type"),
        ],
        ..CORE
    },
    ResourceInfo {
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &[Finalize, Status],
        selectable_fields: &[("status.phase", "status.phase")],
        ..CORE
    },
    ResourceInfo {
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        subresources: &[Status],
        selectable_fields: &[("spec.unschedulable", "spec.unschedulable")],
        ..CORE
    },
    ResourceInfo {
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        selectable_fields: CORE_EVENT_FIELDS,
        ..CORE
    },
    ResourceInfo {
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        ..CORE
    },
    ResourceInfo {
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        ..CORE
    },
    ResourceInfo {
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        selectable_fields: &[("type", "type")],
        ..CORE
    },
    ResourceInfo {
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        ..CORE
    },
    ResourceInfo {
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        subresources: &[Status],
        ..CORE
    },
    ResourceInfo {
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        subresources: &[Status],
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[Scale, Status],
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[Scale, Status],
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        categories: &["all"],
        subresources: &[Scale, Status],
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        categories: &["all"],
        subresources: &[Status],
        ..CORE
    },
    ResourceInfo {
        group: "apps",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        ..CORE
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        ..CORE
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        ..CORE
    },
    ResourceInfo {
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        ..CORE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        ..CORE
    },
];

/// The API groups served, in discovery order, each with its versions (preferred first).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Looks a resource up by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by group and kind.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// Looks a resource up by an object's `apiVersion` and `kind`.
pub fn find_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_lookups() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            d.storage_key(Some("data"), "web"),
            "/registry/apps/deployments/data/web"
        );
        let n = find_kind("", "Node").unwrap();
        assert_eq!(n.storage_key(None, "n1"), "/registry/nodes/n1");
        assert_eq!(
            find_api_version_kind("apps/v1", "StatefulSet")
                .unwrap()
                .plural,
            "statefulsets"
        );
        assert_eq!(groups()[0], "apps");
    }

    #[test]
    fn no_prefix_is_a_prefix_of_another() {
        // A list over one resource's prefix must never pick up another resource's keys.
        for a in RESOURCES {
            for b in RESOURCES {
                if !std::ptr::eq(a, b) {
                    assert!(
                        !b.storage_prefix().starts_with(&a.storage_prefix()),
                        "{} / {}",
                        a.plural,
                        b.plural
                    );
                }
            }
        }
    }
}

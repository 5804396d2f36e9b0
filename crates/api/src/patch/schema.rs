//! The strategic-merge-patch schema of every built-in kind: which lists merge element by
//! element (and on which key), which lists of scalars merge as sets, and which structs are
//! union types (`retainKeys`).
//!
//! Transcribed from the Go struct tags of `k8s.io/api` (`patchStrategy:"merge"
//! patchMergeKey:"name"`, `patchStrategy:"retainKeys"`). Only the fields that lead to such a
//! list or union appear here: every other field merges as a plain map or is replaced whole,
//! exactly as upstream does for fields without a patch strategy (`tolerations`, `taints`,
//! `args`, `envFrom`, `matchExpressions`, `containerStatuses`, ... are atomic).

/// A named Go struct type, listing the fields that carry a patch strategy.
#[derive(Debug)]
pub struct TypeDef {
    /// The Go type name, e.g. `PodSpec`.
    pub name: &'static str,
    /// Its fields that carry (or lead to fields that carry) a patch strategy.
    pub fields: &'static [Field],
}

impl TypeDef {
    /// The field with this JSON name, when it carries a patch strategy.
    pub fn field(&self, json_name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == json_name)
    }
}

/// One field of a [`TypeDef`].
#[derive(Debug)]
pub struct Field {
    /// The JSON field name.
    pub name: &'static str,
    /// How the field's value is patched.
    pub shape: Shape,
}

/// How a field's value is patched.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A nested struct, merged field by field.
    Struct {
        /// The struct's type.
        ty: &'static TypeDef,
        /// `patchStrategy:"retainKeys"`: a union whose patches carry `$retainKeys`.
        retain_keys: bool,
    },
    /// A list of structs merged element by element (`patchStrategy:"merge"`).
    MergeList {
        /// `patchMergeKey`: the field identifying an element.
        key: &'static str,
        /// The element type.
        elem: &'static TypeDef,
        /// `patchStrategy:"merge,retainKeys"`: each element is a union.
        retain_keys: bool,
    },
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a merge key).
    PrimitiveSet,
}

impl Shape {
    /// The type of the struct value, or of each list element.
    pub fn elem_type(self) -> Option<&'static TypeDef> {
        match self {
            Shape::Struct { ty, .. } => Some(ty),
            Shape::MergeList { elem, .. } => Some(elem),
            Shape::PrimitiveSet => None,
        }
    }

    /// Whether upstream tags the field `retainKeys`.
    pub fn retains_keys(self) -> bool {
        match self {
            Shape::Struct { retain_keys, .. } | Shape::MergeList { retain_keys, .. } => retain_keys,
            Shape::PrimitiveSet => false,
        }
    }
}

const fn strukt(name: &'static str, ty: &'static TypeDef) -> Field {
    Field {
        name,
        shape: Shape::Struct {
            ty,
            retain_keys: false,
        },
    }
}

const fn union(name: &'static str, ty: &'static TypeDef) -> Field {
    Field {
        name,
        shape: Shape::Struct {
            ty,
            retain_keys: true,
        },
    }
}

const fn merge(name: &'static str, key: &'static str, elem: &'static TypeDef) -> Field {
    Field {
        name,
        shape: Shape::MergeList {
            key,
            elem,
            retain_keys: false,
        },
    }
}

const fn merge_unions(name: &'static str, key: &'static str, elem: &'static TypeDef) -> Field {
    Field {
        name,
        shape: Shape::MergeList {
            key,
            elem,
            retain_keys: true,
        },
    }
}

const fn set(name: &'static str) -> Field {
    Field {
        name,
        shape: Shape::PrimitiveSet,
    }
}

/// A struct with no strategic field of its own (a list element or a union).
const fn leaf(name: &'static str) -> TypeDef {
    TypeDef { name, fields: &[] }
}

static OBJECT_META: TypeDef = TypeDef {
    name: "ObjectMeta",
    fields: &[
        set("finalizers"),
        merge("ownerReferences", "uid", &OWNER_REFERENCE),
    ],
};
static OWNER_REFERENCE: TypeDef = leaf("OwnerReference");

// Conditions of every status below (`NodeCondition`, `PodCondition`, `metav1.Condition`, ...)
// merge by `type` and have no strategic field of their own.
static CONDITION: TypeDef = leaf("Condition");

static POD: TypeDef = TypeDef {
    name: "Pod",
    fields: &[
        strukt("metadata", &OBJECT_META),
        strukt("spec", &POD_SPEC),
        strukt("status", &POD_STATUS),
    ],
};
static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "PodTemplateSpec",
    fields: &[strukt("metadata", &OBJECT_META), strukt("spec", &POD_SPEC)],
};
static POD_SPEC: TypeDef = TypeDef {
    name: "PodSpec",
    fields: &[
        merge_unions("volumes", "name", &VOLUME),
        merge("initContainers", "name", &CONTAINER),
        merge("containers", "name", &CONTAINER),
        merge("ephemeralContainers", "name", &CONTAINER),
        merge("imagePullSecrets", "name", &LOCAL_OBJECT_REFERENCE),
        merge("hostAliases", "ip", &HOST_ALIAS),
        merge(
            "topologySpreadConstraints",
            "topologyKey",
            &TOPOLOGY_SPREAD_CONSTRAINT,
        ),
        merge_unions("resourceClaims", "name", &POD_RESOURCE_CLAIM),
        merge("schedulingGates", "name", &POD_SCHEDULING_GATE),
    ],
};
static VOLUME: TypeDef = leaf("Volume");
static LOCAL_OBJECT_REFERENCE: TypeDef = leaf("LocalObjectReference");
static HOST_ALIAS: TypeDef = leaf("HostAlias");
static TOPOLOGY_SPREAD_CONSTRAINT: TypeDef = leaf("TopologySpreadConstraint");
static POD_RESOURCE_CLAIM: TypeDef = leaf("PodResourceClaim");
static POD_SCHEDULING_GATE: TypeDef = leaf("PodSchedulingGate");
/// `Container`, and `EphemeralContainerCommon` which has the same strategic fields.
static CONTAINER: TypeDef = TypeDef {
    name: "Container",
    fields: &[
        merge("ports", "containerPort", &CONTAINER_PORT),
        merge("env", "name", &ENV_VAR),
        merge("volumeMounts", "mountPath", &VOLUME_MOUNT),
        merge("volumeDevices", "devicePath", &VOLUME_DEVICE),
    ],
};
static CONTAINER_PORT: TypeDef = leaf("ContainerPort");
static ENV_VAR: TypeDef = leaf("EnvVar");
static VOLUME_MOUNT: TypeDef = leaf("VolumeMount");
static VOLUME_DEVICE: TypeDef = leaf("VolumeDevice");
static POD_STATUS: TypeDef = TypeDef {
    name: "PodStatus",
    fields: &[
        merge("conditions", "type", &CONDITION),
        merge("podIPs", "ip", &POD_IP),
        merge("hostIPs", "ip", &POD_IP),
        merge_unions("resourceClaimStatuses", "name", &POD_RESOURCE_CLAIM_STATUS),
    ],
};
static POD_IP: TypeDef = leaf("PodIP");
static POD_RESOURCE_CLAIM_STATUS: TypeDef = leaf("PodResourceClaimStatus");

static SERVICE: TypeDef = TypeDef {
    name: "Service",
    fields: &[
        strukt("metadata", &OBJECT_META),
        strukt("spec", &SERVICE_SPEC),
        strukt("status", &CONDITIONED_STATUS),
    ],
};
static SERVICE_SPEC: TypeDef = TypeDef {
    name: "ServiceSpec",
    fields: &[merge("ports", "port", &SERVICE_PORT)],
};
static SERVICE_PORT: TypeDef = leaf("ServicePort");

/// A status whose only strategic field is `conditions` (Service, Namespace, PVC, apps kinds).
static CONDITIONED_STATUS: TypeDef = TypeDef {
    name: "Status",
    fields: &[merge("conditions", "type", &CONDITION)],
};

/// The fields of a kind whose only strategic fields are in `metadata` and a conditioned
/// `status`.
static CONDITIONED_FIELDS: [Field; 2] = [
    strukt("metadata", &OBJECT_META),
    strukt("status", &CONDITIONED_STATUS),
];
static NAMESPACE: TypeDef = TypeDef {
    name: "Namespace",
    fields: &CONDITIONED_FIELDS,
};
static PERSISTENT_VOLUME_CLAIM: TypeDef = TypeDef {
    name: "PersistentVolumeClaim",
    fields: &CONDITIONED_FIELDS,
};

static NODE: TypeDef = TypeDef {
    name: "Node",
    fields: &[
        strukt("metadata", &OBJECT_META),
        strukt("spec", &NODE_SPEC),
        strukt("status", &NODE_STATUS),
    ],
};
static NODE_SPEC: TypeDef = TypeDef {
    name: "NodeSpec",
    fields: &[set("podCIDRs")],
};
static NODE_STATUS: TypeDef = TypeDef {
    name: "NodeStatus",
    fields: &[
        merge("conditions", "type", &CONDITION),
        merge("addresses", "type", &NODE_ADDRESS),
    ],
};
static NODE_ADDRESS: TypeDef = leaf("NodeAddress");

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "ServiceAccount",
    fields: &[
        strukt("metadata", &OBJECT_META),
        merge("secrets", "name", &OBJECT_REFERENCE),
    ],
};
static OBJECT_REFERENCE: TypeDef = leaf("ObjectReference");

/// A kind whose only strategic fields are those of `metadata`.
static METADATA_ONLY: TypeDef = TypeDef {
    name: "Object",
    fields: &[strukt("metadata", &OBJECT_META)],
};

static DEPLOYMENT: TypeDef = TypeDef {
    name: "Deployment",
    fields: &[
        strukt("metadata", &OBJECT_META),
        strukt("spec", &DEPLOYMENT_SPEC),
        strukt("status", &CONDITIONED_STATUS),
    ],
};
static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "DeploymentSpec",
    fields: &[
        strukt("template", &POD_TEMPLATE_SPEC),
        union("strategy", &DEPLOYMENT_STRATEGY),
    ],
};
static DEPLOYMENT_STRATEGY: TypeDef = leaf("DeploymentStrategy");

/// ReplicaSet, StatefulSet and DaemonSet: a pod template and conditions.
static TEMPLATED_WORKLOAD: TypeDef = TypeDef {
    name: "Workload",
    fields: &[
        strukt("metadata", &OBJECT_META),
        strukt("spec", &TEMPLATED_SPEC),
        strukt("status", &CONDITIONED_STATUS),
    ],
};
static TEMPLATED_SPEC: TypeDef = TypeDef {
    name: "WorkloadSpec",
    fields: &[strukt("template", &POD_TEMPLATE_SPEC)],
};

/// The schema of a kind named as upstream's `GroupKind.String()`: `Kind` for the core group,
/// `Kind.group` otherwise (`Pod`, `Deployment.apps`, `Scale.autoscaling`).
/// `None` for kinds without a strategic-merge schema (custom resources), which upstream
/// refuses strategic merge patches for (415).
pub fn kind_schema(group_kind: &str) -> Option<&'static TypeDef> {
    Some(match group_kind {
        "Pod" => &POD,
        "Service" => &SERVICE,
        "Namespace" => &NAMESPACE,
        "Node" => &NODE,
        "PersistentVolumeClaim" => &PERSISTENT_VOLUME_CLAIM,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "Deployment.apps" => &DEPLOYMENT,
        "ReplicaSet.apps" | "StatefulSet.apps" | "DaemonSet.apps" => &TEMPLATED_WORKLOAD,
        "Event"
        | "Endpoints"
        | "ConfigMap"
        | "Secret"
        | "PersistentVolume"
        | "ControllerRevision.apps"
        | "Lease.coordination.k8s.io"
        | "EndpointSlice.discovery.k8s.io"
        | "Event.events.k8s.io"
        | "StorageClass.storage.k8s.io"
        | "Scale.autoscaling" => &METADATA_ONLY,
        _ => return None,
    })
}

/// The patch shape of the field at `path` (JSON field names; list elements are stepped over
/// implicitly) in a kind, e.g. `["spec", "template", "spec", "volumes"]` of `Deployment.apps`.
pub fn field_shape(group_kind: &str, path: &[&str]) -> Option<Shape> {
    let (last, parents) = path.split_last()?;
    let mut ty = kind_schema(group_kind)?;
    for name in parents {
        ty = ty.field(name)?.shape.elem_type()?;
    }
    Some(ty.field(last)?.shape)
}

//! Table-driven checks of whole objects: realistic valid objects give no errors, and each
//! mistake gives exactly upstream's field path and message.

use super::{validate, validate_update};
use serde_json::{Value, json};

fn rendered(kind: &str, group: &str, object: &Value) -> Vec<String> {
    validate(kind, group, object)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A defaulted Deployment as the API server stores it.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}, {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/nginx/conf.d"}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3, "timeoutSeconds": 1},
                        "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3, "timeoutSeconds": 1},
                        "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
                    "schedulerName": "default-scheduler", "securityContext": {},
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}
                }
            }
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": deployment()["spec"]["template"]["spec"].clone()
    })
}

/// Applies `edit` to a fresh object and returns its rendered errors.
fn errors_after(
    kind: &str,
    group: &str,
    base: fn() -> Value,
    edit: impl FnOnce(&mut Value),
) -> Vec<String> {
    let mut object = base();
    edit(&mut object);
    rendered(kind, group, &object)
}

#[test]
fn realistic_objects_are_valid() {
    let cases: Vec<(&str, &str, Value)> = vec![
        ("Deployment", "apps", deployment()),
        ("Pod", "", pod()),
        ("ReplicaSet", "apps", deployment()),
        (
            "StatefulSet",
            "apps",
            json!({"spec": {
                "replicas": 2, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                "selector": {"matchLabels": {"app": "db"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}]}], "restartPolicy": "Always"}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }}),
        ),
        (
            "DaemonSet",
            "apps",
            json!({"spec": {
                "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "agent:1"}], "restartPolicy": "Always"}}
            }}),
        ),
        (
            "ControllerRevision",
            "apps",
            json!({"data": {"spec": {}}, "revision": 1}),
        ),
        (
            "Service",
            "",
            json!({"spec": {"type": "ClusterIP", "selector": {"app": "web"}, "sessionAffinity": "None",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}, {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}}),
        ),
        (
            "Service",
            "",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        ),
        (
            "ConfigMap",
            "",
            json!({"data": {"nginx.conf": "server {}", "MODE": "prod"}}),
        ),
        (
            "Secret",
            "",
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}),
        ),
        (
            "PersistentVolumeClaim",
            "",
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}, "storageClassName": "standard", "volumeMode": "Filesystem"}}),
        ),
        (
            "PersistentVolume",
            "",
            json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/data"}, "storageClassName": "manual"}}),
        ),
        (
            "Node",
            "",
            json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        ),
        (
            "Lease",
            "coordination.k8s.io",
            json!({"spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
        ),
        (
            "StorageClass",
            "storage.k8s.io",
            json!({"provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
        ),
        (
            "EndpointSlice",
            "discovery.k8s.io",
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.5"]}], "ports": [{"port": 80}]}),
        ),
        (
            "Endpoints",
            "",
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 80}]}]}),
        ),
        (
            "Event",
            "",
            json!({"metadata": {"namespace": "default"}, "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-0"}}),
        ),
        (
            "ServiceAccount",
            "",
            json!({"secrets": [{"name": "token"}]}),
        ),
        (
            "Namespace",
            "",
            json!({"spec": {"finalizers": ["kubernetes"]}}),
        ),
    ];
    for (kind, group, object) in cases {
        assert_eq!(
            rendered(kind, group, &object),
            Vec::<String>::new(),
            "{kind}"
        );
    }
}

#[test]
fn undeclared_volume_mount_is_not_found() {
    let errs = errors_after("Deployment", "apps", deployment, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("x");
    });
    assert_eq!(
        errs,
        ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"x\""]
    );

    let errs = errors_after("Pod", "", pod, |p| {
        p["spec"]["volumes"] = json!([]);
    });
    assert_eq!(
        errs,
        ["spec.containers[0].volumeMounts[0].name: Not found: \"config\""]
    );

    // A mount of a broken volume is also "Not found", as upstream only keeps valid volumes.
    let errs = errors_after("Pod", "", pod, |p| {
        p["spec"]["volumes"][0] = json!({"name": "config"});
    });
    assert_eq!(
        errs,
        [
            "spec.volumes[0]: Required value: must specify a volume type",
            "spec.containers[0].volumeMounts[0].name: Not found: \"config\""
        ]
    );
}

#[test]
fn selector_must_match_template_labels() {
    let errs = errors_after("Deployment", "apps", deployment, |d| {
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "nginx"});
    });
    assert_eq!(
        errs,
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"nginx\"}: `selector` does not match template `labels`"
        ]
    );
    // Upstream prints the value as a Go struct (`v1.LabelSelector{...}`); path and detail match.
    let mut empty = deployment();
    empty["spec"]["selector"] = json!({});
    let errs = validate("Deployment", "apps", &empty);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].field.as_str(), errs[0].detail.as_str()),
        ("spec.selector", "empty selector is invalid for deployment")
    );
}

#[test]
fn pod_spec_mistakes() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            |p| p["spec"]["containers"] = json!([]),
            vec!["spec.containers: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["name"] = json!("Web_1"),
            vec![
                "spec.containers[0].name: Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["image"] = json!(""),
            vec!["spec.containers[0].image: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["image"] = json!(" nginx"),
            vec![
                "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace",
            ],
        ),
        (
            |p| {
                let c = p["spec"]["containers"][0].clone();
                p["spec"]["containers"].as_array_mut().unwrap().push(c);
            },
            vec!["spec.containers[1].name: Duplicate value: \"nginx\""],
        ),
        (
            |p| p["spec"]["containers"][0]["imagePullPolicy"] = json!("Foo"),
            vec![
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Foo\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            ],
        ),
        (
            |p| p["spec"]["restartPolicy"] = json!("Sometimes"),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        ),
        (
            |p| p["spec"]["dnsPolicy"] = json!("Google"),
            vec![
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP"),
            vec![
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["env"][0]["name"] = json!("1MODE"),
            vec![
                "spec.containers[0].env[0].name: Invalid value: \"1MODE\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("2"),
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 500m",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("-1"),
            vec![
                "spec.containers[0].resources.limits[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.containers[0].resources.requests: Invalid value: \"64Mi\": must be less than or equal to memory limit of -1",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = json!(""),
            vec!["spec.containers[0].volumeMounts[0].mountPath: Required value"],
        ),
        (
            |p| p["spec"]["volumes"][0]["secret"] = json!({"secretName": "s"}),
            vec![
                "spec.volumes[0].configMap: Forbidden: may not specify more than 1 volume type",
                "spec.containers[0].volumeMounts[0].name: Not found: \"config\"",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["livenessProbe"]["successThreshold"] = json!(2),
            vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
        ),
        (
            |p| p["spec"]["containers"][0]["readinessProbe"] = json!({"periodSeconds": 10}),
            vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type"],
        ),
        (
            |p| p["spec"]["nodeSelector"] = json!({"disk": "fast ssd"}),
            vec![
                "spec.nodeSelector: Invalid value: \"fast ssd\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        ),
        (
            |p| p["spec"]["tolerations"] = json!([{"operator": "Equal", "value": "x"}]),
            vec![
                "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ],
        ),
        (
            |p| p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Equal", "effect": "NoSchedule", "tolerationSeconds": 5}]),
            vec![
                "spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ],
        ),
        (
            |p| {
                p["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                    [0]["weight"] = json!(0)
            },
            vec![
                "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
            ],
        ),
    ];
    for (edit, want) in cases {
        assert_eq!(errors_after("Pod", "", pod, edit), want);
    }
}

#[test]
fn workload_mistakes() {
    type Edit = fn(&mut Value);
    let deployment_cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            |d| d["spec"]["replicas"] = json!(-1),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            |d| {
                d["spec"]["strategy"]["rollingUpdate"] =
                    json!({"maxSurge": 0, "maxUnavailable": "0%"})
            },
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
            ],
        ),
        (
            |d| d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = json!("150%"),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
            ],
        ),
        (
            |d| d["spec"]["strategy"]["type"] = json!("Recreate"),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ],
        ),
        (
            |d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never"),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        ),
        (
            |d| d["spec"]["progressDeadlineSeconds"] = json!(0),
            vec![
                "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds",
            ],
        ),
        (
            |d| d["spec"]["selector"] = Value::Null,
            vec!["spec.selector: Required value"],
        ),
    ];
    for (edit, want) in deployment_cases {
        assert_eq!(errors_after("Deployment", "apps", deployment, edit), want);
    }

    let daemon_set = || {
        json!({"spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}
        }})
    };
    assert_eq!(
        rendered("DaemonSet", "apps", &daemon_set()),
        [
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ]
    );

    let stateful_set = json!({"spec": {
        "podManagementPolicy": "Sometimes",
        "selector": {"matchLabels": {"app": "db"}},
        "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db"}]}}
    }});
    assert_eq!(
        rendered("StatefulSet", "apps", &stateful_set),
        [
            "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
            "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'",
        ]
    );
    assert_eq!(
        rendered("ControllerRevision", "apps", &json!({"revision": -1})),
        [
            "data: Required value: data is mandatory",
            "revision: Invalid value: -1: must be greater than or equal to 0"
        ]
    );
}

#[test]
fn updates() {
    let old = deployment();
    let mut new = old.clone();
    new["spec"]["selector"]["matchLabels"]["tier"] = json!("fe");
    new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("fe");
    let errs: Vec<String> = validate_update("Deployment", "apps", &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"tier\":\"fe\"}}: field is immutable"
        ]
    );

    let old_pod = pod();
    let mut new_pod = old_pod.clone();
    new_pod["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    new_pod["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "k", "operator": "Exists"}));
    assert_eq!(validate_update("Pod", "", &new_pod, &old_pod), vec![]);
    new_pod["spec"]["containers"][0]["env"][0]["value"] = json!("dev");
    let errs: Vec<String> = validate_update("Pod", "", &new_pod, &old_pod)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
        ]
    );

    let set = json!({"spec": {"serviceName": "db", "replicas": 1, "podManagementPolicy": "OrderedReady", "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db"}]}}}});
    let mut scaled = set.clone();
    scaled["spec"]["replicas"] = json!(3);
    assert!(validate_update("StatefulSet", "apps", &scaled, &set).is_empty());
    scaled["spec"]["serviceName"] = json!("other");
    let errs: Vec<String> = validate_update("StatefulSet", "apps", &scaled, &set)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );

    let frozen = json!({"immutable": true, "data": {"a": "1"}});
    let changed = json!({"immutable": true, "data": {"a": "2"}});
    let errs: Vec<String> = validate_update("ConfigMap", "", &changed, &frozen)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );

    let service = json!({"spec": {"clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]}});
    let moved = json!({"spec": {"clusterIPs": ["10.96.0.11"], "ports": [{"port": 80}]}});
    let errs: Vec<String> = validate_update("Service", "", &moved, &service)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
    );
}

#[test]
fn core_kind_mistakes() {
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        (
            "Service",
            "",
            json!({"spec": {"type": "ClusterIP"}}),
            vec!["spec.ports: Required value"],
        ),
        (
            "Service",
            "",
            json!({"spec": {"type": "Balanced", "ports": [{"port": 80}]}}),
            vec![
                "spec.type: Unsupported value: \"Balanced\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        ),
        (
            "Service",
            "",
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"port": 81}]}}),
            vec!["spec.ports[1].name: Required value"],
        ),
        (
            "ConfigMap",
            "",
            json!({"data": {"a b": "x"}}),
            vec![
                "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ],
        ),
        (
            "Secret",
            "",
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
            vec!["data[tls.key]: Required value"],
        ),
        (
            "PersistentVolumeClaim",
            "",
            json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
            vec!["spec.accessModes: Required value: at least 1 access mode is required"],
        ),
        (
            "PersistentVolumeClaim",
            "",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
            vec!["spec.resources[storage]: Required value"],
        ),
        (
            "PersistentVolumeClaim",
            "",
            json!({"spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "1Gi"}}}}),
            vec![
                "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            ],
        ),
        (
            "StorageClass",
            "storage.k8s.io",
            json!({}),
            vec!["provisioner: Required value"],
        ),
        (
            "Lease",
            "coordination.k8s.io",
            json!({"spec": {"leaseDurationSeconds": 0}}),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
        ),
        (
            "Event",
            "",
            json!({"metadata": {"namespace": "default"}, "involvedObject": {"namespace": "kube-system"}}),
            vec![
                "involvedObject.namespace: Invalid value: \"kube-system\": does not match event.namespace",
            ],
        ),
    ];
    for (kind, group, object, want) in cases {
        assert_eq!(rendered(kind, group, &object), want, "{kind} {object}");
    }
}

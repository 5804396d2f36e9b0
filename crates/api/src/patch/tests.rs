use super::*;
use proptest::prelude::*;
use serde_json::json;

/// Applies a strategic merge patch that must succeed.
fn smp(original: Value, patch: Value, kind: &str) -> Value {
    strategic_merge(&original, &patch, kind).unwrap_or_else(|e| panic!("patch {patch} failed: {e}"))
}

/// The error of a strategic merge patch that must fail.
fn smp_err(original: Value, patch: Value, kind: &str) -> ApiError {
    strategic_merge(&original, &patch, kind).expect_err("patch should fail")
}

#[test]
fn patch_types_follow_content_types() {
    for (content_type, expected) in [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        (
            "application/strategic-merge-patch+json; charset=utf-8",
            Some(PatchType::StrategicMerge),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        ("application/json", None),
        ("", None),
    ] {
        assert_eq!(
            PatchType::from_content_type(content_type),
            expected,
            "{content_type}"
        );
    }
}

#[test]
fn json_patch_applies_rollout_undo() {
    let deployment = json!({"metadata": {"name": "web", "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
    let undo = json!([
        {"op": "replace", "path": "/spec/template", "value": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
        {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "1"}}
    ]);
    let patched = json_patch(&deployment, &undo).unwrap();
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        patched["metadata"]["annotations"],
        json!({"deployment.kubernetes.io/revision": "1"})
    );
}

#[test]
fn json_patch_failures_are_upstreams_generic_422() {
    let doc = json!({"metadata": {"name": "x"}, "spec": {}});
    for patch in [
        json!([{"op": "remove", "path": "/spec/nope"}]),
        json!([{"op": "replace", "path": "/metadata/annotations", "value": {}}]),
        json!([{"op": "test", "path": "/metadata/name", "value": "y"}]),
        json!([{"op": "frobnicate", "path": "/spec"}]),
    ] {
        let error = json_patch(&doc, &patch).unwrap_err();
        assert_eq!((error.code, error.reason), (422, "Invalid"), "{patch}");
        assert_eq!(
            error.message,
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(error.to_status()["details"], json!({}));
    }
}

#[test]
fn malformed_json_patch_bodies_are_bad_requests() {
    let doc = json!({});
    let error = json_patch(&doc, &json!({"op": "add"})).unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            400,
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    );
    let error = json_patch(&doc, &json!(["add"])).unwrap_err();
    assert_eq!(
        error.message,
        "json: cannot unmarshal string into Go value of type jsonpatch.Operation"
    );
    let too_many: Vec<Value> = (0..10001)
        .map(|_| json!({"op": "test", "path": "", "value": {}}))
        .collect();
    let error = json_patch(&doc, &Value::Array(too_many)).unwrap_err();
    assert_eq!(error.code, 413);
    assert_eq!(
        error.message,
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    assert_eq!(json_patch(&doc, &Value::Null).unwrap(), doc);
}

#[test]
fn merge_patch_follows_rfc_7396() {
    let deployment = json!({"spec": {"replicas": 1, "paused": true, "selector": {"matchLabels": {"app": "web"}}}});
    let patched = merge_patch(
        &deployment,
        &json!({"spec": {"replicas": 3, "paused": null}}),
    )
    .unwrap();
    assert_eq!(
        patched,
        json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}})
    );
    for bad in [Value::Null, json!("x"), json!(1)] {
        let error = merge_patch(&deployment, &bad).unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (400, "Invalid JSON Patch")
        );
    }
}

/// The deployment the protocol notes' client-side apply example starts from.
fn applied_deployment() -> Value {
    json!({
        "metadata": {"name": "app", "finalizers": ["example.com/a", "example.com/b"],
            "labels": {"app": "app", "tier": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old\n"}},
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"spec": {
                "containers": [
                    {"name": "main", "image": "busybox:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "side", "image": "busybox:1"}
                ],
                "volumes": [{"name": "v1", "emptyDir": {}}]
            }}
        }
    })
}

#[test]
fn client_side_apply_patch_from_the_protocol_notes() {
    let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/b"],
             "$setElementOrder/finalizers":["example.com/a"],
             "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"new\n"},
             "labels":{"tier":null}},
     "spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"},
      "template":{"spec":{
        "$setElementOrder/containers":[{"name":"side"},{"name":"main"}],
        "$setElementOrder/volumes":[{"name":"v1"}],
        "containers":[{"image":"busybox:2","name":"side"},
          {"$setElementOrder/env":[{"name":"B"}],"args":["a"],"env":[{"$patch":"delete","name":"A"}],"name":"main"}],
        "volumes":[{"$retainKeys":["configMap","name"],"configMap":{"name":"cm"},"emptyDir":null,"name":"v1"}]}}}});
    let patched = smp(applied_deployment(), patch, "Deployment.apps");
    assert_eq!(
        patched,
        json!({
            "metadata": {"name": "app", "finalizers": ["example.com/a"], "labels": {"app": "app"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new\n"}},
            "spec": {
                "strategy": {"type": "Recreate"},
                "template": {"spec": {
                    "containers": [
                        {"name": "side", "image": "busybox:2"},
                        {"name": "main", "image": "busybox:1", "env": [{"name": "B", "value": "2"}], "args": ["a"]}
                    ],
                    "volumes": [{"name": "v1", "configMap": {"name": "cm"}}]
                }}
            }
        })
    );
}

#[test]
fn rollout_restart_pause_and_resume() {
    let restart = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}});
    let patched = smp(applied_deployment(), restart, "Deployment.apps");
    assert_eq!(
        patched["spec"]["template"]["metadata"],
        json!({"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}})
    );
    assert_eq!(
        patched["spec"]["template"]["spec"],
        applied_deployment()["spec"]["template"]["spec"]
    );

    let paused = smp(
        applied_deployment(),
        json!({"spec": {"paused": true}}),
        "Deployment.apps",
    );
    assert_eq!(paused["spec"]["paused"], true);
    let resumed = smp(paused, json!({"spec": {"paused": null}}), "Deployment.apps");
    assert_eq!(resumed, applied_deployment());
}

#[test]
fn rollout_undo_daemonset_replaces_the_whole_template() {
    let daemonset = json!({"metadata": {"name": "fluentd"}, "spec": {"selector": {"matchLabels": {"app": "fluentd"}},
        "template": {"metadata": {"labels": {"app": "fluentd", "extra": "x"}, "annotations": {"a": "b"}},
            "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [
                {"name": "fluentd", "image": "fluentd:v2", "env": [{"name": "E", "value": "1"}]},
                {"name": "helper", "image": "busybox"}]}}}});
    let revision = json!({"spec":{"template":{"$patch":"replace","metadata":{"labels":{"app":"fluentd"}},
        "spec":{"containers":[{"image":"fluentd:v1.16","name":"fluentd"}]}}}});
    let patched = smp(daemonset, revision, "DaemonSet.apps");
    assert_eq!(
        patched["spec"],
        json!({"selector": {"matchLabels": {"app": "fluentd"}}, "template": {"metadata": {"labels": {"app": "fluentd"}},
            "spec": {"containers": [{"image": "fluentd:v1.16", "name": "fluentd"}]}}})
    );
}

#[test]
fn daemonset_tutorial_node_selector_patch_adds_a_map_key() {
    let daemonset = json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "c"}]}}}});
    let patched = smp(
        daemonset,
        json!({"spec":{"template":{"spec":{"nodeSelector":{"non-existent-nodeselector":"NA"}}}}}),
        "DaemonSet.apps",
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "non-existent-nodeselector": "NA"})
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c"}])
    );
}

#[test]
fn lists_merge_by_their_upstream_merge_keys() {
    let pod = json!({"spec": {
        "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "http"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]}],
        "tolerations": [{"key": "k1", "operator": "Exists"}]
    }});
    let patch = json!({"spec": {
        "containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}, {"name": "b", "image": "y"}],
        "tolerations": [{"key": "k2", "operator": "Exists"}]
    }});
    assert_eq!(
        smp(pod, patch, "Pod")["spec"],
        json!({
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}],
                    "volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": true}]},
                {"name": "b", "image": "y"}
            ],
            // Tolerations are atomic.
            "tolerations": [{"key": "k2", "operator": "Exists"}]
        })
    );

    let service =
        json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}});
    let patched = smp(
        service,
        json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}, {"port": 443}]}}),
        "Service",
    );
    assert_eq!(
        patched["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "nodePort": 30080}, {"port": 443}])
    );

    let meta = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs"}]}});
    let patched = smp(
        meta,
        json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2"}]}}),
        "ReplicaSet.apps",
    );
    assert_eq!(
        patched["metadata"]["ownerReferences"],
        json!([{"uid": "1", "name": "rs", "controller": true}, {"uid": "2"}])
    );

    // Node taints carry no patch strategy upstream: replaced whole.
    let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    let patched = smp(
        node,
        json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        "Node",
    );
    assert_eq!(
        patched["spec"]["taints"],
        json!([{"key": "b", "effect": "NoSchedule"}])
    );
    assert_eq!(
        patched["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
}

#[test]
fn unknown_kinds_and_fields_merge_maps_and_replace_lists() {
    let original = json!({"spec": {"items": [{"name": "a", "v": 1}], "m": {"x": 1}}});
    let patched = smp(
        original,
        json!({"spec": {"items": [{"name": "a", "w": 2}], "m": {"y": 2}}}),
        "Widget.example.com",
    );
    assert_eq!(
        patched,
        json!({"spec": {"items": [{"name": "a", "w": 2}], "m": {"x": 1, "y": 2}}})
    );
    assert!(schema::kind_schema("Widget.example.com").is_none());
}

#[test]
fn list_directives_delete_and_replace_elements() {
    let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    let patched = smp(
        pod.clone(),
        json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
        "Pod",
    );
    assert_eq!(
        patched["spec"]["containers"],
        json!([{"name": "a"}, {"name": "c"}])
    );

    let patched = smp(
        pod.clone(),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "i"}]}}),
        "Pod",
    );
    assert_eq!(
        patched["spec"]["containers"],
        json!([{"name": "z", "image": "i"}])
    );

    let error = smp_err(
        pod.clone(),
        json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
        "Pod",
    );
    assert_eq!(
        (error.code, error.message.as_str()),
        (400, "merging lists cannot yet be specified in the patch")
    );

    let error = smp_err(
        pod.clone(),
        json!({"spec": {"containers": [{"name": "a", "$patch": "explode"}]}}),
        "Pod",
    );
    assert_eq!(
        error.message,
        "unknown patch type: explode in map: map[$patch:explode name:a]"
    );

    let error = smp_err(
        pod,
        json!({"spec": {"containers": [{"image": "x"}]}}),
        "Pod",
    );
    assert_eq!(
        error.message,
        "map: map[image:x] does not contain declared merge key: name"
    );
}

#[test]
fn map_directives_replace_and_delete() {
    let pod =
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"x": "y"}}});
    let patched = smp(
        pod.clone(),
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        "Pod",
    );
    assert_eq!(patched["metadata"]["labels"], json!({"c": "3"}));

    // Upstream leaves an empty map behind rather than removing the key.
    let patched = smp(
        pod.clone(),
        json!({"spec": {"nodeSelector": {"$patch": "delete"}}}),
        "Pod",
    );
    assert_eq!(patched["spec"]["nodeSelector"], json!({}));

    // `merge` is the default but upstream rejects it spelled out in a map.
    let error = smp_err(
        pod.clone(),
        json!({"metadata": {"labels": {"$patch": "merge", "c": "3"}}}),
        "Pod",
    );
    assert_eq!(
        error.message,
        "unknown patch type: merge in map: map[$patch:merge c:3]"
    );

    let error = smp_err(pod, json!({"metadata": {"$patch": 1}}), "Pod");
    assert_eq!(
        error.message,
        "unknown patch type: %!s(int64=1) in map: map[$patch:1]"
    );
}

#[test]
fn primitive_sets_union_and_delete() {
    let meta = json!({"metadata": {"finalizers": ["a", "b"]}});
    let patched = smp(
        meta.clone(),
        json!({"metadata": {"finalizers": ["c", "a"]}}),
        "ConfigMap",
    );
    // Patch order wins; `b` only came after `a` on the server, so it follows `a`.
    assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));

    let patched = smp(
        meta.clone(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
        "ConfigMap",
    );
    assert_eq!(patched["metadata"]["finalizers"], json!(["b"]));

    // Deleting from a missing list does not create it (kubernetes#105146).
    let patched = smp(
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        "ConfigMap",
    );
    assert_eq!(patched, json!({"metadata": {}}));

    let error = smp_err(
        meta,
        json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
        "ConfigMap",
    );
    assert_eq!(
        (error.code, error.message.as_str()),
        (400, "invalid patch format of primitive list")
    );
}

#[test]
fn set_element_order_keeps_server_only_elements_near_their_neighbours() {
    let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "c", "image": "x"}]}});
    assert_eq!(
        smp(pod.clone(), patch, "Pod")["spec"]["containers"],
        json!([{"name": "b"}, {"name": "c", "image": "x"}, {"name": "a"}])
    );

    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "d"}, {"name": "a"}, {"name": "b"}, {"name": "c"}], "containers": [{"name": "d"}]}});
    assert_eq!(
        smp(pod.clone(), patch, "Pod")["spec"]["containers"],
        json!([{"name": "d"}, {"name": "a"}, {"name": "b"}, {"name": "c"}])
    );

    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "c", "image": "x"}]}});
    let error = smp_err(pod.clone(), patch, "Pod");
    assert_eq!(
        error.message,
        "The order in patch list:\n[map[image:x name:c]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n"
    );

    let error = smp_err(pod, json!({"spec": {"$setElementOrder": []}}), "Pod");
    assert_eq!(
        (error.code, error.message.as_str()),
        (400, "invalid patch format of setElementOrder list")
    );
}

#[test]
fn retain_keys_clears_other_union_members() {
    let deployment = applied_deployment();
    let error = smp_err(
        deployment.clone(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
        "Deployment.apps",
    );
    assert_eq!(
        (error.code, error.message.as_str()),
        (400, "invalid patch format of retainKeys")
    );
    let error = smp_err(
        deployment,
        json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        "Deployment.apps",
    );
    assert_eq!(error.message, "invalid patch format of retainKeys");
    assert_eq!(
        schema::field_shape("Deployment.apps", &["spec", "strategy"]).map(|s| s.retains_keys()),
        Some(true)
    );
    assert!(schema::field_shape("Pod", &["spec", "volumes"]).is_some_and(|s| s.retains_keys()));
}

#[test]
fn directives_in_new_subtrees_are_applied_not_stored() {
    let deployment = json!({"spec": {"template": {"spec": {}}}});
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}],
        "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}],
        "nodeSelector": {"$patch": "replace", "a": "b", "gone": null}
    }}}});
    assert_eq!(
        smp(deployment, patch, "Deployment.apps")["spec"]["template"]["spec"],
        json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}], "volumes": [{"name": "v", "emptyDir": {}}], "nodeSelector": {"a": "b"}})
    );
}

#[test]
fn non_object_patches_are_bad_requests() {
    let error = smp_err(json!({}), json!([1]), "Pod");
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            400,
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        )
    );
    assert_eq!(smp(json!({"a": 1}), Value::Null, "Pod"), json!({"a": 1}));
}

#[test]
fn element_type_errors_are_worded_as_upstream() {
    let error = smp_err(
        json!({"spec": {"containers": []}}),
        json!({"spec": {"containers": [[1]]}}),
        "Pod",
    );
    assert_eq!((error.code, error.reason), (422, "Invalid"));
    let error = smp_err(
        json!({"spec": {"containers": [{"name": "a"}]}}),
        json!({"spec": {"containers": [[1]]}}),
        "Pod",
    );
    assert_eq!(
        error.message,
        "list element types are not identical: [[map[name:a]] [[1]]]"
    );
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "spec",
        "metadata",
        "containers",
        "name",
        "env",
        "finalizers",
        "strategy",
        "volumes",
        "template",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder",
        "$deleteFromPrimitiveList/",
        "replace",
        "delete",
        "merge",
    ])
    .prop_map(String::from);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec!["a", "b", "name", "replace", "delete", "merge", "spec"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_patch_input_panics(doc in arbitrary_json(), patch in arbitrary_json()) {
        for kind in ["Deployment.apps", "Pod", "Widget.example.com"] {
            let _ = strategic_merge(&doc, &patch, kind);
        }
        let _ = json_patch(&doc, &patch);
        let _ = merge_patch(&doc, &patch);
    }
}

//! Whatever a client sends, decoding, defaulting, validating and patching answer with an
//! object or a 4xx `Status`: never a panic, never a 500.

use proptest::prelude::*;
use serde_json::{Value, json};
use skiff_api::patch::{self, PatchType};
use skiff_api::{RESOURCES, kinds, validation};

/// Arbitrary JSON, biased towards the shapes of Kubernetes objects so that decoding gets past
/// the first field often enough to exercise nested types.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9:./_-]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("100m"),
            Just("1Gi"),
            Just("25%"),
            Just("2026-11-27T20:00:00Z"),
            Just("Always")
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("metadata"),
        Just("spec"),
        Just("status"),
        Just("template"),
        Just("containers"),
        Just("name"),
        Just("image"),
        Just("labels"),
        Just("selector"),
        Just("matchLabels"),
        Just("ports"),
        Just("volumeMounts"),
        Just("volumes"),
        Just("replicas"),
        Just("strategy"),
        Just("rollingUpdate"),
        Just("maxSurge"),
        Just("resources"),
        Just("limits"),
        Just("data"),
        Just("nodeSelector"),
        Just("tolerations"),
        Just("finalizers"),
        Just("$patch"),
        Just("$retainKeys"),
        Just("$setElementOrder/containers"),
        Just("x"),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn assert_client_error(result: Result<Value, skiff_api::ApiError>) {
    if let Err(e) = result {
        assert!((400..500).contains(&e.code), "client input gave {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_default_validate(body in json_value(), which in 0..RESOURCES.len()) {
        let info = &RESOURCES[which];
        let strategy = kinds::strategy_for(info);
        let mut object = body;
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), info.api_version().into());
            map.insert("kind".into(), info.kind.into());
        }
        match strategy.decode(info, object) {
            Ok(decoded) => {
                let mut object = decoded.object;
                strategy.prepare_for_create(&mut object);
                strategy.default(&mut object);
                let _ = validation::validate_object_meta(&object["metadata"], info.namespaced, false);
                let _ = strategy.validate(&object);
                let _ = strategy.validate_update(&object, &object);
            }
            Err(e) => prop_assert!((400..500).contains(&e.code), "{e}"),
        }
    }

    #[test]
    fn patches(doc in json_value(), body in json_value(), which in 0..RESOURCES.len()) {
        let group_kind = RESOURCES[which].group_kind();
        let doc = json!({"metadata": {"name": "x"}, "spec": doc});
        assert_client_error(patch::strategic_merge(&doc, &body, &group_kind));
        assert_client_error(patch::merge_patch(&doc, &body));
        assert_client_error(patch::json_patch(&doc, &body));
        prop_assert!(PatchType::from_content_type("application/strategic-merge-patch+json").is_some());
    }
}

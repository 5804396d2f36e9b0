//! The binder's decisions, case by case as upstream's `binder_test.go` and `index_test.go`.

use super::*;
use serde_json::json;
use std::collections::HashMap;

/// Informer contents for a test.
#[derive(Default)]
struct Fixture {
    volumes: Vec<Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

impl Cluster for Fixture {
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
            .cloned()
    }

    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes.clone()
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(name).cloned()
    }
}

fn fixture(volumes: Vec<PersistentVolume>) -> Fixture {
    let class = |name: &str, mode: &str| {
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": name}, "provisioner": "skiff.dev/local-path", "volumeBindingMode": mode
        }))
        .unwrap();
        (name.to_string(), Arc::new(class))
    };
    Fixture {
        volumes: volumes.into_iter().map(Arc::new).collect(),
        classes: [
            class("standard", "WaitForFirstConsumer"),
            class("fast", "Immediate"),
        ]
        .into(),
    }
}

/// A volume of `size`, `Available`, class `""` and ReadWriteOnce unless `extra` says otherwise.
fn volume(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": format!("/data/{name}")}},
        "status": {"phase": "Available"}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A claim `ns/name` with uid `uid-<name>` asking for `size` ReadWriteOnce, without class.
fn claim(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": "7"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": ""},
        "status": {"phase": "Pending"}
    });
    merge(&mut c, extra);
    serde_json::from_value(c).unwrap()
}

/// JSON merge patch semantics (RFC 7386), to vary a base object.
fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match patch {
        serde_json::Value::Object(fields) => {
            if !base.is_object() {
                *base = json!({});
            }
            let object = base.as_object_mut().expect("made an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(&key);
                } else {
                    merge(object.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
        }
        other => *base = other,
    }
}

fn claim_ref(name: &str, uid: &str) -> serde_json::Value {
    json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim", "namespace": "ns", "name": name, "uid": uid}}})
}

fn bound_annotations() -> serde_json::Value {
    json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"}}})
}

#[test]
fn an_unbound_claim_gets_the_smallest_volume_that_fits() {
    let cluster = fixture(vec![
        volume("big", "10Gi", json!({})),
        volume("small", "1Gi", json!({})),
        volume("medium", "5Gi", json!({})),
        volume("tiny", "500Mi", json!({})),
    ]);
    assert_eq!(
        sync_claim(&claim("data", "1Gi", json!({})), &cluster),
        ClaimPlan::Bind("small".into())
    );
    assert_eq!(
        sync_claim(&claim("data", "2Gi", json!({})), &cluster),
        ClaimPlan::Bind("medium".into())
    );
}

#[test]
fn volumes_must_match_class_modes_selector_and_phase() {
    let cluster = fixture(vec![
        volume(
            "classy",
            "1Gi",
            json!({"spec": {"storageClassName": "gold"}}),
        ),
        volume(
            "rwx",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
        ),
        volume("released", "1Gi", json!({"status": {"phase": "Released"}})),
        volume(
            "going",
            "1Gi",
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        ),
        volume("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
        volume("taken", "1Gi", claim_ref("other", "uid-other")),
        volume(
            "labelled",
            "2Gi",
            json!({"metadata": {"labels": {"tier": "db"}}}),
        ),
    ]);
    // Nothing unlabelled fits; the selector picks the labelled one.
    let selective = claim(
        "data",
        "1Gi",
        json!({"spec": {"selector": {"matchLabels": {"tier": "db"}}}}),
    );
    assert_eq!(
        sync_claim(&selective, &cluster),
        ClaimPlan::Bind("labelled".into())
    );
    let other_tier = claim(
        "data",
        "1Gi",
        json!({"spec": {"selector": {"matchLabels": {"tier": "web"}}}}),
    );
    assert_eq!(
        sync_claim(&other_tier, &cluster),
        ClaimPlan::Pending(Some(Event::normal(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set"
        )))
    );
    let gold = claim("data", "1Gi", json!({"spec": {"storageClassName": "gold"}}));
    // A class that does not exist: the provisioner cannot be found.
    assert_eq!(
        sync_claim(&gold, &fixture(vec![])),
        ClaimPlan::Report(Event::warning(
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"gold\" not found"
        ))
    );
    assert_eq!(
        sync_claim(&gold, &cluster),
        ClaimPlan::Bind("classy".into())
    );
    let many = claim(
        "data",
        "1Gi",
        json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
    );
    assert_eq!(sync_claim(&many, &cluster), ClaimPlan::Bind("rwx".into()));
}

#[test]
fn volumes_with_fewer_access_modes_are_preferred() {
    let cluster = fixture(vec![
        volume(
            "both",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
        ),
        volume("larger-once", "5Gi", json!({})),
    ]);
    // The smallest volume overall offers more modes than asked: the RWO-only group wins.
    assert_eq!(
        sync_claim(&claim("data", "1Gi", json!({})), &cluster),
        ClaimPlan::Bind("larger-once".into())
    );
}

#[test]
fn pre_bound_volumes_win_even_for_delayed_binding() {
    let provisioned = volume(
        "pvc-uid-data",
        "1Gi",
        json!({"spec": {"storageClassName": "standard", "claimRef": {"namespace": "ns", "name": "data", "uid": "uid-data"}},
               "status": {"phase": "Pending"}}),
    );
    let cluster = fixture(vec![
        volume(
            "free",
            "1Gi",
            json!({"spec": {"storageClassName": "standard"}}),
        ),
        provisioned,
    ]);
    let waiting = claim(
        "data",
        "1Gi",
        json!({"spec": {"storageClassName": "standard"}}),
    );
    assert_eq!(
        sync_claim(&waiting, &cluster),
        ClaimPlan::Bind("pvc-uid-data".into())
    );
    // Another claim of the delayed class is left to the scheduler and the provisioner.
    let other = claim(
        "other",
        "1Gi",
        json!({"spec": {"storageClassName": "standard"}}),
    );
    assert_eq!(
        sync_claim(&other, &cluster),
        ClaimPlan::Pending(Some(Event::normal(
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding"
        )))
    );
    let scheduled = claim(
        "other",
        "1Gi",
        json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "node-1"}}, "spec": {"storageClassName": "standard"}}),
    );
    assert_eq!(
        sync_claim(&scheduled, &cluster),
        ClaimPlan::Provision {
            provisioner: "skiff.dev/local-path".into()
        }
    );
    // An Immediate class provisions at once.
    let immediate = claim("now", "1Gi", json!({"spec": {"storageClassName": "fast"}}));
    assert_eq!(
        sync_claim(&immediate, &cluster),
        ClaimPlan::Provision {
            provisioner: "skiff.dev/local-path".into()
        }
    );
}

#[test]
fn a_claim_naming_its_volume() {
    let cluster = fixture(vec![
        volume("free", "1Gi", json!({})),
        volume("mine", "1Gi", claim_ref("data", "")),
        volume("theirs", "1Gi", claim_ref("other", "uid-other")),
    ]);
    let naming = |name: &str, extra: serde_json::Value| {
        let mut c = claim("data", "1Gi", json!({"spec": {"volumeName": name}}));
        let mut v = serde_json::to_value(&c).unwrap();
        merge(&mut v, extra);
        c = serde_json::from_value(v).unwrap();
        c
    };
    assert_eq!(
        sync_claim(&naming("free", json!({})), &cluster),
        ClaimPlan::Bind("free".into())
    );
    assert_eq!(
        sync_claim(&naming("mine", json!({})), &cluster),
        ClaimPlan::Bind("mine".into())
    );
    assert_eq!(
        sync_claim(&naming("missing", json!({})), &cluster),
        ClaimPlan::Pending(None)
    );
    assert_eq!(
        sync_claim(&naming("theirs", json!({})), &cluster),
        ClaimPlan::Pending(None)
    );
    let by_controller = naming(
        "theirs",
        json!({"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}}}),
    );
    assert_eq!(
        sync_claim(&by_controller, &cluster),
        ClaimPlan::Error(
            "Invalid binding of claim \"ns/data\" to volume \"theirs\": volume already claimed by \"ns/other\"".into()
        )
    );
}

#[test]
fn bound_claims_stay_bound_or_are_lost() {
    let cluster = fixture(vec![
        volume("mine", "1Gi", claim_ref("data", "uid-data")),
        volume("unbound", "1Gi", json!({})),
        volume("theirs", "1Gi", claim_ref("other", "uid-other")),
    ]);
    let bound = |volume: &str| {
        let mut c = serde_json::to_value(claim(
            "data",
            "1Gi",
            json!({"spec": {"volumeName": volume}}),
        ))
        .unwrap();
        merge(&mut c, bound_annotations());
        serde_json::from_value::<PersistentVolumeClaim>(c).unwrap()
    };
    assert_eq!(
        sync_claim(&bound("mine"), &cluster),
        ClaimPlan::Bind("mine".into())
    );
    assert_eq!(
        sync_claim(&bound("unbound"), &cluster),
        ClaimPlan::Bind("unbound".into())
    );
    assert_eq!(
        sync_claim(&bound("gone"), &cluster),
        ClaimPlan::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
        ))
    );
    assert_eq!(
        sync_claim(&bound(""), &cluster),
        ClaimPlan::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
        ))
    );
    assert_eq!(
        sync_claim(&bound("theirs"), &cluster),
        ClaimPlan::Lost(Event::warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly"
        ))
    );
}

#[test]
fn volume_phases_follow_their_claims() {
    let free = volume("v", "1Gi", json!({"status": {"phase": "Pending"}}));
    assert_eq!(sync_volume(&free, None), VolumePlan::Phase("Available"));
    let reserved = volume("v", "1Gi", claim_ref("data", ""));
    assert_eq!(sync_volume(&reserved, None), VolumePlan::Phase("Available"));

    let bound_volume = volume("v", "1Gi", claim_ref("data", "uid-data"));
    let bound_claim = claim("data", "1Gi", json!({"spec": {"volumeName": "v"}}));
    assert_eq!(
        sync_volume(&bound_volume, Some(&bound_claim)),
        VolumePlan::Phase("Bound")
    );
    let binding = claim("data", "1Gi", json!({}));
    assert_eq!(
        sync_volume(&bound_volume, Some(&binding)),
        VolumePlan::SyncClaim("ns/data".into())
    );
    // Retain: released, kept.
    assert_eq!(
        sync_volume(&bound_volume, None),
        VolumePlan::Release(Reclaim::Nothing)
    );
    // A claim of the same name but another uid is a new claim: the old one is gone.
    let replaced = claim("data", "1Gi", json!({"metadata": {"uid": "uid-new"}}));
    assert_eq!(
        sync_volume(&bound_volume, Some(&replaced)),
        VolumePlan::Release(Reclaim::Nothing)
    );
    // The claim went to another volume: bound by the controller, it comes free again.
    let elsewhere = claim("data", "1Gi", json!({"spec": {"volumeName": "other"}}));
    assert_eq!(
        sync_volume(&bound_volume, Some(&elsewhere)),
        VolumePlan::Unbind
    );
}

#[test]
fn reclaiming_by_policy() {
    let released = |extra: serde_json::Value| {
        let mut v =
            serde_json::to_value(volume("v", "1Gi", claim_ref("data", "uid-data"))).unwrap();
        merge(&mut v, extra);
        sync_volume(&serde_json::from_value(v).unwrap(), None)
    };
    // An external provisioner deletes what it made.
    assert_eq!(
        released(
            json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: "skiff.dev/local-path"}},
                        "spec": {"persistentVolumeReclaimPolicy": "Delete"}})
        ),
        VolumePlan::Release(Reclaim::Nothing)
    );
    assert_eq!(
        released(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}})),
        VolumePlan::Release(Reclaim::Fail(Event::warning(
            "VolumeFailedDelete",
            "host_path deleter only supports /tmp/.+ but received provided /data/v"
        )))
    );
    assert_eq!(
        released(
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete", "hostPath": null, "local": {"path": "/mnt"}}})
        ),
        VolumePlan::Release(Reclaim::Fail(Event::warning(
            "VolumeFailedDelete",
            "error getting deleter volume plugin for volume \"v\": no deletable volume plugin matched"
        )))
    );
    assert_eq!(
        released(json!({"spec": {"persistentVolumeReclaimPolicy": "Recycle"}})),
        VolumePlan::Release(Reclaim::Fail(Event::warning(
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!"
        )))
    );
    // Provisioned for a claim that got another volume: released and deleted.
    let provisioned = volume(
        "v",
        "1Gi",
        json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: "skiff.dev/local-path"}},
               "spec": {"persistentVolumeReclaimPolicy": "Delete",
                        "claimRef": {"namespace": "ns", "name": "data", "uid": "uid-data"}}}),
    );
    let elsewhere = claim("data", "1Gi", json!({"spec": {"volumeName": "other"}}));
    assert_eq!(
        sync_volume(&provisioned, Some(&elsewhere)),
        VolumePlan::Release(Reclaim::Nothing)
    );
}

#[test]
fn binding_writes_both_sides_once() {
    let data = claim("data", "1Gi", json!({}));
    let free = volume("v", "2Gi", json!({}));
    let bound_volume = bind_volume_to_claim(&free, &data).expect("changes");
    let written = serde_json::to_value(&bound_volume).unwrap();
    assert_eq!(
        written["spec"]["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data", "namespace": "ns",
               "resourceVersion": "7", "uid": "uid-data"})
    );
    assert_eq!(
        written["metadata"]["annotations"],
        json!({ANN_BOUND_BY_CONTROLLER: "yes"})
    );
    assert_eq!(bind_volume_to_claim(&bound_volume, &data), None);
    // A volume the user pointed at the claim is not marked as bound by the controller.
    let pre_bound = volume("v", "2Gi", claim_ref("data", ""));
    let completed = bind_volume_to_claim(&pre_bound, &data).expect("uid added");
    assert_eq!(completed.metadata.annotations, None);

    let bound_claim = bind_claim_to_volume(&data, &bound_volume).expect("changes");
    let written = serde_json::to_value(&bound_claim).unwrap();
    assert_eq!(written["spec"]["volumeName"], "v");
    assert_eq!(
        written["metadata"]["annotations"],
        json!({ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"})
    );
    assert_eq!(bind_claim_to_volume(&bound_claim, &bound_volume), None);
    // A claim that named its volume only gets bind-completed.
    let named = claim("data", "1Gi", json!({"spec": {"volumeName": "v"}}));
    let completed = bind_claim_to_volume(&named, &bound_volume).expect("completed");
    assert_eq!(
        serde_json::to_value(&completed).unwrap()["metadata"]["annotations"],
        json!({ANN_BIND_COMPLETED: "yes"})
    );

    let status = claim_status(&bound_claim, "Bound", Some(&bound_volume)).expect("changes");
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}, "phase": "Bound"})
    );
    let mut done = bound_claim.clone();
    done.status = Some(status);
    assert_eq!(claim_status(&done, "Bound", Some(&bound_volume)), None);
    // Lost: the volume's capacity and modes go.
    let lost = claim_status(&done, "Lost", None).expect("changes");
    assert_eq!(
        serde_json::to_value(&lost).unwrap(),
        json!({"phase": "Lost"})
    );
}

#[test]
fn unbinding_undoes_only_what_the_controller_did() {
    let by_controller = volume(
        "v",
        "1Gi",
        json!({"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}},
               "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "uid-data"}}}),
    );
    let unbound = unbind_volume(&by_controller);
    assert_eq!(unbound.spec.as_ref().unwrap().claim_ref, None);
    assert_eq!(unbound.metadata.annotations, None);
    let by_user = volume("v", "1Gi", claim_ref("data", "uid-data"));
    let unbound = unbind_volume(&by_user);
    let claim_ref = unbound.spec.unwrap().claim_ref.unwrap();
    assert_eq!(
        (claim_ref.name.as_deref(), claim_ref.uid),
        (Some("data"), None)
    );
}

#[test]
fn tmp_paths_as_upstreams_pattern() {
    assert!(is_under_tmp("/tmp/x"));
    assert!(is_under_tmp("/var/tmp/x"));
    assert!(!is_under_tmp("/tmp/"));
    assert!(!is_under_tmp("/data"));
}

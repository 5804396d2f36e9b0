//! A StatefulSet pod's stable identity and storage (upstream's `stateful_set_utils.go`): its
//! name `<set>-<ordinal>`, hostname and subdomain, identity labels, and one claim per
//! `volumeClaimTemplates` entry named `<template>-<set>-<ordinal>`.

use crate::controller_ref::owner_reference;
use crate::podutil::pod_from_template;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};

/// The label holding a StatefulSet pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal (PodIndexLabel, on since 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The set's name.
fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

/// The first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (default 1).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The name of the pod with `ordinal`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// The parent name and ordinal a pod's name encodes (`<parent>-<digits>`), if it does.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = pod_name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The pod's ordinal if it is a member of `set` by name.
pub fn member_ordinal(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let (parent, ordinal) = parent_and_ordinal(pod.metadata.name.as_deref()?)?;
    (parent == set_name(set)).then_some(ordinal)
}

/// The name of the claim for `template` of the pod with `ordinal`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    let template_name = template.metadata.name.as_deref().unwrap_or_default();
    format!("{template_name}-{}-{ordinal}", set_name(set))
}

/// The claims of the pod with `ordinal`, in template order, each with the template's name
/// (upstream's `getPersistentVolumeClaims`): labels are the template's plus the set's
/// `matchLabels`.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut claim = template.clone();
            claim.metadata.name = Some(claim_name(set, template, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            claim
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .extend(match_labels.clone());
            claim.status = None;
            let template_name = template.metadata.name.clone().unwrap_or_default();
            (template_name, claim)
        })
        .collect()
}

/// A new pod for `ordinal` from `template` (upstream's `newStatefulSetPod`): the set's
/// controller reference, its identity and its storage.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32) -> Pod {
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    let mut pod = pod_from_template(template, namespace, String::new(), owner_reference(set));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name(set, ordinal));
    set_identity_labels(&mut pod, ordinal);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = pod.metadata.name.clone();
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Claim volumes replace template volumes of the same name.
    let claims = claims(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(name, claim)| Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// Sets the labels that name the pod and its ordinal.
pub fn set_identity_labels(pod: &mut Pod, ordinal: i32) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// Whether the pod's name, namespace and identity labels are the ones of its ordinal
/// (upstream's `identityMatches`).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = member_ordinal(set, pod) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    pod.metadata.namespace == set.metadata.namespace
        && label(POD_NAME_LABEL) == pod.metadata.name.as_deref()
        && label(POD_INDEX_LABEL) == Some(ordinal.to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn web() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
            "spec": {
                "serviceName": "nginx",
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx"}],
                        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_parse_from_names() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web"), None);
    }

    #[test]
    fn new_pods_carry_identity_and_storage() {
        let set = web();
        let template = set.spec.as_ref().unwrap().template.clone();
        let pod = new_pod(&set, &template, 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert!(pod.metadata.generate_name.is_none());
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels["app"], "nginx");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 2, "the claim replaced the same-named volume");
        assert_eq!(volumes[0].name, "www");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "www-web-2"
        );
        assert_eq!(volumes[1].name, "cache");
        assert!(identity_matches(&set, &pod));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "set-uid")
        );

        let (template_name, claim) = &claims(&set, 2)[0];
        assert_eq!(template_name, "www");
        assert_eq!(claim.metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "nginx");
    }
}

//! Which nodes a DaemonSet runs on (upstream's `NodeShouldRunDaemonPod`), and the pod it puts
//! on one: the template with the default daemon tolerations and a node affinity that names the
//! node, so the scheduler binds it there.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use skiff_api::scheduling::{find_untolerated_taint, node_selector_matches};

/// Whether a daemon pod should be created on a node, and whether one already there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod belongs on the node.
    pub should_run: bool,
    /// A daemon pod already on the node may keep running (it tolerates the NoExecute taints).
    pub should_continue_running: bool,
}

/// Where `spec` (a daemon pod's, default tolerations included) stands with `node`: its
/// `nodeName`, its required node affinity (nodeSelector and required terms), and the node's
/// NoSchedule and NoExecute taints.
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    const NOWHERE: Placement = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return NOWHERE;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_fits = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_fits = required_affinity(spec)
        .is_none_or(|selector| node_selector_matches(selector, &labels, node_name));
    if !selector_fits || !affinity_fits {
        return NOWHERE;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let blocking = |effects: &[&str]| {
        find_untolerated_taint(taints, tolerations, |t| {
            effects.contains(&t.effect.as_str())
        })
        .is_some()
    };
    Placement {
        should_run: !blocking(&["NoSchedule", "NoExecute"]),
        should_continue_running: !blocking(&["NoExecute"]),
    }
}

fn required_affinity(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// The annotation in which apps/v1 carries a DaemonSet's legacy template generation.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The legacy pod label carrying the template generation a daemon pod was created from.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The DaemonSet's template as its pods get it (upstream's `CreatePodTemplate`): the default
/// daemon tolerations added, the revision hash label set and, while the DaemonSet carries
/// the deprecated template-generation annotation (the API server sets it), the legacy
/// `pod-template-generation` label.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let spec = template.spec.get_or_insert_with(Default::default);
    add_default_tolerations(spec);
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    // Upstream copies the annotation only when it parses as a generation.
    if let Some(generation) = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|g| g.parse::<i64>().ok())
    {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    labels.insert(crate::history::REVISION_HASH_LABEL.into(), hash.into());
    template
}

/// Adds the tolerations every daemon pod has (upstream's `AddOrUpdateDaemonPodTolerations`):
/// daemon pods stay on not-ready and unreachable nodes and run on nodes under pressure or
/// cordoned. A toleration of the same key, operator, value and effect is replaced in place
/// (so a template's bounded `tolerationSeconds` becomes unbounded), as upstream's
/// `AddOrUpdateTolerationInPodSpec` does.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let mut defaults = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        defaults.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        let same_match = tolerations.iter_mut().find(|t| {
            (&t.key, &t.operator, &t.value, &t.effect)
                == (
                    &toleration.key,
                    &toleration.operator,
                    &toleration.value,
                    &toleration.effect,
                )
        });
        match same_match {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// Makes `spec` require `node` and nothing else (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the required terms become one `matchFields` term
/// on `metadata.name`; preferred terms stay.
pub fn require_node(spec: &mut PodSpec, node: &str) {
    let only_this_node = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    spec.affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(only_this_node);
}

/// The node a daemon pod is for: its `nodeName`, or the node its affinity requires (upstream's
/// `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let [term] = required_affinity(spec)?.node_selector_terms.as_slice() else {
        return None;
    };
    term.match_fields
        .iter()
        .flatten()
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([node]) => Some(node.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn daemon_spec(value: serde_json::Value) -> PodSpec {
        let mut spec: PodSpec = serde_json::from_value(value).unwrap();
        add_default_tolerations(&mut spec);
        spec
    }

    #[test]
    fn placement_follows_selectors_affinity_and_taints() {
        let logging = node(json!({"metadata": {"name": "n1", "labels": {"log-enabled": "true"}}}));
        let plain = node(json!({"metadata": {"name": "n2"}}));
        let cordoned = node(
            json!({"metadata": {"name": "n3"}, "spec": {"unschedulable": true,
            "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}),
        );
        let unreachable = node(json!({"metadata": {"name": "n4"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]}}));
        let dedicated = node(json!({"metadata": {"name": "n5"}, "spec": {"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}));
        let gpu = node(json!({"metadata": {"name": "n6"}, "spec": {"taints": [
            {"key": "gpu", "effect": "NoSchedule"}]}}));

        let run = Placement {
            should_run: true,
            should_continue_running: true,
        };
        let stay = Placement {
            should_run: false,
            should_continue_running: true,
        };
        let nowhere = Placement {
            should_run: false,
            should_continue_running: false,
        };

        let selecting =
            daemon_spec(json!({"containers": [], "nodeSelector": {"log-enabled": "true"}}));
        assert_eq!(placement(&selecting, &logging), run);
        assert_eq!(placement(&selecting, &plain), nowhere);

        let everywhere = daemon_spec(json!({"containers": []}));
        assert_eq!(placement(&everywhere, &plain), run);
        assert_eq!(
            placement(&everywhere, &cordoned),
            run,
            "daemon pods tolerate cordons"
        );
        assert_eq!(
            placement(&everywhere, &unreachable),
            stay,
            "no new pod, the old one stays"
        );
        assert_eq!(placement(&everywhere, &dedicated), nowhere);
        assert_eq!(placement(&everywhere, &gpu), stay);

        let affinity = daemon_spec(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}));
        assert_eq!(placement(&affinity, &plain), run);
        assert_eq!(placement(&affinity, &logging), nowhere);

        let named = daemon_spec(json!({"containers": [], "nodeName": "n2"}));
        assert_eq!(placement(&named, &logging), nowhere);
    }

    #[test]
    fn daemon_pods_name_their_node() {
        let mut spec = daemon_spec(json!({"containers": [], "hostNetwork": true, "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}));
        assert_eq!(
            spec.tolerations.as_ref().unwrap().len(),
            7,
            "network-unavailable too"
        );
        add_default_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 7, "no duplicates");
        require_node(&mut spec, "n9");
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("n9"));
        let required = required_affinity(pod.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            required.node_selector_terms.len(),
            1,
            "the zone term was replaced"
        );
    }

    #[test]
    fn default_tolerations_replace_bounded_ones_in_place() {
        let spec = daemon_spec(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 60},
            {"key": "dedicated", "operator": "Equal", "value": "logs", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}));
        let listed: Vec<String> = spec
            .tolerations
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}:{}:{:?}",
                    t.key.as_deref().unwrap_or_default(),
                    t.operator.as_deref().unwrap_or_default(),
                    t.effect.as_deref().unwrap_or_default(),
                    t.toleration_seconds
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                "node.kubernetes.io/unreachable:Exists:NoExecute:None",
                "dedicated:Equal:NoSchedule:None",
                // An empty operator is `Equal`: a different toleration, so the default is added.
                "node.kubernetes.io/not-ready::NoExecute:None",
                "node.kubernetes.io/not-ready:Exists:NoExecute:None",
                "node.kubernetes.io/disk-pressure:Exists:NoSchedule:None",
                "node.kubernetes.io/memory-pressure:Exists:NoSchedule:None",
                "node.kubernetes.io/pid-pressure:Exists:NoSchedule:None",
                "node.kubernetes.io/unschedulable:Exists:NoSchedule:None",
            ]
        );
    }

    #[test]
    fn pods_carry_the_hash_and_the_legacy_template_generation() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "fluentd",
                         "annotations": {"deprecated.daemonset.template.generation": "3"}},
            "spec": {"selector": {"matchLabels": {"app": "fluentd"}},
                     "template": {"metadata": {"labels": {"app": "fluentd"}},
                                  "spec": {"containers": []}}}}))
        .unwrap();
        let labels = |ds: &DaemonSet| pod_template(ds, "6d4b9c8f7").metadata.unwrap().labels;
        assert_eq!(
            serde_json::to_value(labels(&ds)).unwrap(),
            json!({"app": "fluentd", "controller-revision-hash": "6d4b9c8f7",
                   "pod-template-generation": "3"})
        );
        let mut unannotated = ds.clone();
        unannotated.metadata.annotations = None;
        assert_eq!(
            serde_json::to_value(labels(&unannotated)).unwrap(),
            json!({"app": "fluentd", "controller-revision-hash": "6d4b9c8f7"})
        );
    }
}

//! Node selectors and tolerations over the scheduler's [`NodeFacts`]; the matching itself is
//! `skiff_api::scheduling`'s (upstream's `component-helpers/scheduling/corev1`), shared with the
//! DaemonSet controller and taint eviction.

use crate::snapshot::NodeFacts;
use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm};
use skiff_api::scheduling;

pub use skiff_api::scheduling::{tolerated, tolerates};

/// Whether any of the selector's terms matches the node.
pub fn selector_matches(selector: &NodeSelector, node: &NodeFacts) -> bool {
    scheduling::node_selector_matches(selector, &node.labels, &node.name)
}

/// Whether every requirement of the term matches the node; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeFacts) -> bool {
    scheduling::node_selector_term_matches(term, &node.labels, &node.name)
}

//! Legacy server-side rollback (upstream's `rollback.go`): the `extensions/v1beta1`
//! `spec.rollbackTo` survives as the `deprecated.deployment.rollback.to` annotation, which
//! the controller answers by copying that revision's template (and annotations) back into the
//! Deployment. Current kubectl rolls back client-side and never sets it.

use super::sync::{Event, Plan, Sync};
use super::util;
use crate::events::EventType;

/// The event reason when the requested revision does not exist.
const REVISION_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
/// The event reason when the revision has the current template already.
const TEMPLATE_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
/// The event reason of a rollback done.
const ROLLED_BACK: &str = "DeploymentRollback";

fn warning(reason: &'static str, message: String) -> Event {
    Event {
        type_: EventType::Warning,
        reason,
        message,
    }
}

/// Plans a rollback to `revision`, 0 meaning the one before the current (upstream's
/// `rollback`). The request is cleared whether or not the revision is found.
pub(super) fn rollback(mut sync: Sync, revision: i64) -> Plan {
    if sync.new.is_none() {
        sync.create_new_replica_set();
    }
    // What the sync changed so far is status; the rollback itself rewrites the Deployment.
    sync.write_status_if_changed();
    let revision = match revision {
        0 => util::last_revision(&sync.replica_sets),
        requested => requested,
    };
    if revision == 0 {
        sync.record(warning(
            REVISION_NOT_FOUND,
            "Unable to find last revision.".into(),
        ));
        return sync.clear_rollback(None);
    }
    let Some(target) = sync
        .replica_sets
        .iter()
        .find(|rs| util::revision(&rs.metadata) == Some(revision))
        .cloned()
    else {
        let message = "Unable to find the revision to rollback to.".into();
        sync.record(warning(REVISION_NOT_FOUND, message));
        return sync.clear_rollback(None);
    };
    let name = sync.deployment.metadata.name.clone().unwrap_or_default();
    let current = util::template_of_deployment(&sync.deployment);
    let same = target
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .is_some_and(|t| util::equal_ignoring_hash(t, &current));
    if same {
        let message = format!(
            "The rollback revision contains the same template as current deployment {name:?}"
        );
        sync.record(warning(TEMPLATE_UNCHANGED, message));
        return sync.clear_rollback(None);
    }
    util::set_from_replica_set(&mut sync.deployment, &target);
    let done = Event {
        type_: EventType::Normal,
        reason: ROLLED_BACK,
        message: format!("Rolled back deployment {name:?} to revision {revision}"),
    };
    sync.clear_rollback(Some(done))
}

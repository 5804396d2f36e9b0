//! What the runtime persists per pod (`<root>/pods/<uid>/state.json`), so that an agent that
//! restarts re-adopts the sandbox and container processes it started instead of orphaning or
//! duplicating them. Processes are identified by pid and start time, so a recycled pid is
//! never mistaken for ours.

use super::spawn;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// A process the runtime started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// Its pid in the agent's PID namespace.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessRef {
    /// The running process `pid`.
    pub fn of(pid: u32) -> Option<Self> {
        spawn::start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        spawn::is_alive(self.pid, self.start_time)
    }
}

/// A container's current run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The main process (leader of the container's process group).
    pub process: ProcessRef,
    /// The run's container id, without the `skiff://` scheme.
    pub id: String,
    /// `restartCount` of this run.
    pub restart_count: i32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The cgroup's OOM-kill count when it started.
    pub oom_kills_before: u64,
    /// Its environment and working directory, for `exec` and exec probes.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub working_dir: PathBuf,
}

/// A pod's persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    /// The sandbox holder, when the pod is isolated.
    pub sandbox: Option<ProcessRef>,
    /// The pod runs in the host's network namespace although it asked for its own.
    pub host_network_fallback: bool,
    /// Each running container's run, by name (init containers included).
    pub runs: BTreeMap<String, RunRecord>,
    /// The init containers that completed.
    pub finished_init: BTreeSet<String>,
    /// Each container's restart count so far, kept across agent restarts.
    pub restart_counts: BTreeMap<String, i32>,
}

impl PodState {
    fn path(pod_dir: &Path) -> PathBuf {
        pod_dir.join("state.json")
    }

    /// The state saved in `pod_dir`, if any.
    pub fn load(pod_dir: &Path) -> Option<Self> {
        let text = std::fs::read(Self::path(pod_dir)).ok()?;
        serde_json::from_slice(&text)
            .inspect_err(|err| tracing::warn!(dir = %pod_dir.display(), %err, "ignoring unreadable pod state"))
            .ok()
    }

    /// Saves the state atomically (write and rename).
    pub fn save(&self, pod_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(pod_dir)?;
        let temporary = pod_dir.join("state.json.tmp");
        std::fs::write(
            &temporary,
            serde_json::to_vec(self).expect("a pod state serializes"),
        )?;
        std::fs::rename(temporary, Self::path(pod_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_tells_live_processes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PodState::load(dir.path()), None);
        let me = ProcessRef::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let mut state = PodState {
            sandbox: Some(me),
            ..Default::default()
        };
        state.runs.insert(
            "web".into(),
            RunRecord {
                process: me,
                id: "abc".into(),
                restart_count: 2,
                started_at: "2026-11-28T03:24:03Z".into(),
                oom_kills_before: 0,
                env: vec![("A".into(), "1".into())],
                working_dir: "/".into(),
            },
        );
        state.save(dir.path()).unwrap();
        assert_eq!(PodState::load(dir.path()), Some(state));
        let recycled = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive(), "same pid, another process");
    }
}

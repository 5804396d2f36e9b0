//! Per-container cgroups enforcing `resources.limits` (memory, cpu) and `requests.cpu` as a
//! share, under `skiff/<pod uid>/<container>` of the machine's hierarchy: cgroup v2 when
//! `/sys/fs/cgroup` is a unified hierarchy with the memory controller, else the v1 `memory` and
//! `cpu` hierarchies. The kernel's `oom_kill` counter tells an OOM kill from any other SIGKILL.

use k8s_openapi::api::core::v1::Container;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The CFS period skiff uses (upstream's default, 100 ms).
const CPU_PERIOD_US: i64 = 100_000;

/// Which cgroup hierarchies the machine offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v2 at this mount point.
    V2(PathBuf),
    /// cgroup v1 `memory` and `cpu` hierarchies.
    V1 {
        /// The memory hierarchy's mount point.
        memory: PathBuf,
        /// The cpu hierarchy's mount point.
        cpu: PathBuf,
    },
    /// No usable cgroups (not root, or not Linux): limits are not enforced.
    Unavailable,
}

impl CgroupMode {
    /// What `/sys/fs/cgroup` offers to a root process.
    pub fn detect() -> Self {
        let root = Path::new("/sys/fs/cgroup");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Self::Unavailable;
        }
        let v2_controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        if v2_controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
            return Self::V2(root.to_path_buf());
        }
        let (memory, cpu) = (root.join("memory"), root.join("cpu"));
        if memory.join("memory.limit_in_bytes").exists() && cpu.join("cpu.shares").exists() {
            return Self::V1 { memory, cpu };
        }
        Self::Unavailable
    }
}

/// The limits of one container, from its spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `limits.memory` in bytes.
    pub memory_bytes: Option<i64>,
    /// `limits.cpu` in millicores.
    pub cpu_limit_milli: Option<i64>,
    /// `requests.cpu` in millicores (the limit when only that is set, as upstream defaults).
    pub cpu_request_milli: Option<i64>,
}

impl Limits {
    /// The container's limits and requests.
    pub fn of(container: &Container) -> Self {
        let resources = container.resources.as_ref();
        let quantity =
            |list: Option<&std::collections::BTreeMap<String, _>>, name: &str, milli: bool| {
                list.and_then(|l| l.get(name)).and_then(
                    |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
                        skiff_api::quantity::parse_int(&q.0, milli)
                    },
                )
            };
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        let cpu_limit_milli = quantity(limits, "cpu", true);
        Self {
            memory_bytes: quantity(limits, "memory", false),
            cpu_limit_milli,
            cpu_request_milli: quantity(requests, "cpu", true).or(cpu_limit_milli),
        }
    }

    /// Upstream's `MilliCPUToQuota`: the CFS quota for the period (at least 1 ms).
    pub fn cpu_quota_us(&self) -> Option<i64> {
        self.cpu_limit_milli
            .map(|milli| (milli * CPU_PERIOD_US / 1000).max(1000))
    }

    /// Upstream's `MilliCPUToShares`: 1024 per core, at least 2.
    pub fn cpu_shares(&self) -> u64 {
        match self.cpu_request_milli {
            Some(milli) if milli > 0 => ((milli * 1024 / 1000) as u64).max(2),
            _ => 2,
        }
    }

    /// Upstream's `CPUSharesToCPUWeight` for cgroup v2.
    pub fn cpu_weight(&self) -> u64 {
        1 + ((self.cpu_shares() - 2) * 9999) / 262142
    }
}

/// A container's cgroup (one directory per hierarchy).
#[derive(Clone, Debug)]
pub struct ContainerCgroup {
    mode: CgroupMode,
    /// `skiff/<pod uid>/<container>`.
    relative: PathBuf,
}

impl ContainerCgroup {
    /// The cgroup of `container` in pod `pod_uid`; nothing is created yet.
    pub fn new(mode: CgroupMode, pod_uid: &str, container: &str) -> Self {
        Self {
            mode,
            relative: Path::new("skiff").join(pod_uid).join(container),
        }
    }

    /// The directories holding the cgroup, one per hierarchy.
    fn dirs(&self) -> Vec<PathBuf> {
        match &self.mode {
            CgroupMode::V2(root) => vec![root.join(&self.relative)],
            CgroupMode::V1 { memory, cpu } => {
                vec![memory.join(&self.relative), cpu.join(&self.relative)]
            }
            CgroupMode::Unavailable => vec![],
        }
    }

    /// Creates the cgroup (if needed) and writes `limits` into it.
    pub fn apply(&self, limits: &Limits) -> io::Result<()> {
        match &self.mode {
            CgroupMode::V2(root) => {
                // Controllers must be enabled in every ancestor for the leaf to get them.
                let mut dir = root.clone();
                for part in self.relative.iter() {
                    write(&dir, "cgroup.subtree_control", "+memory +cpu")?;
                    dir.push(part);
                    create_dir(&dir)?;
                }
                let memory = limits
                    .memory_bytes
                    .map_or("max".into(), |bytes| bytes.to_string());
                write(&dir, "memory.max", &memory)?;
                // No swap, so that a limit is enforced by the OOM killer as on a kubelet node.
                let _ = write(&dir, "memory.swap.max", "0");
                let quota = limits
                    .cpu_quota_us()
                    .map_or("max".into(), |quota| quota.to_string());
                write(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                write(&dir, "cpu.weight", &limits.cpu_weight().to_string())
            }
            CgroupMode::V1 { memory, cpu } => {
                let memory_dir = memory.join(&self.relative);
                create_dir(&memory_dir)?;
                let bytes = limits.memory_bytes.unwrap_or(-1);
                write(&memory_dir, "memory.limit_in_bytes", &bytes.to_string())?;
                // Swap is left alone: v1 limits memory+swap only through memsw, which a
                // node without swap accounting lacks.
                let cpu_dir = cpu.join(&self.relative);
                create_dir(&cpu_dir)?;
                write(&cpu_dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                let quota = limits.cpu_quota_us().unwrap_or(-1);
                write(&cpu_dir, "cpu.cfs_quota_us", &quota.to_string())?;
                write(&cpu_dir, "cpu.shares", &limits.cpu_shares().to_string())
            }
            CgroupMode::Unavailable => Ok(()),
        }
    }

    /// The `cgroup.procs` files to write `0` into from a new process to join the cgroup.
    pub fn procs_files(&self) -> io::Result<Vec<File>> {
        self.dirs()
            .iter()
            .map(|dir| {
                OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
            })
            .collect()
    }

    /// How many times the kernel OOM-killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let events = match &self.mode {
            CgroupMode::V2(root) => root.join(&self.relative).join("memory.events"),
            CgroupMode::V1 { memory, .. } => memory.join(&self.relative).join("memory.oom_control"),
            CgroupMode::Unavailable => return 0,
        };
        std::fs::read_to_string(events)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Removes the cgroups of every container of pod `pod_uid`, then the pod's (none may hold a
/// process any more).
pub fn remove_pod(mode: &CgroupMode, pod_uid: &str) {
    let roots = match mode {
        CgroupMode::V2(root) => vec![root.clone()],
        CgroupMode::V1 { memory, cpu } => vec![memory.clone(), cpu.clone()],
        CgroupMode::Unavailable => vec![],
    };
    for root in roots {
        let pod_dir = root.join("skiff").join(pod_uid);
        for container in std::fs::read_dir(&pod_dir).into_iter().flatten().flatten() {
            if container.path().is_dir() {
                let _ = std::fs::remove_dir(container.path());
            }
        }
        let _ = std::fs::remove_dir(&pod_dir);
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {}: {e}", dir.join(file).display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(resources: serde_json::Value) -> Limits {
        let container: Container =
            serde_json::from_value(serde_json::json!({"name": "c", "resources": resources}))
                .unwrap();
        Limits::of(&container)
    }

    #[test]
    fn limits_convert_as_the_kubelet_does() {
        let l = limits(serde_json::json!({"limits": {"memory": "50Mi", "cpu": "250m"}}));
        assert_eq!(l.memory_bytes, Some(50 * 1024 * 1024));
        assert_eq!(l.cpu_quota_us(), Some(25_000));
        assert_eq!(l.cpu_shares(), 256, "requests default to limits");
        assert_eq!(l.cpu_weight(), 10);
        let small = limits(serde_json::json!({"limits": {"cpu": "5m"}, "requests": {"cpu": "1m"}}));
        assert_eq!(small.cpu_quota_us(), Some(1000), "at least 1 ms");
        assert_eq!(small.cpu_shares(), 2);
        assert_eq!(small.cpu_weight(), 1);
        let none = limits(serde_json::json!({}));
        assert_eq!(none, Limits::default());
        assert_eq!(none.cpu_quota_us(), None);
        assert_eq!(
            limits(serde_json::json!({"requests": {"cpu": "2"}})).cpu_weight(),
            79
        );
    }
}

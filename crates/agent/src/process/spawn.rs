//! Starting processes in a pod's namespaces.
//!
//! A pod's sandbox is a holder process (`sleep infinity`) that is PID 1 of a new PID namespace
//! and owns the pod's mount, UTS (hostname) and IPC namespaces, joined to the pod's network
//! namespace when it has one. Killing it ends every process of the pod.
//!
//! A container process is started from a short-lived thread that has entered the sandbox's PID
//! namespace (so the child is born in it); before `execve` the child enters the sandbox's other
//! namespaces, takes a mount namespace of its own with its volumes bind-mounted, joins its
//! cgroup, changes to its working directory and leads a new process group. Both are started by
//! [`child::start`](super::child::start), which does not copy the agent as `fork` would.

use std::ffi::c_int;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use super::child::{self, Child, Command, Stdio, Step, c_string};

/// Creates a pod sandbox with `hostname`, in the network namespace at `netns` (the host's
/// when `None`); returns the holder process (PID 1 of the pod). Call it within the tokio
/// runtime.
pub fn create_sandbox(hostname: &str, netns: Option<&Path>) -> io::Result<Child> {
    let mut steps = vec![
        Step::SetHostname(hostname.as_bytes().to_vec()),
        // Nothing mounted in the pod leaks to the host, nor the other way.
        Step::Mount {
            source: None,
            target: c"/".into(),
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
        },
        // The pins of every pod's network namespace were copied into this mount namespace:
        // kept, they would keep other pods' namespaces alive after those pods are gone.
        Step::Unmount(c_string(crate::podnet::netns::NETNS_DIR)?),
        // The pod's /proc shows its own PID namespace.
        Step::Mount {
            source: Some(c"proc".into()),
            target: c"/proc".into(),
            fstype: Some(c"proc".into()),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        },
    ];
    if let Some(netns) = netns {
        steps.push(Step::EnterNamespace(File::open(netns)?, libc::CLONE_NEWNET));
    }
    steps.push(Step::NewProcessGroup);
    child::start(Command {
        program: "sleep".into(),
        args: vec!["infinity".into()],
        env: vec![],
        steps,
        stdio: [Stdio::Null, Stdio::Null, Stdio::Null],
        namespaces: libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC,
    })
}

/// Runs `start` on a new thread (whose namespace changes die with it) inside the tokio runtime.
fn in_thread<T: Send>(
    handle: &tokio::runtime::Handle,
    start: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _runtime = handle.enter();
                start()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

/// The namespaces of a running process, to start others in.
pub struct Namespaces {
    pid: File,
    mnt: File,
    /// UTS, IPC and network.
    others: Vec<(File, c_int)>,
}

impl Namespaces {
    /// The namespaces process `pid` is in.
    pub fn of_process(pid: u32) -> io::Result<Self> {
        let open = |name: &str| File::open(format!("/proc/{pid}/ns/{name}"));
        Ok(Self {
            pid: open("pid")?,
            mnt: open("mnt")?,
            others: vec![
                (open("uts")?, libc::CLONE_NEWUTS),
                (open("ipc")?, libc::CLONE_NEWIPC),
                (open("net")?, libc::CLONE_NEWNET),
            ],
        })
    }
}

/// A directory or file bind-mounted into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// What is mounted, on the host.
    pub source: PathBuf,
    /// Where it appears.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl BindMount {
    /// Creates the mount point (a directory, or an empty file for a file source): the pod
    /// shares the host's root filesystem, so the mount point is made there.
    pub fn prepare(&self) -> io::Result<()> {
        if self.source.is_dir() {
            std::fs::create_dir_all(&self.target)
        } else {
            if let Some(parent) = self.target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !self.target.exists() {
                File::create(&self.target)?;
            }
            Ok(())
        }
    }
}

/// How to start a process.
pub struct Launch {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The working directory (inside the container's mounts).
    pub working_dir: PathBuf,
    /// The namespaces to enter; `None` runs a plain process (no isolation).
    pub namespaces: Option<Namespaces>,
    /// Mounts of a mount namespace of the process's own (only with `namespaces`).
    pub mounts: Vec<BindMount>,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<File>,
    /// Standard input, output and error.
    pub stdio: [Stdio; 3],
}

/// Starts `launch` as the leader of a new process group (of a new session with a terminal).
pub fn spawn(launch: Launch, handle: &tokio::runtime::Handle) -> io::Result<Child> {
    let Launch {
        argv,
        env,
        working_dir,
        namespaces,
        mounts,
        cgroup_procs,
        stdio,
    } = launch;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    let mut steps = Vec::new();
    let mut pid_namespace = None;
    if let Some(namespaces) = namespaces {
        steps.push(Step::EnterNamespace(namespaces.mnt, libc::CLONE_NEWNS));
        if !mounts.is_empty() {
            steps.push(Step::Unshare(libc::CLONE_NEWNS));
        }
        for mount in &mounts {
            let target = c_string(&mount.target)?;
            steps.push(Step::bind(c_string(&mount.source)?, target.clone()));
            if mount.read_only {
                steps.push(Step::remount_read_only(target));
            }
        }
        for (namespace, kind) in namespaces.others {
            steps.push(Step::EnterNamespace(namespace, kind));
        }
        pid_namespace = Some(namespaces.pid);
    }
    steps.extend(cgroup_procs.into_iter().map(Step::JoinCgroup));
    steps.push(Step::ChangeDir(c_string(&working_dir)?));
    // With a terminal the process leads a session of its own, and so its process group.
    if !stdio.iter().any(|s| matches!(s, Stdio::Terminal)) {
        steps.push(Step::NewProcessGroup);
    }
    let command = Command {
        program: program.clone(),
        args: args.to_vec(),
        env,
        steps,
        stdio,
        namespaces: 0,
    };
    match pid_namespace {
        None => {
            let _runtime = handle.enter();
            child::start(command)
        }
        Some(pid_namespace) => in_thread(handle, move || {
            // SAFETY: setns affects only this (short-lived) thread's future children.
            let entered =
                unsafe { libc::setns(pid_namespace.as_fd().as_raw_fd(), libc::CLONE_NEWPID) };
            if entered == -1 {
                return Err(io::Error::last_os_error());
            }
            child::start(command)
        }),
    }
}

/// Sends `signal` to the process group led by `pgid`; false when it no longer exists.
pub fn signal_group(pgid: u32, signal: c_int) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-(pgid as i32), signal) == 0 }
}

/// Sends `signal` to process `pid`.
pub fn signal_process(pid: u32, signal: c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Fields of `/proc/<pid>/stat` after the command name, from field 3 (the state) on.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(String::from).collect())
}

/// The process's start time (clock ticks since boot), which tells it from a later process
/// given the same pid.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is still the process that started at `started` and has not exited.
pub fn is_alive(pid: u32, started: u64) -> bool {
    stat_fields(pid)
        .is_some_and(|f| f[0] != "Z" && f.get(19).and_then(|s| s.parse().ok()) == Some(started))
}

/// Waits for a process that is not our child (adopted after an agent restart) to exit, and
/// returns its wait status when the kernel still shows it (a zombie nobody reaped).
pub async fn wait_adopted(pid: u32) -> Option<std::process::ExitStatus> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as c_int;
    if fd >= 0 {
        // SAFETY: fd is a new descriptor we own.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the pidfd, which stays open until it is dropped.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        };
        match registered {
            Ok(pidfd) => {
                let _ = pidfd.readable().await;
            }
            Err(_) => poll_exit(pid).await,
        }
    } else {
        poll_exit(pid).await;
    }
    let code: i32 = stat_fields(pid)?.get(49)?.parse().ok()?;
    Some(std::process::ExitStatus::from_raw(code))
}

async fn poll_exit(pid: u32) {
    while stat_fields(pid).is_some_and(|f| f[0] != "Z") {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A container's exit code as the kubelet reports it: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_codes_or_128_plus_the_signal() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)),
            137
        );
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(libc::SIGTERM)),
            143
        );
    }

    #[test]
    fn our_own_start_time_identifies_us() {
        let me = std::process::id();
        let started = start_time(me).expect("a start time");
        assert!(is_alive(me, started));
        assert!(!is_alive(me, started + 1));
    }
}

//! Starting a process without copying the agent, the way `posix_spawn` does it.
//!
//! `fork` copies the page tables of the whole agent (tens of MiB when the control plane runs in
//! the same process), once per container, probe and exec; with a hundred pods starting at once
//! that copying was most of the node's CPU time. [`start`] instead clones a child that shares
//! the parent's memory (`CLONE_VM | CLONE_VFORK`, the calling thread waits until the child has
//! called `execve` or exited) on a small stack of its own. Between the clone and the `execve`
//! the child runs [`Step`]s prepared by the parent: plain system calls that neither allocate
//! nor take locks, since the memory is the parent's. A failing step or `execve` leaves its
//! errno in that shared memory for the parent to report.
//!
//! The child is known by a pidfd (`CLONE_PIDFD`), which [`Child::wait`] awaits on the tokio
//! reactor; the pid cannot be reused until the child is reaped.

use std::ffi::{CString, OsStr, c_int, c_void};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

/// The child's stack: its steps are single system calls.
const STACK_SIZE: usize = 64 * 1024;

/// The usual `PATH` of a container image: what containers that set none get, and where a
/// program named without a `/` is looked for when neither the new environment nor the agent
/// has a `PATH`.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a standard stream of the child is connected to.
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A pipe whose other end is the [`Child`]'s `stdin`, `stdout` or `stderr`.
    Piped,
    /// This file (or pipe, or FIFO).
    Fd(OwnedFd),
    /// A new pseudo-terminal, the same one for every stream that asks for it: the child gets
    /// it as its controlling terminal in a session of its own, the [`Child`] its other end as
    /// `stdin` and `stdout` (a terminal has no separate error stream) and can resize it.
    Terminal,
}

impl From<File> for Stdio {
    fn from(file: File) -> Self {
        Stdio::Fd(file.into())
    }
}

/// A system call the child makes before `execve`, in order.
pub enum Step {
    /// `setns(fd, kind)`: joins a namespace of another process.
    EnterNamespace(File, c_int),
    /// `unshare(flags)`: takes new namespaces of its own.
    Unshare(c_int),
    /// `sethostname` (in its own UTS namespace).
    SetHostname(Vec<u8>),
    /// `mount(source, target, fstype, flags, NULL)`.
    Mount {
        /// The mounted file system or directory; none for a propagation or remount change.
        source: Option<CString>,
        /// The mount point.
        target: CString,
        /// The file system type, for a new mount.
        fstype: Option<CString>,
        /// `MS_*` flags.
        flags: libc::c_ulong,
    },
    /// `umount2(target, MNT_DETACH)`; nothing mounted there is not a failure.
    Unmount(CString),
    /// Writes `0` (the writer itself) to a cgroup's `cgroup.procs`.
    JoinCgroup(File),
    /// `chdir`.
    ChangeDir(CString),
    /// `setpgid(0, 0)`: leads a new process group (not with a [`Stdio::Terminal`], whose
    /// session the child leads, and so its group too).
    NewProcessGroup,
}

impl Step {
    /// A bind mount of `source` on `target`.
    pub fn bind(source: CString, target: CString) -> Step {
        Step::Mount {
            source: Some(source),
            target,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
        }
    }

    /// Makes the bind mount at `target` read-only.
    pub fn remount_read_only(target: CString) -> Step {
        Step::Mount {
            source: None,
            target,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        }
    }

    /// What the step does, for error messages.
    fn describe(&self) -> String {
        let show = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::EnterNamespace(..) => "entering the pod's namespaces".into(),
            Step::Unshare(_) => "creating namespaces".into(),
            Step::SetHostname(name) => {
                format!("setting hostname {:?}", String::from_utf8_lossy(name))
            }
            Step::Mount { target, .. } => format!("mounting {}", show(target)),
            Step::Unmount(target) => format!("unmounting {}", show(target)),
            Step::JoinCgroup(_) => "joining the container's cgroup".into(),
            Step::ChangeDir(dir) => format!("changing to working directory {}", show(dir)),
            Step::NewProcessGroup => "creating a process group".into(),
        }
    }

    /// Makes the system call; -1 with errno set on failure. Runs in the child: no allocation.
    fn run(&self) -> c_int {
        // SAFETY: every pointer is a valid C string or descriptor owned by the step.
        unsafe {
            match self {
                Step::EnterNamespace(file, kind) => libc::setns(file.as_raw_fd(), *kind),
                Step::Unshare(flags) => libc::unshare(*flags),
                Step::SetHostname(name) => libc::sethostname(name.as_ptr().cast(), name.len()),
                Step::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                } => libc::mount(
                    source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                    target.as_ptr(),
                    fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                    *flags,
                    std::ptr::null(),
                ),
                Step::Unmount(target) => {
                    let result = libc::umount2(target.as_ptr(), libc::MNT_DETACH);
                    let not_mounted = || {
                        matches!(
                            io::Error::last_os_error().raw_os_error(),
                            Some(libc::EINVAL | libc::ENOENT)
                        )
                    };
                    if result == 0 || not_mounted() { 0 } else { -1 }
                }
                Step::JoinCgroup(procs) => {
                    if libc::write(procs.as_raw_fd(), c"0".as_ptr().cast(), 1) == 1 {
                        0
                    } else {
                        -1
                    }
                }
                Step::ChangeDir(dir) => libc::chdir(dir.as_ptr()),
                Step::NewProcessGroup => libc::setpgid(0, 0),
            }
        }
    }
}

/// A process to start.
pub struct Command {
    /// The program: a path, or a name looked up in `PATH`.
    pub program: String,
    /// Its arguments after the program name.
    pub args: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// What the child does before `execve`.
    pub steps: Vec<Step>,
    /// Standard input, output and error.
    pub stdio: [Stdio; 3],
    /// `CLONE_NEW*` flags: namespaces the child is born in.
    pub namespaces: c_int,
}

/// A started process, reaped by [`Child::wait`] (or in the background once dropped).
pub struct Child {
    pid: u32,
    /// Until the child is reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// Our end of a piped standard input.
    pub stdin: Option<tokio::process::ChildStdin>,
    /// Our end of a piped standard output.
    pub stdout: Option<tokio::process::ChildStdout>,
    /// Our end of a piped standard error.
    pub stderr: Option<tokio::process::ChildStderr>,
    /// The terminal's master side, to resize it.
    terminal: Option<OwnedFd>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// The process id (in the agent's PID namespace).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pidfd = self
            .pidfd
            .as_ref()
            .expect("an unreaped child has its pidfd");
        // A pidfd is readable once its process has exited.
        let _ready = pidfd.readable().await?;
        let status = reap(self.pid)?;
        self.status = Some(status);
        self.pidfd = None;
        Ok(status)
    }

    /// Tells the child's terminal (if it has one) its new size in characters, as a terminal
    /// window does; the child gets SIGWINCH.
    pub fn resize_terminal(&self, width: u16, height: u16) -> io::Result<()> {
        let Some(master) = &self.terminal else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) })
    }

    /// Sends SIGKILL unless the process was already reaped.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: the pid is ours and unreaped, so it still names our child.
        check(unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) })
    }
}

impl Drop for Child {
    /// Reaps the process once it exits, so that it does not stay a zombie.
    fn drop(&mut self) {
        let (Some(pidfd), pid) = (self.pidfd.take(), self.pid) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = pidfd.readable().await;
                    let _ = reap(pid);
                });
            }
            Err(_) => {
                std::thread::spawn(move || reap(pid));
            }
        }
    }
}

/// Waits for child `pid` (blocking unless it has exited).
fn reap(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        if unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } != -1 {
            return Ok(ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Fails with the OS error when a libc call returned -1.
pub(crate) fn check(result: c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `value` as a C string; a NUL inside is invalid input.
pub(crate) fn c_string(value: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(value.as_ref().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Where `execve` is tried, in order: the program itself when it names a path, else each
/// directory of `PATH` (the new environment's, else the agent's), as `execvp` searches.
fn candidates(program: &str, env: &[(String, String)]) -> io::Result<Vec<CString>> {
    if program.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    if program.contains('/') {
        return Ok(vec![c_string(program)?]);
    }
    let path = match env.iter().rev().find(|(name, _)| name == "PATH") {
        Some((_, path)) => path.clone(),
        None => std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
    };
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            c_string(format!("{}/{program}", dir.trim_end_matches('/')))
        })
        .collect()
}

/// A pipe whose both ends close on exec; (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A new pseudo-terminal; (master, slave), both closed on exec.
fn open_terminal() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt returns a new descriptor or -1; the others act on it.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        check(master)?;
        let master = OwnedFd::from_raw_fd(master);
        check(libc::grantpt(master.as_raw_fd()))?;
        check(libc::unlockpt(master.as_raw_fd()))?;
        let mut name = [0 as libc::c_char; 128];
        let named = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if named != 0 {
            return Err(io::Error::from_raw_os_error(named));
        }
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        check(slave)?;
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

/// What the parent prepares for the child and the child reports back, in shared memory.
struct Shared<'a> {
    candidates: &'a [CString],
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    steps: &'a [Step],
    stdio: [c_int; 3],
    /// Whether stdin is a terminal the child makes its controlling terminal.
    terminal: bool,
    /// The parent thread's signal mask, restored in the child before `execve`.
    mask: libc::sigset_t,
    /// Set by the child when it fails: the step that failed (`steps.len()` for `execve`).
    failed_step: usize,
    /// The errno of that failure; 0 while none.
    errno: c_int,
}

/// The child: resets signal dispositions, runs the steps, connects stdio and executes.
/// Runs on the parent's memory with a stack of its own: no allocation, no locks.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the parent's `Shared`, which outlives the child's use of it (the parent
    // thread is suspended until the child has executed or exited).
    let shared = unsafe { &mut *arg.cast::<Shared>() };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: plain system calls on values prepared by the parent.
    unsafe {
        // A handler of the parent's must not run here, on its memory: caught signals go back
        // to their defaults (as `execve` would do anyway), and SIGPIPE, which the Rust runtime
        // ignores, too, so that programs get the default they expect.
        for signal in 1..=libc::SIGRTMAX() {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) == 0
                && (action.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE)
                && action.sa_sigaction != libc::SIG_DFL
            {
                action.sa_sigaction = libc::SIG_DFL;
                action.sa_flags = 0;
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
        for (index, step) in shared.steps.iter().enumerate() {
            if step.run() == -1 {
                shared.failed_step = index;
                shared.errno = errno();
                libc::_exit(127);
            }
        }
        for (target, &source) in shared.stdio.iter().enumerate() {
            if libc::dup2(source, target as c_int) == -1 {
                shared.failed_step = shared.steps.len();
                shared.errno = errno();
                libc::_exit(127);
            }
        }
        if shared.terminal && (libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1) {
            shared.failed_step = shared.steps.len() + 1;
            shared.errno = errno();
            libc::_exit(127);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &shared.mask, std::ptr::null_mut());
        // As execvp: a missing candidate moves on to the next; a denied one is reported only
        // when no later one runs; any other failure ends the search.
        let mut failure = libc::ENOENT;
        for candidate in shared.candidates {
            libc::execve(
                candidate.as_ptr(),
                shared.argv.as_ptr(),
                shared.envp.as_ptr(),
            );
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => failure = libc::EACCES,
                other => {
                    failure = other;
                    break;
                }
            }
        }
        shared.failed_step = shared.steps.len();
        shared.errno = failure;
        libc::_exit(127)
    }
}

/// Starts `command`; must be called within a tokio runtime (the child's pidfd and pipes are
/// registered with its reactor). A failure before the program runs (a step or `execve`) is the
/// error, the child then already reaped.
pub fn start(command: Command) -> io::Result<Child> {
    let Command {
        program,
        args,
        env,
        steps,
        stdio,
        namespaces,
    } = command;
    let candidates = candidates(&program, &env)?;
    let argv = std::iter::once(c_string(&program))
        .chain(args.iter().map(c_string))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|(name, value)| c_string(format!("{name}={value}")))
        .collect::<io::Result<Vec<_>>>()?;
    let null_terminated = |strings: &[CString]| {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect::<Vec<_>>()
    };
    let (argv_ptrs, envp_ptrs) = (null_terminated(&argv), null_terminated(&envp));

    // The child's ends of its streams (closed here once it runs) and our ends of the pipes.
    let mut child_ends = Vec::with_capacity(3);
    let mut our_ends: [Option<OwnedFd>; 3] = [None, None, None];
    let wants_terminal = stdio.iter().any(|s| matches!(s, Stdio::Terminal));
    let terminal = wants_terminal.then(open_terminal).transpose()?;
    for (index, stdio) in stdio.into_iter().enumerate() {
        let child_end = match stdio {
            Stdio::Terminal => {
                let (master, slave) = terminal.as_ref().expect("opened for Terminal");
                if index < 2 {
                    our_ends[index] = Some(master.try_clone()?);
                }
                slave.try_clone()?
            }
            Stdio::Null => File::options()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into(),
            Stdio::Piped => {
                let (read, write) = pipe()?;
                let (ours, theirs) = if index == 0 {
                    (write, read)
                } else {
                    (read, write)
                };
                our_ends[index] = Some(ours);
                theirs
            }
            Stdio::Fd(fd) => fd,
        };
        child_ends.push(child_end);
    }

    let mut shared = Shared {
        candidates: &candidates,
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        steps: &steps,
        stdio: [
            child_ends[0].as_raw_fd(),
            child_ends[1].as_raw_fd(),
            child_ends[2].as_raw_fd(),
        ],
        terminal: terminal.is_some(),
        // SAFETY: a sigset_t is plain data, filled in below.
        mask: unsafe { std::mem::zeroed() },
        failed_step: 0,
        errno: 0,
    };
    let mut stack = vec![0u8; STACK_SIZE];
    // SAFETY: the top of the stack, aligned down to 16 bytes as the ABI wants.
    let stack_top = unsafe { stack.as_mut_ptr().add(STACK_SIZE) };
    let stack_top = (stack_top as usize & !15) as *mut c_void;
    let mut pidfd: c_int = -1;
    // SAFETY: signals are blocked around the clone so that no handler of ours runs in the
    // child before it has reset them; `shared`, the stack and everything they point to live
    // until clone returns, which is after the child has executed or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut shared.mask);
        let pid = libc::clone(
            child_main,
            stack_top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD | namespaces,
            (&raw mut shared).cast(),
            &raw mut pidfd,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &shared.mask, std::ptr::null_mut());
        if pid == -1 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    drop(child_ends);
    // SAFETY: CLONE_PIDFD stored a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if shared.errno != 0 {
        let _ = reap(pid as u32);
        let err = io::Error::from_raw_os_error(shared.errno);
        let during = match steps.get(shared.failed_step) {
            Some(step) => Some(step.describe()),
            None if shared.failed_step > steps.len() => Some("opening a terminal session".into()),
            None => None,
        };
        return Err(match during {
            Some(during) => io::Error::new(err.kind(), format!("{during}: {err}")),
            None => err,
        });
    }
    // SAFETY: the AsyncFd owns the pidfd, which stays open until it is dropped.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    let [stdin, stdout, stderr] = our_ends;
    Ok(Child {
        pid: pid as u32,
        pidfd: Some(pidfd),
        status: None,
        stdin: stdin
            .map(|fd| tokio::process::ChildStdin::from_std(fd.into()))
            .transpose()?,
        stdout: stdout
            .map(|fd| tokio::process::ChildStdout::from_std(fd.into()))
            .transpose()?,
        stderr: stderr
            .map(|fd| tokio::process::ChildStderr::from_std(fd.into()))
            .transpose()?,
        terminal: terminal.map(|(master, _)| master),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn shell(script: &str) -> Command {
        Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            steps: vec![],
            stdio: [Stdio::Null, Stdio::Piped, Stdio::Piped],
            namespaces: 0,
        }
    }

    async fn output(child: &mut Child) -> String {
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn runs_the_program_with_its_arguments_environment_and_exit_code() {
        let mut command = shell("echo \"$GREETING $0\"; exit 3");
        command.args.push("world".into());
        command.env = vec![("GREETING".into(), "hello".into())];
        let mut child = start(command).unwrap();
        assert_eq!(output(&mut child).await, "hello world\n");
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
        assert_eq!(child.wait().await.unwrap().code(), Some(3), "stays known");
    }

    #[tokio::test]
    async fn steps_run_in_the_child_before_the_program() {
        let mut command = shell("pwd; cut -d' ' -f5 /proc/$$/stat");
        command.steps = vec![Step::ChangeDir(c"/tmp".into()), Step::NewProcessGroup];
        let mut child = start(command).unwrap();
        let pid = child.id();
        assert_eq!(output(&mut child).await, format!("/tmp\n{pid}\n"));
        assert!(child.wait().await.unwrap().success());
        let here = std::env::current_dir().unwrap();
        assert_ne!(here, std::path::Path::new("/tmp"), "the parent stays put");
    }

    #[tokio::test]
    async fn stdin_is_piped_and_signals_are_default_in_the_child() {
        let mut command = shell("read line; echo \"got $line\"; kill -PIPE $$");
        command.stdio[0] = Stdio::Piped;
        let mut child = start(command).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ping\n").await.unwrap();
        drop(stdin);
        assert_eq!(output(&mut child).await, "got ping\n");
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    }

    #[tokio::test]
    async fn a_terminal_is_the_controlling_terminal_of_a_new_session() {
        let mut command = shell(
            "read line; echo \"$line\"; tty; stty size; ps -o sid= -p $$ 2>/dev/null || cut -d' ' -f6 /proc/$$/stat",
        );
        command.stdio = [Stdio::Terminal, Stdio::Terminal, Stdio::Terminal];
        let mut child = start(command).unwrap();
        assert!(child.stderr.is_none(), "a terminal has one output stream");
        child.resize_terminal(100, 30).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed\n").await.unwrap();
        let mut out = Vec::new();
        let mut stdout = child.stdout.take().unwrap();
        // Once the child is gone the master reads EIO: the end of its output.
        let _ = stdout.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out).replace("\r\n", "\n");
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines[0], "typed", "the terminal echoes input: {out:?}");
        assert_eq!(lines[1], "typed");
        assert!(lines[2].starts_with("/dev/pts/"), "{out:?}");
        assert_eq!(lines[3], "30 100");
        assert_eq!(
            lines[4],
            child.id().to_string(),
            "the child leads its session"
        );
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn failures_before_the_program_runs_are_errors() {
        let mut missing = shell("true");
        missing.program = "no-such-program-skiff".into();
        let err = start(missing).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        let mut bad_dir = shell("true");
        bad_dir.steps = vec![Step::ChangeDir(c"/no/such/dir".into())];
        let err = start(bad_dir).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("changing to working directory /no/such/dir: "),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("data");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let mut denied = shell("true");
        denied.program = not_executable.display().to_string();
        assert_eq!(
            start(denied).err().unwrap().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[tokio::test]
    async fn the_new_environments_path_finds_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hello-skiff");
        std::fs::write(&script, "#!/bin/sh\necho found\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut command = shell("");
        command.program = "hello-skiff".into();
        command.args.clear();
        command.env = vec![(
            "PATH".into(),
            format!("/nonexistent:{}", dir.path().display()),
        )];
        let mut child = start(command).unwrap();
        assert_eq!(output(&mut child).await, "found\n");
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn a_dropped_child_is_reaped_and_can_be_killed() {
        let mut child = start(shell("sleep 30")).unwrap();
        let pid = child.id();
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));

        let child = start(shell("exit 0")).unwrap();
        let pid2 = child.id();
        drop(child);
        let gone = async {
            while std::path::Path::new(&format!("/proc/{pid2}")).exists() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), gone)
            .await
            .expect("the dropped child was reaped");
        assert_ne!(pid, pid2);
    }
}

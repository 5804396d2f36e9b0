//! Named network namespaces, kept as iproute2 keeps them (so `ip netns list|exec` see ours):
//! a namespace is pinned by a bind mount of its `/proc/…/ns/net` onto an empty file
//! `/var/run/netns/NAME`, and `/var/run/netns` is a shared mount point so that the pin
//! propagates to mount namespaces made from this one.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::process::child::{c_string, check};

/// Where named network namespaces are pinned.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Creates a network namespace pinned at [`NETNS_DIR`]`/name` (which must not exist) and
/// returns it open, ready for `setns` or `IFLA_NET_NS_FD`.
pub fn create(name: &str) -> io::Result<File> {
    ensure_shared_dir()?;
    let path = path_of(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let pinned = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare changes only this thread, which ends right after; the
                // mount arguments are NUL-terminated strings that outlive the call.
                unsafe {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    check(libc::mount(
                        c"/proc/thread-self/ns/net".as_ptr(),
                        c_string(&path)?.as_ptr(),
                        c"none".as_ptr(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))
                }
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
    });
    match pinned.and_then(|()| File::open(&path)) {
        Ok(netns) => Ok(netns),
        Err(err) => {
            let _ = remove(name);
            Err(io::Error::new(
                err.kind(),
                format!("creating network namespace {name}: {err}"),
            ))
        }
    }
}

/// Runs `work` on a short-lived thread that has entered the network namespace `netns` (an open
/// `/proc/PID/ns/net` or pin file): sockets it opens stay in that namespace.
pub fn run_in<T: Send>(netns: &File, work: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: changes only this thread, which ends right after.
                check(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) })?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
    })
}

/// Unpins the namespace called `name` and removes its file (Ok when there is none). The
/// namespace itself ends with the last process in it.
pub fn remove(name: &str) -> io::Result<()> {
    let path = path_of(name);
    // SAFETY: a NUL-terminated path that outlives the call.
    let unmounted = unsafe { libc::umount2(c_string(&path)?.as_ptr(), libc::MNT_DETACH) };
    if unmounted != 0 {
        let err = io::Error::last_os_error();
        // EINVAL: not a mount point (a file left by a failed create); ENOENT: gone.
        if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(err);
        }
    }
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Whether a namespace called `name` is pinned (or its file left).
pub fn exists(name: &str) -> bool {
    path_of(name).exists()
}

/// The pin file of the namespace called `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Makes [`NETNS_DIR`] and makes it a shared mount point (bind-mounting it onto itself first
/// when it is not a mount point), as `ip netns add` does; once per process.
fn ensure_shared_dir() -> io::Result<()> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    std::fs::create_dir_all(NETNS_DIR)?;
    let dir = c_string(NETNS_DIR)?;
    let make_shared = || {
        // SAFETY: NUL-terminated strings that outlive the call.
        check(unsafe {
            libc::mount(
                c"".as_ptr(),
                dir.as_ptr(),
                c"none".as_ptr(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        })
    };
    if let Err(err) = make_shared() {
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
        // Not a mount point yet.
        // SAFETY: as above.
        check(unsafe {
            libc::mount(
                dir.as_ptr(),
                dir.as_ptr(),
                c"none".as_ptr(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        })?;
        make_shared()?;
    }
    *done = true;
    Ok(())
}

//! Reaping: the fold's leader waited for through its pidfd, what is left of its group killed
//! before the leader is reaped (so the group id cannot be reused meanwhile), and the orphans
//! this agent adopted as a child subreaper reaped once they are zombies.

use super::{procfs, signal_group};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The leaders of the folds this process runs, until `reap` has reaped them.
pub(super) static LEADERS: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Makes this process the reaper of its descendants' orphans (once per process).
pub(super) fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!("cannot become a child subreaper ({e}): orphans of process folds escape measurement");
        }
    });
}

/// The processes re-parented to this agent: children of its main thread, the thread the
/// kernel hands orphans to while it lives. Fold leaders are children of whichever thread
/// spawned them and are reached from the leader.
pub(super) fn adopted() -> Vec<i32> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    procfs::children(me, Some(me))
}

/// How often a fold's start sweeps up the zombies of orphans from outside any fold's group
/// (those of a fold's group are reaped as the fold ends): a sweep reads /proc, and at every
/// start of a stream of trivial folds it was 4% of the agent's time.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// [`reap_adopted`] of every orphan, at most once per [`SWEEP_EVERY`].
pub(super) fn sweep_adopted() {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    drop(last);
    reap_adopted(None);
}

/// Reaps the zombies among the orphans this agent adopted: those of group `pgid` (a fold's),
/// or with None, every one that is not a fold's leader nor in the agent's own group (which
/// holds the children the agent spawns and waits for itself). Never blocks.
pub(super) fn reap_adopted(pgid: Option<i32>) {
    // SAFETY: getpid and getpgrp cannot fail.
    let (me, my_group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    let leaders = LEADERS.lock().unwrap_or_else(|e| e.into_inner());
    for pid in adopted() {
        let Some(stat) = procfs::stat(pid) else {
            continue;
        };
        let ours = match pgid {
            Some(pgid) => stat.pgrp == pgid,
            None => stat.pgrp != my_group,
        };
        if stat.state == b'Z' && stat.ppid == me && ours && !leaders.contains(&pid) {
            // SAFETY: a plain non-blocking wait for one zombie child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// How the fold's leader ended, from wait4.
pub(super) struct Exit {
    pub(super) status: libc::c_int,
    pub(super) cpu_ms: u64,
    pub(super) max_rss_bytes: u64,
}

/// [`reap`] without a blocking thread: the leader's pidfd becomes readable when it exits,
/// and the wait then returns at once. A thread per running fold, and a hand-off to it per
/// fold, was a tenth of the agent's time on a stream of trivial folds. Where pidfds are
/// missing (Linux before 5.3), a blocking thread waits as before.
pub(super) async fn reap_when_exited(pid: i32) -> io::Result<Exit> {
    match pidfd(pid) {
        Ok(fd) => {
            // SAFETY: the AsyncFd owns `fd` (an OwnedFd), which stays open and the same
            // descriptor until the AsyncFd is dropped.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(io::Error::from)?;
            // Readable once the leader has exited; it stays readable, so one wait is enough.
            let _ready = fd.readable().await?;
            reap(pid)
        }
        Err(_) => tokio::task::spawn_blocking(move || reap(pid))
            .await
            .map_err(io::Error::other)?,
    }
}

/// A pidfd of the child `pid` (not yet reaped, so the pid is still that child's).
fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Waits for the fold's leader to exit, kills what is left of its group (background processes
/// must not outlive the fold), then reaps the leader. Until it is reaped the zombie leader
/// keeps its pid, which is the group id, so the SIGKILL cannot reach an unrelated group.
/// Blocking until the leader exits ([`reap_when_exited`] calls it once it has).
fn reap(pid: i32) -> io::Result<Exit> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable siginfo_t.
    retry_eintr(|| unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) })?;
    signal_group(pid, libc::SIGKILL);
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid and writable.
    let reaped = retry_eintr(|| unsafe { libc::wait4(pid, &mut status, 0, &mut usage) });
    LEADERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
    reaped?;
    // What the SIGKILL above left of the group's adopted orphans (the rest wait for the next
    // fold's sweep).
    reap_adopted(Some(pid));
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    Ok(Exit {
        status,
        cpu_ms: ms(usage.ru_utime) + ms(usage.ru_stime),
        max_rss_bytes: usage.ru_maxrss.max(0) as u64 * 1024,
    })
}

fn retry_eintr(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match call() {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            done => return Ok(done),
        }
    }
}

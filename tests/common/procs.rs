//! Processes as /proc shows them, for tests that must see what really runs: a process group's
//! live members, and how many copies of a fold run at once. Zombies (dead, not yet reaped)
//! do not count as running.

use std::collections::BTreeSet;

/// A live process: (pid, process group, command line).
fn live() -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(Ok(pgrp))) = (fields.first(), fields.get(2).map(|g| g.parse()))
        else {
            continue;
        };
        if *state == "Z" {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        out.push((pid, pgrp, String::from_utf8_lossy(&cmdline).into_owned()));
    }
    out
}

/// The pids of the live processes of process group `pgid`.
pub fn live_members(pgid: i32) -> Vec<i32> {
    live()
        .into_iter()
        .filter(|(_, g, _)| *g == pgid)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// How many copies of a fold run: distinct process groups of live processes whose command
/// line holds `marker` (a fold's `sh -c` script names it; its subshells share its group).
pub fn copies(marker: &str) -> usize {
    live()
        .into_iter()
        .filter(|(_, _, cmd)| cmd.contains(marker))
        .map(|(_, g, _)| g)
        .collect::<BTreeSet<_>>()
        .len()
}

/// SIGKILL to `pid`, which must exist.
pub fn kill9(pid: i32) {
    assert!(pid > 1, "not a pid to kill: {pid}");
    // SAFETY: kill only sends a signal.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

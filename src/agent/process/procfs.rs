//! Reading /proc: which processes belong to a process group, and what CPU and memory they use.
//!
//! A group is found by walking down from its leader (and from pids already known to be in it)
//! through `/proc/PID/task/TID/children`, never by reading every process on the machine: the
//! cost of a sample grows with the fold's own processes, not with the host's.

use std::collections::HashMap;
use std::path::Path;

/// The figures datarun reads from one /proc/PID/stat line (see proc(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// The state letter (R, S, D, Z, ...).
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    /// User + system CPU of the process itself (all its threads), in clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot; tells a reused pid from the old one.
    pub start_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Parses a /proc/PID/stat line. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so the numbered fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5): field n is fields[n - 3].
    let number = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        pid: text[..open].trim().parse().ok()?,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(4 - 3)?.parse().ok()?,
        pgrp: fields.get(5 - 3)?.parse().ok()?,
        cpu_ticks: number(14)? + number(15)?,
        start_ticks: number(22)?,
        rss_pages: number(24)?,
    })
}

/// Every process now in process group `pgid` (zombies included, with no memory), by reading
/// all of /proc: only the tests use it, as the reference the tree walk is checked against.
#[cfg(test)]
pub fn group_members(pgid: i32) -> Vec<Stat> {
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .filter(|stat| stat.pgrp == pgid)
        .collect()
}

/// The members of process group `pgid` reachable from its leader (pid = pgid) or from any of
/// `extra` through /proc/PID/task/TID/children (each of `extra` counts only if it is in the
/// group itself).
pub fn tree_members(pgid: i32, extra: impl IntoIterator<Item = i32>) -> Vec<Stat> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![pgid];
    stack.extend(extra);
    let mut out = Vec::new();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(stat) = stat(pid) else {
            continue;
        };
        if stat.pgrp != pgid {
            continue;
        }
        out.push(stat);
        stack.extend(children(pid, None));
    }
    out
}

/// The children of process `pid`: of all its threads, or of thread `tid` only.
pub fn children(pid: i32, tid: Option<i32>) -> Vec<i32> {
    let read = |task: &Path| {
        std::fs::read_to_string(task.join("children"))
            .map(|text| {
                text.split_ascii_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    if let Some(tid) = tid {
        return read(&tasks.join(tid.to_string()));
    }
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|task| read(&task.path()))
        .collect::<Vec<i32>>()
}

/// The /proc/PID/stat figures of one process, if it exists.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Summed resident memory of `members`, in bytes.
pub fn rss_bytes(members: &[Stat]) -> u64 {
    members.iter().map(|m| m.rss_pages).sum::<u64>() * page_size()
}

pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks * 1000 / clock_ticks_per_second()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// CPU time of every process ever seen in the group, each counted once at its latest figure.
/// Processes that end without being waited for by the fold's leader (orphans, strays killed at
/// the end) are missing from the leader's rusage; they still count here, up to their last sample.
#[derive(Debug, Default)]
pub struct CpuLedger {
    /// Ticks of the processes seen in the latest sample, by (pid, start time).
    live: HashMap<(i32, u64), u64>,
    /// Ticks of the processes that have left the group since.
    gone: u64,
}

impl CpuLedger {
    pub fn record(&mut self, members: &[Stat]) {
        let mut live = HashMap::with_capacity(members.len());
        for m in members {
            let key = (m.pid, m.start_ticks);
            let before = self.live.remove(&key).unwrap_or(0);
            live.insert(key, before.max(m.cpu_ticks));
        }
        self.gone += self.live.values().sum::<u64>();
        self.live = live;
    }

    pub fn total_ticks(&self) -> u64 {
        self.gone + self.live.values().sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from this kernel, with a command name made hostile.
    const SAMPLE: &str = "14876 (my (odd) prog) R 14874 14870 6704 0 -1 4194304 101 0 1 0 \
        250 50 7 3 20 0 1 0 102721 3133440 386 18446744073709551615 94632090251264 0 0 0 0 0 \
        0 0 0 0 17 1 0 0 0 0 0\n";

    fn stat(pid: i32, start_ticks: u64, cpu_ticks: u64) -> Stat {
        Stat {
            pid,
            state: b'R',
            ppid: 1,
            pgrp: 1,
            cpu_ticks,
            start_ticks,
            rss_pages: 1,
        }
    }

    #[test]
    fn parses_the_fields_after_a_hostile_command_name() {
        let s = parse_stat(SAMPLE).unwrap();
        assert_eq!(s.pid, 14876);
        assert_eq!((s.state, s.ppid), (b'R', 14874));
        assert_eq!(s.pgrp, 14870);
        assert_eq!(s.cpu_ticks, 300, "utime + stime, without the children's");
        assert_eq!(s.start_ticks, 102721);
        assert_eq!(s.rss_pages, 386);
    }

    #[test]
    fn rejects_truncated_or_garbled_lines() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (sh) S 1 12 12 0 -1"), None);
        assert_eq!(parse_stat(&SAMPLE.replace("14870", "x")), None);
        assert_eq!(parse_stat(&SAMPLE.replacen("14876", "", 1)), None);
    }

    #[test]
    fn reads_this_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.pid as u32, std::process::id());
        // SAFETY: getpgrp cannot fail.
        assert_eq!(s.pgrp, unsafe { libc::getpgrp() });
        assert!(s.rss_pages > 0);
        assert!(group_members(s.pgrp).iter().any(|m| m.pid == s.pid));
    }

    #[test]
    fn ledger_keeps_the_cpu_of_processes_that_are_gone() {
        let mut ledger = CpuLedger::default();
        ledger.record(&[stat(10, 1, 5), stat(11, 2, 7)]);
        ledger.record(&[stat(10, 1, 9)]); // 11 exited after 7 ticks
        assert_eq!(ledger.total_ticks(), 16);
        ledger.record(&[stat(10, 1, 12), stat(11, 3, 4)]); // pid 11 reused by a new process
        assert_eq!(ledger.total_ticks(), 12 + 7 + 4);
        ledger.record(&[]);
        assert_eq!(ledger.total_ticks(), 23);
    }

    #[test]
    fn ledger_never_goes_down_for_a_live_process() {
        let mut ledger = CpuLedger::default();
        ledger.record(&[stat(10, 1, 9)]);
        ledger.record(&[stat(10, 1, 3)]);
        assert_eq!(ledger.total_ticks(), 9);
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    #[test]
    fn the_tree_walk_finds_the_same_group_as_the_full_scan() {
        // A group of three: sh, and two sleeps under it.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_members(pgid).len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut full: Vec<i32> = group_members(pgid).iter().map(|s| s.pid).collect();
        let mut tree: Vec<i32> = tree_members(pgid, []).iter().map(|s| s.pid).collect();
        full.sort_unstable();
        tree.sort_unstable();
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        assert_eq!(full.len(), 3, "{full:?}");
        assert_eq!(tree, full);
    }
}

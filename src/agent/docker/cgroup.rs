//! A container's CPU and memory counters read straight from the host's cgroup filesystem.
//!
//! The engine's stats API publishes one sample a second (even a "one-shot" request waits for
//! the next one), so a fold shorter than a second would report nothing and every fold would
//! lose up to a second of CPU at its end. The cgroup files are cheap to read as often as
//! wanted. The container's cgroup is found through its main process (`/proc/PID/cgroup`) and
//! this process's mount table, so custom cgroup parents and both cgroup versions work; when
//! it cannot be found (an agent in its own cgroup or pid namespace), the executor falls back
//! to the engine's stats.

use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
enum CpuFile {
    /// cgroup v1 `cpuacct.usage`: nanoseconds.
    V1(PathBuf),
    /// cgroup v2 `cpu.stat`: the `usage_usec` line.
    V2(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cgroup {
    cpu: Option<CpuFile>,
    memory_now: Option<PathBuf>,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (kernel 5.19+).
    memory_peak: Option<PathBuf>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub cpu_ns: Option<u64>,
    pub memory: Option<u64>,
    pub peak_memory: Option<u64>,
}

impl Cgroup {
    /// The cgroup of a running process, if its files can be read here.
    pub fn of_process(pid: u32) -> Option<Cgroup> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        locate(&cgroups, &mounts, |p| p.exists())
    }

    /// Current figures; None where a file cannot be read (the cgroup is gone once the
    /// container stopped).
    pub fn sample(&self) -> Sample {
        let number = |path: &Option<PathBuf>| {
            let text = std::fs::read_to_string(path.as_ref()?).ok()?;
            text.trim().parse::<u64>().ok()
        };
        let cpu_ns = match &self.cpu {
            Some(CpuFile::V1(path)) => number(&Some(path.clone())),
            Some(CpuFile::V2(path)) => std::fs::read_to_string(path).ok().and_then(|stat| {
                stat.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|us| us.trim().parse::<u64>().ok())
                    .map(|us| us * 1000)
            }),
            None => None,
        };
        Sample {
            cpu_ns,
            memory: number(&self.memory_now),
            peak_memory: number(&self.memory_peak),
        }
    }
}

/// Finds the cgroup directories from `/proc/PID/cgroup` and `/proc/self/mountinfo` texts.
fn locate(cgroups: &str, mountinfo: &str, exists: impl Fn(&Path) -> bool) -> Option<Cgroup> {
    let dir_v1 = |controller: &str| {
        let path = cgroups.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })?;
        mounted_dir(mountinfo, path, |fstype, options| {
            fstype == "cgroup" && options.split(',').any(|o| o == controller)
        })
        .filter(|dir| exists(dir))
    };
    let cpu_v1 = dir_v1("cpuacct").map(|d| CpuFile::V1(d.join("cpuacct.usage")));
    let memory_v1 = dir_v1("memory");
    if cpu_v1.is_some() || memory_v1.is_some() {
        return Some(Cgroup {
            cpu: cpu_v1,
            memory_now: memory_v1.as_ref().map(|d| d.join("memory.usage_in_bytes")),
            memory_peak: memory_v1.map(|d| d.join("memory.max_usage_in_bytes")),
        });
    }
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir =
        mounted_dir(mountinfo, path, |fstype, _| fstype == "cgroup2").filter(|d| exists(d))?;
    let peak = dir.join("memory.peak");
    Some(Cgroup {
        cpu: Some(CpuFile::V2(dir.join("cpu.stat"))),
        memory_now: Some(dir.join("memory.current")),
        memory_peak: exists(&peak).then_some(peak),
    })
}

/// Where the cgroup `path` is visible in this process's mount table, on a mount that `fits`
/// (fstype, super options).
fn mounted_dir(mountinfo: &str, path: &str, fits: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, mount_point) = (*left.get(3)?, *left.get(4)?);
        let (fstype, options) = (*right.first()?, *right.get(2)?);
        if !fits(fstype, options) {
            return None;
        }
        let rest = if root == "/" {
            path
        } else {
            path.strip_prefix(root)?
        };
        let rest = rest.trim_start_matches('/');
        if rest.split('/').any(|part| part == "..") {
            return None;
        }
        Some(Path::new(mount_point).join(rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS_V1: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/unified rw,nosuid shared:14 - cgroup2 cgroup2 rw";

    #[test]
    fn v1_controllers_are_found_through_the_mount_table() {
        let cgroups = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        let cg = locate(cgroups, MOUNTS_V1, |_| true).unwrap();
        assert_eq!(
            cg.cpu,
            Some(CpuFile::V1(
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpuacct.usage".into()
            ))
        );
        assert_eq!(
            cg.memory_peak,
            Some("/sys/fs/cgroup/memory/docker/abc/memory.max_usage_in_bytes".into())
        );
        assert_eq!(locate(cgroups, MOUNTS_V1, |_| false), None);
    }

    #[test]
    fn v2_and_mounts_rooted_below_the_top() {
        let mounts = "28 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";
        let cg = locate("0::/system.slice/docker-abc.scope\n", mounts, |_| true).unwrap();
        assert_eq!(
            cg.cpu,
            Some(CpuFile::V2(
                "/sys/fs/cgroup/system.slice/docker-abc.scope/cpu.stat".into()
            ))
        );
        assert_eq!(
            cg.memory_peak,
            Some("/sys/fs/cgroup/system.slice/docker-abc.scope/memory.peak".into())
        );
        let rooted = "28 22 0:26 /docker /cg rw - cgroup2 cgroup2 rw";
        let cg = locate("0::/docker/abc\n", rooted, |_| true).unwrap();
        assert_eq!(cg.memory_now, Some("/cg/abc/memory.current".into()));
        assert_eq!(locate("0::/elsewhere/abc\n", rooted, |_| true), None);
    }

    #[test]
    fn this_process_has_readable_figures_or_none() {
        // Whatever the machine, reading must not fail loudly.
        if let Some(cg) = Cgroup::of_process(std::process::id()) {
            let _ = cg.sample();
        }
    }
}

//! What an agent reports about its machine.

use super::docker::{DockerExecutor, DockerOptions};
use crate::protocol::Facts;
use std::path::Path;

/// MemTotal from /proc/meminfo, in bytes.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Free bytes on the filesystem holding `path` (statvfs), None when it cannot be read.
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// GPU indexes from `nvidia-smi`, empty when it is absent or fails.
pub fn gpus() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index", "--format=csv,noheader"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_gpu_indexes(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

fn parse_gpu_indexes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// Where the engine's version comes from.
pub enum Engine<'a> {
    /// The agent's own engine connection.
    Connected(&'a DockerExecutor),
    /// A quick try of the local engine (the CLI's `--facts` and `--ping`).
    Probe,
    /// Not asked (a process runner).
    Skip,
}

/// Everything an agent reports: [`collect`] plus GPUs, free disk under `state_dir`, and the
/// engine's version.
pub async fn gather(state_dir: Option<&Path>, engine: Engine<'_>) -> Facts {
    let mut facts = collect();
    facts.gpus = tokio::task::spawn_blocking(gpus).await.unwrap_or_default();
    facts.disk_free = state_dir.and_then(disk_free);
    facts.docker_version = match engine {
        Engine::Connected(d) => d.engine_version().await.ok(),
        Engine::Skip => None,
        Engine::Probe => {
            let probe = async {
                let d = DockerExecutor::connect(DockerOptions::default())
                    .await
                    .ok()?;
                d.engine_version().await.ok()
            };
            tokio::time::timeout(std::time::Duration::from_secs(3), probe)
                .await
                .ok()
                .flatten()
        }
    };
    facts
}

pub fn collect() -> Facts {
    Facts {
        cpus: cpu_count() as f64,
        memory: total_memory().unwrap_or(0),
        arch: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Facts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_indexes_and_disk() {
        assert_eq!(parse_gpu_indexes("0\n1\n\n"), ["0", "1"]);
        assert!(parse_gpu_indexes("NVIDIA-SMI has failed\n").is_empty());
        let free = disk_free(Path::new("/")).expect("statvfs /");
        assert!(free > 0);
        assert_eq!(disk_free(Path::new("/no/such/dir")), None);
    }
}

//! What an agent reports about its machine.

use crate::protocol::Facts;

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
    }
}

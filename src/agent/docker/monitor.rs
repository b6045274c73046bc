//! Watching a running container: CPU and memory (cgroup files or the engine's stats), progress,
//! and the log, followed live and caught up after exit, tail-capped.

use super::*;
use crate::agent::tail::Tail;

/// Live figures of the container from the engine's stats. Both counters are cumulative over
/// the cgroup's life, so an adopted container's figures include the time before adoption.
#[derive(Debug, Default)]
pub(super) struct Meter {
    pub(super) cpu_ms: u64,
    pub(super) memory: u64,
    pub(super) peak_memory: u64,
}

impl Meter {
    pub(super) fn record(&mut self, stats: &ContainerStatsResponse) {
        let cpu_ns = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage);
        if let Some(ns) = cpu_ns {
            // Kept as the maximum: after the exit the engine reports zeros.
            self.cpu_ms = self.cpu_ms.max(ns / 1_000_000);
        }
        if let Some(memory) = &stats.memory_stats {
            if let Some(usage) = memory.usage {
                self.memory = usage;
                self.peak_memory = self.peak_memory.max(usage);
            }
            let peak = memory.max_usage.unwrap_or(0);
            self.peak_memory = self.peak_memory.max(peak);
        }
    }

    pub(super) fn record_cgroup(&mut self, sample: cgroup::Sample) {
        if let Some(ns) = sample.cpu_ns {
            self.cpu_ms = self.cpu_ms.max(ns / 1_000_000);
        }
        if let Some(memory) = sample.memory {
            self.memory = memory;
            self.peak_memory = self.peak_memory.max(memory);
        }
        self.peak_memory = self.peak_memory.max(sample.peak_memory.unwrap_or(0));
    }

    pub(super) fn progress(&self, wall: Duration) -> Progress {
        Progress {
            wall_ms: wall.as_millis() as u64,
            cpu_ms: self.cpu_ms,
            memory: self.memory,
            peak_memory: self.peak_memory,
            status: None,
        }
    }
}

/// Samples the container's figures until aborted: from its cgroup files every `every` when
/// they are readable here, else from the engine's stats stream (one sample a second).
pub(super) async fn sample(
    docker: Docker,
    name: String,
    meter: Arc<Mutex<Meter>>,
    every: Duration,
    cgroup: Option<cgroup::Cgroup>,
) {
    if let Some(cgroup) = cgroup {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Small in-kernel pseudo-files: reading them does not block.
            let figures = cgroup.sample();
            meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_cgroup(figures);
        }
    }
    loop {
        let options = StatsOptionsBuilder::default().stream(true).build();
        let mut samples = docker.stats(&name, Some(options));
        while let Some(Ok(stats)) = samples.next().await {
            meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(&stats);
        }
        tokio::time::sleep(every.max(Duration::from_millis(500))).await;
    }
}

/// The log so far: its tail, and the engine's timestamp of the last chunk read.
pub(super) struct LogState {
    pub(super) tail: Tail,
    pub(super) last: Option<SystemTime>,
}

impl LogState {
    #[cfg(test)]
    pub(super) fn new(limit: u64) -> LogState {
        LogState {
            tail: Tail::new(limit),
            last: None,
        }
    }

    /// A log state whose tail the agent reads while the container runs (`fold log --follow`).
    pub(super) fn live(attempt: crate::model::AttemptId, limit: u64) -> LogState {
        LogState {
            tail: Tail::live(attempt, limit),
            last: None,
        }
    }

    /// Adds a chunk read with timestamps ("2024-05-01T10:11:12.123456789Z text"), unless it
    /// is not later than `after` (the catch-up read starts at a whole second, a little early).
    pub(super) fn push(&mut self, chunk: &[u8], after: Option<SystemTime>) {
        let stamped = chunk.iter().position(|b| *b == b' ').and_then(|space| {
            let time = std::str::from_utf8(&chunk[..space]).ok()?;
            Some((limits::parse_time(time)?, &chunk[space + 1..]))
        });
        match stamped {
            Some((time, _)) if after.is_some_and(|after| time <= after) => {}
            Some((time, text)) => {
                self.last = self.last.max(Some(time));
                self.tail.push(text);
            }
            None => self.tail.push(chunk),
        }
    }
}

pub(super) fn log_options(follow: bool, since: i32) -> bollard::query_parameters::LogsOptions {
    LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .build()
}

/// Follows the container's stdout and stderr (from its start, so an adopted container's
/// whole log is read) until the container stops. The two streams are merged in the order the
/// engine logged them: each stream keeps its order, the order between them is approximate.
pub(super) async fn follow_log(docker: Docker, name: String, log: Arc<Mutex<LogState>>) {
    let mut chunks = docker.logs(&name, Some(log_options(true, 0)));
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&chunk.into_bytes(), None),
            Err(e) => {
                tracing::warn!("log of {name}: {}", engine_message(&e));
                break;
            }
        }
    }
}

/// Reads what the follow stream missed: the stored log from the second of the last chunk
/// seen (the engine's `since` counts whole seconds), keeping only later chunks.
pub(super) async fn catch_up_log(docker: &Docker, name: &str, log: &Mutex<LogState>) {
    let last = log.lock().unwrap_or_else(|e| e.into_inner()).last;
    let since = last
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        .unwrap_or(0);
    let mut chunks = docker.logs(name, Some(log_options(false, since)));
    while let Some(Ok(chunk)) = chunks.next().await {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&chunk.into_bytes(), last);
    }
}

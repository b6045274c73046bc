//! Scheduled maintenance in the master: runner health checks, online backups of the database
//! with rotation, and purges of old outputs and logs. Jobs come from the master's config file
//! (`config.rs`); every run is recorded as a `maintenance` event.

pub mod config;
pub mod schedule;

use crate::master::MasterHandle;
use crate::store::Store;
use chrono::{DateTime, Utc};
use config::{Job, Task};
use serde::Serialize;
use std::path::Path;

pub use config::load;

/// A job as `serve` and `queue status --maintenance` show it.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    pub next_run: Option<String>,
}

pub fn describe(jobs: &[Job], now: DateTime<Utc>) -> Vec<JobStatus> {
    jobs.iter()
        .map(|j| JobStatus {
            name: j.name.to_string(),
            schedule: j.schedule.text.clone(),
            next_run: j
                .schedule
                .next_after(now)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
        .collect()
}

/// Runs the jobs on their schedules until the process ends.
pub async fn run(jobs: Vec<Job>, store: Store, master: MasterHandle) {
    if jobs.is_empty() {
        return;
    }
    let mut next: Vec<Option<DateTime<Utc>>> = jobs
        .iter()
        .map(|j| j.schedule.next_after(Utc::now()))
        .collect();
    loop {
        let Some((i, when)) = next
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)
        else {
            return;
        };
        let wait = (when - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let job = &jobs[i];
        let started = std::time::Instant::now();
        let detail = match run_task(&job.task, &store, &master).await {
            Ok(what) => format!(
                "{}: {what} ({} ms)",
                job.name,
                started.elapsed().as_millis()
            ),
            Err(e) => format!("{}: FAILED: {e}", job.name),
        };
        tracing::info!("maintenance {detail}");
        if let Err(e) = store
            .log_event(None, None, "maintenance".into(), detail)
            .await
        {
            tracing::error!("cannot record a maintenance run: {e}");
        }
        next[i] = job.schedule.next_after(Utc::now().max(when));
    }
}

async fn run_task(task: &Task, store: &Store, master: &MasterHandle) -> Result<String, String> {
    match task {
        Task::HealthCheck => {
            let runners = master.health_check();
            let (ready, down): (Vec<_>, Vec<_>) = runners.iter().partition(|r| r.state == "ready");
            let down: Vec<String> = down
                .iter()
                .map(|r| format!("{} ({})", r.name, r.state))
                .collect();
            Ok(format!(
                "{} runners ready{}",
                ready.len(),
                if down.is_empty() {
                    String::new()
                } else {
                    format!("; not ready: {}", down.join(", "))
                }
            ))
        }
        Task::Backup { dir, keep } => backup(store, dir, *keep).await,
        Task::Purge { retention } => {
            let before = Utc::now().timestamp_millis() - retention.as_millis() as i64;
            let r = store.purge(before).await.map_err(|e| e.to_string())?;
            Ok(format!(
                "removed {} outputs and {} logs of folds ended before {}, freeing {} blobs ({})",
                r.outputs,
                r.logs,
                DateTime::<Utc>::from_timestamp_millis(before)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                r.blobs,
                crate::units::format_size(r.bytes)
            ))
        }
    }
}

/// Writes `datarun-<time>.db` (and its blob files, `datarun-<time>.blobs/`) into `dir` and
/// keeps the newest `keep` of them.
async fn backup(store: &Store, dir: &Path, keep: usize) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!("datarun-{}.db", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let path = dir.join(&name);
    let report = store
        .backup_to(path.clone())
        .await
        .map_err(|e| e.to_string())?;
    let size = report.db_bytes + report.blob_bytes;
    let mut old: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("datarun-") && n.ends_with(".db"))
        .collect();
    old.sort();
    let mut removed = 0;
    while old.len() > keep {
        let victim = dir.join(old.remove(0));
        if std::fs::remove_file(&victim).is_ok() {
            removed += 1;
        }
        let blobs = crate::store::backup_blobs_dir(&victim);
        if blobs.exists() {
            if let Err(e) = std::fs::remove_dir_all(&blobs) {
                tracing::warn!("cannot remove {}: {e}", blobs.display());
            }
        }
    }
    Ok(format!(
        "wrote {} ({}), removed {removed} old backups",
        path.display(),
        crate::units::format_size(size)
    ))
}

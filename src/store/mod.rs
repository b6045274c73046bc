//! The store: the only module that speaks SQL. One thread owns the SQLite connection and runs
//! closures sent to it, one at a time, so every state change is a transaction on one owner.
//! Callers use the typed methods in the submodules; nothing outside `store` sees rusqlite.

mod blobs;
mod datasets;
mod folds;
mod holds;
mod listing;
mod losses;
mod maintenance;
mod problems;
mod records;
mod runapp;
mod runners;
mod schema;
mod submission_records;
mod submissions;
mod tenancy;
mod tokens;

pub use blobs::{is_sha256, sha256_hex, BlobBody, BlobDir, BlobFiles, INLINE_MAX};
pub use datasets::{DatasetId, DatasetRecord, NewDataset, NewSplit, SplitId, SplitRecord};
pub use maintenance::{backup_blobs_dir, BackupReport, PurgeReport};
pub use problems::{CustomSplitEnd, CustomSplitInput, NewProblemDataset};
pub use runapp::{RunappFold, RunappTarget};
pub use submissions::{
    LeaderboardInput, NewSubmission, NewSubmissionFold, Rerun, SettleInput, Settled,
    SubmissionFoldId, SubmissionFoldRecord, SubmissionId, SubmissionRecord,
};
pub use tenancy::Resource;
pub use tokens::{Principal, Scope, TokenCheck, TokenRecord};

pub use folds::{
    ActiveAttempt, AttemptRecord, BlobData, CancelTarget, EventRecord, FoldFilter, FoldPage,
    FoldRecord, NewAttempt, OutputRecord, QueueCount, RecordResult, ReleaseChanges, ResultInput,
};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// The blob files (disk full, a damaged blob directory).
    #[error("{0}")]
    Io(String),
    #[error("the store has shut down")]
    Closed,
    #[error("cannot open the database {path}: {message}")]
    Open { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store's owner thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Job>,
    /// The files of large blobs (`blobs/` next to the database).
    files: BlobDir,
    /// How many runner losses a fold may take before it is held (`set_max_losses`).
    max_losses: Arc<AtomicU32>,
}

/// How many times a fold may lose its runner (crash, partition past the lease) before it is
/// held `lost_too_often`, unless the master's config (`[policy] max_losses`) says otherwise.
pub const DEFAULT_MAX_LOSSES: u32 = 5;

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn).map_err(open_err)?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("datarun-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Store {
            jobs: tx,
            files: BlobDir::for_database(path),
            max_losses: Arc::new(AtomicU32::new(DEFAULT_MAX_LOSSES)),
        })
    }

    /// Sets how many runner losses a fold may take before it is held (for every clone).
    pub fn set_max_losses(&self, max: u32) {
        self.max_losses.store(max, Ordering::Relaxed);
    }

    fn max_losses(&self) -> u32 {
        self.max_losses.load(Ordering::Relaxed)
    }

    /// Runs `f` on the owner thread and waits for its answer without blocking the runtime.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like `call`, for code outside an async runtime (CLI commands that open the store).
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod loss_tests;
#[cfg(test)]
mod submission_tests;
#[cfg(test)]
mod tests;

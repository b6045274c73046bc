//! The store: the only module that speaks SQL. One thread owns the SQLite connection and runs
//! closures sent to it, one at a time, so every state change is a transaction on one owner.
//! Callers use the typed methods in the submodules; nothing outside `store` sees rusqlite.

mod attempts;
pub(crate) mod blobs;
mod datasets;
pub mod engine;
mod events;
mod features;
pub(crate) mod folds;
mod holds;
mod listing;
mod losses;
mod maintenance;
pub mod pg;
mod problems;
pub(crate) mod provenance;
mod records;
mod row;
mod runapp;
mod runners;
mod schema;
mod submission_records;
mod submission_settle;
mod submissions;
pub(crate) mod sweeps;
mod tenancy;
mod tokens;
pub(crate) mod waiting;
pub(crate) mod webhooks;
mod writer;

pub use attempts::ReportChunk;
pub use blobs::{is_sha256, sha256_hex, BlobBody, BlobDir, BlobFiles, INLINE_MAX};
pub use datasets::{DatasetId, DatasetRecord, NewDataset, NewSplit, SplitId, SplitRecord};
pub use engine::{NewFold, QueueStore};
pub use events::{EventFilter, EventPage, FeedEvent};
pub use features::Feature;
pub use maintenance::{backup_blobs_dir, BackupReport, PurgeReport};
pub use problems::{CustomSplitEnd, CustomSplitInput, NewProblemDataset};
pub use provenance::MAX_PROVENANCE;
pub use runapp::{RunappFold, RunappTarget};
pub use submissions::{
    LeaderboardInput, NewSubmission, NewSubmissionFold, Rerun, SettleInput, SettleScope, Settled,
    SubmissionFoldId, SubmissionFoldRecord, SubmissionId, SubmissionRecord,
};
pub use sweeps::{KeepReport, NewSweep, PointRecord, SweepRecord};
pub use tenancy::Resource;
pub use tokens::{Principal, Scope, TokenCheck, TokenRecord};
pub use webhooks::{AttemptEnd, Delivery, HookKind, WebhookRecord};

pub use folds::{
    ActiveAttempt, ArrayPlace, ArrayRecord, AttemptRecord, BlobData, CancelTarget, EventRecord,
    FoldChange, FoldFilter, FoldPage, FoldRecord, NewArray, NewAttempt, OutputRecord, QueueCount,
    RecordResult, ReleaseChanges, ResultInput,
};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
#[cfg(test)]
use writer::GROUP_TIME;
use writer::{checkpointer, writer, Durability, Job, Lane, Queued, Urgency};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store (`pg`).
    #[error("database error: {0}")]
    Postgres(String),
    /// A write by a master that no longer holds the leadership lease (`pg::lease`).
    #[error("{0}")]
    Fenced(String),
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
    /// A feature the PostgreSQL store does not have yet (README "PostgreSQL").
    #[error("{0}: not on PostgreSQL yet (README \"PostgreSQL\" lists what is)")]
    Unsupported(Feature),
    #[error("cannot open the database {path}: {message}")]
    Open { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A job for a reader: runs on a read-only connection and answers at once.
type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// Reader threads beside the writer.
const READERS: usize = 2;
/// Prepared statements kept per connection (`prepare_cached`). rusqlite keeps 16 by default;
/// recording one result runs more distinct statements than that (attempt, fold, event,
/// provenance, dependants, webhooks...), so every statement was parsed again each time: a sixth
/// of the master's CPU on a stream of trivial folds.
const STATEMENT_CACHE: usize = 512;

/// A handle to the store's threads. Cheap to clone.
///
/// One writer thread owns the read-write connection; every change is a job run there, one at
/// a time, each in its own transaction. The writer **commits in groups**: it runs the jobs
/// that are waiting (up to `GROUP`, for up to `GROUP_TIME`) with `synchronous=NORMAL`, then
/// makes the group durable with one fsync (a write of `sync_marker` with `synchronous=FULL`,
/// which syncs the WAL and so every commit before it), and only then answers the callers.
/// Many small submits share an fsync and each is still on disk before it is acknowledged.
/// The writer lives in `writer.rs`.
///
/// **Urgent** jobs (`Urgency::First`: the master's assignment commits into free slots) go before
/// every other job waiting, and their group ends as soon as no urgent job waits: a placement
/// never queues behind a stream of result recordings or submits, which the master records in
/// chunks (`apply_reports_chunked`) so that no one job holds the writer for long. A fold only
/// queued behind running work (`assign_behind`) is urgent only if other jobs wait when the
/// writer takes it in (`Urgency::FirstIfJobsWait`).
///
/// The other jobs run in two **lanes** taken in turn (`Lanes`): the master's own (a `Store`
/// from `for_master`) and everyone else's. A submit batch waits for one result chunk at most,
/// not for a whole flush of thousands of results queued together; each lane keeps its order.
///
/// Reader threads own read-only connections: queries that change nothing (`read`) run there,
/// never waiting behind the writer (WAL lets readers and a writer work at once). The master's
/// cycle reads what changed on a reader of its own (`read_for_master`), never behind the API's
/// reads.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Queued>,
    reads: std::sync::mpsc::Sender<ReadJob>,
    /// The master's own reader (`read_for_master`).
    master_reads: std::sync::mpsc::Sender<ReadJob>,
    /// The files of large blobs (`blobs/` next to the database).
    files: BlobDir,
    /// How many runner losses a fold may take before it is held (`set_max_losses`).
    max_losses: Arc<AtomicU32>,
    /// The change signal (`subscribe`): the newest event's id, published by the writer after
    /// each group of jobs that changed anything (once it is durable).
    changes: tokio::sync::watch::Receiver<i64>,
    /// The PostgreSQL engine, when this store is one (`open_pg`): the operations it has go
    /// there, every other one fails as `StoreError::Unsupported` (`engine`).
    pg: Option<pg::PgStore>,
    /// The writer's lane of this handle's jobs (`for_master`).
    lane: Lane,
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
        let thread_err = |e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn).map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // The WAL is copied into the database by a thread of its own (`checkpointer`), not
        // by whichever commit of the writer crosses 1,000 pages: that commit then held every
        // job behind it (a placement too) for the copy and its fsyncs.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        let checkpoints = Connection::open(path).map_err(open_err)?;
        let (tx, rx) = std::sync::mpsc::channel::<Queued>();
        let (alive, writer_gone) = std::sync::mpsc::channel::<()>();
        let (changed, changes) =
            tokio::sync::watch::channel(events::newest(&conn).map_err(open_err)?);
        std::thread::Builder::new()
            .name("datarun-store".into())
            .spawn(move || {
                let _alive = alive;
                writer(conn, rx, changed)
            })
            .map_err(thread_err)?;
        std::thread::Builder::new()
            .name("datarun-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, writer_gone))
            .map_err(thread_err)?;
        let (read_tx, read_rx) = std::sync::mpsc::channel::<ReadJob>();
        let read_rx = std::sync::Arc::new(std::sync::Mutex::new(read_rx));
        let (master_tx, master_rx) = std::sync::mpsc::channel::<ReadJob>();
        let master_rx = std::sync::Arc::new(std::sync::Mutex::new(master_rx));
        // READERS shared by every reader, and one the master's cycle has to itself.
        let readers = (0..READERS)
            .map(|i| (format!("datarun-read-{i}"), read_rx.clone()))
            .chain([("datarun-read-master".to_string(), master_rx)]);
        for (name, rx) in readers {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI;
            let mut reader = Connection::open_with_flags(path, flags).map_err(open_err)?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            reader
                .busy_timeout(std::time::Duration::from_secs(10))
                .map_err(open_err)?;
            std::thread::Builder::new()
                .name(name)
                .spawn(move || loop {
                    let job = match rx.lock().map(|rx| rx.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return,
                    };
                    job(&mut reader);
                })
                .map_err(thread_err)?;
        }
        Ok(Store {
            jobs: tx,
            reads: read_tx,
            master_reads: master_tx,
            files: BlobDir::for_database(path),
            max_losses: Arc::new(AtomicU32::new(DEFAULT_MAX_LOSSES)),
            changes,
            pg: None,
            lane: Lane::Others,
        })
    }

    /// This store for the master's own jobs: they run in one order among themselves, taking
    /// turns with everyone else's (see `Store`).
    pub(crate) fn for_master(&self) -> Store {
        Store {
            lane: Lane::Master,
            ..self.clone()
        }
    }

    /// Sets how many runner losses a fold may take before it is held (for every clone).
    pub fn set_max_losses(&self, max: u32) {
        if let Some(pg) = self.pg() {
            pg.set_max_losses(max);
        }
        self.max_losses.store(max, Ordering::Relaxed);
    }

    fn max_losses(&self) -> u32 {
        self.max_losses.load(Ordering::Relaxed)
    }

    /// Queues `f` for the writer; `answer` gets its result once its changes are durable.
    fn enqueue<T, F>(
        &self,
        durability: Durability,
        urgency: Urgency,
        f: F,
        answer: impl FnOnce(Result<T>) + Send + 'static,
    ) -> Result<()>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let op = crate::metrics::op_name(std::any::type_name::<F>());
        if self.pg.is_some() {
            return Err(StoreError::Unsupported(Feature::of_job(
                std::any::type_name::<F>(),
            )));
        }
        let job: Job = Box::new(move |conn| {
            let t = std::time::Instant::now();
            let out = f(conn);
            let took = t.elapsed();
            crate::metrics::get().store_op("write", op, took);
            if took >= std::time::Duration::from_millis(50) {
                tracing::debug!(
                    target: "datarun::timing",
                    "write_ms={:.3} op={op}",
                    took.as_secs_f64() * 1000.0
                );
            }
            Box::new(move || answer(out))
        });
        self.jobs
            .send(Queued {
                durability,
                urgency,
                lane: self.lane,
                job,
                queued_at: std::time::Instant::now(),
            })
            .map_err(|_| StoreError::Closed)
    }

    /// Queues `f` and returns how to wait for its answer: jobs queued one after another by
    /// one caller run in that order (`apply_reports_chunked` queues its chunks at once).
    fn queue_with<T, F>(
        &self,
        durability: Durability,
        urgency: Urgency,
        f: F,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(durability, urgency, f, move |out| {
            let _ = tx.send(out);
        })?;
        Ok(rx)
    }

    /// Queues a durable job without waiting for it (see `queue_with`).
    fn queue<T, F>(&self, f: F) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.queue_with(Durability::Durable, Urgency::InTurn, f)
    }

    async fn call_with<T, F>(&self, durability: Durability, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.call_in(durability, Urgency::InTurn, f).await
    }

    /// Runs `f` on the writer as soon as `urgency` says and waits for its answer.
    async fn call_in<T, F>(&self, durability: Durability, urgency: Urgency, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let rx = self.queue_with(durability, urgency, f)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer and waits for its answer (after its changes are on disk)
    /// without blocking the runtime.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.call_with(Durability::Durable, f).await
    }

    /// Like `call`, for changes that need not survive a crash of the machine.
    pub(crate) async fn call_lazy<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.call_with(Durability::Lazy, f).await
    }

    /// Runs a query that changes nothing on a reader connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.read_on(&self.reads, f).await
    }

    /// Like `read`, with every query of `f` in one read transaction: a record read from
    /// several tables (a submission and its folds) comes from one snapshot, as it would on
    /// the writer, without waiting behind the writer's commits and fsyncs.
    pub(crate) async fn read_snapshot<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read(move |conn| {
            let tx = conn.transaction()?;
            f(&tx)
        })
        .await
    }

    /// Like `read`, on the master's own reader: the scheduling cycle's look at what changed
    /// never queues behind API reads (listings, status, lookups).
    pub(crate) async fn read_for_master<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.read_on(&self.master_reads, f).await
    }

    async fn read_on<T, F>(&self, reads: &std::sync::mpsc::Sender<ReadJob>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op = crate::metrics::op_name(std::any::type_name::<F>());
        if self.pg.is_some() {
            return Err(StoreError::Unsupported(Feature::of_job(
                std::any::type_name::<F>(),
            )));
        }
        reads
            .send(Box::new(move |conn| {
                let t = std::time::Instant::now();
                let out = f(conn);
                crate::metrics::get().store_op("read", op, t.elapsed());
                let _ = tx.send(out);
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
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.enqueue(Durability::Durable, Urgency::InTurn, f, move |out| {
            let _ = tx.send(out);
        })?;
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
pub(crate) mod submission_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod writer_tests;

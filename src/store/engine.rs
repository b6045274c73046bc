//! The queue's core operations as one interface, so the master can run on either store: the
//! embedded SQLite store (`Store`, the default) or PostgreSQL (`pg::PgStore`; README
//! "PostgreSQL: several masters, one active"). The contract suite (`tests/store_contract.rs`)
//! runs the same tests against both. A `Store` opened with `open_pg` carries a `PgStore`
//! inside: the operations ported to PostgreSQL route there (the `if let Some(pg)` at the top
//! of each), every other one fails as `StoreError::Unsupported` where it would have reached
//! the SQLite threads (`enqueue`, `read`).
//!
//! The SQLite implementation delegates to the store's own methods; the semantics (exactly
//! once, late results rejected, holds, losses, purge) are theirs, and the PostgreSQL store
//! copies them.

use super::pg::PgStore;
use super::{
    ActiveAttempt, CancelTarget, EventRecord, FoldChange, FoldRecord, NewAttempt, PurgeReport,
    RecordResult, ReleaseChanges, Result, ResultInput, Store,
};
use crate::model::{AttemptId, FoldId, FoldSpec, HoldCode};
use crate::protocol::Grant;
use crate::scheduler::PendingFold;
use std::future::Future;

/// A fold to submit, with the hold it is stored under, if any.
pub type NewFold = (FoldSpec, Option<(HoldCode, String)>);

/// The queue's core operations (see each `Store` method of the same name for its semantics).
pub trait QueueStore: Clone + Send + Sync + 'static {
    /// Stores new folds of `owner` in one transaction (all or nothing).
    fn submit(
        &self,
        owner: String,
        admin: bool,
        folds: Vec<NewFold>,
    ) -> impl Future<Output = Result<Vec<FoldId>>> + Send;

    fn fold(&self, id: FoldId) -> impl Future<Output = Result<FoldRecord>> + Send;

    /// A fold's events, oldest first.
    fn events(&self, fold: FoldId) -> impl Future<Output = Result<Vec<EventRecord>>> + Send;

    /// Idle folds as the scheduler needs them, and the newest change they include.
    fn pending_folds(&self) -> impl Future<Output = Result<(Vec<PendingFold>, i64)>> + Send;

    /// Folds changed after `seq` (at most `limit`, oldest change first) and the `seq` to ask
    /// from next time: what the master's idle index follows.
    fn fold_changes(
        &self,
        seq: i64,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<FoldChange>, i64)>> + Send;

    /// Attempts out on runners (assigned or running).
    fn active_attempts(&self) -> impl Future<Output = Result<Vec<ActiveAttempt>>> + Send;

    /// Of these attempts, those whose fold has moved on (to kill wherever they still run).
    fn superseded_attempts(
        &self,
        attempts: Vec<AttemptId>,
    ) -> impl Future<Output = Result<Vec<AttemptId>>> + Send;

    /// Of these attempts, those the store knows, with their fold and grant.
    fn attempt_grants(
        &self,
        attempts: Vec<AttemptId>,
    ) -> impl Future<Output = Result<Vec<(AttemptId, FoldId, Grant)>>> + Send;

    /// Commits assignments in one transaction; folds no longer idle are skipped.
    fn assign(
        &self,
        new: Vec<NewAttempt>,
    ) -> impl Future<Output = Result<Vec<(AttemptId, NewAttempt, FoldSpec)>>> + Send;

    fn mark_started(&self, attempt: AttemptId) -> impl Future<Output = Result<()>> + Send;

    /// Agent reports (attempts started, results) in one transaction.
    fn apply_reports(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
    ) -> impl Future<Output = Result<Vec<RecordResult>>> + Send;

    /// Ends an attempt exactly once (a duplicate is ignored, a late one rejected).
    fn record_result(
        &self,
        input: ResultInput,
    ) -> impl Future<Output = Result<RecordResult>> + Send;

    /// Ends an attempt as lost: its fold is requeued without using a retry.
    fn mark_lost(
        &self,
        attempt: AttemptId,
        reason: String,
    ) -> impl Future<Output = Result<RecordResult>> + Send;

    fn hold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> impl Future<Output = Result<Option<CancelTarget>>> + Send;

    fn release(
        &self,
        fold: FoldId,
        by: String,
        changes: ReleaseChanges,
    ) -> impl Future<Output = Result<FoldSpec>> + Send;

    fn remove(
        &self,
        fold: FoldId,
        by: String,
    ) -> impl Future<Output = Result<Option<CancelTarget>>> + Send;

    /// Drops the outputs and logs of folds that ended before `before` (ms since the epoch),
    /// then the blobs nothing refers to any more.
    fn purge(&self, before: i64) -> impl Future<Output = Result<PurgeReport>> + Send;
}

impl QueueStore for Store {
    fn submit(
        &self,
        owner: String,
        admin: bool,
        folds: Vec<NewFold>,
    ) -> impl Future<Output = Result<Vec<FoldId>>> + Send {
        Store::submit(self, owner, admin, folds)
    }

    fn fold(&self, id: FoldId) -> impl Future<Output = Result<FoldRecord>> + Send {
        Store::fold(self, id)
    }

    fn events(&self, fold: FoldId) -> impl Future<Output = Result<Vec<EventRecord>>> + Send {
        Store::events(self, fold)
    }

    fn pending_folds(&self) -> impl Future<Output = Result<(Vec<PendingFold>, i64)>> + Send {
        Store::pending_folds(self)
    }

    fn fold_changes(
        &self,
        seq: i64,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<FoldChange>, i64)>> + Send {
        Store::fold_changes(self, seq, limit)
    }

    fn active_attempts(&self) -> impl Future<Output = Result<Vec<ActiveAttempt>>> + Send {
        Store::active_attempts(self)
    }

    fn superseded_attempts(
        &self,
        attempts: Vec<AttemptId>,
    ) -> impl Future<Output = Result<Vec<AttemptId>>> + Send {
        Store::superseded_attempts(self, attempts)
    }

    fn attempt_grants(
        &self,
        attempts: Vec<AttemptId>,
    ) -> impl Future<Output = Result<Vec<(AttemptId, FoldId, Grant)>>> + Send {
        Store::attempt_grants(self, attempts)
    }

    fn assign(
        &self,
        new: Vec<NewAttempt>,
    ) -> impl Future<Output = Result<Vec<(AttemptId, NewAttempt, FoldSpec)>>> + Send {
        Store::assign(self, new)
    }

    fn mark_started(&self, attempt: AttemptId) -> impl Future<Output = Result<()>> + Send {
        Store::mark_started(self, attempt)
    }

    fn apply_reports(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
    ) -> impl Future<Output = Result<Vec<RecordResult>>> + Send {
        Store::apply_reports(self, started, results)
    }

    fn record_result(
        &self,
        input: ResultInput,
    ) -> impl Future<Output = Result<RecordResult>> + Send {
        Store::record_result(self, input)
    }

    fn mark_lost(
        &self,
        attempt: AttemptId,
        reason: String,
    ) -> impl Future<Output = Result<RecordResult>> + Send {
        Store::mark_lost(self, attempt, reason)
    }

    fn hold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> impl Future<Output = Result<Option<CancelTarget>>> + Send {
        Store::hold(self, fold, code, reason)
    }

    fn release(
        &self,
        fold: FoldId,
        by: String,
        changes: ReleaseChanges,
    ) -> impl Future<Output = Result<FoldSpec>> + Send {
        Store::release(self, fold, by, changes)
    }

    fn remove(
        &self,
        fold: FoldId,
        by: String,
    ) -> impl Future<Output = Result<Option<CancelTarget>>> + Send {
        Store::remove(self, fold, by)
    }

    fn purge(&self, before: i64) -> impl Future<Output = Result<PurgeReport>> + Send {
        Store::purge(self, before)
    }
}

impl Store {
    /// A store on PostgreSQL at `url` (migrated to the current schema). Large blobs stay in
    /// their rows there; `data_dir` holds only the staging files of uploads and results on
    /// their way in. Operations not ported yet fail as `StoreError::Unsupported`.
    pub async fn open_pg(url: &str, data_dir: &std::path::Path) -> Result<Store> {
        let pg = PgStore::connect(url).await?;
        Ok(Store::on_pg(pg, data_dir))
    }

    /// A store over a connected PostgreSQL handle (see `open_pg`).
    pub fn on_pg(pg: PgStore, data_dir: &std::path::Path) -> Store {
        // No SQLite threads: the queues lead nowhere, and `enqueue`/`read` refuse first.
        let (jobs, _) = std::sync::mpsc::channel();
        let (reads, _) = std::sync::mpsc::channel();
        let (master_reads, _) = std::sync::mpsc::channel();
        let changes = pg.subscribe();
        Store {
            jobs,
            reads,
            master_reads,
            files: super::BlobDir::new(data_dir.join("blobs")),
            max_losses: std::sync::Arc::new(std::sync::atomic::AtomicU32::new(
                super::DEFAULT_MAX_LOSSES,
            )),
            changes,
            pg: Some(pg),
            lane: super::Lane::Others,
        }
    }

    /// The PostgreSQL engine, when this store runs on one.
    pub fn pg(&self) -> Option<&PgStore> {
        self.pg.as_ref()
    }

    /// Whether several masters may share this store, one of them active at a time (its
    /// leadership lease; PostgreSQL), rather than one master owning it (SQLite).
    pub fn shared(&self) -> bool {
        self.pg.is_some()
    }
}

/// Awaits a PostgreSQL write and, when it committed, publishes the change (`Store::subscribe`).
pub(super) async fn published<T>(
    pg: &PgStore,
    write: impl Future<Output = Result<T>>,
) -> Result<T> {
    let out = write.await;
    if out.is_ok() {
        pg.publish().await;
    }
    out
}

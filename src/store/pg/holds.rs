//! Holds, releases and removes on PostgreSQL, with the SQLite store's semantics
//! (`store::holds`): fenced, the fold's row locked; a release settles what the fold waits for,
//! a remove moves on what waits for it (`waiting`). And events logged without a state change.

use super::lease::fence;
use super::queue::{event, get_fold, set_state};
use super::PgStore;
use crate::model::{FoldId, FoldSpec, FoldState, HoldCode};
use crate::store::{CancelTarget, ReleaseChanges, Result, StoreError};
use tokio_postgres::Transaction;

/// The attempt a hold or remove must kill, if one is out.
pub(super) async fn active_attempt_of(
    tx: &Transaction<'_>,
    fold: FoldId,
) -> Result<Option<CancelTarget>> {
    Ok(tx
        .query_opt(
            "SELECT a.id, a.runner FROM folds f JOIN attempts a ON a.id = f.current_attempt
             WHERE f.id = $1 AND a.state <> 'ended'",
            &[&fold],
        )
        .await?
        .map(|r| CancelTarget {
            attempt: r.get(0),
            runner: r.get(1),
        }))
}

impl PgStore {
    pub(super) async fn hold_fold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> Result<Option<CancelTarget>> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let f = get_fold(&tx, fold, true).await?;
        if f.state == FoldState::Held {
            return Err(StoreError::Conflict(format!("fold {fold} is already held")));
        }
        if f.state.is_final() {
            return Err(StoreError::Conflict(format!(
                "fold {fold} is {}; only idle, assigned or running folds can be held",
                f.state
            )));
        }
        let cancel = active_attempt_of(&tx, fold).await?;
        set_state(&tx, fold, FoldState::Held, Some(&reason), Some(code)).await?;
        let attempt = cancel.as_ref().map(|c| c.attempt);
        event(&tx, Some(fold), attempt, "held", &reason).await?;
        tx.commit().await?;
        Ok(cancel)
    }

    pub(super) async fn release_fold(
        &self,
        fold: FoldId,
        by: String,
        changes: ReleaseChanges,
    ) -> Result<FoldSpec> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let f = get_fold(&tx, fold, true).await?;
        if f.state != FoldState::Held {
            return Err(StoreError::Conflict(format!(
                "fold {fold} is {}, not held; only held folds can be released",
                f.state
            )));
        }
        let spec = changes.apply(&f.spec).map_err(StoreError::Invalid)?;
        if spec != f.spec {
            super::provenance::freeze(&tx, fold).await?;
        }
        tx.execute(
            "UPDATE folds SET spec = $1, millicpus = $2, memory = $3, hard_limit_ms = $4,
             current_attempt = NULL WHERE id = $5",
            &[
                &serde_json::to_string(&spec).expect("spec serializes"),
                &(spec.resources.millicpus() as i64),
                &(spec.resources.memory as i64),
                &spec.hard_time_limit.map(|v| v as i64),
                &fold,
            ],
        )
        .await?;
        set_state(&tx, fold, FoldState::Idle, None, None).await?;
        let detail = if changes.is_empty() {
            format!("released by {by}")
        } else {
            format!("released by {by} with {}", changes.describe())
        };
        event(&tx, Some(fold), None, "released", &detail).await?;
        // Released into line only if what it waits for has ended.
        super::waiting::settle(&tx, fold).await?;
        tx.commit().await?;
        Ok(spec)
    }

    pub(super) async fn remove_fold(
        &self,
        fold: FoldId,
        by: String,
    ) -> Result<Option<CancelTarget>> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let f = get_fold(&tx, fold, true).await?;
        if f.state.is_final() {
            return Err(StoreError::Conflict(format!(
                "fold {fold} is already {}",
                f.state
            )));
        }
        let cancel = active_attempt_of(&tx, fold).await?;
        let why = format!("removed by {by}");
        set_state(&tx, fold, FoldState::Removed, Some(&why), None).await?;
        let attempt = cancel.as_ref().map(|c| c.attempt);
        event(&tx, Some(fold), attempt, "removed", &why).await?;
        super::waiting::on_final(&tx, fold).await?;
        tx.commit().await?;
        Ok(cancel)
    }
}

impl PgStore {
    /// Appends an event not tied to a state change (a runner's attempt re-adopted, an
    /// inventory reload); one about an attempt belongs to the attempt's fold.
    pub async fn log_event(
        &self,
        fold: Option<FoldId>,
        attempt: Option<crate::model::AttemptId>,
        kind: String,
        detail: String,
    ) -> Result<()> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let fold = match (fold, attempt) {
            (None, Some(a)) => tx
                .query_opt("SELECT fold_id FROM attempts WHERE id = $1", &[&a])
                .await?
                .map(|r| r.get(0)),
            _ => fold,
        };
        event(&tx, fold, attempt, &kind, &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest events of `kind` (when, what), newest first (`GET /maintenance`).
    pub async fn events_of_kind(&self, kind: String, limit: u32) -> Result<Vec<(i64, String)>> {
        let c = self.pool.get().await?;
        Ok(c.query(
            "SELECT at, detail FROM events WHERE kind = $1 ORDER BY id DESC LIMIT $2",
            &[&kind, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }
}

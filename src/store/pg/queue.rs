//! The queue's core operations on PostgreSQL, with the SQLite store's semantics
//! (`store::folds`, `holds`, `losses`, `maintenance`): every state change is one transaction
//! with its event; every write transaction first checks the caller's leadership generation
//! (`lease::fence`). Rows a change depends on are locked (`FOR UPDATE`, attempt before fold)
//! so concurrent callers see each other's changes as SQLite's single writer makes them.

use super::attempts::finish_attempt;
use super::lease::fence;
use super::{
    attempt_from_row, fold_from_row, pending_from_row, pending_from_row_at, PgStore,
    PENDING_COLUMNS,
};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;
use crate::scheduler::PendingFold;
use crate::store::engine::{NewFold, QueueStore};
use crate::store::records::{ATTEMPT_COLUMNS, FOLD_COLUMNS};
use crate::store::{
    now_ms, ActiveAttempt, BlobData, CancelTarget, EventRecord, FoldChange, FoldRecord, NewAttempt,
    PurgeReport, RecordResult, ReleaseChanges, Result, ResultInput, StoreError,
};
use tokio_postgres::{GenericClient, IsolationLevel, Transaction};

/// The condition (on `blobs b`) that nothing refers to a blob any more: what a purge deletes
/// and `sweep keep` of the outputs it drops (as `maintenance::UNREFERENCED`): no output, input
/// or log, and no dataset, split or submission names it.
pub(super) const UNREFERENCED: &str =
    "NOT EXISTS (SELECT 1 FROM outputs o WHERE o.sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM fold_inputs i WHERE i.sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.log_sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM datasets d WHERE d.table_sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM splits p
        WHERE b.sha256 IN (p.train_sha256, p.test_sha256, p.truth_sha256))
    AND NOT EXISTS (SELECT 1 FROM submission_blobs s WHERE s.sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM submission_folds sf
        WHERE b.sha256 IN (sf.train_sha256, sf.test_sha256))
    AND NOT EXISTS (SELECT 1 FROM datasets d, jsonb_each_text(d.files::jsonb) j
        WHERE j.value = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM splits p, jsonb_each_text(p.files::jsonb) j
        WHERE j.value = b.sha256)";

/// Appends an event only; the caller's own update of the fold sets `seq` and `updated_at`.
pub(super) async fn append_event(
    tx: &Transaction<'_>,
    fold: Option<FoldId>,
    attempt: Option<AttemptId>,
    kind: &str,
    detail: &str,
) -> Result<(i64, i64)> {
    let now = now_ms();
    let row = tx
        .query_one(
            "INSERT INTO events (at, fold_id, attempt_id, kind, detail) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
            &[&now, &fold, &attempt, &kind, &detail],
        )
        .await?;
    Ok((row.get(0), now))
}

/// Appends an event and makes it the fold's newest change.
pub(super) async fn event(
    tx: &Transaction<'_>,
    fold: Option<FoldId>,
    attempt: Option<AttemptId>,
    kind: &str,
    detail: &str,
) -> Result<i64> {
    let (id, now) = append_event(tx, fold, attempt, kind, detail).await?;
    if let Some(fold) = fold {
        tx.execute(
            "UPDATE folds SET seq = $1, updated_at = $2 WHERE id = $3",
            &[&id, &now, &fold],
        )
        .await?;
    }
    Ok(id)
}

pub(super) async fn set_state(
    tx: &Transaction<'_>,
    fold: FoldId,
    state: FoldState,
    reason: Option<&str>,
    hold: Option<HoldCode>,
) -> Result<()> {
    tx.execute(
        "UPDATE folds SET state = $1, reason = $2, hold_code = $3 WHERE id = $4",
        &[&state.as_str(), &reason, &hold.map(HoldCode::as_str), &fold],
    )
    .await?;
    Ok(())
}

/// A fold, its row locked for the rest of the transaction when `lock`.
pub(super) async fn get_fold(c: &impl GenericClient, id: FoldId, lock: bool) -> Result<FoldRecord> {
    let sql = format!(
        "SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt
         WHERE f.id = $1{}",
        if lock { " FOR UPDATE OF f" } else { "" }
    );
    match c.query_opt(&sql, &[&id]).await? {
        Some(row) => fold_from_row(&row),
        None => Err(crate::store::Resource::Fold(id).missing()),
    }
}

impl QueueStore for PgStore {
    async fn submit(&self, owner: String, admin: bool, folds: Vec<NewFold>) -> Result<Vec<FoldId>> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let ids = Self::insert_folds(&tx, &owner, admin, &folds).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn fold(&self, id: FoldId) -> Result<FoldRecord> {
        let c = self.pool.get().await?;
        get_fold(&*c, id, false).await
    }

    async fn events(&self, fold: FoldId) -> Result<Vec<EventRecord>> {
        let c = self.pool.get().await?;
        c.query(
            "SELECT id, at, attempt_id, kind, detail FROM events WHERE fold_id = $1 ORDER BY id",
            &[&fold],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                attempt: r.try_get(2)?,
                kind: r.try_get(3)?,
                detail: r.try_get(4)?,
            })
        })
        .collect()
    }

    async fn pending_folds(&self) -> Result<(Vec<PendingFold>, i64)> {
        let mut c = self.pool.get().await?;
        let tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let seq: i64 = tx
            .query_one("SELECT COALESCE(MAX(id), 0)::BIGINT FROM events", &[])
            .await?
            .get(0);
        let sql = format!("SELECT {PENDING_COLUMNS} FROM folds WHERE state = 'idle' ORDER BY id");
        let folds = tx
            .query(&sql, &[])
            .await?
            .iter()
            .map(pending_from_row)
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((folds, seq))
    }

    async fn active_attempts(&self) -> Result<Vec<ActiveAttempt>> {
        let c = self.pool.get().await?;
        let columns = ATTEMPT_COLUMNS
            .split(',')
            .map(|c| format!("a.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, f.owner FROM attempts a JOIN folds f ON f.id = a.fold_id
             WHERE a.state <> 'ended' ORDER BY a.id"
        );
        c.query(&sql, &[])
            .await?
            .iter()
            .map(|r| {
                let a = attempt_from_row(r)?;
                Ok(ActiveAttempt {
                    attempt: a.id,
                    fold: a.fold,
                    runner: a.runner,
                    grant: a.grant,
                    started: a.state == "running",
                    owner: r.try_get(14)?,
                })
            })
            .collect()
    }

    async fn fold_changes(&self, seq: i64, limit: usize) -> Result<(Vec<FoldChange>, i64)> {
        let c = self.pool.get().await?;
        let sql = format!(
            "SELECT seq, state, {PENDING_COLUMNS} FROM folds WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        let mut last = seq;
        let mut changes = Vec::new();
        for r in c.query(&sql, &[&seq, &(limit as i64)]).await? {
            let state: String = r.try_get(1)?;
            let rest = pending_from_row_at(&r, 2)?;
            last = last.max(r.try_get(0)?);
            changes.push(if state == "idle" {
                FoldChange::Idle(rest)
            } else {
                FoldChange::NotIdle(rest.id)
            });
        }
        Ok((changes, last))
    }

    async fn superseded_attempts(&self, attempts: Vec<AttemptId>) -> Result<Vec<AttemptId>> {
        let c = self.pool.get().await?;
        let moved_on: std::collections::HashSet<AttemptId> = c
            .query(
                "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                 WHERE a.id = ANY($1)
                 AND (f.current_attempt IS DISTINCT FROM a.id OR f.state NOT IN ('assigned', 'running'))",
                &[&attempts],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(attempts
            .into_iter()
            .filter(|a| moved_on.contains(a))
            .collect())
    }

    async fn attempt_grants(
        &self,
        attempts: Vec<AttemptId>,
    ) -> Result<Vec<(AttemptId, FoldId, Grant)>> {
        let c = self.pool.get().await?;
        let known: std::collections::HashMap<AttemptId, (FoldId, Grant)> = c
            .query(
                "SELECT id, fold_id, millicpus, memory, gpus FROM attempts WHERE id = ANY($1)",
                &[&attempts],
            )
            .await?
            .iter()
            .map(|r| {
                let gpus: String = r.get(4);
                let grant = Grant {
                    millicpus: r.get::<_, i64>(2) as u32,
                    memory: r.get::<_, i64>(3) as u64,
                    gpus: serde_json::from_str(&gpus).unwrap_or_default(),
                };
                (r.get(0), (r.get(1), grant))
            })
            .collect();
        Ok(attempts
            .into_iter()
            .filter_map(|a| known.get(&a).map(|(f, g)| (a, *f, g.clone())))
            .collect())
    }

    async fn assign(&self, new: Vec<NewAttempt>) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        // Lock the folds in id order first: concurrent cycles never deadlock.
        let mut ids: Vec<FoldId> = new.iter().map(|n| n.fold).collect();
        ids.sort_unstable();
        ids.dedup();
        tx.execute(
            "SELECT id FROM folds WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
        let now = now_ms();
        let mut out = Vec::with_capacity(new.len());
        for n in new {
            let spec = tx
                .query_opt(
                    "SELECT spec FROM folds WHERE id = $1 AND state = 'idle'",
                    &[&n.fold],
                )
                .await?;
            let Some(spec) = spec else { continue };
            let spec: String = spec.get(0);
            let attempt: AttemptId = tx
                .query_one(
                    "INSERT INTO attempts (fold_id, runner, millicpus, memory, gpus, state, assigned_at)
                     VALUES ($1, $2, $3, $4, $5, 'assigned', $6) RETURNING id",
                    &[
                        &n.fold,
                        &n.runner,
                        &(n.grant.millicpus as i64),
                        &(n.grant.memory as i64),
                        &serde_json::to_string(&n.grant.gpus).expect("gpus serialize"),
                        &now,
                    ],
                )
                .await?
                .get(0);
            let detail = format!("attempt {attempt} assigned to {}", n.runner);
            let (id, at) =
                append_event(&tx, Some(n.fold), Some(attempt), "assigned", &detail).await?;
            tx.execute(
                "UPDATE folds SET state = 'assigned', reason = NULL, current_attempt = $1, last_attempt = $1,
                 attempts = attempts + 1, seq = $3, updated_at = $4 WHERE id = $2",
                &[&attempt, &n.fold, &id, &at],
            )
            .await?;
            let spec: FoldSpec =
                serde_json::from_str(&spec).map_err(|e| StoreError::Invalid(e.to_string()))?;
            out.push((attempt, n, spec));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn mark_started(&self, attempt: AttemptId) -> Result<()> {
        self.apply_reports(vec![attempt], Vec::new())
            .await
            .map(|_| ())
    }

    async fn apply_reports(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
    ) -> Result<Vec<RecordResult>> {
        self.apply_reports_with(started, results, Vec::new()).await
    }

    async fn record_result(&self, input: ResultInput) -> Result<RecordResult> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let r = finish_attempt(&tx, &input, self.budget(true)).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn mark_lost(&self, attempt: AttemptId, reason: String) -> Result<RecordResult> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let started: bool = tx
            .query_opt(
                "SELECT started_at IS NOT NULL FROM attempts WHERE id = $1",
                &[&attempt],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or(false);
        let input = ResultInput {
            attempt,
            outcome: Outcome::Lost { reason },
            metrics: Metrics::default(),
            log: BlobData::default(),
            outputs: Vec::new(),
        };
        let r = finish_attempt(&tx, &input, self.budget(started)).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn hold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> Result<Option<CancelTarget>> {
        self.hold_fold(fold, code, reason).await
    }

    async fn release(&self, fold: FoldId, by: String, changes: ReleaseChanges) -> Result<FoldSpec> {
        self.release_fold(fold, by, changes).await
    }

    async fn remove(&self, fold: FoldId, by: String) -> Result<Option<CancelTarget>> {
        self.remove_fold(fold, by).await
    }

    async fn purge(&self, before: i64) -> Result<PurgeReport> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let old = "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                   WHERE a.ended_at < $1 AND f.state IN ('done', 'failed', 'removed')";
        let outputs = tx
            .execute(
                &format!("DELETE FROM outputs WHERE attempt_id IN ({old})"),
                &[&before],
            )
            .await?;
        let logs = tx
            .execute(
                &format!(
                    "UPDATE attempts SET log_sha256 = NULL WHERE log_sha256 IS NOT NULL AND id IN ({old})"
                ),
                &[&before],
            )
            .await?;
        let dropped = tx
            .query(
                &format!(
                    "DELETE FROM blobs b WHERE b.created_at < $1 AND {UNREFERENCED} RETURNING b.size"
                ),
                &[&before],
            )
            .await?;
        tx.commit().await?;
        Ok(PurgeReport {
            outputs,
            logs,
            blobs: dropped.len() as u64,
            bytes: dropped.iter().map(|r| r.get::<_, i64>(0) as u64).sum(),
            ..Default::default()
        })
    }
}

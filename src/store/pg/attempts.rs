//! An attempt's start and end on PostgreSQL, inside the caller's transaction, with the SQLite
//! store's semantics (`folds::start_attempt`, `folds::finish_attempt`, `losses`): a result is
//! recorded once, a loss requeues (or holds past max_losses) without using a retry.

use super::blobs::put_data;
use super::queue::{append_event, event, set_state};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, Outcome};
use crate::store::holds::{hold_for, lost_too_often};
use crate::store::losses::Budget;
use crate::store::{now_ms, RecordResult, Result, ResultInput};
use tokio_postgres::Transaction;

/// Moves the (active) fold of a lost attempt on: back in line, or held past max_losses.
async fn requeue_lost(
    tx: &Transaction<'_>,
    fold: FoldId,
    outcome: &Outcome,
    budget: Budget,
) -> Result<FoldState> {
    let losses = if budget.count_loss {
        tx.query_one(
            "UPDATE folds SET losses = losses + 1 WHERE id = $1 RETURNING losses",
            &[&fold],
        )
        .await?
        .get::<_, i64>(0) as u32
    } else {
        0
    };
    if let Some((code, reason)) = lost_too_often(outcome, losses, budget.max_losses) {
        set_state(tx, fold, FoldState::Held, Some(&reason), Some(code)).await?;
        return Ok(FoldState::Held);
    }
    let reason = match budget.count_loss {
        true => format!(
            "requeued after loss {losses} (max_losses {}): {outcome}",
            budget.max_losses
        ),
        false => format!("requeued: {outcome}"),
    };
    set_state(tx, fold, FoldState::Idle, Some(&reason), None).await?;
    Ok(FoldState::Idle)
}

/// Ends an attempt with its outcome and moves its fold on, once (as `folds::finish_attempt`).
pub(super) async fn finish_attempt(
    tx: &Transaction<'_>,
    input: &ResultInput,
    budget: Budget,
) -> Result<RecordResult> {
    let row = tx
        .query_opt(
            "SELECT fold_id, state, outcome_kind FROM attempts WHERE id = $1 FOR UPDATE",
            &[&input.attempt],
        )
        .await?;
    let Some(row) = row else {
        return Ok(RecordResult::Unknown);
    };
    let (fold, state, kind): (FoldId, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    if state == "ended" {
        if kind.as_deref() == Some(input.outcome.kind()) {
            return Ok(RecordResult::Duplicate);
        }
        let detail = format!(
            "attempt {} had already ended as {}; its late result ({}) was discarded",
            input.attempt,
            kind.unwrap_or_default(),
            input.outcome
        );
        event(
            tx,
            Some(fold),
            Some(input.attempt),
            "late_result_rejected",
            &detail,
        )
        .await?;
        return Ok(RecordResult::Superseded { fold });
    }
    let log_sha = if input.log.is_empty() {
        None
    } else {
        Some(put_data(tx, &input.log).await?)
    };
    for (name, data) in &input.outputs {
        let sha = put_data(tx, data).await?;
        tx.execute(
            "INSERT INTO outputs (attempt_id, name, sha256, size) VALUES ($1, $2, $3, $4)
             ON CONFLICT (attempt_id, name) DO UPDATE SET sha256 = EXCLUDED.sha256, size = EXCLUDED.size",
            &[&input.attempt, name, &sha, &(data.size() as i64)],
        )
        .await?;
    }
    let m = &input.metrics;
    tx.execute(
        "UPDATE attempts SET state = 'ended', ended_at = $1, outcome_kind = $2, outcome = $3,
         wall_ms = $4, cpu_ms = $5, peak_memory = $6, log_sha256 = $7 WHERE id = $8",
        &[
            &now_ms(),
            &input.outcome.kind(),
            &serde_json::to_string(&input.outcome).expect("outcome serializes"),
            &(m.wall_ms as i64),
            &(m.cpu_ms as i64),
            &(m.peak_memory as i64),
            &log_sha,
            &input.attempt,
        ],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT current_attempt, state, retries_used, spec FROM folds WHERE id = $1 FOR UPDATE",
            &[&fold],
        )
        .await?;
    let current: Option<AttemptId> = row.get(0);
    let fold_state = FoldState::parse(row.get(1)).unwrap_or(FoldState::Held);
    let retries_used = row.get::<_, i64>(2) as u32;
    let spec: String = row.get(3);
    let detail = format!("attempt {} ended: {}", input.attempt, input.outcome);
    if current != Some(input.attempt) {
        // The fold moved on (held and released, or removed): keep the attempt's record only.
        event(
            tx,
            Some(fold),
            Some(input.attempt),
            "attempt_ended",
            &detail,
        )
        .await?;
        return Ok(RecordResult::Recorded {
            fold,
            state: fold_state,
        });
    }
    tx.execute(
        "UPDATE folds SET current_attempt = NULL WHERE id = $1",
        &[&fold],
    )
    .await?;
    let max_retries = serde_json::from_str::<FoldSpec>(&spec)
        .map(|s| s.max_retries)
        .unwrap_or(0);
    let next = if !fold_state.is_active() {
        // Held or removed while it ran: the kill is now confirmed; the fold stays where it is.
        fold_state
    } else if input.outcome.is_success() {
        set_state(tx, fold, FoldState::Done, None, None).await?;
        FoldState::Done
    } else if matches!(input.outcome, Outcome::Lost { .. }) {
        requeue_lost(tx, fold, &input.outcome, budget).await?
    } else if retries_used < max_retries {
        tx.execute(
            "UPDATE folds SET retries_used = retries_used + 1 WHERE id = $1",
            &[&fold],
        )
        .await?;
        let reason = format!(
            "retry {} of {max_retries} after: {}",
            retries_used + 1,
            input.outcome
        );
        set_state(tx, fold, FoldState::Idle, Some(&reason), None).await?;
        FoldState::Idle
    } else if let Some((code, reason)) = hold_for(&input.outcome, &spec, max_retries) {
        set_state(tx, fold, FoldState::Held, Some(&reason), Some(code)).await?;
        FoldState::Held
    } else {
        let reason = input.outcome.to_string();
        set_state(tx, fold, FoldState::Failed, Some(&reason), None).await?;
        FoldState::Failed
    };
    let detail = format!("{detail}; fold is {next}");
    event(
        tx,
        Some(fold),
        Some(input.attempt),
        "attempt_ended",
        &detail,
    )
    .await?;
    if next.is_final() && next != fold_state {
        if next == FoldState::Failed && input.outcome.is_own_failure() {
            super::waiting::stop_siblings(tx, fold, &input.outcome.to_string()).await?;
        }
        if next == FoldState::Done {
            super::sweeps::on_done(tx, fold).await?;
        }
        super::waiting::on_final(tx, fold).await?;
    }
    Ok(RecordResult::Recorded { fold, state: next })
}

/// Marks an assigned attempt running, and its fold if the attempt is still its current one.
pub(super) async fn start_attempt(tx: &Transaction<'_>, attempt: AttemptId) -> Result<()> {
    let fold = tx
        .query_opt(
            "UPDATE attempts SET state = 'running', started_at = $1 WHERE id = $2 AND state = 'assigned'
             RETURNING fold_id",
            &[&now_ms(), &attempt],
        )
        .await?;
    if let Some(fold) = fold {
        let fold: FoldId = fold.get(0);
        let detail = format!("attempt {attempt} started");
        let (id, now) = append_event(tx, Some(fold), Some(attempt), "started", &detail).await?;
        tx.execute(
            "UPDATE folds SET state = CASE WHEN state = 'assigned' AND current_attempt = $2
             THEN 'running' ELSE state END, seq = $3, updated_at = $4 WHERE id = $1",
            &[&fold, &attempt, &id, &now],
        )
        .await?;
    }
    Ok(())
}

//! Runner losses: an attempt whose runner or agent is gone (crash, partition past the lease)
//! ends `lost`. That is the runner's failure, not the fold's: the fold is requeued without
//! using a retry, and the loss is counted (`folds.losses`) up to the store's max_losses, past
//! which the fold is held `lost_too_often` (it may be what kills its runners). Also what a
//! runner still runs after the master gave it up, for the master to cancel and count.

use super::folds::{set_state, BlobData, ResultInput};
use super::holds::lost_too_often;
use super::{RecordResult, Result, Store};
use crate::model::{AttemptId, FoldId, FoldState, Metrics, Outcome};
use crate::protocol::Grant;
use rusqlite::{OptionalExtension, Transaction};

/// How an attempt's end counts against its fold.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    /// A lost attempt counts as a loss (false: it never started, nothing of it ran).
    pub count_loss: bool,
    /// Losses past this hold the fold `lost_too_often`.
    pub max_losses: u32,
}

/// Moves the (active) fold of a lost attempt on: back in line, or held past max_losses.
pub(super) fn requeue_lost(
    tx: &Transaction,
    fold: FoldId,
    outcome: &Outcome,
    budget: Budget,
) -> Result<FoldState> {
    let losses = if budget.count_loss {
        tx.prepare_cached("UPDATE folds SET losses = losses + 1 WHERE id = ?1 RETURNING losses")?
            .query_row([fold], |r| r.get(0))?
    } else {
        0
    };
    if let Some((code, reason)) = lost_too_often(outcome, losses, budget.max_losses) {
        set_state(tx, fold, FoldState::Held, Some(&reason), Some(code))?;
        return Ok(FoldState::Held);
    }
    let reason = match budget.count_loss {
        true => format!(
            "requeued after loss {losses} (max_losses {}): {outcome}",
            budget.max_losses
        ),
        false => format!("requeued: {outcome}"),
    };
    set_state(tx, fold, FoldState::Idle, Some(&reason), None)?;
    Ok(FoldState::Idle)
}

impl Store {
    /// Ends an attempt as lost (its runner or agent is gone): its fold is requeued without
    /// using a retry, and the loss is counted (unless the attempt never started) up to the
    /// store's max_losses.
    pub async fn mark_lost(&self, attempt: AttemptId, reason: String) -> Result<RecordResult> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::mark_lost(pg, attempt, reason),
            )
            .await;
        }
        let max_losses = self.max_losses();
        let lost = Outcome::Lost {
            reason: reason.clone(),
        };
        let r = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let started: bool = tx
                    .query_row(
                        "SELECT started_at IS NOT NULL FROM attempts WHERE id = ?1",
                        [attempt],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(false);
                let input = ResultInput {
                    attempt,
                    outcome: Outcome::Lost { reason },
                    metrics: Metrics::default(),
                    log: BlobData::default(),
                    outputs: Vec::new(),
                };
                let budget = Budget {
                    count_loss: started,
                    max_losses,
                };
                let r = super::attempts::finish_attempt(&tx, &input, budget)?;
                tx.commit()?;
                Ok(r)
            })
            .await?;
        if let RecordResult::Recorded { state, .. } = r {
            crate::metrics::get().result(&lost, &Metrics::default(), state);
        }
        Ok(r)
    }

    /// Of these attempts, those the store knows, with their fold and grant: what a runner
    /// still runs although the master no longer holds it (see the master's hello).
    pub async fn attempt_grants(
        &self,
        attempts: Vec<AttemptId>,
    ) -> Result<Vec<(AttemptId, FoldId, Grant)>> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::attempt_grants(pg, attempts).await;
        }
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT fold_id, millicpus, memory, gpus FROM attempts WHERE id = ?1",
            )?;
            let mut out = Vec::with_capacity(attempts.len());
            for a in attempts {
                let row = stmt
                    .query_row([a], |r| {
                        let gpus: String = r.get(3)?;
                        Ok((
                            r.get::<_, FoldId>(0)?,
                            Grant {
                                millicpus: r.get(1)?,
                                memory: r.get::<_, i64>(2)? as u64,
                                gpus: serde_json::from_str(&gpus).unwrap_or_default(),
                            },
                        ))
                    })
                    .optional()?;
                out.extend(row.map(|(fold, grant)| (a, fold, grant)));
            }
            Ok(out)
        })
        .await
    }
}

//! The queue's one insert path on PostgreSQL (as `store::folds::insert_folds`): folds with
//! their inputs (the owner's blobs, or any for an admin), events, holds at submit and
//! dependencies (`waiting`).

use super::queue::event;
use super::PgStore;
use crate::model::{FoldId, FoldState, HoldCode};
use crate::store::engine::NewFold;
use crate::store::losses::Budget;
use crate::store::{now_ms, Result, StoreError};
use tokio_postgres::Transaction;

impl PgStore {
    pub(super) async fn insert_folds(
        tx: &Transaction<'_>,
        owner: &str,
        admin: bool,
        folds: &[NewFold],
    ) -> Result<Vec<FoldId>> {
        let mut ids = Vec::with_capacity(folds.len());
        let now = now_ms();
        for (i, (spec, held)) in folds.iter().enumerate() {
            for input in &spec.inputs {
                let usable: bool = if admin {
                    tx.query_one(
                        "SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = $1)",
                        &[&input.sha256],
                    )
                    .await?
                    .get(0)
                } else {
                    tx.query_one(
                        "SELECT EXISTS(SELECT 1 FROM blob_owners WHERE sha256 = $1 AND owner = $2)",
                        &[&input.sha256, &owner],
                    )
                    .await?
                    .get(0)
                };
                if !usable {
                    return Err(StoreError::Invalid(format!(
                        "fold {i}: input {:?} names blob {} which is not uploaded; POST the file to /api/v1/blobs first",
                        input.name, input.sha256
                    )));
                }
            }
            let (state, hold, reason) = match held {
                Some((code, reason)) => (FoldState::Held, Some(*code), Some(reason.as_str())),
                None => (FoldState::Idle, None, None),
            };
            let id: FoldId = tx
                .query_one(
                    "INSERT INTO folds (owner, queue, priority, millicpus, memory, gpus, hard_limit_ms, spec,
                     state, reason, hold_code, submitted_at, updated_at, image, requirements, rank)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15)
                     RETURNING id",
                    &[
                        &owner,
                        &spec.queue,
                        &spec.priority.0,
                        &(spec.resources.millicpus() as i64),
                        &(spec.resources.memory as i64),
                        &(spec.resources.gpus as i64),
                        &spec.hard_time_limit.map(|v| v as i64),
                        &serde_json::to_string(spec).expect("spec serializes"),
                        &state.as_str(),
                        &reason,
                        &hold.map(HoldCode::as_str),
                        &now,
                        &spec.image,
                        &spec.requirements,
                        &spec.rank,
                    ],
                )
                .await?
                .get(0);
            for input in &spec.inputs {
                tx.execute(
                    "INSERT INTO fold_inputs (fold_id, name, sha256) VALUES ($1, $2, $3)",
                    &[&id, &input.name, &input.sha256],
                )
                .await?;
            }
            let detail = match reason {
                Some(reason) => format!("submitted by {owner}; held: {reason}"),
                None => format!("submitted by {owner} to queue {}", spec.queue),
            };
            event(tx, Some(id), None, "submitted", &detail).await?;
            if !spec.after.is_empty() || !spec.inputs_from.is_empty() {
                super::waiting::add_dependencies(tx, id, spec, owner, admin, i).await?;
            }
            ids.push(id);
        }
        Ok(ids)
    }

    pub(super) fn budget(&self, count_loss: bool) -> Budget {
        Budget {
            count_loss,
            max_losses: self.max_losses(),
        }
    }
}

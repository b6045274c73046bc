//! Provenance records (`attempts.provenance`, JSON of `model::provenance::Provenance`): built
//! from the master's and the agent's parts with the fold's spec and the attempt's grant, at
//! most [`MAX_PROVENANCE`] bytes, written before the attempt's result (see
//! `master::reports::flush`).

use super::{Result, Store, StoreError};
use crate::model::provenance::{build, Provenance, RunnerSide};
use crate::model::{AttemptId, FoldId, FoldSpec};
use crate::protocol::Grant;
use rusqlite::{params, OptionalExtension};

/// The largest record kept: the spec's own bound (its argv, env and inputs) plus the runner's
/// facts and the agent's fields, which `build` clips.
pub const MAX_PROVENANCE: usize = crate::model::limits::MAX_SPEC_BYTES + (128 << 10);

impl Store {
    /// Records the provenance of these attempts (one transaction). An attempt the store does
    /// not know, or one recorded already, is skipped.
    pub async fn record_provenance(&self, sides: Vec<RunnerSide>) -> Result<()> {
        if sides.is_empty() {
            return Ok(());
        }
        self.call_lazy(move |conn| {
            let tx = conn.transaction()?;
            for side in sides {
                let row = tx
                    .prepare_cached(
                        "SELECT a.fold_id, a.millicpus, a.memory, a.gpus, f.spec
                         FROM attempts a JOIN folds f ON f.id = a.fold_id
                         WHERE a.id = ?1 AND a.provenance IS NULL",
                    )?
                    .query_row([side.attempt], |r| {
                        Ok((
                            r.get::<_, FoldId>(0)?,
                            r.get::<_, u32>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })
                    .optional()?;
                let Some((fold, millicpus, memory, gpus, spec)) = row else {
                    continue;
                };
                let Ok(spec) = serde_json::from_str::<FoldSpec>(&spec) else {
                    continue;
                };
                let grant = Grant {
                    millicpus,
                    memory: memory as u64,
                    gpus: serde_json::from_str(&gpus).unwrap_or_default(),
                };
                let attempt = side.attempt;
                let record = build(fold, &spec, &grant, side);
                let text = serde_json::to_string(&record).expect("provenance serializes");
                if text.len() > MAX_PROVENANCE {
                    tracing::warn!(
                        "attempt {attempt}: its provenance ({} bytes) is over {MAX_PROVENANCE}; not kept",
                        text.len()
                    );
                    continue;
                }
                tx.prepare_cached("UPDATE attempts SET provenance = ?1 WHERE id = ?2")?
                    .execute(params![text, attempt])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The provenance of `attempt` of `fold`, or of its newest attempt that has one.
    pub async fn provenance(&self, fold: FoldId, attempt: Option<AttemptId>) -> Result<Provenance> {
        self.read(move |conn| {
            let row: Option<(AttemptId, Option<String>)> = match attempt {
                Some(a) => conn
                    .prepare_cached(
                        "SELECT id, provenance FROM attempts WHERE id = ?1 AND fold_id = ?2",
                    )?
                    .query_row(params![a, fold], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
                None => conn
                    .prepare_cached(
                        "SELECT id, provenance FROM attempts
                         WHERE fold_id = ?1 AND provenance IS NOT NULL ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            };
            let (id, text) = match (row, attempt) {
                (Some((id, Some(text))), _) => (id, text),
                (Some((id, None)), _) => {
                    return Err(StoreError::NotFound(format!(
                        "attempt {id} of fold {fold} has no provenance: it has not finished, or \
                         ended without a report (lost, or from before provenance was recorded)"
                    )))
                }
                (None, Some(a)) => {
                    return Err(StoreError::NotFound(format!(
                        "fold {fold} has no attempt {a}"
                    )))
                }
                (None, None) => {
                    return Err(StoreError::NotFound(format!(
                        "fold {fold} has no attempt with provenance yet (none has finished)"
                    )))
                }
            };
            serde_json::from_str(&text).map_err(|e| {
                StoreError::Invalid(format!("attempt {id}: its stored provenance: {e}"))
            })
        })
        .await
    }
}

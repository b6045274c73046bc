//! Submission results settled from their queue folds once they stop: which submission folds
//! changed since their result was derived (read on a reader), and the settling itself, in one
//! transaction with the check that nothing changed meanwhile.

use super::datasets::{read_indices, DatasetId};
use super::folds::{get_fold, last_log};
use super::submissions::*;
use super::*;
use crate::submission::Phase;
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

/// (submission fold, key, fold, dataset, split, train indices blob, test indices blob).
type UnsettledRow = (
    SubmissionFoldId,
    String,
    i64,
    DatasetId,
    Option<i64>,
    String,
    String,
);

/// The run-end a result is derived from: the queue fold, its state and its newest attempt.
const KEY: &str = "f.id || ':' || f.state || ':' || COALESCE(f.last_attempt, '-')";

impl Store {
    /// Submission folds whose queue fold changed since their result was derived (at most
    /// `limit`), with what deriving it needs. On a reader connection: the workflow task's
    /// scan never waits behind the writer nor delays it.
    pub async fn unsettled_submission_folds(&self, limit: u32) -> Result<Vec<SettleInput>> {
        self.unsettled_submission_folds_in(SettleScope::All, limit)
            .await
    }

    /// `unsettled_submission_folds` among those `scope` names: with
    /// [`SettleScope::Changed`], only the submission folds whose queue fold's last change
    /// (`folds.seq`, the id of its newest event) is in that range are looked at (through
    /// `folds_seq` and `submission_folds_fold`), so a pass costs what changed, not how many
    /// submission folds there are.
    pub async fn unsettled_submission_folds_in(
        &self,
        scope: SettleScope,
        limit: u32,
    ) -> Result<Vec<SettleInput>> {
        self.unsettled_submission_folds_within(scope, limit, SettleInput::BATCH_BYTES)
            .await
    }

    /// `unsettled_submission_folds_in`, stopping once the inputs hold `bytes` (at least one
    /// input; [`SettleInput::bytes`]): the rest come with the next call.
    pub async fn unsettled_submission_folds_within(
        &self,
        scope: SettleScope,
        limit: u32,
        bytes: usize,
    ) -> Result<Vec<SettleInput>> {
        if let Some(pg) = self.pg() {
            return pg
                .unsettled_submission_folds_within(scope, limit, bytes)
                .await;
        }
        self.read(move |conn| {
            let (filter, after, upto) = match scope {
                SettleScope::All => ("", 0, 0),
                SettleScope::Changed { after, upto } => (
                    "sf.fold_id IN (SELECT id FROM folds WHERE seq > ?2 AND seq <= ?3) AND",
                    after,
                    upto,
                ),
            };
            let sql = format!(
                "SELECT sf.id, {KEY}, f.id, s.dataset_id, s.split_id, sf.train_sha256, sf.test_sha256
                 FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id
                 JOIN submissions s ON s.id = sf.submission_id
                 WHERE {filter} sf.settled_key IS NOT {KEY} ORDER BY sf.id LIMIT ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let map = |r: &rusqlite::Row| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            };
            let rows: Vec<UnsettledRow> = match scope {
                SettleScope::All => stmt.query_map([limit], map)?,
                SettleScope::Changed { .. } => stmt.query_map(params![limit, after, upto], map)?,
            }
            .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            let mut held = 0;
            for (id, key, fold_id, dataset_id, split_id, train_sha, test_sha) in rows {
                let fold = get_fold(conn, fold_id)?;
                let stopped = stopped(fold.state);
                let mut outputs = BTreeMap::new();
                let mut log = Vec::new();
                if stopped {
                    let mut stmt = conn.prepare_cached(
                        "SELECT o.name, o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                         WHERE f.id = ?1",
                    )?;
                    let rows = stmt
                        .query_map([fold_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    for (name, sha) in rows {
                        if RESULT_OUTPUTS.contains(&name.as_str()) {
                            let data = blobs::get(conn, &sha)?.unwrap_or_default();
                            outputs.insert(name, (sha, data));
                        }
                    }
                    log = last_log(conn, fold_id)?;
                }
                out.push(SettleInput {
                    id,
                    key,
                    fold,
                    dataset_id,
                    split_id,
                    train_is: read_indices(conn, &train_sha)?,
                    test_is: read_indices(conn, &test_sha)?,
                    outputs,
                    log,
                });
                held += out.last().map_or(0, SettleInput::bytes);
                if held >= bytes {
                    break; // the rest come with the next batch
                }
            }
            Ok(out)
        })
        .await
    }

    /// Records derived results in one transaction. Each applies only if its queue fold is
    /// still at the run-end it was derived from and it is not recorded yet, so concurrent
    /// callers deriving the same result record it once. Returns how many were recorded.
    pub async fn settle_submission_folds(
        &self,
        results: Vec<(SubmissionFoldId, String, Settled)>,
    ) -> Result<usize> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.settle_submission_folds(results)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut n = 0;
            for (id, key, r) in results {
                let current: Option<(String, Option<String>, i64)> = tx
                    .prepare_cached(&format!(
                        "SELECT {KEY}, sf.settled_key, sf.submission_id FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id WHERE sf.id = ?1"
                    ))?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let Some((now_key, settled, submission)) = current else { continue };
                if now_key != key || settled.as_deref() == Some(key.as_str()) {
                    continue;
                }
                let state = r.state.unwrap_or(Phase::Todo);
                let ended = state.is_ended();
                let seq: i64 = tx.query_row("SELECT COALESCE(MAX(result_seq), 0) + 1 FROM submission_folds", [], |r| r.get(0))?;
                tx.prepare_cached(
                    "UPDATE submission_folds SET state = ?1, reason = ?2, traceback = ?3, phases = ?4, timings = ?5,
                     metrics = ?6, scores = ?7, predictions = ?8, settled_key = ?9, ended_at = ?10, result_seq = ?11
                     WHERE id = ?12",
                )?
                .execute(params![
                    state.as_str(),
                    r.reason,
                    r.traceback,
                    r.phases.to_string(),
                    r.timings.to_string(),
                    r.metrics.to_string(),
                    r.scores.to_string(),
                    r.predictions.to_string(),
                    key,
                    ended.then(now_ms),
                    ended.then_some(seq),
                    id
                ])?;
                for sha in &r.keep {
                    keep_blob(&tx, submission, sha)?;
                }
                n += 1;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }
}

//! An attempt's start and end recorded: results (with their logs and outputs) in the
//! reports' own transactions, in chunks the writer can put an assignment between, and the
//! fold moved on by its outcome (done, retried, held, failed, or requeued when lost). The
//! PostgreSQL twin is `pg/attempts.rs`.

use super::folds::{append_event, event, set_state};
use super::records::*;
use super::{blobs, now_ms, Result, Store, StoreError};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, Outcome};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Stores a result's log or output; returns its sha256.
fn put_data(tx: &Transaction, data: &BlobData) -> Result<String> {
    match data {
        BlobData::Bytes(bytes) => blobs::put(tx, bytes),
        BlobData::Staged(staged) => {
            blobs::adopt(tx, staged)?;
            Ok(staged.sha256.clone())
        }
    }
}

/// Ends an attempt with its outcome and moves its fold on. The heart of "exactly once".
/// A lost attempt (its runner or agent is gone) is the runner's failure, not the fold's: it
/// counts as a loss, never as a retry.
pub(super) fn finish_attempt(
    tx: &Transaction,
    input: &ResultInput,
    budget: Budget,
) -> Result<RecordResult> {
    let row: Option<(FoldId, String, Option<String>)> = tx
        .prepare_cached("SELECT fold_id, state, outcome_kind FROM attempts WHERE id = ?1")?
        .query_row([input.attempt], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((fold, state, kind)) = row else {
        return Ok(RecordResult::Unknown);
    };
    if state == "ended" {
        if kind.as_deref() == Some(input.outcome.kind()) {
            return Ok(RecordResult::Duplicate);
        }
        event(
            tx,
            Some(fold),
            Some(input.attempt),
            "late_result_rejected",
            &format!(
                "attempt {} had already ended as {}; its late result ({}) was discarded",
                input.attempt,
                kind.unwrap_or_default(),
                input.outcome
            ),
        )?;
        return Ok(RecordResult::Superseded { fold });
    }
    let log_sha = if input.log.is_empty() {
        None
    } else {
        Some(put_data(tx, &input.log)?)
    };
    for (name, data) in &input.outputs {
        let sha = put_data(tx, data)?;
        tx.prepare_cached("INSERT OR REPLACE INTO outputs (attempt_id, name, sha256, size) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![input.attempt, name, sha, data.size() as i64])?;
    }
    let m = &input.metrics;
    tx.prepare_cached(
        "UPDATE attempts SET state = 'ended', ended_at = ?1, outcome_kind = ?2, outcome = ?3,
         wall_ms = ?4, cpu_ms = ?5, peak_memory = ?6, log_sha256 = ?7 WHERE id = ?8",
    )?
    .execute(params![
        now_ms(),
        input.outcome.kind(),
        serde_json::to_string(&input.outcome).expect("outcome serializes"),
        m.wall_ms as i64,
        m.cpu_ms as i64,
        m.peak_memory as i64,
        log_sha,
        input.attempt
    ])?;

    let (current, fold_state, retries_used): (Option<AttemptId>, String, u32) = tx
        .prepare_cached("SELECT current_attempt, state, retries_used FROM folds WHERE id = ?1")?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let fold_state = FoldState::parse(&fold_state).unwrap_or(FoldState::Held);
    let detail = format!("attempt {} ended: {}", input.attempt, input.outcome);
    if current != Some(input.attempt) {
        // The fold moved on (held and released, or removed): keep the attempt's record only.
        event(
            tx,
            Some(fold),
            Some(input.attempt),
            "attempt_ended",
            &detail,
        )?;
        return Ok(RecordResult::Recorded {
            fold,
            state: fold_state,
        });
    }
    if fold_state.is_active() && input.outcome.is_success() {
        // The common case, in two statements: the event, then the fold done with it.
        let (id, now) = append_event(
            tx,
            Some(fold),
            Some(input.attempt),
            "attempt_ended",
            &format!("{detail}; fold is done"),
        )?;
        tx.prepare_cached(
            "UPDATE folds SET current_attempt = NULL, state = 'done', reason = NULL, hold_code = NULL,
             seq = ?1, updated_at = ?2 WHERE id = ?3",
        )?
        .execute(params![id, now, fold])?;
        super::sweeps::on_done(tx, fold)?;
        super::waiting::on_final(tx, fold)?;
        return Ok(RecordResult::Recorded {
            fold,
            state: FoldState::Done,
        });
    }
    tx.prepare_cached("UPDATE folds SET current_attempt = NULL WHERE id = ?1")?
        .execute([fold])?;
    // Only a failure needs the spec (its retry budget, and what a hold says to do).
    let spec: String = tx
        .prepare_cached("SELECT spec FROM folds WHERE id = ?1")?
        .query_row([fold], |r| r.get(0))?;
    let max_retries = serde_json::from_str::<FoldSpec>(&spec)
        .map(|s| s.max_retries)
        .unwrap_or(0);
    let next = if !fold_state.is_active() {
        // Held or removed while it ran: the kill is now confirmed; the fold stays where it is.
        fold_state
    } else if input.outcome.is_success() {
        set_state(tx, fold, FoldState::Done, None, None)?;
        FoldState::Done
    } else if matches!(input.outcome, Outcome::Lost { .. }) {
        requeue_lost(tx, fold, &input.outcome, budget)?
    } else if retries_used < max_retries {
        tx.prepare_cached("UPDATE folds SET retries_used = retries_used + 1 WHERE id = ?1")?
            .execute([fold])?;
        let reason = format!(
            "retry {} of {max_retries} after: {}",
            retries_used + 1,
            input.outcome
        );
        set_state(tx, fold, FoldState::Idle, Some(&reason), None)?;
        FoldState::Idle
    } else if let Some((code, reason)) = hold_for(&input.outcome, &spec, max_retries) {
        set_state(tx, fold, FoldState::Held, Some(&reason), Some(code))?;
        FoldState::Held
    } else {
        set_state(
            tx,
            fold,
            FoldState::Failed,
            Some(&input.outcome.to_string()),
            None,
        )?;
        FoldState::Failed
    };
    event(
        tx,
        Some(fold),
        Some(input.attempt),
        "attempt_ended",
        &format!("{detail}; fold is {next}"),
    )?;
    if next.is_final() && next != fold_state {
        if next == FoldState::Failed && input.outcome.is_own_failure() {
            super::waiting::stop_siblings(tx, fold, &input.outcome.to_string())?;
        }
        if next == FoldState::Done {
            super::sweeps::on_done(tx, fold)?;
        }
        super::waiting::on_final(tx, fold)?;
    }
    Ok(RecordResult::Recorded { fold, state: next })
}

/// What the metrics count of each result, taken before the results go to the writer.
fn measured(results: &[ResultInput]) -> Vec<(Outcome, crate::model::Metrics)> {
    results
        .iter()
        .map(|r| (r.outcome.clone(), r.metrics.clone()))
        .collect()
}

/// Counts the results recorded (`metrics::result`).
fn count_results(measured: &[(Outcome, crate::model::Metrics)], out: &[RecordResult]) {
    for ((outcome, m), r) in measured.iter().zip(out) {
        if let RecordResult::Recorded { state, .. } = r {
            crate::metrics::get().result(outcome, m, *state);
        }
    }
}

fn start_attempt(tx: &Transaction, attempt: AttemptId) -> rusqlite::Result<()> {
    let fold: Option<FoldId> = tx
        .prepare_cached(
            "UPDATE attempts SET state = 'running', started_at = ?1 WHERE id = ?2 AND state = 'assigned'
             RETURNING fold_id",
        )?
        .query_row(params![now_ms(), attempt], |r| r.get(0))
        .optional()?;
    if let Some(fold) = fold {
        let (id, now) = append_event(
            tx,
            Some(fold),
            Some(attempt),
            "started",
            &format!("attempt {attempt} started"),
        )?;
        tx.prepare_cached(
            "UPDATE folds SET state = CASE WHEN state = 'assigned' AND current_attempt = ?2
             THEN 'running' ELSE state END, seq = ?3, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![fold, attempt, id, now])?;
    }
    Ok(())
}

impl Store {
    pub async fn mark_started(&self, attempt: AttemptId) -> Result<()> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::mark_started(pg, attempt),
            )
            .await;
        }
        self.apply_reports(vec![attempt], Vec::new())
            .await
            .map(|_| ())
    }

    /// Records an attempt's result exactly once (see `RecordResult`).
    pub async fn record_result(&self, input: ResultInput) -> Result<RecordResult> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::record_result(pg, input),
            )
            .await;
        }
        let mut r = self.apply_reports(Vec::new(), vec![input]).await?;
        Ok(r.pop().expect("one result per input"))
    }

    /// Applies a batch of agent reports (attempts started, results) in one transaction: one
    /// fsync for everything a loop turn received.
    pub async fn apply_reports(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
    ) -> Result<Vec<RecordResult>> {
        self.apply_reports_with(started, results, Vec::new()).await
    }

    /// `apply_reports`, with the provenance of the finished attempts written in the same
    /// transaction, before their results (`store::provenance`).
    pub async fn apply_reports_with(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
        provenance: Vec<crate::model::provenance::RunnerSide>,
    ) -> Result<Vec<RecordResult>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.apply_reports_with(started, results, provenance),
            )
            .await;
        }
        // "Started" alone need not reach the disk before we go on: if it is lost, the agent's
        // hello after a restart says the attempt runs. Results always do.
        let lazy = results.is_empty() && provenance.is_empty();
        let measured = measured(&results);
        let apply = self.reports_job(started, results, provenance);
        let out = if lazy {
            self.call_lazy(apply).await
        } else {
            self.call(apply).await
        }?;
        count_results(&measured, &out);
        Ok(out)
    }

    /// `apply_reports_with` in transactions of at most `chunk` results each, all queued at
    /// once and in order (the starts first, in transactions of at most `STARTS_PER_CHUNK`
    /// `chunk`s' worth; each result's provenance before it in its own): an urgent job (an
    /// assignment) goes between two of them instead of waiting for all. A flush of the
    /// master's slow spell holds tens of thousands of starts; in one transaction they held
    /// the writer (and every placement) for most of a second.
    /// One answer per chunk, in order, with the starts and the number of results it held;
    /// a chunk that failed stored nothing of its own.
    pub async fn apply_reports_chunked(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
        provenance: Vec<crate::model::provenance::RunnerSide>,
        chunk: usize,
    ) -> Vec<ReportChunk> {
        let chunk = chunk.max(1);
        let starts_chunk = chunk * STARTS_PER_CHUNK;
        if self.pg().is_some() || (results.len() <= chunk && started.len() <= starts_chunk) {
            let results_held = results.len();
            return vec![ReportChunk {
                started: started.clone(),
                results: results_held,
                answer: self.apply_reports_with(started, results, provenance).await,
            }];
        }
        let mut provenance: std::collections::HashMap<
            AttemptId,
            crate::model::provenance::RunnerSide,
        > = provenance.into_iter().map(|p| (p.attempt, p)).collect();
        let mut queued = Vec::new();
        // The starts go first, so that no result is recorded before its attempt's start.
        for part in started.chunks(starts_chunk) {
            let job = self.reports_job(part.to_vec(), Vec::new(), Vec::new());
            queued.push((part.to_vec(), 0, Vec::new(), self.queue(job)));
        }
        let mut results = results.into_iter().peekable();
        while results.peek().is_some() {
            let part: Vec<ResultInput> = results.by_ref().take(chunk).collect();
            let sides = part
                .iter()
                .filter_map(|r| provenance.remove(&r.attempt))
                .collect();
            let measured = measured(&part);
            let n = part.len();
            let job = self.reports_job(Vec::new(), part, sides);
            queued.push((Vec::new(), n, measured, self.queue(job)));
        }
        let mut out = Vec::with_capacity(queued.len());
        for (started, results, measured, rx) in queued {
            let answer = match rx {
                Ok(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
                Err(e) => Err(e),
            };
            if let Ok(recorded) = &answer {
                count_results(&measured, recorded);
            }
            out.push(ReportChunk {
                started,
                results,
                answer,
            });
        }
        out
    }

    /// The writer's job that records reports in one transaction.
    fn reports_job(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
        provenance: Vec<crate::model::provenance::RunnerSide>,
    ) -> impl FnOnce(&mut Connection) -> Result<Vec<RecordResult>> + Send + 'static {
        let budget = Budget {
            count_loss: true,
            max_losses: self.max_losses(),
        };
        move |conn: &mut Connection| {
            let tx = conn.transaction()?;
            for attempt in started {
                start_attempt(&tx, attempt)?;
            }
            super::provenance::write(&tx, provenance)?;
            let mut out = Vec::with_capacity(results.len());
            for input in &results {
                out.push(finish_attempt(&tx, input, budget)?);
            }
            tx.commit()?;
            Ok(out)
        }
    }
}

/// One transaction of `Store::apply_reports_chunked`: the starts it held, how many of the
/// results (the next ones in order), and its answer.
#[derive(Debug)]
pub struct ReportChunk {
    pub started: Vec<AttemptId>,
    pub results: usize,
    pub answer: Result<Vec<RecordResult>>,
}

/// Starts per transaction of `apply_reports_chunked`, in results' chunks: a start costs less
/// than a result (its attempt and fold marked, one event).
const STARTS_PER_CHUNK: usize = 4;

use super::holds::hold_for;
use super::losses::{requeue_lost, Budget};

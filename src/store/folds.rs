//! Folds, attempts, outputs and the event log. Every state change happens in one transaction
//! together with its event, and bumps the fold's `seq` (the id of its newest event), which is
//! what "changed since" listings page on.

use super::{blobs, now_ms, Result, Store, StoreError};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;
use crate::scheduler::PendingFold;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;

/// A fold as listed and shown, with figures from its newest attempt.
#[derive(Clone, Debug, Serialize)]
pub struct FoldRecord {
    pub id: FoldId,
    pub owner: String,
    pub queue: String,
    pub priority: i64,
    pub state: FoldState,
    pub reason: Option<String>,
    pub hold_code: Option<HoldCode>,
    pub submitted_at: i64,
    pub updated_at: i64,
    pub attempts: u32,
    pub retries_used: u32,
    pub current_attempt: Option<AttemptId>,
    pub runner: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<Outcome>,
    pub metrics: Option<Metrics>,
    pub seq: i64,
    pub spec: FoldSpec,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputRecord {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub fold: FoldId,
    pub runner: String,
    pub grant: Grant,
    pub state: String,
    pub assigned_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<Outcome>,
    pub metrics: Option<Metrics>,
    pub outputs: Vec<OutputRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub attempt: Option<AttemptId>,
    pub kind: String,
    pub detail: String,
}

/// An attempt that is out on a runner (assigned or running), as the master reloads it.
#[derive(Clone, Debug)]
pub struct ActiveAttempt {
    pub attempt: AttemptId,
    pub fold: FoldId,
    pub runner: String,
    pub grant: Grant,
    pub started: bool,
}

#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub fold: FoldId,
    pub runner: String,
    pub grant: Grant,
}

/// A finished attempt's result, decoded.
#[derive(Clone, Debug)]
pub struct ResultInput {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub metrics: Metrics,
    pub log: Vec<u8>,
    pub outputs: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RecordResult {
    /// Recorded; the fold is now in this state.
    Recorded {
        fold: FoldId,
        state: FoldState,
    },
    /// The same result came twice (e.g. resent after a reconnect): nothing changed.
    Duplicate,
    /// The attempt had already been ended (lost, requeued): this late result was rejected.
    Superseded {
        fold: FoldId,
    },
    Unknown,
}

#[derive(Clone, Debug, Default)]
pub struct FoldFilter {
    pub states: Vec<FoldState>,
    pub queue: Option<String>,
    pub owner: Option<String>,
    /// Only folds whose seq is greater.
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueCount {
    pub queue: String,
    pub owner: String,
    pub state: FoldState,
    pub count: u64,
}

const FOLD_COLUMNS: &str = "f.id, f.owner, f.queue, f.priority, f.state, f.reason, f.hold_code,
    f.submitted_at, f.updated_at, f.attempts, f.retries_used, f.current_attempt, a.runner,
    a.started_at, a.ended_at, a.outcome, a.wall_ms, a.cpu_ms, a.peak_memory, f.seq, f.spec";

fn fold_from_row(r: &Row) -> rusqlite::Result<FoldRecord> {
    let state: String = r.get(4)?;
    let hold: Option<String> = r.get(6)?;
    let outcome: Option<String> = r.get(15)?;
    let wall: Option<i64> = r.get(16)?;
    let spec: String = r.get(20)?;
    Ok(FoldRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        queue: r.get(2)?,
        priority: r.get(3)?,
        state: FoldState::parse(&state).unwrap_or(FoldState::Held),
        reason: r.get(5)?,
        hold_code: hold.as_deref().and_then(HoldCode::parse),
        submitted_at: r.get(7)?,
        updated_at: r.get(8)?,
        attempts: r.get(9)?,
        retries_used: r.get(10)?,
        current_attempt: r.get(11)?,
        runner: r.get(12)?,
        started_at: r.get(13)?,
        ended_at: r.get(14)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        metrics: match wall {
            Some(wall_ms) => Some(Metrics {
                wall_ms: wall_ms as u64,
                cpu_ms: r.get::<_, Option<i64>>(17)?.unwrap_or(0) as u64,
                peak_memory: r.get::<_, Option<i64>>(18)?.unwrap_or(0) as u64,
            }),
            None => None,
        },
        seq: r.get(19)?,
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(20, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// Appends an event and makes it the fold's newest change.
fn event(
    tx: &Transaction,
    fold: Option<FoldId>,
    attempt: Option<AttemptId>,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<i64> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO events (at, fold_id, attempt_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, fold, attempt, kind, detail])?;
    let id = tx.last_insert_rowid();
    if let Some(fold) = fold {
        tx.prepare_cached("UPDATE folds SET seq = ?1, updated_at = ?2 WHERE id = ?3")?
            .execute(params![id, now, fold])?;
    }
    Ok(id)
}

fn set_state(
    tx: &Transaction,
    fold: FoldId,
    state: FoldState,
    reason: Option<&str>,
    hold: Option<HoldCode>,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE folds SET state = ?1, reason = ?2, hold_code = ?3 WHERE id = ?4")?
        .execute(params![
            state.as_str(),
            reason,
            hold.map(HoldCode::as_str),
            fold
        ])?;
    Ok(())
}

fn get_fold(conn: &Connection, id: FoldId) -> Result<FoldRecord> {
    let sql = format!("SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE f.id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], fold_from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no fold with id {id}")))
}

fn attempt_from_row(r: &Row) -> rusqlite::Result<AttemptRecord> {
    let gpus: String = r.get(5)?;
    let outcome: Option<String> = r.get(10)?;
    let wall: Option<i64> = r.get(11)?;
    Ok(AttemptRecord {
        id: r.get(0)?,
        fold: r.get(1)?,
        runner: r.get(2)?,
        grant: Grant {
            millicpus: r.get(3)?,
            memory: r.get::<_, i64>(4)? as u64,
            gpus: serde_json::from_str(&gpus).unwrap_or_default(),
        },
        state: r.get(6)?,
        assigned_at: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        metrics: wall.map(|w| Metrics {
            wall_ms: w as u64,
            cpu_ms: r.get::<_, Option<i64>>(12).ok().flatten().unwrap_or(0) as u64,
            peak_memory: r.get::<_, Option<i64>>(13).ok().flatten().unwrap_or(0) as u64,
        }),
        outputs: Vec::new(),
    })
}

const ATTEMPT_COLUMNS: &str = "id, fold_id, runner, millicpus, memory, gpus, state, assigned_at,
    started_at, ended_at, outcome, wall_ms, cpu_ms, peak_memory";

/// Ends an attempt with its outcome and moves its fold on. The heart of "exactly once".
fn finish_attempt(
    tx: &Transaction,
    input: &ResultInput,
    count_retry: bool,
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
        Some(blobs::put(tx, &input.log)?)
    };
    for (name, data) in &input.outputs {
        let sha = blobs::put(tx, data)?;
        tx.prepare_cached("INSERT OR REPLACE INTO outputs (attempt_id, name, sha256, size) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![input.attempt, name, sha, data.len() as i64])?;
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

    let (current, fold_state, retries_used, spec): (Option<AttemptId>, String, u32, String) = tx
        .prepare_cached(
            "SELECT current_attempt, state, retries_used, spec FROM folds WHERE id = ?1",
        )?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
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
    tx.prepare_cached("UPDATE folds SET current_attempt = NULL WHERE id = ?1")?
        .execute([fold])?;
    let max_retries = serde_json::from_str::<FoldSpec>(&spec)
        .map(|s| s.max_retries)
        .unwrap_or(0);
    let next = if !fold_state.is_active() {
        // Held or removed while it ran: the kill is now confirmed; the fold stays where it is.
        fold_state
    } else if input.outcome.is_success() {
        set_state(tx, fold, FoldState::Done, None, None)?;
        FoldState::Done
    } else if !count_retry {
        set_state(
            tx,
            fold,
            FoldState::Idle,
            Some(&format!("requeued: {}", input.outcome)),
            None,
        )?;
        FoldState::Idle
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
    Ok(RecordResult::Recorded { fold, state: next })
}

fn start_attempt(tx: &Transaction, attempt: AttemptId) -> rusqlite::Result<()> {
    let changed = tx
        .prepare_cached("UPDATE attempts SET state = 'running', started_at = ?1 WHERE id = ?2 AND state = 'assigned'")?
        .execute(params![now_ms(), attempt])?;
    if changed == 1 {
        let fold: FoldId = tx.query_row(
            "SELECT fold_id FROM attempts WHERE id = ?1",
            [attempt],
            |r| r.get(0),
        )?;
        tx.prepare_cached("UPDATE folds SET state = 'running' WHERE id = ?1 AND state = 'assigned' AND current_attempt = ?2")?
            .execute(params![fold, attempt])?;
        event(
            tx,
            Some(fold),
            Some(attempt),
            "started",
            &format!("attempt {attempt} started"),
        )?;
    }
    Ok(())
}

/// When a fold is out of retries: hold it where a person (or the OOM policy) can act and
/// release it, rather than fail it. A plain failure of the fold's own code is a result.
fn hold_for(outcome: &Outcome, spec: &str, max_retries: u32) -> Option<(HoldCode, String)> {
    let memory = serde_json::from_str::<FoldSpec>(spec)
        .map(|s| s.resources.memory)
        .unwrap_or(0);
    match outcome {
        Outcome::OutOfMemory => Some((
            HoldCode::OutOfMemory,
            format!(
                "out of memory with a {} grant; release it with more: datarun queue release ID --memory SIZE",
                crate::units::format_size(memory)
            ),
        )),
        Outcome::ImageMissing { message, .. } => Some((HoldCode::BadImage, message.clone())),
        Outcome::Lost { reason } => Some((
            HoldCode::RetriesExhausted,
            format!("lost {} times (max_retries {max_retries}); last: {reason}", max_retries + 1),
        )),
        _ if max_retries > 0 => Some((
            HoldCode::RetriesExhausted,
            format!("failed {} times (max_retries {max_retries}); last: {outcome}", max_retries + 1),
        )),
        _ => None,
    }
}

/// New requests for a fold being released.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseChanges {
    #[serde(default, with = "crate::units::size_bytes::option")]
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    #[serde(default, with = "crate::units::duration_ms::option")]
    pub soft_time_limit: Option<u64>,
    #[serde(default, with = "crate::units::duration_ms::option")]
    pub hard_time_limit: Option<u64>,
}

impl ReleaseChanges {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpus.is_none()
            && self.soft_time_limit.is_none()
            && self.hard_time_limit.is_none()
    }

    /// The spec with the changes applied, checked like a new submission.
    pub fn apply(&self, spec: &FoldSpec) -> std::result::Result<FoldSpec, String> {
        let mut new = spec.clone();
        if let Some(m) = self.memory {
            new.resources.memory = m;
        }
        if let Some(c) = self.cpus {
            new.resources.cpus = c;
        }
        if self.soft_time_limit.is_some() {
            new.soft_time_limit = self.soft_time_limit;
        }
        if self.hard_time_limit.is_some() {
            new.hard_time_limit = self.hard_time_limit;
        }
        new.validate()?;
        Ok(new)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", crate::units::format_size(m)));
        }
        if let Some(c) = self.cpus {
            parts.push(format!("cpus {c}"));
        }
        for (name, v) in [
            ("soft limit", self.soft_time_limit),
            ("hard limit", self.hard_time_limit),
        ] {
            if let Some(ms) = v {
                parts.push(format!(
                    "{name} {}",
                    crate::units::format_duration(std::time::Duration::from_millis(ms))
                ));
            }
        }
        parts.join(", ")
    }
}

/// What a hold or remove leaves for the master to do: kill an attempt that is out.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    pub attempt: AttemptId,
    pub runner: String,
}

fn active_attempt_of(tx: &Transaction, fold: FoldId) -> rusqlite::Result<Option<Cancel>> {
    tx.prepare_cached(
        "SELECT a.id, a.runner FROM folds f JOIN attempts a ON a.id = f.current_attempt
         WHERE f.id = ?1 AND a.state != 'ended'",
    )?
    .query_row([fold], |r| {
        Ok(Cancel {
            attempt: r.get(0)?,
            runner: r.get(1)?,
        })
    })
    .optional()
}

impl Store {
    /// Stores new folds in one transaction. A fold with `Some(reason)` is stored held as
    /// unmatchable. Fails, storing nothing, when an input blob is missing.
    pub async fn submit(
        &self,
        owner: String,
        folds: Vec<(FoldSpec, Option<String>)>,
    ) -> Result<Vec<FoldId>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut ids = Vec::with_capacity(folds.len());
            let now = now_ms();
            for (i, (spec, unmatchable)) in folds.iter().enumerate() {
                for input in &spec.inputs {
                    let known: bool = tx
                        .prepare_cached("SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?1)")?
                        .query_row([&input.sha256], |r| r.get(0))?;
                    if !known {
                        return Err(StoreError::Invalid(format!(
                            "fold {i}: input {:?} names blob {} which is not uploaded; POST the file to /api/v1/blobs first",
                            input.name, input.sha256
                        )));
                    }
                }
                let (state, hold) = match unmatchable {
                    Some(_) => (FoldState::Held, Some(HoldCode::Unmatchable)),
                    None => (FoldState::Idle, None),
                };
                tx.prepare_cached(
                    "INSERT INTO folds (owner, queue, priority, millicpus, memory, gpus, hard_limit_ms, spec,
                     state, reason, hold_code, submitted_at, updated_at, image)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)",
                )?
                .execute(params![
                    owner,
                    spec.queue,
                    spec.priority.0,
                    spec.resources.millicpus(),
                    spec.resources.memory as i64,
                    spec.resources.gpus,
                    spec.hard_time_limit.map(|v| v as i64),
                    serde_json::to_string(spec).expect("spec serializes"),
                    state.as_str(),
                    unmatchable,
                    hold.map(HoldCode::as_str),
                    now,
                    spec.image
                ])?;
                let id = tx.last_insert_rowid();
                for input in &spec.inputs {
                    tx.prepare_cached("INSERT INTO fold_inputs (fold_id, name, sha256) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, input.name, input.sha256])?;
                }
                let detail = match unmatchable {
                    Some(reason) => format!("submitted by {owner}; held: {reason}"),
                    None => format!("submitted by {owner} to queue {}", spec.queue),
                };
                event(&tx, Some(id), None, "submitted", &detail)?;
                ids.push(id);
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn fold(&self, id: FoldId) -> Result<FoldRecord> {
        self.call(move |conn| get_fold(conn, id)).await
    }

    pub async fn list_folds(&self, filter: FoldFilter) -> Result<(Vec<FoldRecord>, i64)> {
        self.call(move |conn| {
            let mut sql = format!("SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if !filter.states.is_empty() {
                let marks: Vec<String> = filter.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
                sql.push_str(&format!(" AND f.state IN ({})", marks.join(",")));
            }
            if let Some(q) = filter.queue {
                args.push(q.into());
                sql.push_str(&format!(" AND f.queue = ?{}", args.len()));
            }
            if let Some(o) = filter.owner {
                args.push(o.into());
                sql.push_str(&format!(" AND f.owner = ?{}", args.len()));
            }
            if let Some(s) = filter.since {
                args.push(s.into());
                sql.push_str(&format!(" AND f.seq > ?{}", args.len()));
            }
            sql.push_str(if filter.since.is_some() { " ORDER BY f.seq" } else { " ORDER BY f.id" });
            sql.push_str(&format!(" LIMIT {}", filter.limit.unwrap_or(100_000)));
            let mut stmt = conn.prepare(&sql)?;
            let folds = stmt
                .query_map(rusqlite::params_from_iter(args), fold_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let seq: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
            Ok((folds, seq))
        })
        .await
    }

    pub async fn attempts(&self, fold: FoldId) -> Result<Vec<AttemptRecord>> {
        self.call(move |conn| {
            let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE fold_id = ?1 ORDER BY id");
            let mut attempts = conn
                .prepare_cached(&sql)?
                .query_map([fold], attempt_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for a in &mut attempts {
                a.outputs = conn
                    .prepare_cached("SELECT name, size, sha256 FROM outputs WHERE attempt_id = ?1 ORDER BY name")?
                    .query_map([a.id], |r| Ok(OutputRecord { name: r.get(0)?, size: r.get::<_, i64>(1)? as u64, sha256: r.get(2)? }))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(attempts)
        })
        .await
    }

    pub async fn events(&self, fold: FoldId) -> Result<Vec<EventRecord>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, at, attempt_id, kind, detail FROM events WHERE fold_id = ?1 ORDER BY id")?
                .query_map([fold], |r| Ok(EventRecord { id: r.get(0)?, at: r.get(1)?, attempt: r.get(2)?, kind: r.get(3)?, detail: r.get(4)? }))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Idle folds, as the scheduler needs them.
    pub async fn pending_folds(&self) -> Result<Vec<PendingFold>> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, queue, owner, priority, submitted_at, millicpus, memory, gpus, hard_limit_ms, image
                     FROM folds WHERE state = 'idle'",
                )?
                .query_map([], |r| {
                    Ok(PendingFold {
                        id: r.get(0)?,
                        queue: r.get(1)?,
                        owner: r.get(2)?,
                        priority: r.get(3)?,
                        submitted_at: r.get(4)?,
                        millicpus: r.get(5)?,
                        memory: r.get::<_, i64>(6)? as u64,
                        gpus: r.get(7)?,
                        hard_limit_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                        image: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Attempts out on runners (assigned or running), for the master to track and reconcile.
    pub async fn active_attempts(&self) -> Result<Vec<ActiveAttempt>> {
        self.call(|conn| {
            let sql = format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state != 'ended' ORDER BY id"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_map([], attempt_from_row)?
                .map(|a| {
                    a.map(|a| ActiveAttempt {
                        attempt: a.id,
                        fold: a.fold,
                        runner: a.runner,
                        grant: a.grant,
                        started: a.state == "running",
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Commits a cycle's assignments in one transaction, before any agent hears of them.
    /// Folds no longer idle are skipped. Returns each new attempt with its fold's spec.
    pub async fn assign(
        &self,
        new: Vec<NewAttempt>,
    ) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            let mut out = Vec::with_capacity(new.len());
            for n in new {
                let spec: Option<String> = tx
                    .prepare_cached("SELECT spec FROM folds WHERE id = ?1 AND state = 'idle'")?
                    .query_row([n.fold], |r| r.get(0))
                    .optional()?;
                let Some(spec) = spec else { continue };
                tx.prepare_cached(
                    "INSERT INTO attempts (fold_id, runner, millicpus, memory, gpus, state, assigned_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'assigned', ?6)",
                )?
                .execute(params![
                    n.fold,
                    n.runner,
                    n.grant.millicpus,
                    n.grant.memory as i64,
                    serde_json::to_string(&n.grant.gpus).expect("gpus serialize"),
                    now
                ])?;
                let attempt = tx.last_insert_rowid();
                tx.prepare_cached(
                    "UPDATE folds SET state = 'assigned', reason = NULL, current_attempt = ?1, last_attempt = ?1,
                     attempts = attempts + 1 WHERE id = ?2",
                )?
                .execute(params![attempt, n.fold])?;
                event(&tx, Some(n.fold), Some(attempt), "assigned", &format!("attempt {attempt} assigned to {}", n.runner))?;
                let spec: FoldSpec = serde_json::from_str(&spec).map_err(|e| StoreError::Invalid(e.to_string()))?;
                out.push((attempt, n, spec));
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    pub async fn mark_started(&self, attempt: AttemptId) -> Result<()> {
        self.apply_reports(vec![attempt], Vec::new())
            .await
            .map(|_| ())
    }

    /// Records an attempt's result exactly once (see `RecordResult`).
    pub async fn record_result(&self, input: ResultInput) -> Result<RecordResult> {
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
        self.call(move |conn| {
            // "Started" alone need not reach the disk before we go on: if it is lost, the
            // agent's hello after a restart says the attempt runs. Results always do.
            let lazy = results.is_empty();
            if lazy {
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            let applied = (|| {
                let tx = conn.transaction()?;
                for attempt in started {
                    start_attempt(&tx, attempt)?;
                }
                let mut out = Vec::with_capacity(results.len());
                for input in &results {
                    out.push(finish_attempt(&tx, input, true)?);
                }
                tx.commit()?;
                Ok(out)
            })();
            if lazy {
                conn.pragma_update(None, "synchronous", "FULL")?;
            }
            applied
        })
        .await
    }

    /// Ends an attempt as lost (its runner or agent is gone). An attempt that never started
    /// is requeued without using a retry.
    pub async fn mark_lost(&self, attempt: AttemptId, reason: String) -> Result<RecordResult> {
        self.call(move |conn| {
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
                log: Vec::new(),
                outputs: Vec::new(),
            };
            let r = finish_attempt(&tx, &input, started)?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    /// Holds a fold; returns the attempt to kill if one is out.
    pub async fn hold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> Result<Option<Cancel>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state == FoldState::Held {
                return Err(StoreError::Conflict(format!("fold {fold} is already held")));
            }
            if f.state.is_final() {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is {}; only idle, assigned or running folds can be held",
                    f.state
                )));
            }
            let cancel = active_attempt_of(&tx, fold)?;
            set_state(&tx, fold, FoldState::Held, Some(&reason), Some(code))?;
            event(
                &tx,
                Some(fold),
                cancel.as_ref().map(|c| c.attempt),
                "held",
                &reason,
            )?;
            tx.commit()?;
            Ok(cancel)
        })
        .await
    }

    /// Puts a held fold back in line, with `changes` to its requests (already checked by the
    /// caller against the pool; checked here again as a spec).
    pub async fn release(
        &self,
        fold: FoldId,
        by: String,
        changes: ReleaseChanges,
    ) -> Result<FoldSpec> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state != FoldState::Held {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is {}, not held; only held folds can be released",
                    f.state
                )));
            }
            let spec = changes.apply(&f.spec).map_err(StoreError::Invalid)?;
            tx.prepare_cached(
                "UPDATE folds SET spec = ?1, millicpus = ?2, memory = ?3, hard_limit_ms = ?4 WHERE id = ?5",
            )?
            .execute(params![
                serde_json::to_string(&spec).expect("spec serializes"),
                spec.resources.millicpus(),
                spec.resources.memory as i64,
                spec.hard_time_limit.map(|v| v as i64),
                fold
            ])?;
            set_state(&tx, fold, FoldState::Idle, None, None)?;
            // A held fold whose attempt is still being killed gets a fresh attempt later.
            tx.execute("UPDATE folds SET current_attempt = NULL WHERE id = ?1", [fold])?;
            let detail = if changes.is_empty() {
                format!("released by {by}")
            } else {
                format!("released by {by} with {}", changes.describe())
            };
            event(&tx, Some(fold), None, "released", &detail)?;
            tx.commit()?;
            Ok(spec)
        })
        .await
    }

    /// Removes a fold; returns the attempt to kill if one is out.
    pub async fn remove(&self, fold: FoldId, by: String) -> Result<Option<Cancel>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state.is_final() {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is already {}",
                    f.state
                )));
            }
            let cancel = active_attempt_of(&tx, fold)?;
            set_state(
                &tx,
                fold,
                FoldState::Removed,
                Some(&format!("removed by {by}")),
                None,
            )?;
            event(
                &tx,
                Some(fold),
                cancel.as_ref().map(|c| c.attempt),
                "removed",
                &format!("removed by {by}"),
            )?;
            tx.commit()?;
            Ok(cancel)
        })
        .await
    }

    /// An output file of a fold's newest attempt (or of `attempt`).
    pub async fn output(&self, fold: FoldId, name: String) -> Result<Vec<u8>> {
        self.call(move |conn| {
            let sha: Option<String> = conn
                .prepare_cached(
                    "SELECT o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                     WHERE f.id = ?1 AND o.name = ?2",
                )?
                .query_row(params![fold, name], |r| r.get(0))
                .optional()?;
            let sha = sha.ok_or_else(|| StoreError::NotFound(format!("fold {fold} has no output named {name:?} (see `datarun fold show {fold}` for its outputs)")))?;
            blobs::get(conn, &sha)?.ok_or_else(|| StoreError::NotFound(format!("blob {sha} is missing")))
        })
        .await
    }

    /// The log of a fold's newest attempt (empty when it logged nothing or has not ended).
    pub async fn log(&self, fold: FoldId) -> Result<Vec<u8>> {
        self.call(move |conn| {
            get_fold(conn, fold)?;
            let sha: Option<String> = conn
                .prepare_cached("SELECT a.log_sha256 FROM folds f JOIN attempts a ON a.id = f.last_attempt WHERE f.id = ?1")?
                .query_row([fold], |r| r.get(0))
                .optional()?
                .flatten();
            match sha {
                Some(sha) => Ok(blobs::get(conn, &sha)?.unwrap_or_default()),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    pub async fn queue_counts(&self) -> Result<Vec<QueueCount>> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT queue, owner, state, COUNT(*) FROM folds GROUP BY queue, owner, state ORDER BY queue, owner")?
                .query_map([], |r| {
                    let state: String = r.get(2)?;
                    Ok(QueueCount { queue: r.get(0)?, owner: r.get(1)?, state: FoldState::parse(&state).unwrap_or(FoldState::Held), count: r.get::<_, i64>(3)? as u64 })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Of these attempts, those whose fold has moved on (held, removed, or another attempt is
    /// current): they must be killed wherever they still run.
    pub async fn superseded_attempts(&self, attempts: Vec<AttemptId>) -> Result<Vec<AttemptId>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                 WHERE a.id = ?1 AND (f.current_attempt IS NOT a.id OR f.state NOT IN ('assigned', 'running'))",
            )?;
            let mut out = Vec::new();
            for a in attempts {
                if stmt.exists([a])? {
                    out.push(a);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Appends an event not tied to a state change (e.g. a runner connecting).
    pub async fn log_event(
        &self,
        fold: Option<FoldId>,
        attempt: Option<AttemptId>,
        kind: String,
        detail: String,
    ) -> Result<()> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            // An event about an attempt belongs to the attempt's fold.
            let fold = match (fold, attempt) {
                (None, Some(a)) => tx
                    .query_row("SELECT fold_id FROM attempts WHERE id = ?1", [a], |r| {
                        r.get(0)
                    })
                    .optional()?,
                _ => fold,
            };
            event(&tx, fold, attempt, &kind, &detail)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

pub use Cancel as CancelTarget;

//! What the store hands out: folds, attempts, outputs, events and counts, and how rows become
//! them.

use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;
use crate::scheduler::PendingFold;
use rusqlite::Row;
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
    /// Retries its own failures used (of `spec.max_retries`).
    pub retries_used: u32,
    /// Times its runner was lost under it (crash, partition): requeued without a retry.
    pub losses: u32,
    pub current_attempt: Option<AttemptId>,
    pub runner: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<Outcome>,
    pub metrics: Option<Metrics>,
    pub seq: i64,
    /// Its array and index in it (`ARRAY.INDEX`), for a fold of an array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayPlace>,
    pub spec: FoldSpec,
}

/// An array to store: its indices in order, its cap, whether a fold's own failure stops the
/// rest.
#[derive(Clone, Debug)]
pub struct NewArray {
    pub indices: Vec<i64>,
    pub cap: Option<u32>,
    pub stop_on_failure: bool,
}

/// An array of folds (`submit --array`).
#[derive(Clone, Debug, Serialize)]
pub struct ArrayRecord {
    pub id: i64,
    pub owner: String,
    pub size: i64,
    pub cap: Option<u32>,
    pub created_at: i64,
    /// A fold failing with its own error removes its idle and waiting siblings.
    pub stop_on_failure: bool,
    /// Its folds per state.
    pub counts: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArrayPlace {
    pub id: i64,
    pub index: i64,
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
    /// The fold's owner (for fair share).
    pub owner: String,
}

#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub fold: FoldId,
    pub runner: String,
    pub grant: Grant,
}

/// A finished attempt's result, decoded. Its log and outputs are bytes in memory (small) or
/// staged temp files the master pulled from the agent, which the store moves into the blob
/// store when it records the result (and leaves in place when it cannot, so the caller may
/// retry with the same input, then discard them).
#[derive(Clone, Debug)]
pub struct ResultInput {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub metrics: Metrics,
    /// Empty bytes: no log.
    pub log: BlobData,
    pub outputs: Vec<(String, BlobData)>,
}

/// The content of a blob to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobData {
    Bytes(Vec<u8>),
    Staged(crate::transfer::StagedBlob),
}

impl BlobData {
    pub fn is_empty(&self) -> bool {
        match self {
            BlobData::Bytes(b) => b.is_empty(),
            BlobData::Staged(s) => s.size == 0,
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            BlobData::Bytes(b) => b.len() as u64,
            BlobData::Staged(s) => s.size,
        }
    }

    /// Removes a staged temp file the store did not move (a no-op for bytes).
    pub fn discard(&self) {
        if let BlobData::Staged(s) = self {
            s.discard();
        }
    }
}

impl Default for BlobData {
    fn default() -> BlobData {
        BlobData::Bytes(Vec::new())
    }
}

impl From<Vec<u8>> for BlobData {
    fn from(bytes: Vec<u8>) -> BlobData {
        BlobData::Bytes(bytes)
    }
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
    /// Only the folds of this array.
    pub array: Option<i64>,
    pub queue: Option<String>,
    pub owner: Option<String>,
    /// Only folds whose seq is greater, in seq order.
    pub since: Option<i64>,
    /// Only folds whose id is greater, in id order (when `since` is not given).
    pub after: Option<FoldId>,
    /// Newest first: in descending id order, only folds whose id is smaller than `before`
    /// when given (`queue status --history`).
    pub newest_first: bool,
    pub before: Option<FoldId>,
    /// At most this many (default and cap: `limits::DEFAULT_PAGE`, `limits::MAX_PAGE`).
    pub limit: Option<u32>,
}

/// One page of folds. `more`: the page stopped at its limit (or at
/// `limits::MAX_PAGE_BYTES` of specs) and more folds match. `seq`: with `since`, the seq of
/// the last fold when there are more (the `since` of the next page), else the newest seq of
/// all, to follow changes from; `next`: the cursor of the next page (a `since` with `since`,
/// an `after` otherwise), None at the end.
#[derive(Clone, Debug, Serialize)]
pub struct FoldPage {
    pub folds: Vec<FoldRecord>,
    pub seq: i64,
    pub next: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueCount {
    pub queue: String,
    pub owner: String,
    pub state: FoldState,
    pub count: u64,
}

pub(super) const FOLD_COLUMNS: &str =
    "f.id, f.owner, f.queue, f.priority, f.state, f.reason, f.hold_code,
    f.submitted_at, f.updated_at, f.attempts, f.retries_used, f.current_attempt, a.runner,
    a.started_at, a.ended_at, a.outcome, a.wall_ms, a.cpu_ms, a.peak_memory, f.seq, f.spec,
    f.losses, f.array_id, f.array_index";

pub(super) fn fold_from_row(r: &Row) -> rusqlite::Result<FoldRecord> {
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
        losses: r.get(21)?,
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
        array: match (r.get::<_, Option<i64>>(22)?, r.get::<_, Option<i64>>(23)?) {
            (Some(id), Some(index)) => Some(ArrayPlace { id, index }),
            _ => None,
        },
        spec: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(20, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

pub(super) fn attempt_from_row(r: &Row) -> rusqlite::Result<AttemptRecord> {
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

pub(super) const ATTEMPT_COLUMNS: &str =
    "id, fold_id, runner, millicpus, memory, gpus, state, assigned_at,
    started_at, ended_at, outcome, wall_ms, cpu_ms, peak_memory";

/// The scheduler's columns of a fold, read by `pending_of_row` from column `at` on.
const PENDING_COLUMNS: &str = "id, queue, owner, priority, submitted_at, millicpus, memory, gpus,
    hard_limit_ms, image, requirements, rank";

fn pending_of_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<PendingFold> {
    Ok(PendingFold {
        id: r.get(at)?,
        queue: r.get(at + 1)?,
        owner: r.get(at + 2)?,
        priority: r.get(at + 3)?,
        submitted_at: r.get(at + 4)?,
        millicpus: r.get(at + 5)?,
        memory: r.get::<_, i64>(at + 6)? as u64,
        gpus: r.get(at + 7)?,
        hard_limit_ms: r.get::<_, Option<i64>>(at + 8)?.map(|v| v as u64),
        image: r.get(at + 9)?,
        requirements: r.get(at + 10)?,
        rank: r.get(at + 11)?,
    })
}

/// A fold that changed since a `seq`: idle now (with what the scheduler needs), or not.
#[derive(Clone, Debug, PartialEq)]
pub enum FoldChange {
    Idle(PendingFold),
    NotIdle(FoldId),
}

impl super::Store {
    /// Idle folds, as the scheduler needs them, and the newest change they include (read in
    /// one transaction, so `fold_changes(seq)` continues exactly where this snapshot ends).
    pub async fn pending_folds(&self) -> super::Result<(Vec<PendingFold>, i64)> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::pending_folds(pg).await;
        }
        self.read(|conn| {
            let tx = conn.transaction()?;
            let seq: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
            let sql = format!("SELECT {PENDING_COLUMNS} FROM folds WHERE state = 'idle'");
            let folds = tx
                .prepare(&sql)?
                .query_map([], |r| pending_of_row(r, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(tx);
            Ok((folds, seq))
        })
        .await
    }

    /// Folds changed after `seq` (at most `limit`, oldest change first), and the `seq` to ask
    /// from next time. What the master's idle index follows; costs what changed.
    pub async fn fold_changes(
        &self,
        seq: i64,
        limit: usize,
    ) -> super::Result<(Vec<FoldChange>, i64)> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::fold_changes(pg, seq, limit).await;
        }
        self.read_for_master(move |conn| {
            let sql = format!(
                "SELECT seq, state, {PENDING_COLUMNS} FROM folds WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            );
            let mut last = seq;
            let changes = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params![seq, limit as i64], |r| {
                    let seq: i64 = r.get(0)?;
                    let state: String = r.get(1)?;
                    let change = if state == "idle" {
                        FoldChange::Idle(pending_of_row(r, 2)?)
                    } else {
                        FoldChange::NotIdle(r.get(2)?)
                    };
                    Ok((seq, change))
                })?
                .map(|row| {
                    row.map(|(s, c)| {
                        last = last.max(s);
                        c
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((changes, last))
        })
        .await
    }
}

//! Folds, their assignment, outputs and the event log (an attempt's start and end are recorded
//! in `attempts.rs`). Every state change happens in one transaction
//! together with its event, and bumps the fold's `seq` (the id of its newest event), which is
//! what "changed since" listings page on.

pub use super::records::*;
use super::records::{attempt_from_row, fold_from_row, ATTEMPT_COLUMNS, FOLD_COLUMNS};
use super::writer::{Durability, Urgency};
use super::{blobs, now_ms, BlobBody, Result, Store, StoreError};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Appends an event and makes it the fold's newest change.
pub(super) fn event(
    tx: &Transaction,
    fold: Option<FoldId>,
    attempt: Option<AttemptId>,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<i64> {
    let (id, now) = append_event(tx, fold, attempt, kind, detail)?;
    if let Some(fold) = fold {
        tx.prepare_cached("UPDATE folds SET seq = ?1, updated_at = ?2 WHERE id = ?3")?
            .execute(params![id, now, fold])?;
    }
    Ok(id)
}

/// Appends an event only; the caller's own update of the fold must set `seq` to the returned
/// id and `updated_at` to the returned time (one statement instead of two on hot paths).
pub(super) fn append_event(
    tx: &Transaction,
    fold: Option<FoldId>,
    attempt: Option<AttemptId>,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<(i64, i64)> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO events (at, fold_id, attempt_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, fold, attempt, kind, detail])?;
    Ok((tx.last_insert_rowid(), now))
}

pub(super) fn set_state(
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

fn last_log_sha(conn: &Connection, fold: FoldId) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT a.log_sha256 FROM folds f JOIN attempts a ON a.id = f.last_attempt WHERE f.id = ?1")?
        .query_row([fold], |r| r.get(0))
        .optional()?
        .flatten())
}

/// What asking a fold for an output it does not have answers.
pub(super) fn no_output(fold: FoldId, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "fold {fold} has no output named {name:?} (see `datarun fold show {fold}` for its outputs)"
    ))
}

/// The log of a fold's last attempt (empty when it has none yet).
pub(super) fn last_log(conn: &Connection, fold: FoldId) -> Result<Vec<u8>> {
    match last_log_sha(conn, fold)? {
        Some(sha) => Ok(blobs::get(conn, &sha)?.unwrap_or_default()),
        None => Ok(Vec::new()),
    }
}

pub(super) fn get_fold(conn: &Connection, id: FoldId) -> Result<FoldRecord> {
    let sql = format!("SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE f.id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], fold_from_row)
        .optional()?
        .ok_or_else(|| super::Resource::Fold(id).missing())
}

/// Inserts folds of `owner` (each with its hold, if any) in `tx`, with their inputs and
/// events: the one insert path of the queue, shared by plain folds and submission folds.
/// Fails, storing nothing once the caller drops the transaction, when an input blob is missing
/// or, unless an admin acts (`admin`), not owned by `owner` (the same answer: README "Tenancy").
pub(super) fn insert_folds(
    tx: &Transaction,
    owner: &str,
    admin: bool,
    folds: &[(FoldSpec, Option<(HoldCode, String)>)],
) -> Result<Vec<FoldId>> {
    let mut ids = Vec::with_capacity(folds.len());
    let now = now_ms();
    for (i, (spec, held)) in folds.iter().enumerate() {
        for input in &spec.inputs {
            if !super::tenancy::may_use(tx, &input.sha256, owner, admin)? {
                return Err(StoreError::Invalid(format!(
                    "fold {i}: input {:?} names blob {} which is not uploaded; POST the file to /api/v1/blobs first",
                    input.name, input.sha256
                )));
            }
        }
        let (state, hold, reason) = match held {
            Some((code, reason)) => (FoldState::Held, Some(*code), Some(reason)),
            None => (FoldState::Idle, None, None),
        };
        tx.prepare_cached(
            "INSERT INTO folds (owner, queue, priority, millicpus, memory, gpus, hard_limit_ms, spec,
             state, reason, hold_code, submitted_at, updated_at, image, requirements, rank)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)",
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
            reason,
            hold.map(HoldCode::as_str),
            now,
            spec.image,
            spec.requirements,
            spec.rank
        ])?;
        let id = tx.last_insert_rowid();
        for input in &spec.inputs {
            tx.prepare_cached(
                "INSERT INTO fold_inputs (fold_id, name, sha256) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, input.name, input.sha256])?;
        }
        let detail = match reason {
            Some(reason) => format!("submitted by {owner}; held: {reason}"),
            None => format!("submitted by {owner} to queue {}", spec.queue),
        };
        event(tx, Some(id), None, "submitted", &detail)?;
        if !spec.after.is_empty() || !spec.inputs_from.is_empty() {
            super::waiting::add_dependencies(tx, id, spec, owner, admin, i)?;
        }
        ids.push(id);
    }
    // Counted once every fold of the call is in (a transaction that fails after this, at
    // its commit, is the one case counted without its folds).
    let held = folds.iter().filter(|(_, h)| h.is_some()).count() as u64;
    let m = crate::metrics::get();
    m.submitted(FoldState::Held, held);
    m.submitted(FoldState::Idle, folds.len() as u64 - held);
    Ok(ids)
}

impl Store {
    /// Stores new folds of `owner` in one transaction. A fold with `Some((code, reason))` is
    /// stored held (unmatchable, or requirements that cannot be evaluated). Fails, storing
    /// nothing, when an input blob is missing or not the owner's (`admin`: any blob).
    pub async fn submit(
        &self,
        owner: String,
        admin: bool,
        folds: Vec<(FoldSpec, Option<(HoldCode, String)>)>,
    ) -> Result<Vec<FoldId>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::submit(pg, owner, admin, folds),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids = insert_folds(&tx, &owner, admin, &folds)?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Stores an array of `owner`: one fold of `spec` per index (its id and index in its
    /// environment), at most `cap` of them in line or running at once. Returns the array's id
    /// and the folds' ids, in index order.
    pub async fn submit_array(
        &self,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        array: NewArray,
    ) -> Result<(i64, Vec<FoldId>)> {
        if let Some(pg) = self.pg() {
            let submitted = pg.submit_array(owner, admin, spec, held, array);
            return super::engine::published(pg, submitted).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let NewArray {
                indices,
                cap,
                stop_on_failure,
            } = array;
            let array =
                super::waiting::create_array(&tx, &owner, indices.len(), cap, stop_on_failure)?;
            let folds: Vec<(FoldSpec, Option<(HoldCode, String)>)> = indices
                .iter()
                .map(|i| (super::waiting::array_spec(&spec, array, *i), held.clone()))
                .collect();
            let ids = insert_folds(&tx, &owner, admin, &folds)?;
            super::waiting::place_in_array(&tx, array, cap, &ids, &indices)?;
            tx.commit()?;
            Ok((array, ids))
        })
        .await
    }

    /// An array: its owner, size, cap, creation time and its folds' counts per state.
    pub async fn array(&self, id: i64) -> Result<ArrayRecord> {
        if let Some(pg) = self.pg() {
            return pg.array(id).await;
        }
        self.read(move |conn| {
            let row: Option<(String, i64, Option<u32>, i64, bool)> = conn
                .prepare_cached("SELECT owner, size, cap, created_at, stop_on_failure FROM arrays WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .optional()?;
            let Some((owner, size, cap, created_at, stop_on_failure)) = row else {
                return Err(StoreError::NotFound(format!("array {id} does not exist")));
            };
            let counts = conn
                .prepare_cached(
                    "SELECT state, COUNT(*) FROM folds WHERE array_id = ?1 GROUP BY state",
                )?
                .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ArrayRecord {
                id,
                owner,
                size,
                cap,
                created_at,
                stop_on_failure,
                counts,
            })
        })
        .await
    }

    /// The fold at `index` of array `array` (`ARRAY.INDEX`).
    pub async fn array_fold(&self, array: i64, index: i64) -> Result<FoldId> {
        if let Some(pg) = self.pg() {
            return pg.array_fold(array, index).await;
        }
        self.read(move |conn| {
            conn.prepare_cached("SELECT id FROM folds WHERE array_id = ?1 AND array_index = ?2")?
                .query_row([array, index], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("fold {array}.{index} does not exist")))
        })
        .await
    }

    pub async fn fold(&self, id: FoldId) -> Result<FoldRecord> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::fold(pg, id).await;
        }
        self.read(move |conn| get_fold(conn, id)).await
    }

    pub async fn attempts(&self, fold: FoldId) -> Result<Vec<AttemptRecord>> {
        if let Some(pg) = self.pg() {
            return pg.attempts(fold).await;
        }
        self.read(move |conn| {
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
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::events(pg, fold).await;
        }
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, at, attempt_id, kind, detail FROM events WHERE fold_id = ?1 ORDER BY id")?
                .query_map([fold], |r| Ok(EventRecord { id: r.get(0)?, at: r.get(1)?, attempt: r.get(2)?, kind: r.get(3)?, detail: r.get(4)? }))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Attempts out on runners (assigned or running), for the master to track and reconcile.
    pub async fn active_attempts(&self) -> Result<Vec<ActiveAttempt>> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::active_attempts(pg).await;
        }
        self.call(|conn| {
            let sql = format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state != 'ended' ORDER BY id"
            );
            let attempts = conn
                .prepare_cached(&sql)?
                .query_map([], attempt_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(attempts.len());
            for a in attempts {
                let owner: String = conn
                    .prepare_cached("SELECT owner FROM folds WHERE id = ?1")?
                    .query_row([a.fold], |r| r.get(0))?;
                out.push(ActiveAttempt {
                    attempt: a.id,
                    fold: a.fold,
                    runner: a.runner,
                    grant: a.grant,
                    started: a.state == "running",
                    owner,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Commits a cycle's assignments in one transaction, before any agent hears of them.
    /// Folds no longer idle are skipped. Returns each new attempt with its fold's spec.
    /// Urgent: a placement goes before the results and submits waiting (see `Store`).
    pub async fn assign(
        &self,
        new: Vec<NewAttempt>,
    ) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> {
        self.assign_with(new, Urgency::First).await
    }

    /// [`Store::assign`] for folds queued behind attempts still running (a runner's
    /// `prefetch`), whose agent has work until it hears of them. Urgent only if other jobs
    /// wait when the writer takes it in (`Urgency::FirstIfJobsWait`): the master runs no
    /// other cycle before it is committed, so it must not wait behind a flush of results.
    /// Otherwise it takes its lane's turn (at most one job of another caller's goes first) and
    /// the jobs arriving while it runs, the results of a stream of short folds, join its group
    /// and share its fsync, where an urgent one ends its group alone (nearly an fsync per
    /// assignment). Its answer then waits for its group's end: `GROUP_TIME` (20 ms) at most,
    /// plus the job running then and the fsync.
    pub async fn assign_behind(
        &self,
        new: Vec<NewAttempt>,
    ) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> {
        self.assign_with(new, Urgency::FirstIfJobsWait).await
    }

    async fn assign_with(
        &self,
        new: Vec<NewAttempt>,
        urgency: Urgency,
    ) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, crate::store::QueueStore::assign(pg, new)).await;
        }
        self.call_in(Durability::Durable, urgency, assign(new))
            .await
    }

    /// An output file of a fold's newest attempt, to stream.
    pub async fn output(&self, fold: FoldId, name: String) -> Result<BlobBody> {
        if let Some(pg) = self.pg() {
            return pg.output(fold, name).await;
        }
        self.read(move |conn| {
            let sha: Option<String> = conn
                .prepare_cached(
                    "SELECT o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                     WHERE f.id = ?1 AND o.name = ?2",
                )?
                .query_row(params![fold, name], |r| r.get(0))
                .optional()?;
            let sha = sha.ok_or_else(|| no_output(fold, &name))?;
            blobs::open(conn, &sha)?
                .ok_or_else(|| StoreError::NotFound(format!("blob {sha} is missing")))
        })
        .await
    }

    /// The log of a fold's newest attempt, to stream (empty when it logged nothing or has not
    /// ended).
    pub async fn log_body(&self, fold: FoldId) -> Result<BlobBody> {
        if let Some(pg) = self.pg() {
            return pg.log(fold).await.map(BlobBody::Bytes);
        }
        self.read(move |conn| {
            get_fold(conn, fold)?;
            match last_log_sha(conn, fold)? {
                Some(sha) => Ok(blobs::open(conn, &sha)?.unwrap_or(BlobBody::Bytes(Vec::new()))),
                None => Ok(BlobBody::Bytes(Vec::new())),
            }
        })
        .await
    }

    /// The log of a fold's newest attempt (empty when it logged nothing or has not ended).
    pub async fn log(&self, fold: FoldId) -> Result<Vec<u8>> {
        if let Some(pg) = self.pg() {
            return pg.log(fold).await;
        }
        self.read(move |conn| {
            get_fold(conn, fold)?;
            last_log(conn, fold)
        })
        .await
    }

    /// Folds per queue, owner and state, of the owners `scope` sees (from the counts the
    /// triggers keep: a few rows, however many folds).
    pub async fn queue_counts(&self, scope: &super::Scope) -> Result<Vec<QueueCount>> {
        if let Some(pg) = self.pg() {
            return pg.queue_counts(scope).await;
        }
        let owner = scope.owner().map(str::to_string);
        let visible = scope.sql("owner", 1);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT queue, owner, state, n FROM fold_counts WHERE n > 0 AND {visible} ORDER BY queue, owner, state"))?
                .query_map([owner], |r| {
                    let state: String = r.get(2)?;
                    Ok(QueueCount { queue: r.get(0)?, owner: r.get(1)?, state: FoldState::parse(&state).unwrap_or(FoldState::Held), count: r.get::<_, i64>(3)? as u64 })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Folds per queue and state, every owner together (for `/metrics`: from the counts the
    /// triggers keep, never a scan of the folds).
    pub async fn fold_state_counts(&self) -> Result<Vec<(String, FoldState, i64)>> {
        if let Some(pg) = self.pg() {
            return pg.fold_state_counts().await;
        }
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT queue, state, SUM(n) FROM fold_counts GROUP BY queue, state ORDER BY queue, state",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (queue, state, n) = row?;
                if let Some(state) = FoldState::parse(&state) {
                    out.push((queue, state, n));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Of these attempts, those whose fold has moved on (held, removed, or another attempt is
    /// current): they must be killed wherever they still run.
    pub async fn superseded_attempts(&self, attempts: Vec<AttemptId>) -> Result<Vec<AttemptId>> {
        if let Some(pg) = self.pg() {
            return crate::store::QueueStore::superseded_attempts(pg, attempts).await;
        }
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
        if let Some(pg) = self.pg() {
            let logged = pg.log_event(fold, attempt, kind, detail);
            return super::engine::published(pg, logged).await;
        }
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

pub use super::holds::{Cancel as CancelTarget, ReleaseChanges};

/// The writer's job of [`Store::assign`] and [`Store::assign_behind`] (named `assign`, which
/// is also its name in the store's metrics).
fn assign(
    new: Vec<NewAttempt>,
) -> impl FnOnce(&mut Connection) -> Result<Vec<(AttemptId, NewAttempt, FoldSpec)>> + Send + 'static
{
    move |conn: &mut Connection| {
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
            let (id, at) = append_event(
                &tx,
                Some(n.fold),
                Some(attempt),
                "assigned",
                &format!("attempt {attempt} assigned to {}", n.runner),
            )?;
            tx.prepare_cached(
                "UPDATE folds SET state = 'assigned', reason = NULL, current_attempt = ?1, last_attempt = ?1,
                 attempts = attempts + 1, seq = ?3, updated_at = ?4 WHERE id = ?2",
            )?
            .execute(params![attempt, n.fold, id, at])?;
            let spec: FoldSpec =
                serde_json::from_str(&spec).map_err(|e| StoreError::Invalid(e.to_string()))?;
            out.push((attempt, n, spec));
        }
        tx.commit()?;
        Ok(out)
    }
}

//! Folds that wait (`FoldState::Waiting`): for other folds (dependencies: Slurm's `afterok`
//! and `afterany`, outputs passed along as inputs) or for their array's concurrency cap
//! (`--array 0-99%8`). A waiting fold is not in line: the scheduler never sees it. It moves
//! on in the transaction that ends what it waits for (`on_final`), so the master's index
//! learns of it from the fold's change like any other.
//!
//! Cycles cannot be made: a fold may only wait for folds that exist already, and its own id
//! is new.

use super::folds::{event, set_state};
use super::{now_ms, Result, StoreError};
use crate::model::{DependOn, FoldId, FoldSpec, FoldState, InputRef, ARRAY_ENV};
use rusqlite::{params, OptionalExtension, Transaction};

/// How many folds at most one end moves on (children failing in a chain are followed
/// through, as a worklist; past this the rest stay waiting and say so in the log).
const MAX_CASCADE: usize = 100_000;

/// The folds `spec` depends on and on what: its `after` list, then the folds whose outputs it
/// takes (those must end done). Both engines record them.
pub(crate) fn parents(spec: &FoldSpec) -> impl Iterator<Item = (FoldId, DependOn)> + '_ {
    spec.after
        .iter()
        .map(|d| (d.fold, d.when))
        .chain(spec.inputs_from.iter().map(|f| (f.fold, DependOn::Ok)))
}

/// Records the dependencies of the new fold `child` of `owner` (each parent must exist and be
/// the owner's, unless an admin submits: else the answer is "does not exist", as for a
/// missing one) and decides whether it waits. Returns its state.
pub(super) fn add_dependencies(
    tx: &Transaction,
    child: FoldId,
    spec: &FoldSpec,
    owner: &str,
    admin: bool,
    index: usize,
) -> Result<FoldState> {
    for (parent, when) in parents(spec) {
        let found: Option<String> = tx
            .prepare_cached("SELECT owner FROM folds WHERE id = ?1")?
            .query_row([parent], |r| r.get(0))
            .optional()?;
        if found.is_none_or(|o| !admin && o != owner) {
            return Err(StoreError::Invalid(format!(
                "fold {index}: after: fold {parent} does not exist"
            )));
        }
        // `ok` is the stricter: it wins when a parent is named both ways.
        tx.prepare_cached(
            "INSERT INTO fold_deps (child, parent, kind) VALUES (?1, ?2, ?3)
             ON CONFLICT (child, parent) DO UPDATE SET kind = CASE WHEN kind = 'ok' OR excluded.kind = 'ok' THEN 'ok' ELSE 'any' END",
        )?
        .execute(params![child, parent, when.as_str()])?;
    }
    settle(tx, child)
}

/// Creates an array of `owner` with `size` folds; returns its id.
pub(super) fn create_array(
    tx: &Transaction,
    owner: &str,
    size: usize,
    cap: Option<u32>,
    stop_on_failure: bool,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO arrays (owner, size, cap, created_at, stop_on_failure) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![owner, size as i64, cap, now_ms(), stop_on_failure])?;
    Ok(tx.last_insert_rowid())
}

/// Places the new folds `ids` at `indices` of array `array`; beyond its cap those in line
/// wait instead.
pub(super) fn place_in_array(
    tx: &Transaction,
    array: i64,
    cap: Option<u32>,
    ids: &[FoldId],
    indices: &[i64],
) -> Result<()> {
    let mut live = 0u32;
    for (fold, index) in ids.iter().zip(indices) {
        tx.prepare_cached("UPDATE folds SET array_id = ?1, array_index = ?2 WHERE id = ?3")?
            .execute(params![array, index, fold])?;
        let state: String = tx
            .prepare_cached("SELECT state FROM folds WHERE id = ?1")?
            .query_row([fold], |r| r.get(0))?;
        if state != FoldState::Idle.as_str() {
            continue;
        }
        match cap {
            Some(cap) if live >= cap => wait(tx, *fold, &cap_reason(array, cap))?,
            _ => live += 1,
        }
    }
    Ok(())
}

/// The spec of the fold at `index` of array `array`: the two in its environment.
pub(super) fn array_spec(spec: &FoldSpec, array: i64, index: i64) -> FoldSpec {
    let mut s = spec.clone();
    s.env.insert(ARRAY_ENV[0].to_string(), array.to_string());
    s.env.insert(ARRAY_ENV[1].to_string(), index.to_string());
    s
}

pub(super) fn cap_reason(array: i64, cap: u32) -> String {
    format!("array {array} runs at most {cap} folds at once")
}

fn wait(tx: &Transaction, fold: FoldId, reason: &str) -> Result<()> {
    set_state(tx, fold, FoldState::Waiting, Some(reason), None)?;
    event(tx, Some(fold), None, "waiting", reason)?;
    Ok(())
}

/// Decides where a waiting (or new) fold goes from its parents and its array: failed when a
/// parent it needs done failed or was removed (or lacks an output it takes), waiting while
/// a parent has not ended or its array is at its cap, else in line (idle) with the parents'
/// outputs as inputs. Returns the fold's state.
pub(super) fn settle(tx: &Transaction, fold: FoldId) -> Result<FoldState> {
    let (state, array): (String, Option<i64>) = tx
        .prepare_cached("SELECT state, array_id FROM folds WHERE id = ?1")?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let state = FoldState::parse(&state).unwrap_or(FoldState::Held);
    if !matches!(state, FoldState::Idle | FoldState::Waiting) {
        return Ok(state);
    }
    let parents: Vec<(FoldId, String, String)> = tx
        .prepare_cached(
            "SELECT d.parent, d.kind, f.state FROM fold_deps d JOIN folds f ON f.id = d.parent
             WHERE d.child = ?1 ORDER BY d.parent",
        )?
        .query_map([fold], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    match verdict(&parents) {
        Verdict::Fail(reason) => return fail(tx, fold, &reason),
        Verdict::Wait(reason) => {
            if state == FoldState::Idle {
                wait(tx, fold, &reason)?;
            }
            return Ok(FoldState::Waiting);
        }
        Verdict::Parents => {}
    }
    // A new fold (idle) whose parents all ended already goes on in line; its array's cap is
    // the array's placement to keep.
    if let (FoldState::Waiting, Some(array)) = (state, array) {
        let cap: Option<u32> = tx
            .prepare_cached("SELECT cap FROM arrays WHERE id = ?1")?
            .query_row([array], |r| r.get(0))?;
        if let Some(cap) = cap {
            let live: u32 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM folds WHERE array_id = ?1 AND state IN ('idle', 'assigned', 'running')",
                )?
                .query_row([array], |r| r.get(0))?;
            if live >= cap {
                tx.prepare_cached("UPDATE folds SET reason = ?1 WHERE id = ?2")?
                    .execute(params![cap_reason(array, cap), fold])?;
                return Ok(FoldState::Waiting);
            }
        }
    }
    // In line: first the parents' outputs it takes become its inputs.
    let spec: String = tx
        .prepare_cached("SELECT spec FROM folds WHERE id = ?1")?
        .query_row([fold], |r| r.get(0))?;
    let mut spec: FoldSpec = serde_json::from_str(&spec)
        .map_err(|e| StoreError::Invalid(format!("fold {fold}: its stored spec: {e}")))?;
    if !spec.inputs_from.is_empty() {
        for from in spec.inputs_from.clone() {
            let sha: Option<String> = tx
                .prepare_cached(
                    "SELECT o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                     WHERE f.id = ?1 AND o.name = ?2",
                )?
                .query_row(params![from.fold, from.output], |r| r.get(0))
                .optional()?;
            let Some(sha) = sha else {
                return fail(tx, fold, &no_output(&from));
            };
            let name = from.input_name().to_string();
            if spec.inputs.iter().any(|i| i.name == name) {
                // Passed on already (a fold released after it ran).
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO fold_inputs (fold_id, name, sha256) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![fold, name, sha])?;
            spec.inputs.push(InputRef { name, sha256: sha });
        }
        super::provenance::freeze(tx, fold)?;
        tx.prepare_cached("UPDATE folds SET spec = ?1 WHERE id = ?2")?
            .execute(params![
                serde_json::to_string(&spec).expect("spec serializes"),
                fold
            ])?;
    }
    if state == FoldState::Waiting {
        set_state(tx, fold, FoldState::Idle, None, None)?;
        event(tx, Some(fold), None, "ready", READY)?;
    }
    Ok(FoldState::Idle)
}

/// What a fold's parents (id, `fold_deps.kind`, state) decide for it.
pub(super) enum Verdict {
    /// A parent it needs done failed or was removed: it fails, saying so.
    Fail(String),
    /// A parent has not ended: it waits, saying for which.
    Wait(String),
    /// Every parent has ended as it needs: its array's cap and its inputs decide the rest.
    Parents,
}

pub(super) fn verdict(parents: &[(FoldId, String, String)]) -> Verdict {
    let ended = |s: &str| FoldState::parse(s).is_some_and(FoldState::is_final);
    if let Some((parent, _, pstate)) = parents
        .iter()
        .find(|(_, kind, s)| kind == "ok" && ended(s) && s != "done")
    {
        return Verdict::Fail(format!(
            "fold {parent} it runs after (after-ok) is {pstate}"
        ));
    }
    let unmet: Vec<String> = parents
        .iter()
        .filter(|(_, _, s)| !ended(s))
        .map(|(p, _, _)| p.to_string())
        .collect();
    if unmet.is_empty() {
        return Verdict::Parents;
    }
    Verdict::Wait(format!(
        "waiting for fold{} {} to end",
        if unmet.len() == 1 { "" } else { "s" },
        unmet.join(", ")
    ))
}

/// Why a fold taking `from`'s output fails when that output is not there.
pub(super) fn no_output(from: &crate::model::InputFrom) -> String {
    format!(
        "fold {} has no output {:?} to pass on",
        from.fold, from.output
    )
}

/// The `ready` event's words: a waiting fold goes in line.
pub(super) const READY: &str = "what it waited for has ended; in line";

/// Why siblings not started are removed when `fold` of array `array` failed with `why`.
pub(super) fn stop_reason(fold: FoldId, array: i64, why: &str) -> String {
    format!("stopped: fold {fold} of array {array} failed with its own error ({why})")
}

/// Why a submission's folds not started are removed when its `fold` failed with `why`.
pub(super) fn submission_stop_reason(fold: FoldId, submission: i64, why: &str) -> String {
    format!("stopped: fold {fold} of submission {submission} failed with its own error ({why})")
}

/// How many folds one end moves on at most (`MAX_CASCADE`), and what the log says past it.
pub(super) fn cascade_over(moved: usize, fold: FoldId) -> bool {
    if moved > MAX_CASCADE {
        tracing::warn!("fold {fold}: more than {MAX_CASCADE} folds wait for it; the rest move on at the next end");
        return true;
    }
    false
}

fn fail(tx: &Transaction, fold: FoldId, reason: &str) -> Result<FoldState> {
    set_state(tx, fold, FoldState::Failed, Some(reason), None)?;
    event(tx, Some(fold), None, "dependency_failed", reason)?;
    Ok(FoldState::Failed)
}

/// `fold` has just failed with its own error (`Outcome::is_own_failure`): if its array or its
/// submission stops on failure, its idle and waiting siblings are removed, saying why
/// (running ones finish).
pub(super) fn stop_siblings(tx: &Transaction, fold: FoldId, why: &str) -> Result<()> {
    let array: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT a.id, a.stop_on_failure FROM folds f JOIN arrays a ON a.id = f.array_id WHERE f.id = ?1",
        )?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((array, true)) = array {
        let siblings: Vec<FoldId> = tx
            .prepare_cached(
                "SELECT id FROM folds WHERE array_id = ?1 AND state IN ('idle', 'waiting') ORDER BY array_index",
            )?
            .query_map([array], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        remove_not_started(tx, &siblings, &stop_reason(fold, array, why))?;
    }
    // A submission's folds: those of its current runs (`submission_folds.fold_id`).
    let submission: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT s.id, s.stop_on_failure FROM submission_folds sf JOIN submissions s ON s.id = sf.submission_id
             WHERE sf.fold_id = ?1",
        )?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((submission, true)) = submission {
        let siblings: Vec<FoldId> = tx
            .prepare_cached(
                "SELECT f.id FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id
                 WHERE sf.submission_id = ?1 AND f.state IN ('idle', 'waiting') ORDER BY sf.fold_index",
            )?
            .query_map([submission], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        remove_not_started(
            tx,
            &siblings,
            &submission_stop_reason(fold, submission, why),
        )?;
    }
    Ok(())
}

/// Removes these folds (idle or waiting: not started) with `reason`, an event `stopped` each,
/// and moves on what waits for them.
pub(super) fn remove_not_started(tx: &Transaction, folds: &[FoldId], reason: &str) -> Result<()> {
    for s in folds {
        set_state(tx, *s, FoldState::Removed, Some(reason), None)?;
        event(tx, Some(*s), None, "stopped", reason)?;
        on_final(tx, *s)?;
    }
    Ok(())
}

/// `fold` has just reached a final state (done, failed, removed) in `tx`: the folds waiting
/// for it move on (those that fail in turn pass it on to theirs), and a fold of its array
/// waiting for the cap takes its place.
pub(super) fn on_final(tx: &Transaction, fold: FoldId) -> Result<()> {
    let mut ended = vec![fold];
    let mut moved = 0usize;
    while let Some(parent) = ended.pop() {
        // Its webhooks (and its array's or submission's, when this was their last fold).
        super::webhooks::fold_ended(tx, parent)?;
        let children: Vec<FoldId> = tx
            .prepare_cached(
                "SELECT d.child FROM fold_deps d JOIN folds f ON f.id = d.child
                 WHERE d.parent = ?1 AND f.state = 'waiting'",
            )?
            .query_map([parent], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for child in children {
            moved += 1;
            if cascade_over(moved, fold) {
                return Ok(());
            }
            if settle(tx, child)?.is_final() {
                ended.push(child);
            }
        }
        let array: Option<i64> = tx
            .prepare_cached("SELECT array_id FROM folds WHERE id = ?1")?
            .query_row([parent], |r| r.get(0))?;
        if let Some(array) = array {
            // The waiting folds of the array in index order, until one goes in line.
            let waiting: Vec<FoldId> = tx
                .prepare_cached(
                    "SELECT id FROM folds WHERE array_id = ?1 AND state = 'waiting' ORDER BY array_index LIMIT 64",
                )?
                .query_map([array], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for w in waiting {
                match settle(tx, w)? {
                    FoldState::Idle => break,
                    s if s.is_final() => ended.push(w),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

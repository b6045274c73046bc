//! Folds that wait, on PostgreSQL, with the SQLite store's semantics and words
//! (`store::waiting`): dependencies (`--after`, `--after-ok`, `--after-any`, outputs passed on
//! as inputs), arrays and their concurrency cap. A waiting fold is not in line; it moves on in
//! the transaction that ends what it waits for (`on_final`). Every write here runs inside a
//! fenced transaction of `queue` (writers take turns), so what it reads does not move.

use super::lease::fence;
use super::queue::{event, set_state};
use super::PgStore;
use crate::model::{FoldId, FoldSpec, FoldState, HoldCode, InputRef};
use crate::store::waiting::{
    array_spec, cap_reason, cascade_over, no_output, stop_reason, submission_stop_reason, verdict,
    Verdict, READY,
};
use crate::store::{now_ms, ArrayRecord, NewArray, Result, StoreError};
use tokio_postgres::Transaction;

/// Records the dependencies of the new fold `child` (each parent must exist and be `owner`'s
/// unless an admin submits) and decides whether it waits (as `store::waiting`).
pub(super) async fn add_dependencies(
    tx: &Transaction<'_>,
    child: FoldId,
    spec: &FoldSpec,
    owner: &str,
    admin: bool,
    index: usize,
) -> Result<FoldState> {
    for (parent, when) in crate::store::waiting::parents(spec) {
        let found: Option<String> = tx
            .query_opt("SELECT owner FROM folds WHERE id = $1", &[&parent])
            .await?
            .map(|r| r.get(0));
        if found.is_none_or(|o| !admin && o != owner) {
            return Err(StoreError::Invalid(format!(
                "fold {index}: after: fold {parent} does not exist"
            )));
        }
        // `ok` is the stricter: it wins when a parent is named both ways.
        tx.execute(
            "INSERT INTO fold_deps (child, parent, kind) VALUES ($1, $2, $3)
             ON CONFLICT (child, parent) DO UPDATE SET kind = CASE
             WHEN fold_deps.kind = 'ok' OR EXCLUDED.kind = 'ok' THEN 'ok' ELSE 'any' END",
            &[&child, &parent, &when.as_str()],
        )
        .await?;
    }
    settle(tx, child).await
}

/// Creates an array of `owner` with `size` folds; returns its id.
pub(super) async fn create_array(
    tx: &Transaction<'_>,
    owner: &str,
    size: usize,
    cap: Option<u32>,
    stop_on_failure: bool,
) -> Result<i64> {
    Ok(tx
        .query_one(
            "INSERT INTO arrays (owner, size, cap, created_at, stop_on_failure)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &owner,
                &(size as i64),
                &cap.map(i64::from),
                &now_ms(),
                &stop_on_failure,
            ],
        )
        .await?
        .get(0))
}

/// Places the new folds `ids` at `indices` of array `array`; beyond its cap those in line
/// wait instead.
pub(super) async fn place_in_array(
    tx: &Transaction<'_>,
    array: i64,
    cap: Option<u32>,
    ids: &[FoldId],
    indices: &[i64],
) -> Result<()> {
    let mut live = 0u32;
    for (fold, index) in ids.iter().zip(indices) {
        tx.execute(
            "UPDATE folds SET array_id = $1, array_index = $2 WHERE id = $3",
            &[&array, index, fold],
        )
        .await?;
        let state: String = tx
            .query_one("SELECT state FROM folds WHERE id = $1", &[fold])
            .await?
            .get(0);
        if state != FoldState::Idle.as_str() {
            continue;
        }
        match cap {
            Some(cap) if live >= cap => wait(tx, *fold, &cap_reason(array, cap)).await?,
            _ => live += 1,
        }
    }
    Ok(())
}

/// Removes these folds (idle or waiting: not started) with `reason`, an event `stopped`
/// each, and moves on what waits for them.
pub(super) async fn remove_not_started(
    tx: &Transaction<'_>,
    folds: &[FoldId],
    reason: &str,
) -> Result<()> {
    for s in folds {
        set_state(tx, *s, FoldState::Removed, Some(reason), None).await?;
        event(tx, Some(*s), None, "stopped", reason).await?;
        on_final(tx, *s).await?;
    }
    Ok(())
}

async fn wait(tx: &Transaction<'_>, fold: FoldId, reason: &str) -> Result<()> {
    set_state(tx, fold, FoldState::Waiting, Some(reason), None).await?;
    event(tx, Some(fold), None, "waiting", reason).await?;
    Ok(())
}

async fn fail(tx: &Transaction<'_>, fold: FoldId, reason: &str) -> Result<FoldState> {
    set_state(tx, fold, FoldState::Failed, Some(reason), None).await?;
    event(tx, Some(fold), None, "dependency_failed", reason).await?;
    Ok(FoldState::Failed)
}

/// Where a waiting (or new) fold goes from its parents and its array (as `waiting::settle`):
/// failed, waiting, or in line with its parents' outputs as inputs. Returns its state.
pub(super) async fn settle(tx: &Transaction<'_>, fold: FoldId) -> Result<FoldState> {
    let row = tx
        .query_one("SELECT state, array_id FROM folds WHERE id = $1", &[&fold])
        .await?;
    let state = FoldState::parse(row.get(0)).unwrap_or(FoldState::Held);
    let array: Option<i64> = row.get(1);
    if !matches!(state, FoldState::Idle | FoldState::Waiting) {
        return Ok(state);
    }
    let parents: Vec<(FoldId, String, String)> = tx
        .query(
            "SELECT d.parent, d.kind, f.state FROM fold_deps d JOIN folds f ON f.id = d.parent
             WHERE d.child = $1 ORDER BY d.parent",
            &[&fold],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    match verdict(&parents) {
        Verdict::Fail(reason) => return fail(tx, fold, &reason).await,
        Verdict::Wait(reason) => {
            if state == FoldState::Idle {
                wait(tx, fold, &reason).await?;
            }
            return Ok(FoldState::Waiting);
        }
        Verdict::Parents => {}
    }
    if let (FoldState::Waiting, Some(array)) = (state, array) {
        let cap: Option<i64> = tx
            .query_one("SELECT cap FROM arrays WHERE id = $1", &[&array])
            .await?
            .get(0);
        if let Some(cap) = cap {
            let live: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM folds WHERE array_id = $1
                     AND state IN ('idle', 'assigned', 'running')",
                    &[&array],
                )
                .await?
                .get(0);
            if live >= cap {
                tx.execute(
                    "UPDATE folds SET reason = $1 WHERE id = $2",
                    &[&cap_reason(array, cap as u32), &fold],
                )
                .await?;
                return Ok(FoldState::Waiting);
            }
        }
    }
    let spec: String = tx
        .query_one("SELECT spec FROM folds WHERE id = $1", &[&fold])
        .await?
        .get(0);
    let mut spec: FoldSpec = serde_json::from_str(&spec)
        .map_err(|e| StoreError::Invalid(format!("fold {fold}: its stored spec: {e}")))?;
    if !spec.inputs_from.is_empty() {
        for from in spec.inputs_from.clone() {
            let sha: Option<String> = tx
                .query_opt(
                    "SELECT o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                     WHERE f.id = $1 AND o.name = $2",
                    &[&from.fold, &from.output],
                )
                .await?
                .map(|r| r.get(0));
            let Some(sha) = sha else {
                return fail(tx, fold, &no_output(&from)).await;
            };
            let name = from.input_name().to_string();
            if spec.inputs.iter().any(|i| i.name == name) {
                // Passed on already (a fold released after it ran).
                continue;
            }
            tx.execute(
                "INSERT INTO fold_inputs (fold_id, name, sha256) VALUES ($1, $2, $3)",
                &[&fold, &name, &sha],
            )
            .await?;
            spec.inputs.push(InputRef { name, sha256: sha });
        }
        super::provenance::freeze(tx, fold).await?;
        tx.execute(
            "UPDATE folds SET spec = $1 WHERE id = $2",
            &[
                &serde_json::to_string(&spec).expect("spec serializes"),
                &fold,
            ],
        )
        .await?;
    }
    if state == FoldState::Waiting {
        set_state(tx, fold, FoldState::Idle, None, None).await?;
        event(tx, Some(fold), None, "ready", READY).await?;
    }
    Ok(FoldState::Idle)
}

/// `fold` has just failed with its own error: when its array or its submission stops on
/// failure, its idle and waiting siblings are removed, saying why (as `waiting::stop_siblings`).
pub(super) async fn stop_siblings(tx: &Transaction<'_>, fold: FoldId, why: &str) -> Result<()> {
    let array = tx
        .query_opt(
            "SELECT a.id, a.stop_on_failure FROM folds f JOIN arrays a ON a.id = f.array_id
             WHERE f.id = $1",
            &[&fold],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1)));
    if let Some((array, true)) = array {
        let siblings: Vec<FoldId> = tx
            .query(
                "SELECT id FROM folds WHERE array_id = $1 AND state IN ('idle', 'waiting')
                 ORDER BY array_index",
                &[&array],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        remove_not_started(tx, &siblings, &stop_reason(fold, array, why)).await?;
    }
    // A submission's folds: those of its current runs (`submission_folds.fold_id`).
    let submission = tx
        .query_opt(
            "SELECT s.id, s.stop_on_failure FROM submission_folds sf
             JOIN submissions s ON s.id = sf.submission_id WHERE sf.fold_id = $1",
            &[&fold],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1)));
    if let Some((submission, true)) = submission {
        let siblings: Vec<FoldId> = tx
            .query(
                "SELECT f.id FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id
                 WHERE sf.submission_id = $1 AND f.state IN ('idle', 'waiting')
                 ORDER BY sf.fold_index",
                &[&submission],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let reason = submission_stop_reason(fold, submission, why);
        remove_not_started(tx, &siblings, &reason).await?;
    }
    Ok(())
}

/// `fold` has just reached a final state in `tx`: the folds waiting for it move on (those
/// that fail pass it on to theirs), and a fold of its array waiting for the cap takes its
/// place (as `waiting::on_final`).
pub(super) async fn on_final(tx: &Transaction<'_>, fold: FoldId) -> Result<()> {
    let mut ended = vec![fold];
    let mut moved = 0usize;
    while let Some(parent) = ended.pop() {
        // Its webhooks (and its array's, when this was its last fold).
        super::webhooks::fold_ended(tx, parent).await?;
        let children: Vec<FoldId> = tx
            .query(
                "SELECT d.child FROM fold_deps d JOIN folds f ON f.id = d.child
                 WHERE d.parent = $1 AND f.state = 'waiting' ORDER BY d.child",
                &[&parent],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for child in children {
            moved += 1;
            if cascade_over(moved, fold) {
                return Ok(());
            }
            if settle(tx, child).await?.is_final() {
                ended.push(child);
            }
        }
        let array: Option<i64> = tx
            .query_one("SELECT array_id FROM folds WHERE id = $1", &[&parent])
            .await?
            .get(0);
        if let Some(array) = array {
            let waiting: Vec<FoldId> = tx
                .query(
                    "SELECT id FROM folds WHERE array_id = $1 AND state = 'waiting'
                     ORDER BY array_index LIMIT 64",
                    &[&array],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for w in waiting {
                match settle(tx, w).await? {
                    FoldState::Idle => break,
                    s if s.is_final() => ended.push(w),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

impl PgStore {
    /// Stores an array of `owner` (as `Store::submit_array`): one fold of `spec` per index,
    /// at most `cap` of them in line or running at once.
    pub async fn submit_array(
        &self,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        array: NewArray,
    ) -> Result<(i64, Vec<FoldId>)> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let NewArray {
            indices,
            cap,
            stop_on_failure,
        } = array;
        let id = create_array(&tx, &owner, indices.len(), cap, stop_on_failure).await?;
        let folds: Vec<_> = indices
            .iter()
            .map(|i| (array_spec(&spec, id, *i), held.clone()))
            .collect();
        let ids = Self::insert_folds(&tx, &owner, admin, &folds).await?;
        place_in_array(&tx, id, cap, &ids, &indices).await?;
        tx.commit().await?;
        Ok((id, ids))
    }

    /// An array: its owner, size, cap, creation time and its folds' counts per state.
    pub async fn array(&self, id: i64) -> Result<ArrayRecord> {
        let c = self.pool.get().await?;
        let Some(row) = c
            .query_opt(
                "SELECT owner, size, cap, created_at, stop_on_failure FROM arrays WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Err(StoreError::NotFound(format!("array {id} does not exist")));
        };
        let counts = c
            .query(
                "SELECT state, COUNT(*) FROM folds WHERE array_id = $1 GROUP BY state",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect();
        Ok(ArrayRecord {
            id,
            owner: row.try_get(0)?,
            size: row.try_get(1)?,
            cap: row.try_get::<_, Option<i64>>(2)?.map(|c| c as u32),
            created_at: row.try_get(3)?,
            stop_on_failure: row.try_get(4)?,
            counts,
        })
    }

    /// The fold at `index` of array `array` (`ARRAY.INDEX`).
    pub async fn array_fold(&self, array: i64, index: i64) -> Result<FoldId> {
        let c = self.pool.get().await?;
        c.query_opt(
            "SELECT id FROM folds WHERE array_id = $1 AND array_index = $2",
            &[&array, &index],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(format!("fold {array}.{index} does not exist")))
    }
}

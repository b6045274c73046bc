//! Parameter sweeps: an array (`store::waiting`) whose points carry values. Each point's fold
//! gets its values as `DATARUN_PARAM_<NAME>` and as the input `params.json`; it may write
//! `metrics.json`, read back here to rank the points, to stop the sweep early (`on_done`,
//! in the transaction that records the point done) and to keep only the best points' outputs.

use super::folds::insert_folds;
use super::maintenance::UNREFERENCED;
use super::{blobs, now_ms, Result, Store, StoreError};
use crate::model::sweep::{parse_metrics, point_spec, StopRule, METRICS_OUTPUT};
use crate::model::{FoldId, FoldSpec, HoldCode};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A sweep to store: its parameter names, its points in order, its rules.
#[derive(Clone, Debug)]
pub struct NewSweep {
    pub names: Vec<String>,
    pub points: Vec<Map<String, Value>>,
    pub stop: Option<StopRule>,
    pub cap: Option<u32>,
    pub stop_on_failure: bool,
}

/// A sweep and its points, each with its fold, state, values and metrics.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRecord {
    /// The sweep's id: its array's.
    pub id: i64,
    pub owner: String,
    pub params: Vec<String>,
    pub cap: Option<u32>,
    pub stop_on_failure: bool,
    pub stop: Option<StopRule>,
    /// Why its points not started were removed (early stop), once they were.
    pub stopped: Option<String>,
    pub created_at: i64,
    /// Its points in index order (`GET /sweeps/{id}` lists them beside it, ranked if asked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<PointRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PointRecord {
    pub index: i64,
    pub fold: FoldId,
    pub state: String,
    pub reason: Option<String>,
    pub params: Map<String, Value>,
    /// The numbers of its `metrics.json`, once its last attempt wrote one.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// How many outputs its last attempt keeps.
    pub outputs: u64,
}

/// What `sweep keep` dropped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeepReport {
    /// Points whose outputs were dropped.
    pub points: u64,
    pub outputs: u64,
    /// Blobs nothing referred to any more, deleted.
    pub blobs: u64,
}

/// The numbers of the `metrics.json` the last attempt of `fold` wrote, if any.
fn metrics_of(conn: &Connection, fold: FoldId) -> Result<Option<BTreeMap<String, f64>>> {
    let sha: Option<String> = conn
        .prepare_cached(
            "SELECT o.sha256 FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
             WHERE f.id = ?1 AND o.name = ?2 AND o.size <= ?3",
        )?
        .query_row(
            params![
                fold,
                METRICS_OUTPUT,
                crate::model::sweep::MAX_METRICS_JSON as i64
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(sha) = sha else { return Ok(None) };
    Ok(blobs::get(conn, &sha)?.and_then(|d| parse_metrics(&d)))
}

/// `fold` is done, in `tx`: if it is a point of a sweep with an early-stop rule that its
/// metrics reach, the sweep's points not started (idle, waiting) are removed, saying why.
pub(super) fn on_done(tx: &Transaction, fold: FoldId) -> Result<()> {
    let row: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT s.array_id, s.stop FROM folds f JOIN sweeps s ON s.array_id = f.array_id
             WHERE f.id = ?1 AND s.stop IS NOT NULL AND s.stopped IS NULL",
        )?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((sweep, stop)) = row else {
        return Ok(());
    };
    let Some(reason) = early_stop(fold, sweep, &stop, metrics_of(tx, fold)?) else {
        return Ok(());
    };
    tx.prepare_cached("UPDATE sweeps SET stopped = ?1 WHERE array_id = ?2")?
        .execute(params![reason, sweep])?;
    let rest: Vec<FoldId> = tx
        .prepare_cached(
            "SELECT id FROM folds WHERE array_id = ?1 AND state IN ('idle', 'waiting') ORDER BY array_index",
        )?
        .query_map([sweep], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    super::waiting::remove_not_started(tx, &rest, &reason)
}

/// Why the points not started of `sweep` stop, when `fold`'s metrics reach its stop rule
/// (`stop`, as stored); `None` when they do not.
pub(super) fn early_stop(
    fold: FoldId,
    sweep: i64,
    stop: &str,
    metrics: Option<BTreeMap<String, f64>>,
) -> Option<String> {
    let rule = serde_json::from_str::<StopRule>(stop).ok()?;
    let value = metrics.and_then(|m| rule.reached(&m))?;
    Some(format!(
        "stopped early: fold {fold} of sweep {sweep} reached {} ({} = {value})",
        rule.describe(),
        rule.metric
    ))
}

/// A sweep's row as stored (`sweeps` joined with its array), made a record with its points.
pub(super) struct SweepRow {
    pub(super) owner: String,
    pub(super) names: String,
    pub(super) stop: Option<String>,
    pub(super) stopped: Option<String>,
    pub(super) created_at: i64,
    pub(super) cap: Option<u32>,
    pub(super) stop_on_failure: bool,
}

impl SweepRow {
    pub(super) fn record(self, id: i64, points: Vec<PointRecord>) -> SweepRecord {
        SweepRecord {
            id,
            owner: self.owner,
            params: serde_json::from_str(&self.names).unwrap_or_default(),
            cap: self.cap,
            stop_on_failure: self.stop_on_failure,
            stop: self.stop.and_then(|s| serde_json::from_str(&s).ok()),
            stopped: self.stopped,
            created_at: self.created_at,
            points,
        }
    }
}

/// The `sweeps` row of a new sweep: its names and stop rule as stored.
pub(super) fn stored_rule(sweep: &NewSweep) -> (String, Option<String>) {
    (
        serde_json::to_string(&sweep.names).expect("names serialize"),
        sweep
            .stop
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("rule serializes")),
    )
}

impl Store {
    /// Stores a sweep of `owner`: an array of one fold of `spec` per point, with the point's
    /// values in its environment and in `params.json`. Returns the sweep's id (its array's)
    /// and the folds' ids, in point order.
    pub async fn submit_sweep(
        &self,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        sweep: NewSweep,
    ) -> Result<(i64, Vec<FoldId>)> {
        if let Some(pg) = self.pg() {
            let submitted = pg.submit_sweep(owner, admin, spec, held, sweep);
            return super::engine::published(pg, submitted).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let n = sweep.points.len();
            let array = super::waiting::create_array(
                &tx,
                &owner,
                n,
                sweep.cap,
                sweep.stop_on_failure,
            )?;
            let (names, stop) = stored_rule(&sweep);
            tx.prepare_cached(
                "INSERT INTO sweeps (array_id, owner, params, stop, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![array, owner, names, stop, now_ms()])?;
            let mut folds = Vec::with_capacity(n);
            for (i, point) in sweep.points.iter().enumerate() {
                let text = serde_json::to_string(point).expect("point serializes");
                let sha = blobs::put(&tx, text.as_bytes())?;
                super::tenancy::own(&tx, &sha, &owner)?;
                tx.prepare_cached(
                    "INSERT INTO sweep_points (array_id, array_index, params) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![array, i as i64, text])?;
                let spec = super::waiting::array_spec(&spec, array, i as i64);
                folds.push((point_spec(&spec, point, sha), held.clone()));
            }
            let ids = insert_folds(&tx, &owner, admin, &folds)?;
            let indices: Vec<i64> = (0..n as i64).collect();
            super::waiting::place_in_array(&tx, array, sweep.cap, &ids, &indices)?;
            tx.commit()?;
            Ok((array, ids))
        })
        .await
    }

    /// A sweep with its points (values, states, metrics).
    pub async fn sweep(&self, id: i64) -> Result<SweepRecord> {
        if let Some(pg) = self.pg() {
            return pg.sweep(id).await;
        }
        self.read(move |conn| {
            type Row = (String, String, Option<String>, Option<String>, i64, Option<u32>, bool);
            let row: Option<Row> = conn
                .prepare_cached(
                    "SELECT s.owner, s.params, s.stop, s.stopped, s.created_at, a.cap, a.stop_on_failure
                     FROM sweeps s JOIN arrays a ON a.id = s.array_id WHERE s.array_id = ?1",
                )?
                .query_row([id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })
                .optional()?;
            let Some((owner, names, stop, stopped, created_at, cap, stop_on_failure)) = row else {
                return Err(StoreError::NotFound(format!("sweep {id} does not exist")));
            };
            type PointRow = (i64, FoldId, String, Option<String>, String, u64);
            let rows: Vec<PointRow> = conn
                .prepare_cached(
                    "SELECT p.array_index, f.id, f.state, f.reason, p.params,
                     (SELECT COUNT(*) FROM outputs o WHERE o.attempt_id = f.last_attempt)
                     FROM sweep_points p JOIN folds f ON f.array_id = p.array_id AND f.array_index = p.array_index
                     WHERE p.array_id = ?1 ORDER BY p.array_index",
                )?
                .query_map([id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut points = Vec::with_capacity(rows.len());
            for (index, fold, state, reason, params, outputs) in rows {
                points.push(PointRecord {
                    index,
                    fold,
                    metrics: metrics_of(conn, fold)?,
                    state,
                    reason,
                    params: serde_json::from_str(&params).unwrap_or_default(),
                    outputs,
                });
            }
            let row = SweepRow {
                owner,
                names,
                stop,
                stopped,
                created_at,
                cap,
                stop_on_failure,
            };
            Ok(row.record(id, points))
        })
        .await
    }

    /// Drops the outputs of the ended points of sweep `id` whose folds are not in `keep`, and
    /// the blobs nothing refers to any more (as a purge does). Points not ended keep theirs.
    pub async fn sweep_drop_outputs(&self, id: i64, keep: Vec<FoldId>) -> Result<KeepReport> {
        if let Some(pg) = self.pg() {
            return pg.sweep_drop_outputs(id, keep).await;
        }
        let (report, files) = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let keep = serde_json::to_string(&keep).expect("ids serialize");
                let attempts = "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
                    WHERE f.array_id = ?1 AND f.state IN ('done', 'failed', 'removed')
                    AND f.id NOT IN (SELECT value FROM json_each(?2))";
                let points: u64 = tx.query_row(
                    &format!(
                        "SELECT COUNT(DISTINCT a.fold_id) FROM attempts a JOIN outputs o ON o.attempt_id = a.id
                         WHERE a.id IN ({attempts})"
                    ),
                    params![id, keep],
                    |r| r.get(0),
                )?;
                let shas: Vec<String> = tx
                    .prepare(&format!(
                        "SELECT DISTINCT sha256 FROM outputs WHERE attempt_id IN ({attempts})"
                    ))?
                    .query_map(params![id, keep], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let outputs = tx.execute(
                    &format!("DELETE FROM outputs WHERE attempt_id IN ({attempts})"),
                    params![id, keep],
                )? as u64;
                let shas = serde_json::to_string(&shas).expect("shas serialize");
                let gone = format!(
                    "FROM blobs WHERE sha256 IN (SELECT value FROM json_each(?1)) AND {UNREFERENCED}"
                );
                let files: Vec<String> = tx
                    .prepare(&format!("SELECT sha256 {gone} AND location = 'file'"))?
                    .query_map([&shas], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let blobs = tx.execute(&format!("DELETE {gone}"), [&shas])? as u64;
                tx.commit()?;
                Ok((
                    KeepReport {
                        points,
                        outputs,
                        blobs,
                    },
                    files,
                ))
            })
            .await?;
        // The rows' deletion is durable: their files follow (unless a row names one again).
        self.call(move |conn| blobs::delete_files(conn, &files))
            .await?;
        Ok(report)
    }
}

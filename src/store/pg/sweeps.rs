//! Parameter sweeps on PostgreSQL, with the SQLite store's semantics (`store::sweeps`): an
//! array whose points carry values (in their env and a `params.json` input), the early stop
//! decided in the transaction that records a point done (`on_done`), and `keep` dropping the
//! other points' outputs and the blobs nothing refers to.

use super::blobs::{own, put_data};
use super::lease::fence;
use super::queue::UNREFERENCED;
use super::waiting::{create_array, place_in_array, remove_not_started};
use super::PgStore;
use crate::model::sweep::{parse_metrics, point_spec, MAX_METRICS_JSON, METRICS_OUTPUT};
use crate::model::{FoldId, FoldSpec, HoldCode};
use crate::store::sweeps::{early_stop, stored_rule, SweepRow};
use crate::store::waiting::array_spec;
use crate::store::{
    now_ms, BlobData, KeepReport, NewSweep, PointRecord, Result, StoreError, SweepRecord,
};
use std::collections::BTreeMap;
use tokio_postgres::{GenericClient, Transaction};

/// The numbers of the `metrics.json` the last attempt of `fold` wrote, if any.
async fn metrics_of(c: &impl GenericClient, fold: FoldId) -> Result<Option<BTreeMap<String, f64>>> {
    Ok(c.query_opt(
        "SELECT b.data FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
             JOIN blobs b ON b.sha256 = o.sha256
             WHERE f.id = $1 AND o.name = $2 AND o.size <= $3",
        &[&fold, &METRICS_OUTPUT, &(MAX_METRICS_JSON as i64)],
    )
    .await?
    .and_then(|r| parse_metrics(r.get::<_, &[u8]>(0))))
}

/// `fold` is done, in `tx`: if it is a point of a sweep whose stop rule its metrics reach,
/// the sweep's points not started are removed, saying why.
pub(super) async fn on_done(tx: &Transaction<'_>, fold: FoldId) -> Result<()> {
    let row = tx
        .query_opt(
            "SELECT s.array_id, s.stop FROM folds f JOIN sweeps s ON s.array_id = f.array_id
             WHERE f.id = $1 AND s.stop IS NOT NULL AND s.stopped IS NULL",
            &[&fold],
        )
        .await?;
    let Some(row) = row else { return Ok(()) };
    let (sweep, stop): (i64, String) = (row.get(0), row.get(1));
    let Some(reason) = early_stop(fold, sweep, &stop, metrics_of(tx, fold).await?) else {
        return Ok(());
    };
    tx.execute(
        "UPDATE sweeps SET stopped = $1 WHERE array_id = $2",
        &[&reason, &sweep],
    )
    .await?;
    let rest: Vec<FoldId> = tx
        .query(
            "SELECT id FROM folds WHERE array_id = $1 AND state IN ('idle', 'waiting')
             ORDER BY array_index",
            &[&sweep],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    remove_not_started(tx, &rest, &reason).await
}

impl PgStore {
    /// Stores a sweep of `owner` (as `Store::submit_sweep`).
    pub async fn submit_sweep(
        &self,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        sweep: NewSweep,
    ) -> Result<(i64, Vec<FoldId>)> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let n = sweep.points.len();
        let array = create_array(&tx, &owner, n, sweep.cap, sweep.stop_on_failure).await?;
        let (names, stop) = stored_rule(&sweep);
        tx.execute(
            "INSERT INTO sweeps (array_id, owner, params, stop, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&array, &owner, &names, &stop, &now_ms()],
        )
        .await?;
        let mut folds = Vec::with_capacity(n);
        for (i, point) in sweep.points.iter().enumerate() {
            let text = serde_json::to_string(point).expect("point serializes");
            let sha = put_data(&tx, &BlobData::Bytes(text.clone().into_bytes())).await?;
            own(&tx, &sha, &owner).await?;
            tx.execute(
                "INSERT INTO sweep_points (array_id, array_index, params) VALUES ($1, $2, $3)",
                &[&array, &(i as i64), &text],
            )
            .await?;
            let spec = array_spec(&spec, array, i as i64);
            folds.push((point_spec(&spec, point, sha), held.clone()));
        }
        let ids = Self::insert_folds(&tx, &owner, admin, &folds).await?;
        let indices: Vec<i64> = (0..n as i64).collect();
        place_in_array(&tx, array, sweep.cap, &ids, &indices).await?;
        tx.commit().await?;
        Ok((array, ids))
    }

    /// A sweep with its points (values, states, metrics).
    pub async fn sweep(&self, id: i64) -> Result<SweepRecord> {
        let c = self.pool.get().await?;
        let Some(r) = c
            .query_opt(
                "SELECT s.owner, s.params, s.stop, s.stopped, s.created_at, a.cap, a.stop_on_failure
                 FROM sweeps s JOIN arrays a ON a.id = s.array_id WHERE s.array_id = $1",
                &[&id],
            )
            .await?
        else {
            return Err(StoreError::NotFound(format!("sweep {id} does not exist")));
        };
        let row = SweepRow {
            owner: r.try_get(0)?,
            names: r.try_get(1)?,
            stop: r.try_get(2)?,
            stopped: r.try_get(3)?,
            created_at: r.try_get(4)?,
            cap: r.try_get::<_, Option<i64>>(5)?.map(|c| c as u32),
            stop_on_failure: r.try_get(6)?,
        };
        let rows = c
            .query(
                "SELECT p.array_index, f.id, f.state, f.reason, p.params,
                 (SELECT COUNT(*) FROM outputs o WHERE o.attempt_id = f.last_attempt)
                 FROM sweep_points p
                 JOIN folds f ON f.array_id = p.array_id AND f.array_index = p.array_index
                 WHERE p.array_id = $1 ORDER BY p.array_index",
                &[&id],
            )
            .await?;
        let mut points = Vec::with_capacity(rows.len());
        for r in rows {
            let fold: FoldId = r.try_get(1)?;
            points.push(PointRecord {
                index: r.try_get(0)?,
                fold,
                state: r.try_get(2)?,
                reason: r.try_get(3)?,
                params: serde_json::from_str(r.try_get(4)?).unwrap_or_default(),
                metrics: metrics_of(&*c, fold).await?,
                outputs: r.try_get::<_, i64>(5)? as u64,
            });
        }
        Ok(row.record(id, points))
    }

    /// Drops the outputs of the ended points of sweep `id` whose folds are not in `keep`, and
    /// the blobs nothing refers to any more (as a purge does).
    pub async fn sweep_drop_outputs(&self, id: i64, keep: Vec<FoldId>) -> Result<KeepReport> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let attempts = "SELECT a.id FROM attempts a JOIN folds f ON f.id = a.fold_id
            WHERE f.array_id = $1 AND f.state IN ('done', 'failed', 'removed')
            AND NOT (f.id = ANY($2))";
        let points: i64 = tx
            .query_one(
                &format!(
                    "SELECT COUNT(DISTINCT a.fold_id) FROM attempts a
                     JOIN outputs o ON o.attempt_id = a.id WHERE a.id IN ({attempts})"
                ),
                &[&id, &keep],
            )
            .await?
            .get(0);
        let shas: Vec<String> = tx
            .query(
                &format!("DELETE FROM outputs WHERE attempt_id IN ({attempts}) RETURNING sha256"),
                &[&id, &keep],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let outputs = shas.len() as u64;
        let blobs = tx
            .execute(
                &format!("DELETE FROM blobs b WHERE b.sha256 = ANY($1) AND {UNREFERENCED}"),
                &[&shas],
            )
            .await?;
        tx.commit().await?;
        Ok(KeepReport {
            points: points as u64,
            outputs,
            blobs,
        })
    }
}

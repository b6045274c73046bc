//! Submissions on PostgreSQL, with the SQLite store's semantics and words
//! (`store::submissions`): created in one fenced transaction with their queue folds (through
//! the queue's one insert path), results recorded once per run-end (`settled_key`), the "new
//! results" feed handing each result out once (marked in the transaction that selects it, and
//! write transactions take turns, so concurrent callers never get the same one), reruns and the
//! leaderboard's inputs. Rows become records through the builders both engines share
//! (`submission_records`).

use super::blobs::{blob_data, last_log, own, put_data};
use super::datasets::read_indices;
use super::holds::active_attempt_of;
use super::lease::fence;
use super::queue::{event, get_fold, set_state};
use super::PgStore;
use crate::model::{FoldSpec, FoldState, HoldCode};
use crate::store::submission_records::{
    sf_from_row, submission_from_row, NewFiles, PG_SF_COLUMNS, SUBMISSION_COLUMNS,
};
use crate::store::submissions::{
    changed_meanwhile, no_dataset_for, replaced_by, stopped, submission_taken, RESULT_OUTPUTS,
};
use crate::store::{
    now_ms, BlobData, CancelTarget, DatasetId, LeaderboardInput, NewSubmission, NewSubmissionFold,
    Rerun, Resource, Result, Scope, SettleInput, SettleScope, Settled, SubmissionFoldId,
    SubmissionFoldRecord, SubmissionId, SubmissionRecord,
};
use crate::submission::{Phase, FOLD_JSON};
use std::collections::BTreeMap;
use tokio_postgres::{GenericClient, IsolationLevel, Transaction};

/// The run-end a result is derived from: the queue fold, its state and its newest attempt
/// (as `submissions::KEY`).
const KEY: &str = "f.id::TEXT || ':' || f.state || ':' || COALESCE(f.last_attempt::TEXT, '-')";

pub(super) async fn find_submission(
    c: &impl GenericClient,
    id: SubmissionId,
) -> Result<SubmissionRecord> {
    let sql = format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = $1");
    let row = c
        .query_opt(&sql, &[&id])
        .await?
        .ok_or_else(|| Resource::Submission(id).missing())?;
    let mut s = submission_from_row(&row)?;
    let sql = format!(
        "SELECT {PG_SF_COLUMNS} FROM submission_folds WHERE submission_id = $1
         ORDER BY fold_index, id"
    );
    s.folds = c
        .query(&sql, &[&id])
        .await?
        .iter()
        .map(sf_from_row)
        .collect::<std::result::Result<_, _>>()?;
    Ok(s)
}

pub(super) async fn find_sf(
    c: &impl GenericClient,
    id: SubmissionFoldId,
) -> Result<SubmissionFoldRecord> {
    let sql = format!("SELECT {PG_SF_COLUMNS} FROM submission_folds WHERE id = $1");
    match c.query_opt(&sql, &[&id]).await? {
        Some(r) => Ok(sf_from_row(&r)?),
        None => Err(Resource::SubmissionFold(id).missing()),
    }
}

async fn keep_blob(tx: &Transaction<'_>, submission: SubmissionId, sha: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO submission_blobs (submission_id, sha256) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        &[&submission, &sha],
    )
    .await?;
    Ok(())
}

async fn add_run(
    tx: &Transaction<'_>,
    sf: SubmissionFoldId,
    run: i64,
    fold: i64,
    cause: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO submission_fold_runs (submission_fold_id, run, fold_id, cause, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&sf, &run, &fold, &cause, &now_ms()],
    )
    .await?;
    Ok(())
}

/// Stores `data` kept by submission `id` and owned by `owner`.
async fn put_kept(tx: &Transaction<'_>, id: SubmissionId, owner: &str, data: &[u8]) -> Result<()> {
    let sha = put_data(tx, &BlobData::Bytes(data.to_vec())).await?;
    keep_blob(tx, id, &sha).await?;
    own(tx, &sha, owner).await
}

/// Inserts a submission's row (not its folds) inside the caller's transaction; its id.
pub(super) async fn insert_submission_row(
    tx: &Transaction<'_>,
    new: &NewSubmission,
) -> Result<SubmissionId> {
    Ok(tx
        .query_one(
            "INSERT INTO submissions (dataset_id, split_id, name, owner, files,
                 workflow_elements, created_at, stop_on_failure)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &new.dataset_id,
                &new.split_id,
                &new.name,
                &new.owner,
                &serde_json::to_string(&new.files).expect("files serialize"),
                &serde_json::to_string(&new.workflow_elements).expect("elements serialize"),
                &now_ms(),
                &new.stop_on_failure,
            ],
        )
        .await?
        .get(0))
}

/// Stores blobs (kept by the submission, owned by its owner) and new folds of submission `id`
/// with their queue folds, inside the caller's transaction (as
/// `submissions::insert_submission_folds`); their ids in order.
pub(super) async fn insert_submission_folds(
    tx: &Transaction<'_>,
    id: SubmissionId,
    owner: &str,
    admin: bool,
    blobs: &[Vec<u8>],
    folds: &[NewSubmissionFold],
) -> Result<Vec<SubmissionFoldId>> {
    for data in blobs {
        put_kept(tx, id, owner, data).await?;
    }
    let specs: Vec<_> = folds
        .iter()
        .map(|f| (f.spec.clone(), f.held.clone()))
        .collect();
    let fold_ids = PgStore::insert_folds(tx, owner, admin, &specs).await?;
    let mut out = Vec::with_capacity(folds.len());
    for (f, fold_id) in folds.iter().zip(fold_ids) {
        let sf: SubmissionFoldId = tx
            .query_one(
                "INSERT INTO submission_folds (submission_id, fold_index, client_id,
                     train_sha256, test_sha256, train_rows, test_rows, fold_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &id,
                    &f.fold_index,
                    &f.client_id,
                    &f.train_sha256,
                    &f.test_sha256,
                    &(f.train_rows as i64),
                    &(f.test_rows as i64),
                    &fold_id,
                ],
            )
            .await?
            .get(0);
        add_run(tx, sf, 1, fold_id, "submitted").await?;
        out.push(sf);
    }
    Ok(out)
}

impl PgStore {
    /// As `Store::create_submission`.
    pub async fn create_submission(&self, new: NewSubmission) -> Result<SubmissionRecord> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        // With no split, the dataset must exist; with one, the split of that dataset.
        let split_ok: bool = tx
            .query_one(
                "SELECT CASE WHEN $2::BIGINT IS NULL
                     THEN EXISTS(SELECT 1 FROM datasets WHERE id = $1)
                     ELSE EXISTS(SELECT 1 FROM splits WHERE id = $2 AND dataset_id = $1) END",
                &[&new.dataset_id, &new.split_id],
            )
            .await?
            .get(0);
        if !split_ok {
            return Err(no_dataset_for(&new));
        }
        let taken = tx
            .query_opt(
                "SELECT id FROM submissions WHERE dataset_id = $1 AND owner = $2 AND name = $3",
                &[&new.dataset_id, &new.owner, &new.name],
            )
            .await?;
        if let Some(r) = taken {
            return Err(submission_taken(&new, r.get(0)));
        }
        let id = insert_submission_row(&tx, &new).await?;
        insert_submission_folds(&tx, id, &new.owner, new.by_admin, &new.blobs, &new.folds).await?;
        let record = find_submission(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// As `Store::list_submissions`.
    pub async fn list_submissions(
        &self,
        scope: &Scope,
        dataset: Option<DatasetId>,
        after: Option<SubmissionId>,
        limit: u32,
    ) -> Result<(Vec<SubmissionRecord>, Option<SubmissionId>)> {
        let c = self.pool.get().await?;
        let mut ids: Vec<SubmissionId> = c
            .query(
                "SELECT id FROM submissions WHERE ($1::BIGINT IS NULL OR dataset_id = $1)
                 AND id > $2 AND ($4::TEXT IS NULL OR owner = $4) ORDER BY id LIMIT $3",
                &[
                    &dataset,
                    &after.unwrap_or(0),
                    &(i64::from(limit) + 1),
                    &scope.owner(),
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let next = crate::store::listing::cut(&mut ids, Some(limit), |id| *id);
        let mut subs = Vec::with_capacity(ids.len());
        for id in ids {
            subs.push(find_submission(&*c, id).await?);
        }
        Ok((subs, next))
    }

    pub async fn submission(&self, id: SubmissionId) -> Result<SubmissionRecord> {
        let c = self.pool.get().await?;
        find_submission(&*c, id).await
    }

    /// As `Store::submission_fold`.
    pub async fn submission_fold(
        &self,
        id: SubmissionFoldId,
    ) -> Result<(
        SubmissionFoldRecord,
        SubmissionRecord,
        Vec<(i64, i64, String)>,
    )> {
        let c = self.pool.get().await?;
        let sf = find_sf(&*c, id).await?;
        let mut s = find_submission(&*c, sf.submission_id).await?;
        s.folds.clear();
        let runs = c
            .query(
                "SELECT run, fold_id, cause FROM submission_fold_runs
                 WHERE submission_fold_id = $1 ORDER BY run",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok((sf, s, runs))
    }

    /// As `Store::unsettled_submission_folds_in`: in one read-only snapshot, so a fold's key,
    /// state and outputs are of one moment.
    pub async fn unsettled_submission_folds_within(
        &self,
        scope: SettleScope,
        limit: u32,
        bytes: usize,
    ) -> Result<Vec<SettleInput>> {
        let mut c = self.pool.get().await?;
        let tx = c
            .build_transaction()
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let limit = i64::from(limit);
        let filter = match scope {
            SettleScope::All => "",
            SettleScope::Changed { .. } => {
                "sf.fold_id IN (SELECT id FROM folds WHERE seq > $2 AND seq <= $3) AND"
            }
        };
        let sql = format!(
            "SELECT sf.id, {KEY}, f.id, s.dataset_id, s.split_id, sf.train_sha256, sf.test_sha256
             FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id
             JOIN submissions s ON s.id = sf.submission_id
             WHERE {filter} sf.settled_key IS DISTINCT FROM {KEY} ORDER BY sf.id LIMIT $1"
        );
        let rows = match scope {
            SettleScope::All => tx.query(&sql, &[&limit]).await?,
            SettleScope::Changed { after, upto } => {
                tx.query(&sql, &[&limit, &after, &upto]).await?
            }
        };
        let wanted: Vec<&str> = RESULT_OUTPUTS.to_vec();
        let mut out = Vec::with_capacity(rows.len());
        let mut held = 0;
        for r in rows {
            let fold_id: i64 = r.try_get(2)?;
            let fold = get_fold(&tx, fold_id, false).await?;
            let mut outputs = BTreeMap::new();
            let mut log = Vec::new();
            if stopped(fold.state) {
                let found = tx
                    .query(
                        "SELECT o.name, o.sha256, b.data FROM folds f
                         JOIN outputs o ON o.attempt_id = f.last_attempt
                         JOIN blobs b ON b.sha256 = o.sha256
                         WHERE f.id = $1 AND o.name = ANY($2)",
                        &[&fold_id, &wanted],
                    )
                    .await?;
                for o in found {
                    outputs.insert(o.try_get(0)?, (o.try_get(1)?, o.try_get(2)?));
                }
                log = last_log(&tx, fold_id).await?;
            }
            let train_sha: String = r.try_get(5)?;
            let test_sha: String = r.try_get(6)?;
            out.push(SettleInput {
                id: r.try_get(0)?,
                key: r.try_get(1)?,
                fold,
                dataset_id: r.try_get(3)?,
                split_id: r.try_get(4)?,
                train_is: read_indices(&tx, &train_sha).await?,
                test_is: read_indices(&tx, &test_sha).await?,
                outputs,
                log,
            });
            held += out.last().map_or(0, SettleInput::bytes);
            if held >= bytes {
                break; // the rest come with the next batch
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// As `Store::settle_submission_folds`: each result applies only while its queue fold is
    /// still at the run-end it was derived from and it is not recorded yet.
    pub async fn settle_submission_folds(
        &self,
        results: Vec<(SubmissionFoldId, String, Settled)>,
    ) -> Result<usize> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let mut n = 0;
        for (id, key, r) in results {
            let current = tx
                .query_opt(
                    &format!(
                        "SELECT {KEY}, sf.settled_key, sf.submission_id FROM submission_folds sf
                         JOIN folds f ON f.id = sf.fold_id WHERE sf.id = $1 FOR UPDATE OF sf"
                    ),
                    &[&id],
                )
                .await?;
            let Some(current) = current else { continue };
            let (now_key, settled, submission): (String, Option<String>, i64) =
                (current.get(0), current.get(1), current.get(2));
            if now_key != key || settled.as_deref() == Some(key.as_str()) {
                continue;
            }
            let state = r.state.unwrap_or(Phase::Todo);
            let ended = state.is_ended();
            let seq: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(result_seq), 0) + 1 FROM submission_folds",
                    &[],
                )
                .await?
                .get(0);
            tx.execute(
                "UPDATE submission_folds SET state = $1, reason = $2, traceback = $3, phases = $4,
                 timings = $5, metrics = $6, scores = $7, predictions = $8, settled_key = $9,
                 ended_at = $10, result_seq = $11 WHERE id = $12",
                &[
                    &state.as_str(),
                    &r.reason,
                    &r.traceback,
                    &r.phases.to_string(),
                    &r.timings.to_string(),
                    &r.metrics.to_string(),
                    &r.scores.to_string(),
                    &r.predictions.to_string(),
                    &key,
                    &ended.then(now_ms),
                    &ended.then_some(seq),
                    &id,
                ],
            )
            .await?;
            for sha in &r.keep {
                keep_blob(&tx, submission, sha).await?;
            }
            n += 1;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// As `Store::take_new_results`: marked handed out in the transaction that selects them,
    /// and writers take turns, so concurrent callers never get the same result.
    pub async fn take_new_results(
        &self,
        owner: String,
        dataset: Option<DatasetId>,
        limit: u32,
        runapp_only: bool,
    ) -> Result<Vec<SubmissionFoldRecord>> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let ids: Vec<SubmissionFoldId> = tx
            .query(
                "UPDATE submission_folds SET delivered_key = settled_key, delivered_at = $1
                 WHERE id IN (SELECT sf.id FROM submission_folds sf
                     JOIN submissions s ON s.id = sf.submission_id
                     WHERE sf.state IN ('VALIDATED', 'TESTED', 'ERROR')
                     AND sf.settled_key IS NOT NULL
                     AND sf.delivered_key IS DISTINCT FROM sf.settled_key
                     AND ($2::BIGINT IS NULL OR s.dataset_id = $2)
                     AND (NOT $4 OR sf.id IN (SELECT submission_fold_id FROM runapp_folds))
                     AND s.owner = $5
                     ORDER BY sf.result_seq LIMIT $3)
                 RETURNING id",
                &[&now_ms(), &dataset, &i64::from(limit), &runapp_only, &owner],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(find_sf(&tx, id).await?);
        }
        out.sort_by_key(|r| r.result_seq);
        tx.commit().await?;
        Ok(out)
    }

    /// As `Store::submission_folds`: unknown ids, and those `scope` does not see, left out.
    pub async fn submission_folds(
        &self,
        scope: &Scope,
        ids: Vec<SubmissionFoldId>,
    ) -> Result<Vec<SubmissionFoldRecord>> {
        let c = self.pool.get().await?;
        let mut out = Vec::new();
        for id in ids {
            match super::ops::check(&*c, scope, Resource::SubmissionFold(id)).await {
                Ok(()) => out.push(find_sf(&*c, id).await?),
                Err(crate::store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// As `Store::rerun_submission_folds`: all or nothing.
    pub async fn rerun_submission_folds(
        &self,
        submission: SubmissionId,
        by: String,
        admin: bool,
        cause: String,
        reruns: Vec<Rerun>,
        files: Option<NewFiles>,
    ) -> Result<Vec<CancelTarget>> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let s = find_submission(&tx, submission).await?;
        if let Some((files, data)) = &files {
            for d in data {
                put_kept(&tx, submission, &s.owner, d).await?;
            }
            tx.execute(
                "UPDATE submissions SET files = $1 WHERE id = $2",
                &[
                    &serde_json::to_string(files).expect("files serialize"),
                    &submission,
                ],
            )
            .await?;
        }
        let mut cancels = Vec::new();
        for r in &reruns {
            let sf = find_sf(&tx, r.id).await?;
            if sf.submission_id != submission || sf.fold_id != r.replaces {
                return Err(changed_meanwhile(r.id));
            }
            let old = get_fold(&tx, sf.fold_id, true).await?;
            if !old.state.is_final() {
                if let Some(c) = active_attempt_of(&tx, old.id).await? {
                    cancels.push(c);
                }
                let why = replaced_by(r.id, &cause, &by);
                set_state(&tx, old.id, FoldState::Removed, Some(&why), None).await?;
                event(&tx, Some(old.id), None, "removed", &why).await?;
            }
            let held: Vec<(FoldSpec, Option<(HoldCode, String)>)> =
                vec![(r.spec.clone(), r.held.clone())];
            let new_fold = Self::insert_folds(&tx, &s.owner, admin, &held).await?[0];
            tx.execute(
                "UPDATE submission_folds SET fold_id = $1, runs = runs + 1, state = 'TODO',
                 reason = NULL, traceback = NULL, phases = NULL, timings = NULL, metrics = NULL,
                 scores = NULL, predictions = NULL, settled_key = NULL, ended_at = NULL,
                 result_seq = NULL WHERE id = $2",
                &[&new_fold, &r.id],
            )
            .await?;
            add_run(&tx, r.id, sf.runs + 1, new_fold, &cause).await?;
        }
        tx.commit().await?;
        Ok(cancels)
    }

    /// As `Store::leaderboard_inputs`.
    pub async fn leaderboard_inputs(&self, dataset: DatasetId) -> Result<Vec<LeaderboardInput>> {
        let c = self.pool.get().await?;
        let subs = c
            .query(
                "SELECT id, name, owner FROM submissions WHERE dataset_id = $1 ORDER BY id",
                &[&dataset],
            )
            .await?;
        let mut out = Vec::with_capacity(subs.len());
        for r in subs {
            let id: SubmissionId = r.try_get(0)?;
            let scores = c
                .query(
                    "SELECT scores FROM submission_folds WHERE submission_id = $1
                     AND state IN ('TESTED', 'VALIDATED') ORDER BY fold_index",
                    &[&id],
                )
                .await?
                .iter()
                .map(|r| {
                    r.get::<_, Option<String>>(0)
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default()
                })
                .collect();
            out.push(LeaderboardInput {
                submission_id: id,
                name: r.try_get(1)?,
                owner: r.try_get(2)?,
                scores,
            });
        }
        Ok(out)
    }

    /// As `Store::submission_fold_json`.
    pub async fn submission_fold_json(&self, id: SubmissionFoldId) -> Result<Vec<u8>> {
        let c = self.pool.get().await?;
        let sf = find_sf(&*c, id).await?;
        let sha: String = c
            .query_one(
                "SELECT sha256 FROM fold_inputs WHERE fold_id = $1 AND name = $2",
                &[&sf.fold_id, &FOLD_JSON],
            )
            .await?
            .get(0);
        Ok(blob_data(&*c, &sha).await?.unwrap_or_default())
    }
}

//! Problem datasets and their custom splits on PostgreSQL, with the SQLite store's semantics
//! and words (`store::problems`): a custom split is created `running` in one fenced
//! transaction with the queue fold that runs the script's `prepare_data`, and its outcome is
//! recorded once (only a split still `running` changes).

use super::blobs::{blob_data, last_log, own, put_data};
use super::datasets::{check_name_free, find_dataset, find_split, put_owned};
use super::lease::fence;
use super::queue::get_fold;
use super::PgStore;
use crate::model::{FoldSpec, HoldCode};
use crate::store::problems::{no_problem, no_script, NO_ROWS, TRUTH_JSON};
use crate::store::{
    now_ms, BlobData, CustomSplitEnd, CustomSplitInput, DatasetId, DatasetRecord, FoldRecord,
    NewProblemDataset, Result, SplitId, SplitRecord,
};
use std::collections::BTreeMap;

impl PgStore {
    /// As `Store::create_problem_dataset`.
    pub async fn create_problem_dataset(&self, new: NewProblemDataset) -> Result<DatasetRecord> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        check_name_free(&tx, &new.owner, &new.name).await?;
        let mut shas = BTreeMap::new();
        for (name, data) in &new.files {
            shas.insert(name.clone(), put_owned(&tx, data, &new.owner).await?);
        }
        let script = shas
            .get(&new.problem)
            .cloned()
            .ok_or_else(|| no_script(&new.problem))?;
        let size: usize = new.files.values().map(Vec::len).sum();
        let id: DatasetId = tx
            .query_one(
                "INSERT INTO datasets (name, target_column, workflow_elements, score_types,
                     table_sha256, size, rows, stats, created_at, problem, files, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, $11) RETURNING id",
                &[
                    &new.name,
                    &new.target_column,
                    &serde_json::to_string(&new.workflow_elements).unwrap_or_default(),
                    &serde_json::to_string(&new.score_types).unwrap_or_default(),
                    &script,
                    &(size as i64),
                    &new.stats.to_string(),
                    &now_ms(),
                    &new.problem,
                    &serde_json::to_string(&shas).unwrap_or_default(),
                    &new.owner,
                ],
            )
            .await?
            .get(0);
        let record = find_dataset(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// As `Store::create_custom_split`.
    pub async fn create_custom_split(
        &self,
        dataset: DatasetId,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        new_blobs: Vec<Vec<u8>>,
    ) -> Result<SplitRecord> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let d = find_dataset(&tx, dataset).await?;
        if d.problem.is_none() {
            return Err(no_problem(dataset));
        }
        for data in &new_blobs {
            put_owned(&tx, data, &owner).await?;
        }
        let none = put_data(&tx, &BlobData::Bytes(NO_ROWS.to_vec())).await?;
        let fold = Self::insert_folds(&tx, &owner, admin, &[(spec, held)]).await?[0];
        let id: SplitId = tx
            .query_one(
                "INSERT INTO splits (dataset_id, ratio, random_state, stratified, train_sha256,
                     test_sha256, train_rows, test_rows, stats, created_at, kind, state, fold_id)
                 VALUES ($1, 0, 0, FALSE, $2, $2, 0, 0, '{}', $3, 'custom', 'running', $4)
                 RETURNING id",
                &[&dataset, &none, &now_ms(), &fold],
            )
            .await?
            .get(0);
        let record = find_split(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// As `Store::unsettled_custom_splits`: running custom splits whose fold stopped.
    pub async fn unsettled_custom_splits(&self) -> Result<Vec<CustomSplitInput>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT p.id, p.fold_id FROM splits p JOIN folds f ON f.id = p.fold_id
                 WHERE p.state = 'running' AND f.state IN ('done', 'failed', 'removed')",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (split, fold_id): (SplitId, i64) = (r.try_get(0)?, r.try_get(1)?);
            let fold = get_fold(&*c, fold_id, false).await?;
            let mut outputs = BTreeMap::new();
            let mut truth = None;
            let found = c
                .query(
                    "SELECT o.name, o.sha256, b.size FROM folds f
                     JOIN outputs o ON o.attempt_id = f.last_attempt
                     JOIN blobs b ON b.sha256 = o.sha256 WHERE f.id = $1",
                    &[&fold_id],
                )
                .await?;
            for o in found {
                let (name, sha, size): (String, String, i64) =
                    (o.try_get(0)?, o.try_get(1)?, o.try_get(2)?);
                if name == TRUTH_JSON {
                    truth = blob_data(&*c, &sha).await?;
                }
                outputs.insert(name, (sha, size as u64));
            }
            let log = last_log(&*c, fold_id).await?;
            out.push(CustomSplitInput {
                split,
                fold,
                outputs,
                truth,
                log,
            });
        }
        Ok(out)
    }

    /// As `Store::finish_custom_split`: once; only a split still `running` changes.
    pub async fn finish_custom_split(&self, id: SplitId, end: CustomSplitEnd) -> Result<bool> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let n = match end {
            CustomSplitEnd::Done {
                files,
                truth_sha256,
                n_train,
                n_test,
                stats,
            } => {
                let owner: Option<String> = tx
                    .query_opt(
                        "SELECT d.owner FROM splits p JOIN datasets d ON d.id = p.dataset_id
                         WHERE p.id = $1 AND p.state = 'running'",
                        &[&id],
                    )
                    .await?
                    .and_then(|r| r.get(0));
                if let Some(owner) = &owner {
                    for sha in files.values().chain([&truth_sha256]) {
                        own(&tx, sha, owner).await?;
                    }
                }
                tx.execute(
                    "UPDATE splits SET state = 'done', files = $2, truth_sha256 = $3,
                     train_rows = $4, test_rows = $5, stats = $6
                     WHERE id = $1 AND state = 'running'",
                    &[
                        &id,
                        &serde_json::to_string(&files).unwrap_or_default(),
                        &truth_sha256,
                        &(n_train as i64),
                        &(n_test as i64),
                        &stats.to_string(),
                    ],
                )
                .await?
            }
            CustomSplitEnd::Failed { reason } => {
                tx.execute(
                    "UPDATE splits SET state = 'failed', reason = $2
                     WHERE id = $1 AND state = 'running'",
                    &[&id, &reason],
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(n == 1)
    }

    /// As `Store::custom_split_fold`: a running custom split's fold.
    pub async fn custom_split_fold(&self, id: SplitId) -> Result<Option<FoldRecord>> {
        let c = self.pool.get().await?;
        let s = find_split(&*c, id).await?;
        match (s.state.as_str(), s.fold_id) {
            ("running", Some(f)) => Ok(Some(get_fold(&*c, f, false).await?)),
            _ => Ok(None),
        }
    }
}

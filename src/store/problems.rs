//! Problem datasets (several files with a problem script) and their custom splits. A custom
//! split is the script's `prepare_data`, run as an ordinary queue fold of the fold image: it is
//! created `running` in one transaction with that fold, and settled when the fold stops (the
//! API derives the outcome from the fold's outputs; `finish_custom_split` records it once).

use super::datasets::{check_name_free, find_dataset, find_split, DatasetId, SplitId};
use super::folds::{get_fold, insert_folds, last_log};
use super::tenancy::own;
use super::{blobs, now_ms, DatasetRecord, FoldRecord, Result, SplitRecord, Store, StoreError};
use crate::model::{FoldSpec, HoldCode};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::collections::BTreeMap;

/// A problem dataset to store; the API checked names and picked the script beforehand.
pub struct NewProblemDataset {
    pub owner: String,
    pub name: String,
    pub target_column: String,
    pub workflow_elements: Vec<String>,
    pub score_types: Vec<String>,
    /// The script's name among `files`.
    pub problem: String,
    pub files: BTreeMap<String, Vec<u8>>,
    pub stats: Value,
}

/// A running custom split whose fold has stopped, with what deciding its outcome needs.
pub struct CustomSplitInput {
    pub split: SplitId,
    pub fold: FoldRecord,
    /// The last attempt's outputs: name → (sha256, size).
    pub outputs: BTreeMap<String, (String, u64)>,
    /// `truth.json`, when the fold wrote one.
    pub truth: Option<Vec<u8>>,
    pub log: Vec<u8>,
}

pub enum CustomSplitEnd {
    Done {
        /// The files `prepare_data` wrote: name (in the data dir) → sha256 of an output.
        files: BTreeMap<String, String>,
        truth_sha256: String,
        n_train: u64,
        n_test: u64,
        stats: Value,
    },
    Failed {
        reason: String,
    },
}

/// What a problem dataset whose script is not among its files answers.
pub(super) fn no_script(problem: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the problem script {problem:?} is not among the files"
    ))
}

/// What a custom split of a dataset without a problem script answers.
pub(super) fn no_problem(dataset: DatasetId) -> StoreError {
    StoreError::Invalid(format!(
        "dataset {dataset} has no problem script to split it"
    ))
}

/// The output a custom split's targets are in.
pub(super) const TRUTH_JSON: &str = "truth.json";

/// The index blob of a custom split: it has files, not row indices.
pub(super) const NO_ROWS: &[u8] = b"[]";

impl Store {
    /// Stores a problem dataset of `new.owner` and its files (owned by them) in one
    /// transaction; a name the owner has used already is a conflict. Its `table_sha256` is the
    /// script's blob.
    pub async fn create_problem_dataset(&self, new: NewProblemDataset) -> Result<DatasetRecord> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.create_problem_dataset(new)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            check_name_free(&tx, &new.owner, &new.name)?;
            let mut shas = BTreeMap::new();
            for (name, data) in &new.files {
                let sha = blobs::put(&tx, data)?;
                own(&tx, &sha, &new.owner)?;
                shas.insert(name.clone(), sha);
            }
            let script = shas
                .get(&new.problem)
                .cloned()
                .ok_or_else(|| no_script(&new.problem))?;
            let size: usize = new.files.values().map(Vec::len).sum();
            tx.execute(
                "INSERT INTO datasets (name, target_column, workflow_elements, score_types,
                     table_sha256, size, rows, stats, created_at, problem, files, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11)",
                params![
                    new.name,
                    new.target_column,
                    serde_json::to_string(&new.workflow_elements).unwrap_or_default(),
                    serde_json::to_string(&new.score_types).unwrap_or_default(),
                    script,
                    size as i64,
                    new.stats.to_string(),
                    now_ms(),
                    new.problem,
                    serde_json::to_string(&shas).unwrap_or_default(),
                    new.owner,
                ],
            )?;
            let record = find_dataset(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Creates a custom split, `running`, with the queue fold of `owner` that runs the script
    /// (`spec`, held when it could never run) and the blobs that fold adds, in one
    /// transaction. `admin`: an admin acts (the fold may use any stored blob).
    pub async fn create_custom_split(
        &self,
        dataset: DatasetId,
        owner: String,
        admin: bool,
        spec: FoldSpec,
        held: Option<(HoldCode, String)>,
        new_blobs: Vec<Vec<u8>>,
    ) -> Result<SplitRecord> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.create_custom_split(dataset, owner, admin, spec, held, new_blobs),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let d = find_dataset(&tx, dataset)?;
            if d.problem.is_none() {
                return Err(no_problem(dataset));
            }
            for data in &new_blobs {
                own(&tx, &blobs::put(&tx, data)?, &owner)?;
            }
            let none = blobs::put(&tx, NO_ROWS)?;
            let fold = insert_folds(&tx, &owner, admin, &[(spec, held)])?[0];
            tx.execute(
                "INSERT INTO splits (dataset_id, ratio, random_state, stratified, train_sha256,
                     test_sha256, train_rows, test_rows, stats, created_at, kind, state, fold_id)
                 VALUES (?1, 0, 0, 0, ?2, ?2, 0, 0, '{}', ?3, 'custom', 'running', ?4)",
                params![dataset, none, now_ms(), fold],
            )?;
            let record = find_split(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Running custom splits whose fold stopped (done, failed or removed; a held fold may
    /// still be released, so its split keeps running). On a reader connection.
    pub async fn unsettled_custom_splits(&self) -> Result<Vec<CustomSplitInput>> {
        if let Some(pg) = self.pg() {
            return pg.unsettled_custom_splits().await;
        }
        self.read(move |conn| {
            let rows: Vec<(SplitId, i64)> = conn
                .prepare_cached(
                    "SELECT p.id, p.fold_id FROM splits p JOIN folds f ON f.id = p.fold_id
                     WHERE p.state = 'running' AND f.state IN ('done', 'failed', 'removed')",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (split, fold_id) in rows {
                let fold = get_fold(conn, fold_id)?;
                let mut outputs = BTreeMap::new();
                let mut truth = None;
                let mut stmt = conn.prepare_cached(
                    "SELECT o.name, o.sha256, b.size FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
                     JOIN blobs b ON b.sha256 = o.sha256 WHERE f.id = ?1",
                )?;
                let found = stmt
                    .query_map([fold_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (name, sha, size) in found {
                    if name == TRUTH_JSON {
                        truth = blobs::get(conn, &sha)?;
                    }
                    outputs.insert(name, (sha, size as u64));
                }
                let log = last_log(conn, fold_id)?;
                out.push(CustomSplitInput { split, fold, outputs, truth, log });
            }
            Ok(out)
        })
        .await
    }

    /// Records a custom split's outcome, once: only a split still `running` changes. Its
    /// files become the dataset owner's, so their submissions may use them.
    pub async fn finish_custom_split(&self, id: SplitId, end: CustomSplitEnd) -> Result<bool> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.finish_custom_split(id, end)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let n = match end {
                CustomSplitEnd::Done { files, truth_sha256, n_train, n_test, stats } => {
                    let owner: Option<String> = tx.query_row(
                        "SELECT d.owner FROM splits p JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?1 AND p.state = 'running'",
                        [id],
                        |r| r.get(0),
                    ).optional()?.flatten();
                    for sha in files.values().chain([&truth_sha256]) {
                        if let Some(owner) = &owner {
                            own(&tx, sha, owner)?;
                        }
                    }
                    tx.execute(
                    "UPDATE splits SET state = 'done', files = ?2, truth_sha256 = ?3, train_rows = ?4,
                         test_rows = ?5, stats = ?6 WHERE id = ?1 AND state = 'running'",
                    params![
                        id,
                        serde_json::to_string(&files).unwrap_or_default(),
                        truth_sha256,
                        n_train as i64,
                        n_test as i64,
                        stats.to_string()
                    ],
                )?
                }
                CustomSplitEnd::Failed { reason } => tx.execute(
                    "UPDATE splits SET state = 'failed', reason = ?2 WHERE id = ?1 AND state = 'running'",
                    params![id, reason],
                )?,
            };
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    /// A running custom split's fold, to say why it waits (`None` for other splits).
    pub async fn custom_split_fold(&self, id: SplitId) -> Result<Option<FoldRecord>> {
        if let Some(pg) = self.pg() {
            return pg.custom_split_fold(id).await;
        }
        self.read_snapshot(move |conn| {
            let s = find_split(conn, id)?;
            match (s.state.as_str(), s.fold_id) {
                ("running", Some(f)) => Ok(Some(get_fold(conn, f)?)),
                _ => Ok(None),
            }
        })
        .await
    }
}

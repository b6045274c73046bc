//! Datasets and their held-out splits. A dataset is its CSV table (a content-addressed blob),
//! its target column, workflow elements, score types and statistics; a split is the train and
//! test row indices (blobs holding JSON arrays) with both sides' statistics. Each is created
//! in one transaction with its blobs, so a refused or failed request stores nothing.
//!
//! Deleting a dataset deletes its splits with it, and is refused while a submission refers
//! to it.

use super::row::Cols;
use super::tenancy::{own, Resource};
use super::{blobs, now_ms, BlobBody, Result, Scope, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub type DatasetId = i64;
pub type SplitId = i64;

#[derive(Clone, Debug, Serialize)]
pub struct DatasetRecord {
    pub id: DatasetId,
    /// Who made it (`None`: made before datasets had owners; only admins see it).
    pub owner: Option<String>,
    pub name: String,
    pub target_column: String,
    pub workflow_elements: Vec<String>,
    pub score_types: Vec<String>,
    pub table_sha256: String,
    pub size: u64,
    pub rows: u64,
    pub created_at: i64,
    /// A problem dataset's script, by its name among `files` (`None`: a CSV table dataset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// A problem dataset's files: name → sha256.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Column statistics (`dataset::TableStats` as JSON); left out of listings.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub stats: Value,
}

/// A dataset to store: everything is checked by the caller (the API) beforehand.
pub struct NewDataset {
    pub owner: String,
    pub name: String,
    pub target_column: String,
    pub workflow_elements: Vec<String>,
    pub score_types: Vec<String>,
    pub table: Vec<u8>,
    pub rows: u64,
    pub stats: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct SplitRecord {
    pub id: SplitId,
    pub dataset_id: DatasetId,
    pub held_out_test: f64,
    pub random_state: u64,
    pub stratify: bool,
    pub train_rows: u64,
    pub test_rows: u64,
    pub train_sha256: String,
    pub test_sha256: String,
    pub created_at: i64,
    /// `held_out` (rows by ratio and seed) or `custom` (a problem script's `prepare_data`).
    pub kind: String,
    /// `done`; a custom split is `running` (its fold `fold_id`), then `done` or `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold_id: Option<i64>,
    /// A custom split's files (what `prepare_data` wrote): name → sha256.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// A custom split's targets (`truth.json`: y_train, y_test, labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth_sha256: Option<String>,
    /// Train and test statistics side by side, with similarity; left out of listings.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub stats: Value,
}

pub struct NewSplit {
    pub dataset_id: DatasetId,
    pub held_out_test: f64,
    pub random_state: u64,
    pub stratify: bool,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub stats: Value,
}

pub(super) const DATASET_COLUMNS: &str = "id, name, target_column, workflow_elements, \
     score_types, table_sha256, size, rows, created_at, stats, problem, files, owner";
pub(super) const SPLIT_COLUMNS: &str = "id, dataset_id, ratio, random_state, stratified, \
     train_rows, test_rows, train_sha256, test_sha256, created_at, stats, kind, state, reason, \
     fold_id, files, truth_sha256";

pub(super) fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

pub(super) fn json_map(text: Option<String>) -> BTreeMap<String, String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub(super) fn json_value(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Rows of `DATASET_COLUMNS` (either engine); `stats` is read only when `with_stats`.
pub(super) fn dataset_row<R: Cols>(
    r: &R,
    with_stats: bool,
) -> std::result::Result<DatasetRecord, R::Error> {
    Ok(DatasetRecord {
        id: r.int(0)?,
        name: r.text(1)?,
        target_column: r.text(2)?,
        workflow_elements: json_list(r.text(3)?),
        score_types: json_list(r.text(4)?),
        table_sha256: r.text(5)?,
        size: r.int(6)? as u64,
        rows: r.int(7)? as u64,
        created_at: r.int(8)?,
        stats: if with_stats {
            json_value(r.opt_text(9)?)
        } else {
            Value::Null
        },
        problem: r.opt_text(10)?,
        files: json_map(r.opt_text(11)?),
        owner: r.opt_text(12)?,
    })
}

/// Rows of `SPLIT_COLUMNS` (either engine); `stats` is read only when `with_stats`.
pub(super) fn split_row<R: Cols>(
    r: &R,
    with_stats: bool,
) -> std::result::Result<SplitRecord, R::Error> {
    Ok(SplitRecord {
        id: r.int(0)?,
        dataset_id: r.int(1)?,
        held_out_test: r.real(2)?,
        random_state: r.int(3)? as u64,
        stratify: r.flag(4)?,
        train_rows: r.int(5)? as u64,
        test_rows: r.int(6)? as u64,
        train_sha256: r.text(7)?,
        test_sha256: r.text(8)?,
        created_at: r.int(9)?,
        stats: if with_stats {
            json_value(r.opt_text(10)?)
        } else {
            Value::Null
        },
        kind: r.text(11)?,
        state: r.text(12)?,
        reason: r.opt_text(13)?,
        fold_id: r.opt_int(14)?,
        files: json_map(r.opt_text(15)?),
        truth_sha256: r.opt_text(16)?,
    })
}

pub(super) fn find_dataset(conn: &Connection, id: DatasetId) -> Result<DatasetRecord> {
    conn.prepare_cached(&format!(
        "SELECT {DATASET_COLUMNS} FROM datasets WHERE id = ?1"
    ))?
    .query_row([id], |r| dataset_row(r, true))
    .optional()?
    .ok_or_else(|| Resource::Dataset(id).missing())
}

pub(super) fn find_split(conn: &Connection, id: SplitId) -> Result<SplitRecord> {
    conn.prepare_cached(&format!("SELECT {SPLIT_COLUMNS} FROM splits WHERE id = ?1"))?
        .query_row([id], |r| split_row(r, true))
        .optional()?
        .ok_or_else(|| Resource::Split(id).missing())
}

/// A split's row indices as their blob holds them (a JSON array).
pub(super) fn indices_blob(indices: &[usize]) -> Vec<u8> {
    serde_json::to_vec(indices).unwrap_or_default()
}

/// The row indices blob `sha` holds (`data`; `None`: the blob is missing).
pub(super) fn parse_indices(sha: &str, data: Option<Vec<u8>>) -> Result<Vec<usize>> {
    let data = data.ok_or_else(|| StoreError::NotFound(format!("blob {sha} is missing")))?;
    serde_json::from_slice(&data)
        .map_err(|e| StoreError::Invalid(format!("blob {sha} holds no row indices: {e}")))
}

pub(super) fn read_indices(conn: &Connection, sha: &str) -> Result<Vec<usize>> {
    parse_indices(sha, blobs::get(conn, sha)?)
}

/// A dataset name its owner has given already (`id`): what creating another answers.
pub(super) fn name_taken(name: &str, id: i64) -> StoreError {
    StoreError::Conflict(format!(
        "a dataset named {name:?} exists already (id {id}); choose another name or delete it first"
    ))
}

/// Why dataset `id` is not deleted: `submissions` refer to it, or its custom split `running`
/// (split, fold) still runs.
pub(super) fn undeletable(
    id: DatasetId,
    submissions: i64,
    running: Option<(i64, i64)>,
) -> Result<()> {
    if submissions > 0 {
        return Err(StoreError::Conflict(format!(
            "dataset {id} has {submissions} submission(s); their folds and scores refer to it, so it stays"
        )));
    }
    if let Some((split, fold)) = running {
        return Err(StoreError::Conflict(format!(
            "dataset {id}: its custom split {split} is still running (fold {fold}); wait for it or remove that fold, then delete"
        )));
    }
    Ok(())
}

/// What the table blob of dataset missing from the blobs answers.
pub(super) fn no_table(sha: &str) -> StoreError {
    StoreError::NotFound(format!("the table blob {sha} is missing"))
}

/// Refuses a name `owner` has given a dataset already (names are per owner).
pub(super) fn check_name_free(conn: &Connection, owner: &str, name: &str) -> Result<()> {
    let taken: Option<i64> = conn
        .query_row(
            "SELECT id FROM datasets WHERE owner = ?1 AND name = ?2",
            [owner, name],
            |r| r.get(0),
        )
        .optional()?;
    match taken {
        Some(id) => Err(name_taken(name, id)),
        None => Ok(()),
    }
}

impl Store {
    /// Stores a dataset of `new.owner` and its table blob (owned by them) in one transaction;
    /// a name the owner has used already is a conflict.
    pub async fn create_dataset(&self, new: NewDataset) -> Result<DatasetRecord> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.create_dataset(new)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            check_name_free(&tx, &new.owner, &new.name)?;
            let sha = blobs::put(&tx, &new.table)?;
            own(&tx, &sha, &new.owner)?;
            tx.execute(
                "INSERT INTO datasets (name, target_column, workflow_elements, score_types,
                     table_sha256, size, rows, stats, created_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    new.name,
                    new.target_column,
                    serde_json::to_string(&new.workflow_elements).unwrap_or_default(),
                    serde_json::to_string(&new.score_types).unwrap_or_default(),
                    sha,
                    new.table.len() as i64,
                    new.rows as i64,
                    new.stats.to_string(),
                    now_ms(),
                    new.owner,
                ],
            )?;
            let id = tx.last_insert_rowid();
            let record = find_dataset(&tx, id)?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// The datasets `scope` sees with an id over `after`, oldest first, without statistics: at
    /// most `limit` (None: all), and the id to go on after when there are more.
    pub async fn list_datasets(
        &self,
        scope: &Scope,
        after: Option<DatasetId>,
        limit: Option<u32>,
    ) -> Result<(Vec<DatasetRecord>, Option<DatasetId>)> {
        if let Some(pg) = self.pg() {
            return pg.list_datasets(scope, after, limit).await;
        }
        let owner = scope.owner().map(str::to_string);
        let visible = scope.sql("owner", 3);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DATASET_COLUMNS} FROM datasets WHERE id > ?1 AND {visible} ORDER BY id LIMIT ?2"
            ))?;
            let probe = limit.map_or(-1, |l| i64::from(l) + 1);
            let rows = stmt.query_map(params![after.unwrap_or(0), probe, owner], |r| {
                dataset_row(r, false)
            })?;
            let mut all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let next = super::listing::cut(&mut all, limit, |d| d.id);
            Ok((all, next))
        })
        .await
    }

    pub async fn dataset(&self, id: DatasetId) -> Result<DatasetRecord> {
        if let Some(pg) = self.pg() {
            return pg.dataset(id).await;
        }
        self.read(move |conn| find_dataset(conn, id)).await
    }

    /// The dataset's CSV table, as uploaded.
    pub async fn dataset_table(&self, id: DatasetId) -> Result<Vec<u8>> {
        if let Some(pg) = self.pg() {
            return pg.dataset_table(id).await;
        }
        self.read_snapshot(move |conn| {
            let d = find_dataset(conn, id)?;
            blobs::get(conn, &d.table_sha256)?.ok_or_else(|| no_table(&d.table_sha256))
        })
        .await
    }

    /// The dataset's CSV table, to stream (`blob_body`).
    pub async fn dataset_table_body(&self, id: DatasetId) -> Result<BlobBody> {
        if let Some(pg) = self.pg() {
            return pg.dataset_table(id).await.map(BlobBody::Bytes);
        }
        self.read_snapshot(move |conn| {
            let d = find_dataset(conn, id)?;
            blobs::open(conn, &d.table_sha256)?.ok_or_else(|| no_table(&d.table_sha256))
        })
        .await
    }

    /// Deletes a dataset and its splits in one transaction; returns how many splits went.
    /// The blobs stay until a purge finds nothing refers to them.
    pub async fn delete_dataset(&self, id: DatasetId) -> Result<usize> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.delete_dataset(id)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            find_dataset(&tx, id)?;
            let submissions: i64 = tx.query_row(
                "SELECT COUNT(*) FROM submissions WHERE dataset_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let running: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, fold_id FROM splits WHERE dataset_id = ?1 AND state = 'running'",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            undeletable(id, submissions, running)?;
            let splits = tx.execute("DELETE FROM splits WHERE dataset_id = ?1", [id])?;
            tx.execute("DELETE FROM datasets WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(splits)
        })
        .await
    }

    /// Stores a split and its index blobs in one transaction; the dataset must still exist.
    pub async fn create_split(&self, new: NewSplit) -> Result<SplitRecord> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.create_split(new)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let d = find_dataset(&tx, new.dataset_id)?;
            let train = blobs::put(&tx, &indices_blob(&new.train))?;
            let test = blobs::put(&tx, &indices_blob(&new.test))?;
            if let Some(owner) = &d.owner {
                own(&tx, &train, owner)?;
                own(&tx, &test, owner)?;
            }
            tx.execute(
                "INSERT INTO splits (dataset_id, ratio, random_state, stratified, train_sha256,
                     test_sha256, train_rows, test_rows, stats, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    new.dataset_id,
                    new.held_out_test,
                    new.random_state as i64,
                    new.stratify,
                    train,
                    test,
                    new.train.len() as i64,
                    new.test.len() as i64,
                    new.stats.to_string(),
                    now_ms(),
                ],
            )?;
            let record = find_split(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// The dataset's splits, oldest first, without statistics.
    pub async fn list_splits(&self, dataset: DatasetId) -> Result<Vec<SplitRecord>> {
        if let Some(pg) = self.pg() {
            return pg.list_splits(dataset).await;
        }
        self.read_snapshot(move |conn| {
            find_dataset(conn, dataset)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SPLIT_COLUMNS} FROM splits WHERE dataset_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([dataset], |r| split_row(r, false))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// A split with its train and test row indices.
    pub async fn split(&self, id: SplitId) -> Result<(SplitRecord, Vec<usize>, Vec<usize>)> {
        if let Some(pg) = self.pg() {
            return pg.split(id).await;
        }
        self.read_snapshot(move |conn| {
            let s = find_split(conn, id)?;
            let train = read_indices(conn, &s.train_sha256)?;
            let test = read_indices(conn, &s.test_sha256)?;
            Ok((s, train, test))
        })
        .await
    }
}

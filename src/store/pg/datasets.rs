//! Datasets and their held-out splits on PostgreSQL, with the SQLite store's semantics and
//! words (`store::datasets`): each created in one fenced transaction with its blobs (inline),
//! read back through the same record builders (`datasets::dataset_row`, `split_row`); a
//! dataset is deleted with its splits, never while a submission or a running custom split
//! refers to it.

use super::blobs::{blob_data, own, put_data};
use super::lease::fence;
use super::PgStore;
use crate::store::datasets::{
    dataset_row, indices_blob, name_taken, no_table, parse_indices, split_row, undeletable,
    DATASET_COLUMNS, SPLIT_COLUMNS,
};
use crate::store::{
    now_ms, BlobData, DatasetId, DatasetRecord, NewDataset, NewSplit, Resource, Result, Scope,
    SplitId, SplitRecord,
};
use tokio_postgres::{GenericClient, Transaction};

pub(super) async fn find_dataset(c: &impl GenericClient, id: DatasetId) -> Result<DatasetRecord> {
    let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1");
    match c.query_opt(&sql, &[&id]).await? {
        Some(r) => Ok(dataset_row(&r, true)?),
        None => Err(Resource::Dataset(id).missing()),
    }
}

pub(super) async fn find_split(c: &impl GenericClient, id: SplitId) -> Result<SplitRecord> {
    let sql = format!("SELECT {SPLIT_COLUMNS} FROM splits WHERE id = $1");
    match c.query_opt(&sql, &[&id]).await? {
        Some(r) => Ok(split_row(&r, true)?),
        None => Err(Resource::Split(id).missing()),
    }
}

/// The row indices blob `sha` holds.
pub(super) async fn read_indices(c: &impl GenericClient, sha: &str) -> Result<Vec<usize>> {
    parse_indices(sha, blob_data(c, sha).await?)
}

/// Refuses a name `owner` has given a dataset already (names are per owner).
pub(super) async fn check_name_free(tx: &Transaction<'_>, owner: &str, name: &str) -> Result<()> {
    let taken = tx
        .query_opt(
            "SELECT id FROM datasets WHERE owner = $1 AND name = $2",
            &[&owner, &name],
        )
        .await?;
    match taken {
        Some(r) => Err(name_taken(name, r.get(0))),
        None => Ok(()),
    }
}

/// Stores `data` owned by `owner`; its sha256.
pub(super) async fn put_owned(tx: &Transaction<'_>, data: &[u8], owner: &str) -> Result<String> {
    let sha = put_data(tx, &BlobData::Bytes(data.to_vec())).await?;
    own(tx, &sha, owner).await?;
    Ok(sha)
}

impl PgStore {
    /// As `Store::create_dataset`.
    pub async fn create_dataset(&self, new: NewDataset) -> Result<DatasetRecord> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        check_name_free(&tx, &new.owner, &new.name).await?;
        let sha = put_owned(&tx, &new.table, &new.owner).await?;
        let id: DatasetId = tx
            .query_one(
                "INSERT INTO datasets (name, target_column, workflow_elements, score_types,
                     table_sha256, size, rows, stats, created_at, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    &new.name,
                    &new.target_column,
                    &serde_json::to_string(&new.workflow_elements).unwrap_or_default(),
                    &serde_json::to_string(&new.score_types).unwrap_or_default(),
                    &sha,
                    &(new.table.len() as i64),
                    &(new.rows as i64),
                    &new.stats.to_string(),
                    &now_ms(),
                    &new.owner,
                ],
            )
            .await?
            .get(0);
        let record = find_dataset(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// As `Store::list_datasets`.
    pub async fn list_datasets(
        &self,
        scope: &Scope,
        after: Option<DatasetId>,
        limit: Option<u32>,
    ) -> Result<(Vec<DatasetRecord>, Option<DatasetId>)> {
        let c = self.pool.get().await?;
        let probe = limit.map(|l| i64::from(l) + 1);
        let rows = c
            .query(
                &format!(
                    "SELECT {DATASET_COLUMNS} FROM datasets WHERE id > $1
                     AND ($3::TEXT IS NULL OR owner = $3) ORDER BY id LIMIT $2"
                ),
                &[&after.unwrap_or(0), &probe, &scope.owner()],
            )
            .await?;
        let mut all = rows
            .iter()
            .map(|r| dataset_row(r, false))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let next = crate::store::listing::cut(&mut all, limit, |d| d.id);
        Ok((all, next))
    }

    pub async fn dataset(&self, id: DatasetId) -> Result<DatasetRecord> {
        let c = self.pool.get().await?;
        find_dataset(&*c, id).await
    }

    /// As `Store::dataset_table`.
    pub async fn dataset_table(&self, id: DatasetId) -> Result<Vec<u8>> {
        let c = self.pool.get().await?;
        let d = find_dataset(&*c, id).await?;
        blob_data(&*c, &d.table_sha256)
            .await?
            .ok_or_else(|| no_table(&d.table_sha256))
    }

    /// As `Store::delete_dataset`.
    pub async fn delete_dataset(&self, id: DatasetId) -> Result<usize> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        find_dataset(&tx, id).await?;
        let submissions: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM submissions WHERE dataset_id = $1",
                &[&id],
            )
            .await?
            .get(0);
        let running = tx
            .query_opt(
                "SELECT id, fold_id FROM splits WHERE dataset_id = $1 AND state = 'running'",
                &[&id],
            )
            .await?
            .map(|r| (r.get(0), r.get(1)));
        undeletable(id, submissions, running)?;
        let splits = tx
            .execute("DELETE FROM splits WHERE dataset_id = $1", &[&id])
            .await?;
        tx.execute("DELETE FROM datasets WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(splits as usize)
    }

    /// As `Store::create_split`.
    pub async fn create_split(&self, new: NewSplit) -> Result<SplitRecord> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let d = find_dataset(&tx, new.dataset_id).await?;
        let train = put_data(&tx, &BlobData::Bytes(indices_blob(&new.train))).await?;
        let test = put_data(&tx, &BlobData::Bytes(indices_blob(&new.test))).await?;
        if let Some(owner) = &d.owner {
            own(&tx, &train, owner).await?;
            own(&tx, &test, owner).await?;
        }
        let id: SplitId = tx
            .query_one(
                "INSERT INTO splits (dataset_id, ratio, random_state, stratified, train_sha256,
                     test_sha256, train_rows, test_rows, stats, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    &new.dataset_id,
                    &new.held_out_test,
                    &(new.random_state as i64),
                    &new.stratify,
                    &train,
                    &test,
                    &(new.train.len() as i64),
                    &(new.test.len() as i64),
                    &new.stats.to_string(),
                    &now_ms(),
                ],
            )
            .await?
            .get(0);
        let record = find_split(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// As `Store::list_splits`.
    pub async fn list_splits(&self, dataset: DatasetId) -> Result<Vec<SplitRecord>> {
        let c = self.pool.get().await?;
        find_dataset(&*c, dataset).await?;
        let rows = c
            .query(
                &format!("SELECT {SPLIT_COLUMNS} FROM splits WHERE dataset_id = $1 ORDER BY id"),
                &[&dataset],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| split_row(r, false))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// As `Store::split`: a split with its train and test row indices.
    pub async fn split(&self, id: SplitId) -> Result<(SplitRecord, Vec<usize>, Vec<usize>)> {
        let c = self.pool.get().await?;
        let s = find_split(&*c, id).await?;
        let train = read_indices(&*c, &s.train_sha256).await?;
        let test = read_indices(&*c, &s.test_sha256).await?;
        Ok((s, train, test))
    }
}

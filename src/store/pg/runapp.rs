//! The `/runapp/` id maps and adding folds to a submission on PostgreSQL, with the SQLite
//! store's semantics and words (`store::runapp`): the original's client-chosen ids, per owner,
//! mapped onto native submissions and their folds, each added in one fenced transaction.

use super::lease::fence;
use super::submissions::{
    find_sf, find_submission, insert_submission_folds, insert_submission_row,
};
use super::PgStore;
use crate::store::runapp::{runapp_fold_row, sf_id_taken, RUNAPP_FOLD_COLUMNS};
use crate::store::{
    DatasetId, NewSubmissionFold, Result, RunappFold, RunappTarget, SplitId, SubmissionFoldId,
    SubmissionFoldRecord, SubmissionId,
};
use tokio_postgres::GenericClient;

/// `owner`'s fold `sf_id`.
async fn runapp_fold(
    c: &impl GenericClient,
    owner: &str,
    sf_id: i64,
) -> Result<Option<(RunappFold, SubmissionFoldId)>> {
    let sql = format!(
        "SELECT {RUNAPP_FOLD_COLUMNS} FROM runapp_folds WHERE owner = $1 AND databoard_sf_id = $2"
    );
    match c.query_opt(&sql, &[&owner, &sf_id]).await? {
        Some(r) => Ok(Some(runapp_fold_row(&r)?)),
        None => Ok(None),
    }
}

impl PgStore {
    /// As `Store::runapp_set_split`.
    pub async fn runapp_set_split(&self, dataset: DatasetId, split: SplitId) -> Result<()> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        tx.execute(
            "INSERT INTO runapp_rawdata (dataset_id, split_id) VALUES ($1, $2)
             ON CONFLICT (dataset_id) DO UPDATE SET split_id = EXCLUDED.split_id",
            &[&dataset, &split],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// As `Store::runapp_split`.
    pub async fn runapp_split(&self, dataset: DatasetId) -> Result<Option<SplitId>> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT split_id FROM runapp_rawdata WHERE dataset_id = $1",
            &[&dataset],
        )
        .await?
        .and_then(|r| r.get(0)))
    }

    /// As `Store::runapp_submission`.
    pub async fn runapp_submission(
        &self,
        owner: String,
        s_id: i64,
    ) -> Result<Option<SubmissionId>> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT submission_id FROM runapp_submissions WHERE owner = $1 AND databoard_s_id = $2",
            &[&owner, &s_id],
        )
        .await?
        .map(|r| r.get(0)))
    }

    /// As `Store::runapp_add_fold`: a `databoard_sf_id` the owner has used stores nothing.
    pub async fn runapp_add_fold(
        &self,
        owner: String,
        admin: bool,
        target: RunappTarget,
        blobs: Vec<Vec<u8>>,
        fold: NewSubmissionFold,
        meta: RunappFold,
    ) -> Result<SubmissionFoldId> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        if runapp_fold(&tx, &owner, meta.databoard_sf_id)
            .await?
            .is_some()
        {
            return Err(sf_id_taken());
        }
        let (id, fold_owner) = match &target {
            RunappTarget::Existing(id) => (*id, find_submission(&tx, *id).await?.owner),
            RunappTarget::New(new) => {
                let id = insert_submission_row(&tx, new).await?;
                tx.execute(
                    "INSERT INTO runapp_submissions (owner, databoard_s_id, submission_id)
                     VALUES ($1, $2, $3)",
                    &[&owner, &meta.databoard_s_id, &id],
                )
                .await?;
                (id, new.owner.clone())
            }
        };
        let sf = insert_submission_folds(&tx, id, &fold_owner, admin, &blobs, &[fold]).await?[0];
        tx.execute(
            "INSERT INTO runapp_folds (owner, databoard_sf_id, databoard_s_id,
                 submission_fold_id, priority, train_is, test_is)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &owner,
                &meta.databoard_sf_id,
                &meta.databoard_s_id,
                &sf,
                &meta.priority,
                &meta.train_is,
                &meta.test_is,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(sf)
    }

    /// As `Store::add_submission_folds`.
    pub async fn add_submission_folds(
        &self,
        submission: SubmissionId,
        admin: bool,
        blobs: Vec<Vec<u8>>,
        folds: Vec<NewSubmissionFold>,
    ) -> Result<Vec<SubmissionFoldId>> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let owner = find_submission(&tx, submission).await?.owner;
        let ids = insert_submission_folds(&tx, submission, &owner, admin, &blobs, &folds).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// As `Store::runapp_folds`: these databoard ids (unknown ones left out), or all.
    pub async fn runapp_folds(
        &self,
        owner: String,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(RunappFold, SubmissionFoldRecord)>> {
        let c = self.pool.get().await?;
        let ids: Vec<i64> = match ids {
            Some(ids) => ids,
            None => c
                .query(
                    "SELECT databoard_sf_id FROM runapp_folds WHERE owner = $1
                     ORDER BY databoard_sf_id",
                    &[&owner],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some((meta, sf)) = runapp_fold(&*c, &owner, id).await? {
                out.push((meta, find_sf(&*c, sf).await?));
            }
        }
        Ok(out)
    }

    /// As `Store::runapp_meta`.
    pub async fn runapp_meta(&self, sfs: Vec<SubmissionFoldId>) -> Result<Vec<RunappFold>> {
        let c = self.pool.get().await?;
        let sql =
            format!("SELECT {RUNAPP_FOLD_COLUMNS} FROM runapp_folds WHERE submission_fold_id = $1");
        let mut out = Vec::new();
        for sf in sfs {
            if let Some(r) = c.query_opt(&sql, &[&sf]).await? {
                out.push(runapp_fold_row(&r)?.0);
            }
        }
        Ok(out)
    }
}

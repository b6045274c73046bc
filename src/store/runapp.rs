//! The `/runapp/` compatibility layer's ids (migration 7) and "add folds to a submission".
//! The compat layer keeps ONE model: its submissions and folds are native ones; these tables
//! only map the original's client-chosen ids onto them.

use super::datasets::{DatasetId, SplitId};
use super::submissions::{
    find_sf, find_submission, insert_submission_folds, insert_submission_row,
};
use super::{Result, Store, StoreError};
use crate::store::{
    NewSubmission, NewSubmissionFold, SubmissionFoldId, SubmissionFoldRecord, SubmissionId,
};
use rusqlite::{params, Connection, OptionalExtension};

/// What the original's client said about a fold, kept to render it back.
#[derive(Clone, Debug)]
pub struct RunappFold {
    pub databoard_sf_id: i64,
    pub databoard_s_id: i64,
    pub priority: String,
    pub train_is: String,
    pub test_is: String,
}

/// Where a `/runapp/` fold goes: a new submission (the first fold of a `databoard_s_id`), or
/// the existing one.
pub enum RunappTarget {
    New(NewSubmission),
    Existing(SubmissionId),
}

fn runapp_fold(conn: &Connection, sf_id: i64) -> Result<Option<(RunappFold, SubmissionFoldId)>> {
    Ok(conn
        .prepare_cached(
            "SELECT databoard_sf_id, databoard_s_id, priority, train_is, test_is, submission_fold_id
             FROM runapp_folds WHERE databoard_sf_id = ?1",
        )?
        .query_row([sf_id], |r| {
            Ok((
                RunappFold {
                    databoard_sf_id: r.get(0)?,
                    databoard_s_id: r.get(1)?,
                    priority: r.get(2)?,
                    train_is: r.get(3)?,
                    test_is: r.get(4)?,
                },
                r.get(5)?,
            ))
        })
        .optional()?)
}

impl Store {
    /// Records the scikit-learn split of a raw data (replacing an earlier one).
    pub async fn runapp_set_split(&self, dataset: DatasetId, split: SplitId) -> Result<()> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO runapp_rawdata (dataset_id, split_id) VALUES (?1, ?2)
                 ON CONFLICT(dataset_id) DO UPDATE SET split_id = excluded.split_id",
                params![dataset, split],
            )?;
            Ok(())
        })
        .await
    }

    /// The split `rawdata/split/` made for a dataset, if any.
    pub async fn runapp_split(&self, dataset: DatasetId) -> Result<Option<SplitId>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT split_id FROM runapp_rawdata WHERE dataset_id = ?1",
                    [dataset],
                    |r| r.get(0),
                )
                .optional()?
                .flatten())
        })
        .await
    }

    /// The native submission of a databoard submission id.
    pub async fn runapp_submission(&self, s_id: i64) -> Result<Option<SubmissionId>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT submission_id FROM runapp_submissions WHERE databoard_s_id = ?1",
                    [s_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Adds one `/runapp/` fold (and its submission if new) in one transaction. A taken
    /// `databoard_sf_id` is a conflict and stores nothing.
    pub async fn runapp_add_fold(
        &self,
        target: RunappTarget,
        blobs: Vec<Vec<u8>>,
        fold: NewSubmissionFold,
        meta: RunappFold,
    ) -> Result<SubmissionFoldId> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if runapp_fold(&tx, meta.databoard_sf_id)?.is_some() {
                return Err(StoreError::Conflict(
                    "SubmissionFold with this databoard sf id already exists.".into(),
                ));
            }
            let (id, owner) = match &target {
                RunappTarget::Existing(id) => (*id, find_submission(&tx, *id)?.owner),
                RunappTarget::New(new) => {
                    let id = insert_submission_row(&tx, new)?;
                    tx.execute(
                        "INSERT INTO runapp_submissions (databoard_s_id, submission_id) VALUES (?1, ?2)",
                        params![meta.databoard_s_id, id],
                    )?;
                    (id, new.owner.clone())
                }
            };
            let sf = insert_submission_folds(&tx, id, &owner, &blobs, &[fold])?[0];
            tx.execute(
                "INSERT INTO runapp_folds (databoard_sf_id, databoard_s_id, submission_fold_id, priority, train_is, test_is)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![meta.databoard_sf_id, meta.databoard_s_id, sf, meta.priority, meta.train_is, meta.test_is],
            )?;
            tx.commit()?;
            Ok(sf)
        })
        .await
    }

    /// Adds folds to an existing submission (blobs kept by it), in one transaction.
    pub async fn add_submission_folds(
        &self,
        submission: SubmissionId,
        blobs: Vec<Vec<u8>>,
        folds: Vec<NewSubmissionFold>,
    ) -> Result<Vec<SubmissionFoldId>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let owner = find_submission(&tx, submission)?.owner;
            let ids = insert_submission_folds(&tx, submission, &owner, &blobs, &folds)?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// `/runapp/` folds with their native records: these databoard ids (unknown ones left
    /// out), or all of them, by databoard id.
    pub async fn runapp_folds(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(RunappFold, SubmissionFoldRecord)>> {
        self.call(move |conn| {
            let ids: Vec<i64> = match ids {
                Some(ids) => ids,
                None => conn
                    .prepare_cached(
                        "SELECT databoard_sf_id FROM runapp_folds ORDER BY databoard_sf_id",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let mut out = Vec::new();
            for id in ids {
                if let Some((meta, sf)) = runapp_fold(conn, id)? {
                    out.push((meta, find_sf(conn, sf)?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The `/runapp/` metadata of native submission folds (those posted through `/runapp/`).
    pub async fn runapp_meta(&self, sfs: Vec<SubmissionFoldId>) -> Result<Vec<RunappFold>> {
        self.call(move |conn| {
            let mut out = Vec::new();
            for sf in sfs {
                let id: Option<i64> = conn
                    .query_row(
                        "SELECT databoard_sf_id FROM runapp_folds WHERE submission_fold_id = ?1",
                        [sf],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some((meta, _)) = id.map(|id| runapp_fold(conn, id)).transpose()?.flatten() {
                    out.push(meta);
                }
            }
            Ok(out)
        })
        .await
    }
}

//! The `/runapp/` compatibility layer's ids (migration 7; per owner since migration 10) and
//! "add folds to a submission". The compat layer keeps ONE model: its submissions and folds
//! are native ones; these tables only map the original's client-chosen ids onto them. Those
//! ids are chosen by each client (each databoard counts from 1), so each token owner has
//! their own: `owner` is part of every key.

use super::datasets::{DatasetId, SplitId};
use super::row::Cols;
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

pub(super) const RUNAPP_FOLD_COLUMNS: &str =
    "databoard_sf_id, databoard_s_id, priority, train_is, test_is, submission_fold_id";

/// Rows of `RUNAPP_FOLD_COLUMNS` (either engine).
pub(super) fn runapp_fold_row<R: Cols>(
    r: &R,
) -> std::result::Result<(RunappFold, SubmissionFoldId), R::Error> {
    Ok((
        RunappFold {
            databoard_sf_id: r.int(0)?,
            databoard_s_id: r.int(1)?,
            priority: r.text(2)?,
            train_is: r.text(3)?,
            test_is: r.text(4)?,
        },
        r.int(5)?,
    ))
}

/// What adding a `/runapp/` fold under a `databoard_sf_id` its owner used answers (the
/// original's words).
pub(super) fn sf_id_taken() -> StoreError {
    StoreError::Conflict("SubmissionFold with this databoard sf id already exists.".into())
}

/// `owner`'s fold `sf_id`.
fn runapp_fold(
    conn: &Connection,
    owner: &str,
    sf_id: i64,
) -> Result<Option<(RunappFold, SubmissionFoldId)>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {RUNAPP_FOLD_COLUMNS} FROM runapp_folds WHERE owner = ?1 AND databoard_sf_id = ?2"
        ))?
        .query_row(params![owner, sf_id], |r| runapp_fold_row(r))
        .optional()?)
}

impl Store {
    /// Records the scikit-learn split of a raw data (replacing an earlier one).
    pub async fn runapp_set_split(&self, dataset: DatasetId, split: SplitId) -> Result<()> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.runapp_set_split(dataset, split)).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.runapp_split(dataset).await;
        }
        self.read(move |conn| {
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

    /// The native submission of `owner`'s databoard submission id.
    pub async fn runapp_submission(
        &self,
        owner: String,
        s_id: i64,
    ) -> Result<Option<SubmissionId>> {
        if let Some(pg) = self.pg() {
            return pg.runapp_submission(owner, s_id).await;
        }
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT submission_id FROM runapp_submissions WHERE owner = ?1 AND databoard_s_id = ?2",
                    params![owner, s_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Adds one `/runapp/` fold of `owner` (and its submission if new) in one transaction. A
    /// `databoard_sf_id` the owner has used is a conflict and stores nothing. `admin`: an
    /// admin acts (the fold may use any stored blob).
    pub async fn runapp_add_fold(
        &self,
        owner: String,
        admin: bool,
        target: RunappTarget,
        blobs: Vec<Vec<u8>>,
        fold: NewSubmissionFold,
        meta: RunappFold,
    ) -> Result<SubmissionFoldId> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.runapp_add_fold(owner, admin, target, blobs, fold, meta),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if runapp_fold(&tx, &owner, meta.databoard_sf_id)?.is_some() {
                return Err(sf_id_taken());
            }
            let (id, fold_owner) = match &target {
                RunappTarget::Existing(id) => (*id, find_submission(&tx, *id)?.owner),
                RunappTarget::New(new) => {
                    let id = insert_submission_row(&tx, new)?;
                    tx.execute(
                        "INSERT INTO runapp_submissions (owner, databoard_s_id, submission_id) VALUES (?1, ?2, ?3)",
                        params![owner, meta.databoard_s_id, id],
                    )?;
                    (id, new.owner.clone())
                }
            };
            let sf = insert_submission_folds(&tx, id, &fold_owner, admin, &blobs, &[fold])?[0];
            tx.execute(
                "INSERT INTO runapp_folds (owner, databoard_sf_id, databoard_s_id, submission_fold_id, priority, train_is, test_is)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![owner, meta.databoard_sf_id, meta.databoard_s_id, sf, meta.priority, meta.train_is, meta.test_is],
            )?;
            tx.commit()?;
            Ok(sf)
        })
        .await
    }

    /// Adds folds to an existing submission (blobs kept by it), in one transaction. `admin`:
    /// an admin acts (the folds may use any stored blob).
    pub async fn add_submission_folds(
        &self,
        submission: SubmissionId,
        admin: bool,
        blobs: Vec<Vec<u8>>,
        folds: Vec<NewSubmissionFold>,
    ) -> Result<Vec<SubmissionFoldId>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.add_submission_folds(submission, admin, blobs, folds),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let owner = find_submission(&tx, submission)?.owner;
            let ids = insert_submission_folds(&tx, submission, &owner, admin, &blobs, &folds)?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// `owner`'s `/runapp/` folds with their native records: these databoard ids (unknown
    /// ones left out), or all of them, by databoard id.
    pub async fn runapp_folds(
        &self,
        owner: String,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(RunappFold, SubmissionFoldRecord)>> {
        if let Some(pg) = self.pg() {
            return pg.runapp_folds(owner, ids).await;
        }
        self.read_snapshot(move |conn| {
            let ids: Vec<i64> = match ids {
                Some(ids) => ids,
                None => conn
                    .prepare_cached(
                        "SELECT databoard_sf_id FROM runapp_folds WHERE owner = ?1 ORDER BY databoard_sf_id",
                    )?
                    .query_map([&owner], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let mut out = Vec::new();
            for id in ids {
                if let Some((meta, sf)) = runapp_fold(conn, &owner, id)? {
                    out.push((meta, find_sf(conn, sf)?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The `/runapp/` metadata of native submission folds (those posted through `/runapp/`).
    pub async fn runapp_meta(&self, sfs: Vec<SubmissionFoldId>) -> Result<Vec<RunappFold>> {
        if let Some(pg) = self.pg() {
            return pg.runapp_meta(sfs).await;
        }
        self.read_snapshot(move |conn| {
            let mut out = Vec::new();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUNAPP_FOLD_COLUMNS} FROM runapp_folds WHERE submission_fold_id = ?1"
            ))?;
            for sf in sfs {
                if let Some((meta, _)) = stmt.query_row([sf], |r| runapp_fold_row(r)).optional()? {
                    out.push(meta);
                }
            }
            Ok(out)
        })
        .await
    }
}

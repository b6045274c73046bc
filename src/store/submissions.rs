//! Submissions and their folds: created in one transaction with their queue folds (through the
//! queue's one insert path, so scheduling, holds, analyze and remove work unchanged), their
//! results (settled from the queue fold once it stops: `submission_settle.rs`), the "new results" feed (each result
//! handed out once, marked in the same transaction that selects it), reruns and the
//! leaderboard's inputs.

use super::datasets::DatasetId;
use super::folds::{event, get_fold, insert_folds, set_state};
use super::holds::active_attempt_of;
pub use super::submission_records::*;
use super::tenancy::{check, own, Resource};
use super::{blobs, now_ms, CancelTarget, Result, Scope, Store, StoreError};
use crate::model::{FoldState, HoldCode};
use crate::submission::FOLD_JSON;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// The outputs of a run that its result is derived from.
pub(super) const RESULT_OUTPUTS: [&str; 5] = [
    "phases.json",
    "timings.json",
    "labels.json",
    "y_pred_train.npy",
    "y_pred_test.npy",
];

/// What creating a submission on a dataset (and split) that is not there answers.
pub(super) fn no_dataset_for(new: &NewSubmission) -> StoreError {
    StoreError::NotFound(format!(
        "no dataset {} (with split {:?}); it may have just been deleted",
        new.dataset_id, new.split_id
    ))
}

/// What creating a submission under a name its owner used on the dataset (`id`) answers.
pub(super) fn submission_taken(new: &NewSubmission, id: SubmissionId) -> StoreError {
    StoreError::Conflict(format!(
        "{} has a submission named {:?} on dataset {} already (id {id}); resubmit it (POST /submissions/{id}/resubmit) or choose another name",
        new.owner, new.name, new.dataset_id
    ))
}

/// What a resubmit answers when submission fold `id` got a new run meanwhile.
pub(super) fn changed_meanwhile(id: SubmissionFoldId) -> StoreError {
    StoreError::Conflict(format!(
        "submission fold {id} changed meanwhile (another resubmit?); try again"
    ))
}

/// Why a run still queued or running is removed by a new run of submission fold `id`.
pub(super) fn replaced_by(id: SubmissionFoldId, cause: &str, by: &str) -> String {
    format!("replaced by a new run of submission fold {id} ({cause}, by {by})")
}

/// Whether a queue fold in `state` has stopped (its run's outputs are what they will be).
pub(super) fn stopped(state: FoldState) -> bool {
    !matches!(
        state,
        FoldState::Idle | FoldState::Assigned | FoldState::Running
    )
}

pub(super) fn find_submission(conn: &Connection, id: SubmissionId) -> Result<SubmissionRecord> {
    let mut s = conn
        .prepare_cached(&format!(
            "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = ?1"
        ))?
        .query_row([id], |r| submission_from_row(r))
        .optional()?
        .ok_or_else(|| Resource::Submission(id).missing())?;
    s.folds = conn
        .prepare_cached(&format!(
            "SELECT {SF_COLUMNS} FROM submission_folds WHERE submission_id = ?1 ORDER BY fold_index, id"
        ))?
        .query_map([id], |r| sf_from_row(r))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(s)
}

pub(super) fn find_sf(conn: &Connection, id: SubmissionFoldId) -> Result<SubmissionFoldRecord> {
    conn.prepare_cached(&format!(
        "SELECT {SF_COLUMNS} FROM submission_folds WHERE id = ?1"
    ))?
    .query_row([id], |r| sf_from_row(r))
    .optional()?
    .ok_or_else(|| Resource::SubmissionFold(id).missing())
}

pub(super) fn keep_blob(
    tx: &Transaction,
    submission: SubmissionId,
    sha: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO submission_blobs (submission_id, sha256) VALUES (?1, ?2)",
    )?
    .execute(params![submission, sha])?;
    Ok(())
}

fn add_run(
    tx: &Transaction,
    sf: SubmissionFoldId,
    run: i64,
    fold: i64,
    cause: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO submission_fold_runs (submission_fold_id, run, fold_id, cause, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![sf, run, fold, cause, now_ms()])?;
    Ok(())
}

/// Inserts a submission's row (not its folds) inside the caller's transaction; its id.
pub(super) fn insert_submission_row(tx: &Transaction, new: &NewSubmission) -> Result<SubmissionId> {
    tx.execute(
        "INSERT INTO submissions (dataset_id, split_id, name, owner, files, workflow_elements, created_at, stop_on_failure)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            new.dataset_id,
            new.split_id,
            new.name,
            new.owner,
            serde_json::to_string(&new.files).expect("files serialize"),
            serde_json::to_string(&new.workflow_elements).expect("elements serialize"),
            now_ms(),
            new.stop_on_failure
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Stores blobs (kept by the submission, owned by its owner) and new folds of submission `id`
/// with their queue folds, inside the caller's transaction; their ids in order. `admin`: an
/// admin acts (the folds may use any stored blob).
pub(super) fn insert_submission_folds(
    tx: &Transaction,
    id: SubmissionId,
    owner: &str,
    admin: bool,
    blobs: &[Vec<u8>],
    folds: &[NewSubmissionFold],
) -> Result<Vec<SubmissionFoldId>> {
    for data in blobs {
        let sha = blobs::put(tx, data)?;
        keep_blob(tx, id, &sha)?;
        own(tx, &sha, owner)?;
    }
    let specs: Vec<_> = folds
        .iter()
        .map(|f| (f.spec.clone(), f.held.clone()))
        .collect();
    let fold_ids = insert_folds(tx, owner, admin, &specs)?;
    let mut out = Vec::with_capacity(folds.len());
    for (f, fold_id) in folds.iter().zip(fold_ids) {
        tx.prepare_cached(
            "INSERT INTO submission_folds (submission_id, fold_index, client_id, train_sha256,
             test_sha256, train_rows, test_rows, fold_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            id,
            f.fold_index,
            f.client_id,
            f.train_sha256,
            f.test_sha256,
            f.train_rows as i64,
            f.test_rows as i64,
            fold_id
        ])?;
        let sf = tx.last_insert_rowid();
        add_run(tx, sf, 1, fold_id, "submitted")?;
        out.push(sf);
    }
    Ok(out)
}

impl Store {
    /// Stores a submission, its blobs, its folds and their queue folds in one transaction.
    pub async fn create_submission(&self, new: NewSubmission) -> Result<SubmissionRecord> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, pg.create_submission(new)).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let split_ok: bool = match new.split_id {
                None => tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM datasets WHERE id = ?1)",
                    [new.dataset_id],
                    |r| r.get(0),
                )?,
                Some(split) => tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM splits WHERE id = ?1 AND dataset_id = ?2)",
                    params![split, new.dataset_id],
                    |r| r.get(0),
                )?,
            };
            if !split_ok {
                return Err(no_dataset_for(&new));
            }
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT id FROM submissions WHERE dataset_id = ?1 AND owner = ?2 AND name = ?3",
                    params![new.dataset_id, new.owner, new.name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = taken {
                return Err(submission_taken(&new, id));
            }
            let id = insert_submission_row(&tx, &new)?;
            insert_submission_folds(&tx, id, &new.owner, new.by_admin, &new.blobs, &new.folds)?;
            let record = find_submission(&tx, id)?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// The submissions `scope` sees (of one dataset, when given) with an id over `after`,
    /// oldest first, with their folds: at most `limit`, and the id to go on after when there
    /// are more.
    pub async fn list_submissions(
        &self,
        scope: &Scope,
        dataset: Option<DatasetId>,
        after: Option<SubmissionId>,
        limit: u32,
    ) -> Result<(Vec<SubmissionRecord>, Option<SubmissionId>)> {
        if let Some(pg) = self.pg() {
            return pg.list_submissions(scope, dataset, after, limit).await;
        }
        let owner = scope.owner().map(str::to_string);
        let visible = scope.sql("owner", 4);
        self.read_snapshot(move |conn| {
            let mut ids = conn
                .prepare_cached(&format!(
                    "SELECT id FROM submissions WHERE (?1 IS NULL OR dataset_id = ?1) AND id > ?2
                     AND {visible} ORDER BY id LIMIT ?3"
                ))?
                .query_map(
                    params![dataset, after.unwrap_or(0), i64::from(limit) + 1, owner],
                    |r| r.get::<_, SubmissionId>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = super::listing::cut(&mut ids, Some(limit), |id| *id);
            let subs = ids
                .into_iter()
                .map(|id| find_submission(conn, id))
                .collect::<Result<Vec<_>>>()?;
            Ok((subs, next))
        })
        .await
    }

    pub async fn submission(&self, id: SubmissionId) -> Result<SubmissionRecord> {
        if let Some(pg) = self.pg() {
            return pg.submission(id).await;
        }
        self.read_snapshot(move |conn| find_submission(conn, id))
            .await
    }

    /// A submission fold, its submission (without folds) and its runs (run, fold id, cause).
    pub async fn submission_fold(
        &self,
        id: SubmissionFoldId,
    ) -> Result<(
        SubmissionFoldRecord,
        SubmissionRecord,
        Vec<(i64, i64, String)>,
    )> {
        if let Some(pg) = self.pg() {
            return pg.submission_fold(id).await;
        }
        self.read_snapshot(move |conn| {
            let sf = find_sf(conn, id)?;
            let mut s = find_submission(conn, sf.submission_id)?;
            s.folds.clear();
            let runs = conn
                .prepare_cached("SELECT run, fold_id, cause FROM submission_fold_runs WHERE submission_fold_id = ?1 ORDER BY run")?
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((sf, s, runs))
        })
        .await
    }

    /// The "new results" feed of `owner`'s submissions: every ended submission fold whose
    /// current result has not been handed out, marked handed out in the same transaction (so
    /// concurrent callers never get the same one), oldest result first. `runapp_only`: only
    /// the folds posted through `/runapp/` (one delivery mark: a result handed out by either
    /// feed is not handed out again). Always one owner's, admins' too: taking a result from
    /// the feed consumes it, so nobody takes another's.
    pub async fn take_new_results(
        &self,
        owner: String,
        dataset: Option<DatasetId>,
        limit: u32,
        runapp_only: bool,
    ) -> Result<Vec<SubmissionFoldRecord>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.take_new_results(owner, dataset, limit, runapp_only),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids: Vec<SubmissionFoldId> = tx
                .prepare_cached(
                    "UPDATE submission_folds SET delivered_key = settled_key, delivered_at = ?1
                     WHERE id IN (SELECT sf.id FROM submission_folds sf JOIN submissions s ON s.id = sf.submission_id
                         WHERE sf.state IN ('VALIDATED', 'TESTED', 'ERROR') AND sf.settled_key IS NOT NULL
                         AND sf.delivered_key IS NOT sf.settled_key AND (?2 IS NULL OR s.dataset_id = ?2)
                         AND (?4 = 0 OR sf.id IN (SELECT submission_fold_id FROM runapp_folds))
                         AND s.owner = ?5
                         ORDER BY sf.result_seq LIMIT ?3)
                     RETURNING id",
                )?
                .query_map(params![now_ms(), dataset, limit, runapp_only, owner], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = ids.iter().map(|id| find_sf(&tx, *id)).collect::<Result<Vec<_>>>()?;
            out.sort_by_key(|r| r.result_seq);
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Submission folds by id (unknown ids, and those `scope` does not see, are left out);
    /// delivery does not change.
    pub async fn submission_folds(
        &self,
        scope: &Scope,
        ids: Vec<SubmissionFoldId>,
    ) -> Result<Vec<SubmissionFoldRecord>> {
        if let Some(pg) = self.pg() {
            return pg.submission_folds(scope, ids).await;
        }
        let scope = scope.clone();
        self.read_snapshot(move |conn| {
            let mut out = Vec::new();
            for id in ids {
                match check(conn, &scope, Resource::SubmissionFold(id))
                    .and_then(|_| find_sf(conn, id))
                {
                    Ok(r) => out.push(r),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    /// Starts new runs of submission folds in one transaction: a current run still queued or
    /// running is removed (its attempt returned for the master to kill), the new queue fold
    /// becomes current, the old stays in the history. `files`, when given, replace the
    /// submission's files. All or nothing. `admin`: an admin acts (the new folds may use any
    /// stored blob).
    pub async fn rerun_submission_folds(
        &self,
        submission: SubmissionId,
        by: String,
        admin: bool,
        cause: String,
        reruns: Vec<Rerun>,
        files: Option<NewFiles>,
    ) -> Result<Vec<CancelTarget>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                pg.rerun_submission_folds(submission, by, admin, cause, reruns, files),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let s = find_submission(&tx, submission)?;
            if let Some((files, data)) = &files {
                for d in data {
                    let sha = blobs::put(&tx, d)?;
                    keep_blob(&tx, submission, &sha)?;
                    own(&tx, &sha, &s.owner)?;
                }
                tx.execute(
                    "UPDATE submissions SET files = ?1 WHERE id = ?2",
                    params![serde_json::to_string(files).expect("files serialize"), submission],
                )?;
            }
            let mut cancels = Vec::new();
            for r in &reruns {
                let sf = find_sf(&tx, r.id)?;
                if sf.submission_id != submission || sf.fold_id != r.replaces {
                    return Err(changed_meanwhile(r.id));
                }
                let old = get_fold(&tx, sf.fold_id)?;
                if !old.state.is_final() {
                    if let Some(c) = active_attempt_of(&tx, old.id)? {
                        cancels.push(c);
                    }
                    let why = replaced_by(r.id, &cause, &by);
                    set_state(&tx, old.id, FoldState::Removed, Some(&why), None)?;
                    event(&tx, Some(old.id), None, "removed", &why)?;
                }
                let held: Vec<(crate::model::FoldSpec, Option<(HoldCode, String)>)> = vec![(r.spec.clone(), r.held.clone())];
                let new_fold = insert_folds(&tx, &s.owner, admin, &held)?[0];
                tx.prepare_cached(
                    "UPDATE submission_folds SET fold_id = ?1, runs = runs + 1, state = 'TODO', reason = NULL,
                     traceback = NULL, phases = NULL, timings = NULL, metrics = NULL, scores = NULL,
                     predictions = NULL, settled_key = NULL, ended_at = NULL, result_seq = NULL WHERE id = ?2",
                )?
                .execute(params![new_fold, r.id])?;
                add_run(&tx, r.id, sf.runs + 1, new_fold, &cause)?;
            }
            tx.commit()?;
            Ok(cancels)
        })
        .await
    }

    /// Per submission on a dataset, the scores of its folds that ended TESTED or VALIDATED.
    pub async fn leaderboard_inputs(&self, dataset: DatasetId) -> Result<Vec<LeaderboardInput>> {
        if let Some(pg) = self.pg() {
            return pg.leaderboard_inputs(dataset).await;
        }
        self.read_snapshot(move |conn| {
            let subs: Vec<(i64, String, String)> = conn
                .prepare_cached("SELECT id, name, owner FROM submissions WHERE dataset_id = ?1 ORDER BY id")?
                .query_map([dataset], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(subs.len());
            for (id, name, owner) in subs {
                let scores = conn
                    .prepare_cached("SELECT scores FROM submission_folds WHERE submission_id = ?1 AND state IN ('TESTED', 'VALIDATED') ORDER BY fold_index")?
                    .query_map([id], |r| r.get::<_, Option<String>>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .map(|t| t.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
                    .collect();
                out.push(LeaderboardInput { submission_id: id, name, owner, scores });
            }
            Ok(out)
        })
        .await
    }

    /// The fold.json of a submission fold's current run (its indices, as the image reads them).
    pub async fn submission_fold_json(&self, id: SubmissionFoldId) -> Result<Vec<u8>> {
        if let Some(pg) = self.pg() {
            return pg.submission_fold_json(id).await;
        }
        self.read_snapshot(move |conn| {
            let sf = find_sf(conn, id)?;
            let sha: String = conn.query_row(
                "SELECT sha256 FROM fold_inputs WHERE fold_id = ?1 AND name = ?2",
                params![sf.fold_id, FOLD_JSON],
                |r| r.get(0),
            )?;
            Ok(blobs::get(conn, &sha)?.unwrap_or_default())
        })
        .await
    }
}

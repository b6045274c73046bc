//! What the store hands out about submissions, and how rows become it.

use super::datasets::{DatasetId, SplitId};
use super::records::FoldRecord;
use super::row::Cols;
use crate::model::{FoldId, FoldSpec, HoldCode};
use crate::submission::Phase;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub type SubmissionId = i64;
pub type SubmissionFoldId = i64;

#[derive(Clone, Debug, Serialize)]
pub struct SubmissionRecord {
    pub id: SubmissionId,
    pub dataset_id: DatasetId,
    pub split_id: Option<SplitId>,
    pub name: String,
    pub owner: String,
    /// File name → blob sha256.
    pub files: BTreeMap<String, String>,
    pub workflow_elements: Vec<String>,
    pub created_at: i64,
    /// A fold failing with its own error removes the submission's idle and waiting folds.
    pub stop_on_failure: bool,
    pub folds: Vec<SubmissionFoldRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubmissionFoldRecord {
    pub id: SubmissionFoldId,
    pub submission_id: SubmissionId,
    pub fold_index: i64,
    pub client_id: Option<String>,
    pub train_rows: u64,
    pub test_rows: u64,
    pub train_sha256: String,
    pub test_sha256: String,
    /// The queue fold of the current run, and how many runs there have been.
    pub fold_id: FoldId,
    pub runs: i64,
    pub state: Phase,
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// Phases `datarun-fold` reached, per-phase wall and CPU seconds, the whole fold's
    /// measurements (wall_ms, cpu_ms, peak_memory), scores per phase, predictions (name,
    /// sha256, dtype, shape per phase).
    pub phases: Value,
    pub timings: Value,
    pub metrics: Value,
    pub scores: Value,
    pub predictions: Value,
    pub ended_at: Option<i64>,
    /// Orders results in the feed.
    pub result_seq: Option<i64>,
    /// The current result has been handed out by the "new results" feed.
    pub delivered: bool,
    /// While its queue fold runs: the phase it reports live (TRAINED, VALIDATED); never
    /// stored (the API fills it in, `api::results::live_phase`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Phase>,
}

/// The columns of a submission fold but whether its result was handed out (`delivered`,
/// which each engine says in its own words: `SF_COLUMNS`, `PG_SF_COLUMNS`).
macro_rules! sf_base_columns {
    () => {
        "id, submission_id, fold_index, client_id, train_rows, test_rows, train_sha256, \
         test_sha256, fold_id, runs, state, reason, traceback, phases, timings, metrics, scores, \
         predictions, ended_at, result_seq"
    };
}
pub(super) const SF_COLUMNS: &str = concat!(
    sf_base_columns!(),
    ", (settled_key IS NOT NULL AND delivered_key IS settled_key)"
);
pub(super) const PG_SF_COLUMNS: &str = concat!(
    sf_base_columns!(),
    ", (settled_key IS NOT NULL AND delivered_key IS NOT DISTINCT FROM settled_key)"
);

fn json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Rows of `SF_COLUMNS` (either engine).
pub(super) fn sf_from_row<R: Cols>(r: &R) -> Result<SubmissionFoldRecord, R::Error> {
    let state: String = r.text(10)?;
    Ok(SubmissionFoldRecord {
        id: r.int(0)?,
        submission_id: r.int(1)?,
        fold_index: r.int(2)?,
        client_id: r.opt_text(3)?,
        train_rows: r.int(4)? as u64,
        test_rows: r.int(5)? as u64,
        train_sha256: r.text(6)?,
        test_sha256: r.text(7)?,
        fold_id: r.int(8)?,
        runs: r.int(9)?,
        state: Phase::parse(&state).unwrap_or(Phase::Error),
        reason: r.opt_text(11)?,
        traceback: r.opt_text(12)?,
        phases: json(r.opt_text(13)?),
        timings: json(r.opt_text(14)?),
        metrics: json(r.opt_text(15)?),
        scores: json(r.opt_text(16)?),
        predictions: json(r.opt_text(17)?),
        ended_at: r.opt_int(18)?,
        result_seq: r.opt_int(19)?,
        delivered: r.flag(20)?,
        live: None,
    })
}

pub(super) const SUBMISSION_COLUMNS: &str =
    "id, dataset_id, split_id, name, owner, files, workflow_elements, created_at, stop_on_failure";

/// Rows of `SUBMISSION_COLUMNS` (either engine), without their folds.
pub(super) fn submission_from_row<R: Cols>(r: &R) -> Result<SubmissionRecord, R::Error> {
    Ok(SubmissionRecord {
        id: r.int(0)?,
        dataset_id: r.int(1)?,
        split_id: r.opt_int(2)?,
        name: r.text(3)?,
        owner: r.text(4)?,
        files: serde_json::from_str(&r.text(5)?).unwrap_or_default(),
        workflow_elements: serde_json::from_str(&r.text(6)?).unwrap_or_default(),
        created_at: r.int(7)?,
        stop_on_failure: r.flag(8)?,
        folds: Vec::new(),
    })
}

/// A submission to store: checked and built by the caller (the API).
pub struct NewSubmission {
    pub dataset_id: DatasetId,
    pub split_id: Option<SplitId>,
    pub name: String,
    pub owner: String,
    /// An admin token makes it: its folds may use any stored blob, not only the owner's.
    pub by_admin: bool,
    pub files: BTreeMap<String, String>,
    pub workflow_elements: Vec<String>,
    /// Every blob its folds need (tables, files, fold.json, indices); stored once each.
    pub blobs: Vec<Vec<u8>>,
    pub folds: Vec<NewSubmissionFold>,
    /// A fold failing with its own error removes the others not started, saying why.
    pub stop_on_failure: bool,
}

pub struct NewSubmissionFold {
    pub fold_index: i64,
    pub client_id: Option<String>,
    pub train_sha256: String,
    pub test_sha256: String,
    pub train_rows: u64,
    pub test_rows: u64,
    /// The queue fold to run, and its hold if no runner could ever run it.
    pub spec: FoldSpec,
    pub held: Option<(HoldCode, String)>,
}

/// New files of a submission: name → sha256, and their contents.
pub type NewFiles = (BTreeMap<String, String>, Vec<Vec<u8>>);

/// A new run of an existing submission fold (resubmit).
pub struct Rerun {
    pub id: SubmissionFoldId,
    /// The run it replaces must still be current (else someone else resubmitted meanwhile).
    pub replaces: FoldId,
    pub spec: FoldSpec,
    pub held: Option<(HoldCode, String)>,
}

/// Which submission folds a settling pass looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleScope {
    /// Every one: a scan, for the catch-up when the workflow task starts.
    All,
    /// Those whose queue fold last changed (`folds.seq`, its newest event's id) in
    /// `(after, upto]`.
    Changed { after: i64, upto: i64 },
}

/// A submission fold whose queue fold changed since its result was last derived.
pub struct SettleInput {
    pub id: SubmissionFoldId,
    pub key: String,
    pub fold: FoldRecord,
    pub dataset_id: DatasetId,
    pub split_id: Option<SplitId>,
    pub train_is: Vec<usize>,
    pub test_is: Vec<usize>,
    /// The run's outputs that matter (only once the fold has stopped): name → (sha256, data).
    pub outputs: BTreeMap<String, (String, Vec<u8>)>,
    pub log: Vec<u8>,
}

impl SettleInput {
    /// A batch of inputs to settle stops growing once it holds this many bytes of outputs,
    /// logs and indices (it holds at least one): each prediction file may be as large as
    /// `serve --output-limit`, and a page of 200 folds could otherwise hold gigabytes.
    pub const BATCH_BYTES: usize = 256 << 20;

    /// The bytes this input holds (outputs, log, indices).
    pub fn bytes(&self) -> usize {
        let outputs: usize = self.outputs.values().map(|(_, d)| d.len()).sum();
        let indices = (self.train_is.len() + self.test_is.len()) * std::mem::size_of::<usize>();
        outputs + self.log.len() + indices
    }
}

/// The result derived from a run.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    pub state: Option<Phase>,
    pub reason: Option<String>,
    pub traceback: Option<String>,
    pub phases: Value,
    pub timings: Value,
    pub metrics: Value,
    pub scores: Value,
    pub predictions: Value,
    /// Blobs the result refers to (predictions), kept from purges.
    pub keep: Vec<String>,
}

/// A submission's ended folds' scores, for the leaderboard.
pub struct LeaderboardInput {
    pub submission_id: SubmissionId,
    pub name: String,
    pub owner: String,
    pub scores: Vec<Value>,
}

//! Custom splits of problem datasets: a split is `running` until its `datarun-prepare` queue
//! fold stops, then `done` with its files and targets (`truth.json`) or `failed` with why
//! (what `datarun-prepare` said and the script's traceback). Recorded once: only a split still
//! `running` changes.

use super::{blocking, Result, WorkflowError};
use crate::dataset::problem::{self, TRUTH_JSON};
use crate::model::FoldState;
use crate::store::{CustomSplitEnd, CustomSplitInput, SplitRecord, Store};
use crate::submission::result;
use serde_json::json;

/// How a custom split's fold ended: its files and targets, or why it failed.
fn derive(i: &CustomSplitInput) -> CustomSplitEnd {
    let log = String::from_utf8_lossy(&i.log);
    let failed = |why: String| {
        // What datarun-prepare said (which function of the script failed or is missing),
        // then the script's traceback.
        let mut reason = why;
        for line in log.lines().filter(|l| l.starts_with("datarun-prepare: ")) {
            reason.push('\n');
            reason.push_str(line);
        }
        if let Some(t) = result::traceback(&log) {
            reason.push('\n');
            reason.push_str(&t);
        }
        CustomSplitEnd::Failed { reason }
    };
    if i.fold.state != FoldState::Done {
        let why =
            i.fold.reason.clone().unwrap_or_else(|| {
                format!("the prepare fold {} ended {:?}", i.fold.id, i.fold.state)
            });
        return failed(format!("prepare_data did not finish: {why}"));
    }
    let Some(data) = &i.truth else {
        return failed(format!("the prepare fold wrote no {TRUTH_JSON}"));
    };
    let truth = match problem::parse_truth(data) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let files = problem::split_files(&i.outputs);
    let truth_sha256 = i.outputs[TRUTH_JSON].0.clone();
    let stats = json!({
        "train_rows": truth.y_train.len(),
        "test_rows": truth.y_test.len(),
        "files": files.keys().collect::<Vec<_>>(),
        "labels": truth.labels,
    });
    CustomSplitEnd::Done {
        files,
        truth_sha256,
        n_train: truth.y_train.len() as u64,
        n_test: truth.y_test.len() as u64,
        stats,
    }
}

/// Records the outcome of every custom split whose fold stopped and is not recorded yet.
pub async fn settle_splits(store: &Store) -> Result<()> {
    for input in store.unsettled_custom_splits().await? {
        let end = blocking(move || (input.split, derive(&input))).await?;
        store.finish_custom_split(end.0, end.1).await?;
    }
    Ok(())
}

/// A split a submission can use: done. A failed one is refused (400), a running one is not
/// ready (409) with its fold's state.
pub async fn usable_split(store: &Store, split: &SplitRecord) -> Result<()> {
    match split.state.as_str() {
        "done" => Ok(()),
        "failed" => Err(WorkflowError::Invalid(format!(
            "split {} failed: {}",
            split.id,
            split.reason.as_deref().unwrap_or("no reason recorded")
        ))),
        _ => {
            let why = match store.custom_split_fold(split.id).await? {
                Some(f) => format!(
                    "its fold {} is {}{}",
                    f.id,
                    f.state.as_str(),
                    f.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
                None => "it is not done".into(),
            };
            Err(WorkflowError::NotReady(format!(
                "split {} is still running the problem script's prepare_data: {why}; submit when GET /api/v1/splits/{} says done",
                split.id, split.id
            )))
        }
    }
}

/// The targets of a done custom split.
pub async fn split_truth(store: &Store, split: &SplitRecord) -> Result<problem::Truth> {
    let sha = split.truth_sha256.clone().ok_or_else(|| {
        WorkflowError::Internal(format!("split {} has no targets recorded", split.id))
    })?;
    let data = store.get_blob(sha).await?;
    blocking(move || problem::parse_truth(&data))
        .await?
        .map_err(WorkflowError::Internal)
}

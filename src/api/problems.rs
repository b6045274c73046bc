//! Problem datasets (several files with a problem script) and their custom splits, shared by
//! the native API and `/runapp/`. A custom split is the script's `prepare_data` run as a queue
//! fold of the fold image (`datarun-prepare`), so it gets the queue's limits, isolation and
//! "why pending" like any fold; the workflow task records its outcome when that fold stops
//! (`workflow::settle_splits`).

use super::shared::{blocking, held, MAX_FILES};
use super::{ApiError, ApiState};
use crate::dataset::problem::{self, DATA_DIR, PREPARE_COMMAND, PREPARE_JSON};
use crate::dataset::{self, ScoreType};
use crate::model::{check_file_name, FoldSpec, InputRef, Priority};
use crate::store::{sha256_hex, DatasetRecord, NewProblemDataset, Principal, SplitRecord};
use crate::workflow::image_fold;
use serde_json::json;
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

/// What a problem dataset is made of; names and elements are checked by the caller.
pub(super) struct ProblemDataset {
    pub owner: String,
    pub name: String,
    pub target_column: String,
    pub workflow_elements: Vec<String>,
    pub score_types: Vec<String>,
    /// The script's name, when the caller names it (else the only `.py` file).
    pub problem: Option<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Checks and stores a problem dataset. Its CSV files, when they parse, get statistics.
pub(super) async fn create_dataset(s: &ApiState, p: ProblemDataset) -> ApiResult<DatasetRecord> {
    if p.files.len() > MAX_FILES {
        return Err(ApiError::bad_request(format!("files: at most {MAX_FILES}")));
    }
    for name in p.files.keys() {
        check_file_name(name).map_err(|e| ApiError::bad_request(format!("files: {e}")))?;
    }
    let script = problem::pick_script(p.files.keys(), p.problem.as_deref())
        .map_err(ApiError::bad_request)?;
    let mut score_types = Vec::new();
    for n in &p.score_types {
        let kind =
            ScoreType::parse(n).map_err(|e| ApiError::bad_request(format!("score_types: {e}")))?;
        if !score_types.iter().any(|k: &String| k == kind.name()) {
            score_types.push(kind.name().to_string());
        }
    }
    let files = p.files;
    let (files, stats) = blocking(move || {
        let mut per_file = serde_json::Map::new();
        for (name, data) in files.iter().filter(|(n, _)| n.ends_with(".csv")) {
            if let Ok(table) = dataset::parse(data) {
                per_file.insert(name.clone(), json!(dataset::table_stats(&table)));
            }
        }
        (files, json!({ "files": per_file }))
    })
    .await?;
    Ok(s.store
        .create_problem_dataset(NewProblemDataset {
            owner: p.owner,
            name: p.name,
            target_column: p.target_column,
            workflow_elements: p.workflow_elements,
            score_types,
            problem: script,
            files,
            stats,
        })
        .await?)
}

/// Starts a custom split of a problem dataset: a queue fold running `datarun-prepare` on the
/// dataset's files. It answers at once; the split is `running` until that fold stops.
pub(super) async fn start_custom_split(
    s: &ApiState,
    who: &Principal,
    d: &DatasetRecord,
    priority: Priority,
) -> ApiResult<SplitRecord> {
    let Some(script) = &d.problem else {
        return Err(ApiError::bad_request(format!(
            "dataset {} is one CSV table without a problem script; split it by ratio (held_out_test, random_state) instead",
            d.id
        )));
    };
    let prepare = serde_json::to_vec(&json!({ "data_dir": DATA_DIR, "problem": script }))
        .expect("prepare.json serializes");
    let mut inputs: Vec<InputRef> = d
        .files
        .iter()
        .map(|(name, sha)| InputRef {
            name: format!("{DATA_DIR}/{name}"),
            sha256: sha.clone(),
        })
        .collect();
    inputs.push(InputRef {
        name: PREPARE_JSON.into(),
        sha256: sha256_hex(&prepare),
    });
    let spec = FoldSpec {
        inputs,
        ..image_fold(PREPARE_COMMAND, priority)
    };
    spec.validate()?;
    let hold = held(s, &who.name, &spec);
    let split = s
        .store
        .create_custom_split(d.id, who.name.clone(), who.admin, spec, hold, vec![prepare])
        .await?;
    s.master.wake();
    Ok(split)
}

/// A problem dataset refuses ratio splits: its data is what its script says it is.
pub(super) fn refuse_held_out(d: &DatasetRecord) -> ApiResult<()> {
    if d.problem.is_some() {
        return Err(ApiError::bad_request(format!(
            "dataset {} has a problem script ({}); its split is the script's prepare_data: POST {{\"custom\": true}} to /api/v1/datasets/{}/splits",
            d.id,
            d.problem.as_deref().unwrap_or_default(),
            d.id
        )));
    }
    Ok(())
}

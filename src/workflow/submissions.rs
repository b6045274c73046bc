//! Results of submission folds, derived from their queue folds once those stop: the phase,
//! reason and traceback from the fold's state, `phases.json` and log; predictions and scores
//! from the `.npy` outputs against the dataset's truth (a CSV dataset's target column, a
//! problem dataset's split targets). Recorded by the store only while the queue fold is still
//! at the run-end it came from, so concurrent settles record it once.

use super::{blocking, Result, WorkflowError};
use crate::dataset::{self, ScoreType};
use crate::store::{DatasetId, SettleInput, SettleScope, Settled, Store};
use crate::submission::npy;
use crate::submission::result::{self, RunView};
use crate::submission::Phase;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What scoring a dataset's folds needs: score types and the truth of the training and test
/// tables (the target column as text).
struct Truth {
    kinds: Vec<ScoreType>,
    train: Vec<Option<String>>,
    test: Option<Vec<Option<String>>>,
}

async fn truth(store: &Store, dataset: DatasetId, split: Option<i64>) -> Result<Truth> {
    let d = store.dataset(dataset).await?;
    let kinds: Vec<ScoreType> = d
        .score_types
        .iter()
        .filter_map(|n| ScoreType::parse(n).ok())
        .collect();
    if d.problem.is_some() {
        // A problem dataset's targets are what its script's get_*_data returned in the
        // prepare fold (`truth.json` of the custom split).
        let id = split.ok_or_else(|| {
            WorkflowError::Internal("a problem dataset's submission has no split".into())
        })?;
        let (record, _, _) = store.split(id).await?;
        let t = super::split_truth(store, &record).await?;
        return Ok(Truth {
            kinds,
            train: t.y_train,
            test: Some(t.y_test),
        });
    }
    let table = store.dataset_table(dataset).await?;
    let rows = match split {
        Some(id) => {
            let (_, train, test) = store.split(id).await?;
            Some((train, test))
        }
        None => None,
    };
    let target = d.target_column.clone();
    blocking(move || {
        let t = dataset::parse(&table).map_err(|e| format!("the stored table: {e}"))?;
        let col = t.column(&target).ok_or("the target column is missing")?;
        let all: Vec<Option<String>> = (0..t.rows).map(|r| col.text(r)).collect();
        let pick = |idx: &[usize]| idx.iter().map(|&i| all[i].clone()).collect::<Vec<_>>();
        Ok::<_, String>(match &rows {
            None => Truth {
                kinds,
                train: all.clone(),
                test: None,
            },
            Some((train, test)) => Truth {
                kinds,
                train: pick(train),
                test: Some(pick(test)),
            },
        })
    })
    .await?
    .map_err(WorkflowError::Internal)
}

fn output_json(input: &SettleInput, name: &str) -> Value {
    input
        .outputs
        .get(name)
        .and_then(|(_, d)| serde_json::from_slice(d).ok())
        .unwrap_or(Value::Null)
}

/// The result of one run, from its queue fold, outputs and log.
fn derive(input: &SettleInput, truth: Option<&Truth>) -> Settled {
    let phases: Vec<String> =
        serde_json::from_value(output_json(input, "phases.json")).unwrap_or_default();
    let log = String::from_utf8_lossy(&input.log);
    let has_test = input.split_id.is_some();
    let v = result::verdict(&RunView {
        state: input.fold.state,
        reason: input.fold.reason.as_deref(),
        hold_code: input.fold.hold_code,
        outcome: input.fold.outcome.as_ref(),
        phases: &phases,
        has_test_table: has_test,
        log: &log,
    });
    let mut out = Settled {
        state: Some(v.phase),
        reason: v.reason,
        traceback: v.traceback,
        phases: json!(phases),
        timings: output_json(input, "timings.json"),
        metrics: json!(input.fold.metrics),
        ..Settled::default()
    };
    if v.phase == Phase::Todo {
        return out;
    }
    let labels = result::label_texts(&output_json(input, "labels.json"));
    let mut predictions = serde_json::Map::new();
    let mut scores = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    for (phase, name) in [("train", "y_pred_train.npy"), ("test", "y_pred_test.npy")] {
        let Some((sha, data)) = input.outputs.get(name) else {
            continue;
        };
        let array = match npy::parse(data) {
            Ok(a) => a,
            Err(e) => {
                errors.insert(phase.into(), json!(format!("{name}: {e}")));
                continue;
            }
        };
        predictions.insert(
            phase.into(),
            json!({"name": name, "sha256": sha, "dtype": array.dtype, "shape": array.shape}),
        );
        out.keep.push(sha.clone());
        let Some(t) = truth.filter(|_| v.phase.is_ended() && v.phase != Phase::Error) else {
            continue;
        };
        let mut score = |label: &str, rows: Option<&[usize]>, truth: Vec<Option<String>>| {
            let (ok, bad) = result::scores(&t.kinds, &array, rows, &truth, labels.as_deref());
            scores.insert(label.into(), json!(ok));
            if !bad.is_empty() {
                errors.insert(label.into(), json!(bad));
            }
        };
        let at = |idx: &[usize]| {
            idx.iter()
                .map(|&i| t.train.get(i).cloned().flatten())
                .collect()
        };
        match (phase, &t.test) {
            ("train", _) => {
                score("train", Some(&input.train_is), at(&input.train_is));
                score("valid", Some(&input.test_is), at(&input.test_is));
            }
            ("test", Some(test)) => score("test", None, test.clone()),
            _ => {}
        }
    }
    if !errors.is_empty() {
        scores.insert("errors".into(), Value::Object(errors));
    }
    out.predictions = Value::Object(predictions);
    out.scores = Value::Object(scores);
    out
}

/// Derives and records the results of every submission fold in `scope` whose queue fold
/// changed, up to 100 pages of 200 (a page also ends once it holds
/// [`SettleInput::BATCH_BYTES`](crate::store::SettleInput::BATCH_BYTES) of outputs); `true`
/// when it stopped with more left (the caller runs it again).
pub async fn settle_submissions(store: &Store, scope: SettleScope) -> Result<bool> {
    for _ in 0..100 {
        let inputs = store.unsettled_submission_folds_in(scope, 200).await?;
        if inputs.is_empty() {
            return Ok(false);
        }
        let mut truths: BTreeMap<(DatasetId, Option<i64>), Truth> = BTreeMap::new();
        for i in &inputs {
            let key = (i.dataset_id, i.split_id);
            if i.fold.state == crate::model::FoldState::Done && !truths.contains_key(&key) {
                // Without the truth the fold still gets its state, just no scores: one bad
                // table must not stop the others' settling.
                match truth(store, i.dataset_id, i.split_id).await {
                    Ok(t) => {
                        truths.insert(key, t);
                    }
                    Err(e) => tracing::warn!(
                        "dataset {} (split {:?}): cannot score: {}",
                        i.dataset_id,
                        i.split_id,
                        e
                    ),
                }
            }
        }
        let results = blocking(move || {
            inputs
                .iter()
                .map(|i| {
                    (
                        i.id,
                        i.key.clone(),
                        derive(i, truths.get(&(i.dataset_id, i.split_id))),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await?;
        if store.settle_submission_folds(results).await? == 0 {
            // Their queue folds moved on meanwhile (or a sweep recorded them): read again.
            tokio::task::yield_now().await;
        }
    }
    Ok(true)
}

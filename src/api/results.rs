//! Results of submission folds: derived from their queue folds once those stop (`settle`,
//! run before every read, idempotent), the "new results" feed, fetch by ids, predictions and
//! the leaderboard.
//!
//! Why on read and not in the master: the queue fold's state is the source of truth and is
//! written by many paths (results, holds, removes, lost runners); deriving from it after the
//! fact covers them all without touching the master loop, and the CPU work (parsing `.npy`
//! files and the dataset's table, scoring) stays off the store's single thread. The store
//! records a derived result only if the queue fold is still at the run-end it came from, so
//! concurrent readers record it once.

use super::datasets::blocking;
use super::{visible, ApiError, ApiState};
use crate::dataset::{self, ScoreType};
use crate::model::limits::MAX_IDS;
use crate::store::{
    DatasetId, Principal, Resource, SettleInput, Settled, SubmissionFoldId, SubmissionFoldRecord,
};
use crate::submission::leaderboard::{self, Entry};
use crate::submission::result::{self, RunView};
use crate::submission::{npy, Phase};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

/// What scoring a dataset's folds needs: score types and the truth of the training and test
/// tables (the target column as text).
struct Truth {
    kinds: Vec<ScoreType>,
    train: Vec<Option<String>>,
    test: Option<Vec<Option<String>>>,
}

async fn truth(s: &ApiState, dataset: DatasetId, split: Option<i64>) -> ApiResult<Truth> {
    let d = s.store.dataset(dataset).await?;
    let kinds: Vec<ScoreType> = d
        .score_types
        .iter()
        .filter_map(|n| ScoreType::parse(n).ok())
        .collect();
    if d.problem.is_some() {
        // A problem dataset's targets are what its script's get_*_data returned in the
        // prepare fold (`truth.json` of the custom split).
        let id = split.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "a problem dataset's submission has no split",
            )
        })?;
        let (record, _, _) = s.store.split(id).await?;
        let t = super::problems::truth(s, &record).await?;
        return Ok(Truth {
            kinds,
            train: t.y_train,
            test: Some(t.y_test),
        });
    }
    let table = s.store.dataset_table(dataset).await?;
    let rows = match split {
        Some(id) => {
            let (_, train, test) = s.store.split(id).await?;
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
    .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))
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

/// Derives and records the results of every submission fold whose queue fold changed.
pub async fn settle(s: &ApiState) -> ApiResult<()> {
    for _ in 0..100 {
        let inputs = s.store.unsettled_submission_folds(200).await?;
        if inputs.is_empty() {
            return Ok(());
        }
        let mut truths: BTreeMap<(DatasetId, Option<i64>), Truth> = BTreeMap::new();
        for i in &inputs {
            let key = (i.dataset_id, i.split_id);
            if i.fold.state == crate::model::FoldState::Done && !truths.contains_key(&key) {
                // Without the truth the fold still gets its state, just no scores: one bad
                // table must not stop every read.
                match truth(s, i.dataset_id, i.split_id).await {
                    Ok(t) => {
                        truths.insert(key, t);
                    }
                    Err(e) => tracing::warn!(
                        "dataset {} (split {:?}): cannot score: {}",
                        i.dataset_id,
                        i.split_id,
                        e.message
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
        if s.store.settle_submission_folds(results).await? == 0 {
            // Another caller recorded them meanwhile; what is left changed under us.
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// How far a submission fold still TODO whose queue fold runs got, live (shown in `live`):
/// the fold image writes "trained", then "validated", to its status file after each phase,
/// and the agent reports it with the fold's progress. `state` stays TODO until the fold ends
/// (VALIDATED is also an end state, for submissions without a test table).
pub(super) async fn live_phase(
    s: &ApiState,
    sf: &SubmissionFoldRecord,
) -> ApiResult<Option<Phase>> {
    if sf.state != Phase::Todo {
        return Ok(None);
    }
    let fold = s.store.fold(sf.fold_id).await?;
    let status = fold
        .current_attempt
        .and_then(|a| s.master.progress(a))
        .and_then(|p| p.status);
    Ok(match status.as_deref() {
        Some("trained") => Some(Phase::Trained),
        Some("validated" | "tested") => Some(Phase::Validated),
        _ => None,
    })
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResults {
    dataset_id: Option<DatasetId>,
    limit: Option<u32>,
}

/// `POST /results/new`: every ended submission fold (TESTED, VALIDATED or ERROR) of the
/// caller's submissions not handed out yet, handed out now, once.
pub async fn new_results(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: NewResults = super::folds::optional_json(&body)?;
    settle(&s).await?;
    let results = s
        .store
        .take_new_results(
            who.name,
            req.dataset_id,
            super::folds::page_limit(req.limit)?,
            false,
        )
        .await?;
    Ok(Json(json!({ "results": results })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListResults {
    ids: Vec<SubmissionFoldId>,
}

/// `POST /results/list`: submission folds by id, whatever their state; delivery unchanged.
/// Those the caller does not see are `missing`, as unknown ids are.
pub async fn list_results(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<ListResults>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(req) = body?;
    crate::model::limits::check_count("ids", req.ids.len(), "ids", MAX_IDS)?;
    settle(&s).await?;
    let found = s
        .store
        .submission_folds(&who.scope(), req.ids.clone())
        .await?;
    let missing: Vec<_> = req
        .ids
        .iter()
        .filter(|id| !found.iter().any(|f| f.id == **id))
        .collect();
    Ok(Json(json!({ "results": found, "missing": missing })))
}

/// `GET /submission-folds/{id}/predictions/{train|test}`: the .npy bytes.
pub async fn predictions(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path((id, phase)): Path<(SubmissionFoldId, String)>,
) -> ApiResult<Response> {
    visible(&s, &who, Resource::SubmissionFold(id)).await?;
    if phase != "train" && phase != "test" {
        return Err(ApiError::bad_request(format!(
            "predictions: {phase:?} is not train or test"
        )));
    }
    settle(&s).await?;
    let (sf, _, _) = s.store.submission_fold(id).await?;
    let p = &sf.predictions[&phase];
    let Some(sha) = p["sha256"].as_str() else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "submission fold {id} ({}) has no {phase} predictions",
                sf.state.as_str()
            ),
        ));
    };
    let data = s.store.get_blob(sha.to_string()).await?;
    let shape: Vec<String> = p["shape"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.to_string())
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("x-dtype"),
                p["dtype"].as_str().unwrap_or("").to_string(),
            ),
            (header::HeaderName::from_static("x-shape"), shape.join(",")),
            (header::HeaderName::from_static("x-sha256"), sha.to_string()),
        ],
        data,
    )
        .into_response())
}

/// `GET /datasets/{id}/leaderboard`.
pub async fn leaderboard(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    settle(&s).await?;
    let d = s.store.dataset(id).await?;
    let kinds: Vec<ScoreType> = d
        .score_types
        .iter()
        .filter_map(|n| ScoreType::parse(n).ok())
        .collect();
    let entries = s
        .store
        .leaderboard_inputs(id)
        .await?
        .into_iter()
        .map(|e| Entry {
            submission_id: e.submission_id,
            name: e.name,
            owner: e.owner,
            folds: e
                .scores
                .into_iter()
                .map(|mut v| {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("errors");
                    }
                    serde_json::from_value(v).unwrap_or_default()
                })
                .collect(),
        })
        .collect();
    let rows = leaderboard::leaderboard(&kinds, entries);
    let higher: BTreeMap<&str, bool> = kinds
        .iter()
        .map(|k| (k.name(), k.higher_is_better()))
        .collect();
    Ok(Json(json!({
        "dataset_id": id,
        "score_types": d.score_types,
        "higher_is_better": higher,
        "std": "sample standard deviation across folds (ddof = 1); null with one fold",
        "rows": rows,
    })))
}

//! `submissionfold/` and `testpredictions/`: a databoard submission fold is a native
//! submission fold. `POST submissionfold/` adds one fold per call; the first call for a
//! `databoard_s_id` carries the files and creates the submission. Results are rendered in the
//! original's shape: upper-case state, `log_messages` with the `ERROR(train)` / `ERROR(validation)`
//! / `ERROR(test)` markers databoard parses (plus the traceback), wall and CPU seconds per
//! phase, memory per phase in MiB (the fold's own container, not a worker's lifetime), predictions as b64(zlib(float64 LE)).

use super::super::shared::{decode_files, held, live_phase, recorded};
use super::super::{visible, ApiState};
use super::{body_object, encode_f64, Inflater, RunappError, RunappResult};
use crate::model::limits::MAX_INDICES_TEXT;
use crate::model::{FieldError, Priority, PRIORITY_HIGH, PRIORITY_LOW};
use crate::store::{
    sha256_hex, NewSubmission, Principal, Resource, RunappFold, RunappTarget, StoreError,
    SubmissionFoldRecord,
};
use crate::submission::{self, cv, npy, Phase};
use crate::workflow::{build_fold, image_fold, required_files, Layout};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn int(body: &Map<String, Value>, field: &str) -> RunappResult<Option<i64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| RunappError::field(field, "A valid integer is required.")),
    }
}

fn required_int(body: &Map<String, Value>, field: &str) -> RunappResult<i64> {
    int(body, field)?.ok_or_else(|| RunappError::field(field, "This field is required."))
}

fn required_text<'a>(body: &'a Map<String, Value>, field: &str) -> RunappResult<&'a str> {
    match body.get(field).and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => Ok(t),
        _ => Err(RunappError::field(field, "This field is required.")),
    }
}

/// `priority`: omitted or "low"/"L" → the L lane, "high"/"H" → the H lane, an integer as is.
/// Returns the queue priority and the name shown back.
fn priority(v: Option<&Value>) -> RunappResult<(Priority, String)> {
    let bad = || {
        RunappError::field(
            "priority",
            "expected \"low\", \"high\", \"L\", \"H\" or an integer",
        )
    };
    match v {
        None | Some(Value::Null) => Ok((Priority(PRIORITY_LOW), "low".into())),
        Some(Value::Number(n)) => {
            let p = n.as_i64().ok_or_else(bad)?;
            Ok((Priority(p), p.to_string()))
        }
        Some(Value::String(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "low" | "l" => Ok((Priority(PRIORITY_LOW), "low".into())),
            "high" | "h" => Ok((Priority(PRIORITY_HIGH), "high".into())),
            other => other
                .parse::<i64>()
                .map(|p| (Priority(p), p.to_string()))
                .map_err(|_| bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// The posted `files` (name → b64(zlib)) as the native API's name → base64.
pub(super) fn inflate_files(
    inflater: &mut Inflater,
    files: &Map<String, Value>,
) -> RunappResult<BTreeMap<String, String>> {
    let mut b64 = BTreeMap::new();
    for (name, text) in files {
        let text = text
            .as_str()
            .ok_or_else(|| RunappError::field("files", format!("{name}: expected a string")))?;
        let data = inflater
            .decode(text)
            .map_err(|e| RunappError::undecodable("files", &format!("{name}: "), e))?;
        b64.insert(name.clone(), crate::protocol::b64(&data));
    }
    Ok(b64)
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<(StatusCode, Json<Rendered>)> {
    let body = body_object(&body)?;
    let sf_id = required_int(&body, "databoard_sf_id")?;
    let s_id = required_int(&body, "databoard_s_id")?;
    let train_text = required_text(&body, "train_is")?.to_string();
    let test_text = required_text(&body, "test_is")?.to_string();
    for (field, text) in [("train_is", &train_text), ("test_is", &test_text)] {
        if text.len() > MAX_INDICES_TEXT {
            return Err(FieldError::too_large(field, text.len(), MAX_INDICES_TEXT).into());
        }
    }
    let (prio, prio_name) = priority(body.get("priority"))?;
    let mut inflater = s.inflater();
    if let Some(answer) = super::force::repost(&s, &who, &body, sf_id, s_id, &mut inflater).await? {
        return Ok(answer);
    }
    let existing = s.store.runapp_submission(who.name.clone(), s_id).await?;
    let (dataset_id, split_id, file_shas, new_files) = match existing {
        Some(id) => {
            let sub = s.store.submission(id).await?;
            (sub.dataset_id, sub.split_id, sub.files, None)
        }
        None => {
            let raw = int(&body, "raw_data")?.ok_or_else(|| {
                RunappError::field(
                    "raw_data",
                    "the first fold of a submission needs raw_data and files",
                )
            })?;
            let Some(Value::Object(files)) = body.get("files") else {
                return Err(RunappError::field(
                    "files",
                    "the first fold of a submission needs files",
                ));
            };
            visible(&s, &who, Resource::Dataset(raw)).await?;
            let d = s.store.dataset(raw).await?;
            let required =
                required_files(&d).map_err(|e| RunappError::bad(format!("raw data {raw}: {e}")))?;
            // Inflate, then check names and required files like the native API.
            let decoded = decode_files(&inflate_files(&mut inflater, files)?, &required)?;
            let shas = decoded
                .iter()
                .map(|(n, d)| (n.clone(), sha256_hex(d)))
                .collect();
            let split = s.store.runapp_split(raw).await?.ok_or_else(|| {
                RunappError::field(
                    "raw_data",
                    format!("raw data {raw} has no split yet: POST rawdata/split/ first"),
                )
            })?;
            (raw, Some(split), shas, Some(decoded))
        }
    };
    let d = s.store.dataset(dataset_id).await?;
    let Some(split_id) = split_id else {
        return Err(RunappError::bad("the submission has no split"));
    };
    // A custom split that just ended is usable once the workflow recorded it.
    recorded(&s).await?;
    let layout = Layout::new(&s.store, &d, Some(split_id))
        .await
        .map_err(super::super::ApiError::from)?;
    let n = layout.n_train;
    let train_is = inflater
        .indices(&train_text, n)
        .map_err(|e| RunappError::undecodable("train_is", "", e))?;
    let test_is = inflater
        .indices(&test_text, n)
        .map_err(|e| RunappError::undecodable("test_is", "", e))?;
    cv::check_fold("train_is", &train_is, &test_is, n).map_err(RunappError::bad)?;
    let template = image_fold(submission::FOLD_COMMAND, prio);
    let index = match existing {
        Some(id) => s.store.submission(id).await?.folds.len() as i64,
        None => 0,
    };
    let (mut fold, mut blobs) = build_fold(
        &layout,
        &file_shas,
        &template,
        index,
        &train_is,
        &test_is,
        Some(sf_id.to_string()),
    );
    let owner = who.name.clone();
    fold.held = held(&s, &owner, &fold.spec);
    blobs.extend(layout.blobs);
    let target = match (existing, new_files) {
        (Some(id), _) => RunappTarget::Existing(id),
        (None, files) => {
            blobs.extend(files.unwrap_or_default().into_values());
            RunappTarget::New(NewSubmission {
                dataset_id,
                split_id: Some(split_id),
                name: format!("databoard-{s_id}"),
                owner,
                by_admin: who.admin,
                files: file_shas.clone(),
                workflow_elements: d.workflow_elements.clone(),
                blobs: Vec::new(),
                stop_on_failure: false,
                folds: Vec::new(),
            })
        }
    };
    let meta = RunappFold {
        databoard_sf_id: sf_id,
        databoard_s_id: s_id,
        priority: prio_name,
        train_is: super::encoding::compact(&train_text),
        test_is: super::encoding::compact(&test_text),
    };
    let sf = match s
        .store
        .runapp_add_fold(
            who.name.clone(),
            who.admin,
            target,
            blobs,
            fold,
            meta.clone(),
        )
        .await
    {
        Err(StoreError::Conflict(m)) => return Err(RunappError::field("databoard_sf_id", m)),
        other => other?,
    };
    s.master.wake();
    let (record, _, _) = s.store.submission_fold(sf).await?;
    Ok((
        StatusCode::CREATED,
        Json(render(&s, &meta, &record, Shape::Full).await?),
    ))
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Shape {
    Full,
    TestPred,
}

fn secs(v: &Value, phase: &str, what: &str) -> f64 {
    v[phase][what].as_f64().unwrap_or(0.0)
}

/// The original's log: markers databoard maps to its error states, then our reason and
/// traceback. Which phase failed is the first one the run did not reach.
pub fn log_messages(sf: &SubmissionFoldRecord) -> Option<String> {
    match sf.state {
        Phase::Todo => None,
        Phase::Error => {
            let reached: Vec<&str> = sf
                .phases
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let (pre, marker) = match reached.as_slice() {
                [] => ("\n", "ERROR(train)"),
                [_] => ("\n", "ERROR(validation)"),
                _ => ("\n\n", "ERROR(test)"),
            };
            let reason = sf.reason.as_deref().unwrap_or("failed");
            let tb = sf
                .traceback
                .as_deref()
                .map(|t| format!("\n{t}"))
                .unwrap_or_default();
            Some(format!("{pre}{reason} - {marker}\n{tb}"))
        }
        _ => Some("\n\n".into()),
    }
}

async fn predictions(s: &ApiState, sf: &SubmissionFoldRecord, phase: &str) -> RunappResult<Value> {
    let Some(sha) = sf.predictions[phase]["sha256"].as_str() else {
        return Ok(Value::Null);
    };
    let data = s.store.get_blob(sha.to_string()).await?;
    let array =
        npy::parse(&data).map_err(|e| RunappError::detail(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(json!(encode_f64(&array.values)))
}

/// The original's full SubmissionFold, in its key order.
#[derive(Serialize)]
pub struct Full {
    databoard_sf_id: i64,
    databoard_s: i64,
    priority: String,
    train_is: String,
    test_is: String,
    task_id: String,
    full_train_predictions: Value,
    test_predictions: Value,
    state: &'static str,
    log_messages: Option<String>,
    train_time: f64,
    validation_time: f64,
    test_time: f64,
    train_cpu_time: f64,
    train_memory: f64,
    test_cpu_time: f64,
    test_memory: f64,
    new: bool,
}

/// The original's "TestPred", in its key order.
#[derive(Serialize)]
pub struct TestPred {
    databoard_sf_id: i64,
    databoard_s: i64,
    test_predictions: Value,
    full_train_predictions: Value,
    state: &'static str,
    log_messages: Option<String>,
    train_time: f64,
    validation_time: f64,
    test_time: f64,
    train_cpu_time: f64,
    test_cpu_time: f64,
    train_memory: f64,
    test_memory: f64,
}

/// A fold as the original rendered it (typed, so its key order is kept).
#[derive(Serialize)]
#[serde(untagged)]
pub enum Rendered {
    Full(Box<Full>),
    TestPred(Box<TestPred>),
}

/// The original's light SubmissionFold.
#[derive(Serialize)]
pub struct Light {
    databoard_sf_id: i64,
    databoard_s: i64,
    state: &'static str,
    new: bool,
}

pub(super) async fn render(
    s: &ApiState,
    meta: &RunappFold,
    sf: &SubmissionFoldRecord,
    shape: Shape,
) -> RunappResult<Rendered> {
    // The original's states move TODO → TRAINED → VALIDATED → TESTED while a fold runs.
    let state = live_phase(s, sf).await?.unwrap_or(sf.state).as_str();
    let t = &sf.timings;
    // Memory in MiB per phase: the fold image's per-phase peak of the fold's own container
    // (train; test: the larger of valid and test, which is what the original's test phase
    // covered), else the whole fold's peak measured by the agent.
    let fold_peak = sf.metrics["peak_memory"].as_f64().unwrap_or(0.0);
    let mib = |phases: &[&str]| {
        let peak = phases
            .iter()
            .filter_map(|p| t[*p]["peak_memory"].as_f64())
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        peak.unwrap_or(fold_peak) / (1024.0 * 1024.0)
    };
    let (train_memory, test_memory) = (mib(&["train"]), mib(&["valid", "test"]));
    let (test_predictions, full_train_predictions) = if sf.state.is_ended() {
        (
            predictions(s, sf, "test").await?,
            predictions(s, sf, "train").await?,
        )
    } else {
        (Value::Null, Value::Null)
    };
    let v = match shape {
        Shape::Full => Rendered::Full(Box::new(Full {
            databoard_sf_id: meta.databoard_sf_id,
            databoard_s: meta.databoard_s_id,
            priority: meta.priority.clone(),
            train_is: meta.train_is.clone(),
            test_is: meta.test_is.clone(),
            task_id: sf.fold_id.to_string(),
            full_train_predictions,
            test_predictions,
            state,
            log_messages: log_messages(sf),
            train_time: secs(t, "train", "wall"),
            validation_time: secs(t, "valid", "wall"),
            test_time: secs(t, "test", "wall"),
            train_cpu_time: secs(t, "train", "cpu"),
            train_memory,
            test_cpu_time: secs(t, "test", "cpu"),
            test_memory,
            new: !sf.delivered,
        })),
        Shape::TestPred => Rendered::TestPred(Box::new(TestPred {
            databoard_sf_id: meta.databoard_sf_id,
            databoard_s: meta.databoard_s_id,
            test_predictions,
            full_train_predictions,
            state,
            log_messages: log_messages(sf),
            train_time: secs(t, "train", "wall"),
            validation_time: secs(t, "valid", "wall"),
            test_time: secs(t, "test", "wall"),
            train_cpu_time: secs(t, "train", "cpu"),
            test_cpu_time: secs(t, "test", "cpu"),
            train_memory,
            test_memory,
        })),
    };
    Ok(v)
}

async fn render_all(
    s: &ApiState,
    folds: Vec<(RunappFold, SubmissionFoldRecord)>,
    shape: Shape,
) -> RunappResult<Json<Vec<Rendered>>> {
    let mut out = Vec::with_capacity(folds.len());
    for (meta, sf) in &folds {
        out.push(render(s, meta, sf, shape).await?);
    }
    Ok(Json(out))
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> RunappResult<Json<Vec<Rendered>>> {
    recorded(&s).await?;
    let folds = s.store.runapp_folds(who.name, None).await?;
    render_all(&s, folds, Shape::Full).await
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(pk): Path<String>,
) -> RunappResult<Json<Rendered>> {
    let not_found = || RunappError::detail(StatusCode::NOT_FOUND, "Not found.");
    let pk: i64 = pk.parse().map_err(|_| not_found())?;
    recorded(&s).await?;
    let mut folds = s.store.runapp_folds(who.name, Some(vec![pk])).await?;
    let (meta, sf) = folds.pop().ok_or_else(not_found)?;
    Ok(Json(render(&s, &meta, &sf, Shape::Full).await?))
}

pub async fn light(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> RunappResult<Json<Vec<Light>>> {
    recorded(&s).await?;
    let mut folds = s.store.runapp_folds(who.name, None).await?;
    for (_, sf) in &mut folds {
        sf.live = live_phase(&s, sf).await?;
    }
    Ok(Json(
        folds
            .iter()
            .map(|(m, sf)| Light {
                databoard_sf_id: m.databoard_sf_id,
                databoard_s: m.databoard_s_id,
                state: sf.live.unwrap_or(sf.state).as_str(),
                new: !sf.delivered,
            })
            .collect(),
    ))
}

/// The most folds one `testpredictions/` answer carries, each with its predictions: more ids
/// answer 413; the feed hands out the rest on the next call.
const MAX_PREDICTIONS: usize = 100;

/// `POST testpredictions/list/`: these folds, any state; delivery unchanged.
pub async fn list_predictions(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<Json<Vec<Rendered>>> {
    let body = body_object(&body)?;
    let ids: Vec<i64> = body
        .get("list_submission_fold")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_i64).collect())
        .ok_or_else(|| {
            RunappError::field(
                "list_submission_fold",
                "You need to post list_submission_fold: a list of submission on cv fold id",
            )
        })?;
    crate::model::limits::check_count("list_submission_fold", ids.len(), "folds", MAX_PREDICTIONS)?;
    recorded(&s).await?;
    let folds = s.store.runapp_folds(who.name, Some(ids)).await?;
    render_all(&s, folds, Shape::TestPred).await
}

/// `POST testpredictions/new/`: every ended fold (TESTED or ERROR) not handed out yet, each once.
pub async fn new_predictions(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<Json<Vec<Rendered>>> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        body_object(&body)?
    };
    let dataset = int(&body, "raw_data_id")?;
    recorded(&s).await?;
    let taken = s
        .store
        .take_new_results(who.name, dataset, MAX_PREDICTIONS as u32, true)
        .await?;
    let metas = s
        .store
        .runapp_meta(taken.iter().map(|r| r.id).collect())
        .await?;
    let folds = metas.into_iter().zip(taken).collect();
    render_all(&s, folds, Shape::TestPred).await
}

//! `rawdata/`: raw data are datasets. `POST rawdata/` takes one CSV file (renamed
//! `<name>.csv` like the original), or several files with one `.py` problem script (stored as
//! `specific.py`, a problem dataset); `rawdata/split/` makes a split with exactly
//! scikit-learn's `train_test_split` rows (`dataset::sklearn_split`), synchronously;
//! `rawdata/customsplit/` runs the problem script's `prepare_data` as a queue fold.

use super::super::datasets::{check_labels, store_dataset, store_split};
use super::super::{problems, visible, ApiState};
use super::{body_object, RunappError, RunappResult};
use crate::dataset::{problem, sklearn_split};
use crate::model::limits::{check_text, MAX_LABEL};
use crate::model::Priority;
use crate::store::{DatasetRecord, Principal, Resource};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn render(d: &DatasetRecord) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "files_path": format!("/api/v1/datasets/{}", d.id),
        "workflow_elements": d.workflow_elements.join(", "),
        "target_column": d.target_column,
    })
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> RunappResult<Json<Value>> {
    // The original's list has no pages; datasets are few and listed without statistics.
    let (all, _) = s.store.list_datasets(&who.scope(), None, None).await?;
    Ok(Json(Value::Array(all.iter().map(render).collect())))
}

fn required_str(body: &Map<String, Value>, field: &str) -> RunappResult<String> {
    match body.get(field) {
        None | Some(Value::Null) => Err(RunappError::field(field, "This field is required.")),
        Some(Value::String(t)) if t.trim().is_empty() => {
            Err(RunappError::field(field, "This field may not be blank."))
        }
        Some(Value::String(t)) => Ok(t.clone()),
        Some(other) => Ok(other.to_string()),
    }
}

/// Default score types: accuracy and log loss for a classifier, rmse (and r2) for a
/// regressor; none for anything else.
fn default_scores(elements: &[String]) -> Vec<String> {
    let has = |e: &str| elements.iter().any(|x| x == e);
    let names: &[&str] = if has("classifier") {
        &["accuracy", "log_loss"]
    } else if has("regressor") {
        &["rmse", "r2"]
    } else {
        &[]
    };
    names.iter().map(|n| n.to_string()).collect()
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<(StatusCode, Json<Value>)> {
    let body = body_object(&body)?;
    let name = required_str(&body, "name")?;
    let target = required_str(&body, "target_column")?;
    let elements = required_str(&body, "workflow_elements")?;
    check_text("name", &name, MAX_LABEL)?;
    check_text("workflow_elements", &elements, MAX_LABEL)?;
    let elements: Vec<String> = elements
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    check_labels(Some(&target), &elements, &[])?;
    // Names are per owner: only the caller's own datasets can clash.
    let mine = crate::store::Scope::Owner(who.name.clone());
    if s.store
        .list_datasets(&mine, None, None)
        .await?
        .0
        .iter()
        .any(|d| d.name == name)
    {
        return Err(RunappError::field(
            "name",
            "RawData with this name already exists.",
        ));
    }
    let mut inflater = s.inflater();
    let files = match body.get("files") {
        Some(Value::Object(f)) if !f.is_empty() => f,
        _ => {
            return Err(RunappError::field(
                "files",
                "This field is required: {file name: base64(zlib(content))}, one CSV file.",
            ))
        }
    };
    if files.len() > 1 {
        if !files.keys().any(|k| k.rsplit('.').next() == Some("py")) {
            return Err(RunappError(
                StatusCode::NOT_ACCEPTABLE,
                json!({"error": "Submit a specific.py when submitting several files"}),
            ));
        }
        // Like the original: the .py file is the problem script and is stored as specific.py;
        // the data files keep their names (the script reads them).
        let mut decoded = BTreeMap::new();
        for (file, text) in files {
            let text = text
                .as_str()
                .ok_or_else(|| RunappError::field("files", format!("{file}: expected a string")))?;
            let data = inflater
                .decode(text)
                .map_err(|e| RunappError::undecodable("files", &format!("{file}: "), e))?;
            decoded.insert(file.clone(), data);
        }
        let script = problem::pick_script(decoded.keys(), None)
            .map_err(|e| RunappError::field("files", e))?;
        if script != problem::SPECIFIC {
            let data = decoded.remove(&script).expect("picked among the files");
            if decoded.insert(problem::SPECIFIC.into(), data).is_some() {
                return Err(RunappError::field(
                    "files",
                    format!("{script} would become specific.py, which is posted too"),
                ));
            }
        }
        let scores = default_scores(&elements);
        let record = problems::create_dataset(
            &s,
            problems::ProblemDataset {
                owner: who.name.clone(),
                name,
                target_column: target,
                workflow_elements: elements,
                score_types: scores,
                problem: Some(problem::SPECIFIC.into()),
                files: decoded,
            },
        )
        .await?;
        return Ok((StatusCode::CREATED, Json(render(&record))));
    }
    let (file, text) = files.iter().next().expect("one file");
    let text = text
        .as_str()
        .ok_or_else(|| RunappError::field("files", format!("{file}: expected a string")))?;
    let data = inflater
        .decode(text)
        .map_err(|e| RunappError::undecodable("files", &format!("{file}: "), e))?;
    let scores = default_scores(&elements);
    let record = store_dataset(&s, who.name.clone(), name, target, elements, scores, data).await?;
    Ok((StatusCode::CREATED, Json(render(&record))))
}

fn raw_data_id(body: &Map<String, Value>) -> RunappResult<i64> {
    body.get("raw_data_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| RunappError::field("raw_data_id", "A valid integer is required."))
}

/// `POST rawdata/split/`: done before it answers; `task_id` names the split.
pub async fn split(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<Json<Value>> {
    let body = body_object(&body)?;
    let id = raw_data_id(&body)?;
    visible(&s, &who, Resource::Dataset(id)).await?;
    let held_out = body
        .get("held_out_test")
        .and_then(Value::as_f64)
        .ok_or_else(|| RunappError::field("held_out_test", "A valid number is required."))?;
    let seed = match body.get("random_state") {
        None | Some(Value::Null) => 42,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| RunappError::field("random_state", "A valid integer is required."))?,
    };
    problems::refuse_held_out(&s.store.dataset(id).await?)?;
    let (record, _, _) = store_split(&s, id, held_out, seed, false, move |table, _| {
        sklearn_split::train_test_split(table.rows, held_out, seed)
    })
    .await?;
    s.store.runapp_set_split(id, record.id).await?;
    Ok(Json(json!({ "task_id": format!("split-{}", record.id) })))
}

/// `POST rawdata/customsplit/`: the problem script's `prepare_data`, run as a queue fold;
/// it answers at once like the original's task (`task_id` names the split). Submission folds
/// posted before it is done answer 409 with what it waits for.
pub async fn customsplit(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> RunappResult<Json<Value>> {
    let body = body_object(&body)?;
    let id = raw_data_id(&body)?;
    visible(&s, &who, Resource::Dataset(id)).await?;
    let d = s.store.dataset(id).await?;
    let split = problems::start_custom_split(&s, &who, &d, Priority::default()).await?;
    s.store.runapp_set_split(id, split.id).await?;
    Ok(Json(json!({ "task_id": format!("split-{}", split.id) })))
}

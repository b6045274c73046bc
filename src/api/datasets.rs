//! Datasets, held-out splits and scores (issue #6, native under /api/v1). Everything is checked
//! and computed before the store is called, so a refused request stores nothing.

use super::{ApiError, ApiState};
use crate::dataset::csv::{Table, Values};
use crate::dataset::{self, ScoreType};
use crate::store::{DatasetId, NewDataset, NewSplit, SplitId};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    name: String,
    target_column: String,
    #[serde(default)]
    workflow_elements: Vec<String>,
    #[serde(default)]
    score_types: Vec<String>,
    /// The CSV file, base64 (standard alphabet; line breaks allowed).
    csv: Option<String>,
    /// Or a blob uploaded before with `POST /blobs`.
    table_sha256: Option<String>,
}

/// Runs CPU-heavy pure work (parsing, statistics) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn decode_csv(text: &str) -> ApiResult<Vec<u8>> {
    crate::protocol::unb64_wrapped(text)
        .map_err(|e| ApiError::bad_request(format!("csv: not valid base64 ({e})")))
}

fn check_score_types(names: &[String], table: &Table, target: &str) -> ApiResult<Vec<String>> {
    let numeric = matches!(
        table.column(target).map(|c| &c.values),
        Some(Values::Numeric(_))
    );
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let kind = ScoreType::parse(name)
            .map_err(|e| ApiError::bad_request(format!("score_types: {e}")))?;
        if !kind.is_classification() && !numeric {
            return Err(ApiError::bad_request(format!(
                "score_types: {} scores numbers, but the target column {target:?} is categorical",
                kind.name()
            )));
        }
        if !out.iter().any(|o| o == kind.name()) {
            out.push(kind.name().to_string());
        }
    }
    Ok(out)
}

pub async fn create(
    State(s): State<ApiState>,
    body: Result<Json<CreateDataset>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(req) = body?;
    if !crate::model::valid_name(&req.name) {
        return Err(ApiError::bad_request(format!(
            "name: {:?} is not a valid dataset name (letters, digits, '-', '_', '.', at most 64)",
            req.name
        )));
    }
    for w in &req.workflow_elements {
        if !crate::model::valid_name(w) {
            return Err(ApiError::bad_request(format!(
                "workflow_elements: {w:?} is not a valid name (letters, digits, '-', '_', '.')"
            )));
        }
    }
    let data =
        match (&req.csv, &req.table_sha256) {
            (Some(text), None) => decode_csv(text)?,
            (None, Some(sha)) => s.store.get_blob(sha.clone()).await.map_err(|_| {
                ApiError::bad_request(format!(
                    "table_sha256: no blob {sha}; POST the CSV file to /api/v1/blobs first"
                ))
            })?,
            _ => return Err(ApiError::bad_request(
                "give the table as exactly one of csv (base64) or table_sha256 (an uploaded blob)",
            )),
        };
    let record = store_dataset(
        &s,
        req.name,
        req.target_column,
        req.workflow_elements,
        req.score_types,
        data,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "dataset": record }))))
}

/// Parses and checks a CSV table (`score_types` empty: none), then stores it as a dataset.
pub(super) async fn store_dataset(
    s: &ApiState,
    name: String,
    target_column: String,
    workflow_elements: Vec<String>,
    score_types: Vec<String>,
    data: Vec<u8>,
) -> ApiResult<crate::store::DatasetRecord> {
    let target = target_column.clone();
    let (data, table, stats) = blocking(move || {
        let table = dataset::parse(&data).map_err(|e| format!("csv: {e}"))?;
        if table.column(&target).is_none() {
            return Err(format!(
                "target_column {target:?} is not a column of the CSV; its columns are: {}",
                table.names().join(", ")
            ));
        }
        let stats = dataset::table_stats(&table);
        Ok((data, table, stats))
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let score_types = check_score_types(&score_types, &table, &target_column)?;
    Ok(s.store
        .create_dataset(NewDataset {
            name,
            target_column,
            workflow_elements,
            score_types,
            table: data,
            rows: table.rows as u64,
            stats: json!(stats),
        })
        .await?)
}

pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "datasets": s.store.list_datasets().await? })))
}

pub async fn show(State(s): State<ApiState>, Path(id): Path<DatasetId>) -> ApiResult<Json<Value>> {
    let dataset = s.store.dataset(id).await?;
    let splits = s.store.list_splits(id).await?;
    Ok(Json(json!({ "dataset": dataset, "splits": splits })))
}

pub async fn table(State(s): State<ApiState>, Path(id): Path<DatasetId>) -> ApiResult<Response> {
    let data = s.store.dataset_table(id).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], data).into_response())
}

pub async fn delete(
    State(s): State<ApiState>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    let splits = s.store.delete_dataset(id).await?;
    Ok(Json(json!({ "deleted": id, "splits_deleted": splits })))
}

fn default_random_state() -> u64 {
    42
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSplit {
    /// The share of rows held out for test, in (0, 1).
    held_out_test: f64,
    #[serde(default = "default_random_state")]
    random_state: u64,
    #[serde(default)]
    stratify: bool,
}

pub async fn create_split(
    State(s): State<ApiState>,
    Path(id): Path<DatasetId>,
    body: Result<Json<CreateSplit>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(req) = body?;
    if req.random_state > i64::MAX as u64 {
        return Err(ApiError::bad_request(format!(
            "random_state: at most {}",
            i64::MAX
        )));
    }
    let stratify = req.stratify;
    let (record, train, test) = store_split(
        &s,
        id,
        req.held_out_test,
        req.random_state,
        stratify,
        move |table, target| {
            let strata: Option<Vec<Option<String>>> = match stratify {
                false => None,
                true => {
                    let col = table.column(target).ok_or_else(|| {
                        format!("the target column {target:?} is not in the stored table")
                    })?;
                    Some((0..table.rows).map(|r| col.text(r)).collect())
                }
            };
            let split = dataset::held_out(
                table.rows,
                req.held_out_test,
                req.random_state,
                strata.as_deref(),
            )?;
            Ok((split.train, split.test))
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "split": record, "train": train, "test": test })),
    ))
}

/// Computes a split's (train, test) rows with `rows` (given the table and its target column),
/// its train/test statistics, and stores it.
pub(super) async fn store_split(
    s: &ApiState,
    id: DatasetId,
    held_out_test: f64,
    random_state: u64,
    stratify: bool,
    rows: impl FnOnce(&Table, &str) -> Result<(Vec<usize>, Vec<usize>), String> + Send + 'static,
) -> ApiResult<(crate::store::SplitRecord, Vec<usize>, Vec<usize>)> {
    let dataset = s.store.dataset(id).await?;
    let data = s.store.dataset_table(id).await?;
    let target = dataset.target_column.clone();
    let (train, test, stats) = blocking(move || {
        let table = dataset::parse(&data).map_err(|e| format!("the stored table: {e}"))?;
        let (train, test) = rows(&table, &target)?;
        let columns = dataset::compare(&table.take(&train), &table.take(&test));
        let stats = json!({
            "train_rows": train.len(),
            "test_rows": test.len(),
            "columns": columns,
        });
        Ok::<_, String>((train, test, stats))
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let record = s
        .store
        .create_split(NewSplit {
            dataset_id: id,
            held_out_test,
            random_state,
            stratify,
            train: train.clone(),
            test: test.clone(),
            stats,
        })
        .await?;
    Ok((record, train, test))
}

pub async fn list_splits(
    State(s): State<ApiState>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "splits": s.store.list_splits(id).await? })))
}

pub async fn show_split(
    State(s): State<ApiState>,
    Path(id): Path<SplitId>,
) -> ApiResult<Json<Value>> {
    let (split, train, test) = s.store.split(id).await?;
    Ok(Json(
        json!({ "split": split, "train": train, "test": test }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    score_types: Vec<String>,
    y_true: Vec<Value>,
    y_pred: Option<Vec<Value>>,
    y_proba: Option<Vec<Vec<f64>>>,
    classes: Option<Vec<Value>>,
}

/// A label or number as text: strings as they are, integral numbers without ".0".
fn text(field: &str, i: usize, v: &Value) -> ApiResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(if *b { "True" } else { "False" }.to_string()),
        Value::Number(n) => Ok(match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        }),
        other => Err(ApiError::bad_request(format!(
            "{field}[{i}]: expected a label or a number, not {other}"
        ))),
    }
}

fn texts(field: &str, vs: &[Value]) -> ApiResult<Vec<String>> {
    vs.iter()
        .enumerate()
        .map(|(i, v)| text(field, i, v))
        .collect()
}

/// `POST /scores`: scores of predictions against the truth, by score type name.
pub async fn scores(body: Result<Json<ScoreRequest>, JsonRejection>) -> ApiResult<Json<Value>> {
    let Json(req) = body?;
    if req.score_types.is_empty() {
        return Err(ApiError::bad_request("score_types: name at least one"));
    }
    let kinds = req
        .score_types
        .iter()
        .map(|n| {
            ScoreType::parse(n).map_err(|e| ApiError::bad_request(format!("score_types: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let inputs = dataset::score::Inputs {
        y_true: texts("y_true", &req.y_true)?,
        y_pred: req
            .y_pred
            .as_deref()
            .map(|p| texts("y_pred", p))
            .transpose()?,
        y_proba: req.y_proba,
        classes: req
            .classes
            .as_deref()
            .map(|c| texts("classes", c))
            .transpose()?,
    };
    let mut scores = serde_json::Map::new();
    let mut higher = serde_json::Map::new();
    for kind in kinds {
        let v = dataset::score::compute(kind, &inputs).map_err(ApiError::bad_request)?;
        scores.insert(kind.name().into(), json!(v));
        higher.insert(kind.name().into(), json!(kind.higher_is_better()));
    }
    Ok(Json(
        json!({ "scores": scores, "higher_is_better": higher }),
    ))
}

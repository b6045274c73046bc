//! Datasets, held-out splits and scores (issue #6, native under /api/v1). Everything is checked
//! and computed before the store is called, so a refused request stores nothing.

use super::shared::{blob_response, blocking, decode_files, recorded};
use super::{problems, visible, ApiError, ApiState};
use crate::dataset::csv::{Table, Values};
use crate::dataset::{self, ScoreType};
use crate::model::limits::MAX_SCORE_ROWS;
use crate::store::{DatasetId, NewDataset, NewSplit, Principal, Resource, SplitId};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    name: String,
    /// The target column of a CSV dataset (a problem dataset's script says what the target is;
    /// it is only shown).
    #[serde(default)]
    target_column: Option<String>,
    #[serde(default)]
    workflow_elements: Vec<String>,
    #[serde(default)]
    score_types: Vec<String>,
    /// The CSV file, base64 (standard alphabet; line breaks allowed).
    csv: Option<String>,
    /// Or a blob uploaded before with `POST /blobs`.
    table_sha256: Option<String>,
    /// Or several files (name → base64) with a problem script: a problem dataset.
    files: Option<BTreeMap<String, String>>,
    /// Which of `files` is the problem script (default: the only `.py` file).
    problem: Option<String>,
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
    Extension(who): Extension<Principal>,
    body: Result<Json<CreateDataset>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(req) = body?;
    if !crate::model::valid_name(&req.name) {
        return Err(ApiError::bad_request(format!(
            "name: {:?} is not a valid dataset name (letters, digits, '-', '_', '.', at most 64)",
            req.name
        )));
    }
    check_labels(
        req.target_column.as_deref(),
        &req.workflow_elements,
        &req.score_types,
    )?;
    for w in &req.workflow_elements {
        if !crate::model::valid_name(w) {
            return Err(ApiError::bad_request(format!(
                "workflow_elements: {w:?} is not a valid name (letters, digits, '-', '_', '.')"
            )));
        }
    }
    let data = match (&req.csv, &req.table_sha256, &req.files) {
        (Some(text), None, None) => decode_csv(text)?,
        (None, Some(sha), None) => {
            let missing = || {
                ApiError::bad_request(format!(
                    "table_sha256: no blob {sha}; POST the CSV file to /api/v1/blobs first"
                ))
            };
            // Another owner's blob answers as a missing one (README "Tenancy").
            if !s.store.may_use_blob(&who.scope(), sha.clone()).await? {
                return Err(missing());
            }
            s.store.get_blob(sha.clone()).await.map_err(|_| missing())?
        }
        (None, None, Some(files)) => {
            let decoded = decode_files(files, &[])?;
            let record = problems::create_dataset(
                &s,
                problems::ProblemDataset {
                    owner: who.name.clone(),
                    name: req.name,
                    target_column: req.target_column.unwrap_or_default(),
                    workflow_elements: req.workflow_elements,
                    score_types: req.score_types,
                    problem: req.problem,
                    files: decoded,
                },
            )
            .await?;
            return Ok((StatusCode::CREATED, Json(json!({ "dataset": record }))));
        }
        _ => return Err(ApiError::bad_request(
            "give exactly one of csv (base64), table_sha256 (an uploaded blob) or files (name → base64, with a problem script)",
        )),
    };
    if req.problem.is_some() {
        return Err(ApiError::bad_request(
            "problem names a script among files; a CSV dataset has none",
        ));
    }
    let Some(target_column) = req.target_column else {
        return Err(ApiError::bad_request(
            "target_column: a CSV dataset needs the name of its target column",
        ));
    };
    let record = store_dataset(
        &s,
        who.name.clone(),
        req.name,
        target_column,
        req.workflow_elements,
        req.score_types,
        data,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "dataset": record }))))
}

/// The size limits on a dataset's labels: its target column's name and how many workflow
/// elements and score types it names (the native and `/runapp/` APIs alike).
pub(super) fn check_labels(
    target_column: Option<&str>,
    workflow_elements: &[String],
    score_types: &[String],
) -> ApiResult<()> {
    use crate::model::limits::{check_count, check_text, MAX_LABEL, MAX_NAMES};
    if let Some(target) = target_column {
        check_text("target_column", target, MAX_LABEL)?;
    }
    check_count(
        "workflow_elements",
        workflow_elements.len(),
        "names",
        MAX_NAMES,
    )?;
    check_count("score_types", score_types.len(), "names", MAX_NAMES)?;
    Ok(())
}

/// Parses and checks a CSV table (`score_types` empty: none), then stores it as a dataset of
/// `owner`.
pub(super) async fn store_dataset(
    s: &ApiState,
    owner: String,
    name: String,
    target_column: String,
    workflow_elements: Vec<String>,
    score_types: Vec<String>,
    data: Vec<u8>,
) -> ApiResult<crate::store::DatasetRecord> {
    let target = target_column.clone();
    let (data, table, stats) = blocking(move || {
        let table = dataset::parse_upload(&data).map_err(|e| format!("csv: {e}"))?;
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
            owner,
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

/// `?after=ID&limit=N` of a listing in id order.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /datasets`: one page of the caller's datasets (an admin's: all) in id order; `next`
/// is the `after` of the next page.
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(super::folds::bad_query)?;
    let limit = super::folds::page_limit(q.limit)?;
    let (datasets, next) = s
        .store
        .list_datasets(&who.scope(), q.after, Some(limit))
        .await?;
    Ok(Json(json!({ "datasets": datasets, "next": next })))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    recorded(&s).await?;
    let dataset = s.store.dataset(id).await?;
    let splits = s.store.list_splits(id).await?;
    Ok(Json(json!({ "dataset": dataset, "splits": splits })))
}

pub async fn table(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Response> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    let d = s.store.dataset(id).await?;
    if let Some(script) = &d.problem {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "dataset {id} is files with a problem script ({script}), not one table: GET /api/v1/datasets/{id}/files/NAME for one of {}",
                d.files.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Streamed from its file: the store's readers are not held while it is sent.
    let body = s.store.dataset_table_body(id).await?;
    Ok(blob_response(body, "text/csv; charset=utf-8"))
}

/// `GET /datasets/{id}/files/{name}`: one file of a problem dataset, or of one of its custom
/// splits (`?split=ID`).
pub async fn file(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path((id, name)): Path<(DatasetId, String)>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    recorded(&s).await?;
    let d = s.store.dataset(id).await?;
    let files = match q.split {
        None => d.files,
        Some(split) => {
            visible(&s, &who, Resource::Split(split)).await?;
            let (rec, _, _) = s.store.split(split).await?;
            if rec.dataset_id != id {
                return Err(ApiError::bad_request(format!(
                    "split {split} belongs to dataset {}, not {id}",
                    rec.dataset_id
                )));
            }
            rec.files
        }
    };
    let sha = files.get(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no file {name:?} here; the files are: {}",
                files.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let body = s.store.blob_body(sha.clone()).await?;
    Ok(blob_response(body, "application/octet-stream"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    split: Option<SplitId>,
}

pub async fn delete(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    let splits = s.store.delete_dataset(id).await?;
    Ok(Json(json!({ "deleted": id, "splits_deleted": splits })))
}

fn default_random_state() -> u64 {
    42
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSplit {
    /// The share of rows held out for test, in (0, 1).
    held_out_test: Option<f64>,
    /// A problem dataset's split: its script's `prepare_data`, run as a queue fold.
    #[serde(default)]
    custom: bool,
    #[serde(default)]
    priority: crate::model::Priority,
    #[serde(default = "default_random_state")]
    random_state: u64,
    #[serde(default)]
    stratify: bool,
}

pub async fn create_split(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
    body: Result<Json<CreateSplit>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(req) = body?;
    visible(&s, &who, Resource::Dataset(id)).await?;
    let d = s.store.dataset(id).await?;
    let held_out_test = match (req.custom, req.held_out_test) {
        (true, None) => {
            let split = problems::start_custom_split(&s, &who, &d, req.priority).await?;
            return Ok((StatusCode::ACCEPTED, Json(json!({ "split": split }))));
        }
        (false, Some(h)) => h,
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "a custom split takes no held_out_test: the problem script decides",
            ))
        }
        (false, None) => {
            return Err(ApiError::bad_request(
                "held_out_test: the share of rows held out for test, in (0, 1) (or custom: true for a problem dataset)",
            ))
        }
    };
    problems::refuse_held_out(&d)?;
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
        held_out_test,
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
                held_out_test,
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
    Extension(who): Extension<Principal>,
    Path(id): Path<DatasetId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Dataset(id)).await?;
    recorded(&s).await?;
    Ok(Json(json!({ "splits": s.store.list_splits(id).await? })))
}

pub async fn show_split(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<SplitId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Split(id)).await?;
    recorded(&s).await?;
    let (split, train, test) = s.store.split(id).await?;
    if split.state == "running" {
        let fold = s.store.custom_split_fold(id).await?;
        return Ok(Json(json!({ "split": split, "fold": fold })));
    }
    Ok(Json(
        json!({ "split": split, "train": train, "test": test }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
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
    let rows = req
        .y_true
        .len()
        .max(req.y_pred.as_ref().map_or(0, Vec::len));
    let rows = rows.max(req.y_proba.as_ref().map_or(0, Vec::len));
    crate::model::limits::check_count("y_true", rows, "rows", MAX_SCORE_ROWS)?;
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
    // A million rows take a moment: off the runtime the master's loop shares.
    let computed = blocking(move || {
        kinds
            .into_iter()
            .map(|kind| dataset::score::compute(kind, &inputs).map(|v| (kind, v)))
            .collect::<Result<Vec<_>, String>>()
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let mut scores = serde_json::Map::new();
    let mut higher = serde_json::Map::new();
    for (kind, v) in computed {
        scores.insert(kind.name().into(), json!(v));
        higher.insert(kind.name().into(), json!(kind.higher_is_better()));
    }
    Ok(Json(
        json!({ "scores": scores, "higher_is_better": higher }),
    ))
}

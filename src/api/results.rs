//! Results of submission folds as recorded: the "new results" feed, fetch by ids,
//! predictions and the leaderboard. Nothing here settles: the workflow task records a
//! submission fold's result when its queue fold stops (see `workflow`).

use super::shared::{blob_response, recorded};
use super::{visible, ApiError, ApiState};
use crate::dataset::ScoreType;
use crate::model::limits::MAX_IDS;
use crate::store::{DatasetId, Principal, Resource, SubmissionFoldId};
use crate::submission::leaderboard::{self, Entry};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

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
    recorded(&s).await?;
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
    recorded(&s).await?;
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
    recorded(&s).await?;
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
    let body = s.store.blob_body(sha.to_string()).await?;
    let shape: Vec<String> = p["shape"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.to_string())
        .collect();
    Ok((
        [
            (
                header::HeaderName::from_static("x-dtype"),
                p["dtype"].as_str().unwrap_or("").to_string(),
            ),
            (header::HeaderName::from_static("x-shape"), shape.join(",")),
            (header::HeaderName::from_static("x-sha256"), sha.to_string()),
        ],
        blob_response(body, "application/octet-stream"),
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
    recorded(&s).await?;
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

//! Arrays of folds (`submit --array 0-99:2%8`): one spec, one fold per index with
//! `$DATARUN_ARRAY_INDEX`, at most the cap of them in line or running at once (the rest wait;
//! see `store::waiting`). An array is its owner's (README "Tenancy"): anyone else gets 404.

use super::{ApiError, ApiState};
use crate::model::array::parse_array;
use crate::model::FoldSpec;
use crate::store::{ArrayRecord, Principal};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewArray {
    spec: FoldSpec,
    /// `0-4`, `0-99:2`, `1,3,5-7`, with `%N` to run at most N at once.
    array: String,
    /// When a fold fails with its own error (exit code, signal, outputs over the limit), its
    /// idle and waiting siblings are removed, saying why.
    #[serde(default)]
    stop_on_failure: bool,
    /// A URL called once every fold of the array has ended (README "Webhooks").
    webhook: Option<String>,
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewArray>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(mut body) = body?;
    crate::model::limits::check_text("array", &body.array, 4096)?;
    let array = parse_array(&body.array).map_err(ApiError::bad_request)?;
    body.spec.validate()?;
    let fold_hook = super::webhooks::check_array_hooks(&s, &body.webhook, &mut body.spec).await?;
    crate::model::limits::check_copies("array: its folds' specs", &body.spec, array.indices.len())?;
    let held = super::shared::held(&s, &who.name, &body.spec);
    let (id, ids) = s
        .store
        .submit_array(
            who.name.clone(),
            who.admin,
            body.spec,
            held.clone(),
            crate::store::NewArray {
                indices: array.indices.clone(),
                cap: array.cap,
                stop_on_failure: body.stop_on_failure,
            },
        )
        .await?;
    super::webhooks::subscribe_array(&s, &who, id, &ids, body.webhook, fold_hook).await?;
    s.master.wake();
    let folds: Vec<Value> = ids
        .iter()
        .zip(&array.indices)
        .map(|(id, index)| json!({ "id": id, "index": index }))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "array": id,
            "cap": array.cap,
            "folds": folds,
            "held": held.map(|(code, reason)| json!({ "code": code, "reason": reason })),
        })),
    ))
}

/// The array, if `who` may see it; else 404 as for a missing one.
async fn visible_array(s: &ApiState, who: &Principal, id: i64) -> ApiResult<ArrayRecord> {
    let found = s.store.array(id).await;
    super::shared::owned_or_missing(who, "array", id, found, |a| &a.owner)
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "array": visible_array(&s, &who, id).await? })))
}

/// `GET /arrays/{id}/{index}`: the fold `ID.INDEX`.
pub async fn fold(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path((id, index)): Path<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    visible_array(&s, &who, id).await?;
    let fold = s.store.array_fold(id, index).await?;
    Ok(Json(json!({ "fold": s.store.fold(fold).await? })))
}

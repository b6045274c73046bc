//! `POST /submissions/{id}/folds`: more folds for an existing submission (its dataset, split,
//! files and the first fold's resources, limits, queue and priority), in one transaction.
//! The `/runapp/` layer adds its folds one by one through the same store path.

use super::shared::{check_client_folds, held, recorded, ClientFold};
use super::{visible, ApiError, ApiState};
use crate::store::{Principal, Resource, SubmissionId};
use crate::submission::cv;
use crate::workflow::{build_fold, Layout};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFolds {
    folds: Vec<ClientFold>,
}

pub async fn add_folds(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<SubmissionId>,
    body: Result<Json<AddFolds>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body?;
    if req.folds.is_empty() {
        return Err(ApiError::bad_request("folds: give at least one fold"));
    }
    visible(&s, &who, Resource::Submission(id)).await?;
    check_client_folds(&req.folds)?;
    let sub = s.store.submission(id).await?;
    let first = sub
        .folds
        .first()
        .ok_or_else(|| ApiError::bad_request(format!("submission {id} has no fold to copy")))?;
    let template = s.store.fold(first.fold_id).await?.spec;
    let d = s.store.dataset(sub.dataset_id).await?;
    // A custom split that just ended is usable once the workflow recorded it.
    recorded(&s).await?;
    let layout = Layout::new(&s.store, &d, sub.split_id).await?;
    let n = layout.n_train;
    let mut folds = Vec::new();
    let mut blobs = Vec::new();
    for (i, f) in req.folds.into_iter().enumerate() {
        cv::check_fold(&format!("folds[{i}]"), &f.train_is, &f.test_is, n)
            .map_err(ApiError::bad_request)?;
        let index = (sub.folds.len() + i) as i64;
        let (mut fold, b) = build_fold(
            &layout,
            &sub.files,
            &template,
            index,
            &f.train_is,
            &f.test_is,
            f.client_id,
        );
        fold.held = held(&s, &sub.owner, &fold.spec);
        folds.push(fold);
        blobs.extend(b);
    }
    blobs.extend(layout.blobs);
    let ids = s
        .store
        .add_submission_folds(id, who.admin, blobs, folds)
        .await?;
    s.master.wake();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "added": ids, "submission": s.store.submission(id).await? })),
    ))
}

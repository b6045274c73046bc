//! `POST /submissions/{id}/folds`: more folds for an existing submission (its dataset, split,
//! files and the first fold's resources, limits, queue and priority), in one transaction.
//! The `/runapp/` layer adds its folds one by one through the same store path.

use super::datasets::blocking;
use super::submissions::{build_fold, held, ClientFold, Tables};
use super::{ApiError, ApiState};
use crate::dataset;
use crate::store::{sha256_hex, Principal, SubmissionId};
use crate::submission::cv;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
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
    if req.folds.is_empty() || req.folds.len() > 1000 {
        return Err(ApiError::bad_request("folds: give 1 to 1000 folds"));
    }
    let sub = s.store.submission(id).await?;
    if !who.admin && sub.owner != who.name {
        return Err(ApiError::forbidden(format!(
            "submission {id} belongs to {}; only its owner or an admin may add folds",
            sub.owner
        )));
    }
    let first = sub
        .folds
        .first()
        .ok_or_else(|| ApiError::bad_request(format!("submission {id} has no fold to copy")))?;
    let template = s.store.fold(first.fold_id).await?.spec;
    let d = s.store.dataset(sub.dataset_id).await?;
    let table = s.store.dataset_table(d.id).await?;
    let split = match sub.split_id {
        Some(sid) => {
            let (_, train, test) = s.store.split(sid).await?;
            Some((train, test))
        }
        None => None,
    };
    let (train_csv, test_csv) = blocking(move || match &split {
        None => Ok::<_, String>((table, None)),
        Some((train, test)) => Ok((
            dataset::csv::select_rows(&table, train)?,
            Some(dataset::csv::select_rows(&table, test)?),
        )),
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let n = match &sub.split_id {
        Some(_) => dataset::parse(&train_csv).map(|t| t.rows).unwrap_or(0),
        None => d.rows as usize,
    };
    let (train_sha, test_sha) = (sha256_hex(&train_csv), test_csv.as_deref().map(sha256_hex));
    let tables = Tables {
        target_column: &d.target_column,
        workflow_elements: &sub.workflow_elements,
        train_sha: &train_sha,
        test_sha: test_sha.as_deref(),
        file_shas: &sub.files,
    };
    let mut folds = Vec::new();
    let mut blobs = Vec::new();
    for (i, f) in req.folds.into_iter().enumerate() {
        cv::check_fold(&format!("folds[{i}]"), &f.train_is, &f.test_is, n)
            .map_err(ApiError::bad_request)?;
        let index = (sub.folds.len() + i) as i64;
        let (mut fold, b) = build_fold(
            &tables,
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
    blobs.push(train_csv);
    blobs.extend(test_csv);
    let ids = s.store.add_submission_folds(id, blobs, folds).await?;
    s.master.wake();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "added": ids, "submission": s.store.submission(id).await? })),
    ))
}

//! `force` on a re-posted `submissionfold/`, mapped onto the native resubmit (README "`/runapp/`
//! compatibility"). The original deleted and re-created rows, by substring tests on `force`:
//! containing `"submission_fold"` re-creates the fold; containing `"submission, submission_fold"`
//! first deletes the whole submission, files and folds, so the posted files are the new ones.
//! Here the fold keeps its ids and indices and runs again: `"submission_fold"` → retrain that
//! fold (nothing to do while it is still TODO: it already runs with the current files);
//! `"submission"` as a separate comma-separated item → replace the submission's files with the
//! posted ones (retrain all its folds when none are posted). The rerun result is new again for
//! `testpredictions/new/`.

use super::super::submissions::resubmit;
use super::super::ApiState;
use super::folds::{inflate_files, render, Rendered, Shape};
use super::{Inflater, RunappError, RunappResult};
use crate::store::Principal;
use crate::submission::Phase;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

/// Handles a forced re-post of an existing fold; `None` when `force` does not apply (no
/// `"submission_fold"` in it, or no such fold yet: then the post creates the fold).
pub(super) async fn repost(
    s: &ApiState,
    who: &Principal,
    body: &Map<String, Value>,
    sf_id: i64,
    s_id: i64,
    inflater: &mut Inflater,
) -> RunappResult<Option<(StatusCode, Json<Rendered>)>> {
    let Some(force) = body.get("force").and_then(Value::as_str) else {
        return Ok(None);
    };
    if !force.contains("submission_fold") {
        return Ok(None);
    }
    let Some((meta, sf)) = s
        .store
        .runapp_folds(who.name.clone(), Some(vec![sf_id]))
        .await?
        .pop()
    else {
        return Ok(None);
    };
    if meta.databoard_s_id != s_id {
        return Err(RunappError::field(
            "databoard_s_id",
            format!("fold {sf_id} belongs to submission {}", meta.databoard_s_id),
        ));
    }
    for (field, stored) in [("train_is", &meta.train_is), ("test_is", &meta.test_is)] {
        let posted = body.get(field).and_then(Value::as_str).unwrap_or_default();
        let same = posted == stored.as_str()
            || match inflater.decode(posted) {
                Ok(a) => inflater.decode(stored).is_ok_and(|b| a == b),
                Err(e) if e.too_large => return Err(RunappError::undecodable(field, "", e)),
                Err(_) => false,
            };
        if !same {
            return Err(RunappError::field(
                field,
                "a forced re-post keeps the fold's indices (post a new databoard_sf_id for others)",
            ));
        }
    }
    let whole = force.split(',').any(|item| item.trim() == "submission");
    let request = match (whole, body.get("files")) {
        (true, Some(Value::Object(files))) => {
            Some(json!({"force": "files", "files": inflate_files(inflater, files)?}))
        }
        (true, _) => Some(json!({"force": "retrain"})),
        (false, _) if sf.state == Phase::Todo => None,
        (false, _) => Some(json!({"force": "retrain", "folds": [sf.id]})),
    };
    if let Some(request) = request {
        let _rerun = resubmit(
            State(s.clone()),
            Extension(who.clone()),
            Path(sf.submission_id),
            Bytes::from(request.to_string()),
        )
        .await?;
    }
    let (record, _, _) = s.store.submission_fold(sf.id).await?;
    Ok(Some((
        StatusCode::CREATED,
        Json(render(s, &meta, &record, Shape::Full).await?),
    )))
}

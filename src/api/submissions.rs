//! Submissions on cross-validation folds (issue #6): create, resubmit, show. Each submission
//! fold is an ordinary queue fold of the ML fold image; everything is checked and built before
//! the store is called, and the store creates the submission with its folds in one
//! transaction, so a refused request stores nothing.

use super::shared::{
    blocking, check_client_folds, decode_files, held, live_phase, recorded, ClientFold,
};
use super::{visible, ApiError, ApiState};
use crate::model::limits::{check_count, MAX_SUBMISSION_FOLDS};
use crate::model::{valid_name, FoldSpec, InputRef, Priority, Resources, DEFAULT_QUEUE};
use crate::store::{
    sha256_hex, NewSubmission, Principal, Rerun, Resource, SubmissionFoldId, SubmissionId,
};
use crate::submission::{self, cv, Phase, SUBMISSION_DIR};
use crate::workflow::{
    build_fold, default_resources, fold_inputs, image_fold, required_files, Layout,
};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

fn default_seed() -> u64 {
    42
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cv {
    k: usize,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    stratify: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubmission {
    dataset_id: i64,
    split_id: Option<i64>,
    name: String,
    /// File name → content, base64.
    files: BTreeMap<String, String>,
    folds: Option<Vec<ClientFold>>,
    cv: Option<Cv>,
    #[serde(default)]
    priority: Priority,
    queue: Option<String>,
    #[serde(default = "default_resources")]
    resources: Resources,
    #[serde(default, with = "crate::units::duration_ms::option")]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    soft_time_limit: Option<u64>,
    #[serde(default, with = "crate::units::duration_ms::option")]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    hard_time_limit: Option<u64>,
    #[serde(default)]
    max_retries: u32,
    /// When a fold fails with its own error, the submission's idle and waiting folds are
    /// removed, saying why (`store::waiting::stop_siblings`).
    #[serde(default)]
    stop_on_failure: bool,
    /// A URL called once every fold of the submission has ended (README "Webhooks").
    webhook: Option<String>,
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<CreateSubmission>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(req) = body?;
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request(format!(
            "name: {:?} is not a valid submission name (letters, digits, '-', '_', '.', at most 64)",
            req.name
        )));
    }
    if let Some(folds) = &req.folds {
        check_client_folds(folds)?;
    }
    if let Some(cv) = &req.cv {
        check_count("cv.k", cv.k, "folds", MAX_SUBMISSION_FOLDS)?;
    }
    if let Some(url) = &req.webhook {
        super::webhooks::check(&s, "webhook", url).await?;
    }
    visible(&s, &who, Resource::Dataset(req.dataset_id)).await?;
    if let Some(split) = req.split_id {
        visible(&s, &who, Resource::Split(split)).await?;
    }
    let d = s.store.dataset(req.dataset_id).await?;
    let required =
        required_files(&d).map_err(|e| ApiError::bad_request(format!("dataset {}: {e}", d.id)))?;
    let files = decode_files(&req.files, &required)?;
    let template = FoldSpec {
        resources: req.resources.clone(),
        soft_time_limit: req.soft_time_limit,
        hard_time_limit: req.hard_time_limit,
        queue: req.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.into()),
        max_retries: req.max_retries,
        ..image_fold(submission::FOLD_COMMAND, req.priority)
    };
    template.validate()?;
    let (client_folds, cv) = match (req.folds, req.cv) {
        (Some(f), None) if !f.is_empty() => (Some(f), None),
        (None, Some(c)) => (None, Some(c)),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of folds ([{\"train_is\": [...], \"test_is\": [...]}, ...]) or cv ({\"k\": 5, \"seed\": 42, \"stratify\": true})",
            ))
        }
    };
    // A custom split that just ended is usable once the workflow recorded it.
    recorded(&s).await?;
    let mut layout = Layout::new(&s.store, &d, req.split_id).await?;
    let n = layout.n_train;
    let strata = std::mem::take(&mut layout.strata);
    let folds = blocking(move || {
        let folds: Vec<(Vec<usize>, Vec<usize>, Option<String>)> = match (client_folds, cv) {
            (Some(list), _) => {
                let mut out = Vec::new();
                for (i, f) in list.into_iter().enumerate() {
                    cv::check_fold(&format!("folds[{i}]"), &f.train_is, &f.test_is, n)?;
                    out.push((f.train_is, f.test_is, f.client_id));
                }
                out
            }
            (None, Some(c)) => cv::kfold(n, c.k, c.seed, c.stratify.then_some(&strata[..]))?
                .into_iter()
                .map(|(a, b)| (a, b, None))
                .collect(),
            (None, None) => unreachable!("checked above"),
        };
        Ok::<_, String>(folds)
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let file_shas: BTreeMap<String, String> = files
        .iter()
        .map(|(n, d)| (n.clone(), sha256_hex(d)))
        .collect();
    let mut blobs: Vec<Vec<u8>> = files.into_values().collect();
    let mut new_folds = Vec::with_capacity(folds.len());
    let mut hold = None;
    for (i, (train_is, test_is, client_id)) in folds.into_iter().enumerate() {
        let (mut fold, fold_blobs) = build_fold(
            &layout, &file_shas, &template, i as i64, &train_is, &test_is, client_id,
        );
        if i == 0 {
            hold = held(&s, &who.name, &fold.spec);
        }
        fold.held = hold.clone();
        new_folds.push(fold);
        blobs.extend(fold_blobs);
    }
    blobs.append(&mut layout.blobs);
    let record = s
        .store
        .create_submission(NewSubmission {
            dataset_id: d.id,
            split_id: req.split_id,
            name: req.name,
            owner: who.name.clone(),
            by_admin: who.admin,
            files: file_shas,
            workflow_elements: d.workflow_elements.clone(),
            blobs,
            folds: new_folds,
            stop_on_failure: req.stop_on_failure,
        })
        .await?;
    if let Some(url) = req.webhook {
        let hook = (crate::store::HookKind::Submission, record.id, url);
        super::webhooks::subscribe(&s, &who, vec![hook]).await?;
    }
    s.master.wake();
    let held = hold.map(|(code, reason)| json!({"code": code, "reason": reason}));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "submission": record, "held": held })),
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resubmit {
    /// `retrain`: rerun the folds even if they ended well (or still run); `files`: replace
    /// the files, then rerun. Without: rerun only the folds that ended in ERROR.
    force: Option<String>,
    files: Option<BTreeMap<String, String>>,
    /// Only these submission folds (default: all of the submission's).
    folds: Option<Vec<SubmissionFoldId>>,
}

pub async fn resubmit(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<SubmissionId>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let req: Resubmit = super::folds::optional_json(&body)?;
    visible(&s, &who, Resource::Submission(id)).await?;
    recorded(&s).await?;
    let sub = s.store.submission(id).await?;
    let force = req.force.as_deref();
    let new_files = match (force, &req.files) {
        (Some("files"), Some(files)) => {
            let d = s.store.dataset(sub.dataset_id).await?;
            let required = required_files(&d).map_err(ApiError::bad_request)?;
            Some(decode_files(files, &required)?)
        }
        (Some("files"), None) => {
            return Err(ApiError::bad_request(
                "force \"files\" needs files (name → base64)",
            ))
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "files are replaced only with force \"files\"",
            ))
        }
        (None | Some("retrain"), None) => None,
        (Some(other), None) => {
            return Err(ApiError::bad_request(format!(
                "force: {other:?} is not one of \"retrain\", \"files\""
            )))
        }
    };
    // Counted before anything is built from them, then looked up in sets.
    if let Some(asked) = &req.folds {
        check_count("folds", asked.len(), "folds", MAX_SUBMISSION_FOLDS)?;
    }
    let only: Option<std::collections::HashSet<_>> =
        req.folds.as_ref().map(|f| f.iter().copied().collect());
    if let Some(asked) = &req.folds {
        let of_sub: std::collections::HashSet<_> = sub.folds.iter().map(|sf| sf.id).collect();
        if let Some(bad) = asked.iter().find(|f| !of_sub.contains(*f)) {
            return Err(ApiError::bad_request(format!(
                "folds: {bad} is not a fold of submission {id}"
            )));
        }
    }
    let file_shas = new_files.as_ref().map(|files| {
        files
            .iter()
            .map(|(n, d)| (n.clone(), sha256_hex(d)))
            .collect::<BTreeMap<_, _>>()
    });
    let mut reruns = Vec::new();
    for sf in &sub.folds {
        let chosen = only.as_ref().is_none_or(|only| only.contains(&sf.id));
        if !chosen || (force.is_none() && sf.state != Phase::Error) {
            continue;
        }
        let mut spec = s.store.fold(sf.fold_id).await?.spec;
        if let Some(shas) = &file_shas {
            let (fold_json, base): (Vec<InputRef>, Vec<InputRef>) = spec
                .inputs
                .into_iter()
                .filter(|i| !i.name.starts_with(&format!("{SUBMISSION_DIR}/")))
                .partition(|i| i.name == submission::FOLD_JSON);
            let fold_json_sha = fold_json.first().map(|i| i.sha256.clone());
            spec.inputs = fold_inputs(&base, shas, &fold_json_sha.unwrap_or_default());
        }
        reruns.push(Rerun {
            id: sf.id,
            replaces: sf.fold_id,
            held: held(&s, &sub.owner, &spec),
            spec,
        });
    }
    let rerun_ids: Vec<SubmissionFoldId> = reruns.iter().map(|r| r.id).collect();
    if reruns.is_empty() && new_files.is_none() {
        return Ok(Json(json!({ "rerun": rerun_ids, "submission": sub })));
    }
    let cause = match force {
        Some(f) => format!("resubmitted (force {f})"),
        None => "resubmitted (folds in ERROR)".to_string(),
    };
    let files = new_files.map(|f| (file_shas.unwrap_or_default(), f.into_values().collect()));
    let cancels = s
        .store
        .rerun_submission_folds(id, who.name.clone(), who.admin, cause, reruns, files)
        .await?;
    for c in cancels {
        s.master.cancel(c);
    }
    s.master.wake();
    Ok(Json(
        json!({ "rerun": rerun_ids, "submission": s.store.submission(id).await? }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    dataset_id: Option<i64>,
    after: Option<SubmissionId>,
    limit: Option<u32>,
}

/// `GET /submissions[?dataset_id=N]`: one page of the submissions the caller sees (their own;
/// an admin all) in id order, each with its folds' ids and states, light; `next` is the
/// `after` of the next page.
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(super::folds::bad_query)?;
    let limit = super::folds::page_limit(q.limit)?;
    recorded(&s).await?;
    let (subs, next) = s
        .store
        .list_submissions(&who.scope(), q.dataset_id, q.after, limit)
        .await?;
    let rows: Vec<Value> = subs
        .into_iter()
        .map(|sub| {
            let mut states: BTreeMap<&str, usize> = BTreeMap::new();
            for f in &sub.folds {
                *states.entry(f.state.as_str()).or_default() += 1;
            }
            let folds: Vec<Value> = sub
                .folds
                .iter()
                .map(|f| json!({"id": f.id, "fold_index": f.fold_index, "client_id": f.client_id, "state": f.state}))
                .collect();
            json!({
                "id": sub.id, "dataset_id": sub.dataset_id, "split_id": sub.split_id,
                "name": sub.name, "owner": sub.owner, "created_at": sub.created_at,
                "states": states, "folds": folds,
            })
        })
        .collect();
    Ok(Json(json!({ "submissions": rows, "next": next })))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<SubmissionId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::Submission(id)).await?;
    recorded(&s).await?;
    let mut sub = s.store.submission(id).await?;
    for sf in &mut sub.folds {
        sf.live = live_phase(&s, sf).await?;
    }
    // Why a TODO fold waits: its queue fold's state and reason.
    let mut queue = serde_json::Map::new();
    for sf in sub.folds.iter().filter(|f| f.state == Phase::Todo) {
        let f = s.store.fold(sf.fold_id).await?;
        queue.insert(
            sf.id.to_string(),
            json!({"fold_id": f.id, "state": f.state, "reason": f.reason}),
        );
    }
    Ok(Json(json!({ "submission": sub, "waiting": queue })))
}

pub async fn show_fold(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<SubmissionFoldId>,
) -> ApiResult<Json<Value>> {
    visible(&s, &who, Resource::SubmissionFold(id)).await?;
    recorded(&s).await?;
    let (mut sf, sub, runs) = s.store.submission_fold(id).await?;
    sf.live = live_phase(&s, &sf).await?;
    let fold = s.store.fold(sf.fold_id).await?;
    let log = String::from_utf8_lossy(&s.store.log(sf.fold_id).await?).into_owned();
    let runs: Vec<Value> = runs
        .into_iter()
        .map(|(run, fold_id, cause)| json!({"run": run, "fold_id": fold_id, "cause": cause}))
        .collect();
    Ok(Json(json!({
        "submission_fold": sf,
        "submission": sub,
        "fold": fold,
        "runs": runs,
        "log": log,
    })))
}

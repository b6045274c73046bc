//! `GET /folds/{id}/provenance[?attempt=N]`: what produced an attempt's result (the newest
//! attempt with a record, or attempt N of the fold); `POST /folds/{id}/rerun`: a new fold
//! from exactly such a record. Both see only the caller's folds (another owner's answers 404
//! as missing).

use super::folds::{bad_query, optional_json, submit_specs};
use super::{visible, ApiError, ApiState};
use crate::model::provenance::{self, Provenance};
use crate::model::{AttemptId, FoldId, FoldSpec, Resources};
use crate::store::{Principal, Resource, Scope};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProvenanceQuery {
    attempt: Option<AttemptId>,
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
    q: Result<Query<ProvenanceQuery>, QueryRejection>,
) -> ApiResult<Json<Provenance>> {
    let Query(q) = q.map_err(bad_query)?;
    visible(&s, &who, Resource::Fold(id)).await?;
    Ok(Json(s.store.provenance(id, q.attempt).await?))
}

/// The body of `POST /folds/{id}/rerun` (optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// The attempt whose record to rerun (default: the newest with one).
    attempt: Option<AttemptId>,
    /// Values of the record's redacted secrets (all of them, and only those).
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The fold a record reruns: the original fold's queue, priority, retries and expressions;
/// the record's argv, environment (secrets given again), inputs by sha, image pinned by id,
/// and granted limits; no dependencies (its inputs are fixed already).
fn rerun_spec(
    original: &FoldSpec,
    p: &Provenance,
    env: &BTreeMap<String, String>,
) -> Result<FoldSpec, String> {
    let env = provenance::rerun_env(p, env)?;
    let image = match (p.executed.executor.as_deref(), &p.executed.image) {
        (_, None) => None,
        (Some("process"), Some(_)) => None,
        (_, Some(image)) => Some(provenance::pinned_image(p).ok_or_else(|| {
            format!(
                "attempt {} recorded no image id for {image:?} (its agent is older than \
                 provenance): it cannot be rerun pinned",
                p.attempt
            )
        })?),
    };
    let mut spec = original.clone();
    spec.command = p.argv.clone();
    spec.env = env;
    spec.inputs = provenance::inputs(p);
    spec.image = image;
    spec.after.clear();
    spec.inputs_from.clear();
    spec.resources = Resources {
        cpus: p.limits.cpus,
        memory: p.limits.memory,
        gpus: p.limits.gpus.len() as u32,
    };
    spec.soft_time_limit = p.limits.soft_time_limit_ms;
    spec.hard_time_limit = p.limits.hard_time_limit_ms;
    Ok(spec)
}

pub async fn rerun(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: RerunBody = optional_json(&body)?;
    visible(&s, &who, Resource::Fold(id)).await?;
    let fold = s.store.fold(id).await?;
    let record = s.store.provenance(id, body.attempt).await?;
    let spec = rerun_spec(&fold.spec, &record, &body.env).map_err(ApiError::bad_request)?;
    // The record's inputs are the fold's own: its owner may use them again, as long as they
    // are still stored (an input passed on from another fold is owned from now on).
    let mut shas = Vec::with_capacity(spec.inputs.len());
    for input in &spec.inputs {
        if !s
            .store
            .may_use_blob(&Scope::All, input.sha256.clone())
            .await?
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "input {:?} of attempt {} ({}) is no longer stored (purged): it cannot be rerun",
                    input.name, record.attempt, input.sha256
                ),
            ));
        }
        shas.push(input.sha256.clone());
    }
    s.store.own_blobs(who.name.clone(), shas).await?;
    let image = spec.image.clone();
    let (ids, held) = submit_specs(&s, &who, vec![spec], 1).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": ids[0],
            "from": { "fold": id, "attempt": record.attempt },
            "image": image,
            "held": held,
        })),
    ))
}

//! Hold, release and remove one fold (`POST /folds/{id}/hold|release|remove`); the
//! `*_fold` functions are what `bulk.rs` applies to each fold of a bulk action.

use super::folds::{optional_json, owned};
use super::ApiError;
use super::ApiState;
use crate::model::limits::MAX_REASON;
use crate::model::{FoldId, HoldCode};
use crate::store::{FoldRecord, Principal, ReleaseChanges};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    reason: Option<String>,
}

pub async fn hold(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    owned(&s, &who, id).await?;
    let body: HoldBody = optional_json(&body)?;
    let reason = hold_reason(&who, body.reason)?;
    hold_fold(&s, id, reason).await?;
    Ok(Json(json!({ "fold": s.store.fold(id).await? })))
}

/// A hold's reason: the one given (within its limit), else who held it.
pub(super) fn hold_reason(who: &Principal, reason: Option<String>) -> ApiResult<String> {
    if let Some(reason) = &reason {
        crate::model::limits::check_text("reason", reason, MAX_REASON)?;
    }
    Ok(reason.unwrap_or_else(|| format!("held by {}", who.name)))
}

/// Holds a fold the caller may change; a running one is killed.
pub(super) async fn hold_fold(s: &ApiState, id: FoldId, reason: String) -> ApiResult<()> {
    if let Some(cancel) = s.store.hold(id, HoldCode::User, reason).await? {
        s.master.cancel(cancel);
    }
    Ok(())
}

/// Releases a held fold, optionally with new requests (`{"memory": "2G", "hard_time_limit":
/// "1h"}`); a request no runner could meet is refused and changes nothing.
pub async fn release(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let fold = owned(&s, &who, id).await?;
    let changes: ReleaseChanges = optional_json(&body)?;
    release_fold(&s, &who, &fold, changes).await?;
    Ok(Json(json!({ "fold": s.store.fold(id).await? })))
}

/// Releases a held fold the caller may change, with new requests; refused (nothing changed)
/// when no runner could meet them.
pub(super) async fn release_fold(
    s: &ApiState,
    who: &Principal,
    fold: &FoldRecord,
    changes: ReleaseChanges,
) -> ApiResult<()> {
    let spec = changes.apply(&fold.spec).map_err(ApiError::bad_request)?;
    if let Some(never) = s.master.unmatchable(&fold.owner, &spec) {
        return Err(ApiError::bad_request(format!(
            "fold {} would still never run: {}",
            fold.id, never.reason
        )));
    }
    s.store.release(fold.id, who.name.clone(), changes).await?;
    s.master.wake();
    Ok(())
}

pub async fn remove(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
) -> ApiResult<Json<Value>> {
    owned(&s, &who, id).await?;
    remove_fold(&s, &who, id).await?;
    Ok(Json(json!({ "fold": s.store.fold(id).await? })))
}

/// Removes a fold the caller may change; a running one is killed.
pub(super) async fn remove_fold(s: &ApiState, who: &Principal, id: FoldId) -> ApiResult<()> {
    if let Some(cancel) = s.store.remove(id, who.name.clone()).await? {
        s.master.cancel(cancel);
    }
    Ok(())
}

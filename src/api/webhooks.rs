//! Webhooks (README "Webhooks"): the `webhook` field of submit bodies is checked here (its
//! form, then every address its host resolves to) and subscribed once the targets exist;
//! `GET /webhooks` lists the caller's with their delivery state; `GET /webhook-secret` gives
//! the calling token's signing secret.

use super::{ApiError, ApiState};
use crate::model::limits::{DEFAULT_PAGE, MAX_PAGE};
use crate::store::{HookKind, Principal};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

/// Checks a submitted webhook URL: its form, then the addresses of its host against
/// `serve --webhook-allow` (400 naming `field`).
pub(super) async fn check(s: &ApiState, field: &str, url: &str) -> ApiResult<()> {
    let parsed = crate::webhooks::guard::check_url(field, url)?;
    check_host(s, field, &parsed).await
}

/// The second half of [`check`]: the addresses of a checked URL's host.
pub(super) async fn check_host(s: &ApiState, field: &str, url: &reqwest::Url) -> ApiResult<()> {
    crate::webhooks::guard::resolve(field, url, &s.limits.webhook_allow)
        .await
        .map_err(ApiError::bad_request)?;
    Ok(())
}

/// Subscribes each (kind, target, url) for `who` (the targets are theirs: just made).
pub(super) async fn subscribe(
    s: &ApiState,
    who: &Principal,
    hooks: Vec<(HookKind, i64, String)>,
) -> ApiResult<()> {
    if !hooks.is_empty() {
        s.store
            .add_webhooks(who.token, who.name.clone(), hooks)
            .await?;
    }
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `fold`, `array` or `submission`, with `id`: only that target's webhooks.
    kind: Option<String>,
    id: Option<i64>,
    /// Webhooks whose id is greater (paging: the answer's `next`).
    after: Option<i64>,
    limit: Option<u32>,
}

/// The webhooks of an array (or a sweep, which is one): `webhook` for the array's end, and
/// `spec.webhook` (taken out of the spec, which does not run it) for each of its folds' ends.
/// Both are checked; the folds' is returned.
pub(super) async fn check_array_hooks(
    s: &ApiState,
    webhook: &Option<String>,
    spec: &mut crate::model::FoldSpec,
) -> ApiResult<Option<String>> {
    let fold_hook = spec.webhook.take();
    for (field, url) in [("webhook", webhook), ("spec.webhook", &fold_hook)] {
        if let Some(url) = url {
            check(s, field, url).await?;
        }
    }
    Ok(fold_hook)
}

/// Subscribes an array's webhooks (see `check_array_hooks`) once it and its folds exist.
pub(super) async fn subscribe_array(
    s: &ApiState,
    who: &Principal,
    array: i64,
    folds: &[i64],
    webhook: Option<String>,
    fold_hook: Option<String>,
) -> ApiResult<()> {
    let mut hooks: Vec<(HookKind, i64, String)> = webhook
        .map(|url| (HookKind::Array, array, url))
        .into_iter()
        .collect();
    if let Some(url) = fold_hook {
        hooks.extend(folds.iter().map(|f| (HookKind::Fold, *f, url.clone())));
    }
    subscribe(s, who, hooks).await
}

/// `GET /webhooks`: the caller's webhooks (an admin's: everyone's), oldest first.
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let target = match (q.kind.as_deref(), q.id) {
        (None, None) => None,
        (Some(kind), Some(id)) => Some((parse_kind(kind)?, id)),
        _ => {
            return Err(ApiError::bad_request(
                "kind and id: give both (e.g. ?kind=fold&id=12) or neither",
            ))
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is not between 1 and {MAX_PAGE}"
        )));
    }
    let hooks = s
        .store
        .webhooks(who.scope(), target, q.after.unwrap_or(0), limit)
        .await?;
    let next = (hooks.len() == limit as usize)
        .then(|| hooks.last().map(|h| h.id))
        .flatten();
    Ok(Json(json!({ "webhooks": hooks, "next": next })))
}

fn parse_kind(kind: &str) -> ApiResult<HookKind> {
    match kind {
        "fold" => Ok(HookKind::Fold),
        "array" => Ok(HookKind::Array),
        "submission" => Ok(HookKind::Submission),
        other => Err(ApiError::bad_request(format!(
            "kind: {other:?} is not fold, array or submission"
        ))),
    }
}

/// `GET /webhook-secret`: the secret that signs the webhooks this token asks for.
pub async fn secret(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let secret = s.store.webhook_secret(who.token).await?;
    Ok(Json(json!({ "token": who.token, "secret": secret })))
}

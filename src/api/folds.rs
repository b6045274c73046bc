//! Fold and queue endpoints: submit, list, show, log, outputs, analyze, the queue's counts.
//! Uploads are in `blobs.rs`; hold, release and remove in `holds.rs`.

use super::shared::blob_response;
use super::{visible, ApiError, ApiState};
use crate::master::pending_of;
use crate::model::limits::{DEFAULT_PAGE, MAX_BATCH_FOLDS, MAX_PAGE, MAX_WEBHOOK_HOSTS};
use crate::model::{FoldId, FoldSpec, FoldState, HoldCode};
use crate::store::{FoldFilter, FoldRecord, Principal, Resource};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

/// Validates specs and checks each against the inventory's capacity; folds no runner could
/// ever run are stored held, with the reason. Each spec becomes `copies` folds in a row
/// (`POST /folds/batch`'s `count`), validated and checked once.
pub(super) async fn submit_specs(
    s: &ApiState,
    who: &Principal,
    specs: Vec<FoldSpec>,
    copies: usize,
) -> ApiResult<(Vec<FoldId>, Vec<Value>)> {
    if specs.is_empty() {
        return Err(ApiError::bad_request("folds: give at least one fold"));
    }
    if copies == 0 {
        return Err(ApiError::bad_request(
            "count: at least 1 (how many folds each spec becomes)",
        ));
    }
    let total = specs.len().saturating_mul(copies);
    crate::model::limits::check_count("folds", total, "folds", MAX_BATCH_FOLDS)?;
    if copies > 1 {
        // Copies are stored one by one: bounded as a batch's body is.
        crate::model::limits::check_copies("count: the folds' specs", &specs, copies)?;
    }
    let mut checked = Vec::with_capacity(total);
    let mut hooks = Vec::new();
    // Each distinct webhook URL's form is checked once; each distinct host (and port) is
    // looked up once, with the field that named it first.
    let mut urls: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut hosts: Vec<((String, Option<u16>), String, reqwest::Url)> = Vec::new();
    for (i, mut spec) in specs.into_iter().enumerate() {
        spec.validate().map_err(|e| {
            if i == 0 {
                e
            } else {
                e.prefixed(&format!("fold {i}"))
            }
        })?;
        // The webhook is the fold's subscription, not part of what it runs.
        if let Some(url) = spec.webhook.take() {
            if urls.insert(url.clone()) {
                let field = if i == 0 {
                    "webhook".to_string()
                } else {
                    format!("fold {i}: webhook")
                };
                let parsed = crate::webhooks::guard::check_url(&field, &url)?;
                let host = (
                    parsed.host_str().unwrap_or_default().to_string(),
                    parsed.port_or_known_default(),
                );
                if !hosts.iter().any(|(h, _, _)| *h == host) {
                    crate::model::limits::check_count(
                        "webhook",
                        hosts.len() + 1,
                        "distinct hosts",
                        MAX_WEBHOOK_HOSTS,
                    )?;
                    hosts.push((host, field, parsed));
                }
            }
            hooks.extend((0..copies).map(|k| (i * copies + k, url.clone())));
        }
        let held = s
            .master
            .unmatchable(&who.name, &spec)
            .map(|u| (u.code, u.reason));
        for _ in 1..copies {
            checked.push((spec.clone(), held.clone()));
        }
        checked.push((spec, held));
    }
    // Their hosts are looked up at once, not one after the other (a lookup may take seconds).
    futures_util::future::try_join_all(
        hosts
            .iter()
            .map(|(_, field, url)| super::webhooks::check_host(s, field, url)),
    )
    .await?;
    let reasons: Vec<Option<(HoldCode, String)>> = checked.iter().map(|(_, u)| u.clone()).collect();
    let ids = s.store.submit(who.name.clone(), who.admin, checked).await?;
    let hooks = hooks
        .into_iter()
        .map(|(i, url)| (crate::store::HookKind::Fold, ids[i], url))
        .collect();
    super::webhooks::subscribe(s, who, hooks).await?;
    s.master.wake();
    let held = ids
        .iter()
        .zip(reasons)
        .filter_map(|(id, r)| {
            r.map(|(code, reason)| json!({"id": id, "code": code, "reason": reason}))
        })
        .collect();
    Ok((ids, held))
}

pub async fn submit(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<FoldSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(spec) = body?;
    let (ids, held) = submit_specs(&s, &who, vec![spec], 1).await?;
    let fold = s.store.fold(ids[0]).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": ids[0], "fold": fold, "held": held })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    folds: Vec<FoldSpec>,
    /// How many folds each spec becomes, one after another (default 1): `{"folds": [spec],
    /// "count": 1000}` submits 1,000 folds without sending the spec 1,000 times. At most
    /// 10,000 folds in all.
    #[serde(default)]
    #[schema(minimum = 1)]
    count: Option<u32>,
}

pub async fn submit_batch(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<Batch>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(batch) = body?;
    let (ids, held) =
        submit_specs(&s, &who, batch.folds, batch.count.unwrap_or(1) as usize).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ids": ids, "held": held })),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated states.
    state: Option<String>,
    queue: Option<String>,
    owner: Option<String>,
    /// Only the folds of this array.
    array: Option<i64>,
    /// Folds changed after this seq, in seq order.
    since: Option<i64>,
    /// Folds whose id is greater, in id order.
    after: Option<FoldId>,
    /// `id` (the default) or `newest`: descending ids, paged by `before`.
    order: Option<String>,
    /// With `order=newest`: folds whose id is smaller.
    before: Option<FoldId>,
    limit: Option<u32>,
}

/// A listing's page size: `limit`, else the default; over the maximum is refused (page on
/// with the answer's `next` instead).
pub(super) fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(ApiError::bad_request("limit: at least 1")),
        Some(n) if n > MAX_PAGE => Err(ApiError::bad_request(format!(
            "limit: {n} is over the maximum page of {MAX_PAGE}; page on with the answer's `next` (see the README, \"Paging\")"
        ))),
        Some(n) => Ok(n),
    }
}

/// A query string that does not parse: 400 naming the parameter.
pub(super) fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = e.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::bad_request(format!("query: {text}"))
}

/// Whose folds a listing may name: an admin anyone's (no `owner`: everyone's), anyone else
/// only its own (no `owner` means theirs; naming another owner is 403).
pub(super) fn listing_owner(who: &Principal, owner: Option<String>) -> ApiResult<Option<String>> {
    match (who.admin, owner) {
        (true, owner) => Ok(owner),
        (false, Some(o)) if o != who.name => Err(ApiError::forbidden(format!(
            "owner: {} may list only its own folds (owner={}); admin tokens list anyone's",
            who.name, who.name
        ))),
        (false, _) => Ok(Some(who.name.clone())),
    }
}

/// Comma-separated fold states (empty: any).
pub(super) fn parse_states(text: Option<&str>) -> ApiResult<Vec<FoldState>> {
    text.into_iter()
        .flat_map(|s| s.split(','))
        .filter(|p| !p.is_empty())
        .map(|part| {
            FoldState::parse(part).ok_or_else(|| {
                ApiError::bad_request(format!("state: unknown state {part:?} (one of waiting, idle, assigned, running, done, failed, held, removed)"))
            })
        })
        .collect()
}

/// `GET /folds`: one page, in id order (`after`) or "changed since" order (`since`). A
/// non-admin lists only their own folds (no `owner` means theirs; naming another owner is 403).
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = page_limit(q.limit)?;
    if q.since.is_some() && q.after.is_some() {
        return Err(ApiError::bad_request(
            "give since (changed since, in seq order) or after (in id order), not both",
        ));
    }
    let newest_first = match q.order.as_deref() {
        None | Some("id") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order: {other:?} is not an order (id or newest)"
            )))
        }
    };
    if newest_first && (q.since.is_some() || q.after.is_some()) {
        return Err(ApiError::bad_request(
            "order=newest pages with before, not since or after",
        ));
    }
    if !newest_first && q.before.is_some() {
        return Err(ApiError::bad_request("before pages order=newest only"));
    }
    let owner = listing_owner(&who, q.owner)?;
    let filter = FoldFilter {
        states: parse_states(q.state.as_deref())?,
        array: q.array,
        queue: q.queue,
        owner,
        since: q.since,
        after: q.after,
        newest_first,
        before: q.before,
        limit: Some(limit),
    };
    let page = s.store.list_folds(filter).await?;
    Ok(Json(json!(page)))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
) -> ApiResult<Json<Value>> {
    let fold = owned(&s, &who, id).await?;
    let attempts = s.store.attempts(id).await?;
    let events = s.store.events(id).await?;
    let progress = fold.current_attempt.and_then(|a| s.master.progress(a));
    let why = match fold.state {
        // A standby knows no runners: only the active master can say why a fold waits.
        _ if s.master.is_standby() => None,
        FoldState::Idle | FoldState::Held => Some(s.master.explain(&pending_of(
            fold.id,
            &fold.owner,
            &fold.spec,
            fold.submitted_at,
        ))),
        _ => None,
    };
    Ok(Json(
        json!({ "fold": fold, "attempts": attempts, "events": events, "progress": progress, "why_pending": why }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Output offset to start from (see `api::follow`).
    offset: Option<String>,
    /// `1`: stream the log while the fold runs.
    follow: Option<String>,
}

/// `GET /folds/{id}/log[?offset=N][&follow=1]`: the log from an offset (a running fold's as
/// its agent has it now, else the recorded one), or followed while the fold runs
/// (`api::follow`). Only its owner (or an admin) sees it.
pub async fn log(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(bad_query)?;
    let offset = q
        .offset
        .as_deref()
        .map(|t| {
            t.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "offset: {t:?} is not a byte offset (a whole number, 0 or more)"
                ))
            })
        })
        .transpose()?;
    let follow = match q.follow.as_deref().map(str::trim) {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow: {other:?} is not 1 or 0"
            )))
        }
    };
    visible(&s, &who, Resource::Fold(id)).await?;
    if follow {
        return super::follow::follow(s, &who, id, offset.unwrap_or(0)).await;
    }
    if let Some(now) = super::follow::running(&s, &who, id, offset.unwrap_or(0)).await? {
        return Ok(now);
    }
    match offset {
        Some(offset) => super::follow::stored(&s, id, offset).await,
        None => {
            let body = s.store.log_body(id).await?;
            Ok(blob_response(body, "text/plain; charset=utf-8"))
        }
    }
}

pub async fn output(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path((id, name)): Path<(FoldId, String)>,
) -> ApiResult<Response> {
    crate::model::check_file_name(&name).map_err(ApiError::bad_request)?;
    visible(&s, &who, Resource::Fold(id)).await?;
    let body = s.store.output(id, name).await?;
    Ok(blob_response(body, "application/octet-stream"))
}

/// An optional JSON body: empty means the defaults; anything else must parse, strictly.
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::json_body::check_object(body)?;
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}

/// The fold, if `who` may see it (its owner, or an admin); else 404 as for a missing fold.
pub(super) async fn owned(s: &ApiState, who: &Principal, id: FoldId) -> ApiResult<FoldRecord> {
    visible(s, who, Resource::Fold(id)).await?;
    Ok(s.store.fold(id).await?)
}

/// Counts per queue, owner and state: a non-admin's own rows only.
pub async fn queue(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "counts": s.store.queue_counts(&who.scope()).await? }),
    ))
}

/// `queue analyze`: for a fold that waits, how many runners pass each feasibility step and why
/// the others fail, whether it could run on an empty pool, and its place in line.
pub async fn analyze(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<FoldId>,
) -> ApiResult<Json<Value>> {
    use crate::scheduler::Step;
    let fold = owned(&s, &who, id).await?;
    let me = pending_of(fold.id, &fold.owner, &fold.spec, fold.submitted_at);
    let why = s.master.explain(&me);
    let mut left = why.runners;
    let steps: Vec<Value> = Step::ALL
        .into_iter()
        .map(|step| {
            let rejected: Vec<&crate::scheduler::Rejection> = why.rejections.iter().filter(|r| r.step == step).collect();
            left -= rejected.iter().map(|r| r.runners).sum::<usize>();
            json!({ "step": step, "passed": left, "rejected": rejected.iter().map(|r| r.runners).sum::<usize>(),
                    "why": rejected.iter().map(|r| r.detail.clone()).collect::<Vec<_>>() })
        })
        .collect();
    let (place, idle) = s.master.place_in_line(&me);
    let place = (fold.state == FoldState::Idle).then_some(place);
    Ok(Json(json!({
        "fold": id,
        "state": fold.state,
        "reason": fold.reason,
        "runners": why.runners,
        "steps": steps,
        "matching_now": left,
        "outranked": why.outranked,
        "matches_empty_pool": why.matches_empty_pool,
        "summary": crate::scheduler::state_summary(id, fold.state, fold.reason.as_deref(), fold.runner.as_deref(), &why.summary).unwrap_or(why.summary),
        "place_in_line": place,
        "owner_cap": s.master.owner_cap().map(|cap| json!({
            "owner": fold.owner,
            "cap": cap,
            "running": s.master.owners().iter().find(|o| o.owner == fold.owner).map(|o| o.running).unwrap_or(0),
        })),
        "idle": idle,
    })))
}

/// Fair share per owner (`queue status --owners`): a non-admin's own row only.
pub async fn owners(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let fair = s.master.fair_share().is_some();
    let scope = who.scope();
    let owners: Vec<_> = s
        .master
        .owners()
        .into_iter()
        .filter(|o| scope.sees(Some(&o.owner)))
        .collect();
    Ok(Json(
        json!({ "fair_share": fair, "owner_cap": s.master.owner_cap(), "owners": owners, "counts": s.store.queue_counts(&scope).await? }),
    ))
}

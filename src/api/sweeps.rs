//! Parameter sweeps (`submit --sweep params.toml`, README "Sweeps"): an array whose points
//! carry values (`model::sweep`), ranked by a metric of their `metrics.json`, kept to the best
//! N, stopped early. A sweep is its owner's (README "Tenancy"): anyone else gets 404.

use super::{ApiError, ApiState};
use crate::model::limits::check_copies;
use crate::model::sweep::{from_json, point_spec, rank};
use crate::model::FoldSpec;
use crate::store::{NewSweep, Principal, SweepRecord};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSweepBody {
    spec: FoldSpec,
    /// The sweep document: `grid`, `random`, `stop`, `cap` (as the TOML file, in JSON).
    sweep: Value,
    /// When a point fails with its own error, the points not started are removed.
    #[serde(default)]
    stop_on_failure: bool,
    /// A URL called once every point of the sweep has ended (README "Webhooks");
    /// `spec.webhook`: each point's end.
    webhook: Option<String>,
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewSweepBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(mut body) = body?;
    body.spec.validate()?;
    let fold_hook = super::webhooks::check_array_hooks(&s, &body.webhook, &mut body.spec).await?;
    let sweep = from_json(&body.sweep).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_copies("sweep: its folds' specs", &body.spec, sweep.points.len())?;
    // Each point's spec, with its values, must be a valid fold (variables' sizes, inputs).
    let placeholder = "0".repeat(64);
    for (i, point) in sweep.points.iter().enumerate() {
        point_spec(&body.spec, point, placeholder.clone())
            .validate()
            .map_err(|e| ApiError::bad_request(format!("sweep: point {i}: {e}")))?;
    }
    let held = super::shared::held(&s, &who.name, &body.spec);
    let points = sweep.points.clone();
    let (id, ids) = s
        .store
        .submit_sweep(
            who.name.clone(),
            who.admin,
            body.spec,
            held.clone(),
            NewSweep {
                names: sweep.names,
                points: sweep.points,
                stop: sweep.stop,
                cap: sweep.cap,
                stop_on_failure: body.stop_on_failure,
            },
        )
        .await?;
    super::webhooks::subscribe_array(&s, &who, id, &ids, body.webhook, fold_hook).await?;
    s.master.wake();
    let folds: Vec<Value> = ids
        .iter()
        .zip(points)
        .enumerate()
        .map(|(index, (id, params))| json!({ "id": id, "index": index, "params": params }))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "sweep": id,
            "cap": sweep.cap,
            "folds": folds,
            "held": held.map(|(code, reason)| json!({ "code": code, "reason": reason })),
        })),
    ))
}

/// The sweep, if `who` may see it; else 404 as for a missing one.
async fn visible_sweep(s: &ApiState, who: &Principal, id: i64) -> ApiResult<SweepRecord> {
    let found = s.store.sweep(id).await;
    super::shared::owned_or_missing(who, "sweep", id, found, |sw| &sw.owner)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RankQuery {
    /// Rank the points by this metric of their `metrics.json`.
    metric: Option<String>,
    /// `min` (the default: lowest first) or `max`.
    order: Option<String>,
}

fn order_is_max(order: Option<&str>) -> ApiResult<bool> {
    match order {
        None | Some("min") => Ok(false),
        Some("max") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "order: {other:?} is not min or max"
        ))),
    }
}

fn check_metric(metric: &str) -> ApiResult<()> {
    if metric.is_empty() {
        return Err(ApiError::bad_request("metric: give a metric's name"));
    }
    crate::model::limits::check_text("metric", metric, 256)?;
    Ok(())
}

/// The positions of `sweep`'s points in rank order by `metric`, and how many have it.
fn ranked(sweep: &SweepRecord, metric: &str, max: bool) -> (Vec<usize>, usize) {
    let metrics: Vec<_> = sweep.points.iter().map(|p| p.metrics.as_ref()).collect();
    let with = metrics
        .iter()
        .filter(|m| m.is_some_and(|m| m.get(metric).is_some_and(|v| !v.is_nan())))
        .count();
    (rank(&metrics, metric, max), with)
}

/// `GET /sweeps/{id}[?metric=NAME&order=min|max]`: the sweep and its points; with a metric,
/// the points in rank order, each with its `rank` (none for points without the metric).
pub async fn show(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
    query: Result<Query<RankQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let max = order_is_max(q.order.as_deref())?;
    let mut sweep = visible_sweep(&s, &who, id).await?;
    let points = std::mem::take(&mut sweep.points);
    let mut out: Vec<Value> = Vec::with_capacity(points.len());
    match &q.metric {
        Some(metric) => {
            check_metric(metric)?;
            sweep.points = points;
            let (order, with) = ranked(&sweep, metric, max);
            for (r, i) in order.into_iter().enumerate() {
                let mut p = json!(sweep.points[i]);
                p["rank"] = if r < with { json!(r + 1) } else { Value::Null };
                out.push(p);
            }
            sweep.points.clear();
        }
        None => out.extend(points.iter().map(|p| json!(p))),
    }
    Ok(Json(json!({ "sweep": sweep, "points": out })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepBody {
    best: usize,
    metric: String,
    order: Option<String>,
}

/// `POST /sweeps/{id}/keep {"best": N, "metric": NAME, "order": "min"|"max"}`: drops the
/// outputs of every ended point but the best N by the metric (points without it are not
/// among the best).
pub async fn keep(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
    body: Result<Json<KeepBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body?;
    check_metric(&body.metric)?;
    let max = order_is_max(body.order.as_deref())?;
    if body.best == 0 {
        return Err(ApiError::bad_request(
            "best: keep at least 1 point (to drop every output, purge)",
        ));
    }
    let sweep = visible_sweep(&s, &who, id).await?;
    let (order, with) = ranked(&sweep, &body.metric, max);
    let kept: Vec<i64> = order
        .into_iter()
        .take(body.best.min(with))
        .map(|i| sweep.points[i].fold)
        .collect();
    let report = s.store.sweep_drop_outputs(id, kept.clone()).await?;
    Ok(Json(
        json!({ "sweep": id, "kept": kept, "dropped": report }),
    ))
}

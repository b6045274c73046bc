//! The pages. Each calls the handler of its `/api/v1` route with the signed-in principal, so
//! the dashboard shows exactly what the API answers that token (tenancy, validation, paging),
//! then renders it.

use super::render::{encode, Page};
use crate::api::{folds, results, submissions, ApiError, ApiState};
use crate::model::FoldState;
use crate::store::Principal;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The most of a fold's log a page shows (its end).
pub const LOG_TAIL: usize = 64 << 10;
/// The newest events a fold's page lists.
const EVENTS_SHOWN: usize = 50;

type Who = Extension<Principal>;

/// An error of a page: an HTML page with the API's status and message.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        Page::error(self.0.status, &self.0.message)
    }
}

type Out = Result<Response, PageError>;

/// A page's query without its empty fields (a filter form sends them all), re-encoded for the
/// API handler, and as the start of a link to the next page (without the cursor `cursor`).
fn filters(uri: &Uri, cursor: &str) -> Result<(Uri, String), PageError> {
    let Query(pairs): Query<Vec<(String, String)>> =
        Query::try_from_uri(uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let query = |skip: &str| {
        pairs
            .iter()
            .filter(|(k, _)| k != skip)
            .map(|(k, v)| format!("{}={}", encode(k), encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    };
    let api: Uri = format!("/?{}", query(""))
        .parse()
        .map_err(|_| ApiError::bad_request("query: cannot be read"))?;
    Ok((api, query(cursor)))
}

/// The link to the page after `next`, keeping the filters.
fn next_link(path: &str, filters: &str, cursor: &str, next: &Value) -> Value {
    match next.as_i64() {
        Some(n) if filters.is_empty() => json!(format!("{path}?{cursor}={n}")),
        Some(n) => json!(format!("{path}?{filters}&{cursor}={n}")),
        None => Value::Null,
    }
}

/// `/`: the queue by queue, owner and state (the store's counters), and the pool in short.
pub async fn overview(State(s): State<ApiState>, Extension(who): Who) -> Out {
    let since = since(&s);
    let counts = folds::queue(State(s.clone()), Extension(who.clone()))
        .await?
        .0;
    let mut table: BTreeMap<(String, String), [u64; FoldState::ALL.len()]> = BTreeMap::new();
    let mut totals = [0u64; FoldState::ALL.len()];
    for c in counts["counts"].as_array().into_iter().flatten() {
        let (Some(queue), Some(owner), Some(state), Some(n)) = (
            c["queue"].as_str(),
            c["owner"].as_str(),
            c["state"].as_str().and_then(FoldState::parse),
            c["count"].as_u64(),
        ) else {
            continue;
        };
        let i = FoldState::ALL.iter().position(|x| *x == state).unwrap_or(0);
        table.entry((queue.into(), owner.into())).or_default()[i] += n;
        totals[i] += n;
    }
    let rows: Vec<Value> = table
        .into_iter()
        .map(|((queue, owner), cells)| {
            json!({ "queue": queue, "owner": owner, "cells": cells, "total": cells.iter().sum::<u64>() })
        })
        .collect();
    let runners = s.master.runners();
    let pool = json!({
        "runners": runners.len(),
        "ready": runners.iter().filter(|r| r.state == "ready").count(),
        "slots_total": runners.iter().map(|r| r.slots_total).sum::<u32>(),
        "slots_used": runners.iter().map(|r| r.slots_used).sum::<u32>(),
    });
    Ok(Page::new("overview", "Queue")
        .data(json!({
            "states": FoldState::ALL.map(FoldState::as_str),
            "rows": rows,
            "totals": totals,
            "total": totals.iter().sum::<u64>(),
            "pool": pool,
        }))
        .render(&who, since))
}

/// `/ui/runners`: the `GET /runners` answer.
pub async fn runners(State(s): State<ApiState>, Extension(who): Who) -> Out {
    let since = since(&s);
    let view = crate::api::runners(State(s), Extension(who.clone()))
        .await
        .0;
    Ok(Page::new("runners", "Runners")
        .data(view)
        .render(&who, since))
}

/// `/ui/folds`: one page of `GET /folds` (same filters and cursor), linking the next.
pub async fn folds(
    State(s): State<ApiState>,
    Extension(who): Who,
    OriginalUri(uri): OriginalUri,
) -> Out {
    let since = since(&s);
    let (api, kept) = filters(&uri, "after")?;
    let page = folds::list(State(s), Extension(who.clone()), Query::try_from_uri(&api))
        .await?
        .0;
    let q: BTreeMap<String, String> = Query::try_from_uri(&api)
        .map(|Query(q)| q)
        .unwrap_or_default();
    Ok(Page::new("folds", "Folds")
        .data(json!({
            "folds": page["folds"],
            "next": next_link("/ui/folds", &kept, "after", &page["next"]),
            "q": q,
            "states": FoldState::ALL.map(FoldState::as_str),
        }))
        .render(&who, since))
}

/// `/ui/folds/{id}`: `GET /folds/{id}` with its attempts and events, `GET /folds/{id}/analyze`
/// and the end of its log (the page's script follows both).
pub async fn fold(State(s): State<ApiState>, Extension(who): Who, Path(id): Path<i64>) -> Out {
    let since = since(&s);
    let shown = folds::show(State(s.clone()), Extension(who.clone()), Path(id))
        .await?
        .0;
    let analyze = folds::analyze(State(s.clone()), Extension(who.clone()), Path(id))
        .await?
        .0;
    let log = s.store.log(id).await?;
    let cut = log.len().saturating_sub(LOG_TAIL);
    let log = String::from_utf8_lossy(&log[cut..]).into_owned();
    let mut events = shown["events"].as_array().cloned().unwrap_or_default();
    let skipped = events.len().saturating_sub(EVENTS_SHOWN);
    events.drain(..skipped);
    let state = shown["fold"]["state"].as_str().unwrap_or("");
    let waiting = matches!(state, "idle" | "held");
    Ok(Page::new("fold", &format!("Fold {id}"))
        .data(json!({
            "fold": shown["fold"],
            "attempts": shown["attempts"],
            "progress": shown["progress"],
            "events": events,
            "events_skipped": skipped,
            "analyze": analyze,
            "waiting": waiting,
            "log_text": log,
            "log_cut": cut > 0,
        }))
        .render(&who, since))
}

/// `/ui/submissions`: one page of `GET /submissions` (`dataset_id`, `after`).
pub async fn submissions(
    State(s): State<ApiState>,
    Extension(who): Who,
    OriginalUri(uri): OriginalUri,
) -> Out {
    let since = since(&s);
    let (api, kept) = filters(&uri, "after")?;
    let page = submissions::list(State(s), Extension(who.clone()), Query::try_from_uri(&api))
        .await?
        .0;
    Ok(Page::new("submissions", "Submissions")
        .data(json!({
            "submissions": page["submissions"],
            "next": next_link("/ui/submissions", &kept, "after", &page["next"]),
        }))
        .render(&who, since))
}

/// `/ui/submissions/{id}`: `GET /submissions/{id}`: its folds, their states and scores.
pub async fn submission(
    State(s): State<ApiState>,
    Extension(who): Who,
    Path(id): Path<i64>,
) -> Out {
    let since = since(&s);
    let shown = submissions::show(State(s), Extension(who.clone()), Path(id))
        .await?
        .0;
    let sub = &shown["submission"];
    let folds: Vec<Value> = sub["folds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let scores: Vec<String> = f["scores"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(phase, _)| *phase != "errors")
                .flat_map(|(phase, by_type)| {
                    by_type
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(move |(kind, x)| {
                            format!(
                                "{phase} {kind} {}",
                                x.as_f64()
                                    .map(|x| format!("{x:.4}"))
                                    .unwrap_or_else(|| x.to_string())
                            )
                        })
                })
                .collect();
            let mut f = f.clone();
            f["score_text"] = json!(scores.join(", "));
            f
        })
        .collect();
    Ok(Page::new("submission", &format!("Submission {id}"))
        .data(json!({ "submission": sub, "folds": folds, "waiting": shown["waiting"] }))
        .render(&who, since))
}

/// `/ui/datasets/{id}/leaderboard`: `GET /datasets/{id}/leaderboard`, a column per phase and
/// score type.
pub async fn leaderboard(
    State(s): State<ApiState>,
    Extension(who): Who,
    Path(id): Path<i64>,
) -> Out {
    let since = since(&s);
    let board = results::leaderboard(State(s), Extension(who.clone()), Path(id))
        .await?
        .0;
    let rows = board["rows"].as_array().cloned().unwrap_or_default();
    let mut columns: Vec<(String, String)> = Vec::new();
    for r in &rows {
        for (phase, by_type) in r["scores"].as_object().into_iter().flatten() {
            for kind in by_type.as_object().into_iter().flatten().map(|(k, _)| k) {
                let c = (phase.clone(), kind.clone());
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = columns
                .iter()
                .map(|(phase, kind)| {
                    let stat = &r["scores"][phase][kind];
                    match (stat["mean"].as_f64(), stat["std"].as_f64()) {
                        (Some(m), Some(sd)) => format!("{m:.4} ± {sd:.4}"),
                        (Some(m), None) => format!("{m:.4}"),
                        _ => String::new(),
                    }
                })
                .collect();
            json!({ "rank": r["rank"], "submission_id": r["submission_id"], "name": r["name"],
                    "owner": r["owner"], "folds": r["folds"], "cells": cells })
        })
        .collect();
    let columns: Vec<String> = columns.iter().map(|(p, k)| format!("{p} {k}")).collect();
    Ok(
        Page::new("leaderboard", &format!("Leaderboard of dataset {id}"))
            .data(
                json!({ "dataset_id": id, "columns": columns, "rows": rows, "std": board["std"] }),
            )
            .render(&who, since),
    )
}

/// The newest event's seq, read before a page's data: its script follows events from there.
fn since(s: &ApiState) -> i64 {
    *s.store.subscribe().borrow()
}

/// Paths under `/ui/` that are not pages.
pub async fn not_found() -> Response {
    Page::error(StatusCode::NOT_FOUND, "no such page")
}

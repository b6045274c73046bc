//! `POST /folds/bulk/{hold,release,remove}`: an action on every fold matching a constraint, as
//! `condor_hold -constraint` does. The constraint names at least one of owner, queue, state or
//! ids; a non-admin's constraint is always narrowed to its own folds. Folds are visited a page
//! at a time in id order (so folds changed meanwhile are neither skipped nor visited twice) and
//! each goes through the same path as the one-fold routes; at most `MAX_BULK` a call, the
//! answer saying whether more match.

use super::folds::{listing_owner, parse_states};
use super::holds::{hold_fold, hold_reason, release_fold, remove_fold};
use super::{ApiError, ApiState};
use crate::model::{FoldId, FoldState};
use crate::store::{FoldFilter, Principal, ReleaseChanges};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

/// Folds one call acts on at most; `more` in the answer says to call again.
pub const MAX_BULK: usize = 100_000;
/// Ids a constraint may list.
const MAX_IDS: usize = 10_000;
/// Per-fold errors the answer lists (the rest are counted).
const MAX_ERRORS: usize = 20;
const PAGE: u32 = 1_000;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    owner: Option<String>,
    queue: Option<String>,
    /// The folds of this array.
    array: Option<i64>,
    /// Comma-separated states.
    state: Option<String>,
    #[serde(default)]
    ids: Vec<FoldId>,
    /// `hold` only.
    reason: Option<String>,
    /// `release` only: new requests, as `POST /folds/{id}/release` takes them.
    #[serde(default)]
    changes: Option<ReleaseChanges>,
}

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Hold,
    Release,
    Remove,
}

impl Action {
    fn parse(s: &str) -> ApiResult<Action> {
        match s {
            "hold" => Ok(Action::Hold),
            "release" => Ok(Action::Release),
            "remove" => Ok(Action::Remove),
            other => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no bulk action {other:?} (hold, release or remove)"),
            )),
        }
    }

    /// The states the action applies to.
    fn applies_to(self) -> &'static [FoldState] {
        match self {
            Action::Hold => &[
                FoldState::Waiting,
                FoldState::Idle,
                FoldState::Assigned,
                FoldState::Running,
            ],
            Action::Release => &[FoldState::Held],
            Action::Remove => &[
                FoldState::Waiting,
                FoldState::Idle,
                FoldState::Assigned,
                FoldState::Running,
                FoldState::Held,
            ],
        }
    }
}

pub async fn bulk(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(action): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let action = Action::parse(&action)?;
    let body: BulkBody = super::folds::optional_json(&body)?;
    if body.owner.is_none()
        && body.queue.is_none()
        && body.state.is_none()
        && body.array.is_none()
        && body.ids.is_empty()
    {
        return Err(ApiError::bad_request(
            "constraint: name at least one of owner, queue, state, array or ids (every fold of yours: owner=YOU)",
        ));
    }
    if body.ids.len() > MAX_IDS {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("ids: {} ids is over the limit of {MAX_IDS}", body.ids.len()),
        ));
    }
    if body.reason.is_some() && action != Action::Hold {
        return Err(ApiError::bad_request("reason: only a hold takes a reason"));
    }
    if body.changes.is_some() && action != Action::Release {
        return Err(ApiError::bad_request(
            "changes: only a release takes changes",
        ));
    }
    let reason = hold_reason(&who, body.reason)?;
    let changes = body.changes.unwrap_or_default();
    let asked = parse_states(body.state.as_deref())?;
    let states: Vec<FoldState> = action
        .applies_to()
        .iter()
        .copied()
        .filter(|st| asked.is_empty() || asked.contains(st))
        .collect();
    let owner = listing_owner(&who, body.owner)?;
    let ids: std::collections::BTreeSet<FoldId> = body.ids.into_iter().collect();

    let (mut matched, mut changed, mut errors, mut listed) = (0usize, 0usize, 0usize, Vec::new());
    let mut after = ids.first().map(|first| first - 1);
    let mut more = false;
    'pages: while !states.is_empty() {
        let page = s
            .store
            .list_folds(FoldFilter {
                states: states.clone(),
                array: body.array,
                queue: body.queue.clone(),
                owner: owner.clone(),
                after,
                limit: Some(PAGE),
                ..Default::default()
            })
            .await?;
        for fold in &page.folds {
            if !ids.is_empty() && !ids.contains(&fold.id) {
                continue;
            }
            if matched == MAX_BULK {
                more = true;
                break 'pages;
            }
            matched += 1;
            let done = match action {
                Action::Hold => hold_fold(&s, fold.id, reason.clone()).await,
                Action::Release => release_fold(&s, &who, fold, changes.clone()).await,
                Action::Remove => remove_fold(&s, &who, fold.id).await,
            };
            match done {
                Ok(()) => changed += 1,
                Err(e) => {
                    errors += 1;
                    if listed.len() < MAX_ERRORS {
                        listed.push(json!({ "id": fold.id, "error": e.message }));
                    }
                }
            }
        }
        match page.next {
            // Past the last id asked for, nothing more can match.
            Some(next) if ids.last().is_none_or(|last| next < *last) => after = Some(next),
            _ => break,
        }
    }
    Ok(Json(json!({
        "matched": matched,
        "changed": changed,
        "failed": errors,
        "errors": listed,
        "more": more,
    })))
}

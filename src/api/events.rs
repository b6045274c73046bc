//! `GET /api/v1/events`: the event log pushed to clients, as a long poll (JSON) or, with
//! `Accept: text/event-stream`, as server-sent events. Both wait on the store's change signal
//! (`Store::subscribe`), never on a timer, and read only what is new: a wait costs nothing
//! until an event is committed, then one read of the events after the waiter's seq.
//!
//! - `since=SEQ` (none: from now, no backlog), `folds=1,2,3` (at most 1,000), `limit=N` (a
//!   page, as listings), `timeout=30s` (a long poll's wait, at most 60 s);
//! - a long poll answers at once when there are events after `since`, else when one comes or
//!   at the timeout: `{"events": [...], "seq": N}` (`seq`: the next `since`);
//! - a stream sends each event as `data:` with its seq as `id:`, honours `Last-Event-ID`, sends
//!   `: keep-alive` every 15 s and ends after 10 minutes (clients reconnect);
//! - what a caller sees is its scope's (README "Tenancy"): another owner's fold in `folds`
//!   shows nothing, exactly as a fold without events;
//! - at most `serve --max-waiters` long polls and streams at once (503 with `Retry-After`
//!   beyond); each holds one page at most; at shutdown they answer or end at once.

use super::folds::{bad_query, page_limit};
use super::shared::retry_soon;
use super::{ApiError, ApiState};
use crate::model::limits::{
    DEFAULT_EVENTS_WAIT, EVENT_STREAM_LIFE, MAX_EVENTS_WAIT, MAX_EVENT_FOLDS,
};
use crate::model::FoldId;
use crate::shares::{Share, Shares};
use crate::store::{EventFilter, FeedEvent, Principal, Store};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A comment sent on an idle stream this often, so proxies and clients know it lives.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Windows of the event log (`store::events::WINDOW` ids each) one wait reads in a row when
/// none holds an event the caller may see; then a long poll answers its progress (`seq`).
const WINDOWS_PER_TURN: usize = 10;

/// The long polls and streams open at once (`serve --max-waiters`), and the signal that ends
/// them at shutdown.
pub struct Waiters {
    slots: Arc<Semaphore>,
    max: usize,
    /// Slots held per non-admin owner: each may hold at most [`Waiters::per_owner`].
    held: Shares<String>,
    closing: watch::Sender<bool>,
}

/// A waiter's place among the slots (and its owner's share), given back when dropped.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    _owner: Option<Share<String>>,
}

impl Waiters {
    pub fn new(max: usize) -> Waiters {
        Waiters {
            slots: Arc::new(Semaphore::new(max)),
            max,
            held: Default::default(),
            closing: watch::channel(false).0,
        }
    }

    /// The slots one owner may hold at once: an eighth of all (at least one), so that one
    /// tenant's streams cannot take every other tenant's. Admins are not counted.
    pub fn per_owner(&self) -> usize {
        (self.max / 8).max(1)
    }

    /// Ends every wait: long polls answer what they have, streams end (at shutdown, so that
    /// no request holds the master's exit for long).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A slot for a log follower (`GET /folds/{id}/log?follow=1`), counted with the long
    /// polls and event streams, and the signal that the master is shutting down.
    pub(super) fn follower(
        &self,
        who: &Principal,
    ) -> Result<(Slot, watch::Receiver<bool>), ApiError> {
        Ok((self.enter(who)?, self.closing.subscribe()))
    }

    fn enter(&self, who: &Principal) -> Result<Slot, ApiError> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} long polls and event streams are open, the most this master serves at once (serve --max-waiters); retry in a moment",
                    self.max
                ),
            )
        })?;
        let owner = if who.admin {
            None
        } else {
            let share = self.held.take(who.name.clone(), self.per_owner());
            Some(share.map_err(|n| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{n} long polls, event streams and log follows of {:?} are open, the most one owner holds at once (an eighth of serve --max-waiters); close one or retry in a moment",
                        who.name
                    ),
                )
            })?)
        };
        Ok(Slot {
            _permit: permit,
            _owner: owner,
        })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    since: Option<String>,
    folds: Option<String>,
    timeout: Option<String>,
    limit: Option<String>,
}

/// A seq as a client sends it (`since`, `Last-Event-ID`): 0 or more.
fn seq(name: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}: {text:?} is not a seq (a whole number, 0 or more: the `seq` of an answer or the id of an event)"
            ))
        })
}

/// `folds=1,2,3`: distinct fold ids, at least one, at most [`MAX_EVENT_FOLDS`].
fn fold_ids(text: &str) -> Result<Vec<FoldId>, ApiError> {
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = part
            .parse::<FoldId>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| ApiError::bad_request(format!("folds: {part:?} is not a fold id")))?;
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "folds: give fold ids, comma-separated (folds=1,2,3), or leave folds out for all",
        ));
    }
    if ids.len() > MAX_EVENT_FOLDS {
        return Err(ApiError::bad_request(format!(
            "folds: {} fold ids is over the limit of {MAX_EVENT_FOLDS}; leave folds out to follow every fold you may see",
            ids.len()
        )));
    }
    Ok(ids)
}

fn wait_time(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_EVENTS_WAIT);
    };
    let wait = crate::units::parse_duration(text)
        .map_err(|e| ApiError::bad_request(format!("timeout: {e}")))?;
    if wait > MAX_EVENTS_WAIT {
        return Err(ApiError::bad_request(format!(
            "timeout: {text} is over the maximum of {}s; wait again with the answer's seq",
            MAX_EVENTS_WAIT.as_secs()
        )));
    }
    Ok(wait)
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// `GET /events`: a long poll, or a stream of server-sent events.
pub async fn events(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let stream = wants_stream(&headers);
    let mut since = q.since.as_deref().map(|t| seq("since", t)).transpose()?;
    if stream {
        if let Some(last) = headers.get("last-event-id") {
            let text = last.to_str().unwrap_or("?");
            since = Some(seq("Last-Event-ID", text)?);
        }
    }
    let folds = q.folds.as_deref().map(fold_ids).transpose()?;
    let wait = wait_time(q.timeout.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(t) => Some(t.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!("limit: {t:?} is not a page size (1 to 1000)"))
        })?),
    };
    let filter = EventFilter {
        since,
        folds,
        scope: who.scope(),
        limit: page_limit(limit)?,
    };
    let waiters = &s.limits.waiters;
    let slot = match waiters.enter(&who) {
        Ok(slot) => slot,
        Err(e) => return Ok(retry_soon(e)),
    };
    let mut feed = Feed {
        store: s.store.clone(),
        changes: s.store.subscribe(),
        closing: waiters.closing.subscribe(),
        filter,
        _slot: slot,
    };
    if stream {
        return Ok(sse(feed));
    }
    let events = feed.next(Instant::now() + wait).await?.unwrap_or_default();
    let next = feed.filter.since.unwrap_or(0);
    Ok(Json(json!({ "events": events, "seq": next })).into_response())
}

/// One waiter's place in the event log.
struct Feed {
    store: Store,
    /// Where it stands: `since` moves past every page read.
    filter: EventFilter,
    changes: watch::Receiver<i64>,
    closing: watch::Receiver<bool>,
    /// Counted among the waiters until dropped.
    _slot: Slot,
}

impl Feed {
    /// The next events the caller may see, waiting for them until `until`: `Some` with events,
    /// or empty after reading [`WINDOWS_PER_TURN`] windows of others' events (progress: `since`
    /// moved); `None` when the wait ended (`until`, shutdown) with nothing.
    async fn next(&mut self, until: Instant) -> Result<Option<Vec<FeedEvent>>, ApiError> {
        let mut windows = 0;
        loop {
            let page = self.store.events_after(self.filter.clone()).await?;
            self.filter.since = Some(page.seq);
            if !page.events.is_empty() {
                return Ok(Some(page.events));
            }
            windows += 1;
            if !page.caught_up {
                if windows < WINDOWS_PER_TURN {
                    continue;
                }
                return Ok(Some(Vec::new()));
            }
            // The writer publishes the newest event's id after every commit that follows
            // this read, so waiting for it to pass `seq` misses nothing.
            let seen = page.seq;
            let (changes, closing) = (&mut self.changes, &mut self.closing);
            let moved = async { changes.wait_for(|top| *top > seen).await.is_ok() };
            tokio::select! {
                moved = moved => {
                    if !moved {
                        return Ok(None);
                    }
                }
                () = tokio::time::sleep_until(until) => return Ok(None),
                _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => return Ok(None),
            }
        }
    }
}

/// The feed as server-sent events, until [`EVENT_STREAM_LIFE`] has passed or the master shuts
/// down; a page at most is held at a time, and a client that stops reading stops the reads.
fn sse(feed: Feed) -> Response {
    let ends = Instant::now() + EVENT_STREAM_LIFE;
    let events = futures_util::stream::unfold(
        (feed, VecDeque::<FeedEvent>::new()),
        move |(mut feed, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    let data = serde_json::to_string(&e).expect("an event serializes");
                    let event = Event::default().id(e.seq.to_string()).data(data);
                    return Some((Ok::<_, std::convert::Infallible>(event), (feed, pending)));
                }
                match feed.next(ends).await {
                    Ok(Some(events)) => pending.extend(events),
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!("an event stream ends: {}", e.message);
                        return None;
                    }
                }
            }
        },
    );
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Proxies that buffer answers (nginx) pass this one on as it comes.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        assert_eq!(fold_ids("3, 1,3,,2").unwrap(), vec![1, 2, 3]);
        let too_many: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
        for (text, named) in [
            ("", "folds: give fold ids"),
            ("1,x", "folds: \"x\" is not a fold id"),
            ("0", "folds: \"0\" is not a fold id"),
            (
                too_many.join(",").as_str(),
                "folds: 1001 fold ids is over the limit of 1000",
            ),
        ] {
            let e = fold_ids(text).unwrap_err();
            assert!(e.message.starts_with(named), "{}", e.message);
        }
        assert_eq!(seq("since", " 42").unwrap(), 42);
        assert!(seq("since", "-1")
            .unwrap_err()
            .message
            .starts_with("since: "));
        assert!(seq("Last-Event-ID", "x")
            .unwrap_err()
            .message
            .starts_with("Last-Event-ID: "));
        assert_eq!(wait_time(None).unwrap(), DEFAULT_EVENTS_WAIT);
        assert_eq!(wait_time(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(wait_time(Some("1m")).unwrap(), MAX_EVENTS_WAIT);
        for bad in ["61s", "soon", "-3"] {
            let e = wait_time(Some(bad)).unwrap_err();
            assert!(e.message.starts_with("timeout: "), "{}", e.message);
        }
    }
}

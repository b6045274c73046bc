//! A fold's log from an offset, and followed while it runs (`GET /folds/{id}/log?offset=N&
//! follow=1`, `datarun fold log ID --follow`).
//!
//! Offsets count the bytes of the fold's output as written (see `agent::tail`): the kept log
//! is that output whole while it fits the log limit; once its head was dropped it starts with
//! a marker line standing for the dropped bytes. A response is a marker, when bytes asked for
//! are gone, then the output from one offset on, without gaps: the headers say which attempt,
//! from which offset and how many bytes the marker stands for (`x-datarun-attempt`,
//! `x-datarun-log-offset`, `x-datarun-log-skipped`), so a client that resumes can count.
//!
//! A follow streams the attempt that is out (or the newest): while it runs, chunks the
//! master asks its agent for (at most 64 KiB each, every 200 ms when caught up, at most every
//! 20 ms when behind); once the store recorded its end, the rest of the recorded log; then the
//! response ends. It also ends, early, when the master shuts down, after
//! `EVENT_STREAM_LIFE`, and when a flood dropped bytes the follower had not read yet (asking
//! again from its offset then starts with the marker). A follower holds a slot of the
//! waiters' cap (`serve --max-waiters`) and at most one chunk in memory.
//!
//! Without `follow`, a running fold's log is read the same way up to what its agent had
//! written when asked ([`running`]), and a stopped fold's from the recorded log ([`stored`]).

use super::{ApiError, ApiState, Slot};
use crate::agent::tail::{self, MAX_LIVE_CHUNK};
use crate::model::limits::{EVENT_STREAM_LIFE, MAX_EVENTS_WAIT};
use crate::model::{AttemptId, FoldId, FoldState};
use crate::store::{BlobBody, Principal};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a follower that has read everything asks again.
const POLL: Duration = Duration::from_millis(200);
/// The least time between two asks of a follower that is behind.
const BEHIND: Duration = Duration::from_millis(20);
/// How often a running attempt's state is read from the store when nothing signals a change.
const STORE_CHECK: Duration = Duration::from_secs(1);
/// How much of the recorded log one read takes.
const READ: u64 = 64 << 10;

pub const HEADER_ATTEMPT: &str = "x-datarun-attempt";
pub const HEADER_OFFSET: &str = "x-datarun-log-offset";
pub const HEADER_SKIPPED: &str = "x-datarun-log-skipped";

/// A recorded log being read from an offset.
enum Stored {
    Bytes(Vec<u8>),
    File {
        file: Arc<std::fs::File>,
        at: u64,
        end: u64,
    },
}

impl Stored {
    /// The log `body` from output `offset`: where that is, and the reader of what follows.
    async fn open(body: BlobBody, offset: u64) -> Result<(tail::Slice, Stored), ApiError> {
        match body {
            BlobBody::Bytes(bytes) => {
                let at = tail::slice(&bytes, bytes.len(), offset);
                Ok((at, Stored::Bytes(bytes[at.from..].to_vec())))
            }
            BlobBody::File { file, size } => {
                let file = Arc::new(file);
                let start = read_at(file.clone(), 0, 64).await?;
                let len = usize::try_from(size).unwrap_or(usize::MAX);
                let at = tail::slice(&start, len, offset);
                let stored = Stored::File {
                    file,
                    at: at.from as u64,
                    end: size,
                };
                Ok((at, stored))
            }
        }
    }

    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Stored::Bytes(bytes) => (!bytes.is_empty()).then(|| std::mem::take(bytes)),
            Stored::File { file, at, end } => {
                if *at >= *end {
                    return None;
                }
                let want = (*end - *at).min(READ) as usize;
                let data = read_at(file.clone(), *at, want).await.ok()?;
                if data.is_empty() {
                    return None;
                }
                *at += data.len() as u64;
                Some(data)
            }
        }
    }
}

async fn read_at(file: Arc<std::fs::File>, at: u64, len: usize) -> Result<Vec<u8>, ApiError> {
    let read = tokio::task::spawn_blocking(move || crate::transfer::read_at(&file, at, len)).await;
    match read {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(e)) => Err(internal(format!("cannot read the log: {e}"))),
        Err(e) => Err(internal(format!("cannot read the log: {e}"))),
    }
}

fn internal(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The recorded log of fold `id` from `offset` (no follow).
pub async fn stored(s: &ApiState, id: FoldId, offset: u64) -> Result<Response, ApiError> {
    let attempt = s.store.attempts(id).await?.last().map(|a| a.id);
    let (at, stored) = Stored::open(s.store.log_body(id).await?, offset).await?;
    // Streamed a chunk at a time, as a follow's recorded rest is.
    let marker = futures_util::stream::iter([marker_of(at.skipped)]);
    let rest = futures_util::stream::unfold(stored, |mut stored| async move {
        Some((stored.next().await?, stored))
    });
    let body = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(marker, rest),
        Ok::<_, std::convert::Infallible>,
    );
    Ok(respond(attempt, at, axum::body::Body::from_stream(body)))
}

fn marker_of(skipped: u64) -> Vec<u8> {
    if skipped > 0 {
        tail::marker(skipped).into_bytes()
    } else {
        Vec::new()
    }
}

fn respond(attempt: Option<AttemptId>, at: tail::Slice, body: axum::body::Body) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    let value = |n: i64| HeaderValue::from_str(&n.to_string()).expect("a number is a header");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(a) = attempt {
        h.insert(HEADER_ATTEMPT, value(a));
    }
    h.insert(HEADER_OFFSET, value(at.offset as i64));
    h.insert(HEADER_SKIPPED, value(at.skipped as i64));
    resp
}

enum Phase {
    /// The attempt runs: chunks from its agent.
    Live,
    /// Its agent has sent the whole log: the store is about to record the result.
    Recording,
    Stored(Stored),
    End,
}

struct Follower {
    s: ApiState,
    fold: FoldId,
    attempt: AttemptId,
    runner: String,
    offset: u64,
    phase: Phase,
    /// Bytes to send before anything else (the first chunk, after its marker).
    first: Vec<u8>,
    changes: watch::Receiver<i64>,
    closing: watch::Receiver<bool>,
    ends: Instant,
    checked: Instant,
    /// The store changed since it was last read.
    dirty: bool,
    next_ask: Instant,
    /// A read of the log as it is now (no follow): it ends at this offset, the bytes written
    /// when it began.
    until: Option<u64>,
    _slot: Slot,
}

/// The attempt to follow of a fold, and whether it is still out (assigned or running).
async fn attempt_of(
    s: &ApiState,
    id: FoldId,
) -> Result<Option<(AttemptId, String, bool)>, ApiError> {
    let fold = s.store.fold(id).await?;
    let attempts = s.store.attempts(id).await?;
    let Some(last) = attempts.last() else {
        return Ok(None);
    };
    let out = fold.state.is_active() && fold.current_attempt == Some(last.id);
    Ok(Some((
        last.id,
        last.runner.clone(),
        out && last.state != "ended",
    )))
}

/// `?follow=1`: streams fold `id`'s log from `offset` until its attempt ends (see the module).
pub async fn follow(
    s: ApiState,
    who: &Principal,
    id: FoldId,
    offset: u64,
) -> Result<Response, ApiError> {
    let (slot, closing) = match s.limits.waiters.follower(who) {
        Ok(slot) => slot,
        Err(e) => return Ok(super::shared::retry_soon(e)),
    };
    let mut changes = s.store.subscribe();
    // A fold that has not started yet: wait (a while) for its first attempt.
    let waited = Instant::now() + MAX_EVENTS_WAIT;
    let (attempt, runner, out) = loop {
        if let Some(found) = attempt_of(&s, id).await? {
            break found;
        }
        let fold = s.store.fold(id).await?;
        let stopped = fold.state.is_final() || fold.state == FoldState::Held;
        if stopped || Instant::now() >= waited || *closing.borrow() {
            let at = tail::Slice {
                skipped: 0,
                offset,
                from: 0,
            };
            return Ok(respond(None, at, axum::body::Body::empty()));
        }
        // At most one look every POLL, however busy the store is.
        let poll = tokio::time::sleep(POLL);
        let mut closing = closing.clone();
        tokio::select! {
            _ = async { changes.changed().await.ok(); poll.await } => {}
            () = tokio::time::sleep_until(waited) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    };
    let mut follower = Follower::new(&s, id, (attempt, runner), offset, (slot, closing));
    follower.changes = changes;
    follower.ends = Instant::now() + EVENT_STREAM_LIFE;
    let mut at = tail::Slice {
        skipped: 0,
        offset,
        from: 0,
    };
    if out {
        if let Some(chunk) = s.master.live_log(&follower.runner, attempt, offset).await {
            at.skipped = chunk.offset.saturating_sub(offset);
            at.offset = chunk.offset;
            follower.take(&chunk);
        }
    } else {
        let (found, stored) = Stored::open(s.store.log_body(id).await?, offset).await?;
        at = found;
        follower.phase = Phase::Stored(stored);
    }
    follower.first = [marker_of(at.skipped), std::mem::take(&mut follower.first)].concat();
    Ok(follower.respond(at))
}

/// Without `follow`, a running fold's log as it is now, from `offset`: the bytes its agent
/// has when asked, then the response ends. None when the fold is not running or its agent
/// keeps no live log (the recorded log answers then), or every waiter's slot is taken.
pub async fn running(
    s: &ApiState,
    who: &Principal,
    id: FoldId,
    offset: u64,
) -> Result<Option<Response>, ApiError> {
    let Some((attempt, runner, true)) = attempt_of(s, id).await? else {
        return Ok(None);
    };
    let Ok((slot, closing)) = s.limits.waiters.follower(who) else {
        return Ok(None);
    };
    let Some(chunk) = s.master.live_log(&runner, attempt, offset).await else {
        return Ok(None);
    };
    let at = tail::Slice {
        skipped: chunk.offset.saturating_sub(offset),
        offset: chunk.offset,
        from: 0,
    };
    let mut reader = Follower::new(s, id, (attempt, runner), offset, (slot, closing));
    reader.first = marker_of(at.skipped);
    reader.until = Some(chunk.size);
    reader.take(&chunk);
    reader.next_ask = Instant::now();
    Ok(Some(reader.respond(at)))
}

impl Follower {
    /// A reader of `attempt` (on its runner) from `offset`, live, for at most
    /// `MAX_EVENTS_WAIT` unless told otherwise.
    fn new(
        s: &ApiState,
        fold: FoldId,
        (attempt, runner): (AttemptId, String),
        offset: u64,
        (slot, closing): (Slot, watch::Receiver<bool>),
    ) -> Follower {
        Follower {
            s: s.clone(),
            fold,
            attempt,
            runner,
            offset,
            phase: Phase::Live,
            first: Vec::new(),
            changes: s.store.subscribe(),
            closing,
            ends: Instant::now() + MAX_EVENTS_WAIT,
            checked: Instant::now(),
            dirty: false,
            next_ask: Instant::now(),
            until: None,
            _slot: slot,
        }
    }

    /// The response streaming what this reader reads, starting `at`.
    fn respond(self, at: tail::Slice) -> Response {
        let attempt = self.attempt;
        let stream = futures_util::stream::unfold(self, |mut f| async move {
            let data = f.next().await?;
            Some((Ok::<_, std::convert::Infallible>(data), f))
        });
        respond(Some(attempt), at, axum::body::Body::from_stream(stream))
    }

    /// Takes a chunk that starts at the follower's offset.
    fn take(&mut self, chunk: &crate::master::LiveChunk) {
        self.offset = chunk.offset + chunk.data.len() as u64;
        self.first.extend_from_slice(&chunk.data);
        let full = chunk.data.len() as u64 >= MAX_LIVE_CHUNK || self.until.is_some();
        self.next_ask = Instant::now() + if full { BEHIND } else { POLL };
        if chunk.eof {
            self.phase = Phase::Recording;
        }
    }

    async fn next(&mut self) -> Option<Vec<u8>> {
        if !self.first.is_empty() {
            return Some(std::mem::take(&mut self.first));
        }
        loop {
            if *self.closing.borrow() || Instant::now() >= self.ends {
                return None;
            }
            let read_all = self.until.is_some_and(|until| self.offset >= until);
            if read_all && matches!(self.phase, Phase::Live | Phase::Recording) {
                return None;
            }
            match &mut self.phase {
                Phase::End => return None,
                Phase::Stored(stored) => return stored.next().await,
                Phase::Live | Phase::Recording => {}
            }
            // The store is read when it changed (at most every POLL), else every STORE_CHECK.
            let changed = self.dirty || self.changes.has_changed().unwrap_or(true);
            let due = if changed { POLL } else { STORE_CHECK };
            if self.checked.elapsed() >= due {
                self.changes.borrow_and_update();
                self.dirty = false;
                self.checked = Instant::now();
                if self.ended().await {
                    self.phase = self.recorded().await;
                    continue;
                }
            }
            if matches!(self.phase, Phase::Live) && Instant::now() >= self.next_ask {
                let asked = self
                    .s
                    .master
                    .live_log(&self.runner, self.attempt, self.offset)
                    .await;
                match asked {
                    // Bytes this follower had not read were dropped under a flood: the
                    // response ends here; asking again from the offset starts with the marker.
                    Some(c) if c.offset > self.offset => return None,
                    Some(c) => {
                        self.take(&c);
                        if !self.first.is_empty() {
                            return Some(std::mem::take(&mut self.first));
                        }
                    }
                    None if self.until.is_some() => return None,
                    None => self.next_ask = Instant::now() + POLL,
                }
            }
            let dirty = self.dirty || self.changes.has_changed().unwrap_or(true);
            let check_at = self.checked + if dirty { POLL } else { STORE_CHECK };
            let wake = match self.phase {
                Phase::Live => self.next_ask.min(check_at),
                _ => check_at,
            };
            let closing = &mut self.closing;
            let changes = &mut self.changes;
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // Seen once: the store is then read at the next POLL.
                changed = changes.changed(), if !dirty => self.dirty = changed.is_ok(),
                _ = closing.wait_for(|c| *c) => {}
            }
        }
    }

    /// Whether the store has ended the followed attempt (or the fold moved on from it).
    async fn ended(&self) -> bool {
        match attempt_of(&self.s, self.fold).await {
            Ok(Some((attempt, _, out))) => attempt != self.attempt || !out,
            Ok(None) => true,
            Err(_) => true,
        }
    }

    /// The recorded rest of the followed attempt's log, when it is still the fold's newest
    /// and nothing the follower had not read was dropped.
    async fn recorded(&self) -> Phase {
        let newest = |attempts: Vec<crate::store::AttemptRecord>| attempts.last().map(|a| a.id);
        let Ok(before) = self.s.store.attempts(self.fold).await else {
            return Phase::End;
        };
        let Ok(body) = self.s.store.log_body(self.fold).await else {
            return Phase::End;
        };
        let after = self.s.store.attempts(self.fold).await.ok().and_then(newest);
        if newest(before) != Some(self.attempt) || after != Some(self.attempt) {
            return Phase::End;
        }
        match Stored::open(body, self.offset).await {
            Ok((at, stored)) if at.skipped == 0 => Phase::Stored(stored),
            _ => Phase::End,
        }
    }
}

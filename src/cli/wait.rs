//! Waiting for folds (`datarun queue wait`, `submit --wait`) on the events the master pushes:
//! long polls of `GET /events` (a waiter on many folds lets their events gather for up to
//! 10 ms between polls).

use super::commands::Exit;
use super::Conn;
use crate::model::FoldState;
use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where the master's event log stands now: whatever changes after this comes as an event
/// after this seq.
pub(super) fn event_seq(client: &super::client::Client) -> Result<i64> {
    let now: Value = client.get("/events?timeout=0")?;
    Ok(now["seq"].as_i64().unwrap_or(0))
}

/// Waits for folds by id, however many folds the master holds, on events the master pushes:
/// where its event log stands first, then each fold by id (`GET /folds/{id}`: one that does
/// not exist is an error at once), then long polls of their events ([`wait_since`]).
pub(super) fn wait(conn: &Conn, ids: &[i64], timeout: Option<Duration>) -> Result<()> {
    let client = conn.client()?;
    let start = Instant::now();
    let seq = event_seq(&client)?;
    let mut states: BTreeMap<i64, FoldState> = BTreeMap::new();
    for &id in ids {
        let v: Value = client
            .get(&format!("/folds/{id}"))
            .with_context(|| format!("fold {id} does not exist or cannot be read"))?;
        if let Some(st) = v["fold"]["state"].as_str().and_then(FoldState::parse) {
            states.insert(id, st);
        }
    }
    let timeout = timeout.map(|t| t.saturating_sub(start.elapsed()));
    follow(&client, ids, states, seq, timeout)
}

/// Waits for folds made after the event log stood at `seq` (`event_seq`, taken before they
/// were submitted): every change of theirs is an event after it, so none is looked up.
pub(super) fn wait_since(
    conn: &Conn,
    ids: &[i64],
    timeout: Option<Duration>,
    seq: i64,
) -> Result<()> {
    follow(&conn.client()?, ids, BTreeMap::new(), seq, timeout)
}

/// Long polls of the events of the folds still going (`GET /events?folds=...&since=...`; an
/// event that is a fold's newest carries its state), from `seq` with the `states` known then,
/// until every fold stopped (exit 1 if one did not end done) or `timeout` passed (exit 6).
/// Each poll returns as soon as one of the folds changes; while more than [`GATHER_ABOVE`]
/// folds are still going, the events of up to [`GATHER`] gather before the next poll (a
/// thousand trivial folds otherwise cost the master a poll per fold or two); the pause
/// shrinks near the end ([`gather_pause`]) and the last folds are followed without it.
fn follow(
    client: &super::client::Client,
    ids: &[i64],
    mut states: BTreeMap<i64, FoldState>,
    mut seq: i64,
    timeout: Option<Duration>,
) -> Result<()> {
    use crate::model::limits::{MAX_EVENTS_WAIT, MAX_EVENT_FOLDS};
    let start = Instant::now();
    let wanted: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    let state_of = |v: &Value| v.as_str().and_then(FoldState::parse);
    let stopped = |s: &FoldState| s.is_final() || *s == FoldState::Held;
    // The folds wanted that have not stopped, as `states` stands.
    let still_going = |states: &BTreeMap<i64, FoldState>| {
        wanted
            .iter()
            .filter(|id| !states.get(id).is_some_and(stopped))
            .copied()
            .collect::<Vec<i64>>()
    };
    loop {
        let going: Vec<String> = still_going(&states).iter().map(i64::to_string).collect();
        if going.is_empty() {
            let bad: Vec<String> = states
                .iter()
                .filter(|(_, s)| **s != FoldState::Done)
                .map(|(id, s)| format!("{id} {s}"))
                .collect();
            if bad.is_empty() {
                return Ok(());
            }
            eprintln!("not done: {}", bad.join(", "));
            return Err(Exit(1).into());
        }
        let left = match timeout {
            Some(t) if start.elapsed() >= t => {
                eprintln!("timed out with {} folds still pending", going.len());
                return Err(Exit(super::exit::TIMEOUT).into());
            }
            Some(t) => (t - start.elapsed()).min(MAX_EVENTS_WAIT),
            None => MAX_EVENTS_WAIT,
        };
        // Only these folds' events, while they fit a filter; else all the caller may see.
        let folds = if going.len() <= MAX_EVENT_FOLDS {
            format!("&folds={}", going.join(","))
        } else {
            String::new()
        };
        let page: Value = client.get(&format!(
            "/events?since={seq}{folds}&timeout={}ms",
            left.as_millis()
        ))?;
        let events = page["events"].as_array();
        for e in events.into_iter().flatten() {
            let id = e["fold"].as_i64().unwrap_or(-1);
            if let (true, Some(st)) = (wanted.contains(&id), state_of(&e["state"])) {
                states.insert(id, st);
            }
        }
        seq = page["seq"].as_i64().unwrap_or(seq);
        let moved = events.is_some_and(|e| !e.is_empty());
        let still = still_going(&states).len();
        if moved && still > GATHER_ABOVE {
            let pause = gather_pause(still, wanted.len() - still, start.elapsed());
            let left = timeout.map_or(pause, |t| t.saturating_sub(start.elapsed()));
            std::thread::sleep(pause.min(left));
        }
    }
}

/// How long to let events gather before the next poll, with `going` folds still going after
/// `stopped` stopped in `elapsed`: [`GATHER`], but no more than half the time the rest should
/// take at the pace so far, so that the last folds' end is not noticed a whole pause late.
fn gather_pause(going: usize, stopped: usize, elapsed: Duration) -> Duration {
    if stopped == 0 {
        return GATHER;
    }
    let rest = elapsed.mul_f64(going as f64 / stopped as f64);
    GATHER.min(rest / 2)
}

/// How long a waiter on many folds lets their events gather between polls (see [`follow`]).
const GATHER: Duration = Duration::from_millis(10);
/// Folds still going above which a waiter lets events gather.
const GATHER_ABOVE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_shrinks_as_the_last_folds_near_their_end() {
        let ms = Duration::from_millis;
        // Nothing stopped yet: no pace to go by.
        assert_eq!(gather_pause(1000, 0, ms(50)), GATHER);
        // 500 of 1,000 in 350 ms: the rest takes about as long, far more than a pause.
        assert_eq!(gather_pause(500, 500, ms(350)), GATHER);
        // 990 stopped in 700 ms, 10 left: about 7 ms to go, so a pause of about half that.
        let p = gather_pause(10, 990, ms(700));
        assert!(p > ms(3) && p < ms(4), "{p:?}");
        // Slow folds: the whole pause.
        assert_eq!(gather_pause(10, 10, ms(10_000)), GATHER);
    }
}

//! Webhooks (README "Webhooks"): a URL called when a fold, an array or a submission ends.
//! Outbox pattern: a subscription row is `armed` until its target ends; the transaction that
//! makes the target final (`waiting::on_final`) writes the delivery's body and makes it
//! `pending`, so no end is missed across a crash. The master's delivery task
//! (`crate::webhooks`) takes due rows (leasing them by moving `next_at`), POSTs them, and
//! records each attempt: `delivered`, or `pending` again later, or `failed` when given up.
//! The event id is made with the subscription and is the same on every retry.

use super::{now_ms, Result, Scope, Store, StoreError};
use crate::model::{FoldId, FoldState};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use serde_json::{json, Value};

/// What a webhook watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Fold,
    Array,
    Submission,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Fold => "fold",
            HookKind::Array => "array",
            HookKind::Submission => "submission",
        }
    }
}

/// A webhook as its owner sees it (`GET /api/v1/webhooks`): never the secret.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    /// The fold, array or submission id.
    pub target: i64,
    pub url: String,
    pub owner: String,
    pub created_at: i64,
    /// `armed` (its target has not ended), `pending` (to deliver), `delivered`, `failed`.
    pub state: String,
    pub ended_at: Option<i64>,
    pub attempts: u32,
    pub next_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// A delivery taken by the delivery task: what to send, where, signed with what.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub url: String,
    pub body: String,
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub ended_at: i64,
}

/// How an attempt went.
#[derive(Clone, Debug)]
pub enum AttemptEnd {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Failed; try again at `retry_at` (ms since the epoch), or give up when `None`.
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<i64>,
    },
}

pub(super) const COLUMNS: &str = "id, event_id, kind, target, url, owner, created_at, state, ended_at, attempts, next_at, last_status, last_error, delivered_at";

fn record(r: &Row) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: r.get(0)?,
        event_id: r.get(1)?,
        kind: r.get(2)?,
        target: r.get(3)?,
        url: r.get(4)?,
        owner: r.get(5)?,
        created_at: r.get(6)?,
        state: r.get(7)?,
        ended_at: r.get(8)?,
        attempts: r.get(9)?,
        next_at: r.get(10)?,
        last_status: r.get(11)?,
        last_error: r.get(12)?,
        delivered_at: r.get(13)?,
    })
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A new webhook secret (`whsec_` and 48 hex digits).
pub(super) fn new_secret() -> String {
    format!("whsec_{}", random_hex(24))
}

/// The webhook secret of token `token`, made now if it has none (tokens from before webhooks).
fn secret_of(conn: &Connection, token: i64) -> Result<String> {
    let found: Option<Option<String>> = conn
        .prepare_cached("SELECT webhook_secret FROM tokens WHERE id = ?1")?
        .query_row([token], |r| r.get(0))
        .optional()?;
    match found {
        None => Err(StoreError::NotFound(format!("no token with id {token}"))),
        Some(Some(s)) => Ok(s),
        Some(None) => {
            let s = new_secret();
            conn.prepare_cached(
                "UPDATE tokens SET webhook_secret = ?1 WHERE id = ?2 AND webhook_secret IS NULL",
            )?
            .execute(params![s, token])?;
            // Another writer cannot race: one connection owns the store.
            Ok(s)
        }
    }
}

/// Whether every fold matching `cond` (with `?1` bound to `id`) has ended: its counts by
/// state, or `None` while one has not.
fn ended_counts(tx: &Transaction, from_where: &str, id: i64) -> Result<Option<Value>> {
    let rows: Vec<(String, i64)> = tx
        .prepare_cached(&format!(
            "SELECT f.state, COUNT(*) {from_where} GROUP BY f.state"
        ))?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(all_ended(rows))
}

/// A group's folds per state, `folds` the total, when every one has ended; else `None`.
pub(super) fn all_ended(rows: Vec<(String, i64)>) -> Option<Value> {
    let mut counts = serde_json::Map::new();
    let mut total = 0;
    for (state, n) in rows {
        if !FoldState::parse(&state).is_some_and(FoldState::is_final) {
            return None;
        }
        total += n;
        counts.insert(state, json!(n));
    }
    counts.insert("folds".into(), json!(total));
    Some(Value::Object(counts))
}

/// The state of a group of folds that all ended: `done` when all are, else `failed` when one
/// failed, else `removed`.
pub(super) fn group_state(counts: &Value) -> &'static str {
    let n = |k: &str| counts[k].as_i64().unwrap_or(0);
    if n("done") == n("folds") {
        "done"
    } else if n("failed") > 0 {
        "failed"
    } else {
        "removed"
    }
}

/// Makes the armed webhooks of (`kind`, `target`) pending, each with its body.
fn fire(tx: &Transaction, kind: HookKind, target: i64, state: &str, outcome: &Value) -> Result<()> {
    let armed: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, event_id FROM webhooks WHERE kind = ?1 AND target = ?2 AND state = 'armed'",
        )?
        .query_map(params![kind.as_str(), target], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let now = now_ms();
    for (id, event_id) in armed {
        tx.prepare_cached(
            "UPDATE webhooks SET state = 'pending', body = ?1, ended_at = ?2, next_at = ?2 WHERE id = ?3",
        )?
        .execute(params![body(&event_id, kind, target, state, outcome, now), now, id])?;
    }
    Ok(())
}

/// What a delivery says: the same on every retry.
pub(super) fn body(
    event_id: &str,
    kind: HookKind,
    target: i64,
    state: &str,
    outcome: &Value,
    now: i64,
) -> String {
    json!({
        "event_id": event_id,
        "kind": kind.as_str(),
        "id": target,
        "state": state,
        "outcome": outcome,
        "ended_at": now,
    })
    .to_string()
}

/// A fold's end as a delivery tells it: its state and its last outcome (null without one),
/// when the state is final.
pub(super) fn end_of(state: String, outcome: Option<String>) -> Option<(String, Value)> {
    if !FoldState::parse(&state).is_some_and(FoldState::is_final) {
        return None;
    }
    let outcome = outcome
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null);
    Some((state, outcome))
}

/// A new delivery's event id (the same on every retry).
pub(super) fn new_event_id() -> String {
    format!("evt_{}", random_hex(16))
}

fn has_armed(tx: &Transaction, kind: HookKind, target: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM webhooks WHERE kind = ?1 AND target = ?2 AND state = 'armed')",
        )?
        .query_row(params![kind.as_str(), target], |r| r.get(0))?)
}

/// The folds of an array, and the current folds of a submission (the id as `?1`): whose ends
/// a group's webhook waits for (both engines).
pub(super) const ARRAY_FOLDS: &str = "FROM folds f WHERE f.array_id = ?1";
pub(super) const SUBMISSION_FOLDS: &str =
    "FROM submission_folds sf JOIN folds f ON f.id = sf.fold_id WHERE sf.submission_id = ?1";

/// A fold's state, array and last outcome, when it has ended.
fn fold_end(tx: &Transaction, fold: FoldId) -> Result<Option<(String, Option<i64>, Value)>> {
    let (state, array, outcome): (String, Option<i64>, Option<String>) = tx
        .prepare_cached(
            "SELECT f.state, f.array_id, a.outcome FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE f.id = ?1",
        )?
        .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(end_of(state, outcome).map(|(state, outcome)| (state, array, outcome)))
}

/// Fires what ends with `fold` if it ended: its own webhooks, its array's once all the
/// array's folds ended, its submission's once all the submission's current folds ended.
/// Costs one indexed lookup per kind when nothing watches.
pub(super) fn fold_ended(tx: &Transaction, fold: FoldId) -> Result<()> {
    let Some((state, array, outcome)) = fold_end(tx, fold)? else {
        return Ok(());
    };
    if has_armed(tx, HookKind::Fold, fold)? {
        fire(tx, HookKind::Fold, fold, &state, &outcome)?;
    }
    if let Some(array) = array {
        group_ended(tx, HookKind::Array, array, ARRAY_FOLDS)?;
    }
    let submission: Option<i64> = tx
        .prepare_cached("SELECT submission_id FROM submission_folds WHERE fold_id = ?1")?
        .query_row([fold], |r| r.get(0))
        .optional()?;
    if let Some(submission) = submission {
        group_ended(tx, HookKind::Submission, submission, SUBMISSION_FOLDS)?;
    }
    Ok(())
}

fn group_ended(tx: &Transaction, kind: HookKind, id: i64, from_where: &str) -> Result<()> {
    if has_armed(tx, kind, id)? {
        if let Some(counts) = ended_counts(tx, from_where, id)? {
            fire(tx, kind, id, group_state(&counts), &counts)?;
        }
    }
    Ok(())
}

/// Fires the new webhooks of a target that has ended already (its end came before them).
fn fire_if_ended(tx: &Transaction, kind: HookKind, target: i64) -> Result<()> {
    match kind {
        HookKind::Fold => {
            if let Some((state, _, outcome)) = fold_end(tx, target)? {
                fire(tx, kind, target, &state, &outcome)?;
            }
            Ok(())
        }
        HookKind::Array => group_ended(tx, kind, target, ARRAY_FOLDS),
        HookKind::Submission => group_ended(tx, kind, target, SUBMISSION_FOLDS),
    }
}

impl Store {
    /// Subscribes `url` to the end of each (`kind`, target) for `owner`, signed with token
    /// `token`'s secret; a target that has ended already gets its delivery at once. The
    /// caller has checked the URL and that the targets are `owner`'s. Returns the event ids.
    pub async fn add_webhooks(
        &self,
        token: i64,
        owner: String,
        hooks: Vec<(HookKind, i64, String)>,
    ) -> Result<Vec<String>> {
        if let Some(pg) = self.pg() {
            return pg.add_webhooks(token, owner, hooks).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            secret_of(&tx, token)?;
            let mut ids = Vec::with_capacity(hooks.len());
            for (kind, target, url) in hooks {
                let event_id = new_event_id();
                tx.prepare_cached(
                    "INSERT INTO webhooks (event_id, kind, target, url, owner, token_id, created_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'armed')",
                )?
                .execute(params![event_id, kind.as_str(), target, url, owner, token, now_ms()])?;
                fire_if_ended(&tx, kind, target)?;
                ids.push(event_id);
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Token `token`'s webhook secret (made now if it has none).
    pub async fn webhook_secret(&self, token: i64) -> Result<String> {
        if let Some(pg) = self.pg() {
            return pg.webhook_secret(token).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let s = secret_of(&tx, token)?;
            tx.commit()?;
            Ok(s)
        })
        .await
    }

    /// Token `token`'s webhook secret, blocking (the CLI's `token create`).
    pub fn webhook_secret_blocking(&self, token: i64) -> Result<String> {
        if let Some(pg) = self.pg() {
            return pg.blocking(move |pg| async move { pg.webhook_secret(token).await });
        }
        self.call_blocking(move |conn| {
            let tx = conn.transaction()?;
            let s = secret_of(&tx, token)?;
            tx.commit()?;
            Ok(s)
        })
    }

    /// The webhooks `scope` may see, oldest first, after id `after`, at most `limit`; only
    /// those of one target when `target` is given.
    pub async fn webhooks(
        &self,
        scope: Scope,
        target: Option<(HookKind, i64)>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookRecord>> {
        if let Some(pg) = self.pg() {
            return pg.webhooks(scope, target, after, limit).await;
        }
        self.read(move |conn| {
            let (kind, id) = match target {
                Some((k, id)) => (Some(k.as_str()), Some(id)),
                None => (None, None),
            };
            let sql = format!(
                "SELECT {COLUMNS} FROM webhooks WHERE {} AND id > ?2
                 AND (?3 IS NULL OR (kind = ?3 AND target = ?4)) ORDER BY id LIMIT ?5",
                scope.sql("owner", 1)
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![scope.owner(), after, kind, id, limit], record)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Takes up to `limit` due deliveries, leasing each until `now + lease_ms` (a master
    /// that dies meanwhile leaves them due again then).
    pub async fn due_webhooks(&self, lease_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        if let Some(pg) = self.pg() {
            return pg.due_webhooks(lease_ms, limit).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            let due: Vec<(i64, String, String, String, i64, u32, i64)> = tx
                .prepare_cached(
                    "SELECT id, event_id, url, body, token_id, attempts, ended_at FROM webhooks
                     WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
                )?
                .query_map(params![now, limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(due.len());
            for (id, event_id, url, body, token, attempts, ended_at) in due {
                tx.prepare_cached("UPDATE webhooks SET next_at = ?1 WHERE id = ?2")?
                    .execute(params![now + lease_ms, id])?;
                out.push(Delivery {
                    id,
                    event_id,
                    url,
                    body,
                    secret: secret_of(&tx, token)?,
                    attempts,
                    ended_at,
                });
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Records an attempt at delivery `id`.
    pub async fn webhook_attempted(&self, id: i64, end: AttemptEnd) -> Result<()> {
        if let Some(pg) = self.pg() {
            return pg.webhook_attempted(id, end).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            match end {
                AttemptEnd::Delivered { status } => conn
                    .prepare_cached(
                        "UPDATE webhooks SET state = 'delivered', attempts = attempts + 1, last_status = ?1,
                         last_error = NULL, next_at = NULL, delivered_at = ?2 WHERE id = ?3",
                    )?
                    .execute(params![status, now, id])?,
                AttemptEnd::Failed {
                    status,
                    error,
                    retry_at,
                } => conn
                    .prepare_cached(
                        "UPDATE webhooks SET state = CASE WHEN ?1 IS NULL THEN 'failed' ELSE 'pending' END,
                         attempts = attempts + 1, last_status = ?2, last_error = ?3, next_at = ?1 WHERE id = ?4",
                    )?
                    .execute(params![retry_at, status, error, id])?,
            };
            Ok(())
        })
        .await
    }
}

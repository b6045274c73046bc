//! Webhooks on PostgreSQL, the SQLite store's outbox (`store::webhooks`: its records, bodies
//! and group rules shared): a subscription is `armed` until its target ends; the transaction
//! that makes the target final (`waiting::on_final`) writes the body and makes it `pending`;
//! the active master's delivery task leases due rows and records each attempt. Queue writes
//! are fenced; a token's secret is not (as tokens are not).

use super::lease::fence;
use super::PgStore;
use crate::model::FoldId;
use crate::store::webhooks::{
    all_ended, body, end_of, group_state, new_event_id, new_secret, ARRAY_FOLDS, COLUMNS,
    SUBMISSION_FOLDS,
};
use crate::store::{
    now_ms, AttemptEnd, Delivery, HookKind, Result, Scope, StoreError, WebhookRecord,
};
use serde_json::Value;
use tokio_postgres::{GenericClient, Row, Transaction};

fn record(r: &Row) -> Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        target: r.try_get(3)?,
        url: r.try_get(4)?,
        owner: r.try_get(5)?,
        created_at: r.try_get(6)?,
        state: r.try_get(7)?,
        ended_at: r.try_get(8)?,
        attempts: r.try_get::<_, i64>(9)? as u32,
        next_at: r.try_get(10)?,
        last_status: r.try_get::<_, Option<i64>>(11)?.map(|s| s as u16),
        last_error: r.try_get(12)?,
        delivered_at: r.try_get(13)?,
    })
}

/// Token `token`'s webhook secret, made now if it has none.
async fn secret_of(c: &impl GenericClient, token: i64) -> Result<String> {
    let found: Option<Option<String>> = c
        .query_opt("SELECT webhook_secret FROM tokens WHERE id = $1", &[&token])
        .await?
        .map(|r| r.get(0));
    match found {
        None => Err(StoreError::NotFound(format!("no token with id {token}"))),
        Some(Some(s)) => Ok(s),
        Some(None) => {
            // Two callers at once: the first secret stays, and both answer it.
            let made = new_secret();
            Ok(c.query_one(
                "UPDATE tokens SET webhook_secret = COALESCE(webhook_secret, $1) WHERE id = $2
                     RETURNING webhook_secret",
                &[&made, &token],
            )
            .await?
            .get(0))
        }
    }
}

/// Makes the armed webhooks of (`kind`, `target`) pending, each with its body.
async fn fire(
    tx: &Transaction<'_>,
    kind: HookKind,
    target: i64,
    state: &str,
    outcome: &Value,
) -> Result<()> {
    let armed = tx
        .query(
            "SELECT id, event_id FROM webhooks WHERE kind = $1 AND target = $2 AND state = 'armed'",
            &[&kind.as_str(), &target],
        )
        .await?;
    let now = now_ms();
    for r in armed {
        let (id, event_id): (i64, String) = (r.get(0), r.get(1));
        tx.execute(
            "UPDATE webhooks SET state = 'pending', body = $1, ended_at = $2, next_at = $2
             WHERE id = $3",
            &[
                &body(&event_id, kind, target, state, outcome, now),
                &now,
                &id,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn has_armed(tx: &Transaction<'_>, kind: HookKind, target: i64) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS(SELECT 1 FROM webhooks WHERE kind = $1 AND target = $2 AND state = 'armed')",
            &[&kind.as_str(), &target],
        )
        .await?
        .get(0))
}

/// A fold's state, array and last outcome, when it has ended.
async fn fold_end(
    tx: &Transaction<'_>,
    fold: FoldId,
) -> Result<Option<(String, Option<i64>, Value)>> {
    let r = tx
        .query_one(
            "SELECT f.state, f.array_id, a.outcome FROM folds f
             LEFT JOIN attempts a ON a.id = f.last_attempt WHERE f.id = $1",
            &[&fold],
        )
        .await?;
    let array: Option<i64> = r.get(1);
    Ok(end_of(r.get(0), r.get(2)).map(|(state, outcome)| (state, array, outcome)))
}

/// Fires the webhooks of a group (an array, a submission: its folds `from_where`, with the
/// id as `?1`) once all its folds have ended.
async fn group_ended(
    tx: &Transaction<'_>,
    kind: HookKind,
    id: i64,
    from_where: &str,
) -> Result<()> {
    if !has_armed(tx, kind, id).await? {
        return Ok(());
    }
    let sql = format!("SELECT f.state, COUNT(*) {from_where} GROUP BY f.state").replace("?1", "$1");
    let rows: Vec<(String, i64)> = tx
        .query(&sql, &[&id])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if let Some(counts) = all_ended(rows) {
        fire(tx, kind, id, group_state(&counts), &counts).await?;
    }
    Ok(())
}

/// Fires what ends with `fold` if it ended: its own webhooks, its array's once all the
/// array's folds ended, its submission's once all the submission's current folds ended.
pub(super) async fn fold_ended(tx: &Transaction<'_>, fold: FoldId) -> Result<()> {
    let Some((state, array, outcome)) = fold_end(tx, fold).await? else {
        return Ok(());
    };
    if has_armed(tx, HookKind::Fold, fold).await? {
        fire(tx, HookKind::Fold, fold, &state, &outcome).await?;
    }
    if let Some(array) = array {
        group_ended(tx, HookKind::Array, array, ARRAY_FOLDS).await?;
    }
    let submission: Option<i64> = tx
        .query_opt(
            "SELECT submission_id FROM submission_folds WHERE fold_id = $1",
            &[&fold],
        )
        .await?
        .map(|r| r.get(0));
    if let Some(submission) = submission {
        group_ended(tx, HookKind::Submission, submission, SUBMISSION_FOLDS).await?;
    }
    Ok(())
}

impl PgStore {
    /// Subscribes `url` to the end of each (`kind`, target) for `owner` (as
    /// `Store::add_webhooks`); a target that has ended already gets its delivery at once.
    pub async fn add_webhooks(
        &self,
        token: i64,
        owner: String,
        hooks: Vec<(HookKind, i64, String)>,
    ) -> Result<Vec<String>> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        secret_of(&tx, token).await?;
        let mut ids = Vec::with_capacity(hooks.len());
        for (kind, target, url) in hooks {
            let event_id = new_event_id();
            tx.execute(
                "INSERT INTO webhooks (event_id, kind, target, url, owner, token_id, created_at, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'armed')",
                &[&event_id, &kind.as_str(), &target, &url, &owner, &token, &now_ms()],
            )
            .await?;
            match kind {
                HookKind::Fold => {
                    if let Some((state, _, outcome)) = fold_end(&tx, target).await? {
                        fire(&tx, kind, target, &state, &outcome).await?;
                    }
                }
                HookKind::Array => group_ended(&tx, kind, target, ARRAY_FOLDS).await?,
                HookKind::Submission => group_ended(&tx, kind, target, SUBMISSION_FOLDS).await?,
            }
            ids.push(event_id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Token `token`'s webhook secret (made now if it has none).
    pub async fn webhook_secret(&self, token: i64) -> Result<String> {
        let c = self.pool.get().await?;
        secret_of(&*c, token).await
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
        let c = self.pool.get().await?;
        let (kind, id) = match target {
            Some((k, id)) => (Some(k.as_str()), Some(id)),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM webhooks WHERE ($1::TEXT IS NULL OR owner = $1) AND id > $2
             AND ($3::TEXT IS NULL OR (kind = $3 AND target = $4)) ORDER BY id LIMIT $5"
        );
        c.query(
            &sql,
            &[&scope.owner(), &after, &kind, &id, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(record)
        .collect()
    }

    /// Takes up to `limit` due deliveries, leasing each until `now + lease_ms`.
    pub async fn due_webhooks(&self, lease_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        // A cheap look first (the delivery task asks every 250 ms): no write transaction, so
        // no writers' turn taken, unless something is due.
        let any: bool = c
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM webhooks WHERE state = 'pending' AND next_at <= $1)",
                &[&now_ms()],
            )
            .await?
            .get(0);
        if !any {
            return Ok(Vec::new());
        }
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let now = now_ms();
        let due = tx
            .query(
                "SELECT id, event_id, url, body, token_id, attempts, ended_at FROM webhooks
                 WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2",
                &[&now, &i64::from(limit)],
            )
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for r in due {
            let id: i64 = r.try_get(0)?;
            tx.execute(
                "UPDATE webhooks SET next_at = $1 WHERE id = $2",
                &[&(now + lease_ms), &id],
            )
            .await?;
            out.push(Delivery {
                id,
                event_id: r.try_get(1)?,
                url: r.try_get(2)?,
                body: r.try_get(3)?,
                secret: secret_of(&tx, r.try_get(4)?).await?,
                attempts: r.try_get::<_, i64>(5)? as u32,
                ended_at: r.try_get(6)?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records an attempt at delivery `id`.
    pub async fn webhook_attempted(&self, id: i64, end: AttemptEnd) -> Result<()> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        match end {
            AttemptEnd::Delivered { status } => {
                tx.execute(
                    "UPDATE webhooks SET state = 'delivered', attempts = attempts + 1,
                     last_status = $1, last_error = NULL, next_at = NULL, delivered_at = $2
                     WHERE id = $3",
                    &[&i64::from(status), &now_ms(), &id],
                )
                .await?
            }
            AttemptEnd::Failed {
                status,
                error,
                retry_at,
            } => {
                tx.execute(
                    "UPDATE webhooks SET state = CASE WHEN $1::BIGINT IS NULL THEN 'failed' ELSE 'pending' END,
                     attempts = attempts + 1, last_status = $2, last_error = $3, next_at = $1
                     WHERE id = $4",
                    &[&retry_at, &status.map(i64::from), &error, &id],
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(())
    }
}

//! The PostgreSQL store's operations beyond the queue's core (`queue`) that a master running
//! on it needs: runners as last seen, API tokens, the counts `queue status` and `/metrics`
//! read, a fold's attempts; and the change signal (`publish`/`subscribe`). Runner writes are
//! fenced as every queue write; token writes are not (a token is who may call, not queue
//! state, and a standby makes its local admin token at start-up).

use super::lease::fence;
use super::{attempt_from_row, fold_from_row, PgStore};
use crate::model::{FoldId, FoldState};
use crate::store::records::{FoldFilter, FoldPage, FOLD_COLUMNS};
use crate::store::tokens::{hash_token, new_secret, LAST_USED_GRAIN};
use crate::store::{
    now_ms, AttemptRecord, EventFilter, EventPage, FeedEvent, OutputRecord, Principal, QueueCount,
    Resource, Result, Scope, StoreError, TokenCheck, TokenRecord,
};
use subtle::ConstantTimeEq;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

impl PgStore {
    /// Every change of the queue moves this: the newest event's id, published by the writes
    /// of this handle (the active master's) once committed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changes.subscribe()
    }

    /// The newest committed event's id (0: none).
    pub async fn newest_event(&self) -> Result<i64> {
        let c = self.pool.get().await?;
        let row = c
            .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Reads the newest event's id and publishes it when it moved (after a write).
    pub async fn publish(&self) {
        match self.newest_event().await {
            Ok(top) => {
                self.changes
                    .send_if_modified(|seen| std::mem::replace(seen, top) != top);
            }
            Err(e) => tracing::warn!("cannot read the newest event: {e}"),
        }
    }

    /// Runs `f` on a handle of its own (same database and generation) in a runtime of its own
    /// on a thread of its own: for the store's blocking calls (CLI commands, `create_token`),
    /// from inside a runtime or not.
    pub fn blocking<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(PgStore) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let handle = self.detached();
        std::thread::scope(|s| {
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Postgres(format!("cannot start a runtime: {e}")))?;
                rt.block_on(f(handle))
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Closed))
        })
    }

    /// Records runners' inventory entries (JSON) and states, as `Store::upsert_runners`.
    pub async fn upsert_runners(
        &self,
        rows: Vec<(String, String, String, Option<String>)>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let now = now_ms();
        let stmt = tx
            .prepare(
                "INSERT INTO runners (name, spec, facts, state, first_seen, last_seen)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, state = excluded.state,
                   facts = COALESCE(excluded.facts, runners.facts),
                   last_seen = COALESCE(excluded.last_seen, runners.last_seen)",
            )
            .await?;
        for (name, spec, state, facts) in rows {
            let seen = facts.as_ref().map(|_| now);
            tx.execute(&stmt, &[&name, &spec, &facts, &state, &now, &seen])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_drained(&self, name: String, drained: bool) -> Result<()> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        tx.execute(
            "UPDATE runners SET drained = $1 WHERE name = $2",
            &[&drained, &name],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn drained_runners(&self) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c
            .query("SELECT name FROM runners WHERE drained ORDER BY name", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// (name, state, facts JSON) of every runner ever seen.
    pub async fn runners(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query("SELECT name, state, facts FROM runners ORDER BY name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// A new token for `owner`, as `Store::create_token` (its id and secret).
    pub async fn create_token(
        &self,
        owner: String,
        admin: bool,
        expires_at: Option<i64>,
    ) -> Result<(i64, String)> {
        let secret = new_secret();
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                "INSERT INTO tokens (owner, hash, admin, created_at, expires_at, webhook_secret)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &owner,
                    &hash_token(&secret),
                    &admin,
                    &now_ms(),
                    &expires_at,
                    &crate::store::webhooks::new_secret(),
                ],
            )
            .await?;
        Ok((row.get(0), secret))
    }

    /// What a presented token is, as `Store::verify_token`.
    pub async fn verify_token(&self, token: String) -> Result<TokenCheck> {
        let presented = hash_token(&token);
        let c = self.pool.get().await?;
        let Some(row) = c
            .query_opt(
                "SELECT id, owner, admin, expires_at, revoked_at, last_used_at, hash
                 FROM tokens WHERE hash = $1",
                &[&presented],
            )
            .await?
        else {
            return Ok(TokenCheck::Unknown);
        };
        let stored: String = row.get(6);
        if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
            return Ok(TokenCheck::Unknown);
        }
        let now = now_ms();
        if let Some(at) = row.get::<_, Option<i64>>(4) {
            return Ok(TokenCheck::Revoked(at));
        }
        if let Some(at) = row.get::<_, Option<i64>>(3).filter(|at| *at <= now) {
            return Ok(TokenCheck::Expired(at));
        }
        let id: i64 = row.get(0);
        if row
            .get::<_, Option<i64>>(5)
            .is_none_or(|at| at + LAST_USED_GRAIN <= now)
        {
            c.execute(
                "UPDATE tokens SET last_used_at = $1 WHERE id = $2",
                &[&now, &id],
            )
            .await?;
        }
        Ok(TokenCheck::Valid(Principal {
            name: row.get(1),
            admin: row.get(2),
            token: id,
        }))
    }

    /// Folds per queue, owner and state of the owners `scope` sees.
    pub async fn queue_counts(&self, scope: &Scope) -> Result<Vec<QueueCount>> {
        let owner = scope.owner().map(str::to_string);
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT queue, owner, state, COUNT(*) FROM folds
                 WHERE ($1::TEXT IS NULL OR owner = $1)
                 GROUP BY queue, owner, state ORDER BY queue, owner, state",
                &[&owner],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueCount {
                queue: r.get(0),
                owner: r.get(1),
                state: FoldState::parse(r.get(2)).unwrap_or(FoldState::Held),
                count: r.get::<_, i64>(3) as u64,
            })
            .collect())
    }

    /// Folds per queue and state, every owner together (`/metrics`).
    pub async fn fold_state_counts(&self) -> Result<Vec<(String, FoldState, i64)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT queue, state, COUNT(*) FROM folds GROUP BY queue, state ORDER BY queue, state",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                FoldState::parse(r.get(1)).map(|s| (r.get::<_, String>(0), s, r.get::<_, i64>(2)))
            })
            .collect())
    }

    /// A fold's attempts, oldest first, with their outputs.
    pub async fn attempts(&self, fold: FoldId) -> Result<Vec<AttemptRecord>> {
        let c = self.pool.get().await?;
        let sql = format!(
            "SELECT {} FROM attempts WHERE fold_id = $1 ORDER BY id",
            crate::store::records::ATTEMPT_COLUMNS
        );
        let mut attempts = c
            .query(&sql, &[&fold])
            .await?
            .iter()
            .map(attempt_from_row)
            .collect::<Result<Vec<_>>>()?;
        for a in &mut attempts {
            a.outputs = c
                .query(
                    "SELECT name, size, sha256 FROM outputs WHERE attempt_id = $1 ORDER BY name",
                    &[&a.id],
                )
                .await?
                .iter()
                .map(|r| OutputRecord {
                    name: r.get(0),
                    size: r.get::<_, i64>(1) as u64,
                    sha256: r.get(2),
                })
                .collect();
        }
        Ok(attempts)
    }
}

impl PgStore {
    /// One page of folds matching `filter`, as `Store::list_folds`.
    pub async fn list_folds(&self, filter: FoldFilter) -> Result<FoldPage> {
        use crate::model::limits::{json_size, DEFAULT_PAGE, MAX_PAGE, MAX_PAGE_BYTES};
        let mut sql = format!(
            "SELECT {FOLD_COLUMNS} FROM folds f LEFT JOIN attempts a ON a.id = f.last_attempt WHERE TRUE"
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&format!(" AND {cond} ${}", args.len()));
        };
        if !filter.states.is_empty() {
            let marks: Vec<String> = filter
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            sql.push_str(&format!(" AND f.state IN ({})", marks.join(",")));
        }
        if let Some(q) = filter.queue {
            arg(&mut sql, "f.queue =", Box::new(q));
        }
        if let Some(a) = filter.array {
            arg(&mut sql, "f.array_id =", Box::new(a));
        }
        if let Some(o) = filter.owner {
            arg(&mut sql, "f.owner =", Box::new(o));
        }
        let by_seq = filter.since.is_some();
        if let Some(s) = filter.since {
            arg(&mut sql, "f.seq >", Box::new(s));
        } else if filter.newest_first {
            if let Some(before) = filter.before {
                arg(&mut sql, "f.id <", Box::new(before));
            }
        } else if let Some(after) = filter.after {
            arg(&mut sql, "f.id >", Box::new(after));
        }
        sql.push_str(match (by_seq, filter.newest_first) {
            (true, _) => " ORDER BY f.seq",
            (false, true) => " ORDER BY f.id DESC",
            (false, false) => " ORDER BY f.id",
        });
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        sql.push_str(&format!(" LIMIT {}", limit + 1));
        let c = self.pool.get().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c.query(&sql, &params).await?;
        let (mut folds, mut bytes, mut more) = (Vec::new(), 0, false);
        for row in &rows {
            if folds.len() == limit || bytes >= MAX_PAGE_BYTES {
                more = true;
                break;
            }
            let fold = fold_from_row(row)?;
            bytes += json_size(&fold.spec);
            folds.push(fold);
        }
        let last = folds.last().map(|f| if by_seq { f.seq } else { f.id });
        let seq = match (more, by_seq, folds.last()) {
            (true, true, Some(f)) => f.seq,
            _ => c
                .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
                .await?
                .get(0),
        };
        Ok(FoldPage {
            folds,
            seq,
            next: last.filter(|_| more),
        })
    }
}

impl PgStore {
    /// Ok when `scope` sees the resource, else the same NotFound as for a missing one (as
    /// `Store::visible`).
    pub async fn visible(&self, scope: &Scope, r: Resource) -> Result<()> {
        let c = self.pool.get().await?;
        check(&*c, scope, r).await
    }
}

/// Ok when `scope` sees the resource, else its "missing" error (as `tenancy::check`).
pub(super) async fn check(c: &impl GenericClient, scope: &Scope, r: Resource) -> Result<()> {
    let (sql, id) = r.owner_query();
    let sql = sql.replace("?1", "$1");
    // `Some(None)`: a dataset from before owners (only admins see it).
    let owner: Option<Option<String>> = c.query_opt(&sql, &[&id]).await?.map(|row| row.get(0));
    match owner {
        Some(owner) if scope.sees(owner.as_deref()) => Ok(()),
        _ => Err(r.missing()),
    }
}

/// A token row (`id, owner, admin, created_at, expires_at, revoked_at, last_used_at`).
fn token_from_row(r: &tokio_postgres::Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        owner: r.get(1),
        admin: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        revoked_at: r.get(5),
        last_used_at: r.get(6),
    }
}

const TOKEN_COLUMNS: &str = "id, owner, admin, created_at, expires_at, revoked_at, last_used_at";

impl PgStore {
    /// Every token, oldest first (as `Store::list_tokens`).
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(token_from_row).collect())
    }

    /// Revokes one token by id (as `Store::revoke_token`).
    pub async fn revoke_token(&self, id: i64) -> Result<TokenRecord> {
        let c = self.pool.get().await?;
        let Some(row) = c
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                &[&id],
            )
            .await?
        else {
            return Err(StoreError::NotFound(format!(
                "no token with id {id} (see `datarun token list`)"
            )));
        };
        let mut t = token_from_row(&row);
        let now = now_ms();
        let changed = c
            .execute(
                "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                &[&now, &id],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "token {id} of {} is revoked already",
                t.owner
            )));
        }
        t.revoked_at = Some(now);
        Ok(t)
    }

    /// Revokes every token of `owner` not revoked yet (as `Store::revoke_owner_tokens`).
    pub async fn revoke_owner_tokens(&self, owner: String) -> Result<Vec<i64>> {
        let c = self.pool.get().await?;
        let ids: Vec<i64> = c
            .query(
                "UPDATE tokens SET revoked_at = $1 WHERE owner = $2 AND revoked_at IS NULL
                 RETURNING id",
                &[&now_ms(), &owner],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Err(StoreError::NotFound(format!(
                "{owner} has no token that is not revoked (see `datarun token list`)"
            )));
        }
        Ok(ids)
    }
}

impl PgStore {
    /// One page of the event feed, as `Store::events_after`: events get ids in commit order
    /// here too (writers take turns), so a window ending at the newest id misses nothing.
    pub async fn events_after(&self, filter: EventFilter) -> Result<EventPage> {
        use crate::store::events::{page, plan, window, window_sql};
        let c = self.pool.get().await?;
        let top: i64 = c
            .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
            .await?
            .get(0);
        let (since, end) = window(&filter, top)?;
        let limit = filter.limit.max(1) as usize;
        let plan = plan(&filter, since, end, limit);
        // SQLite's query with PostgreSQL's placeholders and types.
        let sql = window_sql(&filter.scope, plan.sql_folds)
            .replace("?3 IS NULL", "$3::TEXT IS NULL")
            .replace("+f.owner = ?3", "f.owner = $3")
            .replace("?1", "$1")
            .replace("?2", "$2")
            .replace("?4", "$4");
        let owner = filter.scope.owner().map(str::to_string);
        let rows = c.query(&sql, &[&since, &end, &owner, &plan.limit]).await?;
        let events = rows
            .iter()
            .map(|r| FeedEvent {
                seq: r.get(0),
                at: r.get(1),
                fold: r.get(2),
                attempt: r.get(3),
                kind: r.get(4),
                detail: r.get(5),
                state: r
                    .get::<_, Option<String>>(6)
                    .as_deref()
                    .and_then(FoldState::parse),
            })
            .collect();
        Ok(page(plan.picked(events), since, end, top, limit))
    }
}

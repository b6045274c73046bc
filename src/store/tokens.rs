//! API tokens, like personal access tokens: each is a row of its own (several per owner), shown
//! once and stored as a sha256 hash, found through the hash's unique index (so a request costs
//! one index lookup, whatever the number of tokens) and compared in constant time. A token may
//! expire and may be revoked; both keep the row, so `token list` still shows it.

use super::{now_ms, Result, Store, StoreError};
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use subtle::ConstantTimeEq;

/// Who a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub admin: bool,
    /// The token's id (its webhook secret signs the webhooks it asks for).
    pub token: i64,
}

impl Principal {
    /// Whose rows this principal may see: an admin everyone's, anyone else their own.
    pub fn scope(&self) -> Scope {
        if self.admin {
            Scope::All
        } else {
            Scope::Owner(self.name.clone())
        }
    }
}

/// Whose rows a query may see (the tenancy rule, README "Tenancy").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everyone's: an admin token.
    All,
    /// One owner's.
    Owner(String),
}

impl Scope {
    /// The owner to filter on (`None`: no filter).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Owner(o) => Some(o),
        }
    }

    /// A SQL condition on `column` for this scope, with the owner as parameter `?N` (bind
    /// `owner()`, which is `None` for `All`): a plain equality, so an owner index serves it.
    pub(super) fn sql(&self, column: &str, n: usize) -> String {
        match self {
            Scope::All => format!("?{n} IS NULL"),
            Scope::Owner(_) => format!("{column} = ?{n}"),
        }
    }

    /// Whether a row owned by `owner` is visible (`None`: a row from before owners, which
    /// only admins see).
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Owner(me) => owner == Some(me.as_str()),
        }
    }
}

/// What a presented token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(Principal),
    /// Expired at this time (ms since the epoch).
    Expired(i64),
    /// Revoked at this time (ms since the epoch).
    Revoked(i64),
    Unknown,
}

/// A token as `token list` shows it: never its secret (which is not kept anyway).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub owner: String,
    pub admin: bool,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Updated at most once a minute, so reading it costs no write per request.
    pub last_used_at: Option<i64>,
}

/// `last_used_at` is written only when older than this (ms).
pub(super) const LAST_USED_GRAIN: i64 = 60_000;

pub(super) fn hash_token(token: &str) -> String {
    super::blobs::sha256_hex(token.as_bytes())
}

pub(super) fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("drt_{}", hex::encode(bytes))
}

const TOKEN_COLUMNS: &str =
    "id, owner, admin, created_at, expires_at, revoked_at, last_used_at, hash";

fn token_row(r: &Row) -> rusqlite::Result<(TokenRecord, String)> {
    Ok((
        TokenRecord {
            id: r.get(0)?,
            owner: r.get(1)?,
            admin: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            revoked_at: r.get(5)?,
            last_used_at: r.get(6)?,
        },
        r.get(7)?,
    ))
}

impl Store {
    /// Makes a new token for `owner` (valid until `expires_at`, ms since the epoch, when
    /// given) and returns its id and secret; the secret is not kept. Other tokens of the same
    /// owner are left as they are.
    pub fn create_token(
        &self,
        owner: &str,
        admin: bool,
        expires_at: Option<i64>,
    ) -> Result<(i64, String)> {
        if !crate::model::valid_name(owner) {
            return Err(StoreError::Invalid(format!(
                "token name {owner:?} is not valid (letters, digits, '-', '_', '.', at most 64)"
            )));
        }
        let owner = owner.to_string();
        if let Some(pg) = self.pg() {
            return pg.blocking(move |pg| async move {
                pg.create_token(owner, admin, expires_at).await
            });
        }
        let secret = new_secret();
        let hashed = hash_token(&secret);
        let id = self.call_blocking(move |conn| {
            conn.execute(
                "INSERT INTO tokens (owner, hash, admin, created_at, expires_at, webhook_secret)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    owner,
                    hashed,
                    admin,
                    now_ms(),
                    expires_at,
                    super::webhooks::new_secret()
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })?;
        Ok((id, secret))
    }

    /// What a presented token is. One lookup by the hash's unique index, on a reader (every
    /// API request asks, and none should wait behind the writer's commits and fsyncs); the
    /// stored hash is then compared in constant time. A valid token's last use is recorded
    /// (at most once a minute, a lazy write: a crash of the machine may forget one).
    pub async fn verify_token(&self, token: String) -> Result<TokenCheck> {
        if let Some(pg) = self.pg() {
            return pg.verify_token(token).await;
        }
        let presented = hash_token(&token);
        let now = now_ms();
        let found = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
                    ))?
                    .query_row([&presented], token_row)
                    .optional()?
                    .filter(|(_, stored)| {
                        bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
                    }))
            })
            .await?;
        let Some((t, _)) = found else {
            return Ok(TokenCheck::Unknown);
        };
        if let Some(at) = t.revoked_at {
            return Ok(TokenCheck::Revoked(at));
        }
        if let Some(at) = t.expires_at.filter(|at| *at <= now) {
            return Ok(TokenCheck::Expired(at));
        }
        if t.last_used_at.is_none_or(|at| at + LAST_USED_GRAIN <= now) {
            let id = t.id;
            self.call_lazy(move |conn| {
                conn.prepare_cached("UPDATE tokens SET last_used_at = ?1 WHERE id = ?2")?
                    .execute(params![now, id])?;
                Ok(())
            })
            .await?;
        }
        Ok(TokenCheck::Valid(Principal {
            name: t.owner,
            admin: t.admin,
            token: t.id,
        }))
    }

    /// Every token, oldest first (revoked and expired ones too).
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        if let Some(pg) = self.pg() {
            return pg.blocking(|pg| async move { pg.list_tokens().await });
        }
        self.call_blocking(|conn| {
            let rows = conn
                .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))?
                .query_map([], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().map(|(t, _)| t).collect())
        })
    }

    /// Revokes one token by id; a token already revoked is an error (nothing changes).
    pub fn revoke_token(&self, id: i64) -> Result<TokenRecord> {
        if let Some(pg) = self.pg() {
            return pg.blocking(move |pg| async move { pg.revoke_token(id).await });
        }
        self.call_blocking(move |conn| {
            // Immediate: it reads then writes while the master may be writing.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                    [id],
                    token_row,
                )
                .optional()?;
            let Some((mut t, _)) = found else {
                return Err(StoreError::NotFound(format!(
                    "no token with id {id} (see `datarun token list`)"
                )));
            };
            if t.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "token {id} of {} is revoked already",
                    t.owner
                )));
            }
            let now = now_ms();
            tx.execute(
                "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2",
                params![now, id],
            )?;
            tx.commit()?;
            t.revoked_at = Some(now);
            Ok(t)
        })
    }

    /// Revokes every token of `owner` not revoked yet; their ids (none: an error).
    pub fn revoke_owner_tokens(&self, owner: &str) -> Result<Vec<i64>> {
        let owner = owner.to_string();
        if let Some(pg) = self.pg() {
            return pg.blocking(move |pg| async move { pg.revoke_owner_tokens(owner).await });
        }
        self.call_blocking(move |conn| {
            let ids = conn
                .prepare(
                    "UPDATE tokens SET revoked_at = ?1 WHERE owner = ?2 AND revoked_at IS NULL
                     RETURNING id",
                )?
                .query_map(params![now_ms(), owner], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if ids.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "{owner} has no token that is not revoked (see `datarun token list`)"
                )));
            }
            Ok(ids)
        })
    }
}

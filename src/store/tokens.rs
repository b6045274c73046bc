//! API tokens: shown once, stored as sha256 hashes, compared in constant time.

use super::{now_ms, Result, Store, StoreError};
use rand::RngCore;
use rusqlite::params;
use subtle::ConstantTimeEq;

/// Who a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub admin: bool,
}

fn hash(token: &str) -> String {
    super::blobs::sha256_hex(token.as_bytes())
}

fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("drt_{}", hex::encode(bytes))
}

impl Store {
    /// Creates (or replaces) the token for `name` and returns its secret, which is not kept.
    pub fn create_token(&self, name: &str, admin: bool) -> Result<String> {
        if !crate::model::valid_name(name) {
            return Err(StoreError::Invalid(format!(
                "token name {name:?} is not valid (letters, digits, '-', '_', '.', at most 64)"
            )));
        }
        let name = name.to_string();
        let secret = new_secret();
        let hashed = hash(&secret);
        self.call_blocking(move |conn| {
            conn.execute(
                "INSERT INTO tokens (name, hash, admin, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, admin = excluded.admin",
                params![name, hashed, admin, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(secret)
    }

    /// The principal a presented token belongs to, if any. Every stored hash is compared, in
    /// constant time, so timing tells nothing about which bytes matched.
    pub async fn verify_token(&self, token: String) -> Result<Option<Principal>> {
        let presented = hash(&token);
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT name, hash, admin FROM tokens")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            let mut found = None;
            for row in rows {
                let (name, stored, admin) = row?;
                if bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
                    found = Some(Principal { name, admin });
                }
            }
            Ok(found)
        })
        .await
    }
}

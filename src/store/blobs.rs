//! Content-addressed blobs: stored once by sha256, however often referenced.

use super::{now_ms, Result, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Inserts a blob if it is not stored yet; returns its hash.
pub(crate) fn put(conn: &Connection, data: &[u8]) -> rusqlite::Result<String> {
    let sha = sha256_hex(data);
    conn.prepare_cached(
        "INSERT INTO blobs (sha256, size, data, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(sha256) DO NOTHING",
    )?
    .execute(params![sha, data.len() as i64, data, now_ms()])?;
    Ok(sha)
}

pub(crate) fn get(conn: &Connection, sha: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT data FROM blobs WHERE sha256 = ?1")?
        .query_row([sha], |r| r.get(0))
        .optional()
}

impl Store {
    /// Stores `data`; returns (sha256, size).
    pub async fn put_blob(&self, data: Vec<u8>) -> Result<(String, u64)> {
        let size = data.len() as u64;
        self.call(move |conn| Ok((put(conn, &data)?, size))).await
    }

    pub async fn get_blob(&self, sha: String) -> Result<Vec<u8>> {
        self.call(move |conn| {
            get(conn, &sha)?
                .ok_or_else(|| StoreError::NotFound(format!("no blob with sha256 {sha}")))
        })
        .await
    }
}

//! Blobs read back on PostgreSQL (inline in `blobs.data`): whole, by chunk for the agents'
//! input transfers, and a fold's log and outputs (the API's reads).

use super::queue::get_fold;
use super::PgStore;
use crate::model::FoldId;
use crate::store::blobs::no_blob;
use crate::store::folds::no_output;
use crate::store::{BlobBody, Result};

impl PgStore {
    /// A blob's bytes.
    pub async fn get_blob(&self, sha: String) -> Result<Vec<u8>> {
        let c = self.pool.get().await?;
        c.query_opt("SELECT data FROM blobs WHERE sha256 = $1", &[&sha])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| no_blob(&sha))
    }

    /// Up to `len` bytes of a blob from `offset`: (the blob's size, the bytes).
    pub async fn read_blob_chunk(
        &self,
        sha: String,
        offset: u64,
        len: u64,
    ) -> Result<(u64, Vec<u8>)> {
        // A bytea holds at most 1 GiB: an offset past an int's range is past every blob.
        let from = i32::try_from(offset + 1).unwrap_or(i32::MAX);
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT size, substring(data FROM $2 FOR $3) FROM blobs WHERE sha256 = $1",
                &[&sha, &from, &len],
            )
            .await?
            .ok_or_else(|| no_blob(&sha))?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    /// An output file of a fold's newest attempt.
    pub async fn output(&self, fold: FoldId, name: String) -> Result<BlobBody> {
        let c = self.pool.get().await?;
        c.query_opt(
            "SELECT b.data FROM folds f JOIN outputs o ON o.attempt_id = f.last_attempt
             JOIN blobs b ON b.sha256 = o.sha256 WHERE f.id = $1 AND o.name = $2",
            &[&fold, &name],
        )
        .await?
        .map(|r| BlobBody::Bytes(r.get(0)))
        .ok_or_else(|| no_output(fold, &name))
    }

    /// The log of a fold's newest attempt (empty when it logged nothing or has not ended).
    pub async fn log(&self, fold: FoldId) -> Result<Vec<u8>> {
        let c = self.pool.get().await?;
        get_fold(&*c, fold, false).await?;
        Ok(c.query_opt(
            "SELECT b.data FROM folds f JOIN attempts a ON a.id = f.last_attempt
                 JOIN blobs b ON b.sha256 = a.log_sha256 WHERE f.id = $1",
            &[&fold],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or_default())
    }
}

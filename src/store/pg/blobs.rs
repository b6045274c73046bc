//! Blobs on PostgreSQL, inline in `blobs.data` (a bytea, so within the size limits): uploads
//! and their owners (`POST /blobs`), and reads: whole, by chunk for the agents' input
//! transfers, and a fold's log and outputs.

use super::lease::fence;
use super::queue::get_fold;
use super::PgStore;
use crate::model::FoldId;
use crate::store::blobs::no_blob;
use crate::store::folds::no_output;
use crate::store::{now_ms, sha256_hex, BlobBody, BlobData, Result, Scope, StoreError};
use crate::transfer::StagedBlob;
use tokio_postgres::{GenericClient, Transaction};

/// The largest blob PostgreSQL keeps in a row (a bytea field holds at most 1 GiB).
const MAX_ROW_BLOB: u64 = (1 << 30) - (1 << 20);

/// Stores a blob (a result's log or output, an upload) inline, in `blobs.data`; returns its
/// sha256.
pub(super) async fn put_data(tx: &Transaction<'_>, data: &BlobData) -> Result<String> {
    if data.size() > MAX_ROW_BLOB {
        return Err(StoreError::Invalid(format!(
            "a blob of {} bytes is larger than the PostgreSQL store keeps ({MAX_ROW_BLOB} bytes)",
            data.size()
        )));
    }
    let (sha, bytes) = match data {
        BlobData::Bytes(b) => (sha256_hex(b), std::borrow::Cow::Borrowed(b.as_slice())),
        BlobData::Staged(s) => {
            let bytes = tokio::fs::read(&s.path).await.map_err(|e| {
                StoreError::Io(format!("cannot read the staged blob {}: {e}", s.sha256))
            })?;
            if bytes.len() as u64 != s.size {
                return Err(StoreError::Io(format!(
                    "the staged blob {} changed size ({} bytes, {} expected)",
                    s.sha256,
                    bytes.len(),
                    s.size
                )));
            }
            (s.sha256.clone(), std::borrow::Cow::Owned(bytes))
        }
    };
    tx.execute(
        "INSERT INTO blobs (sha256, size, data, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sha256) DO NOTHING",
        &[&sha, &(bytes.len() as i64), &bytes.as_ref(), &now_ms()],
    )
    .await?;
    Ok(sha)
}

/// Records `owner` as an owner of blob `sha` (idempotent; as `tenancy::own`).
pub(super) async fn own(tx: &Transaction<'_>, sha: &str, owner: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO blob_owners (sha256, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&sha, &owner],
    )
    .await?;
    Ok(())
}

/// A blob's bytes, if it is stored.
pub(super) async fn blob_data(c: &impl GenericClient, sha: &str) -> Result<Option<Vec<u8>>> {
    Ok(
        c.query_opt("SELECT data FROM blobs WHERE sha256 = $1", &[&sha])
            .await?
            .map(|r| r.get(0)),
    )
}

/// The log of a fold's newest attempt (empty when it has none).
pub(super) async fn last_log(c: &impl GenericClient, fold: FoldId) -> Result<Vec<u8>> {
    Ok(c.query_opt(
        "SELECT b.data FROM folds f JOIN attempts a ON a.id = f.last_attempt
             JOIN blobs b ON b.sha256 = a.log_sha256 WHERE f.id = $1",
        &[&fold],
    )
    .await?
    .map(|r| r.get(0))
    .unwrap_or_default())
}

impl PgStore {
    /// A blob's bytes.
    pub async fn get_blob(&self, sha: String) -> Result<Vec<u8>> {
        let c = self.pool.get().await?;
        blob_data(&*c, &sha).await?.ok_or_else(|| no_blob(&sha))
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
        last_log(&*c, fold).await
    }
}

impl PgStore {
    /// Stores `data` (as `Store::put_blob`); returns (sha256, size).
    pub async fn put_blob(&self, data: Vec<u8>) -> Result<(String, u64)> {
        let size = data.len() as u64;
        let sha = self.put(BlobData::Bytes(data)).await?;
        Ok((sha, size))
    }

    /// Stores a staged blob (its bytes go in the row); the temp file is gone afterwards.
    pub async fn put_staged(&self, staged: StagedBlob) -> Result<(String, u64)> {
        let size = staged.size;
        let data = BlobData::Staged(staged);
        let stored = self.put(data.clone()).await;
        data.discard();
        Ok((stored?, size))
    }

    async fn put(&self, data: BlobData) -> Result<String> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        let sha = put_data(&tx, &data).await?;
        tx.commit().await?;
        Ok(sha)
    }

    /// Records `owner` as an owner of these (stored) blobs: they uploaded the bytes.
    pub async fn own_blobs(&self, owner: String, shas: Vec<String>) -> Result<()> {
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        for sha in &shas {
            tx.execute(
                "INSERT INTO blob_owners (sha256, owner) SELECT sha256, $2 FROM blobs
                 WHERE sha256 = $1 ON CONFLICT DO NOTHING",
                &[sha, &owner],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether `scope` may use blob `sha` (own it, or see everything and it is stored).
    pub async fn may_use_blob(&self, scope: &Scope, sha: String) -> Result<bool> {
        let c = self.pool.get().await?;
        let sql = match scope {
            Scope::All => {
                "SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = $1 AND $2::TEXT IS NULL)"
            }
            Scope::Owner(_) => {
                "SELECT EXISTS(SELECT 1 FROM blob_owners WHERE sha256 = $1 AND owner = $2)"
            }
        };
        Ok(c.query_one(sql, &[&sha, &scope.owner()]).await?.get(0))
    }
}

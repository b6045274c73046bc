//! Content-addressed blobs: stored once by sha256, however often referenced.
//!
//! Where the bytes live depends on the size. A blob of at most [`INLINE_MAX`] bytes stays in
//! its `blobs` row (one transaction, one fsync with everything else). A larger one is a file
//! in the blob directory next to the database, `<data>/blobs/ab/<sha256>` (written to a temp
//! file in `<data>/blobs/tmp/`, fsynced, renamed into place, the directory fsynced), and its
//! row keeps `sha256`, `size`, `created_at` and `location = 'file'` with an empty `data`
//! (migration 9; rows written before it keep their bytes inline and are read as they are).
//! A file is always in place before its row commits; a file whose row never committed (a
//! rolled-back transaction, a crash) is swept by the purge.
//!
//! [`BlobFiles`] is what the store needs from the files; a second store (PostgreSQL) would
//! implement it too. Nothing outside `store` touches the blob directory.

use super::{now_ms, Result, Store, StoreError};
use crate::transfer::{HashingFile, StagedBlob};
use rusqlite::{params, Connection, OptionalExtension};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Blobs up to this size stay in their row; larger ones are files.
pub const INLINE_MAX: u64 = 64 << 10;

pub use crate::model::is_sha256_hex as is_sha256;
pub use crate::transfer::sha256_hex;

/// The bytes of the blobs kept as files.
pub trait BlobFiles {
    /// A temp file in the staging area, to stream a new blob into (put from a stream).
    fn stage(&self) -> io::Result<HashingFile>;
    /// Puts a staged (complete, fsynced) file in place under its sha256, durably. When the
    /// blob is there already the staged file is left for its owner to discard.
    fn put(&self, staged: &StagedBlob) -> io::Result<()>;
    /// Opens a blob for reading.
    fn open(&self, sha: &str) -> io::Result<File>;
    /// The blob's size, None when there is no such file.
    fn size(&self, sha: &str) -> io::Result<Option<u64>>;
    fn exists(&self, sha: &str) -> bool {
        matches!(self.size(sha), Ok(Some(_)))
    }
    /// Removes a blob's file (no error when it is gone already).
    fn delete(&self, sha: &str) -> io::Result<()>;
}

/// Blob files in a directory: `<root>/ab/<sha256>`, temp files in `<root>/tmp/`.
#[derive(Clone, Debug)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub fn new(root: PathBuf) -> BlobDir {
        BlobDir { root }
    }

    /// The blob directory of the database `conn` has open: `blobs/` next to it.
    pub fn of(conn: &Connection) -> Result<BlobDir> {
        match conn.path().filter(|p| !p.is_empty()) {
            Some(path) => Ok(BlobDir::for_database(Path::new(path))),
            None => Err(StoreError::Io(
                "an in-memory database has no blob directory".into(),
            )),
        }
    }

    pub fn for_database(db: &Path) -> BlobDir {
        let dir = db.parent().unwrap_or(Path::new("."));
        BlobDir::new(dir.join("blobs"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, sha: &str) -> io::Result<PathBuf> {
        if !is_sha256(sha) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{sha:?} is not a sha256"),
            ));
        }
        Ok(self.root.join(&sha[..2]).join(sha))
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Writes bytes already in memory as a blob file; returns its sha256.
    fn put_bytes(&self, data: &[u8]) -> io::Result<String> {
        let mut file = self.stage()?;
        file.write(data)?;
        let staged = file.finish(true)?;
        let put = self.put(&staged);
        staged.discard();
        put.map(|_| staged.sha256)
    }

    /// Puts blob `sha` into `other` too: a hard link when both are on one filesystem (blob
    /// files never change), else a copy. Returns its size.
    pub fn copy_to(&self, sha: &str, other: &BlobDir) -> io::Result<u64> {
        let (from, to) = (self.path(sha)?, other.path(sha)?);
        let size = std::fs::metadata(&from)?.len();
        if other.size(sha)? == Some(size) {
            return Ok(size);
        }
        std::fs::create_dir_all(to.parent().expect("a blob path has a parent"))?;
        if std::fs::hard_link(&from, &to).is_err() {
            let mut staged = other.stage()?;
            let mut file = File::open(&from)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                staged.write(&buf[..n])?;
            }
            let staged = staged.finish(true)?;
            let put = other.put(&staged);
            staged.discard();
            put?;
        }
        Ok(size)
    }

    /// Removes blob files older than `before` that `keep` does not name (blobs whose row
    /// never committed) and temp files older than `temp_before` (transfers and uploads that
    /// died): (files, bytes) removed.
    pub fn sweep(
        &self,
        before: SystemTime,
        temp_before: SystemTime,
        keep: impl Fn(&str) -> bool,
    ) -> io::Result<(u64, u64)> {
        let (mut files, mut bytes) = (0, 0);
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return Ok((0, 0));
        };
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().to_string();
            let is_tmp = name == "tmp";
            let fan_out = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !(is_tmp || fan_out) {
                continue;
            }
            for entry in std::fs::read_dir(dir.path())?.flatten() {
                let file = entry.file_name().to_string_lossy().to_string();
                let Ok(meta) = entry.metadata() else { continue };
                let cutoff = if is_tmp { temp_before } else { before };
                let old = meta.modified().map(|m| m < cutoff).unwrap_or(false);
                if meta.is_file() && old && (is_tmp || !keep(&file)) {
                    std::fs::remove_file(entry.path())?;
                    files += 1;
                    bytes += meta.len();
                }
            }
        }
        Ok((files, bytes))
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl BlobFiles for BlobDir {
    fn stage(&self) -> io::Result<HashingFile> {
        HashingFile::create_in(&self.tmp())
    }

    fn put(&self, staged: &StagedBlob) -> io::Result<()> {
        let dest = self.path(&staged.sha256)?;
        if self.size(&staged.sha256)? == Some(staged.size) {
            return Ok(());
        }
        let dir = dest.parent().expect("a blob path has a parent");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(&staged.path, &dest)?;
        sync_dir(dir);
        Ok(())
    }

    fn open(&self, sha: &str) -> io::Result<File> {
        File::open(self.path(sha)?)
    }

    fn size(&self, sha: &str) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(sha)?) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, sha: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(sha)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A blob to read: its bytes (inline rows) or its open file.
#[derive(Debug)]
pub enum BlobBody {
    Bytes(Vec<u8>),
    File { file: File, size: u64 },
}

impl BlobBody {
    pub fn size(&self) -> u64 {
        match self {
            BlobBody::Bytes(b) => b.len() as u64,
            BlobBody::File { size, .. } => *size,
        }
    }

    /// The whole blob in memory (for the callers that need it whole: tables, indices).
    pub fn read_all(self) -> io::Result<Vec<u8>> {
        match self {
            BlobBody::Bytes(b) => Ok(b),
            BlobBody::File { file, size } => {
                let mut data = Vec::with_capacity(size as usize);
                file.take(size).read_to_end(&mut data)?;
                Ok(data)
            }
        }
    }
}

fn io_error(what: &str, sha: &str, e: io::Error) -> StoreError {
    StoreError::Io(format!("{what} blob {sha}: {e}"))
}

/// How a blob is stored: (location, size), None when there is no such blob.
fn row(conn: &Connection, sha: &str) -> Result<Option<(String, u64)>> {
    Ok(conn
        .prepare_cached("SELECT location, size FROM blobs WHERE sha256 = ?1")?
        .query_row([sha], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .optional()?)
}

fn insert(conn: &Connection, sha: &str, size: u64, inline: Option<&[u8]>) -> Result<()> {
    let location = if inline.is_some() { "row" } else { "file" };
    conn.prepare_cached(
        "INSERT INTO blobs (sha256, size, data, created_at, location) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(sha256) DO NOTHING",
    )?
    .execute(params![
        sha,
        size as i64,
        inline.unwrap_or_default(),
        now_ms(),
        location
    ])?;
    Ok(())
}

/// Whether a row's bytes are really there (a file row whose file is gone is repaired by the
/// next put of the same content).
fn present(conn: &Connection, sha: &str, location: &str) -> Result<bool> {
    Ok(location == "row" || BlobDir::of(conn)?.exists(sha))
}

/// Whether a row names blob `sha`.
pub(super) fn named(conn: &Connection, sha: &str) -> Result<bool> {
    Ok(row(conn, sha)?.is_some())
}

/// Deletes the files of these blobs, except those a row names (again): the second step of a
/// purge, once the deletion of their rows is durable.
pub(super) fn delete_files(conn: &Connection, shas: &[String]) -> Result<()> {
    let dir = BlobDir::of(conn)?;
    for sha in shas {
        if !named(conn, sha)? {
            if let Err(e) = dir.delete(sha) {
                tracing::warn!("purge: cannot remove the file of blob {sha}: {e}");
            }
        }
    }
    Ok(())
}

/// Stores bytes already in memory if they are not stored yet; returns their hash.
pub(crate) fn put(conn: &Connection, data: &[u8]) -> Result<String> {
    let sha = sha256_hex(data);
    if let Some((location, _)) = row(conn, &sha)? {
        if present(conn, &sha, &location)? {
            return Ok(sha);
        }
    }
    if data.len() as u64 <= INLINE_MAX {
        insert(conn, &sha, data.len() as u64, Some(data))?;
    } else {
        BlobDir::of(conn)?
            .put_bytes(data)
            .map_err(|e| io_error("cannot write", &sha, e))?;
        insert(conn, &sha, data.len() as u64, None)?;
    }
    Ok(sha)
}

/// Stores a staged temp file (already hashed and fsynced) if its blob is not stored yet. The
/// temp file is moved into place or left for its owner to discard, so a failed transaction
/// can be retried with the same staged file.
pub(crate) fn adopt(conn: &Connection, staged: &StagedBlob) -> Result<()> {
    let sha = &staged.sha256;
    if let Some((location, _)) = row(conn, sha)? {
        if present(conn, sha, &location)? {
            return Ok(());
        }
    }
    if staged.size <= INLINE_MAX {
        let data =
            std::fs::read(&staged.path).map_err(|e| io_error("cannot read staged", sha, e))?;
        if data.len() as u64 != staged.size || sha256_hex(&data) != *sha {
            return Err(StoreError::Io(format!(
                "the staged file of blob {sha} changed"
            )));
        }
        insert(conn, sha, staged.size, Some(&data))
    } else {
        BlobDir::of(conn)?
            .put(staged)
            .map_err(|e| io_error("cannot put", sha, e))?;
        insert(conn, sha, staged.size, None)
    }
}

/// Opens a blob for reading, None when there is no such blob.
pub(crate) fn open(conn: &Connection, sha: &str) -> Result<Option<BlobBody>> {
    let Some((location, size)) = row(conn, sha)? else {
        return Ok(None);
    };
    if location == "row" {
        let data: Vec<u8> = conn
            .prepare_cached("SELECT data FROM blobs WHERE sha256 = ?1")?
            .query_row([sha], |r| r.get(0))?;
        return Ok(Some(BlobBody::Bytes(data)));
    }
    let file = BlobDir::of(conn)?
        .open(sha)
        .map_err(|e| io_error("cannot open", sha, e))?;
    Ok(Some(BlobBody::File { file, size }))
}

/// A whole blob in memory, None when there is no such blob.
pub(crate) fn get(conn: &Connection, sha: &str) -> Result<Option<Vec<u8>>> {
    match open(conn, sha)? {
        Some(body) => Ok(Some(
            body.read_all()
                .map_err(|e| io_error("cannot read", sha, e))?,
        )),
        None => Ok(None),
    }
}

/// What asking for a blob the store does not have answers.
pub(super) fn no_blob(sha: &str) -> StoreError {
    StoreError::NotFound(format!("no blob with sha256 {sha}"))
}

/// Where the bytes of a range of a blob are: inline (read) or in its file.
enum Range {
    Bytes(Vec<u8>),
    File(BlobDir),
}

impl Store {
    /// Stores `data`; returns (sha256, size).
    pub async fn put_blob(&self, data: Vec<u8>) -> Result<(String, u64)> {
        if let Some(pg) = self.pg() {
            return pg.put_blob(data).await;
        }
        let size = data.len() as u64;
        self.call(move |conn| Ok((put(conn, &data)?, size))).await
    }

    /// A temp file in the blob store's staging area to stream a new blob into; hand it to
    /// [`Store::put_staged`] (or to a result) once complete.
    pub fn stage_blob(&self) -> Result<HashingFile> {
        self.files
            .stage()
            .map_err(|e| StoreError::Io(format!("cannot make a temp file for a blob: {e}")))
    }

    /// Empties the staging area: temp files of uploads and transfers a previous master left
    /// (only the master may call it, before it serves: one master per data dir).
    pub fn clear_staging(&self) {
        let Ok(entries) = std::fs::read_dir(self.files.tmp()) else {
            return;
        };
        for entry in entries.flatten() {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }

    /// Stores a staged blob; returns (sha256, size). The temp file is gone afterwards.
    pub async fn put_staged(&self, staged: StagedBlob) -> Result<(String, u64)> {
        if let Some(pg) = self.pg() {
            return pg.put_staged(staged).await;
        }
        self.call(move |conn| {
            let done = adopt(conn, &staged);
            staged.discard();
            done.map(|_| (staged.sha256.clone(), staged.size))
        })
        .await
    }

    /// A blob to stream: a file's is opened, not read (PostgreSQL's rows come whole).
    pub async fn blob_body(&self, sha: String) -> Result<BlobBody> {
        if let Some(pg) = self.pg() {
            return pg.get_blob(sha).await.map(BlobBody::Bytes);
        }
        self.read(move |conn| open(conn, &sha)?.ok_or_else(|| no_blob(&sha)))
            .await
    }

    pub async fn get_blob(&self, sha: String) -> Result<Vec<u8>> {
        if let Some(pg) = self.pg() {
            return pg.get_blob(sha).await;
        }
        self.read(move |conn| get(conn, &sha)?.ok_or_else(|| no_blob(&sha)))
            .await
    }

    /// Up to `len` bytes (at most `transfer::CHUNK`) of a blob from `offset`: (the blob's
    /// size, the bytes). A file blob is read off the store's thread.
    pub async fn read_blob_chunk(
        &self,
        sha: String,
        offset: u64,
        len: u64,
    ) -> Result<(u64, Vec<u8>)> {
        let len = len.min(crate::transfer::CHUNK);
        if let Some(pg) = self.pg() {
            return pg.read_blob_chunk(sha, offset, len).await;
        }
        let (size, range) = {
            let sha = sha.clone();
            self.read(move |conn| {
                let Some((location, size)) = row(conn, &sha)? else {
                    return Err(no_blob(&sha));
                };
                if location == "file" {
                    return Ok((size, Range::File(BlobDir::of(conn)?)));
                }
                let data: Vec<u8> = conn
                    .prepare_cached("SELECT substr(data, ?2, ?3) FROM blobs WHERE sha256 = ?1")?
                    .query_row(params![sha, offset as i64 + 1, len as i64], |r| r.get(0))?;
                Ok((size, Range::Bytes(data)))
            })
            .await?
        };
        let data = match range {
            Range::Bytes(data) => data,
            Range::File(dir) => tokio::task::spawn_blocking(move || {
                let path = dir.path(&sha)?;
                crate::transfer::read_chunk(&path, offset, len).map(|(data, _)| data)
            })
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
            .map_err(|e| StoreError::Io(format!("cannot read a blob file: {e}")))?,
        };
        Ok((size, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_blobs_stay_in_rows_large_ones_are_files_and_both_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let small = b"small".to_vec();
        let large: Vec<u8> = (0..(INLINE_MAX + 1)).map(|i| (i % 256) as u8).collect();
        let (s_sha, _) = store.put_blob(small.clone()).await.unwrap();
        let (l_sha, size) = store.put_blob(large.clone()).await.unwrap();
        assert_eq!(size, INLINE_MAX + 1);
        let file = dir.path().join("blobs").join(&l_sha[..2]).join(&l_sha);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            large,
            "a large blob is a file"
        );
        assert!(!dir.path().join("blobs").join(&s_sha[..2]).exists());
        assert_eq!(store.get_blob(s_sha.clone()).await.unwrap(), small);
        assert_eq!(store.get_blob(l_sha.clone()).await.unwrap(), large);
        let (total, chunk) = store.read_blob_chunk(l_sha.clone(), 10, 5).await.unwrap();
        assert_eq!((total, chunk), (size, large[10..15].to_vec()));
        let (total, chunk) = store.read_blob_chunk(s_sha.clone(), 2, 100).await.unwrap();
        assert_eq!((total, chunk), (5, b"all".to_vec()));
        let locations: Vec<(String, i64)> = store
            .call(|c| {
                Ok(
                    c.prepare("SELECT location, length(data) FROM blobs ORDER BY size")?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?,
                )
            })
            .await
            .unwrap();
        assert_eq!(locations, vec![("row".into(), 5), ("file".into(), 0)]);

        // A staged stream lands in the same place; a second copy of it is only discarded.
        for _ in 0..2 {
            let mut staged = store.stage_blob().unwrap();
            staged.write(&large[..1000]).unwrap();
            staged.write(&large[1000..]).unwrap();
            let staged = staged.finish(true).unwrap();
            let path = staged.path.clone();
            assert_eq!(
                store.put_staged(staged).await.unwrap(),
                (l_sha.clone(), size)
            );
            assert!(!path.exists());
        }
        // A master starting clears what a previous one left staged.
        let mut left = store.stage_blob().unwrap();
        left.write(b"half").unwrap();
        let left = left.finish(false).unwrap();
        store.clear_staging();
        assert!(!left.path.exists());
        // A blob file lost from the disk is put back by the next upload of its content.
        std::fs::remove_file(&file).unwrap();
        assert!(store.get_blob(l_sha.clone()).await.is_err());
        store.put_blob(large.clone()).await.unwrap();
        assert_eq!(store.get_blob(l_sha).await.unwrap(), large);
        assert!(store.read_blob_chunk("00".repeat(32), 0, 1).await.is_err());
    }

    #[test]
    fn blob_paths_take_only_sha256_names() {
        let dir = BlobDir::new(PathBuf::from("/nonexistent"));
        assert!(dir.open("../../etc/passwd").is_err());
        assert!(dir.path(&"AB".repeat(32)).is_err());
        assert!(dir.path(&"ab".repeat(32)).is_ok());
    }
}

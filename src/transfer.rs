//! Files that travel between master and agent in chunks, never whole in memory or in one
//! message: the puller asks for ranges (at most a window of them outstanding), takes the chunks
//! in any order, writes them in order to a temp file while hashing, and checks the size and the
//! sha256 at the end. The master pulls a finished attempt's outputs (and a long log) from the
//! agent this way; the agent pulls a fold's input blobs from the master.
//!
//! This module does plain file IO only: where the temp files live (the master's blob store,
//! the agent's cache) is its caller's business.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The sha256 of `data` as 64 lowercase hex digits (how blobs are named everywhere).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The largest chunk of a file in one message (before base64).
pub const CHUNK: u64 = 1 << 20;
/// How many chunk requests a puller keeps outstanding.
pub const WINDOW: usize = 4;

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A temp file being written and hashed; removed when dropped unless finished.
pub struct HashingFile {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

/// A complete temp file with its hash and size, waiting to be moved into place. It is not
/// removed on drop: whoever moves it (or gives up on it) calls [`StagedBlob::discard`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedBlob {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl StagedBlob {
    /// Removes the temp file if it is still there (moved into place, it is not).
    pub fn discard(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot remove the temp file {}: {e}", self.path.display());
            }
        }
    }
}

impl HashingFile {
    /// A new, empty temp file in `dir` (created if needed).
    pub fn create_in(dir: &Path) -> io::Result<HashingFile> {
        std::fs::create_dir_all(dir)?;
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(HashingFile {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("an unfinished temp file");
        file.write_all(data)?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes the file (fsynced when `durable`) and hands it over with its hash.
    pub fn finish(mut self, durable: bool) -> io::Result<StagedBlob> {
        let file = self.file.take().expect("an unfinished temp file");
        if durable {
            file.sync_all()?;
        }
        drop(file);
        let staged = StagedBlob {
            path: std::mem::take(&mut self.path),
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            size: self.size,
        };
        Ok(staged)
    }
}

impl Drop for HashingFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The sha256 and size of a file, read in blocks.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Up to `len` bytes (at most [`CHUNK`]) of the regular file `path` from `offset`, and whether
/// that reaches its end. A symlink as the last component is refused (`O_NOFOLLOW`).
pub fn read_chunk(path: &Path, offset: u64, len: u64) -> io::Result<(Vec<u8>, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let len = len.min(CHUNK).min(meta.len().saturating_sub(offset)) as usize;
    let data = read_at(&file, offset, len)?;
    let end = offset + data.len() as u64 >= meta.len();
    Ok((data, end))
}

/// Up to `len` bytes of `file` from `offset` (fewer at its end).
pub fn read_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut data = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut data[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    data.truncate(got);
    Ok(data)
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the file is shorter than announced: {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("its content does not match its sha256 (expected {expected}, got {got})")]
    Mismatch { expected: String, got: String },
    #[error("{0}")]
    Protocol(String),
}

/// One file being pulled in chunks into a [`HashingFile`].
pub struct Pull {
    sha256: String,
    /// Known up front (outputs are listed with their size) or from the first chunk.
    size: Option<u64>,
    /// The next offset to ask for.
    next: u64,
    /// Requests out: offset -> (length asked, the data once it came).
    pending: BTreeMap<u64, (u64, Option<Vec<u8>>)>,
    sink: HashingFile,
}

impl Pull {
    pub fn new(sink: HashingFile, sha256: &str, size: Option<u64>) -> Pull {
        Pull {
            sha256: sha256.to_string(),
            size,
            next: 0,
            pending: BTreeMap::new(),
            sink,
        }
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Requests out (answered or not) not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether every byte is written.
    pub fn done(&self) -> bool {
        self.size == Some(self.sink.size())
    }

    /// The ranges (offset, length) to ask for now, keeping at most `window` outstanding. Until
    /// the size is known, only the first chunk is asked for.
    pub fn requests(&mut self, window: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        match self.size {
            None if self.next == 0 => {
                out.push((0, CHUNK));
                self.pending.insert(0, (CHUNK, None));
                self.next = CHUNK;
            }
            None => {}
            Some(size) => {
                while self.pending.len() < window && self.next < size {
                    let len = CHUNK.min(size - self.next);
                    out.push((self.next, len));
                    self.pending.insert(self.next, (len, None));
                    self.next += len;
                }
            }
        }
        out
    }

    /// The requests still unanswered (to ask again after a stall).
    pub fn outstanding(&self) -> Vec<(u64, u64)> {
        self.pending
            .iter()
            .filter(|(_, (_, data))| data.is_none())
            .map(|(offset, (len, _))| (*offset, *len))
            .collect()
    }

    /// Takes a chunk (a duplicate or one never asked for is ignored); `size` is the whole
    /// file's, when the sender says. Ok(true) once the file is complete.
    pub fn on_chunk(
        &mut self,
        offset: u64,
        data: Vec<u8>,
        size: Option<u64>,
        eof: bool,
    ) -> Result<bool, PullError> {
        match (self.size, size) {
            (None, Some(s)) => self.size = Some(s),
            (Some(a), Some(b)) if a != b => {
                return Err(PullError::Protocol(format!(
                    "the size changed from {a} to {b} bytes"
                )))
            }
            _ => {}
        }
        let Some(size) = self.size else {
            return Err(PullError::Protocol(
                "the first chunk did not say the file's size".into(),
            ));
        };
        let Some((asked, slot)) = self.pending.get_mut(&offset) else {
            return Ok(self.done());
        };
        if slot.is_some() {
            return Ok(self.done());
        }
        let expected = (*asked).min(size.saturating_sub(offset));
        let got = data.len() as u64;
        if got > expected {
            return Err(PullError::Protocol(format!(
                "a chunk at {offset} has {got} bytes, more than the {expected} asked for"
            )));
        }
        if got < expected || (eof && offset + got < size) {
            return Err(PullError::Truncated {
                got: offset + got,
                expected: size,
            });
        }
        *slot = Some(data);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.sink.size() || entry.get().1.is_none() {
                break;
            }
            let (_, data) = entry.remove();
            self.sink.write(&data.unwrap_or_default())?;
        }
        Ok(self.done())
    }

    /// The complete file, checked against its sha256 (fsynced when `durable`).
    pub fn finish(self, durable: bool) -> Result<StagedBlob, PullError> {
        if !self.done() {
            return Err(PullError::Truncated {
                got: self.sink.size(),
                expected: self.size.unwrap_or(0),
            });
        }
        let staged = self.sink.finish(durable)?;
        if staged.sha256 != self.sha256 {
            staged.discard();
            return Err(PullError::Mismatch {
                expected: self.sha256,
                got: staged.sha256,
            });
        }
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Serves every request from `data` (as an agent would from the file), in reverse order.
    fn drive(pull: &mut Pull, data: &[u8], size_known: bool) -> Result<bool, PullError> {
        loop {
            let mut asked = pull.requests(WINDOW);
            if asked.is_empty() {
                return Ok(pull.done());
            }
            assert!(asked.len() <= WINDOW);
            asked.reverse();
            for (offset, len) in asked {
                let end = (offset + len).min(data.len() as u64);
                let chunk = data[offset as usize..end as usize].to_vec();
                let size = (!size_known).then_some(data.len() as u64);
                if pull.on_chunk(offset, chunk, size, end == data.len() as u64)? {
                    return Ok(true);
                }
            }
        }
    }

    #[test]
    fn a_file_of_many_chunks_arrives_whole_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(5 * CHUNK + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for size_known in [true, false] {
            let sink = HashingFile::create_in(dir.path()).unwrap();
            let size = size_known.then_some(data.len() as u64);
            let mut pull = Pull::new(sink, &sha(&data), size);
            assert!(drive(&mut pull, &data, size_known).unwrap());
            let staged = pull.finish(true).unwrap();
            assert_eq!(std::fs::read(&staged.path).unwrap(), data);
            assert_eq!(staged.size, data.len() as u64);
            staged.discard();
        }
        // Nothing is left behind, and an empty file needs no request at all.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let sink = HashingFile::create_in(dir.path()).unwrap();
        let mut empty = Pull::new(sink, &sha(b""), Some(0));
        assert!(empty.requests(WINDOW).is_empty());
        empty.finish(false).unwrap().discard();
    }

    #[test]
    fn a_hash_mismatch_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![1u8; (CHUNK + 10) as usize];
        let sink = HashingFile::create_in(dir.path()).unwrap();
        let mut pull = Pull::new(sink, &sha(b"something else"), Some(data.len() as u64));
        assert!(drive(&mut pull, &data, true).unwrap());
        let err = pull.finish(true).unwrap_err();
        assert!(matches!(err, PullError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match its sha256"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![2u8; (2 * CHUNK) as usize];
        // The report said 3 chunks; the file on the agent has only 2.
        let sink = HashingFile::create_in(dir.path()).unwrap();
        let mut pull = Pull::new(sink, &sha(&data), Some(3 * CHUNK));
        let err = drive(&mut pull, &data, true).unwrap_err();
        assert!(matches!(err, PullError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("shorter than announced"), "{err}");
        drop(pull);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the temp file goes with the pull"
        );

        // A chunk longer than asked, or a size that changes, is a protocol error.
        let sink = HashingFile::create_in(dir.path()).unwrap();
        let mut pull = Pull::new(sink, &sha(&data), Some(10));
        let (offset, _) = pull.requests(WINDOW)[0];
        assert!(pull.on_chunk(offset, vec![0; 11], None, true).is_err());
        assert!(pull.on_chunk(offset, vec![0; 10], Some(11), true).is_err());
    }

    #[test]
    fn duplicates_and_unasked_chunks_are_ignored_and_stalls_can_be_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![3u8; (2 * CHUNK) as usize];
        let sink = HashingFile::create_in(dir.path()).unwrap();
        let mut pull = Pull::new(sink, &sha(&data), Some(data.len() as u64));
        let asked = pull.requests(WINDOW);
        assert_eq!(asked, vec![(0, CHUNK), (CHUNK, CHUNK)]);
        assert!(!pull
            .on_chunk(0, data[..CHUNK as usize].to_vec(), None, false)
            .unwrap());
        assert!(!pull.on_chunk(0, vec![9; 5], None, false).unwrap());
        assert!(!pull.on_chunk(77, vec![9; 5], None, false).unwrap());
        assert_eq!(pull.outstanding(), vec![(CHUNK, CHUNK)]);
        assert!(pull
            .on_chunk(CHUNK, data[CHUNK as usize..].to_vec(), None, true)
            .unwrap());
        pull.finish(false).unwrap().discard();
    }

    #[test]
    fn read_chunk_reads_ranges_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_chunk(&path, 0, 4).unwrap(), (b"0123".to_vec(), false));
        assert_eq!(read_chunk(&path, 8, 4).unwrap(), (b"89".to_vec(), true));
        assert_eq!(read_chunk(&path, 12, 4).unwrap(), (Vec::new(), true));
        std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
        assert!(read_chunk(&dir.path().join("link"), 0, 4).is_err());
        assert!(read_chunk(dir.path(), 0, 4).is_err());
        assert_eq!(
            hash_file(&path).unwrap(),
            (sha(b"0123456789"), 10),
            "hash_file streams the same hash"
        );
    }
}

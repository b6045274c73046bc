//! The tail of the fold's log: keeps the last bytes of a stream and counts what it let go.
//!
//! A running fold's tail is also *live*: the executor writes it ([`Tail::live`]) and the
//! agent reads it for a master that follows the log ([`fetch`]), in bounded chunks.
//!
//! Offsets count the bytes of the fold's output as it wrote them (stdout and stderr
//! interleaved). The kept log is that output whole while it fits the log limit, so offsets
//! into it are the same; once the head was dropped, the kept log is a marker line
//! ([`marker`]: "[datarun: N earlier bytes of log dropped]") and then the output from byte N
//! on. A reader asking for bytes that are no longer kept gets the marker (saying how many of
//! the bytes it asked for are gone) and the oldest kept bytes after it ([`Slice`]).

use crate::model::AttemptId;
use crate::protocol::FromAgent;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

/// The most bytes one live read returns.
pub use crate::protocol::MAX_LOG_CHUNK as MAX_LIVE_CHUNK;

/// The kept bytes, shared between the writer and live readers.
struct Kept {
    bytes: VecDeque<u8>,
    limit: usize,
    /// Bytes of output written in all.
    written: u64,
    /// Where the log `take_log` returns next begins (what an earlier take handed out is gone).
    taken: u64,
    /// The writer has handed out its log: nothing more comes.
    ended: bool,
}

impl Kept {
    /// The offset of the oldest kept byte.
    fn head(&self) -> u64 {
        self.written - self.bytes.len() as u64
    }
}

/// The live tails of this process's running folds, by attempt.
static LIVE: LazyLock<Mutex<HashMap<AttemptId, Arc<Mutex<Kept>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Tail {
    kept: Arc<Mutex<Kept>>,
    /// The attempt whose live tail this is (readable with [`fetch`] until dropped).
    live: Option<AttemptId>,
}

impl Tail {
    pub fn new(limit: u64) -> Tail {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Tail {
            kept: Arc::new(Mutex::new(Kept {
                bytes: VecDeque::new(),
                limit,
                written: 0,
                taken: 0,
                ended: false,
            })),
            live: None,
        }
    }

    /// A tail readers may follow with [`fetch`] while it lives (the newest one of an attempt
    /// wins; dropping it ends the live view).
    pub fn live(attempt: AttemptId, limit: u64) -> Tail {
        let mut tail = Tail::new(limit);
        tail.live = Some(attempt);
        lock(&LIVE).insert(attempt, tail.kept.clone());
        tail
    }

    pub fn push(&mut self, data: &[u8]) {
        let mut k = lock(&self.kept);
        let skip = data.len().saturating_sub(k.limit);
        k.bytes.extend(&data[skip..]);
        let excess = k.bytes.len().saturating_sub(k.limit);
        k.bytes.drain(..excess);
        k.written += data.len() as u64;
    }

    /// The kept bytes, after a marker line when anything was dropped.
    pub fn into_log(mut self) -> Vec<u8> {
        self.take_log()
    }

    /// Like `into_log`, leaving the tail empty for more.
    pub fn take_log(&mut self) -> Vec<u8> {
        let mut k = lock(&self.kept);
        let mut log = Vec::with_capacity(k.bytes.len() + 64);
        let dropped = k.head() - k.taken;
        if dropped > 0 {
            log.extend_from_slice(marker(dropped).as_bytes());
        }
        log.extend(k.bytes.drain(..));
        k.taken = k.written;
        k.ended = true;
        log
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(attempt) = self.live {
            let mut live = lock(&LIVE);
            if live
                .get(&attempt)
                .is_some_and(|k| Arc::ptr_eq(k, &self.kept))
            {
                live.remove(&attempt);
            }
        }
    }
}

/// The line that stands for `n` bytes of log that were dropped.
pub fn marker(n: u64) -> String {
    format!("[datarun: {n} earlier bytes of log dropped]\n")
}

/// A read of a running fold's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRead {
    /// The offset of `data`'s first byte: past the one asked for when those bytes are gone.
    pub offset: u64,
    pub data: Vec<u8>,
    /// Bytes of output written so far.
    pub size: u64,
    /// The log is complete: the fold ended and `data` reaches its end.
    pub eof: bool,
}

/// At most `max` (and [`MAX_LIVE_CHUNK`]) bytes of the attempt's live log from `offset`;
/// None when this process keeps no live log of it (not running here, or already ended).
pub fn fetch(attempt: AttemptId, offset: u64, max: u64) -> Option<LiveRead> {
    let kept = lock(&LIVE).get(&attempt)?.clone();
    let k = lock(&kept);
    let start = offset.max(k.head());
    let len = k.written.saturating_sub(start).min(max.min(MAX_LIVE_CHUNK)) as usize;
    let data: Vec<u8> = if len == 0 {
        Vec::new()
    } else {
        let from = (start - k.head()) as usize;
        k.bytes.range(from..from + len).copied().collect()
    };
    Some(LiveRead {
        offset: start,
        size: k.written,
        eof: k.ended && start + len as u64 >= k.written,
        data,
    })
}

/// The agent's answer to `FetchLog`: a chunk of the live log, or `live: false`.
pub fn answer(attempt: AttemptId, seq: u64, offset: u64, max: u64) -> FromAgent {
    let read = fetch(attempt, offset, max);
    let live = read.is_some();
    let read = read.unwrap_or(LiveRead {
        offset,
        data: Vec::new(),
        size: 0,
        eof: false,
    });
    FromAgent::LogChunk {
        attempt,
        seq,
        offset: read.offset,
        data: crate::protocol::b64(&read.data),
        size: read.size,
        eof: read.eof,
        live,
    }
}

/// Where a read from `offset` starts in a kept log: `skipped` bytes asked for are gone
/// (0: none), and the log's bytes from index `from` follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub skipped: u64,
    /// The output offset of the byte at `from`.
    pub offset: u64,
    pub from: usize,
}

/// How many output bytes a kept log dropped before its first kept byte, and the length of
/// its marker line: from the marker it starts with, if it does.
pub fn dropped_head(log_start: &[u8]) -> (u64, usize) {
    let prefix = b"[datarun: ";
    let suffix = b" earlier bytes of log dropped]\n";
    let Some(rest) = log_start.strip_prefix(prefix) else {
        return (0, 0);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    match n {
        Some(n) if digits > 0 && rest[digits..].starts_with(suffix) => {
            (n, prefix.len() + digits + suffix.len())
        }
        _ => (0, 0),
    }
}

/// Where reading the kept log (of `len` bytes, starting with `log_start`) from output
/// `offset` begins. Past the end, `from` is `len`: nothing to read.
pub fn slice(log_start: &[u8], len: usize, offset: u64) -> Slice {
    let (dropped, marker_len) = dropped_head(log_start);
    if offset < dropped {
        // The marker a reader gets says how many of the bytes it asked for are gone.
        return Slice {
            skipped: dropped - offset,
            offset: dropped,
            from: marker_len,
        };
    }
    let from = (marker_len as u64).saturating_add(offset - dropped);
    Slice {
        skipped: 0,
        offset,
        from: usize::try_from(from).unwrap_or(usize::MAX).min(len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(limit: u64, chunks: &[&str]) -> String {
        let mut tail = Tail::new(limit);
        chunks.iter().for_each(|c| tail.push(c.as_bytes()));
        String::from_utf8(tail.into_log()).unwrap()
    }

    #[test]
    fn short_logs_are_kept_whole_and_unmarked() {
        assert_eq!(log_of(10, &["abc", "def"]), "abcdef");
        assert_eq!(log_of(6, &["abc", "def"]), "abcdef");
        assert_eq!(log_of(0, &[]), "");
    }

    #[test]
    fn long_logs_keep_the_tail_after_a_marker() {
        let cut = "[datarun: 3 earlier bytes of log dropped]\n";
        assert_eq!(log_of(5, &["abc", "defgh"]), format!("{cut}defgh"));
        assert_eq!(log_of(5, &["abcdefgh"]), format!("{cut}defgh"));
        assert_eq!(log_of(5, &["a", "bcdefg", "h"]), format!("{cut}defgh"));
        assert_eq!(log_of(0, &["abc"]), cut);
    }

    #[test]
    fn a_second_take_marks_only_what_it_dropped() {
        let mut tail = Tail::new(3);
        tail.push(b"abcde");
        assert_eq!(tail.take_log(), format!("{}cde", marker(2)).as_bytes());
        tail.push(b"fg");
        assert_eq!(tail.take_log(), b"fg");
    }

    #[test]
    fn a_live_tail_is_read_in_chunks_from_any_offset() {
        let attempt = -9_001;
        assert_eq!(fetch(attempt, 0, 10), None);
        let mut tail = Tail::live(attempt, 8);
        let read = fetch(attempt, 0, 10).unwrap();
        assert_eq!((read.offset, read.size, read.eof), (0, 0, false));
        tail.push(b"abcdef");
        let read = fetch(attempt, 2, 3).unwrap();
        assert_eq!(
            (read.offset, &read.data[..], read.size),
            (2, &b"cde"[..], 6)
        );
        // Past the end: nothing yet.
        let read = fetch(attempt, 50, 10).unwrap();
        assert_eq!((read.offset, read.data.len(), read.eof), (50, 0, false));
        // The head is dropped: a read from 0 starts at the oldest kept byte.
        tail.push(b"ghijk");
        let read = fetch(attempt, 0, 100).unwrap();
        assert_eq!((read.offset, &read.data[..]), (3, &b"defghijk"[..]));
        let log = tail.take_log();
        assert_eq!(log, format!("{}defghijk", marker(3)).as_bytes());
        let read = fetch(attempt, 11, 10).unwrap();
        assert!(read.eof && read.data.is_empty());
        drop(tail);
        assert_eq!(fetch(attempt, 0, 10), None, "a dropped tail is not live");
    }

    #[test]
    fn live_chunks_are_bounded() {
        let attempt = -9_002;
        let mut tail = Tail::live(attempt, 1 << 20);
        tail.push(&vec![b'x'; 200_000]);
        let read = fetch(attempt, 0, u64::MAX).unwrap();
        assert_eq!(read.data.len() as u64, MAX_LIVE_CHUNK);
        assert!(!read.eof);
    }

    #[test]
    fn offsets_map_onto_the_kept_log() {
        let whole = b"abcdef";
        assert_eq!(
            slice(whole, 6, 2),
            Slice {
                skipped: 0,
                offset: 2,
                from: 2
            }
        );
        assert_eq!(slice(whole, 6, 9).from, 6, "past the end reads nothing");
        let cut = format!("{}defgh", marker(3));
        let m = marker(3).len();
        assert_eq!(dropped_head(cut.as_bytes()), (3, m));
        assert_eq!(
            slice(cut.as_bytes(), cut.len(), 0),
            Slice {
                skipped: 3,
                offset: 3,
                from: m
            }
        );
        assert_eq!(slice(cut.as_bytes(), cut.len(), 5).from, m + 2);
        assert_eq!(dropped_head(b"[datarun: x earlier"), (0, 0));
        assert_eq!(dropped_head(b"plain"), (0, 0));
    }
}

//! The tail of the fold's log: keeps the last bytes of a stream and counts what it let go.

use std::collections::VecDeque;

pub struct Tail {
    kept: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl Tail {
    pub fn new(limit: u64) -> Tail {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Tail {
            kept: VecDeque::new(),
            limit,
            dropped: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let skip = data.len().saturating_sub(self.limit);
        self.kept.extend(&data[skip..]);
        let excess = self.kept.len().saturating_sub(self.limit);
        self.kept.drain(..excess);
        self.dropped += (skip + excess) as u64;
    }

    /// The kept bytes, after a marker line when anything was dropped.
    pub fn into_log(mut self) -> Vec<u8> {
        self.take_log()
    }

    /// Like `into_log`, leaving the tail empty for more.
    pub fn take_log(&mut self) -> Vec<u8> {
        let mut log = Vec::with_capacity(self.kept.len() + 64);
        if self.dropped > 0 {
            let marker = format!("[datarun: {} earlier bytes of log dropped]\n", self.dropped);
            log.extend_from_slice(marker.as_bytes());
        }
        log.extend(self.kept.drain(..));
        self.dropped = 0;
        log
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
}

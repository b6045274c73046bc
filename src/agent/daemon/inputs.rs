//! Input blobs pulled from the master in chunks (`FetchBlob` → `BlobChunk`), at most a window
//! of requests out per blob, written to a temp file in the runner's cache while hashed, and
//! checked against their sha256 before any fold sees them. A blob that cannot be had ends the
//! attempts waiting for it with an error; a pull cut by a lost connection starts again on the
//! next one.

use super::Agent;
use crate::model::Outcome;
use crate::protocol::{self, AttemptReport, FromAgent, RunAttempt};
use crate::transfer::{HashingFile, Pull, WINDOW};

impl Agent {
    /// Starts pulling blob `sha` into the cache.
    pub(super) fn start_download(&mut self, sha: &str) {
        match HashingFile::create_in(&self.journal.blob_dir()) {
            Ok(file) => {
                let mut pull = Pull::new(file, sha, None);
                self.ask(&mut pull);
                self.downloads.insert(sha.to_string(), pull);
            }
            Err(e) => self.download_failed(sha, format!("cannot cache it: {e}")),
        }
    }

    /// Starts every pull again from its beginning (after a new hello: what was asked on the
    /// old connection will not be answered).
    pub(super) fn restart_downloads(&mut self) {
        let shas: Vec<String> = self.downloads.keys().cloned().collect();
        for sha in shas {
            self.downloads.remove(&sha);
            self.start_download(&sha);
        }
    }

    fn ask(&self, pull: &mut Pull) {
        for (offset, len) in pull.requests(WINDOW) {
            self.send(FromAgent::FetchBlob {
                sha256: pull.sha256().to_string(),
                offset,
                len,
            });
        }
    }

    pub(super) fn blob_chunk(
        &mut self,
        sha: String,
        offset: u64,
        size: u64,
        data: &str,
        eof: bool,
    ) {
        let Some(mut pull) = self.downloads.remove(&sha) else {
            return; // a late chunk of a pull that was restarted or ended
        };
        let data = match protocol::unb64(data) {
            Ok(data) => data,
            Err(e) => return self.download_failed(&sha, e),
        };
        match pull.on_chunk(offset, data, Some(size), eof) {
            Ok(false) => {
                self.ask(&mut pull);
                self.downloads.insert(sha, pull);
            }
            Ok(true) => match pull
                .finish(false)
                .map_err(|e| e.to_string())
                .and_then(|staged| self.journal.keep_blob(&staged).map_err(|e| e.to_string()))
            {
                Ok(()) => self.blob_ready(&sha),
                Err(e) => self.download_failed(&sha, e),
            },
            Err(e) => self.download_failed(&sha, e.to_string()),
        }
    }

    /// Starts the attempts that waited only for `sha`.
    fn blob_ready(&mut self, sha: &str) {
        let ready: Vec<_> = self
            .waiting
            .iter_mut()
            .filter_map(|(id, (_, missing))| {
                missing.remove(sha);
                missing.is_empty().then_some(*id)
            })
            .collect();
        for id in ready {
            if let Some((run, _)) = self.waiting.remove(&id) {
                self.start(run, false);
            }
        }
    }

    /// Ends the attempts waiting for `sha` with an error saying why it cannot be had.
    pub(super) fn download_failed(&mut self, sha: &str, why: String) {
        self.downloads.remove(sha);
        tracing::warn!("input blob {sha}: {why}");
        let stuck: Vec<_> = self
            .waiting
            .iter()
            .filter(|(_, (_, missing))| missing.contains(sha))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            if let Some((run, _)) = self.waiting.remove(&id) {
                let message = format!("input blob {sha}: {why}");
                self.end_unstarted(run, Outcome::Error { message });
            }
        }
    }

    /// Journals and reports the end of an attempt that never started.
    pub(super) fn end_unstarted(&mut self, run: RunAttempt, outcome: Outcome) {
        let report = AttemptReport::bare(run.attempt, outcome);
        let _ = self
            .journal
            .begin(&run)
            .and_then(|_| self.journal.finish(&report));
        self.send(FromAgent::Finished(report));
        // Its slot (held while it waited) is free for a run queued behind it.
        self.start_ready();
    }
}

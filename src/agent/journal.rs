//! The agent's local journal: one directory per attempt under `<state>/attempts/<id>/` holding
//! the run request, the owning agent's pid, the fold's input and output directories and, once
//! the attempt ends, `result.json`. Results survive the master being away and the agent being
//! restarted; an attempt's directory leaves `attempts/` only after the master acknowledged its
//! result (deleted, or kept for the next attempt when nothing in it is the fold's: `spare`).
//! Blobs are cached once per runner under `<state>/blobs/<sha256>`.

use crate::model::AttemptId;
use crate::protocol::{AttemptReport, FromAgent, RunAttempt};
use crate::transfer::StagedBlob;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Journal {
    root: PathBuf,
    /// The journal's root directory, open (`syncfs` flushes the filesystem holding it).
    root_dir: std::fs::File,
    /// This process's results log, opened at its first result.
    log: std::sync::Mutex<Option<ResultsLog>>,
    results: sync::Syncer,
    /// Acknowledged attempts' directories kept for the next ones ([`spare`]).
    spares: spare::Spares,
}

/// The results log of one agent process, `<state>/results/<pid>.log`: each result it journals,
/// appended as `\n<json>\n` (a record cut short by a crash ends at the next one's newline).
///
/// Durability-before-ack: `finish` writes `result.json` (renamed into place, not synced),
/// appends the same report to this log and returns (so the result is reported) only after an
/// `fdatasync` of the log that *started after* the append has succeeded. Results that finish
/// together share that one fdatasync ([`sync::Syncer`]) instead of paying an fsync of their
/// `result.json` and one of its directory each; the log and its directory entry were made
/// durable once, when the log was created.
///
/// After a crash `recover` writes every report of a dead process's log whose attempt is
/// still journaled but has no `result.json` that parses back to `result.json`, syncs the
/// filesystem once, then deletes the log. A `result.json` cut short by the crash does not parse and counts as no
/// result. When a log passes [`LOG_ROTATE`] bytes, one `syncfs` makes every `result.json`
/// durable by itself and the log starts empty again.
struct ResultsLog {
    file: std::sync::Arc<std::fs::File>,
    len: u64,
}

/// An attempt's journal entry: its first line is a [`Begun`]; the process executor appends
/// its fold's process group id as a second line once the fold is spawned ([`note_pgid`]).
/// One file, written in place, keeps an attempt to few inodes: a trivial fold creates and
/// deletes its directory, input/, output/, this and `result.json`, no more.
const RUN_FILE: &str = "run.json";
/// The attempt's report, once it ended.
const RESULT_FILE: &str = "result.json";
/// Where agents before the one-file entry kept the owner's pid and the fold's process group.
const OLD_OWNER_FILE: &str = "owner";
const OLD_PGID_FILE: &str = "pgid";

/// The first line of `run.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Begun {
    /// The pid of the agent process that began the attempt.
    owner: u32,
    run: RunAttempt,
}

impl Begun {
    fn parse(data: &[u8]) -> Option<Begun> {
        let first = data.split(|&b| b == b'\n').next()?;
        match serde_json::from_slice::<Begun>(first) {
            Ok(begun) => Some(begun),
            // Journaled by an agent from before the owner moved into run.json: the bare run.
            Err(_) => serde_json::from_slice::<RunAttempt>(data)
                .ok()
                .map(|run| Begun { owner: 0, run }),
        }
    }

    /// The process group id noted on the second line, if any.
    fn pgid(data: &[u8]) -> Option<i32> {
        let second = data.split(|&b| b == b'\n').nth(1)?;
        std::str::from_utf8(second).ok()?.trim().parse().ok()
    }
}

/// Notes in the attempt's journal entry (in `work_dir`) the process group of its fold, so
/// that the next agent kills what is left of it should this one die.
pub fn note_pgid(work_dir: &Path, pgid: i32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(work_dir.join(RUN_FILE))?;
    file.write_all(format!("{pgid}\n").as_bytes())
}

/// A results log longer than this is emptied (after a syncfs).
const LOG_ROTATE: u64 = 4 << 20;

/// What a spare's `run.json` and `result.json` hold while no attempt uses them (see
/// [`spare`]): one newline, not nothing. Cutting a file to nothing frees its block, and on a
/// filesystem mounted with `discard` without a journal ext4 discards every freed block at
/// once, a device round trip inside the `ftruncate` (a fifth of the agent's time on a stream of
/// trivial folds); a file cut to one byte keeps its block.
const BLANK: &[u8] = b"\n";

/// Whether `path` is a regular file holding more than a [`BLANK`]: something written.
fn written(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > BLANK.len() as u64)
}

/// Writes `data` over the file at `path` (made if missing) without first cutting it to
/// nothing (see [`BLANK`]): written from its start, then cut to `data`'s length. A write cut
/// short by a crash leaves what does not parse (the files written so are a JSON document or a
/// JSON line over a blank).
fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all(data)?;
    file.set_len(data.len() as u64)
}

/// Flushes the filesystem holding `dir` (every file's data and metadata).
fn syncfs(dir: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
    match unsafe { libc::syncfs(dir.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// fsyncs a directory, so the entries made in it are durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What a new agent finds in the journal at start.
#[derive(Debug, Default)]
pub struct Recovered {
    pub finished: Vec<AttemptReport>,
    /// Attempts still run by another live agent process (from before a restart).
    pub adopted: Vec<(AttemptId, u32)>,
    /// Attempts whose agent died without a result.
    pub orphaned: Vec<AttemptId>,
}

/// Writes a file so that a crash of this process leaves either the old or the new content,
/// never a mix. `durable` also fsyncs the file and its directory, so the content survives a
/// crash of the machine: worth it for results, not for what dies with the machine anyway.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(())
}

/// Whether process `pid` lives. A zombie (dead, not yet reaped: an agent killed after its
/// master died is reaped by whatever adopted it, maybe never) is dead.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    if pid == 0 || unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state ...: comm may hold spaces and parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

impl Journal {
    pub fn open(root: &Path) -> std::io::Result<Journal> {
        std::fs::create_dir_all(root.join("attempts"))?;
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("results"))?;
        let journal = Journal {
            root: root.to_path_buf(),
            root_dir: std::fs::File::open(root)?,
            log: std::sync::Mutex::new(None),
            results: sync::Syncer::default(),
            spares: spare::Spares::open(root)?,
        };
        journal.remove_stale_pulls();
        Ok(journal)
    }

    /// Temp files of input pulls an earlier agent process left (an hour old: a pull under way
    /// in a process still finishing its folds is left alone).
    fn remove_stale_pulls(&self) {
        let Ok(entries) = std::fs::read_dir(self.blob_dir()) else {
            return;
        };
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub fn dir(&self, attempt: AttemptId) -> PathBuf {
        self.root.join("attempts").join(attempt.to_string())
    }

    pub fn blob_path(&self, sha: &str) -> PathBuf {
        self.root.join("blobs").join(sha)
    }

    pub fn has_blob(&self, sha: &str) -> bool {
        self.blob_path(sha).is_file()
    }

    /// The blob cache (temp files of pulls under way live there too, as `.tmp-*`).
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Puts a pulled, checked blob into the cache.
    pub fn keep_blob(&self, staged: &StagedBlob) -> std::io::Result<()> {
        std::fs::rename(&staged.path, self.blob_path(&staged.sha256))
    }

    /// Answers a master's `Fetch`: a chunk of `file` (`log` or `output/NAME`) of a finished
    /// attempt, or why it cannot be sent. Only files of attempts with a journaled result are
    /// served, only regular files, and never through a link.
    pub fn fetch(&self, attempt: AttemptId, file: String, offset: u64, len: u64) -> FromAgent {
        match self.fetch_path(attempt, &file).and_then(|path| {
            crate::transfer::read_chunk(&path, offset, len).map_err(|e| e.to_string())
        }) {
            Ok((data, eof)) => FromAgent::Chunk {
                attempt,
                file,
                offset,
                data: crate::protocol::b64(&data),
                eof,
            },
            Err(message) => FromAgent::FetchFailed {
                attempt,
                file,
                message,
            },
        }
    }

    fn fetch_path(&self, attempt: AttemptId, file: &str) -> Result<PathBuf, String> {
        let dir = self.dir(attempt);
        if !written(&dir.join(RESULT_FILE)) {
            return Err(format!("attempt {attempt} has no result here"));
        }
        let rel = if file == crate::protocol::LOG_FILE {
            PathBuf::from(file)
        } else {
            let name = file
                .strip_prefix("output/")
                .ok_or_else(|| format!("{file:?} is neither the log nor an output"))?;
            crate::model::check_file_name(name)?;
            Path::new("output").join(name)
        };
        let path = dir.join(rel);
        // The directories on the way must be the attempt's own, not links out of it.
        let parent = path.parent().unwrap_or(&dir);
        let real = parent.canonicalize().map_err(|e| format!("{file}: {e}"))?;
        let root = dir.canonicalize().map_err(|e| format!("{file}: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!("{file} leads out of the attempt's directory"));
        }
        Ok(path)
    }

    /// Whether the attempt was begun here (its `run.json` written; a blank one is a spare
    /// directory on its way in, or a crash before anything started).
    pub fn exists(&self, attempt: AttemptId) -> bool {
        written(&self.dir(attempt).join(RUN_FILE))
    }

    /// Records that this agent process owns a new attempt (`run.json`: the owner's pid and
    /// the run request on its first line); creates input/ and output/. Not fsynced, and
    /// written in place rather than renamed into it: a fold does not outlive its machine, a
    /// crash of the agent process leaves the page cache intact, and a `run.json` cut short
    /// by a crash parses as no run (nothing was started before it was whole: the attempt
    /// ends lost).
    pub fn begin(&self, run: &RunAttempt) -> std::io::Result<PathBuf> {
        let dir = self.dir(run.attempt);
        // A spare directory already holds input/ and output/, empty, and run.json, blank.
        let again = dir.exists();
        if again || !self.spares.take(&dir) {
            std::fs::create_dir_all(dir.join("input"))?;
            std::fs::create_dir(dir.join("output")).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
        }
        let mut line = serde_json::to_vec(&Begun {
            owner: std::process::id(),
            run: run.clone(),
        })
        .expect("run serializes");
        line.push(b'\n');
        if again {
            // A container re-adopted by this process: its old entry stays whole until the
            // new one (this owner) replaces it, and an older agent's `owner` file, which
            // `owner` would read first, goes.
            write_atomic(&dir.join(RUN_FILE), &line, false)?;
            match std::fs::remove_file(dir.join(OLD_OWNER_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            write_in_place(&dir.join(RUN_FILE), &line)?;
        }
        Ok(dir)
    }

    /// Journals an attempt's result; on Ok it is on disk (see [`ResultsLog`]).
    pub fn finish(&self, report: &AttemptReport) -> std::io::Result<()> {
        let needed = self.record(report, true)?;
        self.results.wait_blocking(needed)
    }

    /// `finish` for an attempt's task: the writes (two small ones) on the task, the wait for
    /// the log's sync without a thread. When the log must first be made or emptied (a sync of
    /// a directory or of the filesystem), all of it goes to a blocking thread instead.
    pub async fn finish_async(self: &Arc<Self>, report: &AttemptReport) -> std::io::Result<()> {
        match self.record(report, false) {
            Ok(needed) => self.results.wait(needed).await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let (journal, report) = (self.clone(), report.clone());
                tokio::task::spawn_blocking(move || journal.finish(&report))
                    .await
                    .map_err(std::io::Error::other)?
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the result and appends it to the log; the sync to wait for. Without `may_block`,
    /// fails as `WouldBlock` (having appended nothing) where the log must be made or emptied.
    fn record(&self, report: &AttemptReport, may_block: bool) -> std::io::Result<u64> {
        let data = serde_json::to_vec(report).expect("report serializes");
        // In place, not renamed: one cut short by a crash does not parse, and the log has it.
        // (Written again, the same, when the append below would block.)
        write_in_place(&self.dir(report.attempt).join(RESULT_FILE), &data)?;
        let log = self.append(&data, may_block)?;
        self.results.request(log)
    }

    fn log_path(&self, pid: u32) -> PathBuf {
        self.root.join("results").join(format!("{pid}.log"))
    }

    /// Appends one record to this process's results log (creating it durably first, or
    /// emptying it once it is long); the log's file, to be synced.
    /// Without `may_block`, fails as `WouldBlock` (appending nothing) where the log must first
    /// be made or emptied, or another caller holds it.
    fn append(&self, data: &[u8], may_block: bool) -> std::io::Result<Arc<std::fs::File>> {
        // Without `may_block`, not even behind a blocking caller that holds the log while it
        // makes or empties it (syncs).
        let mut log = if may_block {
            self.log.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            match self.log.try_lock() {
                Ok(log) => log,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(std::io::ErrorKind::WouldBlock.into())
                }
            }
        };
        if !may_block && log.as_ref().is_none_or(|log| log.len > LOG_ROTATE) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let log = match &mut *log {
            Some(log) => log,
            None => {
                let path = self.log_path(std::process::id());
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                file.sync_all()?;
                sync_dir(&self.root.join("results"))?;
                let len = file.metadata()?.len();
                log.insert(ResultsLog {
                    file: std::sync::Arc::new(file),
                    len,
                })
            }
        };
        if log.len > LOG_ROTATE {
            // Every result.json named by the log is made durable by itself.
            syncfs(&self.root_dir)?;
            log.file.set_len(0)?;
            log.len = 0;
        }
        let mut record = Vec::with_capacity(data.len() + 2);
        record.push(b'\n');
        record.extend_from_slice(data);
        record.push(b'\n');
        (&*log.file).write_all(&record)?;
        log.len += record.len() as u64;
        Ok(log.file.clone())
    }

    /// Writes the reports of dead processes' results logs back to their attempts'
    /// `result.json` (those still journaled); the logs replayed, to delete once synced.
    fn replay_logs(&self) -> std::io::Result<Vec<PathBuf>> {
        let own = self.log_path(std::process::id());
        let own_open = self.log.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let mut replayed = Vec::new();
        for entry in std::fs::read_dir(self.root.join("results"))?.flatten() {
            let path = entry.path();
            let Some(pid) = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".log")?.parse::<u32>().ok())
            else {
                continue;
            };
            let ours = path == own && own_open;
            if ours || (pid != std::process::id() && pid_alive(pid)) {
                continue; // a live process's log is its own to keep
            }
            let data = std::fs::read(&path)?;
            for line in data.split(|&b| b == b'\n') {
                let Ok(report) = serde_json::from_slice::<AttemptReport>(line) else {
                    continue; // empty, or cut short by a crash
                };
                // A result.json that parses is the one written (an attempt's result is
                // written once; the log only stands in for one the crash lost or cut short).
                if self.exists(report.attempt) && self.result(report.attempt).is_none() {
                    write_atomic(&self.dir(report.attempt).join(RESULT_FILE), line, false)?;
                }
            }
            replayed.push(path);
        }
        Ok(replayed)
    }

    pub fn result(&self, attempt: AttemptId) -> Option<AttemptReport> {
        let data = std::fs::read(self.dir(attempt).join(RESULT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The run request journaled by `begin`.
    pub fn run(&self, attempt: AttemptId) -> Option<RunAttempt> {
        let data = std::fs::read(self.dir(attempt).join(RUN_FILE)).ok()?;
        Begun::parse(&data).map(|b| b.run)
    }

    /// Kills what is left of an orphaned process-executor fold (its process group), if any.
    pub fn kill_leftovers(&self, attempt: AttemptId) {
        let dir = self.dir(attempt);
        let noted = std::fs::read(dir.join(RUN_FILE))
            .ok()
            .and_then(|data| Begun::pgid(&data))
            // Journaled by an agent from before the pgid moved into run.json.
            .or_else(|| {
                std::fs::read_to_string(dir.join(OLD_PGID_FILE))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            });
        if let Some(pgid) = noted.filter(|&p| p > 1) {
            // SAFETY: killpg only sends a signal.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }

    /// The agent process that began the attempt.
    pub fn owner(&self, attempt: AttemptId) -> Option<u32> {
        let dir = self.dir(attempt);
        // An `owner` file: journaled by an agent from before the owner moved into run.json.
        match std::fs::read_to_string(dir.join(OLD_OWNER_FILE)) {
            Ok(text) => text.trim().parse().ok(),
            Err(_) => Begun::parse(&std::fs::read(dir.join(RUN_FILE)).ok()?).map(|b| b.owner),
        }
    }

    /// Asks whichever agent process owns the attempt to cancel it.
    pub fn request_cancel(&self, attempt: AttemptId) -> std::io::Result<()> {
        write_atomic(&self.dir(attempt).join("cancel"), b"", false)
    }

    pub fn cancel_requested(&self, attempt: AttemptId) -> bool {
        self.dir(attempt).join("cancel").exists()
    }

    /// Forgets an acknowledged attempt: its directory is deleted, or kept as a spare.
    pub fn forget(&self, attempt: AttemptId) -> std::io::Result<()> {
        if self.keep_spare(attempt) {
            return Ok(());
        }
        self.remove(attempt)
    }

    /// Forgets an acknowledged attempt by keeping its directory as a spare, when it is as
    /// `begin` and `finish` left it (a rename and two small writes; a look at its entries that
    /// stops at the first one out of place); false when it must be deleted ([`Journal::remove`]).
    pub fn keep_spare(&self, attempt: AttemptId) -> bool {
        self.spares.keep(&self.dir(attempt), &attempt.to_string())
    }

    /// Forgets an attempt by deleting its directory, whatever it holds.
    pub fn remove(&self, attempt: AttemptId) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(attempt)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Sorts the journal's attempts into finished, still running elsewhere, and orphaned.
    pub fn recover(&self) -> std::io::Result<Recovered> {
        let mut out = Recovered::default();
        let mut ids: Vec<AttemptId> = std::fs::read_dir(self.root.join("attempts"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        let replayed = self.replay_logs()?;
        // What the replay wrote, and results a dead agent process renamed into place before
        // it synced its log, are made durable before they are reported.
        if !ids.is_empty() || !replayed.is_empty() {
            syncfs(&self.root_dir)?;
        }
        for log in replayed {
            std::fs::remove_file(log)?;
        }
        for id in ids {
            if !self.exists(id) {
                // Created but never begun (crash between mkdir and run.json): nothing ran.
                self.forget(id)?;
                continue;
            }
            if let Some(report) = self.result(id) {
                out.finished.push(report);
                continue;
            }
            match self.owner(id) {
                Some(pid) if pid != std::process::id() && pid_alive(pid) => {
                    out.adopted.push((id, pid))
                }
                _ => out.orphaned.push(id),
            }
        }
        Ok(out)
    }
}

/// A run request for tests: `true`, with small grants and limits.
#[cfg(test)]
pub(crate) fn test_run(attempt: AttemptId) -> RunAttempt {
    RunAttempt {
        attempt,
        fold: 1,
        command: vec!["true".into()],
        image: None,
        env: Default::default(),
        inputs: vec![],
        grant: crate::protocol::Grant {
            millicpus: 1000,
            memory: 1 << 20,
            gpus: vec![],
        },
        soft_limit_ms: None,
        hard_limit_ms: None,
        log_limit: 1000,
        output_limit: 1000,
        after: None,
    }
}

mod spare;
mod sync;
#[cfg(test)]
mod tests;

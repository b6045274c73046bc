//! Files between the master and its agents, pulled in chunks and never held whole, off the
//! master loop:
//! - a finished attempt's outputs (and its log when it is not inline) are pulled by a task per
//!   attempt: `Fetch` → `Chunk`, at most [`WINDOW`] requests out, written into a temp file of
//!   the blob store while hashed, checked for size and sha256. The loop routes the agent's
//!   chunks to the task through a bounded channel and applies the result (with the staged
//!   files) when the task is done, then acks. At most [`MAX_TRANSFERS`] run at once; more wait
//!   in line. A transfer whose link dies ends without a result: the agent reports the attempt
//!   again in its next hello, and the transfer starts over. A report or a file the master
//!   cannot accept (bad names, over the limit, a hash that does not match, a file the agent
//!   cannot read) ends the attempt as `Outcome::Error`, so nothing journaled can wedge the
//!   master.
//! - input blobs an agent pulls (`FetchBlob` → `BlobChunk`) are read from the store a chunk at
//!   a time, a few reads at once.
//! - a running attempt's log, for `fold log --follow`: the API asks through the handle, the
//!   loop sends `FetchLog` and hands the agent's `LogChunk` back to the asker (`LogAsks`);
//!   each answer is at most `protocol::MAX_LOG_CHUNK` bytes, and at most
//!   [`MAX_LOG_ASKS`] wait at once.

use crate::model::{check_file_name, AttemptId, Outcome};
use crate::protocol::{
    self, AttemptReport, FromAgent, LogData, ToAgent, INLINE_LOG, LOG_FILE, MAX_LOG,
};
use crate::store::{is_sha256, BlobData, ResultInput, Store};
use crate::transfer::{Pull, StagedBlob, WINDOW};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedSender, WeakUnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Transfers of attempts' files running at once.
pub(super) const MAX_TRANSFERS: usize = 4;
/// The most output files one attempt may report (the agent counts at most as many entries).
pub(super) const MAX_FILES: usize = protocol::MAX_OUTPUTS as usize;
/// Reads of input blobs for agents running at once.
const BLOB_READS: usize = 8;
/// How often a waiting transfer looks whether its link is still there.
const POLL: Duration = Duration::from_secs(5);
/// Silence after which the outstanding requests are sent again, and after which the transfer
/// gives up (with a link that stays up but says nothing).
const RESEND_AFTER: Duration = Duration::from_secs(60);
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// Requests for live logs out to agents at once; more are answered "not live" at once.
pub(super) const MAX_LOG_ASKS: usize = 256;

/// A chunk of a running attempt's log, as its agent sent it (see `agent::tail::fetch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveChunk {
    /// The output offset of `data`'s first byte (past the one asked for when those bytes
    /// were dropped from the kept tail).
    pub offset: u64,
    pub data: Vec<u8>,
    /// Bytes of output written so far.
    pub size: u64,
    /// The log is complete (the fold ended on the agent).
    pub eof: bool,
}

pub(super) type LogReply = tokio::sync::oneshot::Sender<Option<LiveChunk>>;

/// Live log requests waiting for their agent's answer, by the `seq` they were sent with.
#[derive(Default)]
pub(super) struct LogAsks {
    next: u64,
    waiting: HashMap<u64, (String, AttemptId, LogReply)>,
}

impl LogAsks {
    /// Asks `runner`'s agent (over `link`, if connected) for the log of `attempt` from
    /// `offset`; `reply` gets the chunk, or None (not live, too many asks, no link).
    pub fn ask(
        &mut self,
        link: Option<&crate::transport::Link>,
        runner: &str,
        attempt: AttemptId,
        offset: u64,
        reply: LogReply,
    ) {
        // Askers that gave up (timed out) leave room.
        self.waiting.retain(|_, w| !w.2.is_closed());
        let Some(link) = link.filter(|_| self.waiting.len() < MAX_LOG_ASKS) else {
            let _ = reply.send(None);
            return;
        };
        self.next += 1;
        let seq = self.next;
        let max = protocol::MAX_LOG_CHUNK;
        if link.send(ToAgent::FetchLog {
            attempt,
            seq,
            offset,
            max,
        }) {
            self.waiting
                .insert(seq, (runner.to_string(), attempt, reply));
        } else {
            let _ = reply.send(None);
        }
    }

    /// An agent's `LogChunk`: to its asker, if it is the answer asked for (same runner and
    /// attempt, not over the chunk limit); else dropped.
    pub fn answer(&mut self, runner: &str, msg: FromAgent) {
        let FromAgent::LogChunk {
            attempt,
            seq,
            offset,
            data,
            size,
            eof,
            live,
        } = msg
        else {
            return;
        };
        let asked = self
            .waiting
            .get(&seq)
            .is_some_and(|(r, a, _)| r == runner && *a == attempt);
        if !asked {
            return;
        }
        let Some((_, _, reply)) = self.waiting.remove(&seq) else {
            return;
        };
        let limit = protocol::MAX_LOG_CHUNK as usize;
        let chunk = (live && data.len() <= limit.div_ceil(3) * 4)
            .then(|| protocol::unb64(&data).ok())
            .flatten()
            .filter(|d| d.len() <= limit)
            .map(|data| LiveChunk {
                offset,
                data,
                size,
                eof,
            });
        let _ = reply.send(chunk);
    }
}

/// What the loop hands a transfer: a chunk the agent sent, or why it cannot send a file.
#[derive(Debug)]
pub(super) enum Piece {
    Chunk {
        file: String,
        offset: u64,
        data: String,
        eof: bool,
    },
    Failed {
        file: String,
        message: String,
    },
}

/// A finished transfer. `input` is None when the link died (the agent reports again).
pub(super) struct Done {
    pub runner: String,
    pub generation: u64,
    pub attempt: AttemptId,
    pub input: Option<ResultInput>,
}

/// One file to pull: its name on the agent (`output/NAME` or `log`) and what it must be.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A report checked and planned: its inline log, and the files to pull.
pub(super) struct Plan {
    pub log: Vec<u8>,
    pub files: Vec<Wanted>,
}

/// Checks what an agent reports before anything is pulled: output names, count, hashes and
/// sizes (`output_limit` in all), the log (inline at most `INLINE_LOG`, a file at most
/// `MAX_LOG` and its cut marker).
pub(super) fn plan(report: &AttemptReport, output_limit: u64) -> Result<Plan, String> {
    if report.outputs.len() > MAX_FILES {
        return Err(format!(
            "{} outputs reported, more than the {MAX_FILES} allowed",
            report.outputs.len()
        ));
    }
    let mut names = BTreeSet::new();
    let mut total = 0u64;
    let mut files = Vec::with_capacity(report.outputs.len() + 1);
    for f in &report.outputs {
        check_file_name(&f.name).map_err(|e| format!("output {:?} rejected: {e}", f.name))?;
        if !names.insert(f.name.as_str()) {
            return Err(format!("output {:?} reported twice", f.name));
        }
        if !is_sha256(&f.sha256) {
            return Err(format!(
                "output {:?}: {:?} is not a sha256",
                f.name, f.sha256
            ));
        }
        total = total.saturating_add(f.size);
        files.push(Wanted {
            file: format!("output/{}", f.name),
            size: f.size,
            sha256: f.sha256.clone(),
        });
    }
    if total > output_limit {
        return Err(format!(
            "its outputs are {total} bytes, over the limit of {output_limit}"
        ));
    }
    let log = match &report.log {
        LogData::Inline(text) => {
            let log = protocol::unb64(text).map_err(|e| format!("its log: {e}"))?;
            if log.len() > INLINE_LOG {
                return Err(format!(
                    "its inline log is {} bytes, over the {INLINE_LOG} allowed",
                    log.len()
                ));
            }
            log
        }
        LogData::File { size, sha256 } => {
            // The tail plus its cut marker.
            if *size > MAX_LOG + 1024 || !is_sha256(sha256) {
                return Err(format!(
                    "its log file ({size} bytes, {sha256:?}) is refused"
                ));
            }
            files.push(Wanted {
                file: LOG_FILE.to_string(),
                size: *size,
                sha256: sha256.clone(),
            });
            Vec::new()
        }
    };
    Ok(Plan { log, files })
}

/// The result recorded for a report the master could not accept: an error, with the inline
/// log when there was one, and no outputs.
pub(super) fn refused(report: &AttemptReport, log: Vec<u8>, why: &str) -> ResultInput {
    tracing::warn!("attempt {}: result refused: {why}", report.attempt);
    ResultInput {
        attempt: report.attempt,
        outcome: Outcome::Error {
            message: format!("the master could not record this result: {why}"),
        },
        metrics: report.metrics.clone(),
        log: BlobData::Bytes(log),
        outputs: Vec::new(),
    }
}

/// The result of a report whose files are all here.
fn accepted(report: AttemptReport, log: Vec<u8>, files: Vec<(Wanted, StagedBlob)>) -> ResultInput {
    let mut input = ResultInput {
        attempt: report.attempt,
        outcome: report.outcome,
        metrics: report.metrics,
        log: BlobData::Bytes(log),
        outputs: Vec::with_capacity(files.len()),
    };
    for (wanted, staged) in files {
        match wanted.file.strip_prefix("output/") {
            Some(name) => input
                .outputs
                .push((name.to_string(), BlobData::Staged(staged))),
            None => input.log = BlobData::Staged(staged),
        }
    }
    input
}

struct Active {
    runner: String,
    generation: u64,
    pieces: mpsc::Sender<Piece>,
    task: AbortHandle,
}

struct Queued {
    runner: String,
    generation: u64,
    link: WeakUnboundedSender<ToAgent>,
    report: AttemptReport,
    plan: Plan,
}

pub(super) struct Transfers {
    store: Store,
    active: HashMap<AttemptId, Active>,
    queued: VecDeque<Queued>,
    done_tx: UnboundedSender<Done>,
    pub done_rx: mpsc::UnboundedReceiver<Done>,
    blob_reads: Arc<Semaphore>,
    /// Live log requests out to agents.
    pub logs: LogAsks,
}

impl Transfers {
    /// The transfers of a master that is starting: what a previous one left half pulled is
    /// removed (its agents report those results again).
    pub fn new(store: Store) -> Transfers {
        store.clear_staging();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Transfers {
            store,
            active: HashMap::new(),
            queued: VecDeque::new(),
            done_tx,
            done_rx,
            blob_reads: Arc::new(Semaphore::new(BLOB_READS)),
            logs: LogAsks::default(),
        }
    }

    /// Pulls the files of `report` over the link of `generation`. A report already being
    /// pulled over that link is ignored; one pulled over an older link starts over.
    pub fn start(
        &mut self,
        runner: &str,
        generation: u64,
        link: WeakUnboundedSender<ToAgent>,
        report: AttemptReport,
        plan: Plan,
    ) {
        let attempt = report.attempt;
        let same = |g: u64| g == generation;
        if self
            .active
            .get(&attempt)
            .is_some_and(|a| same(a.generation))
            || self
                .queued
                .iter()
                .any(|q| q.report.attempt == attempt && same(q.generation))
        {
            return;
        }
        if let Some(old) = self.active.remove(&attempt) {
            old.task.abort();
        }
        self.queued.retain(|q| q.report.attempt != attempt);
        self.queued.push_back(Queued {
            runner: runner.to_string(),
            generation,
            link,
            report,
            plan,
        });
        self.start_queued();
    }

    fn start_queued(&mut self) {
        while self.active.len() < MAX_TRANSFERS {
            let Some(q) = self.queued.pop_front() else {
                return;
            };
            let attempt = q.report.attempt;
            let runner = q.runner.clone();
            let (pieces_tx, pieces) = mpsc::channel(2 * WINDOW);
            let (store, done) = (self.store.clone(), self.done_tx.clone());
            let generation = q.generation;
            let task = tokio::spawn(async move {
                let pulled = pull(attempt, &q.plan.files, &q.link, pieces, &store).await;
                let input = match pulled {
                    Ok(files) => Some(accepted(q.report, q.plan.log, files)),
                    Err(Failure::LinkGone) => None,
                    Err(Failure::Refused(why)) => Some(refused(&q.report, q.plan.log, &why)),
                };
                let _ = done.send(Done {
                    runner: q.runner,
                    generation: q.generation,
                    attempt,
                    input,
                });
            });
            self.active.insert(
                attempt,
                Active {
                    runner,
                    generation,
                    pieces: pieces_tx,
                    task: task.abort_handle(),
                },
            );
        }
    }

    /// Hands a piece from `runner`'s agent to the transfer of `attempt` (dropped when there is
    /// none, or when the agent sent more than it was asked for).
    pub fn route(&self, runner: &str, attempt: AttemptId, piece: Piece) {
        if let Some(a) = self.active.get(&attempt).filter(|a| a.runner == runner) {
            let _ = a.pieces.try_send(piece);
        }
    }

    /// A transfer ended: the next in line starts.
    pub fn finished(&mut self, attempt: AttemptId, generation: u64) {
        if self
            .active
            .get(&attempt)
            .is_some_and(|a| a.generation == generation)
        {
            self.active.remove(&attempt);
        }
        self.start_queued();
    }

    /// Answers an agent's `FetchBlob` off the loop.
    pub fn serve_blob(
        &self,
        link: WeakUnboundedSender<ToAgent>,
        sha256: String,
        offset: u64,
        len: u64,
    ) {
        let (store, reads) = (self.store.clone(), self.blob_reads.clone());
        tokio::spawn(async move {
            let _permit = reads.acquire_owned().await;
            let msg = match store.read_blob_chunk(sha256.clone(), offset, len).await {
                Ok((size, data)) => ToAgent::BlobChunk {
                    eof: offset + data.len() as u64 >= size,
                    sha256,
                    offset,
                    size,
                    data: protocol::b64(&data),
                },
                Err(e) => ToAgent::BlobMissing {
                    sha256,
                    message: e.to_string(),
                },
            };
            if let Some(tx) = link.upgrade() {
                let _ = tx.send(msg);
            }
        });
    }
}

#[derive(Debug)]
pub(super) enum Failure {
    /// The link is gone: nothing is recorded; the agent reports again on its next hello.
    LinkGone,
    /// The files cannot be had as reported: the attempt ends as an error.
    Refused(String),
}

/// Temp files of a transfer, removed unless handed over.
struct Staged(Vec<StagedBlob>);

impl Drop for Staged {
    fn drop(&mut self) {
        self.0.iter().for_each(StagedBlob::discard);
    }
}

fn send(link: &WeakUnboundedSender<ToAgent>, msg: ToAgent) -> Result<(), Failure> {
    match link.upgrade() {
        Some(tx) if tx.send(msg).is_ok() => Ok(()),
        _ => Err(Failure::LinkGone),
    }
}

/// Pulls `files` of `attempt` over `link`, the agent's chunks arriving on `pieces`.
pub(super) async fn pull(
    attempt: AttemptId,
    files: &[Wanted],
    link: &WeakUnboundedSender<ToAgent>,
    mut pieces: mpsc::Receiver<Piece>,
    store: &Store,
) -> Result<Vec<(Wanted, StagedBlob)>, Failure> {
    let refused = |e: String| Failure::Refused(e);
    let mut pulls = Vec::with_capacity(files.len());
    for w in files {
        let sink = store.stage_blob().map_err(|e| refused(e.to_string()))?;
        pulls.push(Pull::new(sink, &w.sha256, Some(w.size)));
    }
    let index: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, w)| (w.file.as_str(), i))
        .collect();
    let fetch = |i: usize, offset: u64, len: u64| {
        let file = files[i].file.clone();
        send(
            link,
            ToAgent::Fetch {
                attempt,
                file,
                offset,
                len,
            },
        )
    };
    let mut silent = Duration::ZERO;
    loop {
        // Keep WINDOW requests out, over the files in order.
        let mut out: usize = pulls.iter().map(Pull::pending).sum();
        for (i, p) in pulls.iter_mut().enumerate() {
            if out >= WINDOW {
                break;
            }
            for (offset, len) in p.requests(p.pending() + WINDOW - out) {
                out += 1;
                fetch(i, offset, len)?;
            }
        }
        if pulls.iter().all(Pull::done) {
            break;
        }
        let piece = match tokio::time::timeout(POLL, pieces.recv()).await {
            Ok(Some(piece)) => piece,
            Ok(None) => return Err(Failure::LinkGone),
            Err(_) => {
                if link.upgrade().is_none_or(|tx| tx.is_closed()) {
                    return Err(Failure::LinkGone);
                }
                silent += POLL;
                if silent >= GIVE_UP_AFTER {
                    return Err(refused(format!(
                        "the agent sent nothing for {}s",
                        silent.as_secs()
                    )));
                }
                if silent.as_secs().is_multiple_of(RESEND_AFTER.as_secs()) {
                    for (i, p) in pulls.iter().enumerate() {
                        for (offset, len) in p.outstanding() {
                            fetch(i, offset, len)?;
                        }
                    }
                }
                continue;
            }
        };
        silent = Duration::ZERO;
        match piece {
            Piece::Chunk {
                file,
                offset,
                data,
                eof,
            } => {
                let Some(&i) = index.get(file.as_str()) else {
                    continue;
                };
                let data = protocol::unb64(&data).map_err(|e| refused(format!("{file}: {e}")))?;
                pulls[i]
                    .on_chunk(offset, data, None, eof)
                    .map_err(|e| refused(format!("{file}: {e}")))?;
            }
            Piece::Failed { file, message } => {
                return Err(refused(format!("the agent cannot send {file}: {message}")))
            }
        }
    }
    // Each file is checked against its hash and fsynced before the result may name it.
    let mut staged = Staged(Vec::with_capacity(pulls.len()));
    for (w, p) in files.iter().zip(pulls) {
        let done = tokio::task::spawn_blocking(move || p.finish(true))
            .await
            .map_err(|e| refused(e.to_string()))?;
        staged
            .0
            .push(done.map_err(|e| refused(format!("{}: {e}", w.file)))?);
    }
    Ok(files
        .iter()
        .cloned()
        .zip(std::mem::take(&mut staged.0))
        .collect())
}

#[cfg(test)]
mod tests;

//! The agent: handles `ToAgent` messages, runs attempts through an executor, journals their
//! results and reports them. It owns its folds: limits are enforced by the executor's own clock
//! whether or not a master is connected. How messages arrive (stdio, a daemon's socket) is
//! `serve.rs`'s business; where they go is the [`Outbox`].

use super::docker::{DockerExecutor, DockerOptions};
use super::exec::{ExecRequest, ExecResult};
use super::journal::{pid_alive, Journal};
use super::outbox::Outbox;
use crate::inventory::ExecutorKind;
use crate::model::provenance::Ran;
use crate::model::{check_file_name, AttemptId, Outcome};
use crate::protocol::{
    self, AttemptReport, FromAgent, LogData, OutputFile, RunAttempt, ToAgent, PROTOCOL_VERSION,
};
use crate::transfer::Pull;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

mod execute;
mod inputs;
mod orphans;
mod queue;
use execute::execute;
use orphans::watch_adopted;

pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub runner: String,
    pub executor: ExecutorKind,
    /// Docker runners: the images folds may name ("*" = any).
    pub images: Vec<String>,
    /// Docker runners: containers kept started ahead of the folds.
    pub warm: Option<crate::inventory::WarmSpec>,
}

/// How this agent runs folds.
#[derive(Clone)]
enum Backend {
    Process,
    Docker(Arc<DockerExecutor>),
    /// A docker runner whose engine cannot be reached: every fold fails with this message.
    Broken(String),
}

impl Backend {
    /// `state_dir` names this agent's containers: the same runner's agents (before and after a
    /// restart) share them; other runners on the same engine do not.
    async fn new(
        kind: ExecutorKind,
        state_dir: &std::path::Path,
        warm: Option<crate::inventory::WarmSpec>,
    ) -> Backend {
        let dir = state_dir
            .canonicalize()
            .unwrap_or_else(|_| state_dir.to_path_buf());
        let namespace =
            crate::transfer::sha256_hex(dir.to_string_lossy().as_bytes())[..12].to_string();
        let opts = DockerOptions {
            namespace,
            ..DockerOptions::default()
        };
        match kind {
            ExecutorKind::Process => Backend::Process,
            ExecutorKind::Docker => match DockerExecutor::connect(opts).await {
                Ok(d) => match warm {
                    Some(warm) => {
                        Backend::Docker(Arc::new(d.with_warm(warm, dir.join("warm")).await))
                    }
                    None => Backend::Docker(Arc::new(d)),
                },
                Err(e) => {
                    tracing::error!("the docker executor cannot start: {e}");
                    Backend::Broken(e.to_string())
                }
            },
        }
    }
}

pub(super) struct Running {
    cancel: watch::Sender<bool>,
    /// Its process or container has exited: its slot is free for the run queued behind it,
    /// while its result is still being journaled and reported.
    exited: bool,
}

/// What the agent's own tasks tell its loop.
pub(super) enum Notice {
    /// An attempt this process ran has exited; its result is being journaled.
    Exited(AttemptId),
    /// An attempt this process ran has ended (its result is journaled and sent).
    Ended(AttemptId),
    /// The agent process that ran an adopted attempt died without a result.
    Orphaned(AttemptId),
}

pub(super) struct Agent {
    runner: Arc<str>,
    state_dir: PathBuf,
    backend: Backend,
    images: Arc<[String]>,
    journal: Arc<Journal>,
    out: Outbox,
    /// Attempts this process runs.
    pub(super) running: HashMap<AttemptId, Running>,
    /// Attempts waiting for blobs: the run and the hashes still missing.
    waiting: HashMap<AttemptId, (RunAttempt, BTreeSet<String>)>,
    /// Input blobs being pulled from the master, by sha256 (each once, whatever needs it).
    downloads: BTreeMap<String, Pull>,
    /// Attempts run by a previous agent process that we watch for a result.
    adopted: BTreeSet<AttemptId>,
    /// Runs queued behind another attempt (`RunAttempt::after`), in arrival order: each
    /// starts once the attempt it follows holds no slot here ([`Agent::start_ready`]).
    queued: Vec<RunAttempt>,
    notices: mpsc::UnboundedSender<Notice>,
}

impl Agent {
    /// The agent and the receiver of its tasks' notices (for [`Agent::notice`]).
    pub(super) async fn new(
        cfg: &AgentConfig,
    ) -> anyhow::Result<(Agent, mpsc::UnboundedReceiver<Notice>)> {
        let journal = Arc::new(Journal::open(&cfg.state_dir)?);
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let agent = Agent {
            runner: Arc::from(cfg.runner.as_str()),
            state_dir: cfg.state_dir.clone(),
            backend: Backend::new(cfg.executor, &cfg.state_dir, cfg.warm.clone()).await,
            images: cfg.images.clone().into(),
            journal,
            out: Outbox::default(),
            running: HashMap::new(),
            waiting: HashMap::new(),
            downloads: BTreeMap::new(),
            adopted: BTreeSet::new(),
            queued: Vec::new(),
            notices,
        };
        Ok((agent, notices_rx))
    }

    pub(super) fn runner(&self) -> &str {
        &self.runner
    }

    pub(super) fn outbox(&self) -> &Outbox {
        &self.out
    }

    /// The agent stops taking folds: its warm containers are removed.
    pub(super) async fn retire(&self) {
        if let Backend::Docker(d) = &self.backend {
            d.retire_warm().await;
        }
    }

    /// The machine's facts, with the engine's version when this is a docker runner.
    pub(super) async fn facts(&self) -> crate::protocol::Facts {
        use super::facts::{gather, Engine};
        let engine = match &self.backend {
            Backend::Docker(d) => Engine::Connected(d),
            _ => Engine::Skip,
        };
        gather(Some(&self.state_dir), engine).await
    }

    fn send(&self, msg: FromAgent) {
        let _ = self.out.send(msg);
    }

    /// Acts on a notice from one of this agent's tasks.
    pub(super) async fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Exited(attempt) => {
                if let Some(r) = self.running.get_mut(&attempt) {
                    r.exited = true;
                }
                self.start_ready();
            }
            Notice::Ended(attempt) => {
                self.running.remove(&attempt);
                self.start_ready();
            }
            Notice::Orphaned(attempt) => self.orphaned(attempt).await,
        }
    }

    /// Reports facts, results the master has not acknowledged, and what runs. Attempts whose
    /// agent process died are orphans (see [`Agent::orphan`]): re-adopted when their container
    /// still exists, otherwise killed and lost.
    /// `tx` is the connection that said hello; messages produced meanwhile wait for the reply.
    pub(super) async fn hello(
        &mut self,
        tx: mpsc::UnboundedSender<FromAgent>,
    ) -> anyhow::Result<()> {
        self.out.greet(tx);
        // Runs queued for an earlier connection never started: the master that sent them
        // finds them missing from this hello and requeues their folds (lost before starting).
        self.queued.clear();
        let step = std::time::Instant::now();
        // Off the agent's one thread: it may sync the whole filesystem.
        let journal = self.journal.clone();
        let recovered = tokio::task::spawn_blocking(move || journal.recover()).await??;
        note_slow("recovering its journal", &self.runner, step);
        let step = std::time::Instant::now();
        let containers = self.containers().await;
        note_slow("listing its containers", &self.runner, step);
        let mut lost = Vec::new();
        // An orphan of this very process (a daemon hello after a reconnect) is simply ours.
        let orphaned = recovered
            .orphaned
            .into_iter()
            .filter(|a| !self.running.contains_key(a))
            .collect::<Vec<_>>();
        for attempt in orphaned {
            let has_container = containers.iter().any(|(a, _)| *a == attempt);
            lost.extend(self.orphan(attempt, has_container).await?);
        }
        // Containers of attempts nobody owns any more (finished, forgotten) are removed.
        if let Backend::Docker(d) = &self.backend {
            for (attempt, _) in &containers {
                let owned = self.running.contains_key(attempt)
                    || recovered.adopted.iter().any(|(a, _)| a == attempt);
                if !owned {
                    if let Err(e) = d.remove_attempt(*attempt).await {
                        tracing::warn!("cannot remove the container of attempt {attempt}: {e}");
                    }
                }
            }
        }
        let mut finished = recovered.finished;
        finished.extend(lost);
        let mut running: Vec<AttemptId> = self.running.keys().copied().collect();
        running.extend(self.waiting.keys().copied());
        for (attempt, pid) in recovered.adopted {
            running.push(attempt);
            if self.adopted.insert(attempt) {
                tokio::spawn(watch_adopted(
                    self.journal.clone(),
                    attempt,
                    pid,
                    self.out.clone(),
                    self.notices.clone(),
                ));
            }
        }
        running.sort_unstable();
        running.dedup();
        let step = std::time::Instant::now();
        let facts = Box::new(self.facts().await);
        note_slow("gathering the machine's facts", &self.runner, step);
        self.out.open(FromAgent::Hello {
            version: PROTOCOL_VERSION,
            facts,
            running,
            finished,
        });
        // Blobs being pulled over a connection that died start again on this one.
        self.restart_downloads();
        Ok(())
    }

    pub(super) fn handle(&mut self, msg: ToAgent) {
        match msg {
            ToAgent::Hello { .. } => {}
            ToAgent::Ping { seq } => self.send(FromAgent::Pong { seq }),
            ToAgent::Run(run) => self.run(run),
            ToAgent::BlobChunk {
                sha256,
                offset,
                size,
                data,
                eof,
            } => self.blob_chunk(sha256, offset, size, &data, eof),
            ToAgent::BlobMissing { sha256, message } => {
                self.download_failed(&sha256, format!("the master cannot send it: {message}"))
            }
            ToAgent::Fetch {
                attempt,
                file,
                offset,
                len,
            } => {
                let (journal, out) = (self.journal.clone(), self.out.clone());
                tokio::task::spawn_blocking(move || {
                    out.send(journal.fetch(attempt, file, offset, len));
                });
            }
            ToAgent::FetchLog {
                attempt,
                seq,
                offset,
                max,
            } => self.send(super::tail::answer(attempt, seq, offset, max)),
            ToAgent::Cancel { attempt } => self.cancel(attempt),
            ToAgent::Ack { attempt } => {
                if self.adopted.remove(&attempt) {
                    self.start_ready();
                }
                // Kept as a spare at once (a rename); a directory to delete, which may hold
                // gigabytes of inputs and outputs, is deleted off the agent's one thread.
                if !self.journal.keep_spare(attempt) {
                    let journal = self.journal.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = journal.remove(attempt) {
                            tracing::warn!("cannot forget attempt {attempt}: {e}");
                        }
                    });
                }
            }
        }
    }

    fn run(&mut self, run: RunAttempt) {
        let attempt = run.attempt;
        // Idempotent: a run we already know is not started twice.
        if self.running.contains_key(&attempt)
            || self.waiting.contains_key(&attempt)
            || self.adopted.contains(&attempt)
            || self.queued.iter().any(|q| q.attempt == attempt)
        {
            return;
        }
        if run.after.is_some_and(|after| self.holds_slot(after)) {
            self.queued.push(run);
            return;
        }
        if let Some(report) = self.journal.result(attempt) {
            self.send(FromAgent::Finished(report));
            return;
        }
        if self.journal.exists(attempt) {
            return;
        }
        if let Some(bad) = run
            .inputs
            .iter()
            .find(|i| !crate::model::is_sha256_hex(&i.sha256))
        {
            let message = format!("input {:?}: {:?} is not a sha256", bad.name, bad.sha256);
            return self.end_unstarted(run, Outcome::Error { message });
        }
        let missing: BTreeSet<String> = run
            .inputs
            .iter()
            .map(|i| i.sha256.clone())
            .filter(|s| !self.journal.has_blob(s))
            .collect();
        if missing.is_empty() {
            self.start(run, false);
        } else {
            // Inputs travel once: a blob already being pulled is not asked for again. The
            // attempt waits before the pulls start, so a pull that fails at once ends it.
            let start: Vec<String> = missing
                .iter()
                .filter(|sha| !self.downloads.contains_key(*sha))
                .cloned()
                .collect();
            self.waiting.insert(attempt, (run, missing));
            for sha in start {
                self.start_download(&sha);
            }
        }
    }

    fn cancel(&mut self, attempt: AttemptId) {
        if self.cancel_queued(attempt) {
            return;
        }
        if let Some(r) = self.running.get(&attempt) {
            let _ = r.cancel.send(true);
        } else if let Some((run, _)) = self.waiting.remove(&attempt) {
            self.end_unstarted(run, Outcome::Cancelled);
        } else if self.adopted.contains(&attempt) {
            let _ = self.journal.request_cancel(attempt);
        }
    }

    /// Starts an attempt, or with `adopt` resumes one a previous agent process started.
    /// Journal writes happen in the attempt's own task, so this loop keeps reading messages
    /// while the disk works.
    fn start(&mut self, run: RunAttempt, adopt: bool) {
        let attempt = run.attempt;
        let (cancel_tx, cancel_rx) = watch::channel(false);
        self.running.insert(
            attempt,
            Running {
                cancel: cancel_tx.clone(),
                exited: false,
            },
        );
        let journal = self.journal.clone();
        let out = self.out.clone();
        let notices = self.notices.clone();
        let ctx = Ctx {
            runner: self.runner.clone(),
            backend: self.backend.clone(),
            images: self.images.clone(),
            adopt,
        };
        tokio::spawn(async move {
            // On this task, not a blocking thread: a handful of small writes (a spare renamed
            // in, `run.json` written over), where a hand-off to a blocking thread and back
            // cost a trivial fold more than the writes.
            let report = match journal.begin(&run) {
                Ok(dir) => {
                    let report =
                        execute(&journal, &ctx, run, dir, &out, cancel_tx, cancel_rx).await;
                    // Its slot is free: a run queued behind it starts while this result is
                    // journaled and reported.
                    let _ = notices.send(Notice::Exited(attempt));
                    report
                }
                Err(e) => {
                    error_report(attempt, format!("cannot create the attempt directory: {e}"))
                }
            };
            let written = journal.finish_async(&report).await;
            if let Err(written) = written {
                tracing::error!("attempt {attempt}: cannot journal its result: {written:?}");
            }
            let _ = out.send(FromAgent::Finished(report));
            let _ = notices.send(Notice::Ended(attempt));
        });
    }
}

/// A start-up step slower than this is logged: a master restarts a local agent that has not
/// said hello within 15 s, and the log then says which step held it.
const SLOW_STEP: Duration = Duration::from_secs(2);

/// Logs `step` of agent `runner`'s start-up (or hello) if it took longer than [`SLOW_STEP`].
pub(super) fn note_slow(step: &str, runner: &str, since: std::time::Instant) {
    let took = since.elapsed();
    if took > SLOW_STEP {
        tracing::warn!("agent {runner}: {step} took {:.1} s", took.as_secs_f64());
    }
}

fn error_report(attempt: AttemptId, message: String) -> AttemptReport {
    AttemptReport::bare(attempt, Outcome::Error { message })
}

/// What an attempt's task needs to know about its agent.
struct Ctx {
    runner: Arc<str>,
    backend: Backend,
    images: Arc<[String]>,
    /// Resume a container a previous agent process started, instead of starting one.
    adopt: bool,
}

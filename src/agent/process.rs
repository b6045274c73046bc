//! The `process` executor: runs a fold as a plain child process in its own process group,
//! with soft limit -> SIGTERM, hard limit -> SIGKILL, a memory cap, and measurements of wall
//! time, CPU time (whole tree) and peak RSS.
//!
//! The memory cap is *sampled*: the group's summed RSS is read from /proc every
//! [`SAMPLE_EVERY`], so a fold can overshoot its grant between two samples (and a fast enough
//! allocation can meet the kernel's OOM killer first). The docker executor gives a hard cgroup
//! cap; this one is for hosts without Docker and for development.
//!
//! A sample reads only the fold's own processes: the tree under its leader, the members seen
//! by the last sample, and the agent's own children. The agent is a child subreaper
//! (PR_SET_CHILD_SUBREAPER), so a fold's process whose parent exits (a `(cmd &)` subshell, a
//! double fork) is re-parented to the agent instead of init and stays in reach; the agent
//! reaps those orphans once they are zombies (see [`reap_adopted`]).
//!
//! The fold is not tied to the agent's life (no PR_SET_PDEATHSIG): folds survive an agent
//! restart.

mod procfs;
mod reap;
mod resolve;
#[cfg(test)]
mod tests;

use super::exec::{cancelled, format_cpus, sleep_until, ExecRequest, ExecResult};
use super::limits::{Limits, Reason};
use super::outputs::{Guard, CHECK_EVERY};
use crate::model::{Metrics, Outcome, Progress};
use reap::{
    adopted, become_subreaper, reap_adopted, reap_when_exited, sweep_adopted, Exit, LEADERS,
};
pub(crate) use resolve::resolve_program;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the group's memory and CPU are read from /proc.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the log is still read once the fold's group is dead: a process that left the
/// group may hold the pipe open forever.
const LOG_DRAIN: Duration = Duration::from_secs(2);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs one attempt to its end. `progress` gets live figures about once a second;
/// `cancel` turning true kills the fold (outcome Cancelled).
pub async fn run(
    req: ExecRequest,
    progress: mpsc::UnboundedSender<Progress>,
    cancel: watch::Receiver<bool>,
) -> ExecResult {
    let program = program_path(&req);
    run_resolved(req, program, progress, cancel).await
}

/// [`run`] with the program already resolved ([`program_path`]; its error is the fold's),
/// so that the caller that also records which program ran resolves it once.
pub async fn run_resolved(
    req: ExecRequest,
    program: Result<PathBuf, String>,
    progress: mpsc::UnboundedSender<Progress>,
    mut cancel: watch::Receiver<bool>,
) -> ExecResult {
    let start = Instant::now();
    become_subreaper();
    sweep_adopted();
    let (pid, log_pipe) = match spawn(&req, program) {
        Ok(started) => started,
        Err(message) => return ExecResult::error(message),
    };
    tracing::debug!(
        "attempt {}: started {:?} as pid {pid}",
        req.attempt,
        req.command
    );
    // If this agent dies, the next one kills the group it leaves behind (see the journal).
    if let Err(e) = super::journal::note_pgid(&req.work_dir, pid) {
        tracing::warn!(
            "attempt {}: cannot journal its process group: {e}",
            req.attempt
        );
    }
    let tail = super::tail::Tail::live(req.attempt, req.log_limit);
    let (stop_log, log_task) = read_log(log_pipe, tail);
    let reaper = tokio::spawn(reap_when_exited(pid));
    let mut guard = Guard::new(&req);
    let ended = watch_fold(pid, &req, start, reaper, &progress, &mut cancel, &mut guard).await;
    let log = finish_log(stop_log, log_task).await;
    let (outcome, outputs) = guard.settle(ended.outcome()).await;
    ExecResult {
        outcome,
        metrics: ended.metrics(),
        log,
        outputs,
        image_id: None,
    }
}

/// Starts the fold in its own process group; returns its pid (= its group id) and the read
/// end of the pipe that gets its stdout and stderr.
fn spawn(
    req: &ExecRequest,
    program: Result<PathBuf, String>,
) -> Result<(i32, pipe::Receiver), String> {
    let (_, args) = req.command.split_first().ok_or("the command is empty")?;
    if !req.work_dir.is_dir() {
        return Err(format!(
            "the work directory {} does not exist",
            req.work_dir.display()
        ));
    }
    let env = fold_env(req);
    // Resolved before (`program_path`), so std sees an absolute path and can use posix_spawn
    // (a vfork-style spawn) instead of forking the whole agent and trying every PATH entry in
    // the child.
    let program = program?;
    let pipe_error = |e: io::Error| format!("cannot make the log pipe: {e}");
    let (reader, writer) = io::pipe().map_err(pipe_error)?;
    let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(pipe_error)?;
    let writer_too = writer.try_clone().map_err(pipe_error)?;
    // The Command owns the write ends; dropping it at return leaves them to the child only.
    // The leader is registered before `reap_adopted` can see it, so only `reap` reaps it.
    let mut leaders = LEADERS.lock().unwrap_or_else(|e| e.into_inner());
    let child = Command::new(&program)
        .args(args)
        .current_dir(&req.work_dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_too)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    // The Child is only dropped, never waited for: `reap` is the one place that reaps it.
    let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_string())?;
    leaders.insert(pid);
    Ok((pid, reader))
}

/// The fold's whole environment: a clean base, the fold's own variables, then datarun's.
/// The program the fold's command names, resolved as [`run`] resolves it (provenance).
pub(crate) fn program_path(req: &ExecRequest) -> Result<PathBuf, String> {
    let program = req.command.first().ok_or("the command is empty")?;
    let env = fold_env(req);
    resolve_program(
        OsStr::new(program),
        env.get("PATH").map(OsString::as_os_str),
        &req.work_dir,
    )
}

fn fold_env(req: &ExecRequest) -> BTreeMap<String, OsString> {
    let path = std::env::var_os("PATH").filter(|p| !p.is_empty());
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), path.unwrap_or_else(|| DEFAULT_PATH.into()));
    env.insert("HOME".into(), req.work_dir.clone().into_os_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.extend(req.env.iter().map(|(k, v)| (k.clone(), OsString::from(v))));
    env.insert(
        "DATARUN_INPUT".into(),
        req.input_dir.clone().into_os_string(),
    );
    env.insert(
        "DATARUN_OUTPUT".into(),
        req.output_dir.clone().into_os_string(),
    );
    env.insert("DATARUN_ATTEMPT".into(), req.attempt.to_string().into());
    env.insert("DATARUN_CPUS".into(), format_cpus(req.millicpus).into());
    env.insert(
        "OMP_NUM_THREADS".into(),
        req.millicpus.div_ceil(1000).max(1).to_string().into(),
    );
    // Always set, so a fold never sees GPUs it was not granted.
    env.insert("CUDA_VISIBLE_DEVICES".into(), req.gpus.join(",").into());
    env
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    // Never 0 or 1: killpg(0) would hit the agent's own group, and 1 is init.
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; ESRCH (group gone) is fine.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// Live figures of the fold's group, from /proc samples.
#[derive(Debug, Default)]
struct Meter {
    cpu: procfs::CpuLedger,
    memory: u64,
    peak_memory: u64,
    /// The members the last sample found: walked from again, in case they were re-parented
    /// out of the leader's tree to a subreaper other than this agent.
    known: Vec<i32>,
}

impl Meter {
    /// Reads the group's members: the leader's tree, the members known from the last sample
    /// and the orphans adopted by this agent; then reaps the group's adopted zombies (after
    /// reading them, so their CPU counts).
    async fn sample(&mut self, pgid: i32) {
        let known = std::mem::take(&mut self.known);
        let scan = move || {
            let members = procfs::tree_members(pgid, known.into_iter().chain(adopted()));
            reap_adopted(Some(pgid));
            members
        };
        let Ok(members) = tokio::task::spawn_blocking(scan).await else {
            return;
        };
        self.known = members
            .iter()
            .map(|m| m.pid)
            .filter(|&p| p != pgid)
            .collect();
        self.cpu.record(&members);
        self.memory = procfs::rss_bytes(&members);
        self.peak_memory = self.peak_memory.max(self.memory);
    }

    fn cpu_ms(&self) -> u64 {
        procfs::ticks_to_ms(self.cpu.total_ticks())
    }

    fn progress(&self, wall: Duration) -> Progress {
        Progress {
            wall_ms: wall.as_millis() as u64,
            cpu_ms: self.cpu_ms(),
            memory: self.memory,
            peak_memory: self.peak_memory,
            status: None,
        }
    }
}

/// What watching the fold found once its leader was reaped.
struct Ended {
    exit: Result<Exit, String>,
    reason: Option<Reason>,
    wall: Duration,
    meter: Meter,
}

impl Ended {
    fn outcome(&self) -> Outcome {
        match (&self.exit, self.reason) {
            (Err(message), _) => Outcome::Error {
                message: message.clone(),
            },
            (Ok(_), Some(reason)) => reason_outcome(reason),
            (Ok(exit), None) => status_outcome(exit.status),
        }
    }

    fn metrics(&self) -> Metrics {
        let (cpu_ms, max_rss) = match &self.exit {
            Ok(exit) => (exit.cpu_ms, exit.max_rss_bytes),
            Err(_) => (0, 0),
        };
        Metrics {
            wall_ms: self.wall.as_millis() as u64,
            cpu_ms: cpu_ms.max(self.meter.cpu_ms()),
            peak_memory: max_rss.max(self.meter.peak_memory),
        }
    }
}

fn reason_outcome(reason: Reason) -> Outcome {
    match reason {
        Reason::SoftLimit => Outcome::TimedOutSoft,
        Reason::HardLimit => Outcome::TimedOutHard,
        Reason::OutOfMemory => Outcome::OutOfMemory,
        Reason::Cancelled => Outcome::Cancelled,
        Reason::OutputLimit(over) => over.outcome(),
    }
}

/// The outcome of a fold datarun did not signal, from its wait status.
fn status_outcome(status: libc::c_int) -> Outcome {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Outcome::Success,
            code => Outcome::ExitCode { code },
        }
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signal {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Outcome::Error {
            message: format!("unexpected wait status {status:#x}"),
        }
    }
}

/// Enforces the limits, samples the group and reports progress until the leader is reaped.
async fn watch_fold(
    pgid: i32,
    req: &ExecRequest,
    start: Instant,
    mut reaper: JoinHandle<io::Result<Exit>>,
    progress: &mpsc::UnboundedSender<Progress>,
    cancel: &mut watch::Receiver<bool>,
    outputs: &mut Guard,
) -> Ended {
    let mut limits = Limits::new(start, req.soft_limit, req.hard_limit);
    let mut meter = Meter::default();
    // The first sample comes one interval in: a fold that ends sooner is measured by wait4.
    let mut ticker = tokio::time::interval_at(start + SAMPLE_EVERY, SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut output_ticker = tokio::time::interval_at(start + CHECK_EVERY, CHECK_EVERY);
    output_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_progress = start + PROGRESS_EVERY;
    loop {
        let signal = tokio::select! {
            biased;
            joined = &mut reaper => {
                let exit = match joined {
                    Ok(Ok(exit)) => Ok(exit),
                    Ok(Err(e)) => Err(format!("lost track of the fold's process {pgid}: {e}")),
                    Err(e) => Err(format!("lost track of the fold's process {pgid}: {e}")),
                };
                if exit.is_err() {
                    signal_group(pgid, libc::SIGKILL);
                }
                return Ended { exit, reason: limits.reason, wall: start.elapsed(), meter };
            }
            _ = cancelled(cancel), if !limits.killed => limits.kill(Reason::Cancelled),
            _ = sleep_until(limits.next_deadline()) => limits.due(Instant::now()),
            _ = ticker.tick() => {
                meter.sample(pgid).await;
                let now = Instant::now();
                if now >= next_progress {
                    next_progress = now + PROGRESS_EVERY;
                    let _ = progress.send(meter.progress(now - start));
                }
                let over = req.memory_limit.is_some_and(|limit| meter.memory > limit);
                if over { limits.kill(Reason::OutOfMemory) } else { None }
            }
            _ = output_ticker.tick(), if !limits.killed => match outputs.check().await {
                Some(over) => limits.kill(Reason::OutputLimit(over)),
                None => None,
            },
        };
        if let Some(signal) = signal {
            tracing::debug!("attempt {}: {} to group {pgid}", req.attempt, signal.name());
            signal_group(pgid, signal.number());
        }
    }
}

/// Drains the log pipe into a tail buffer, always, so the fold never blocks on a write.
/// The task ends at end of file, or when told to stop.
/// The tail is live: the agent reads it while the fold runs (`fold log --follow`).
fn read_log(
    mut pipe: pipe::Receiver,
    mut tail: super::tail::Tail,
) -> (oneshot::Sender<()>, JoinHandle<Vec<u8>>) {
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                read = pipe.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => tail.push(&buf[..n]),
                },
            }
        }
        tail.into_log()
    });
    (stop_tx, task)
}

/// The log, once every writer has closed the pipe or after [`LOG_DRAIN`].
async fn finish_log(stop: oneshot::Sender<()>, mut task: JoinHandle<Vec<u8>>) -> Vec<u8> {
    if let Ok(joined) = tokio::time::timeout(LOG_DRAIN, &mut task).await {
        return joined.unwrap_or_default();
    }
    let _ = stop.send(());
    task.await.unwrap_or_default()
}

//! The `docker` executor: one container per attempt, named `datarun-attempt-<id>` and labelled
//! `datarun.attempt`, `datarun.fold`, `datarun.runner`, confined as [`spec::host_config`]
//! describes (cgroup memory cap without swap, CPU quota, pids limit, no network, read-only
//! root, size-limited /tmp, no capabilities, no-new-privileges, an init as PID 1).
//!
//! The fold sees its inputs read-only at /datarun/input and writes its outputs to
//! /datarun/output (host directories of the attempt, bind-mounted); it starts in /datarun, the
//! parent of both, like the process executor starts in the attempt directory. Before the start
//! the host's output directory is handed to the container user (chown when the agent is root,
//! otherwise chmod 0777) and the input tree is made world-readable.
//!
//! Limits run on the agent's own clock: soft limit -> SIGTERM (the container's init forwards it
//! to the fold), hard limit -> SIGKILL (10 s after the SIGTERM when only a soft limit is set).
//! Out of memory is read from the engine's `State.OOMKilled`, never guessed from an exit code.
//! The engine hears of an OOM kill and of the container's exit on separate paths, and the OOM
//! report can come second: an exit by SIGKILL that datarun did not send (none, or only the
//! soft limit's SIGTERM) is inspected again for up to [`LATE_OOM`] before it is reported as
//! an exit code.
//! CPU time and peak memory are the container cgroup's own counters (CPU usage, and the
//! kernel's high-water mark of memory), read from the cgroup files every
//! [`DockerOptions::stats_interval`] when this process can see them, else from the engine's
//! stats (once a second). The cgroup disappears with the container, so the figures are those
//! of the last sample: up to one interval of CPU at the very end can be missed. Wall time is
//! the engine's FinishedAt - StartedAt.
//!
//! The log is the tail of stdout and stderr as the engine logged them (its json-file, rotated
//! so that a chatty fold cannot fill the disk), with the process executor's cut marker. The
//! two streams reach the engine separately: each keeps its order, their interleaving is
//! approximate.
//!
//! `run` and `adopt` remove the container once the result is collected (exit state, log,
//! outputs): the output files stay in the attempt directory, and the small window between the
//! removal and the daemon journaling the result can only turn into `Lost` (a rerun), never into
//! a second result. A container whose agent died is left running; a later agent finds it with
//! [`DockerExecutor::list_attempt_containers`] and resumes it with [`DockerExecutor::adopt`] —
//! also after it exited, since nothing is removed before collection. Containers that no
//! journal wants are removed with [`DockerExecutor::remove_attempt`].
//!
//! A fold that fits the runner's warm containers (`warm.rs`) runs in one started ahead of it
//! instead of a new one: the same confinement and collection, its limits counted from its go.

mod cgroup;
mod dirs;
pub mod engine;
mod errors;
mod housekeeping;
mod limits;
mod monitor;
mod options;
mod spec;
#[cfg(test)]
mod tests;
mod warm;

use super::exec::{cancelled, sleep_until, ExecRequest, ExecResult};
use super::outputs::{Guard, CHECK_EVERY};
use crate::model::{AttemptId, Metrics, Outcome, Progress};
use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerStateStatusEnum, ContainerStatsResponse, ContainerSummaryStateEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ImportImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder,
};
use bollard::Docker;
use dirs::prepare_dirs;
use errors::{engine_message, status, unavailable};
use futures_util::{StreamExt, TryStreamExt};
use limits::{Limits, Reason, Signal};
use monitor::{catch_up_log, follow_log, sample, LogState, Meter};
pub use options::{DockerError, DockerOptions};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use spec::{LABEL_ATTEMPT, LABEL_FOLD, LABEL_NAMESPACE, LABEL_RUNNER};
pub use warm::LABEL_WARM;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the log stream may still take once the container stopped.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long the engine may fail to answer about a running container before the attempt is
/// given up as lost.
const ENGINE_PATIENCE: Duration = Duration::from_secs(60);
/// How long an unexplained SIGKILL (exit code 137) waits for the engine's late OOM report.
const LATE_OOM: Duration = Duration::from_millis(500);
/// Loading an image tarball may take long; the engine answers only once it has it all.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    opts: DockerOptions,
    /// Read figures from the containers' cgroup files when visible (off: engine stats only).
    read_cgroups: bool,
    /// Containers started ahead of the folds ([`DockerExecutor::with_warm`]).
    warm: Option<Arc<warm::WarmPool>>,
}

impl DockerExecutor {
    /// Connects to the local engine (DOCKER_HOST, else the default socket) and agrees on an API
    /// version both sides speak.
    pub async fn connect(opts: DockerOptions) -> Result<DockerExecutor, DockerError> {
        opts.check().map_err(DockerError::Options)?;
        let docker = Docker::connect_with_local_defaults().map_err(|e| unavailable(&e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(DockerExecutor {
            docker,
            opts,
            read_cgroups: true,
            warm: None,
        })
    }

    pub fn options(&self) -> &DockerOptions {
        &self.opts
    }

    /// "20.10.24 (API 1.41)".
    pub async fn engine_version(&self) -> Result<String, DockerError> {
        let v = self.docker.version().await?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_else(|| "unknown".into()),
            v.api_version.unwrap_or_else(|| "unknown".into())
        ))
    }

    /// The id, tags and repo digests of an image (by name, pinned name or id), if the engine
    /// has it: provenance, and the allowlist check of pinned images.
    pub async fn image_identity(
        &self,
        image: &str,
    ) -> Result<Option<engine::ImageIdentity>, String> {
        let image = crate::model::provenance::pin(image).unwrap_or(image);
        engine::identity(&self.docker, image).await
    }

    /// Runs one attempt to its end in a new container, then removes the container.
    /// `progress` gets live figures about once a second; `cancel` turning true kills the fold
    /// (outcome Cancelled).
    pub async fn run(
        &self,
        req: ExecRequest,
        progress: mpsc::UnboundedSender<Progress>,
        cancel: watch::Receiver<bool>,
    ) -> ExecResult {
        let name = self.container_name(req.attempt);
        let image = match req.image.as_deref() {
            Some(image) if !image.is_empty() => image,
            _ => {
                return ExecResult::error("the docker executor needs an image; the fold names none")
            }
        };
        if let Some((name, go)) = self.claim_warm(&req).await {
            return self
                .watch(&req, &name, Some(go), Instant::now(), progress, cancel)
                .await;
        }
        // A pinned image (`NAME@sha256:HEX`, a rerun's) runs by its id, whatever NAME now is.
        let pinned = crate::model::provenance::pin(image);
        let volumes = match self.docker.inspect_image(pinned.unwrap_or(image)).await {
            Ok(info) => info.config.and_then(|c| c.volumes).unwrap_or_default(),
            Err(e) if status(&e) == Some(404) && pinned.is_some() => {
                return ExecResult::error(format!(
                    "image {image:?} is not on runner {:?}: no image there has the id it is pinned to (a rerun runs exactly the image of its record)",
                    req.runner
                ))
            }
            Err(e) if status(&e) == Some(404) => {
                let message = format!(
                    "image {image:?} is not on runner {:?}: load it with `datarun image load FILE.tar` (no registry is used)",
                    req.runner
                );
                return ExecResult {
                    outcome: Outcome::ImageMissing {
                        image: image.to_string(),
                        message,
                    },
                    ..ExecResult::error("")
                };
            }
            Err(e) => {
                return ExecResult::error(format!(
                    "cannot inspect image {image:?}: {}",
                    engine_message(&e)
                ))
            }
        };
        let prepared = {
            let (req, user) = (req.clone(), self.opts.user.clone());
            tokio::task::spawn_blocking(move || prepare_dirs(&req, &user)).await
        };
        match prepared {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return ExecResult::error(message),
            Err(e) => {
                return ExecResult::error(format!("cannot prepare the attempt's directories: {e}"))
            }
        }
        let config = spec::container_config(&req, pinned.unwrap_or(image), &self.opts, &volumes);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        if let Err(e) = self.docker.create_container(Some(options), config).await {
            return ExecResult::error(match status(&e) {
                Some(409) => format!(
                    "a container named {name} already exists (left by an earlier agent?): adopt the attempt or remove the container"
                ),
                _ => format!("cannot create the container: {}", engine_message(&e)),
            });
        }
        tracing::debug!("attempt {}: created {name} from {image}", req.attempt);
        let start = Instant::now();
        if let Err(e) = self.docker.start_container(&name, None).await {
            self.remove_quietly(&name).await;
            return ExecResult::error(format!(
                "cannot start the container: {}",
                engine_message(&e)
            ));
        }
        self.watch(&req, &name, None, start, progress, cancel).await
    }

    /// Resumes an attempt whose container a previous agent process started: the same limits
    /// (deadlines counted from the container's StartedAt), monitoring and collection as `run`.
    /// A container that was created but never started is started now; one that already exited
    /// is collected at once. If the container is gone, the outcome is Lost.
    pub async fn adopt(
        &self,
        req: ExecRequest,
        progress: mpsc::UnboundedSender<Progress>,
        cancel: watch::Receiver<bool>,
    ) -> ExecResult {
        let name = self.container_name(req.attempt);
        let info = match self.docker.inspect_container(&name, None).await {
            Ok(info) => info,
            Err(e) if status(&e) == Some(404) => {
                return lost(format!(
                    "its container {name} is gone (removed, or lost with the engine's state)"
                ))
            }
            Err(e) => {
                return ExecResult::error(format!(
                    "cannot inspect container {name}: {}",
                    engine_message(&e)
                ))
            }
        };
        let labelled = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(LABEL_ATTEMPT));
        let warm = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .is_some_and(|l| l.contains_key(LABEL_WARM));
        // A claimed warm container has no attempt label (labels never change): the attempt's
        // claim names it, and its limits count from its go.
        let mut since = None;
        if labelled != Some(&req.attempt.to_string()) {
            let id = info.id.as_deref().unwrap_or_default();
            match Self::warm_go(&req.work_dir, id) {
                Ok(Some(go)) if warm => since = Some(go),
                Ok(None) if warm => {
                    self.remove_quietly(&name).await;
                    return lost(format!(
                        "its warm container {name} was claimed but never told to go"
                    ));
                }
                _ => {
                    return ExecResult::error(format!(
                        "container {name} is not labelled {LABEL_ATTEMPT}={} nor claimed by it; not adopting it",
                        req.attempt
                    ))
                }
            }
        }
        let state = info.state.unwrap_or_default();
        if state.status == Some(ContainerStateStatusEnum::CREATED) {
            // Created but never started: its agent died in between.
            if let Err(e) = self.docker.start_container(&name, None).await {
                self.remove_quietly(&name).await;
                return ExecResult::error(format!(
                    "cannot start the container: {}",
                    engine_message(&e)
                ));
            }
        }
        // `watch` counts the limits from the engine's StartedAt; this is only its fallback.
        let start = Instant::now();
        tracing::info!(
            "attempt {}: adopted {name} ({:?}, started at {:?})",
            req.attempt,
            state.status,
            state.started_at
        );
        self.watch(&req, &name, since, start, progress, cancel)
            .await
    }

    /// Every container with a datarun attempt label, as (attempt, alive), sorted by attempt.
    fn container_name(&self, attempt: AttemptId) -> String {
        spec::container_name(&self.opts.namespace, attempt)
    }

    async fn remove_quietly(&self, name: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self.docker.remove_container(name, Some(options)).await {
            if status(&e) != Some(404) {
                tracing::warn!("cannot remove container {name}: {}", engine_message(&e));
            }
        }
    }

    /// Watches a started container to its end, then collects and removes it. The limits count
    /// from `since` (a warm container's go), else from the engine's StartedAt; `start` is the
    /// fallback when there is none.
    async fn watch(
        &self,
        req: &ExecRequest,
        name: &str,
        since: Option<SystemTime>,
        start: Instant,
        progress: mpsc::UnboundedSender<Progress>,
        mut cancel: watch::Receiver<bool>,
    ) -> ExecResult {
        let log = Arc::new(Mutex::new(LogState::live(req.attempt, req.log_limit)));
        let meter = Arc::new(Mutex::new(Meter::default()));
        // The engine's StartedAt is the start the limits count from (for a container started
        // here as for an adopted one), and the main process leads to the cgroup (none if it
        // already ended).
        let (state, image_id) = match self.docker.inspect_container(name, None).await {
            Ok(info) => (info.state.unwrap_or_default(), info.image),
            Err(_) => Default::default(),
        };
        let started = since.or_else(|| state.started_at.as_deref().and_then(limits::parse_time));
        let start = started.map(limits::instant_of).unwrap_or(start);
        let pid = state.pid.filter(|p| *p > 0);
        let cgroup = pid
            .filter(|_| self.read_cgroups)
            .and_then(|p| cgroup::Cgroup::of_process(u32::try_from(p).ok()?));
        let mut log_task = tokio::spawn(follow_log(
            self.docker.clone(),
            name.to_string(),
            log.clone(),
        ));
        let sampler = tokio::spawn(sample(
            self.docker.clone(),
            name.to_string(),
            meter.clone(),
            self.opts.stats_interval,
            cgroup,
        ));
        // If this future is dropped (the agent dies or gives up), the helpers stop with it.
        let _helpers = AbortOnDrop(vec![log_task.abort_handle(), sampler.abort_handle()]);
        let mut guard = Guard::new(req);
        let ended = self
            .wait_for_exit(req, start, &meter, &progress, &mut cancel, &mut guard)
            .await;
        sampler.abort();
        if tokio::time::timeout(LOG_DRAIN, &mut log_task)
            .await
            .is_err()
        {
            log_task.abort();
        }
        // The engine's follow stream can end before the last lines (it may lag behind a log
        // file rotation when the container stops): read on from the last chunk it gave.
        let caught_up = tokio::time::timeout(LOG_DRAIN, catch_up_log(&self.docker, name, &log));
        if caught_up.await.is_err() {
            tracing::warn!(
                "attempt {}: the end of the log was not read in time",
                req.attempt
            );
        }
        let log = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tail
            .take_log();
        let meter = std::mem::take(&mut *meter.lock().unwrap_or_else(|e| e.into_inner()));
        let mut metrics = Metrics {
            wall_ms: start.elapsed().as_millis() as u64,
            cpu_ms: meter.cpu_ms,
            peak_memory: meter.peak_memory,
        };
        let reason = match ended {
            Ok(reason) => reason,
            // The attempt ends lost and will be rerun: a container that is still there (the
            // engine answers again) must not run on beside the rerun.
            Err(outcome) => {
                self.remove_quietly(name).await;
                return ExecResult {
                    outcome,
                    metrics,
                    log,
                    outputs: vec![],
                    image_id,
                };
            }
        };
        let state = match self.ended_state(name, reason.as_ref()).await {
            Ok(state) => state,
            Err(e) => {
                let message = format!(
                    "cannot read how container {name} ended: {}",
                    engine_message(&e)
                );
                return ExecResult {
                    outcome: Outcome::Error { message },
                    metrics,
                    log,
                    outputs: vec![],
                    image_id,
                };
            }
        };
        let started = since.or_else(|| state.started_at.as_deref().and_then(limits::parse_time));
        let finished = state.finished_at.as_deref().and_then(limits::parse_time);
        if let Some(wall) = started
            .zip(finished)
            .and_then(|(s, f)| f.duration_since(s).ok())
        {
            metrics.wall_ms = wall.as_millis() as u64;
        }
        let oom_killed = state.oom_killed.unwrap_or(false);
        let exit_code = state.exit_code.unwrap_or(-1);
        let (outcome, outputs) = guard
            .settle(limits::outcome(reason, oom_killed, exit_code))
            .await;
        tracing::debug!(
            "attempt {}: {name} ended: {outcome} (exit code {exit_code}, OOMKilled {oom_killed})",
            req.attempt
        );
        self.remove_quietly(name).await;
        ExecResult {
            outcome,
            metrics,
            log,
            outputs,
            image_id,
        }
    }

    /// How the stopped container ended. A SIGKILL that datarun did not send (exit code 137,
    /// `limits::may_be_late_oom`) is most likely the cgroup's OOM killer, whose report
    /// reaches the engine on its own path and can come after the exit: the state is read
    /// again until it says OOMKilled or [`LATE_OOM`] has passed (an error then keeps the state
    /// already read). A process of the container killed for memory while the main one exits
    /// otherwise is the engine's report alone, read once.
    async fn ended_state(
        &self,
        name: &str,
        reason: Option<&Reason>,
    ) -> Result<bollard::models::ContainerState, EngineError> {
        let read = || async {
            let info = self.docker.inspect_container(name, None).await?;
            Ok::<_, EngineError>(info.state.unwrap_or_default())
        };
        let unexplained = |s: &bollard::models::ContainerState| {
            let code = s.exit_code.unwrap_or(-1);
            limits::may_be_late_oom(reason, s.oom_killed.unwrap_or(false), code)
        };
        let deadline = Instant::now() + LATE_OOM;
        let mut state = read().await?;
        while unexplained(&state) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match read().await {
                Ok(again) => state = again,
                Err(_) => break,
            }
        }
        Ok(state)
    }

    /// Enforces the limits and reports progress until the container stops; returns why
    /// datarun signalled it, or the outcome if the container could no longer be followed.
    async fn wait_for_exit(
        &self,
        req: &ExecRequest,
        start: Instant,
        meter: &Mutex<Meter>,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut watch::Receiver<bool>,
        outputs: &mut Guard,
    ) -> Result<Option<Reason>, Outcome> {
        let name = &self.container_name(req.attempt);
        let mut limits = Limits::new(start, req.soft_limit, req.hard_limit);
        let mut waiting = self.docker.wait_container(name, None);
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut output_ticker = tokio::time::interval(CHECK_EVERY);
        output_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut engine_trouble: Option<Instant> = None;
        loop {
            let signal = tokio::select! {
                biased;
                waited = waiting.next() => {
                    match waited {
                        Some(Ok(_)) | Some(Err(EngineError::DockerContainerWaitError { .. })) => {
                            return Ok(limits.reason);
                        }
                        other => {
                            // The wait broke off without an exit status: ask for the state.
                            let broke = match other {
                                Some(Err(e)) => engine_message(&e),
                                _ => "the wait ended without an answer".into(),
                            };
                            match self.docker.inspect_container(name, None).await {
                                Ok(info) if !is_alive(&info) => return Ok(limits.reason),
                                Ok(_) => engine_trouble = None,
                                Err(e) if status(&e) == Some(404) => {
                                    return Err(Outcome::Lost {
                                        reason: format!("its container {name} disappeared while it ran"),
                                    });
                                }
                                Err(e) => {
                                    let since = *engine_trouble.get_or_insert_with(Instant::now);
                                    if since.elapsed() > ENGINE_PATIENCE {
                                        return Err(Outcome::Lost {
                                            reason: format!(
                                                "lost contact with the Docker engine: {} (waiting: {broke})",
                                                engine_message(&e)
                                            ),
                                        });
                                    }
                                }
                            }
                            tracing::warn!("attempt {}: waiting for {name} broke off ({broke}); waiting again", req.attempt);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            waiting = self.docker.wait_container(name, None);
                            None
                        }
                    }
                }
                _ = cancelled(cancel), if !limits.killed => limits.kill(Reason::Cancelled),
                _ = sleep_until(limits.next_deadline()) => limits.due(Instant::now()),
                _ = ticker.tick() => {
                    let figures = meter.lock().unwrap_or_else(|e| e.into_inner()).progress(start.elapsed());
                    let _ = progress.send(figures);
                    None
                }
                _ = output_ticker.tick(), if !limits.killed => match outputs.check().await {
                    Some(over) => limits.kill(Reason::OutputLimit(over)),
                    None => None,
                },
            };
            if let Some(signal) = signal {
                self.signal(req.attempt, name, signal).await;
            }
        }
    }

    async fn signal(&self, attempt: AttemptId, name: &str, signal: Signal) {
        tracing::debug!("attempt {attempt}: {} to {name}", signal.name());
        let options = KillContainerOptionsBuilder::default()
            .signal(signal.name())
            .build();
        for _ in 0..3 {
            match self
                .docker
                .kill_container(name, Some(options.clone()))
                .await
            {
                Ok(()) => return,
                // Not running (409) or gone (404): it ended on its own meanwhile.
                Err(e) if matches!(status(&e), Some(404 | 409)) => return,
                Err(e) => {
                    tracing::warn!(
                        "attempt {attempt}: cannot send {} to {name}: {}",
                        signal.name(),
                        engine_message(&e)
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(AbortHandle::abort);
    }
}

fn is_alive(info: &bollard::models::ContainerInspectResponse) -> bool {
    let state = info.state.as_ref();
    state.and_then(|s| s.running).unwrap_or(false)
        || state.and_then(|s| s.status) == Some(ContainerStateStatusEnum::CREATED)
}

fn lost(reason: String) -> ExecResult {
    ExecResult {
        outcome: Outcome::Lost { reason },
        ..ExecResult::error("")
    }
}

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

mod cgroup;
mod limits;
mod spec;
#[cfg(test)]
mod tests;

use super::exec::{cancelled, sleep_until, ExecRequest, ExecResult};
use super::tail::Tail;
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
use futures_util::{StreamExt, TryStreamExt};
use limits::{Limits, Reason, Signal};
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

const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the log stream may still take once the container stopped.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long the engine may fail to answer about a running container before the attempt is
/// given up as lost.
const ENGINE_PATIENCE: Duration = Duration::from_secs(60);
/// Loading an image tarball may take long; the engine answers only once it has it all.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the executor confines every fold (the grant itself comes with each request).
#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// Give folds the default bridge network instead of none. Off for untrusted code.
    pub allow_network: bool,
    /// Most processes (and threads) a fold may have at once.
    pub pids_limit: i64,
    /// Size of the fold's /tmp (a tmpfs: it also counts against the memory grant).
    pub tmpfs_size: u64,
    /// The container user, "uid:gid"; never root.
    pub user: String,
    /// How often CPU and memory figures are read (from the container's cgroup files when
    /// this process can see them; the engine's own stats come once a second at best).
    pub stats_interval: Duration,
    /// Names and labels this agent's containers (see `spec::container_name`); only they are
    /// listed, adopted and cleaned.
    pub namespace: String,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            allow_network: false,
            pids_limit: 256,
            tmpfs_size: 64 << 20,
            user: "1000:1000".into(),
            stats_interval: Duration::from_millis(100),
            namespace: "default".into(),
        }
    }
}

impl DockerOptions {
    /// Rejects options that would not confine untrusted code.
    pub fn check(&self) -> Result<(), String> {
        let uid = self.user.split(':').next().unwrap_or_default();
        if uid.is_empty() || uid == "0" || uid == "root" {
            return Err(format!(
                "user {:?}: folds never run as root; give a \"uid:gid\" such as \"1000:1000\"",
                self.user
            ));
        }
        if self.pids_limit <= 0 {
            return Err(format!(
                "pids_limit {}: must be a positive number (e.g. 256)",
                self.pids_limit
            ));
        }
        if self.tmpfs_size == 0 {
            return Err("tmpfs_size: must be more than 0 (e.g. 64M)".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached; the message says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// The options would not confine a fold.
    #[error("docker executor options: {0}")]
    Options(String),
    /// The engine answered with an error.
    #[error("Docker engine: {0}")]
    Engine(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<EngineError> for DockerError {
    fn from(e: EngineError) -> Self {
        DockerError::Engine(engine_message(&e))
    }
}

#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    opts: DockerOptions,
    /// Read figures from the containers' cgroup files when visible (off: engine stats only).
    read_cgroups: bool,
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
        let volumes = match self.docker.inspect_image(image).await {
            Ok(info) => info.config.and_then(|c| c.volumes).unwrap_or_default(),
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
        let config = spec::container_config(&req, image, &self.opts, &volumes);
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
        self.watch(&req, &name, start, progress, cancel).await
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
        if labelled != Some(&req.attempt.to_string()) {
            return ExecResult::error(format!(
                "container {name} is not labelled {LABEL_ATTEMPT}={}; not adopting it",
                req.attempt
            ));
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
        self.watch(&req, &name, start, progress, cancel).await
    }

    /// Every container with a datarun attempt label, as (attempt, alive), sorted by attempt.
    fn container_name(&self, attempt: AttemptId) -> String {
        spec::container_name(&self.opts.namespace, attempt)
    }

    pub async fn list_attempt_containers(&self) -> Result<Vec<(AttemptId, bool)>, DockerError> {
        let namespace = format!("{LABEL_NAMESPACE}={}", self.opts.namespace);
        let filters = HashMap::from([("label", vec![LABEL_ATTEMPT, namespace.as_str()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let mut found: Vec<(AttemptId, bool)> = self
            .docker
            .list_containers(Some(options))
            .await?
            .into_iter()
            .filter_map(|c| {
                let attempt = c.labels.as_ref()?.get(LABEL_ATTEMPT)?.parse().ok()?;
                let alive = matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::PAUSED
                            | ContainerSummaryStateEnum::RESTARTING
                    )
                );
                Some((attempt, alive))
            })
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    /// Kills and removes the container of an attempt; done if there is none.
    pub async fn remove_attempt(&self, attempt: AttemptId) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&self.container_name(attempt), Some(options))
            .await
        {
            Err(e) if status(&e) != Some(404) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Streams a `docker save` tarball into the engine; returns the names (or ids) it loaded.
    pub async fn load_image(&self, path: &Path) -> Result<Vec<String>, DockerError> {
        let file_error = |source| DockerError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            let n = file.read(&mut buf).await?;
            buf.truncate(n);
            Ok::<_, io::Error>((n > 0).then_some((buf, file)))
        });
        let docker = self.docker.clone().with_timeout(LOAD_TIMEOUT);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = docker.import_image_stream(options, chunks.map_ok(Into::into), None);
        let mut loaded = Vec::new();
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|e| {
                DockerError::Engine(format!(
                    "cannot load {}: {}",
                    path.display(),
                    engine_message(&e)
                ))
            })?;
            loaded.extend(answer.stream.as_deref().into_iter().flat_map(loaded_names));
        }
        if loaded.is_empty() {
            return Err(DockerError::Engine(format!(
                "the engine loaded no image from {}: is it a `docker save` tarball?",
                path.display()
            )));
        }
        Ok(loaded)
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
    /// from the engine's StartedAt; `start` is the fallback when there is none.
    async fn watch(
        &self,
        req: &ExecRequest,
        name: &str,
        start: Instant,
        progress: mpsc::UnboundedSender<Progress>,
        mut cancel: watch::Receiver<bool>,
    ) -> ExecResult {
        let log = Arc::new(Mutex::new(LogState::new(req.log_limit)));
        let meter = Arc::new(Mutex::new(Meter::default()));
        // The engine's StartedAt is the start the limits count from (for a container started
        // here as for an adopted one), and the main process leads to the cgroup (none if it
        // already ended).
        let state = match self.docker.inspect_container(name, None).await {
            Ok(info) => info.state.unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let started = state.started_at.as_deref().and_then(limits::parse_time);
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
        let ended = self
            .wait_for_exit(req, name, start, &meter, &progress, &mut cancel)
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
            // The container may still be there: leave it for a later adopt or cleanup.
            Err(outcome) => {
                return ExecResult {
                    outcome,
                    metrics,
                    log,
                    outputs: vec![],
                }
            }
        };
        let state = match self.docker.inspect_container(name, None).await {
            Ok(info) => info.state.unwrap_or_default(),
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
                };
            }
        };
        let started = state.started_at.as_deref().and_then(limits::parse_time);
        let finished = state.finished_at.as_deref().and_then(limits::parse_time);
        if let Some(wall) = started
            .zip(finished)
            .and_then(|(s, f)| f.duration_since(s).ok())
        {
            metrics.wall_ms = wall.as_millis() as u64;
        }
        let oom_killed = state.oom_killed.unwrap_or(false);
        let exit_code = state.exit_code.unwrap_or(-1);
        let output_dir = req.output_dir.clone();
        let outputs = tokio::task::spawn_blocking(move || super::outputs::collect(&output_dir))
            .await
            .unwrap_or_default();
        if outputs.skipped > 0 {
            tracing::warn!(
                "attempt {}: {} output entries skipped (links, special files or bad names)",
                req.attempt,
                outputs.skipped
            );
        }
        let outcome = match limits::outcome(reason, oom_killed, exit_code) {
            Outcome::Success if outputs.total_bytes > req.output_limit => Outcome::Error {
                message: format!(
                    "outputs are {} bytes, over the limit of {}",
                    outputs.total_bytes, req.output_limit
                ),
            },
            outcome => outcome,
        };
        tracing::debug!(
            "attempt {}: {name} ended: {outcome} (exit code {exit_code}, OOMKilled {oom_killed})",
            req.attempt
        );
        self.remove_quietly(name).await;
        ExecResult {
            outcome,
            metrics,
            log,
            outputs: outputs.names,
        }
    }

    /// Enforces the limits and reports progress until the container stops; returns why
    /// datarun signalled it, or the outcome if the container could no longer be followed.
    async fn wait_for_exit(
        &self,
        req: &ExecRequest,
        name: &str,
        start: Instant,
        meter: &Mutex<Meter>,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Option<Reason>, Outcome> {
        let mut limits = Limits::new(start, req.soft_limit, req.hard_limit);
        let mut waiting = self.docker.wait_container(name, None);
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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

/// Live figures of the container from the engine's stats. Both counters are cumulative over
/// the cgroup's life, so an adopted container's figures include the time before adoption.
#[derive(Debug, Default)]
struct Meter {
    cpu_ms: u64,
    memory: u64,
    peak_memory: u64,
}

impl Meter {
    fn record(&mut self, stats: &ContainerStatsResponse) {
        let cpu_ns = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage);
        if let Some(ns) = cpu_ns {
            // Kept as the maximum: after the exit the engine reports zeros.
            self.cpu_ms = self.cpu_ms.max(ns / 1_000_000);
        }
        if let Some(memory) = &stats.memory_stats {
            if let Some(usage) = memory.usage {
                self.memory = usage;
                self.peak_memory = self.peak_memory.max(usage);
            }
            let peak = memory.max_usage.unwrap_or(0);
            self.peak_memory = self.peak_memory.max(peak);
        }
    }

    fn record_cgroup(&mut self, sample: cgroup::Sample) {
        if let Some(ns) = sample.cpu_ns {
            self.cpu_ms = self.cpu_ms.max(ns / 1_000_000);
        }
        if let Some(memory) = sample.memory {
            self.memory = memory;
            self.peak_memory = self.peak_memory.max(memory);
        }
        self.peak_memory = self.peak_memory.max(sample.peak_memory.unwrap_or(0));
    }

    fn progress(&self, wall: Duration) -> Progress {
        Progress {
            wall_ms: wall.as_millis() as u64,
            cpu_ms: self.cpu_ms,
            memory: self.memory,
            peak_memory: self.peak_memory,
        }
    }
}

/// Samples the container's figures until aborted: from its cgroup files every `every` when
/// they are readable here, else from the engine's stats stream (one sample a second).
async fn sample(
    docker: Docker,
    name: String,
    meter: Arc<Mutex<Meter>>,
    every: Duration,
    cgroup: Option<cgroup::Cgroup>,
) {
    if let Some(cgroup) = cgroup {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Small in-kernel pseudo-files: reading them does not block.
            let figures = cgroup.sample();
            meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_cgroup(figures);
        }
    }
    loop {
        let options = StatsOptionsBuilder::default().stream(true).build();
        let mut samples = docker.stats(&name, Some(options));
        while let Some(Ok(stats)) = samples.next().await {
            meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(&stats);
        }
        tokio::time::sleep(every.max(Duration::from_millis(500))).await;
    }
}

/// The log so far: its tail, and the engine's timestamp of the last chunk read.
struct LogState {
    tail: Tail,
    last: Option<SystemTime>,
}

impl LogState {
    fn new(limit: u64) -> LogState {
        LogState {
            tail: Tail::new(limit),
            last: None,
        }
    }

    /// Adds a chunk read with timestamps ("2024-05-01T10:11:12.123456789Z text"), unless it
    /// is not later than `after` (the catch-up read starts at a whole second, a little early).
    fn push(&mut self, chunk: &[u8], after: Option<SystemTime>) {
        let stamped = chunk.iter().position(|b| *b == b' ').and_then(|space| {
            let time = std::str::from_utf8(&chunk[..space]).ok()?;
            Some((limits::parse_time(time)?, &chunk[space + 1..]))
        });
        match stamped {
            Some((time, _)) if after.is_some_and(|after| time <= after) => {}
            Some((time, text)) => {
                self.last = self.last.max(Some(time));
                self.tail.push(text);
            }
            None => self.tail.push(chunk),
        }
    }
}

fn log_options(follow: bool, since: i32) -> bollard::query_parameters::LogsOptions {
    LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .build()
}

/// Follows the container's stdout and stderr (from its start, so an adopted container's
/// whole log is read) until the container stops. The two streams are merged in the order the
/// engine logged them: each stream keeps its order, the order between them is approximate.
async fn follow_log(docker: Docker, name: String, log: Arc<Mutex<LogState>>) {
    let mut chunks = docker.logs(&name, Some(log_options(true, 0)));
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&chunk.into_bytes(), None),
            Err(e) => {
                tracing::warn!("log of {name}: {}", engine_message(&e));
                break;
            }
        }
    }
}

/// Reads what the follow stream missed: the stored log from the second of the last chunk
/// seen (the engine's `since` counts whole seconds), keeping only later chunks.
async fn catch_up_log(docker: &Docker, name: &str, log: &Mutex<LogState>) {
    let last = log.lock().unwrap_or_else(|e| e.into_inner()).last;
    let since = last
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        .unwrap_or(0);
    let mut chunks = docker.logs(name, Some(log_options(false, since)));
    while let Some(Ok(chunk)) = chunks.next().await {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&chunk.into_bytes(), last);
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

/// The output directory becomes writable by the container user; the inputs readable by it.
/// Blocking.
fn prepare_dirs(req: &ExecRequest, user: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let out = &req.output_dir;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let handed = match spec::numeric_user(user) {
        Some((uid, gid)) if root => std::os::unix::fs::chown(out, Some(uid), Some(gid)),
        _ => std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o777)),
    };
    handed.map_err(|e| {
        format!(
            "cannot let the container user {user} write to {}: {e}",
            out.display()
        )
    })?;
    make_readable(&req.input_dir, 0).map_err(|e| {
        format!(
            "cannot make the inputs in {} readable: {e}",
            req.input_dir.display()
        )
    })
}

/// Adds read (and, for directories, search) permission for others; symlinks are left alone.
fn make_readable(path: &Path, depth: usize) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let extra = if meta.is_dir() {
        0o005
    } else if meta.is_file() {
        0o004
    } else {
        return Ok(());
    };
    let mode = meta.permissions().mode();
    if mode & extra != extra {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | extra))?;
    }
    if meta.is_dir() && depth < 64 {
        for entry in std::fs::read_dir(path)? {
            make_readable(&entry?.path(), depth + 1)?;
        }
    }
    Ok(())
}

/// Image names from `docker load` answers: "Loaded image: name:tag" / "Loaded image ID: sha".
fn loaded_names(stream: &str) -> Vec<String> {
    stream
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("Loaded image: ")
                .or_else(|| line.strip_prefix("Loaded image ID: "))
                .map(|name| name.trim().to_string())
        })
        .collect()
}

fn status(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words when it gave any, else the client error with its causes.
fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError {
            message,
            status_code,
        } if !message.is_empty() => {
            let _ = status_code;
            message.clone()
        }
        EngineError::DockerStreamError { error } if !error.is_empty() => error.clone(),
        EngineError::DockerContainerWaitError { error, code } if !error.is_empty() => {
            format!("{error} (exit code {code})")
        }
        other => error_chain(other),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Why the engine cannot be reached, and what to do about it.
fn unavailable(e: &EngineError) -> DockerError {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let mut kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            kind = Some(io.kind());
        }
        source = cause.source();
    }
    let hint = match kind {
        Some(io::ErrorKind::PermissionDenied) => {
            "this user may not use the engine's socket: run the agent as root, or add its user to the `docker` group and log in again"
        }
        Some(io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            "the engine is not running: start it (`sudo systemctl start docker`), or install it (`datarun provision` does)"
        }
        _ => {
            "check that the engine runs (`sudo systemctl status docker`) and that this user may use its socket (root or the `docker` group)"
        }
    };
    DockerError::Unavailable(format!(
        "cannot reach the Docker engine at {host} ({}): {hint}",
        error_chain(e)
    ))
}

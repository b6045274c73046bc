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
//! soft limit's SIGTERM) is inspected again for up to half a second before it is reported as
//! an exit code (`follow.rs`).
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
mod follow;
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

    /// The name of an attempt's container (in this agent's namespace).
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
}

fn lost(reason: String) -> ExecResult {
    ExecResult {
        outcome: Outcome::Lost { reason },
        ..ExecResult::error("")
    }
}

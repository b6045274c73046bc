//! Following a started container to its end (`DockerExecutor::watch`): its limits on the
//! agent's own clock, cancellation, the output limit, live figures and progress, its log; then
//! how it ended (the engine's state, waiting briefly for a late OOM report), its outputs
//! settled, and the container removed.

use super::*;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the log stream may still take once the container stopped.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long the engine may fail to answer about a running container before the attempt is
/// given up as lost.
const ENGINE_PATIENCE: Duration = Duration::from_secs(60);
/// How long an unexplained SIGKILL (exit code 137) waits for the engine's late OOM report.
const LATE_OOM: Duration = Duration::from_millis(500);

impl DockerExecutor {
    /// Watches a started container to its end, then collects and removes it. The limits count
    /// from `since` (a warm container's go), else from the engine's StartedAt; `start` is the
    /// fallback when there is none.
    pub(super) async fn watch(
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
        let state = match self.ended_state(name, reason).await {
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
        reason: Option<Reason>,
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

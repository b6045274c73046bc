//! What agents report: hello (facts, finished and running attempts, reconciled with the store),
//! started, progress, blob requests, results. Results of one loop turn are applied in one
//! transaction (`flush`) before they are acknowledged.

use super::runners::Cancelling;
use super::*;

impl Master {
    pub(super) async fn on_message(&mut self, runner: &str, msg: FromAgent) -> anyhow::Result<()> {
        match msg {
            FromAgent::Hello {
                version,
                facts,
                running,
                finished,
            } => {
                if version != PROTOCOL_VERSION {
                    let r = self.runners.get_mut(runner).expect("known runner");
                    r.last_error = Some(format!(
                        "agent speaks protocol {version}, master speaks {PROTOCOL_VERSION}"
                    ));
                    r.link = None;
                    r.reconnect_at = Some(Instant::now() + Duration::from_secs(30));
                    return Ok(());
                }
                self.on_hello(runner, *facts, running, finished).await?;
            }
            FromAgent::Started { attempt } => self.started.push(attempt),
            FromAgent::Progress { attempt, progress } => {
                self.progress.insert(attempt, progress);
            }
            FromAgent::NeedBlobs { attempt, sha256 } => {
                for sha in sha256 {
                    match self.store.get_blob(sha.clone()).await {
                        Ok(data) => self.send(
                            runner,
                            ToAgent::Blob {
                                sha256: sha,
                                data: protocol::b64(&data),
                            },
                        ),
                        Err(e) => {
                            tracing::error!("attempt {attempt}: blob {sha} asked by {runner}: {e}")
                        }
                    }
                }
            }
            FromAgent::Finished(report) => self.on_finished(runner, report),
            FromAgent::Pong { .. } => {}
            FromAgent::Error { message } => {
                tracing::warn!("runner {runner}: agent error: {message}")
            }
        }
        Ok(())
    }

    /// Reconciles what the agent reports with the attempts the store has out on this runner.
    async fn on_hello(
        &mut self,
        runner: &str,
        facts: protocol::Facts,
        running: Vec<AttemptId>,
        finished: Vec<protocol::AttemptReport>,
    ) -> anyhow::Result<()> {
        let known: Vec<AttemptId> = self.runners[runner].grants.keys().copied().collect();
        let finished_ids: Vec<AttemptId> = finished.iter().map(|f| f.attempt).collect();
        for report in finished {
            self.on_finished(runner, report);
        }
        self.flush().await?;
        let mut lost = Vec::new();
        for &attempt in &known {
            if running.contains(&attempt) {
                self.store.mark_started(attempt).await?;
                self.store
                    .log_event(
                        None,
                        Some(attempt),
                        "readopted".into(),
                        format!("attempt {attempt} is still running on {runner}; re-adopted"),
                    )
                    .await?;
            } else if !finished_ids.contains(&attempt) {
                lost.push(attempt);
            }
        }
        // Holds and removes made while the runner was away are carried out now.
        let still_running: Vec<AttemptId> = known
            .iter()
            .copied()
            .filter(|a| running.contains(a))
            .collect();
        for attempt in self.store.superseded_attempts(still_running).await? {
            self.send(runner, ToAgent::Cancel { attempt });
        }
        let cancelling = self.cancel_strays(runner, &known, &running).await?;
        let r = self.runners.get_mut(runner).expect("known runner");
        r.cancelling = cancelling;
        for attempt in &lost {
            r.grants.remove(attempt);
        }
        r.ready = true;
        r.failures = 0;
        r.last_error = None;
        let spec = serde_json::to_string(&r.spec).expect("runner spec serializes");
        let facts_json = serde_json::to_string(&facts).expect("facts serialize");
        r.facts = Some(facts);
        self.store
            .upsert_runner(runner.to_string(), spec, "ready".into(), Some(facts_json))
            .await?;
        for attempt in lost {
            self.usage.ended(attempt, 0);
            self.store
                .mark_lost(
                    attempt,
                    format!(
                        "runner {runner} does not know this attempt (it never reached the agent)"
                    ),
                )
                .await?;
        }
        self.dirty = true;
        tracing::info!("runner {runner}: ready");
        Ok(())
    }

    /// Attempts the runner still runs that the master no longer holds: given up while the
    /// runner was away past its lease (their folds requeued, maybe already rerun), or ended
    /// otherwise. Each is cancelled, so that it never runs beside its fold's retry, and counted
    /// against the runner (slot and resources) until the agent reports it gone; its late result
    /// is then rejected by the store and acknowledged.
    async fn cancel_strays(
        &mut self,
        runner: &str,
        known: &[AttemptId],
        running: &[AttemptId],
    ) -> anyhow::Result<BTreeMap<AttemptId, Cancelling>> {
        let strays: Vec<AttemptId> = running
            .iter()
            .copied()
            .filter(|a| !known.contains(a))
            .collect();
        if strays.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut out: BTreeMap<AttemptId, Cancelling> = strays
            .iter()
            .map(|a| {
                // Unknown to the store: nothing to wait for but its slot.
                let grant = Grant {
                    millicpus: 0,
                    memory: 0,
                    gpus: vec![],
                };
                (*a, Cancelling { fold: None, grant })
            })
            .collect();
        for (attempt, fold, grant) in self.store.attempt_grants(strays.clone()).await? {
            out.insert(
                attempt,
                Cancelling {
                    fold: Some(fold),
                    grant,
                },
            );
        }
        for attempt in strays {
            tracing::warn!(
                "runner {runner} still runs attempt {attempt}, which was given up; cancelling it"
            );
            self.send(runner, ToAgent::Cancel { attempt });
            self.store
                .log_event(
                    None,
                    Some(attempt),
                    "stray_cancelled".into(),
                    format!(
                        "attempt {attempt} was given up but still ran on {runner}; cancelled \
                         (its fold waits until it is gone)"
                    ),
                )
                .await?;
        }
        Ok(out)
    }

    fn on_finished(&mut self, runner: &str, report: protocol::AttemptReport) {
        let mut outputs = Vec::with_capacity(report.outputs.len());
        let mut outcome = report.outcome;
        for f in report.outputs {
            match (
                crate::model::check_file_name(&f.name),
                protocol::unb64(&f.data),
            ) {
                (Ok(()), Ok(data)) => outputs.push((f.name, data)),
                (Err(e), _) | (_, Err(e)) => {
                    outcome = crate::model::Outcome::Error {
                        message: format!("output {:?} rejected: {e}", f.name),
                    }
                }
            }
        }
        let input = ResultInput {
            attempt: report.attempt,
            outcome,
            metrics: report.metrics,
            log: protocol::unb64(&report.log).unwrap_or_default(),
            outputs,
        };
        self.finished.push((runner.to_string(), input));
    }

    /// Applies the reports of this loop turn in one transaction, then acks the results: an
    /// agent forgets an attempt only after its result is on disk here.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        if self.started.is_empty() && self.finished.is_empty() {
            return Ok(());
        }
        let started = std::mem::take(&mut self.started);
        let (runners, inputs): (Vec<String>, Vec<ResultInput>) =
            std::mem::take(&mut self.finished).into_iter().unzip();
        let attempts: Vec<AttemptId> = inputs.iter().map(|i| i.attempt).collect();
        for i in &inputs {
            self.usage.ended(i.attempt, i.metrics.wall_ms);
        }
        let oom: Vec<bool> = inputs
            .iter()
            .map(|i| i.outcome == crate::model::Outcome::OutOfMemory)
            .collect();
        let results = self.store.apply_reports(started, inputs).await?;
        for (result, oom) in results.iter().zip(oom) {
            if let (
                true,
                RecordResult::Recorded {
                    fold,
                    state: crate::model::FoldState::Held,
                },
            ) = (oom, result)
            {
                self.release_oom(*fold).await?;
            }
        }
        for ((runner, attempt), result) in runners.iter().zip(attempts).zip(results) {
            match result {
                RecordResult::Superseded { fold } => {
                    tracing::warn!(
                        "fold {fold}: late result of attempt {attempt} from {runner} discarded"
                    )
                }
                RecordResult::Unknown => {
                    tracing::warn!("runner {runner} reported unknown attempt {attempt}")
                }
                _ => {}
            }
            if let Some(r) = self.runners.get_mut(runner) {
                r.release(attempt);
            }
            self.progress.remove(&attempt);
            self.send(runner, ToAgent::Ack { attempt });
            self.dirty = true;
        }
        Ok(())
    }

    /// The OOM policy: a fold held for running out of memory goes back in line with a larger
    /// grant, until the ceiling (or until no runner could give that much).
    async fn release_oom(&mut self, fold: crate::model::FoldId) -> anyhow::Result<()> {
        let Some(policy) = self.cfg.oom_policy else {
            return Ok(());
        };
        let f = self.store.fold(fold).await?;
        let Some(memory) = policy.next_grant(f.spec.resources.memory) else {
            return Ok(());
        };
        let changes = crate::store::ReleaseChanges {
            memory: Some(memory),
            ..Default::default()
        };
        let Ok(spec) = changes.apply(&f.spec) else {
            return Ok(());
        };
        let views: Vec<RunnerView> = self
            .runners
            .values()
            .map(|r| RunnerView {
                unavailable: None,
                ..r.view()
            })
            .collect();
        if scheduler::unmatchable(&pending_of(fold, &f.owner, &spec, f.submitted_at), &views)
            .is_some()
        {
            return Ok(());
        }
        self.store
            .release(fold, "the out-of-memory policy".into(), changes)
            .await?;
        Ok(())
    }
}

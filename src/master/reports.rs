//! What agents report: hello (facts, finished and running attempts, reconciled with the store),
//! started, progress, blob requests, results. Results of one loop turn are applied in one
//! transaction (`flush`) before they are acknowledged.

use super::runners::Cancelling;
use super::transfers::{self, Piece};
use super::*;
use crate::store::{BlobData, StoreError};
use tokio::sync::mpsc::WeakUnboundedSender;

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
            FromAgent::Started { attempt } => {
                if self.started.is_empty() {
                    self.starts_since = Some(Instant::now());
                }
                self.started.push(attempt)
            }
            FromAgent::Progress { attempt, progress } => {
                self.set_progress(attempt, progress);
            }
            FromAgent::FetchBlob {
                sha256,
                offset,
                len,
            } => {
                if let Some((_, link)) = self.link_of(runner) {
                    self.transfers.serve_blob(link, sha256, offset, len);
                }
            }
            FromAgent::Chunk {
                attempt,
                file,
                offset,
                data,
                eof,
            } => {
                let piece = Piece::Chunk {
                    file,
                    offset,
                    data,
                    eof,
                };
                self.transfers.route(runner, attempt, piece);
            }
            FromAgent::FetchFailed {
                attempt,
                file,
                message,
            } => {
                let piece = Piece::Failed { file, message };
                self.transfers.route(runner, attempt, piece);
            }
            msg @ FromAgent::LogChunk { .. } => self.transfers.logs.answer(runner, msg),
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
        // Attempts queued behind others count too: the agent forgets those it had not started
        // when a master says hello, so they are lost (before starting) and requeued.
        let r = &self.runners[runner];
        let known: Vec<AttemptId> = r.grants.keys().chain(r.queued.keys()).copied().collect();
        let finished_ids: Vec<AttemptId> = finished.iter().map(|f| f.attempt).collect();
        // The results it reports again record these facts in their provenance.
        if let Some(r) = self.runners.get_mut(runner) {
            r.set_facts(facts.clone());
        }
        for report in finished {
            self.on_finished(runner, report);
        }
        self.flush();
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
            r.queued.remove(attempt);
        }
        r.ready = true;
        r.failures = 0;
        r.last_error = None;
        let spec = serde_json::to_string(&r.spec).expect("runner spec serializes");
        let facts_json = serde_json::to_string(&facts).expect("facts serialize");
        r.set_facts(facts);
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

    /// Whether `attempt` is out on `runner`, or was until its result went to be recorded.
    fn holds(&self, runner: &str, attempt: AttemptId) -> bool {
        self.runners.get(runner).is_some_and(|r| r.holds(attempt))
            || self
                .releasing
                .get(&attempt)
                .is_some_and(|(name, _)| name == runner)
    }

    /// The weak end of `runner`'s current link, with its generation: transfers hold it so
    /// that dropping the link still closes it.
    fn link_of(&self, runner: &str) -> Option<(u64, WeakUnboundedSender<ToAgent>)> {
        let link = self.runners.get(runner)?.link.as_ref()?;
        Some((link.generation, link.tx.downgrade()))
    }

    /// A result: checked, then recorded at once when it names no files (or is for an attempt
    /// this runner no longer holds: the store will not keep it anyway), else its files are
    /// pulled first (`transfers`).
    pub(super) fn on_finished(&mut self, runner: &str, mut report: protocol::AttemptReport) {
        let granted = self.holds(runner, report.attempt);
        if granted {
            let ran = report.ran.take().map(|r| *r);
            let side = self.runner_side(runner, report.attempt, ran);
            self.provenance.push(side);
        }
        let input = match transfers::plan(&report, self.cfg.output_limit) {
            Err(why) => transfers::refused(&report, Vec::new(), &why),
            Ok(plan) if plan.files.is_empty() || !granted => ResultInput {
                attempt: report.attempt,
                outcome: report.outcome,
                metrics: report.metrics,
                log: plan.log.into(),
                outputs: Vec::new(),
            },
            Ok(plan) => {
                // Without a link the agent reports it again when it is back.
                if let Some((generation, link)) = self.link_of(runner) {
                    self.transfers.start(runner, generation, link, report, plan);
                }
                return;
            }
        };
        self.finished_one(runner.to_string(), input);
    }

    /// A result to record with the next flush. Its slot is free at once (its fold has stopped
    /// on the runner): the next cycle refills it while results are still being written, even
    /// when a recording is under way. Its grant is kept aside (`releasing`) until the result
    /// is recorded, in case it is not. Its progress stays until then too: a read between the
    /// two sees the fold running with its last status, not running with none.
    fn finished_one(&mut self, runner: String, input: ResultInput) {
        self.usage.ended(input.attempt, input.metrics.wall_ms);
        if let Some(r) = self.runners.get_mut(&runner) {
            let grant = r.grants.get(&input.attempt).cloned().or_else(|| {
                r.queued
                    .get(&input.attempt)
                    .map(|q: &super::runners::Queued| q.grant.clone())
            });
            if let Some(grant) = grant {
                self.releasing
                    .insert(input.attempt, (runner.clone(), grant));
            }
            r.release(input.attempt);
        }
        self.dirty = true;
        self.finished.push((runner, input));
    }

    /// What the master knows of `runner` for an attempt's provenance.
    fn runner_side(
        &self,
        runner: &str,
        attempt: AttemptId,
        ran: Option<crate::model::provenance::Ran>,
    ) -> crate::model::provenance::RunnerSide {
        let r = &self.runners[runner];
        let facts = r.facts.as_ref();
        let mut ran = ran;
        // An older agent says nothing of itself in its report: its hello gave its version.
        if let (None, Some(f)) = (&ran, facts) {
            ran = Some(crate::model::provenance::Ran {
                agent_version: f.agent_version.clone(),
                ..Default::default()
            });
        }
        crate::model::provenance::RunnerSide {
            attempt,
            runner: crate::model::provenance::RunnerFacts {
                name: runner.to_string(),
                cpus: facts.map(|f| f.cpus),
                memory: facts.map(|f| f.memory),
                arch: facts.map(|f| f.arch.clone()),
                os: facts.map(|f| f.os.clone()),
                hostname: facts.map(|f| f.hostname.clone()),
                docker_version: facts.and_then(|f| f.docker_version.clone()),
            },
            soft_time_limit_ms: r.spec.soft_time_limit_ms,
            hard_time_limit_ms: r.spec.hard_time_limit_ms,
            ran,
        }
    }

    /// A transfer ended: its result is applied with the next flush (none when its link died).
    pub(super) fn on_transfer_done(&mut self, done: transfers::Done) {
        self.transfers.finished(done.attempt, done.generation);
        if let Some(input) = done.input {
            self.finished_one(done.runner, input);
        }
    }

    /// Starts recording the reports received so far (one transaction, off the loop) unless a
    /// recording is already under way; what arrives meanwhile waits for the next one. The
    /// slots of the finished attempts were freed when they arrived (`finished_one`). Results are acked
    /// only once recorded (`on_applied`): an agent forgets an attempt only after its result is
    /// on disk here.
    /// Starts alone wait up to [`STARTS_WAIT`] for results to share their transaction.
    pub(super) fn flush(&mut self) {
        if self.applying.is_some() || (self.started.is_empty() && self.finished.is_empty()) {
            return;
        }
        if self.finished.is_empty() && self.starts_due().is_some_and(|at| at > Instant::now()) {
            return;
        }
        self.starts_since = None;
        let started = std::mem::take(&mut self.started);
        let provenance = std::mem::take(&mut self.provenance);
        let (runners, inputs): (Vec<String>, Vec<ResultInput>) =
            std::mem::take(&mut self.finished).into_iter().unzip();
        let (store, done) = (self.store.clone(), self.applied_tx.clone());
        self.applying = Some(Instant::now());
        tokio::spawn(async move {
            let results = apply(&store, started, &inputs, provenance).await;
            let _ = done.send(Applied {
                runners,
                inputs,
                results,
            });
        });
    }

    /// When the starts waiting alone are recorded (None: none wait).
    pub(super) fn starts_due(&self) -> Option<Instant> {
        self.starts_since.map(|since| since + STARTS_WAIT)
    }

    /// A recording ended: acks what was recorded, applies the out-of-memory policy, and
    /// starts the next recording if reports are waiting.
    pub(super) async fn on_applied(&mut self, applied: Applied) -> anyhow::Result<()> {
        if let Some(since) = self.applying.take() {
            tracing::debug!(
                target: "datarun::timing",
                "flush_ms={:.3} results={}",
                since.elapsed().as_secs_f64() * 1000.0,
                applied.inputs.len()
            );
        }
        let Applied {
            runners,
            inputs,
            results,
        } = applied;
        let results = results?;
        // Staged files the store did not move into place (small ones, duplicates) go now.
        for i in &inputs {
            i.log.discard();
            i.outputs.iter().for_each(|(_, o)| o.discard());
        }
        for ((runner, input), result) in runners.iter().zip(&inputs).zip(results) {
            let attempt = input.attempt;
            // Recorded (or refused): the store says what the fold is now.
            self.drop_progress(attempt);
            let released = self.releasing.remove(&attempt);
            let Some(result) = result else {
                // Not recorded: the agent reports it again on its next hello, which must find
                // the attempt still out on the runner.
                if let Some((name, grant)) = released {
                    if let Some(r) = self.runners.get_mut(&name) {
                        r.grants.insert(attempt, grant);
                    }
                }
                continue;
            };
            if let RecordResult::Recorded { fold, state } = &result {
                tracing::info!(
                    target: "datarun::fold",
                    fold = %fold, attempt = %attempt, runner = %runner,
                    outcome = %input.outcome.kind(), state = %state.as_str(),
                    "ended"
                );
            }
            match result {
                RecordResult::Superseded { fold } => {
                    tracing::warn!(
                        "fold {fold}: late result of attempt {attempt} from {runner} discarded"
                    )
                }
                RecordResult::Unknown => {
                    tracing::warn!("runner {runner} reported unknown attempt {attempt}")
                }
                RecordResult::Recorded {
                    fold,
                    state: crate::model::FoldState::Held,
                } if input.outcome == crate::model::Outcome::OutOfMemory => {
                    if let Err(e) = self.release_oom(fold).await {
                        tracing::error!("fold {fold}: the out-of-memory policy failed: {e}");
                    }
                }
                _ => {}
            }
            self.send(runner, ToAgent::Ack { attempt });
            self.dirty = true;
        }
        if !inputs.is_empty() {
            // Recorded (or found superseded by a hold or remove): their ends can be settled.
            self.shared.workflow.fold_stopped();
        }
        self.flush();
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

/// Reports recorded off the loop, back to it (`on_applied`).
pub(super) struct Applied {
    runners: Vec<String>,
    inputs: Vec<ResultInput>,
    results: anyhow::Result<Vec<Option<RecordResult>>>,
}

/// Results recorded per transaction, at most: a flush of many results goes to the writer as
/// several transactions queued together, so that an assignment commit (urgent) waits for one
/// of them, not for all (`Store::apply_reports_chunked`).
const FLUSH_CHUNK: usize = 64;

/// Records results: in transactions of [`FLUSH_CHUNK`]; the results of a transaction that
/// failed one by one; and one that still cannot be recorded (its log or an output cannot be
/// stored) as an error of its attempt, so that its fold moves on and the agent can forget it.
/// None: not even that could be recorded (the database itself fails); it is not acked.
async fn apply(
    store: &Store,
    started: Vec<AttemptId>,
    inputs: &[ResultInput],
    provenance: Vec<crate::model::provenance::RunnerSide>,
) -> anyhow::Result<Vec<Option<RecordResult>>> {
    // The provenance goes in the results' transaction: whoever sees a fold end can read it.
    let chunks = store
        .apply_reports_chunked(started, inputs.to_vec(), provenance.clone(), FLUSH_CHUNK)
        .await;
    let mut out = Vec::with_capacity(inputs.len());
    let mut from = 0;
    for chunk in chunks {
        let n = chunk.results;
        let part = &inputs[from..from + n];
        match chunk.answer {
            Ok(results) => out.extend(results.into_iter().map(Some)),
            Err(StoreError::Closed) => anyhow::bail!("the store has shut down"),
            Err(e) => {
                tracing::warn!(
                    "recording {} starts and {n} results in one transaction failed ({e}); recording the starts again and the results one by one",
                    chunk.started.len()
                );
                // Only this chunk's own starts: the other chunks' went in with them.
                let started = chunk.started;
                let sides = provenance
                    .iter()
                    .filter(|p| part.iter().any(|i| i.attempt == p.attempt))
                    .cloned()
                    .collect();
                out.extend(one_by_one(store, started, part, sides).await);
            }
        }
        from += n;
    }
    Ok(out)
}

/// Records results one transaction each (after their batch failed).
async fn one_by_one(
    store: &Store,
    started: Vec<AttemptId>,
    inputs: &[ResultInput],
    provenance: Vec<crate::model::provenance::RunnerSide>,
) -> Vec<Option<RecordResult>> {
    if !started.is_empty() {
        if let Err(e) = store.apply_reports(started, Vec::new()).await {
            tracing::warn!("cannot mark attempts started: {e}");
        }
    }
    if let Err(e) = store.record_provenance(provenance).await {
        tracing::warn!("cannot record provenance: {e}");
    }
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let why = match store.record_result(input.clone()).await {
            Ok(result) => {
                out.push(Some(result));
                continue;
            }
            Err(e) => e,
        };
        tracing::error!("attempt {}: cannot record its result: {why}", input.attempt);
        let error = ResultInput {
            attempt: input.attempt,
            outcome: crate::model::Outcome::Error {
                message: format!("the master could not record this result: {why}"),
            },
            metrics: input.metrics.clone(),
            log: BlobData::default(),
            outputs: Vec::new(),
        };
        match store.record_result(error).await {
            Ok(result) => out.push(Some(result)),
            Err(e) => {
                tracing::error!(
                    "attempt {}: cannot record even an error for it: {e}",
                    input.attempt
                );
                out.push(None);
            }
        }
    }
    out
}

//! The master loop: owns the runners' connections and grants, runs matching cycles, commits
//! assignments before telling any agent, and records results exactly once. The REST API talks
//! to it through a `MasterHandle` (wake-ups, cancels, and a read-only view for status pages).

mod reload;
mod runners;

pub use reload::ReloadReport;
pub use runners::RunnerStatus;

use crate::inventory::{ExecutorKind, Inventory, Transport};
use crate::model::{AttemptId, FoldSpec, Progress};
use crate::protocol::{self, FromAgent, Grant, RunAttempt, ToAgent, PROTOCOL_VERSION};
use crate::scheduler::{self, PendingFold, RunnerView, Snapshot};
use crate::store::{CancelTarget, NewAttempt, RecordResult, ResultInput, Store};
use crate::transport::{local, LinkEvent};
use runners::RunnerState;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

pub struct MasterConfig {
    pub data_dir: PathBuf,
    pub inventory: Inventory,
    /// The program run as `agent --stdio` for local runners (the datarun binary itself).
    pub agent_exe: PathBuf,
    pub log_limit: u64,
    pub output_limit: u64,
    /// A runner silent for longer than this loses its attempts (they are requeued).
    pub lease: Duration,
    /// Release folds held for running out of memory with a larger grant.
    pub oom_policy: Option<crate::maintenance::config::OomPolicy>,
}

/// What the API may read without asking the loop.
#[derive(Default)]
pub struct MasterView {
    pub runners: Vec<RunnerStatus>,
    pub views: Vec<RunnerView>,
    pub progress: HashMap<AttemptId, Progress>,
    pub queue_priority: BTreeMap<String, i64>,
    /// The last rejected edit of the inventory file, while the previous inventory is in force.
    pub inventory_error: Option<String>,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, String>>;

enum Command {
    Cancel(CancelTarget),
    Reload(Reply<ReloadReport>),
    Ping,
    Drain {
        runner: String,
        drained: bool,
        reply: Reply<()>,
    },
}

struct Shared {
    view: RwLock<MasterView>,
    wake: Notify,
    commands: mpsc::UnboundedSender<Command>,
}

/// The API's handle on the master.
#[derive(Clone)]
pub struct MasterHandle {
    shared: Arc<Shared>,
}

impl MasterHandle {
    /// Something changed (a submit, a release): run a matching cycle soon.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Kills an attempt that is out on a runner (after a hold or remove was committed).
    pub fn cancel(&self, target: CancelTarget) {
        let _ = self.shared.commands.send(Command::Cancel(target));
    }

    pub fn runners(&self) -> Vec<RunnerStatus> {
        self.shared.view.read().expect("view lock").runners.clone()
    }

    pub fn queue_priority(&self) -> BTreeMap<String, i64> {
        self.shared
            .view
            .read()
            .expect("view lock")
            .queue_priority
            .clone()
    }

    pub fn inventory_error(&self) -> Option<String> {
        self.shared
            .view
            .read()
            .expect("view lock")
            .inventory_error
            .clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .commands
            .send(make(tx))
            .map_err(|_| "the master loop has stopped".to_string())?;
        rx.await
            .map_err(|_| "the master loop has stopped".to_string())?
    }

    /// Pings every connected agent (a silent one loses its lease) and returns the runners' states.
    pub fn health_check(&self) -> Vec<RunnerStatus> {
        let _ = self.shared.commands.send(Command::Ping);
        self.runners()
    }

    /// Re-reads the inventory file now (as SIGHUP does).
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        self.ask(Command::Reload).await
    }

    /// Drains (no new folds; running ones finish) or resumes a runner.
    pub async fn drain(&self, runner: &str, drained: bool) -> Result<(), String> {
        let runner = runner.to_string();
        self.ask(|reply| Command::Drain {
            runner,
            drained,
            reply,
        })
        .await
    }

    pub fn progress(&self, attempt: AttemptId) -> Option<Progress> {
        self.shared
            .view
            .read()
            .expect("view lock")
            .progress
            .get(&attempt)
            .cloned()
    }

    /// Why a fold is not running, against the runners as they are now.
    pub fn explain(&self, fold: &PendingFold) -> scheduler::Explanation {
        scheduler::explain(fold, &self.shared.view.read().expect("view lock").views)
    }

    /// `Some(reason)` when no runner in the inventory could ever run a fold of this spec.
    pub fn unmatchable(&self, spec: &FoldSpec) -> Option<String> {
        let view = self.shared.view.read().expect("view lock");
        // Capacity check: whether a runner is connected right now does not matter here.
        let capacity: Vec<RunnerView> = view
            .views
            .iter()
            .map(|v| RunnerView {
                unavailable: None,
                ..v.clone()
            })
            .collect();
        scheduler::unmatchable(&pending_of(0, "", spec, 0), &capacity)
            .or_else(|| image_unmatchable(spec.image.as_deref(), &capacity))
    }
}

/// Whether any runner could run a fold naming `image` (or none): docker runners run the images
/// their allowlist names ("*" = any; the first entry is the default for folds naming none);
/// process runners take no images. The agent enforces the same rule on its own runner.
fn image_unmatchable(image: Option<&str>, runners: &[RunnerView]) -> Option<String> {
    let allows = |list: &Vec<String>| match image {
        Some(img) => list.iter().any(|i| i == img || i == "*"),
        None => list.first().is_some_and(|i| i != "*"),
    };
    let ok = runners.iter().any(|r| match (&r.images, image) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(list), _) => allows(list),
    });
    if ok || runners.is_empty() {
        return None;
    }
    let lists: Vec<String> = runners
        .iter()
        .filter_map(|r| {
            r.images
                .as_ref()
                .map(|l| format!("{}: {}", r.name, l.join(", ")))
        })
        .collect();
    let allowed = if lists.is_empty() {
        "there are no docker runners".to_string()
    } else {
        format!("docker runners allow {}", lists.join("; "))
    };
    Some(match image {
        Some(img) => format!("image: no runner allows image {img:?} ({allowed})"),
        None => format!("image: every runner runs containers and none has a default image; name one with --image ({allowed})"),
    })
}

/// The scheduler's view of a fold spec.
pub fn pending_of(id: i64, owner: &str, spec: &FoldSpec, submitted_at: i64) -> PendingFold {
    PendingFold {
        id,
        queue: spec.queue.clone(),
        owner: owner.to_string(),
        priority: spec.priority.0,
        submitted_at,
        millicpus: spec.resources.millicpus(),
        memory: spec.resources.memory,
        gpus: spec.resources.gpus,
        hard_limit_ms: spec.hard_time_limit,
        image: spec.image.clone(),
    }
}

pub struct Master {
    cfg: MasterConfig,
    store: Store,
    runners: BTreeMap<String, RunnerState>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<LinkEvent>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    generation: u64,
    progress: HashMap<AttemptId, Progress>,
    dirty: bool,
    /// Reports received this loop turn, applied in one transaction by `flush`.
    started: Vec<AttemptId>,
    finished: Vec<(String, ResultInput)>,
    inventory_stamp: reload::Stamp,
    inventory_error: Option<String>,
}

impl Master {
    /// Builds the master and reloads the attempts that were out when it last stopped; they stay
    /// counted against their runners until each agent says what became of them.
    pub async fn new(cfg: MasterConfig, store: Store) -> anyhow::Result<(Master, MasterHandle)> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            view: RwLock::new(MasterView::default()),
            wake: Notify::new(),
            commands: cmd_tx,
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut runners: BTreeMap<String, RunnerState> = cfg
            .inventory
            .runners
            .iter()
            .map(|r| (r.name.clone(), RunnerState::new(r.clone())))
            .collect();
        for r in &cfg.inventory.runners {
            let spec = serde_json::to_string(r).expect("runner spec serializes");
            store
                .upsert_runner(r.name.clone(), spec, "connecting".into(), None)
                .await?;
        }
        for name in store.drained_runners().await? {
            if let Some(r) = runners.get_mut(&name) {
                r.drained = true;
            }
        }
        for a in store.active_attempts().await? {
            match runners.get_mut(&a.runner) {
                Some(r) => {
                    r.grants.insert(a.attempt, a.grant);
                }
                None => {
                    let reason = format!("runner {} is no longer in the inventory", a.runner);
                    store.mark_lost(a.attempt, reason).await?;
                }
            }
        }
        let cfg_stamp = cfg.inventory.source.as_deref().and_then(reload::stamp);
        let master = Master {
            cfg,
            store,
            runners,
            shared: shared.clone(),
            commands: cmd_rx,
            events_tx,
            events,
            generation: 0,
            progress: HashMap::new(),
            dirty: true,
            started: Vec::new(),
            finished: Vec::new(),
            inventory_stamp: cfg_stamp,
            inventory_error: None,
        };
        master.publish();
        Ok((master, MasterHandle { shared }))
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let shared = self.shared.clone();
        loop {
            tokio::select! {
                Some(ev) = self.events.recv() => self.on_link_event(ev).await?,
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await?,
                _ = shared.wake.notified() => self.dirty = true,
                _ = tick.tick() => self.housekeeping().await?,
            }
            // Drain whatever else is ready before one matching cycle.
            while let Ok(ev) = self.events.try_recv() {
                self.on_link_event(ev).await?;
            }
            let t0 = Instant::now();
            self.flush().await?;
            let t1 = Instant::now();
            if self.dirty {
                self.dirty = false;
                self.cycle().await?;
            }
            tracing::trace!(target: "datarun::timing", "flush {:?} cycle {:?}", t1 - t0, t1.elapsed());
            self.publish();
        }
    }

    fn publish(&self) {
        let mut view = self.shared.view.write().expect("view lock");
        view.runners = self.runners.values().map(RunnerState::status).collect();
        view.views = self.runners.values().map(RunnerState::view).collect();
        view.progress = self.progress.clone();
        view.queue_priority = self.cfg.inventory.queue_priorities();
        view.inventory_error = self.inventory_error.clone();
    }

    async fn on_command(&mut self, cmd: Command) -> anyhow::Result<()> {
        match cmd {
            Command::Ping => {
                self.generation += 1;
                for r in self.runners.values() {
                    if let Some(link) = &r.link {
                        link.send(ToAgent::Ping {
                            seq: self.generation,
                        });
                    }
                }
            }
            Command::Reload(reply) => {
                let _ = reply.send(self.reload().await?);
            }
            Command::Drain {
                runner,
                drained,
                reply,
            } => {
                let _ = reply.send(self.set_drained(&runner, drained).await?);
            }
            Command::Cancel(target) => {
                if let Some(link) = self
                    .runners
                    .get(&target.runner)
                    .and_then(|r| r.link.as_ref())
                {
                    link.send(ToAgent::Cancel {
                        attempt: target.attempt,
                    });
                }
                // A runner that is not connected gets the cancel when it reconnects (see hello).
            }
        }
        Ok(())
    }

    /// Connects runners that are due, and ends the attempts of runners silent past their lease.
    async fn housekeeping(&mut self) -> anyhow::Result<()> {
        self.reload_if_edited().await?;
        self.retire_drained();
        let now = Instant::now();
        let mut lost = Vec::new();
        for r in self.runners.values_mut() {
            if r.link.is_none()
                && r.spec.transport == Transport::Local
                && r.reconnect_at.is_some_and(|t| t <= now)
            {
                self.generation += 1;
                let state_dir = self.cfg.data_dir.join("agents").join(&r.spec.name);
                match local::connect(
                    &self.cfg.agent_exe,
                    &state_dir,
                    &r.spec,
                    self.generation,
                    self.events_tx.clone(),
                ) {
                    Ok(link) => {
                        link.send(ToAgent::Hello {
                            version: PROTOCOL_VERSION,
                            runner: r.spec.name.clone(),
                        });
                        r.link = Some(link);
                        r.reconnect_at = None;
                    }
                    Err(e) => {
                        r.last_error = Some(format!(
                            "cannot start the agent {}: {e}",
                            self.cfg.agent_exe.display()
                        ));
                        r.reconnect_at = Some(now + Duration::from_secs(5));
                    }
                }
            }
            if !r.ready && !r.grants.is_empty() && now.duration_since(r.last_seen) > self.cfg.lease
            {
                let reason = format!(
                    "runner {} was unreachable for longer than its lease ({}s)",
                    r.spec.name,
                    self.cfg.lease.as_secs()
                );
                lost.extend(r.grants.keys().map(|a| (*a, reason.clone())));
                r.grants.clear();
            }
        }
        for (attempt, reason) in lost {
            self.progress.remove(&attempt);
            self.store.mark_lost(attempt, reason).await?;
            self.dirty = true;
        }
        Ok(())
    }

    async fn on_link_event(&mut self, ev: LinkEvent) -> anyhow::Result<()> {
        match ev {
            LinkEvent::Closed {
                runner,
                generation,
                reason,
            } => {
                if let Some(r) = self.runners.get_mut(&runner) {
                    if r.link.as_ref().map(|l| l.generation) == Some(generation) {
                        tracing::warn!("runner {runner}: connection closed: {reason}");
                        r.link = None;
                        r.ready = false;
                        r.last_error = Some(reason.clone());
                        r.last_seen = Instant::now();
                        r.reconnect_at = Some(Instant::now() + Duration::from_secs(1));
                        let spec = serde_json::to_string(&r.spec).expect("runner spec serializes");
                        self.store
                            .upsert_runner(runner, spec, format!("disconnected: {reason}"), None)
                            .await?;
                    }
                }
                Ok(())
            }
            LinkEvent::Message {
                runner,
                generation,
                msg,
            } => {
                let current = self
                    .runners
                    .get(&runner)
                    .and_then(|r| r.link.as_ref())
                    .map(|l| l.generation);
                if current != Some(generation) {
                    return Ok(());
                }
                if let Some(r) = self.runners.get_mut(&runner) {
                    r.last_seen = Instant::now();
                }
                self.on_message(&runner, msg).await
            }
        }
    }

    fn send(&self, runner: &str, msg: ToAgent) {
        if let Some(link) = self.runners.get(runner).and_then(|r| r.link.as_ref()) {
            link.send(msg);
        }
    }

    async fn on_message(&mut self, runner: &str, msg: FromAgent) -> anyhow::Result<()> {
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
                self.on_hello(runner, facts, running, finished).await?;
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
        let r = self.runners.get_mut(runner).expect("known runner");
        for attempt in &lost {
            r.grants.remove(attempt);
        }
        r.ready = true;
        r.last_error = None;
        let spec = serde_json::to_string(&r.spec).expect("runner spec serializes");
        let facts_json = serde_json::to_string(&facts).expect("facts serialize");
        r.facts = Some(facts);
        self.store
            .upsert_runner(runner.to_string(), spec, "ready".into(), Some(facts_json))
            .await?;
        for attempt in lost {
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
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.started.is_empty() && self.finished.is_empty() {
            return Ok(());
        }
        let started = std::mem::take(&mut self.started);
        let (runners, inputs): (Vec<String>, Vec<ResultInput>) =
            std::mem::take(&mut self.finished).into_iter().unzip();
        let attempts: Vec<AttemptId> = inputs.iter().map(|i| i.attempt).collect();
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
                r.grants.remove(&attempt);
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

    /// One matching cycle: snapshot, match, commit, then tell the agents.
    async fn cycle(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.runners.keys().cloned().collect();
        let views: Vec<RunnerView> = self.runners.values().map(RunnerState::view).collect();
        if !views
            .iter()
            .any(|v| v.unavailable.is_none() && v.slots_free > 0)
        {
            return Ok(());
        }
        let folds = self.store.pending_folds().await?;
        if folds.is_empty() {
            return Ok(());
        }
        let snapshot = Snapshot {
            folds,
            runners: views,
            queue_priority: self.cfg.inventory.queue_priorities(),
        };
        let plan = scheduler::schedule(&snapshot);
        if plan.assignments.is_empty() {
            return Ok(());
        }
        let by_id: HashMap<i64, &PendingFold> = snapshot.folds.iter().map(|f| (f.id, f)).collect();
        let new: Vec<NewAttempt> = plan
            .assignments
            .iter()
            .map(|a| {
                let f = by_id[&a.fold];
                NewAttempt {
                    fold: a.fold,
                    runner: names[a.runner].clone(),
                    grant: Grant {
                        millicpus: f.millicpus,
                        memory: f.memory,
                        gpus: a.gpus.clone(),
                    },
                }
            })
            .collect();
        for (attempt, n, spec) in self.store.assign(new).await? {
            let run = self.run_message(attempt, &n, &spec, &self.runners[&n.runner]);
            let r = self
                .runners
                .get_mut(&n.runner)
                .expect("assigned to a known runner");
            r.grants.insert(attempt, n.grant.clone());
            if let Some(link) = &r.link {
                link.send(ToAgent::Run(run));
            }
        }
        Ok(())
    }

    fn run_message(
        &self,
        attempt: AttemptId,
        n: &NewAttempt,
        spec: &FoldSpec,
        r: &RunnerState,
    ) -> RunAttempt {
        let hard = match (spec.hard_time_limit, r.spec.hard_time_limit_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let soft = spec
            .soft_time_limit
            .or(r.spec.soft_time_limit_ms)
            .filter(|s| hard.is_none_or(|h| *s < h));
        RunAttempt {
            attempt,
            fold: n.fold,
            command: spec.command.clone(),
            // A docker runner runs its default image (the first it allows) for folds naming none.
            image: spec.image.clone().or_else(|| match r.spec.executor {
                ExecutorKind::Docker => r.spec.images.first().filter(|i| *i != "*").cloned(),
                ExecutorKind::Process => None,
            }),
            env: spec.env.clone(),
            inputs: spec.inputs.clone(),
            grant: n.grant.clone(),
            soft_limit_ms: soft,
            hard_limit_ms: hard,
            log_limit: self.cfg.log_limit,
            output_limit: self.cfg.output_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, images: Option<&[&str]>) -> RunnerView {
        RunnerView {
            name: name.into(),
            queues: vec!["*".into()],
            slots_total: 1,
            slots_free: 1,
            millicpus_total: 1000,
            millicpus_free: 1000,
            memory_total: 1 << 30,
            memory_free: 1 << 30,
            gpus_total: vec![],
            gpus_free: vec![],
            hard_limit_ms: None,
            unavailable: None,
            images: images.map(|l| l.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn images_need_a_runner_that_allows_them() {
        let docker = view("d", Some(&["datarun/a:1", "datarun/b:1"]));
        let any = view("any", Some(&["*"]));
        let process = view("p", None);
        assert_eq!(
            image_unmatchable(Some("datarun/b:1"), &[process.clone(), docker.clone()]),
            None
        );
        let e = image_unmatchable(Some("evil:1"), &[process.clone(), docker.clone()]).unwrap();
        assert!(
            e.contains("evil:1") && e.contains("d: datarun/a:1, datarun/b:1"),
            "{e}"
        );
        assert_eq!(
            image_unmatchable(Some("evil:1"), std::slice::from_ref(&any)),
            None,
            "\"*\" allows any image"
        );
        assert_eq!(
            image_unmatchable(None, std::slice::from_ref(&docker)),
            None,
            "the first entry is the default"
        );
        assert!(image_unmatchable(None, &[any]).unwrap().contains("--image"));
        assert!(
            image_unmatchable(Some("x:1"), std::slice::from_ref(&process))
                .unwrap()
                .contains("no docker runners")
        );
    }
}

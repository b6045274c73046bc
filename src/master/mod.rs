//! The master loop: owns the runners' connections and grants, runs matching cycles, commits
//! assignments before telling any agent, and records results exactly once. The REST API talks
//! to it through a `MasterHandle` (wake-ups, cancels, and a read-only view for status pages).

mod fair;
mod handle;
mod links;
mod reload;
mod reports;
mod runners;
mod transfers;

pub use fair::OwnerShare;
use handle::{Command, Shared};
pub use handle::{MasterHandle, MasterView};
pub use reload::ReloadReport;
pub use runners::RunnerStatus;

use crate::inventory::{ExecutorKind, Inventory, Transport};
use crate::model::{AttemptId, FoldId, FoldSpec, Progress};
use crate::protocol::{self, FromAgent, Grant, RunAttempt, ToAgent, PROTOCOL_VERSION};
use crate::scheduler::{self, PendingFold, RunnerView, Snapshot};
use crate::store::{CancelTarget, NewAttempt, RecordResult, ResultInput, Store};
use crate::transport::{local, LinkEvent};
use runners::RunnerState;
use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// How to reach ssh runners (the known_hosts file is checked strictly).
    pub ssh: crate::provision::SshOptions,
    /// Release folds held for running out of memory with a larger grant.
    pub oom_policy: Option<crate::maintenance::config::OomPolicy>,
    /// Fair share between owners with this usage half-life (None: submit order).
    pub fair_share: Option<Duration>,
    /// At most this many folds of one owner run at once.
    pub owner_cap: Option<u32>,
}

/// Keeps, of each owner's idle folds, only the first ones in line that its cap still allows
/// (`cap` running at once, counting those running now).
fn within_owner_cap(
    folds: Vec<PendingFold>,
    cap: u32,
    running: &BTreeMap<&str, usize>,
    queue_priority: &BTreeMap<String, i64>,
    fair: Option<&scheduler::FairShare>,
) -> Vec<PendingFold> {
    let order = scheduler::line_order(&folds, queue_priority, fair);
    let mut room: HashMap<&str, usize> = HashMap::new();
    let mut keep = vec![false; folds.len()];
    for i in order {
        let owner = folds[i].owner.as_str();
        let left = room.entry(owner).or_insert_with(|| {
            (cap as usize).saturating_sub(running.get(owner).copied().unwrap_or(0))
        });
        if *left > 0 {
            *left -= 1;
            keep[i] = true;
        }
    }
    folds
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect()
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
        requirements: spec.requirements.clone(),
        rank: spec.rank.clone(),
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
    usage: fair::Usage,
    /// Files being pulled from agents (results' outputs) or read for them (inputs).
    transfers: transfers::Transfers,
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
        let active = store.active_attempts().await?;
        for a in active.clone() {
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
        let mut usage = fair::Usage::new(cfg.fair_share.unwrap_or(Duration::from_secs(3600)));
        for a in active.iter().filter(|a| runners.contains_key(&a.runner)) {
            usage.started(a.attempt, &a.owner);
        }
        let mut master = Master {
            cfg,
            store: store.clone(),
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
            usage,
            transfers: transfers::Transfers::new(store.clone()),
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
                Some(done) = self.transfers.done_rx.recv() => self.on_transfer_done(done),
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

    fn publish(&mut self) {
        let mut view = self.shared.view.write().expect("view lock");
        view.runners = self.runners.values().map(RunnerState::status).collect();
        view.views = self.runners.values().map(RunnerState::view).collect();
        view.progress = self.progress.clone();
        view.queue_priority = self.cfg.inventory.queue_priorities();
        view.inventory_error = self.inventory_error.clone();
        view.owners = self.usage.owners();
        view.fair_share = self.cfg.fair_share.is_some();
        view.owner_cap = self.cfg.owner_cap;
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

    async fn housekeeping(&mut self) -> anyhow::Result<()> {
        self.reload_if_edited().await?;
        self.retire_drained();
        self.tend_links().await
    }

    async fn on_link_event(&mut self, ev: LinkEvent) -> anyhow::Result<()> {
        match ev {
            LinkEvent::Closed {
                runner,
                generation,
                reason,
            } => self.on_closed(runner, generation, reason).await,
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
        let mut folds = self.store.pending_folds().await?;
        // A fold whose given-up attempt is still being cancelled on a runner waits until it is
        // gone: an attempt never runs beside its fold's retry.
        let cancelling: HashSet<FoldId> = self
            .runners
            .values()
            .flat_map(|r| r.cancelling.values().filter_map(|c| c.fold))
            .collect();
        if !cancelling.is_empty() {
            folds.retain(|f| !cancelling.contains(&f.id));
        }
        if folds.is_empty() {
            return Ok(());
        }
        let queue_priority = self.cfg.inventory.queue_priorities();
        let fair_share = self.cfg.fair_share.map(|_| self.usage.share());
        let folds = match self.cfg.owner_cap {
            Some(cap) => within_owner_cap(
                folds,
                cap,
                &self.usage.running(),
                &queue_priority,
                fair_share.as_ref(),
            ),
            None => folds,
        };
        let snapshot = Snapshot {
            folds,
            runners: views,
            queue_priority,
            fair_share,
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
            self.usage.started(attempt, &by_id[&n.fold].owner);
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

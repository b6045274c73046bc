//! The master loop: owns the runners' connections and grants, runs matching cycles, commits
//! assignments before telling any agent, and records results exactly once. The REST API talks
//! to it through a `MasterHandle` (wake-ups, cancels, and a read-only view for status pages).

mod cycle;
mod fair;
mod handle;
mod links;
mod publish;
mod reload;
mod reports;
pub mod role;
mod runners;
mod transfers;

pub use fair::OwnerShare;
use handle::{Command, Shared};
pub use handle::{MasterHandle, MasterView};
pub use reload::ReloadReport;
pub use runners::RunnerStatus;
pub use transfers::LiveChunk;

use crate::inventory::{Inventory, Transport};
use crate::model::{AttemptId, FoldId, FoldSpec, Progress};
use crate::protocol::{self, FromAgent, Grant, ToAgent, PROTOCOL_VERSION};
use crate::scheduler::{self, IdleIndex, OwnerCap, PendingFold, RunnerView};
use crate::store::{CancelTarget, RecordResult, ResultInput, Store};
use crate::transport::{local, LinkEvent};
use cycle::{committed, Assigning};
use runners::RunnerState;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The API's view of the runners is refreshed at most every this much per runner (a
/// copy of every runner's status costs about a microsecond each): a few runners are
/// published on every loop turn, 10,000 at most every 200 ms.
const PUBLISH_PER_RUNNER: Duration = Duration::from_micros(20);
const PUBLISH_MAX: Duration = Duration::from_millis(200);
/// How long attempts' starts may wait alone for results to share their transaction and its
/// fsync (a stream of trivial folds spent half of its flushes on starts alone). A start is
/// recorded up to this late; nothing waits on it being durable (a lost agent's hello says
/// again what runs).
const STARTS_WAIT: Duration = Duration::from_millis(20);

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
    /// When the first of `started` arrived (None: none wait).
    starts_since: Option<Instant>,
    finished: Vec<(String, ResultInput)>,
    /// What the master adds to the provenance of the attempts reported finished, recorded
    /// by `flush` before (or with) their results.
    provenance: Vec<crate::model::provenance::RunnerSide>,
    /// When the recording under way (see `flush`) started, if one is.
    applying: Option<Instant>,
    applied_tx: mpsc::UnboundedSender<reports::Applied>,
    applied_rx: mpsc::UnboundedReceiver<reports::Applied>,
    /// Attempts whose results are being recorded: their slots are free already, and
    /// this is where their grants go back if the store could not take the result.
    releasing: HashMap<AttemptId, (String, Grant)>,
    inventory_stamp: reload::Stamp,
    inventory_error: Option<String>,
    usage: fair::Usage,
    /// Files being pulled from agents (results' outputs) or read for them (inputs).
    transfers: transfers::Transfers,
    /// The idle folds (shared with the API for `analyze`), and the newest store change it
    /// reflects.
    index: Arc<RwLock<IdleIndex>>,
    seq: i64,
    /// What the API's view last got (see `publish`).
    published: publish::Published,
    /// Idle folds kept out of the index while an attempt of theirs is being cancelled.
    parked: HashMap<FoldId, PendingFold>,
    /// The assignments being committed, if any (see `cycle`).
    assigning: Option<Assigning>,
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
            index: Arc::new(RwLock::new(IdleIndex::new(
                cfg.inventory.queue_priorities(),
            ))),
            capacity_cache: Default::default(),
            // It catches up at once with what ended while no master ran.
            workflow: crate::workflow::Workflow::start(store.clone()),
            standby: false,
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut runners: BTreeMap<String, RunnerState> = cfg
            .inventory
            .runners
            .iter()
            .map(|r| (r.name.clone(), RunnerState::new(r.clone())))
            .collect();
        let rows = cfg
            .inventory
            .runners
            .iter()
            .map(|r| {
                let spec = serde_json::to_string(r).expect("runner spec serializes");
                (r.name.clone(), spec, "connecting".to_string(), None)
            })
            .collect();
        store.upsert_runners(rows).await?;
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
        // The idle index, loaded once; from here on it follows the store's changes.
        let (idle, seq) = store.pending_folds().await?;
        let index = shared.index.clone();
        {
            let mut ix = index.write().expect("index lock");
            for f in idle {
                ix.insert(f);
            }
        }
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let mut master = Master {
            applying: None,
            applied_tx,
            applied_rx,
            releasing: HashMap::new(),
            index,
            seq,
            published: Default::default(),
            parked: HashMap::new(),
            assigning: None,
            cfg,
            // The master's jobs keep their order and take turns with the API's (`Store`).
            store: store.for_master(),
            runners,
            shared: shared.clone(),
            commands: cmd_rx,
            events_tx,
            events,
            generation: 0,
            progress: HashMap::new(),
            dirty: true,
            started: Vec::new(),
            starts_since: None,
            finished: Vec::new(),
            provenance: Vec::new(),
            inventory_stamp: cfg_stamp,
            inventory_error: None,
            usage,
            transfers: transfers::Transfers::new(store.for_master()),
        };
        master.publish();
        Ok((master, MasterHandle { shared }))
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shared = self.shared.clone();
        let mut published = Instant::now();
        // Something changed since the view was last published.
        let mut stale = false;
        loop {
            let every = (PUBLISH_PER_RUNNER * self.runners.len() as u32).min(PUBLISH_MAX);
            let publish_at = tokio::time::Instant::from_std(published + every);
            let starts_wait = self.applying.is_none() && self.starts_due().is_some();
            let starts_due =
                tokio::time::Instant::from_std(self.starts_due().unwrap_or_else(Instant::now));
            let timer = tokio::select! {
                Some(ev) = self.events.recv() => { self.on_link_event(ev).await?; false }
                // Commands and housekeeping (cancels, drains, reloads, leases) wait for the
                // assignments being committed, so that they see the attempts made.
                Some(cmd) = self.commands.recv(), if self.assigning.is_none() => {
                    self.on_command(cmd).await?; false
                }
                _ = shared.wake.notified() => { self.dirty = true; false }
                Some(done) = self.transfers.done_rx.recv() => { self.on_transfer_done(done); false }
                Some(applied) = self.applied_rx.recv() => { self.on_applied(applied).await?; false }
                result = committed(&mut self.assigning) => { self.on_committed(result)?; false }
                _ = tick.tick(), if self.assigning.is_none() => { self.housekeeping().await?; false }
                _ = tokio::time::sleep_until(publish_at), if stale => true,
                // Starts that waited alone for results are recorded now (`flush`).
                _ = tokio::time::sleep_until(starts_due), if starts_wait => false,
            };
            stale |= !timer;
            // Drain whatever else is ready before one matching cycle.
            while let Ok(ev) = self.events.try_recv() {
                self.on_link_event(ev).await?;
            }
            self.flush();
            if self.dirty && self.assigning.is_none() {
                self.dirty = false;
                let t = Instant::now();
                let placed = self.cycle().await?;
                crate::metrics::get().cycle(t.elapsed(), placed);
                tracing::debug!(
                    target: "datarun::timing",
                    "cycle_ms={:.3} placed={placed}",
                    t.elapsed().as_secs_f64() * 1000.0
                );
            }
            // With thousands of runners, copying the view on every loop turn would cost more
            // than the matching (see PUBLISH_PER_RUNNER).
            if stale && published.elapsed() >= every {
                self.publish();
                published = Instant::now();
                stale = false;
            }
        }
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
                let report = self.reload().await?;
                self.publish();
                let _ = reply.send(report);
            }
            Command::Drain {
                runner,
                drained,
                reply,
            } => {
                let done = self.set_drained(&runner, drained).await?;
                self.publish();
                let _ = reply.send(done);
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
            Command::FetchLog {
                runner,
                attempt,
                offset,
                reply,
            } => {
                let link = self.runners.get(&runner).and_then(|r| r.link.as_ref());
                self.transfers
                    .logs
                    .ask(link, &runner, attempt, offset, reply);
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
}

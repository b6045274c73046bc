//! The API's side of the master: a handle for wake-ups, cancels, reloads and drains (sent to
//! the loop as commands), and a read-only view of runners and progress for status pages.

use super::*;
use crate::scheduler::RunnerView;

/// What the API may read without asking the loop.
#[derive(Default)]
pub struct MasterView {
    pub runners: Vec<RunnerStatus>,
    pub views: Vec<RunnerView>,
    pub progress: HashMap<AttemptId, Progress>,
    pub queue_priority: BTreeMap<String, i64>,
    /// The last rejected edit of the inventory file, while the previous inventory is in force.
    pub inventory_error: Option<String>,
    /// Fair share per owner.
    pub owners: Vec<super::OwnerShare>,
    /// Whether fair share orders folds within a priority band.
    pub fair_share: bool,
    /// At most this many folds of one owner run at once.
    pub owner_cap: Option<u32>,
    /// The runners as if idle and available (what the capacity check at submit asks), and a
    /// number that changes whenever they do.
    pub capacity: Arc<Vec<RunnerView>>,
    pub capacity_gen: u64,
}

/// What the capacity check of a fold depends on (a runner's requirements may read the fold's
/// owner, queue, priority, resources and image).
type CapacityKey = (
    String,
    String,
    i64,
    u32,
    u64,
    u32,
    Option<u64>,
    Option<String>,
    Option<String>,
);

/// Capacity checks already made against the current `capacity_gen`.
#[derive(Default)]
pub(super) struct CapacityCache {
    generation: u64,
    answers: HashMap<CapacityKey, Option<scheduler::Unmatchable>>,
}

/// The capacity check answers kept at most (a batch of one shape needs one).
const CAPACITY_CACHE: usize = 10_000;

pub(super) type Reply<T> = tokio::sync::oneshot::Sender<Result<T, String>>;

pub(super) enum Command {
    Cancel(CancelTarget),
    Reload(Reply<ReloadReport>),
    Ping,
    Drain {
        runner: String,
        drained: bool,
        reply: Reply<()>,
    },
    /// A chunk of a running attempt's log (`MasterHandle::live_log`).
    FetchLog {
        runner: String,
        attempt: AttemptId,
        offset: u64,
        reply: super::transfers::LogReply,
    },
}

/// How long the API waits for an agent's live log chunk.
const LIVE_LOG_WAIT: Duration = Duration::from_secs(2);

pub(super) struct Shared {
    pub(super) view: RwLock<MasterView>,
    pub(super) wake: Notify,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// The idle folds, as the loop keeps them (read here for `analyze`).
    pub(super) index: Arc<RwLock<IdleIndex>>,
    pub(super) capacity_cache: std::sync::Mutex<CapacityCache>,
    /// Settles submission folds and custom splits when folds end (told by the loop).
    pub(super) workflow: crate::workflow::Workflow,
    /// A standby's handle (`MasterHandle::standby`): no loop behind it.
    pub(super) standby: bool,
}

/// The API's handle on the master.
#[derive(Clone)]
pub struct MasterHandle {
    pub(super) shared: Arc<Shared>,
}

impl MasterHandle {
    /// The handle of a standby master (PostgreSQL), for the API's reads: no master loop
    /// behind it, so it knows no runners and no progress, commands go nowhere and its
    /// workflow settles nothing (the active master does all that).
    pub fn standby() -> MasterHandle {
        let (commands, _) = mpsc::unbounded_channel();
        MasterHandle {
            shared: Arc::new(Shared {
                view: RwLock::new(MasterView::default()),
                wake: Notify::new(),
                commands,
                index: Arc::new(RwLock::new(IdleIndex::new(BTreeMap::new()))),
                capacity_cache: Default::default(),
                workflow: crate::workflow::Workflow::idle(),
                standby: true,
            }),
        }
    }

    /// Whether this is a standby's handle (`standby`): what only the active master knows
    /// (runners, progress, why a fold waits) is not here.
    pub fn is_standby(&self) -> bool {
        self.shared.standby
    }

    /// Something changed (a submit, a release): run a matching cycle soon.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// The workflow task (settles submission folds and custom splits when folds end).
    pub fn workflow(&self) -> &crate::workflow::Workflow {
        &self.shared.workflow
    }

    /// Kills an attempt that is out on a runner (after a hold or remove was committed).
    pub fn cancel(&self, target: CancelTarget) {
        let _ = self.shared.commands.send(Command::Cancel(target));
    }

    pub fn runners(&self) -> Vec<RunnerStatus> {
        self.shared.view.read().expect("view lock").runners.clone()
    }

    pub fn owner_cap(&self) -> Option<u32> {
        self.shared.view.read().expect("view lock").owner_cap
    }

    pub fn owners(&self) -> Vec<super::OwnerShare> {
        self.shared.view.read().expect("view lock").owners.clone()
    }

    /// The fair share the scheduler orders by now, if it is on.
    pub fn fair_share(&self) -> Option<crate::scheduler::FairShare> {
        let view = self.shared.view.read().expect("view lock");
        view.fair_share.then(|| crate::scheduler::FairShare {
            usage: view
                .owners
                .iter()
                .map(|o| (o.owner.clone(), o.effective_usage))
                .collect(),
        })
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

    /// A chunk (at most 64 KiB) of the log of `attempt`, running on `runner`, from output
    /// `offset`, as its agent keeps it; None when the agent keeps no live log of it, is not
    /// connected or does not answer within a moment (an agent older than live logs).
    pub async fn live_log(
        &self,
        runner: &str,
        attempt: AttemptId,
        offset: u64,
    ) -> Option<super::LiveChunk> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let ask = Command::FetchLog {
            runner: runner.to_string(),
            attempt,
            offset,
            reply,
        };
        self.shared.commands.send(ask).ok()?;
        tokio::time::timeout(LIVE_LOG_WAIT, rx).await.ok()?.ok()?
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

    /// How many idle folds wait ahead of `fold` in line, and how many wait in all (from the
    /// loop's idle index: no scan of the queue).
    pub fn place_in_line(&self, fold: &PendingFold) -> (usize, usize) {
        let fair = self.fair_share();
        let index = self.shared.index.read().expect("index lock");
        (index.place_in_line(fold, fair.as_ref()), index.len())
    }

    /// Why a fold is not running, against the runners as they are now.
    pub fn explain(&self, fold: &PendingFold) -> scheduler::Explanation {
        scheduler::explain(fold, &self.shared.view.read().expect("view lock").views)
    }

    /// `Some` when no runner in the inventory could ever run a fold of this spec and owner
    /// (owner: runners' requirements may read it). Checked once per fold shape while the
    /// runners' capacity stays the same: a batch of 10,000 alike folds costs one check.
    pub fn unmatchable(&self, owner: &str, spec: &FoldSpec) -> Option<scheduler::Unmatchable> {
        let fold = pending_of(0, owner, spec, 0);
        let (capacity, generation) = {
            let view = self.shared.view.read().expect("view lock");
            (view.capacity.clone(), view.capacity_gen)
        };
        let key: CapacityKey = (
            fold.owner.clone(),
            fold.queue.clone(),
            fold.priority,
            fold.millicpus,
            fold.memory,
            fold.gpus,
            fold.hard_limit_ms,
            fold.image.clone(),
            fold.requirements.clone(),
        );
        {
            let mut cache = self.shared.capacity_cache.lock().expect("cache lock");
            if cache.generation != generation {
                cache.generation = generation;
                cache.answers.clear();
            }
            if let Some(answer) = cache.answers.get(&key) {
                return answer.clone();
            }
        }
        let answer = scheduler::unmatchable(&fold, &capacity);
        let mut cache = self.shared.capacity_cache.lock().expect("cache lock");
        if cache.generation == generation {
            if cache.answers.len() >= CAPACITY_CACHE {
                cache.answers.clear();
            }
            cache.answers.insert(key, answer.clone());
        }
        answer
    }
}

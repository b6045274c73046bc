//! The submission layer's domain logic, below the HTTP handlers: what a submission fold's
//! queue fold is given (`layout`), and what becomes of submission folds and custom splits when
//! their queue folds stop (`submissions`, `splits`).
//!
//! **Settled when a fold ends, not when it is read.** The master starts the workflow task
//! ([`Workflow::start`]) and notifies it ([`Workflow::fold_stopped`]) once the store has
//! recorded the results it received; ends recorded without the master (a hold or remove of a
//! fold that was not running, a fold held at submit) reach the task through the store's change
//! signal. The task then derives and records the results of every custom split and submission
//! fold whose queue fold changed. It runs off the master loop (scoring parses `.npy` files and
//! tables on the blocking pool, the scans run on reader connections), so a slow settle never
//! delays scheduling. Notices coalesce ([`MIN_GAP`]); settling is idempotent (the store
//! records a derived result only while the queue fold is still at the run-end it came from),
//! so a lost notice costs nothing but time: the task catches up when it starts (folds that
//! ended while the master was down: a scan, once), and from then on reads only what changed:
//! the submission folds whose queue fold logged an event since its last pass (a window of
//! events at a time), so a pass costs what changed, not how many submission folds exist. It
//! also wakes every [`SWEEP`] without a notice. `api/` reads what is recorded.

mod layout;
mod splits;
mod submissions;

pub use layout::{build_fold, default_resources, fold_inputs, image_fold, required_files, Layout};
pub use splits::{settle_splits, split_truth, usable_split};
pub use submissions::settle_submissions;

use crate::store::{SettleScope, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The workflow task also looks for unsettled folds this often without a notice.
pub const SWEEP: Duration = Duration::from_secs(30);

/// Settling passes start at most this often: notices that come during a pass, or within this
/// of its start, are served by one next pass (a busy queue changes many times a second).
pub const MIN_GAP: Duration = Duration::from_millis(50);

/// How long a reader waits for the workflow to catch up ([`Workflow::caught_up`]); past it
/// the answer shows what is recorded then.
pub const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Why a workflow step refused or failed; the API maps the kinds to 400, 409 and 500.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request cannot be served as asked (400).
    #[error("{0}")]
    Invalid(String),
    /// Not yet: something it needs is still running (409).
    #[error("{0}")]
    NotReady(String),
    /// What is stored cannot be used (500).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, WorkflowError>;

/// Runs CPU-heavy pure work (parsing, scoring) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkflowError::Internal(e.to_string()))
}

/// Where the task is: the newest event the last finished pass had seen committed before it
/// began (so every end logged up to it is settled, unless a newer change superseded it).
#[derive(Clone, Copy, Default)]
struct Progress {
    seen: i64,
}

/// The handle the master notifies: cheap to clone; notices coalesce.
#[derive(Clone)]
pub struct Workflow {
    notice: Arc<Notify>,
    progress: watch::Receiver<Progress>,
}

impl Workflow {
    /// Starts the workflow task on `store`: it catches up at once, then settles on every
    /// notice, every change the store publishes, and every [`SWEEP`].
    pub fn start(store: Store) -> Workflow {
        let notice = Arc::new(Notify::new());
        let (tx, progress) = watch::channel(Progress::default());
        tokio::spawn(run(store, notice.clone(), tx));
        Workflow { notice, progress }
    }

    /// A workflow that settles nothing and is always current: a standby's (the active master
    /// settles; a standby reads what it recorded).
    pub fn idle() -> Workflow {
        let (_, progress) = watch::channel(Progress { seen: i64::MAX });
        Workflow {
            notice: Arc::new(Notify::new()),
            progress,
        }
    }

    /// Some fold stopped: settle what changed.
    pub fn fold_stopped(&self) {
        self.notice.notify_one();
    }

    /// Waits (at most `timeout`) until a pass that began after event `top` was committed has
    /// finished: every end logged up to `top` is then settled. At once when one has already.
    /// For readers that answer with results (a client that saw a fold end reads its result).
    /// `false` when the time ran out (or the task is gone): the caller answers what is
    /// recorded then.
    pub async fn caught_up(&self, top: i64, timeout: Duration) -> bool {
        let mut progress = self.progress.clone();
        if progress.borrow_and_update().seen >= top {
            return true;
        }
        self.notice.notify_one();
        tokio::time::timeout(timeout, progress.wait_for(|p| p.seen >= top))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn run(store: Store, notice: Arc<Notify>, progress: watch::Sender<Progress>) {
    // Ends the master never sees (a hold or remove of a fold that was not running, a fold held
    // at submit) are seen through the store's change signal: every end logs an event.
    let mut changes = store.subscribe();
    // The same failure is logged once, not on every pass.
    let mut last_error: Option<String> = None;
    // Every change logged up to this event is settled; none until the first pass (a scan).
    let mut cursor: Option<i64> = None;
    loop {
        let started = tokio::time::Instant::now();
        changes.borrow_and_update();
        let (top, settled) = match store.newest_event().await {
            Ok(top) => (Some(top), settle_up_to(&store, &mut cursor, top).await),
            Err(e) => (None, Err(e.into())),
        };
        match (top, &settled) {
            // More is left than one pass settles: the next pass comes at once.
            (_, Ok(true)) => notice.notify_one(),
            // Even after a failure: readers must not wait on a settle that keeps failing.
            (Some(top), _) => progress.send_modify(|p| p.seen = p.seen.max(top)),
            (None, _) => {}
        }
        match settled {
            Ok(_) => last_error = None,
            Err(e) => {
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!("workflow: settling ended folds failed: {e}");
                }
                last_error = Some(e);
            }
        }
        tokio::select! {
            () = notice.notified() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // The store is gone (its writer stopped): nothing more can be recorded.
                    return;
                }
            }
            () = tokio::time::sleep(SWEEP) => {}
        }
        // Passes at most every MIN_GAP; what comes meanwhile waits for the next.
        tokio::time::sleep_until(started + MIN_GAP).await;
    }
}

/// How many events one settling step covers: what it reads stays bounded however far behind
/// the task is.
const WINDOW: i64 = 10_000;

/// Settles every custom split (they are few), then the submission folds whose queue fold
/// logged an event from `cursor` up to event `top`, a window of events at a time, moving the
/// cursor past each window settled (a failed one is tried again on the next pass). The first
/// pass, with no cursor, scans every submission fold once (ends recorded while no master
/// ran). `true` when more is left for another pass.
async fn settle_up_to(store: &Store, cursor: &mut Option<i64>, top: i64) -> Result<bool> {
    settle_splits(store).await?;
    let Some(mut after) = *cursor else {
        let more = settle_submissions(store, SettleScope::All).await?;
        if !more {
            *cursor = Some(top);
        }
        return Ok(more);
    };
    while after < top {
        let upto = top.min(after + WINDOW);
        if settle_submissions(store, SettleScope::Changed { after, upto }).await? {
            return Ok(true);
        }
        after = upto;
        *cursor = Some(after);
    }
    Ok(false)
}

#[cfg(test)]
mod tests;

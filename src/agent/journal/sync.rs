//! Group commit of the results log on a thread of its own ([`Syncer`]): a result is reported
//! only after an `fdatasync` of the log that *started after* its record was appended; results
//! that end together share one. Callers wait without a thread of their own: an attempt's task
//! awaits [`Syncer::wait`]; [`Syncer::wait_blocking`] blocks its caller, a blocking thread
//! (`Journal::finish`, the fallback of `finish_async`) or, on the rare end of an attempt that
//! never started, the agent's own thread for one sync.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(super) struct Syncer {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sync thread when a sync is wanted (or the journal is dropped).
    wanted: Condvar,
    /// Wakes blocking waiters when a sync finished.
    done: Condvar,
    /// The number of the last sync finished, for waiters on a runtime.
    finished: tokio::sync::watch::Sender<u64>,
    /// Runs before each sync (tests hold syncs with it).
    #[cfg(test)]
    before: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

#[derive(Default)]
pub(super) struct State {
    /// Syncs started and finished so far (numbered from 1).
    pub(super) started: u64,
    pub(super) finished: u64,
    /// The highest sync number a caller waits for.
    wanted: u64,
    /// The last sync that failed, and why.
    failed: Option<(u64, String)>,
    /// The log to sync (one per agent process: every caller appends to the same file).
    file: Option<Arc<File>>,
    /// Whether the sync thread runs.
    running: bool,
    /// The journal is gone: the thread ends once nothing is wanted.
    closed: bool,
}

impl Default for Syncer {
    fn default() -> Syncer {
        Syncer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wanted: Condvar::new(),
                done: Condvar::new(),
                finished: tokio::sync::watch::channel(0).0,
                #[cfg(test)]
                before: Mutex::new(None),
            }),
        }
    }
}

impl Syncer {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a sync of `file` that starts after this call (the caller has appended to it);
    /// the number to wait for.
    pub(super) fn request(&self, file: Arc<File>) -> std::io::Result<u64> {
        let mut state = self.state();
        let needed = state.started + 1;
        state.wanted = state.wanted.max(needed);
        state.file = Some(file);
        if !state.running {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("datarun-journal-sync".into())
                .spawn(move || shared.run())?;
            state.running = true;
        }
        self.shared.wanted.notify_one();
        Ok(needed)
    }

    /// Waits, on a runtime, for sync `needed` (or a later one) to finish.
    pub(super) async fn wait(&self, needed: u64) -> std::io::Result<()> {
        let mut finished = self.shared.finished.subscribe();
        // The sender lives as long as `self`: the wait ends when the sync does.
        let _ = finished.wait_for(|&n| n >= needed).await;
        outcome(&self.state(), needed)
    }

    /// Like `wait`, blocking the calling thread.
    pub(super) fn wait_blocking(&self, needed: u64) -> std::io::Result<()> {
        let mut state = self.state();
        while state.finished < needed {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        outcome(&state, needed)
    }

    /// Runs `f` before every sync from now on.
    #[cfg(test)]
    pub(super) fn before_each(&self, f: impl FnMut() + Send + 'static) {
        *self.shared.before.lock().unwrap() = Some(Box::new(f));
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.state().closed = true;
        self.shared.wanted.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sync thread: one sync at a time, for everyone who asked before it started.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            while state.wanted <= state.started && !state.closed {
                state = self.wanted.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.wanted <= state.started {
                state.running = false;
                return; // closed, nothing wanted
            }
            state.started += 1;
            let number = state.started;
            let file = state.file.clone();
            drop(state);
            #[cfg(test)]
            if let Some(before) = self.before.lock().unwrap().as_mut() {
                before();
            }
            let synced = file.map_or(Ok(()), |f| f.sync_data());
            state = self.lock();
            state.finished = number;
            if let Err(e) = synced {
                state.failed = Some((number, e.to_string()));
            }
            self.done.notify_all();
            self.finished.send_replace(number);
        }
    }
}

/// How sync `needed` went for its waiters.
fn outcome(state: &State, needed: u64) -> std::io::Result<()> {
    match &state.failed {
        // A failed writeback may have dropped any page dirty at the time: every result
        // waiting on that sync or an earlier one is in doubt.
        Some((number, e)) if *number >= needed => Err(std::io::Error::other(format!(
            "cannot sync the journal's results log: {e}"
        ))),
        _ => Ok(()),
    }
}

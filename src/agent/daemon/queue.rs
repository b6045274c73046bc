//! Runs queued behind another attempt (a runner's `prefetch`, `RunAttempt::after`): held until
//! the attempt they follow holds no slot here, then started in arrival order. The master counts
//! slots by the same rules (`master::runners::RunnerState::release`).

use super::Agent;
use crate::model::{AttemptId, Outcome};

impl Agent {
    /// Whether `attempt` takes a slot here: running (not yet exited), waiting for its
    /// inputs, adopted from an earlier agent process, or queued itself.
    pub(super) fn holds_slot(&self, attempt: AttemptId) -> bool {
        self.running.get(&attempt).is_some_and(|r| !r.exited)
            || self.waiting.contains_key(&attempt)
            || self.adopted.contains(&attempt)
            || self.queued.iter().any(|q| q.attempt == attempt)
    }

    /// Starts, in arrival order, every queued run whose predecessor holds no slot any more.
    pub(super) fn start_ready(&mut self) {
        while let Some(i) = self
            .queued
            .iter()
            .position(|q| !q.after.is_some_and(|a| self.holds_slot(a)))
        {
            let mut run = self.queued.remove(i);
            run.after = None;
            self.run(run);
        }
    }

    /// Cancels `attempt` if it is queued: its successors now follow what it followed, and it
    /// ends without having started. False when it is not queued here.
    pub(super) fn cancel_queued(&mut self, attempt: AttemptId) -> bool {
        let Some(i) = self.queued.iter().position(|q| q.attempt == attempt) else {
            return false;
        };
        let run = self.queued.remove(i);
        for q in &mut self.queued {
            if q.after == Some(attempt) {
                q.after = run.after;
            }
        }
        self.end_unstarted(run, Outcome::Cancelled);
        true
    }
}

//! Fair share bookkeeping: each owner's usage in slot-seconds, decaying with a half-life, plus
//! the folds it runs now. The scheduler gets it as `FairShare` (usage in slots: running folds
//! plus past slot-time divided by the half-life), so an owner with 10,000 folds does not starve
//! one with 10, and one that has used much waits behind one that has not. Priority still
//! dominates; within a priority band owners take turns.

use crate::model::AttemptId;
use crate::scheduler::FairShare;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub(super) struct Usage {
    half_life: Duration,
    /// Past slot-seconds per owner, decayed to `at`.
    past: BTreeMap<String, f64>,
    at: Instant,
    /// Attempts out now, and whose they are.
    running: HashMap<AttemptId, String>,
    /// How many of them each owner has: kept as they start and end, so a cycle's look at them
    /// costs the number of owners, not of running folds.
    per_owner: BTreeMap<String, usize>,
}

/// One owner's share, for `datarun queue status --owners`.
#[derive(Clone, Debug, Serialize)]
pub struct OwnerShare {
    pub owner: String,
    pub running: usize,
    /// Decayed past usage, slot-hours.
    pub past_slot_hours: f64,
    /// What the scheduler orders by: running folds + past slot-time / half-life. Lower goes first.
    pub effective_usage: f64,
}

impl Usage {
    pub fn new(half_life: Duration) -> Usage {
        Usage {
            half_life,
            past: BTreeMap::new(),
            at: Instant::now(),
            running: HashMap::new(),
            per_owner: BTreeMap::new(),
        }
    }

    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let factor = 0.5f64.powf(dt / self.half_life.as_secs_f64().max(1e-3));
        self.past.retain(|_, v| {
            *v *= factor;
            *v > 1e-3
        });
        self.at = now;
    }

    pub fn started(&mut self, attempt: AttemptId, owner: &str) {
        if let Some(before) = self.running.insert(attempt, owner.to_string()) {
            self.forget(&before);
        }
        *self.per_owner.entry(owner.to_string()).or_default() += 1;
    }

    fn forget(&mut self, owner: &str) {
        if let Some(n) = self.per_owner.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(owner);
            }
        }
    }

    /// An attempt ended after `wall_ms` of one slot.
    pub fn ended(&mut self, attempt: AttemptId, wall_ms: u64) {
        if let Some(owner) = self.running.remove(&attempt) {
            self.forget(&owner);
            self.decay(Instant::now());
            *self.past.entry(owner).or_default() += wall_ms as f64 / 1000.0;
        }
    }

    fn effective(&self) -> BTreeMap<String, (usize, f64)> {
        let mut out: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for (owner, n) in &self.per_owner {
            out.entry(owner.clone()).or_default().0 = *n;
        }
        for (owner, secs) in &self.past {
            out.entry(owner.clone()).or_default().1 = *secs;
        }
        out
    }

    /// Folds each owner runs now.
    pub fn running(&self) -> BTreeMap<&str, usize> {
        self.per_owner
            .iter()
            .map(|(owner, n)| (owner.as_str(), *n))
            .collect()
    }

    pub fn share(&mut self) -> FairShare {
        self.decay(Instant::now());
        let hl = self.half_life.as_secs_f64().max(1e-3);
        FairShare {
            usage: self
                .effective()
                .into_iter()
                .map(|(o, (n, secs))| (o, n as f64 + secs / hl))
                .collect(),
        }
    }

    pub fn owners(&mut self) -> Vec<OwnerShare> {
        self.decay(Instant::now());
        let hl = self.half_life.as_secs_f64().max(1e-3);
        self.effective()
            .into_iter()
            .map(|(owner, (running, secs))| OwnerShare {
                owner,
                running,
                past_slot_hours: secs / 3600.0,
                effective_usage: running as f64 + secs / hl,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_running_folds_and_decays_past_ones() {
        let mut u = Usage::new(Duration::from_secs(3600));
        u.started(1, "ann");
        u.started(2, "ann");
        u.started(3, "bob");
        assert_eq!(u.share().usage["ann"], 2.0);
        u.ended(1, 1_800_000); // half an hour of one slot
        let s = u.share();
        assert!((s.usage["ann"] - 1.5).abs() < 1e-3, "{s:?}");
        assert_eq!(s.usage["bob"], 1.0);
        // Half a life later, the past counts half.
        u.at -= Duration::from_secs(3600);
        u.past.insert("ann".into(), 1800.0);
        let s = u.share();
        assert!((s.usage["ann"] - 1.25).abs() < 1e-2, "{s:?}");
        u.ended(99, 5_000); // unknown attempts change nothing
        assert_eq!(u.owners().len(), 2);
        // Counts per owner follow starts, ends and an attempt started again for another.
        assert_eq!(u.running(), BTreeMap::from([("ann", 1), ("bob", 1)]));
        u.started(2, "bob");
        assert_eq!(u.running(), BTreeMap::from([("bob", 2)]));
        u.ended(2, 1);
        u.ended(3, 1);
        assert!(u.running().is_empty());
    }
}

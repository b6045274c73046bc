//! The master's picture of each runner: its inventory entry, its connection, the facts its
//! agent reported, and the grants of the attempts out on it.

use crate::inventory::{ExecutorKind, RunnerSpec, Transport};
use crate::model::{AttemptId, FoldId};
use crate::protocol::{Facts, Grant};
use crate::scheduler::RunnerView;
use crate::transport::Link;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

pub struct RunnerState {
    pub spec: RunnerSpec,
    pub link: Option<Link>,
    /// Hello received on the current link: the runner takes folds.
    pub ready: bool,
    /// Set by `set_facts`, which counts each change in `facts_changes` (for `stamp`).
    pub facts: Option<Facts>,
    facts_changes: u64,
    pub grants: BTreeMap<AttemptId, Grant>,
    /// Attempts queued on the agent behind another (the runner's `prefetch`): each with the
    /// attempt it follows and its grant, which is within that one's. They take no slot of
    /// their own: each takes its predecessor's slot when the predecessor's result arrives.
    pub queued: BTreeMap<AttemptId, Queued>,
    /// Attempts the runner still ran at its hello although the master no longer held them
    /// (given up past the lease, or ended otherwise): cancelled, and counted against the
    /// runner until the agent reports them gone. Their folds wait for that.
    pub cancelling: BTreeMap<AttemptId, Cancelling>,
    pub last_error: Option<String>,
    pub reconnect_at: Option<Instant>,
    /// When the current link was made (a local agent that has not said hello long after is
    /// started again).
    pub linked_at: Option<Instant>,
    /// When the runner was last heard from, or when it was first missed.
    pub last_seen: Instant,
    /// Drained by an operator: no new folds.
    pub drained: bool,
    /// Gone from the inventory: no new folds; dropped once its attempts have ended.
    pub removed: bool,
    /// Connection attempts that failed in a row (for the backoff).
    pub failures: u32,
    /// When the last heartbeat ping went out.
    pub last_ping: Option<Instant>,
}

/// An attempt queued on a runner's agent behind another.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Queued {
    pub after: AttemptId,
    pub grant: Grant,
}

/// An attempt being cancelled on a runner: its fold (if the store knows it) and its grant.
#[derive(Clone, Debug, Hash)]
pub struct Cancelling {
    pub fold: Option<FoldId>,
    pub grant: Grant,
}

/// What `datarun runners status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct RunnerStatus {
    pub name: String,
    pub transport: Transport,
    pub state: String,
    pub slots_total: u32,
    pub slots_used: u32,
    pub cpus_total: f64,
    pub cpus_used: f64,
    pub memory_total: u64,
    pub memory_used: u64,
    pub gpus_total: Vec<String>,
    pub gpus_used: Vec<String>,
    pub queues: Vec<String>,
    pub attempts: Vec<AttemptId>,
    /// Attempts queued on the agent behind those running (`prefetch`), not yet started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<AttemptId>,
    /// Attempts being cancelled (counted in the used figures): see `RunnerState::cancelling`.
    pub cancelling: Vec<AttemptId>,
    pub last_error: Option<String>,
    /// What the agent reported at its last hello (cpus, memory, arch, Docker, GPUs, disk).
    pub facts: Option<Facts>,
}

impl RunnerState {
    pub fn new(spec: RunnerSpec) -> RunnerState {
        RunnerState {
            spec,
            link: None,
            ready: false,
            facts: None,
            facts_changes: 0,
            grants: BTreeMap::new(),
            queued: BTreeMap::new(),
            cancelling: BTreeMap::new(),
            last_error: None,
            reconnect_at: Some(Instant::now()),
            linked_at: None,
            last_seen: Instant::now(),
            drained: false,
            removed: false,
            failures: 0,
            last_ping: None,
        }
    }

    fn millicpus_total(&self) -> u32 {
        let cpus = self.spec.cpus.or(self.facts.as_ref().map(|f| f.cpus));
        // Unknown until the agent reports: no limit from our side.
        cpus.map(|c| (c * 1000.0).round() as u32)
            .unwrap_or(u32::MAX)
    }

    fn memory_total(&self) -> u64 {
        self.spec
            .memory
            .or(self.facts.as_ref().map(|f| f.memory))
            .unwrap_or(u64::MAX)
    }

    /// The inventory's GPUs, else those the agent found (nvidia-smi).
    fn gpus(&self) -> &Vec<String> {
        match &self.facts {
            Some(f) if self.spec.gpus.is_empty() => &f.gpus,
            _ => &self.spec.gpus,
        }
    }

    /// Every grant out on the runner: its attempts' and those being cancelled.
    fn all_grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants
            .values()
            .chain(self.cancelling.values().map(|c| &c.grant))
    }

    fn used(&self) -> (u32, u64, Vec<String>) {
        let cpus = self.all_grants().map(|g| g.millicpus).sum();
        let mem = self.all_grants().map(|g| g.memory).sum();
        let gpus = self
            .all_grants()
            .flat_map(|g| g.gpus.iter().cloned())
            .collect();
        (cpus, mem, gpus)
    }

    /// Slots taken: attempts out, and attempts being cancelled.
    fn slots_used(&self) -> u32 {
        (self.grants.len() + self.cancelling.len()) as u32
    }

    /// Whether anything still runs (or may run) on the runner.
    pub fn busy(&self) -> bool {
        !self.grants.is_empty() || !self.cancelling.is_empty() || !self.queued.is_empty()
    }

    /// Whether the runner has the attempt out (in a slot or queued behind one).
    pub fn holds(&self, attempt: AttemptId) -> bool {
        self.grants.contains_key(&attempt) || self.queued.contains_key(&attempt)
    }

    /// The attempt has ended on the runner (its result arrived): it takes nothing any more.
    /// What was queued behind it takes its slot (the agent started it when it ended); what was
    /// queued behind a queued attempt that ended unstarted now follows what that one followed.
    /// The agent applies the same two rules (`agent::daemon`), so both count the same slots.
    pub fn release(&mut self, attempt: AttemptId) {
        self.cancelling.remove(&attempt);
        if self.grants.remove(&attempt).is_some() {
            let next: Vec<AttemptId> = self
                .queued
                .iter()
                .filter(|(_, q)| q.after == attempt)
                .map(|(a, _)| *a)
                .collect();
            for a in next {
                let q = self.queued.remove(&a).expect("queued");
                self.grants.insert(a, q.grant);
            }
        } else if let Some(gone) = self.queued.remove(&attempt) {
            for q in self.queued.values_mut() {
                if q.after == attempt {
                    q.after = gone.after;
                }
            }
        }
    }

    /// Whether the master may queue attempts on this runner's agent now: it takes folds, its
    /// slots are full, and its `prefetch` has room.
    pub fn may_queue(&self) -> bool {
        self.ready
            && !self.drained
            && !self.removed
            && self.spec.prefetch as usize > self.queued.len()
            && self.slots_used() >= self.spec.slots
    }

    /// The attempts a new one could be queued behind: those out on the runner (in a slot or
    /// queued) with nothing queued behind them yet, with their grants, shortest line first,
    /// and how many more the runner's `prefetch` allows.
    pub fn queue_tails(&self) -> (Vec<(AttemptId, Grant)>, usize) {
        let room = (self.spec.prefetch as usize).saturating_sub(self.queued.len());
        let followed: std::collections::BTreeSet<AttemptId> =
            self.queued.values().map(|q| q.after).collect();
        let depth = |mut a: AttemptId| {
            let mut d = 0;
            while let Some(q) = self.queued.get(&a) {
                a = q.after;
                d += 1;
            }
            d
        };
        let mut tails: Vec<(usize, AttemptId, Grant)> = self
            .grants
            .iter()
            .chain(self.queued.iter().map(|(a, q)| (a, &q.grant)))
            .filter(|(a, _)| !followed.contains(a))
            .map(|(a, g)| (depth(*a), *a, g.clone()))
            .collect();
        tails.sort_by_key(|(d, a, _)| (*d, *a));
        (tails.into_iter().map(|(_, a, g)| (a, g)).collect(), room)
    }

    /// Whether the runner may take a fold now (available, a free slot), without allocating.
    pub fn open(&self) -> bool {
        self.ready && !self.drained && !self.removed && self.slots_used() < self.spec.slots
    }

    /// Counts this runner's capacity into the pool's size (what best fit normalises by).
    pub fn size_into(&self, size: &mut crate::scheduler::PoolSize) {
        let gpus = self.gpus();
        let distinct = (0..gpus.len())
            .filter(|&i| !gpus[..i].contains(&gpus[i]))
            .count() as u32;
        size.include(self.millicpus_total(), self.memory_total(), distinct);
    }

    pub fn unavailable(&self) -> Option<String> {
        if self.removed {
            return Some("removed from the inventory: draining".into());
        }
        if self.drained {
            return Some(format!(
                "drained (`datarun runners resume {}` to resume)",
                self.spec.name
            ));
        }
        if self.ready {
            return None;
        }
        Some(match &self.last_error {
            Some(e) => format!("not connected: {e}"),
            None => "connecting".into(),
        })
    }

    pub fn view(&self) -> RunnerView {
        let (cpus_used, mem_used, gpus_used) = self.used();
        let millicpus_total = self.millicpus_total();
        let memory_total = self.memory_total();
        RunnerView {
            name: self.spec.name.clone(),
            queues: self.spec.queues.clone(),
            slots_total: self.spec.slots,
            slots_free: self.spec.slots.saturating_sub(self.slots_used()),
            millicpus_total,
            millicpus_free: millicpus_total.saturating_sub(cpus_used),
            memory_total,
            memory_free: memory_total.saturating_sub(mem_used),
            gpus_free: self
                .gpus()
                .iter()
                .filter(|g| !gpus_used.contains(g))
                .cloned()
                .collect(),
            gpus_total: self.gpus().clone(),
            hard_limit_ms: self.spec.hard_time_limit_ms,
            unavailable: self.unavailable(),
            images: match self.spec.executor {
                ExecutorKind::Process => None,
                ExecutorKind::Docker => Some(self.spec.images.clone()),
            },
            arch: self.facts.as_ref().map(|f| f.arch.clone()),
            os: self.facts.as_ref().map(|f| f.os.clone()),
            labels: self.spec.labels.clone(),
            attributes: self.spec.attributes.clone(),
            requirements: self.spec.requirements.clone(),
        }
    }

    /// A hash of everything `view` and `status` read that may change while the runner's spec
    /// stays the same (its slots, connection, error and how often its facts were set): `Master::publish` rebuilds a
    /// runner's view and status only when this changes. A spec changes only by a reload,
    /// after which every runner is rebuilt.
    pub fn stamp(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.ready, self.drained, self.removed, &self.last_error).hash(&mut h);
        (&self.grants, &self.queued, &self.cancelling).hash(&mut h);
        // Not the facts themselves: hashing their text for every runner was most of the cost.
        self.facts_changes.hash(&mut h);
        h.finish()
    }

    /// The facts its agent reported (at hello).
    pub fn set_facts(&mut self, facts: Facts) {
        self.facts = Some(facts);
        self.facts_changes += 1;
    }

    pub fn status(&self) -> RunnerStatus {
        let (cpus_used, mem_used, gpus_used) = self.used();
        let total_m = self.millicpus_total();
        let mem_total = self.memory_total();
        RunnerStatus {
            name: self.spec.name.clone(),
            transport: self.spec.transport,
            state: match self.unavailable() {
                None => "ready".into(),
                Some(reason) => reason,
            },
            slots_total: self.spec.slots,
            slots_used: self.slots_used(),
            cpus_total: if total_m == u32::MAX {
                0.0
            } else {
                total_m as f64 / 1000.0
            },
            cpus_used: cpus_used as f64 / 1000.0,
            memory_total: if mem_total == u64::MAX { 0 } else { mem_total },
            memory_used: mem_used,
            gpus_total: self.gpus().clone(),
            gpus_used,
            facts: self.facts.clone(),
            queues: self.spec.queues.clone(),
            attempts: self.grants.keys().copied().collect(),
            queued: self.queued.keys().copied().collect(),
            cancelling: self.cancelling.keys().copied().collect(),
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(millicpus: u32, memory: u64) -> Grant {
        Grant {
            millicpus,
            memory,
            gpus: vec![],
        }
    }

    #[test]
    fn attempts_being_cancelled_take_their_slots_and_resources_until_released() {
        let inv = "[[runner]]\nname = \"r\"\ntransport = \"local\"\nslots = 2\ncpus = 4\nmemory = \"4G\"\n";
        let spec = crate::inventory::parse(inv, "runners.toml")
            .unwrap()
            .runners[0]
            .clone();
        let mut r = RunnerState::new(spec);
        r.ready = true;
        r.grants.insert(1, grant(1000, 1 << 30));
        r.cancelling.insert(
            2,
            Cancelling {
                fold: Some(7),
                grant: grant(2000, 2 << 30),
            },
        );
        let v = r.view();
        assert_eq!(v.slots_free, 0, "a stray still running takes its slot");
        assert_eq!(v.millicpus_free, 1000);
        assert_eq!(v.memory_free, 1 << 30);
        let s = r.status();
        assert_eq!((s.slots_used, s.slots_total), (2, 2));
        assert_eq!((s.attempts, s.cancelling), (vec![1], vec![2]));
        assert!(r.busy());
        r.release(2);
        assert_eq!(r.view().slots_free, 1, "gone: its slot is free again");
        r.release(1);
        assert!(!r.busy());
        assert_eq!(r.status().slots_used, 0);
    }

    /// Queued attempts take their predecessor's slot when its result arrives; one that ends
    /// unstarted hands its place in line to what followed it; the runner may queue only when
    /// its slots are full and its `prefetch` has room; tails are the shortest lines first.
    #[test]
    fn queued_attempts_take_their_predecessors_slot() {
        let inv = "[[runner]]\nname = \"r\"\ntransport = \"local\"\nslots = 2\nprefetch = 3\ncpus = 4\nmemory = \"4G\"\n";
        let spec = crate::inventory::parse(inv, "runners.toml")
            .unwrap()
            .runners[0]
            .clone();
        assert_eq!(spec.prefetch, 3);
        let mut r = RunnerState::new(spec);
        r.ready = true;
        r.grants.insert(1, grant(1000, 1 << 30));
        assert!(!r.may_queue(), "a free slot: nothing is queued");
        r.grants.insert(2, grant(2000, 1 << 30));
        assert!(r.may_queue());
        let (tails, room) = r.queue_tails();
        assert_eq!(room, 3);
        assert_eq!(tails.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let q = |after| Queued {
            after,
            grant: grant(500, 1 << 20),
        };
        r.queued.insert(3, q(1));
        r.queued.insert(4, q(3));
        r.queued.insert(5, q(2));
        assert!(!r.may_queue(), "prefetch is full");
        let (tails, room) = r.queue_tails();
        assert_eq!(room, 0);
        assert_eq!(tails.iter().map(|t| t.0).collect::<Vec<_>>(), vec![5, 4]);
        let v = r.view();
        assert_eq!(v.slots_free, 0);
        assert_eq!(
            v.millicpus_free, 1000,
            "queued attempts take no resources of their own"
        );
        // 3 ends unstarted (cancelled): 4 now follows 1.
        r.release(3);
        assert_eq!(r.queued.get(&4).map(|q| q.after), Some(1));
        // 1's result: 4 takes its slot.
        r.release(1);
        assert_eq!(r.grants.keys().copied().collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(r.queued.keys().copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!(r.view().millicpus_free, 4000 - 2000 - 500);
        assert_eq!(
            (r.status().attempts, r.status().queued),
            (vec![2, 4], vec![5])
        );
        r.release(2);
        r.release(4);
        assert!(r.grants.keys().eq([5].iter()), "5 followed 2");
        r.release(5);
        assert!(!r.busy());
    }
}

//! Ranking among the runners that passed every step: best fit.
//!
//! The best runner is the one with the least room left after placing the fold: free cpus,
//! memory and GPUs after the grant, each divided by the largest such capacity in the pool (so
//! the three weigh alike and big runners stay free for big folds, and a fold without GPUs
//! avoids GPU runners). Ties go to the runner with fewer free slots (pack), then to the lower
//! runner index, so the choice is deterministic.

use super::feasibility::{capacity, Room, Shape};
use super::RunnerView;
use std::cmp::Ordering;

/// The largest known capacity of each resource in the pool: what best fit normalises by.
/// `u32::MAX` / `u64::MAX` stand for "unknown" (the agent has not reported yet): such a
/// runner counts as being as big as the biggest known one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSize {
    pub millicpus: u32,
    pub memory: u64,
    pub gpus: u32,
}

impl PoolSize {
    pub fn of(runners: &[RunnerView]) -> PoolSize {
        let mut size = PoolSize::default();
        for r in runners {
            size.include(r.millicpus_total, r.memory_total, capacity(r).gpus);
        }
        size
    }

    /// Counts a runner of these totals (GPUs: distinct ids) in.
    pub fn include(&mut self, millicpus: u32, memory: u64, gpus: u32) {
        if millicpus != u32::MAX {
            self.millicpus = self.millicpus.max(millicpus);
        }
        if memory != u64::MAX {
            self.memory = self.memory.max(memory);
        }
        self.gpus = self.gpus.max(gpus);
    }
}

/// Normalisers for the leftover score: 1 / the largest known capacity of each resource.
#[derive(Clone, Copy, Debug)]
pub(super) struct Norm {
    cpu: f64,
    memory: f64,
    gpus: f64,
    max_cpu: u32,
    max_memory: u64,
}

impl Norm {
    pub fn new(runners: &[RunnerView]) -> Norm {
        Norm::of(&PoolSize::of(runners))
    }

    pub fn of(size: &PoolSize) -> Norm {
        let max_cpu = size.millicpus.max(1);
        let max_memory = size.memory.max(1);
        let max_gpus = size.gpus.max(1);
        Norm {
            cpu: 1.0 / max_cpu as f64,
            memory: 1.0 / max_memory as f64,
            gpus: 1.0 / max_gpus as f64,
            max_cpu,
            max_memory,
        }
    }

    /// Room left on a runner with free `room` after placing `shape` (which must fit).
    #[inline]
    pub fn leftover(&self, room: &Room, shape: &Shape) -> f64 {
        let cpu = (room.millicpus - shape.millicpus).min(self.max_cpu);
        let memory = (room.memory - shape.memory).min(self.max_memory);
        let gpus = room.gpus - shape.gpus;
        cpu as f64 * self.cpu + memory as f64 * self.memory + gpus as f64 * self.gpus
    }
}

/// Orders device ids so that digit runs compare as numbers ("gpu2" < "gpu10", "2" < "10"),
/// falling back to plain byte order so the order is total.
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let si = i;
            while i < x.len() && x[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < y.len() && y[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&x[si..i]);
            let nb = trim_zeros(&y[sj..j]);
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&d| d == b'0').count();
    &digits[n..]
}

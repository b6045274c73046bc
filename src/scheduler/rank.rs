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
        // u32::MAX / u64::MAX stand for "unknown" (the agent has not reported yet): such a
        // runner counts as being as big as the biggest known one.
        let max_cpu = runners
            .iter()
            .map(|r| r.millicpus_total)
            .filter(|&c| c != u32::MAX)
            .max()
            .unwrap_or(0)
            .max(1);
        let max_memory = runners
            .iter()
            .map(|r| r.memory_total)
            .filter(|&m| m != u64::MAX)
            .max()
            .unwrap_or(0)
            .max(1);
        let max_gpus = runners
            .iter()
            .map(|r| capacity(r).gpus)
            .max()
            .unwrap_or(0)
            .max(1);
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

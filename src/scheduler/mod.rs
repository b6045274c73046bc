//! Matchmaking: a pure, deterministic function from a snapshot (idle folds, runners with their
//! free resources) to assignments. No IO, no clock reads: the caller passes everything in.
//!
//! Placement is a chain of feasibility steps (each records why it rejected a runner), then
//! ranking among the runners that passed (best fit by default). Folds are taken in order of
//! queue priority, fold priority, submit time, id.

use crate::model::FoldId;
use serde::Serialize;
use std::collections::BTreeMap;

/// An idle fold as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingFold {
    pub id: FoldId,
    pub queue: String,
    pub owner: String,
    pub priority: i64,
    /// Submit time, ms since the epoch (only used for ordering).
    pub submitted_at: i64,
    pub millicpus: u32,
    pub memory: u64,
    pub gpus: u32,
    /// The fold's hard time limit in ms, if it set one.
    pub hard_limit_ms: Option<u64>,
}

/// A runner as the scheduler sees it: capacity and what is free right now.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerView {
    pub name: String,
    /// Queues served; `"*"` serves every queue.
    pub queues: Vec<String>,
    pub slots_total: u32,
    pub slots_free: u32,
    pub millicpus_total: u32,
    pub millicpus_free: u32,
    pub memory_total: u64,
    pub memory_free: u64,
    /// Device ids of all GPUs, and of those not granted to a running fold.
    pub gpus_total: Vec<String>,
    pub gpus_free: Vec<String>,
    /// The runner's hard time limit in ms, if it has one.
    pub hard_limit_ms: Option<u64>,
    /// None when the runner takes new folds; otherwise why not (draining, disconnected, ...).
    pub unavailable: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub folds: Vec<PendingFold>,
    pub runners: Vec<RunnerView>,
    /// Priority of each queue; queues not listed have priority 0.
    pub queue_priority: BTreeMap<String, i64>,
}

/// The feasibility steps, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Available,
    Queue,
    Slots,
    Cpus,
    Memory,
    Gpus,
    TimeLimit,
}

/// How many runners one step rejected, and why, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejection {
    pub step: Step,
    pub runners: usize,
    /// e.g. "memory: 3 runners have at most 2G free, fold asks 4G"
    pub detail: String,
}

/// Why a fold did not match in this cycle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// Runners considered.
    pub runners: usize,
    /// First-failing step per runner, aggregated; runners that passed every step are not listed.
    pub rejections: Vec<Rejection>,
    /// Runners that passed every step but had no room left after earlier folds in this cycle.
    pub outranked: usize,
    /// Whether the fold could run on this pool if every runner were empty.
    pub matches_empty_pool: bool,
    /// One line: the main reason.
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    pub fold: FoldId,
    /// Index into `Snapshot::runners`.
    pub runner: usize,
    /// Concrete GPU device ids granted.
    pub gpus: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    /// Folds that did not match, each with an index into `explanations` (folds of the same
    /// shape share one explanation).
    pub unmatched: Vec<(FoldId, usize)>,
    pub explanations: Vec<Explanation>,
}

/// One full matching cycle.
pub fn schedule(_snapshot: &Snapshot) -> Plan {
    todo!("scheduler helper")
}

/// Why `fold` would or would not match on `runners` now, and on an empty pool.
pub fn explain(_fold: &PendingFold, _runners: &[RunnerView]) -> Explanation {
    todo!("scheduler helper")
}

/// `Some(reason)` when no runner could run the fold even if the whole pool were idle.
pub fn unmatchable(_fold: &PendingFold, _runners: &[RunnerView]) -> Option<String> {
    todo!("scheduler helper")
}

//! Matchmaking: a pure, deterministic function from a snapshot (idle folds, runners with their
//! free resources) to assignments. No IO, no clock reads: the caller passes everything in.
//!
//! Placement is a chain of feasibility steps (each records why it rejected a runner), then
//! ranking among the runners that passed (best fit by default). Folds are taken in order of
//! queue priority, fold priority, submit time, id.
//!
//! The steps, in order (`Step`):
//! 1. Available: the runner takes new folds (not draining, connected, ...).
//! 2. Queue: the runner serves the fold's queue (or "*").
//! 3. Image: a fold naming an image needs a docker runner whose allowlist names it (or "*");
//!    a fold naming none needs a process runner, or a docker runner with a default image (the
//!    first entry of its allowlist, unless "*"). See `accepts_image`.
//! 4. Requirements: the fold's `requirements` expression is true on the runner; 5.
//!    RunnerRequirements: the runner's is true on the fold (see `expr`, `requirements`).
//! 6. Slots, 7. Cpus, 8. Memory, 9. Gpus: enough of each is free now.
//! 10. TimeLimit: the fold's hard limit is within the runner's (when both set one).
//!
//! Available, Queue, Image, the requirements and TimeLimit are static (runner and fold shape
//! only; `free_slots` in an expression is read at the start of the cycle); the resource steps
//! depend on what is free. Among the runners that pass, a fold's `rank` decides first, then
//! best fit.
//!
//! How one cycle stays fast (100,000 folds × 1,000 runners: ~16 ms, see benches/scheduler.rs):
//! - Folds are reduced to *shapes* (queue, image, cpus, memory, gpus, hard limit, and the
//!   classes of the requirements on both sides), queues and images interned. Within a cycle free resources only shrink, so a runner that cannot take a
//!   shape now never can later in the cycle: each shape keeps a candidate list (runners of its
//!   *lane* — available, serving its queue, accepting its image — that passed every step) that
//!   is pruned as it is scanned, and once it is empty the shape is *dead*: every later fold of
//!   that shape is unmatched in O(1) and shares the shape's explanation.
//! - Runners are indexed by queue, and the number of runners with a free slot is kept per queue
//!   and overall. When no runner has a free slot left the cycle stops matching; the remaining
//!   folds only look up (or, once per shape, compute) their explanation.
//! - Explanations are computed once per shape and deduplicated, so `Plan::explanations` stays
//!   small however many folds wait.
//!
//! The modules: `feasibility` (the steps and the pool's working state), `expr` (the
//! requirements and rank language), `requirements` (expressions evaluated per class of folds
//! and explained), `rank` (best fit, GPU id order), `explain` (aggregated rejections and the
//! one-line summaries), `capacity` (whether a fold could ever run), `line` (the order folds
//! are taken in, fair share).

mod capacity;
mod explain;
/// The expression language lives below the scheduler (`crate::expr`); re-exported for paths
/// written before the move.
pub use crate::expr;
pub use explain::state_summary;
mod feasibility;
mod incremental;
mod index;
mod line;
mod rank;
mod requirements;
#[cfg(test)]
mod tests;

pub use feasibility::accepts_image;
pub use incremental::{schedule_index, OwnerCap};
pub use index::IdleIndex;
pub use line::{line_order, order_key, place_in_line, within_owner_cap, FairShare};
pub use rank::PoolSize;

use crate::model::{FoldId, HoldCode};
pub use expr::AttrValue;
use feasibility::{FxMap, Pool, Shape, NO_IMAGE};
use requirements::Reqs;
use serde::Serialize;
use std::cmp::Reverse;
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
    /// The container image the fold names, if any.
    pub image: Option<String>,
    /// An expression over runner attributes the runner must meet (see `expr`).
    pub requirements: Option<String>,
    /// An expression over runner attributes; runners ranking higher are preferred.
    pub rank: Option<String>,
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
    /// None: a process runner (takes no images). Some: a docker runner's image allowlist
    /// ("*" = any; the first entry, unless "*", is the default for folds naming none).
    pub images: Option<Vec<String>>,
    /// The machine's architecture and OS as its agent reported them (None until it does).
    pub arch: Option<String>,
    pub os: Option<String>,
    pub labels: Vec<String>,
    /// Custom attributes from the inventory, for requirements and rank expressions.
    pub attributes: BTreeMap<String, AttrValue>,
    /// The runner's requirements on folds: an expression over fold attributes (see `expr`).
    pub requirements: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub folds: Vec<PendingFold>,
    pub runners: Vec<RunnerView>,
    /// Priority of each queue; queues not listed have priority 0.
    pub queue_priority: BTreeMap<String, i64>,
    /// Fair share between owners within a priority band (None: submit order).
    pub fair_share: Option<FairShare>,
}

/// The feasibility steps, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Available,
    Queue,
    Image,
    /// The fold's requirements on the runner.
    Requirements,
    /// The runner's requirements on the fold.
    RunnerRequirements,
    Slots,
    Cpus,
    Memory,
    Gpus,
    TimeLimit,
}

impl Step {
    /// Every step, in the order they are applied.
    pub const ALL: [Step; 10] = [
        Step::Available,
        Step::Queue,
        Step::Image,
        Step::Requirements,
        Step::RunnerRequirements,
        Step::Slots,
        Step::Cpus,
        Step::Memory,
        Step::Gpus,
        Step::TimeLimit,
    ];
}

/// How many runners one step rejected, and why, in words a person can act on. A step gives one
/// rejection per reason: Image may give two (docker runners that do not allow the image, and
/// process runners), every other step one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Rejection {
    pub step: Step,
    pub runners: usize,
    /// e.g. "memory: 3 runners have at most 2G free, fold asks 4G"
    pub detail: String,
}

/// Why a fold did not match in this cycle.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Explanation {
    /// Runners considered.
    pub runners: usize,
    /// First-failing step per runner, aggregated; runners that passed every step are not listed.
    pub rejections: Vec<Rejection>,
    /// Runners that passed every step but had no room left after earlier folds in this cycle.
    /// (They are also counted in `rejections`, under the step that rejects them now.)
    pub outranked: usize,
    /// Whether the fold could run on this pool if every runner were empty. Unavailable runners
    /// do not count: a fold that only an unavailable runner could take does not match.
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    /// Folds that did not match, each with an index into `explanations` (folds of the same
    /// shape share one explanation). In the order the folds were considered.
    pub unmatched: Vec<(FoldId, usize)>,
    pub explanations: Vec<Explanation>,
}

/// Where a shape stands in the current cycle.
enum ShapeState {
    /// Not met yet in this cycle.
    New,
    /// Runners that passed every step the last time the shape was placed; pruned as it goes.
    Live(Vec<u32>),
    /// No runner can take it any more in this cycle; index into `Plan::explanations`.
    Dead(usize),
}

/// Explanations deduplicated by content, in order of first use.
#[derive(Default)]
struct Explanations {
    list: Vec<Explanation>,
    index: FxMap<Explanation, usize>,
}

impl Explanations {
    fn add(&mut self, e: Explanation) -> usize {
        if let Some(&i) = self.index.get(&e) {
            return i;
        }
        let i = self.list.len();
        self.list.push(e.clone());
        self.index.insert(e, i);
        i
    }
}

/// One full matching cycle.
///
/// Folds are taken in order (queue priority desc, priority desc, submitted_at asc, id asc);
/// each goes to the feasible runner where it leaves the least room unused (see `rank`), and
/// its grant is subtracted from that runner before the next fold is considered.
pub fn schedule(snapshot: &Snapshot) -> Plan {
    let Prepared {
        queues,
        images,
        shapes,
        order,
        reqs,
    } = prepare(snapshot);

    let mut pool = Pool::new(&snapshot.runners, queues, images, reqs);
    let mut state: Vec<ShapeState> = (0..shapes.len()).map(|_| ShapeState::New).collect();
    let mut explanations = Explanations::default();
    let mut assignments = Vec::new();
    let mut unmatched = Vec::new();

    let mut next = 0;
    // Matching: while some runner has a free slot.
    while next < order.len() && pool.open_runners() > 0 {
        let f = order[next];
        next += 1;
        let sid = f.shape as usize;
        let shape = &shapes[sid];
        if let ShapeState::Dead(e) = state[sid] {
            unmatched.push((f.id, e));
            continue;
        }
        let pick = if pool.open_for(shape.queue) == 0 {
            None
        } else {
            if matches!(state[sid], ShapeState::New) {
                state[sid] = ShapeState::Live(pool.candidates(shape));
            }
            let ShapeState::Live(candidates) = &mut state[sid] else {
                unreachable!("a shape that is not dead has candidates by now")
            };
            pool.best_fit(shape, f.rank, candidates)
        };
        match pick {
            Some(r) => {
                let gpus = pool.place(r, shape);
                assignments.push(Assignment {
                    fold: f.id,
                    runner: r,
                    gpus,
                });
            }
            None => {
                let e = explanations.add(pool.explain(shape, false));
                state[sid] = ShapeState::Dead(e);
                unmatched.push((f.id, e));
            }
        }
    }
    // Early exit: no runner has a free slot, so nothing else can match in this cycle. The rest
    // only need their explanation, computed once per shape.
    for f in &order[next..] {
        let sid = f.shape as usize;
        let e = match state[sid] {
            ShapeState::Dead(e) => e,
            _ => {
                let e = explanations.add(pool.explain(&shapes[sid], false));
                state[sid] = ShapeState::Dead(e);
                e
            }
        };
        unmatched.push((f.id, e));
    }

    Plan {
        assignments,
        unmatched,
        explanations: explanations.list,
    }
}

/// The folds of a snapshot reduced to what matching needs.
struct Prepared<'a> {
    /// Queue names; a shape's `queue` indexes this.
    queues: Vec<&'a str>,
    /// Image names; a shape's `image` indexes this (unless `NO_IMAGE`).
    images: Vec<&'a str>,
    shapes: Vec<Shape>,
    /// The folds in scheduling order.
    order: Vec<Ordered>,
    /// Requirements and ranks, by class (see `Shape::req`).
    reqs: Reqs<'a>,
}

/// One fold in scheduling order: what the matching loop needs, laid out contiguously (reading
/// 100,000 `PendingFold`s in sorted, i.e. random, order costs more in cache misses than the
/// whole matching).
#[derive(Clone, Copy)]
struct Ordered {
    id: FoldId,
    shape: u32,
    /// The fold's rank class (`requirements::NONE`: none).
    rank: u32,
}

/// Interns queues, images and shapes and puts the folds in order: queue priority desc, priority desc,
/// submitted_at asc, id asc (then snapshot index, so the order is total).
///
/// The two priorities take few distinct values, so folds are first bucketed by the pair
/// ("band"), then each band is sorted by (submitted_at, id, index): a narrower key than the
/// whole tuple, which matters at 100,000 folds.
fn prepare(snapshot: &Snapshot) -> Prepared<'_> {
    let folds = &snapshot.folds;
    let mut queues: Vec<&str> = Vec::new();
    let mut queue_prio: Vec<i64> = Vec::new();
    let mut queue_ids: FxMap<&str, u32> = FxMap::default();
    let mut images: Vec<&str> = Vec::new();
    let mut image_ids: FxMap<&str, u32> = FxMap::default();
    let mut shapes: Vec<Shape> = Vec::new();
    let mut shape_ids: FxMap<Shape, u32> = FxMap::default();
    let mut bands: Vec<(Reverse<i64>, Reverse<i64>)> = Vec::new();
    let mut band_ids: FxMap<(i64, i64), u32> = FxMap::default();
    let mut fold_shape: Vec<u32> = Vec::with_capacity(folds.len());
    let mut fold_band: Vec<u32> = Vec::with_capacity(folds.len());
    let mut fold_rank: Vec<u32> = Vec::with_capacity(folds.len());
    let mut last_band: Option<((i64, i64), u32)> = None;
    let mut reqs = Reqs::new(&snapshot.runners, false);
    // With fair share: owners as indices, read here in the folds' own order (reading each
    // owner's name again in line order, scattered over memory, cost a fifth of a cycle).
    let fair = snapshot.fair_share.as_ref();
    let mut owners = line::Owners::default();
    let mut fold_owner: Vec<u32> = Vec::with_capacity(if fair.is_some() { folds.len() } else { 0 });
    for f in folds {
        if let Some(fair) = fair {
            fold_owner.push(owners.id(&f.owner, fair) as u32);
        }
        // A handful of queues is the rule: a linear scan beats hashing the name.
        let known = if queues.len() <= 16 {
            queues.iter().position(|q| *q == f.queue).map(|q| q as u32)
        } else {
            queue_ids.get(f.queue.as_str()).copied()
        };
        let qid = match known {
            Some(q) => q,
            None => {
                let q = queues.len() as u32;
                queues.push(f.queue.as_str());
                queue_prio.push(*snapshot.queue_priority.get(&f.queue).unwrap_or(&0));
                queue_ids.insert(f.queue.as_str(), q);
                q
            }
        };
        let iid = match f.image.as_deref() {
            None => NO_IMAGE,
            Some(image) => {
                let known = if images.len() <= 16 {
                    images.iter().position(|i| *i == image).map(|i| i as u32)
                } else {
                    image_ids.get(image).copied()
                };
                known.unwrap_or_else(|| {
                    let i = images.len() as u32;
                    images.push(image);
                    image_ids.insert(image, i);
                    i
                })
            }
        };
        let mut shape = Shape::of(f, qid, iid);
        fold_rank.push(reqs.classify(f, &mut shape));
        let sid = *shape_ids.entry(shape).or_insert_with(|| {
            shapes.push(shape);
            (shapes.len() - 1) as u32
        });
        fold_shape.push(sid);
        let pair = (queue_prio[qid as usize], f.priority);
        let band = match last_band {
            Some((p, b)) if p == pair => b,
            _ => {
                let b = *band_ids.entry(pair).or_insert_with(|| {
                    bands.push((Reverse(pair.0), Reverse(pair.1)));
                    (bands.len() - 1) as u32
                });
                last_band = Some((pair, b));
                b
            }
        };
        fold_band.push(band);
    }

    // Bands in order, then a counting sort of the folds into them.
    let mut by_rank: Vec<u32> = (0..bands.len() as u32).collect();
    by_rank.sort_unstable_by_key(|&b| bands[b as usize]);
    let mut start = vec![0usize; bands.len() + 1];
    let mut rank = vec![0usize; bands.len()];
    for (r, &b) in by_rank.iter().enumerate() {
        rank[b as usize] = r;
    }
    for &b in &fold_band {
        start[rank[b as usize] + 1] += 1;
    }
    for r in 0..bands.len() {
        start[r + 1] += start[r];
    }
    let mut fill = start.clone();
    let mut keyed: Vec<(i64, i64, u32)> = vec![(0, 0, 0); folds.len()];
    for (i, f) in folds.iter().enumerate() {
        let r = rank[fold_band[i] as usize];
        keyed[fill[r]] = (f.submitted_at, f.id, i as u32);
        fill[r] += 1;
    }
    for r in 0..bands.len() {
        keyed[start[r]..start[r + 1]].sort_unstable();
    }
    if fair.is_some() {
        for r in 0..bands.len() {
            line::fair_reorder_by(
                &mut keyed[start[r]..start[r + 1]],
                |k| fold_owner[k.2 as usize] as usize,
                &owners.usage,
            );
        }
    }
    let order = keyed
        .iter()
        .map(|&(_, id, i)| Ordered {
            id,
            shape: fold_shape[i as usize],
            rank: fold_rank[i as usize],
        })
        .collect();
    Prepared {
        queues,
        images,
        shapes,
        order,
        reqs,
    }
}

/// Why `fold` would or would not match on `runners` now, and on an empty pool.
///
/// Runners that can take the fold right now are not rejected; the summary then says so.
pub fn explain(fold: &PendingFold, runners: &[RunnerView]) -> Explanation {
    let (images, image) = match fold.image.as_deref() {
        Some(image) => (vec![image], 0),
        None => (vec![], NO_IMAGE),
    };
    let mut reqs = Reqs::new(runners, false);
    let mut shape = Shape::of(fold, 0, image);
    reqs.classify(fold, &mut shape);
    let mut pool = Pool::new(runners, vec![fold.queue.as_str()], images, reqs);
    pool.explain(&shape, true)
}

/// Why a fold can never run, and the hold code that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmatchable {
    /// `requirements` when only requirements that cannot be evaluated (type errors) stand in
    /// the way, `unmatchable` otherwise.
    pub code: HoldCode,
    pub reason: String,
}

/// `Some` when no runner could run the fold even if the whole pool were idle.
///
/// This is a capacity check against the runners' totals: current usage and availability are
/// ignored (an unavailable runner may come back). An empty runner list is unmatchable.
pub fn unmatchable(fold: &PendingFold, runners: &[RunnerView]) -> Option<Unmatchable> {
    let mut reqs = Reqs::new(runners, true);
    let mut shape = Shape::of(fold, 0, if fold.image.is_some() { 0 } else { NO_IMAGE });
    reqs.classify(fold, &mut shape);
    let never = capacity::capacity_reason(
        &fold.queue,
        fold.image.as_deref(),
        &shape,
        runners,
        &mut reqs,
    )?;
    Some(Unmatchable {
        code: if never.errors_only {
            HoldCode::Requirements
        } else {
            HoldCode::Unmatchable
        },
        reason: never.reason,
    })
}

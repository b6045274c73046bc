//! Matching from the [`IdleIndex`]: the same decisions as [`schedule`](super::schedule) on a
//! snapshot of the same folds and runners, at a cost that follows the groups it visits and the
//! folds it places, not the number of idle folds.
//!
//! Why it is the same: `schedule` takes folds in line order and places each on the best-fit
//! runner that passes every step; a fold whose shape has no candidate left leaves nothing
//! changed (its shape is dead for the rest of the cycle). So visiting, in line order, only the
//! fronts of the groups whose shape is not dead yields the same placements. Within a band the
//! fronts are merged with a heap by the same key `schedule` sorts by: (submit time, id), or
//! with fair share (virtual time, submit time, id), where a fold's virtual time is its owner's
//! usage plus its rank among the owner's folds in the band ([`IdleIndex::owner_rank`]).
//!
//! Only runners with a free slot take part: the others fail the Slots step for every fold,
//! whatever its shape. The best-fit normalisation still spans the whole pool.
//!
//! The owner cap (`max_running_per_owner`) keeps, of each owner, only the first `cap -
//! running` folds in line (as the master's filter before `schedule` did): a group's front is
//! skipped once its rank among the owner's folds reaches that room.

use super::feasibility::{Pool, Shape, NO_IMAGE};
use super::index::{IdleIndex, Key};
use super::rank::{Norm, PoolSize};
use super::requirements::Reqs;
use super::{Assignment, FairShare, RunnerView};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// At most `cap` folds of one owner run at once; `running` counts those running now.
#[derive(Clone, Copy, Debug)]
pub struct OwnerCap<'a> {
    pub cap: u32,
    pub running: &'a BTreeMap<&'a str, usize>,
}

/// A group's front in the band's merge: ordered so that the heap pops the first in line.
#[derive(PartialEq)]
struct Front {
    /// Virtual time (fair share), else 0.
    vt: f64,
    key: Key,
    group: u32,
    /// Position of the front within the group's folds.
    at: usize,
}

impl Eq for Front {}

impl Ord for Front {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the smallest (first in line) pops first.
        other.vt.total_cmp(&self.vt).then(other.key.cmp(&self.key))
    }
}

impl PartialOrd for Front {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a shape stands in this cycle (as in `schedule`).
enum ShapeState {
    New,
    Live(Vec<u32>),
    Dead,
}

/// One matching cycle over the index: the assignments `schedule` would make for the same
/// idle folds (filtered by `cap` as the master filters them) and runners.
///
/// `runners` need only hold the runners that may take a fold now (available, a free slot;
/// others are skipped anyway), so a caller with a busy pool passes a few; `size` is the whole
/// pool's (`PoolSize::of` all runners), which best fit normalises by. An assignment's `runner`
/// indexes `runners`.
pub fn schedule_index(
    index: &IdleIndex,
    runners: &[RunnerView],
    size: PoolSize,
    fair: Option<&FairShare>,
    cap: Option<OwnerCap<'_>>,
) -> Vec<Assignment> {
    let open: Vec<usize> = runners
        .iter()
        .enumerate()
        .filter(|(_, r)| r.unavailable.is_none() && r.slots_free.min(r.slots_total) > 0)
        .map(|(i, _)| i)
        .collect();
    if open.is_empty() || index.is_empty() {
        return Vec::new();
    }
    let views: Vec<RunnerView> = open.iter().map(|&i| runners[i].clone()).collect();

    // Queues and images the idle folds name, interned as `schedule` does.
    let mut queues: Vec<&str> = Vec::new();
    let mut images: Vec<&str> = Vec::new();
    let mut queue_ids: HashMap<&str, u32> = HashMap::new();
    let mut image_ids: HashMap<&str, u32> = HashMap::new();
    let mut group_lane: HashMap<u32, (u32, u32)> = HashMap::new();
    for band in index.bands.values() {
        for &g in &band.groups {
            let fold = &index.group(g).fold;
            let q = *queue_ids.entry(fold.queue.as_str()).or_insert_with(|| {
                queues.push(fold.queue.as_str());
                (queues.len() - 1) as u32
            });
            let i = match fold.image.as_deref() {
                None => NO_IMAGE,
                Some(image) => *image_ids.entry(image).or_insert_with(|| {
                    images.push(image);
                    (images.len() - 1) as u32
                }),
            };
            group_lane.insert(g, (q, i));
        }
    }
    let reqs = Reqs::new(&views, false);
    let mut pool = Pool::new(&views, queues, images, reqs);
    pool.norm = Norm::of(&size);

    let mut shape_ids: HashMap<Shape, u32> = HashMap::new();
    let mut shapes: Vec<(Shape, ShapeState)> = Vec::new();
    // Per group met in this cycle: its shape and rank class.
    let mut classified: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut assignments = Vec::new();
    // Per owner: folds in earlier bands (for the cap's line rank).
    let mut earlier: HashMap<&str, usize> = HashMap::new();
    let usage = |o: &str| fair.and_then(|f| f.usage.get(o).copied()).unwrap_or(0.0);
    let room = |o: &str| {
        cap.map(|c| (c.cap as usize).saturating_sub(c.running.get(o).copied().unwrap_or(0)))
    };

    for band in index.bands.values() {
        if pool.open_runners() == 0 {
            break;
        }
        let front = |g: u32, at: usize| -> Option<Front> {
            let group = index.group(g);
            let key = *group.folds.get(at)?;
            let vt = match fair {
                Some(_) => {
                    let owner = group.fold.owner.as_str();
                    usage(owner) + index.owner_rank(band, owner, key) as f64
                }
                None => 0.0,
            };
            Some(Front {
                vt,
                key,
                group: g,
                at,
            })
        };
        let mut heap: BinaryHeap<Front> = band.groups.iter().filter_map(|&g| front(g, 0)).collect();
        while let Some(next) = heap.pop() {
            if pool.open_runners() == 0 {
                break;
            }
            let group = index.group(next.group);
            let owner = group.fold.owner.as_str();
            if let Some(room) = room(owner) {
                let rank = earlier.get(owner).copied().unwrap_or(0)
                    + index.owner_rank(band, owner, next.key);
                if rank >= room {
                    // The owner's later folds rank higher still: the whole group is done.
                    continue;
                }
            }
            let (sid, rank_class) = *classified.entry(next.group).or_insert_with(|| {
                let (q, i) = group_lane[&next.group];
                let mut shape = Shape::of(&group.fold, q, i);
                let rank = pool.reqs.classify(&group.fold, &mut shape);
                let sid = *shape_ids.entry(shape).or_insert_with(|| {
                    shapes.push((shape, ShapeState::New));
                    (shapes.len() - 1) as u32
                });
                (sid, rank)
            });
            let (shape, state) = &mut shapes[sid as usize];
            let shape = *shape;
            if matches!(state, ShapeState::Dead) {
                continue;
            }
            let pick = if pool.open_for(shape.queue) == 0 {
                None
            } else {
                if matches!(state, ShapeState::New) {
                    *state = ShapeState::Live(pool.candidates(&shape));
                }
                let ShapeState::Live(candidates) = state else {
                    unreachable!("a shape that is not dead has candidates by now")
                };
                pool.best_fit(&shape, rank_class, candidates)
            };
            match pick {
                Some(r) => {
                    let gpus = pool.place(r, &shape);
                    assignments.push(Assignment {
                        fold: next.key.1,
                        runner: open[r],
                        gpus,
                    });
                    if let Some(f) = front(next.group, next.at + 1) {
                        heap.push(f);
                    }
                }
                None => shapes[sid as usize].1 = ShapeState::Dead,
            }
        }
        for (owner, (_, n)) in &band.owners {
            *earlier.entry(owner.as_str()).or_default() += n;
        }
    }
    assignments
}

//! The feasibility steps and the pool's working state during one cycle.
//!
//! Steps, in order (see `Step`): Available, Queue, Image, Requirements, RunnerRequirements,
//! Slots, Cpus, Memory, Gpus, TimeLimit. All but the resource steps depend only on the runner
//! and the fold's shape; the resource steps depend on what is free, which only shrinks during
//! a cycle.
//!
//! A shape's queue and image select a *lane*: the available runners that serve the queue and
//! accept the image. Lanes are built once per cycle, on first use; candidates and explanations
//! only look at the runners of their lane.

use super::rank::{natural_cmp, Norm};
use super::requirements::{Reqs, NONE};
use super::{PendingFold, Rejection, RunnerView, Step};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast, deterministic hasher for interning (FxHash). Maps built with it are only
/// used for lookups, never iterated, so their order cannot leak into a plan.
#[derive(Default, Clone, Copy)]
pub(super) struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
}

pub(super) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Resources a runner has (in total, or free right now), in the scheduler's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Room {
    pub slots: u32,
    pub millicpus: u32,
    pub memory: u64,
    pub gpus: u32,
}

/// `Shape::image` of a fold that names no image.
pub(super) const NO_IMAGE: u32 = u32::MAX;

/// What a fold asks for. Folds of equal shape are interchangeable for matching, so they share
/// candidate lists and explanations. `queue` indexes `Pool::queues`, `image` `Pool::images`
/// (`NO_IMAGE`: the fold names none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub queue: u32,
    pub image: u32,
    pub millicpus: u32,
    pub memory: u64,
    pub gpus: u32,
    pub hard_limit_ms: Option<u64>,
    /// The classes of the fold's requirements and of the runners' requirements on it
    /// (`requirements::NONE`: nothing to check); see `Reqs::classify`. A fold's rank is not
    /// part of its shape: it changes which runner is picked, not which ones may be.
    pub req: u32,
    pub runner_req: u32,
}

impl Shape {
    /// The shape without requirements or rank (see `Reqs::classify` for those).
    pub fn of(f: &PendingFold, queue: u32, image: u32) -> Shape {
        Shape {
            queue,
            image,
            millicpus: f.millicpus,
            memory: f.memory,
            gpus: f.gpus,
            hard_limit_ms: f.hard_limit_ms,
            req: NONE,
            runner_req: NONE,
        }
    }

    /// The first resource step (Slots, Cpus, Memory, Gpus) that `room` fails.
    #[inline]
    pub fn resource_failure(&self, room: &Room) -> Option<Step> {
        if room.slots == 0 {
            Some(Step::Slots)
        } else if room.millicpus < self.millicpus {
            Some(Step::Cpus)
        } else if room.memory < self.memory {
            Some(Step::Memory)
        } else if room.gpus < self.gpus {
            Some(Step::Gpus)
        } else {
            None
        }
    }

    #[inline]
    pub fn fits(&self, room: &Room) -> bool {
        room.slots > 0
            && room.millicpus >= self.millicpus
            && room.memory >= self.memory
            && room.gpus >= self.gpus
    }

    /// The TimeLimit step: only checked when both the fold and the runner set a hard limit.
    #[inline]
    pub fn limit_ok(&self, runner_limit: Option<u64>) -> bool {
        match (self.hard_limit_ms, runner_limit) {
            (Some(fold), Some(runner)) => fold <= runner,
            _ => true,
        }
    }

    /// Resource steps then TimeLimit: the first that fails against `room`.
    #[inline]
    pub fn failure(&self, room: &Room, runner_limit: Option<u64>) -> Option<Step> {
        self.resource_failure(room)
            .or_else(|| (!self.limit_ok(runner_limit)).then_some(Step::TimeLimit))
    }
}

/// The Queue step.
pub(super) fn serves(r: &RunnerView, queue: &str) -> bool {
    r.queues.iter().any(|q| q == queue || q == "*")
}

/// The Image step: whether a runner with this allowlist (None: a process runner) can run a
/// fold naming `image`. A docker runner runs the images it lists ("*" = any); for folds naming
/// none, its first entry (unless "*") is the default image. Process runners take no images.
/// A pinned image (`NAME@sha256:HEX`, a rerun's) is matched by its NAME.
pub fn accepts_image(allowlist: Option<&[String]>, image: Option<&str>) -> bool {
    let image = image.map(crate::model::provenance::unpinned);
    match (allowlist, image) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(list), Some(img)) => list.iter().any(|i| i == img || i == "*"),
        (Some(list), None) => list.first().is_some_and(|i| i != "*"),
    }
}

/// What the runner has when nothing runs on it. GPUs are counted once per distinct id.
pub(super) fn capacity(r: &RunnerView) -> Room {
    Room {
        slots: r.slots_total,
        millicpus: r.millicpus_total,
        memory: r.memory_total,
        gpus: distinct(&r.gpus_total) as u32,
    }
}

/// How many distinct ids; without allocating for the usual handful of GPUs.
fn distinct(ids: &[String]) -> usize {
    if ids.len() <= 32 {
        (0..ids.len())
            .filter(|&i| !ids[..i].contains(&ids[i]))
            .count()
    } else {
        let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len()
    }
}

/// The runner's free GPU ids in grant order: only ids that are also in `gpus_total`, each once,
/// lowest first (natural order, so "gpu2" comes before "gpu10").
pub(super) fn free_gpu_ids(r: &RunnerView) -> Vec<&str> {
    let mut ids: Vec<&str> = r
        .gpus_free
        .iter()
        .filter(|g| r.gpus_total.contains(g))
        .map(String::as_str)
        .collect();
    ids.sort_unstable_by(|a, b| natural_cmp(a, b));
    ids.dedup();
    ids
}

/// What is free on the runner now, never more than its capacity (a caller that reports more
/// free than total cannot make the scheduler oversubscribe).
fn free_room(r: &RunnerView, total: &Room, gpus_free: usize) -> Room {
    Room {
        slots: r.slots_free.min(total.slots),
        millicpus: r.millicpus_free.min(total.millicpus),
        memory: r.memory_free.min(total.memory),
        gpus: gpus_free as u32,
    }
}

/// The pool during one cycle: capacity, what was free at the start, what is free now, and an
/// index of runners by queue and by lane. Queue ids index `queues`, image ids `images` (the
/// queues and images the cycle's folds name).
pub(super) struct Pool<'a> {
    pub runners: &'a [RunnerView],
    pub queues: Vec<&'a str>,
    pub images: Vec<&'a str>,
    pub total: Vec<Room>,
    pub initial: Vec<Room>,
    pub free: Vec<Room>,
    pub norm: Norm,
    /// Free GPU ids per runner in grant order; `gpu_next` of them are already granted.
    gpu_ids: Vec<Vec<&'a str>>,
    gpu_next: Vec<u32>,
    /// Available runners that serve "*".
    star: Vec<u32>,
    /// Per runner: whether it is available and serves "*".
    is_star: Vec<bool>,
    /// Per runner: the queue ids it serves by name (available runners without "*" only).
    own_queues: Vec<Vec<u32>>,
    /// Per queue id: available runners that name it (without "*"), ascending.
    named: Vec<Vec<u32>>,
    /// Per queue id: available runners serving it, ascending (merged on first use).
    pub(super) serving: Vec<Option<Vec<u32>>>,
    /// Per queue id: all runners serving it, available or not (computed on first use).
    serving_any: Vec<Option<std::rc::Rc<[u32]>>>,
    /// Runners with a free slot that serve some queue of `queues`: all, "*" ones, per queue.
    open: usize,
    open_star: usize,
    open_named: Vec<usize>,
    /// Cached Available and Queue rejections per queue id (they do not depend on the shape).
    pub(super) head: Vec<Option<Vec<Rejection>>>,
    /// Per lane (see `lane`): available runners serving its queue that accept its image,
    /// ascending (computed on first use), and the cached Image rejections.
    pub(super) lane_serving: Vec<Option<Vec<u32>>>,
    pub(super) lane_head: Vec<Option<Vec<Rejection>>>,
    /// The requirements and ranks of this cycle's shapes.
    pub reqs: Reqs<'a>,
}

impl<'a> Pool<'a> {
    pub fn new(
        runners: &'a [RunnerView],
        queues: Vec<&'a str>,
        images: Vec<&'a str>,
        reqs: Reqs<'a>,
    ) -> Pool<'a> {
        let queue_ids: FxMap<&str, u32> = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (*q, i as u32))
            .collect();
        let n = runners.len();
        let lanes = queues.len() * (images.len() + 1);
        let mut pool = Pool {
            runners,
            total: Vec::with_capacity(n),
            initial: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            norm: Norm::new(runners),
            gpu_ids: Vec::with_capacity(n),
            gpu_next: vec![0; n],
            star: Vec::new(),
            is_star: vec![false; n],
            own_queues: vec![Vec::new(); n],
            named: vec![Vec::new(); queues.len()],
            serving: vec![None; queues.len()],
            serving_any: vec![None; queues.len()],
            open: 0,
            open_star: 0,
            open_named: vec![0; queues.len()],
            head: vec![None; queues.len()],
            lane_serving: vec![None; lanes],
            lane_head: vec![None; lanes],
            reqs,
            queues,
            images,
        };
        for (i, r) in runners.iter().enumerate() {
            let total = capacity(r);
            let ids = free_gpu_ids(r);
            let free = free_room(r, &total, ids.len());
            pool.total.push(total);
            pool.initial.push(free);
            pool.free.push(free);
            pool.gpu_ids.push(ids);
            if r.unavailable.is_some() {
                continue;
            }
            let open = free.slots > 0;
            if r.queues.iter().any(|q| q == "*") {
                pool.is_star[i] = true;
                pool.star.push(i as u32);
                if open {
                    pool.open += 1;
                    pool.open_star += 1;
                }
                continue;
            }
            let mut own: Vec<u32> = r
                .queues
                .iter()
                .filter_map(|q| queue_ids.get(q.as_str()).copied())
                .collect();
            own.sort_unstable();
            own.dedup();
            for &q in &own {
                pool.named[q as usize].push(i as u32);
                if open {
                    pool.open_named[q as usize] += 1;
                }
            }
            if open && !own.is_empty() {
                pool.open += 1;
            }
            pool.own_queues[i] = own;
        }
        pool
    }

    /// Runners with a free slot that serve a queue of this cycle's folds.
    pub fn open_runners(&self) -> usize {
        self.open
    }

    /// Runners with a free slot that serve queue `q`.
    #[inline]
    pub fn open_for(&self, q: u32) -> usize {
        self.open_star + self.open_named[q as usize]
    }

    /// Available runners serving queue `q`, ascending.
    pub fn serving(&mut self, q: u32) -> &[u32] {
        let q = q as usize;
        if self.serving[q].is_none() {
            let (a, b) = (&self.named[q], &self.star);
            let mut merged = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                if j == b.len() || (i < a.len() && a[i] < b[j]) {
                    merged.push(a[i]);
                    i += 1;
                } else {
                    merged.push(b[j]);
                    j += 1;
                }
            }
            self.serving[q] = Some(merged);
        }
        self.serving[q].as_deref().expect("merged above")
    }

    /// The lane of `shape`: an index into the per-lane caches.
    #[inline]
    pub fn lane(&self, shape: &Shape) -> usize {
        let per_queue = self.images.len() + 1;
        let image = if shape.image == NO_IMAGE {
            self.images.len()
        } else {
            shape.image as usize
        };
        shape.queue as usize * per_queue + image
    }

    /// The image `shape` names, if any.
    pub fn image(&self, shape: &Shape) -> Option<&'a str> {
        (shape.image != NO_IMAGE).then(|| self.images[shape.image as usize])
    }

    /// Available runners serving the shape's queue that accept its image, ascending: the
    /// runners that pass the Available, Queue and Image steps.
    pub fn lane_serving(&mut self, shape: &Shape) -> &[u32] {
        let lane = self.lane(shape);
        if self.lane_serving[lane].is_none() {
            let (runners, image) = (self.runners, self.image(shape));
            let accepting = self
                .serving(shape.queue)
                .iter()
                .copied()
                .filter(|&r| accepts_image(runners[r as usize].images.as_deref(), image))
                .collect();
            self.lane_serving[lane] = Some(accepting);
        }
        self.lane_serving[lane].as_deref().expect("computed above")
    }

    /// All runners serving queue `q`, available or not, ascending.
    pub fn serving_any(&mut self, q: u32) -> std::rc::Rc<[u32]> {
        let (runners, queue) = (self.runners, self.queues[q as usize]);
        self.serving_any[q as usize]
            .get_or_insert_with(|| {
                (0..runners.len() as u32)
                    .filter(|&i| serves(&runners[i as usize], queue))
                    .collect()
            })
            .clone()
    }

    /// Runners that pass every step for `shape` right now, ascending.
    pub fn candidates(&mut self, shape: &Shape) -> Vec<u32> {
        self.lane_serving(shape);
        let serving = self.lane_serving[self.lane(shape)]
            .as_deref()
            .unwrap_or(&[]);
        serving
            .iter()
            .copied()
            .filter(|&r| {
                let r = r as usize;
                shape.fits(&self.free[r])
                    && shape.limit_ok(self.runners[r].hard_limit_ms)
                    && self.reqs.passes(shape, r)
            })
            .collect()
    }

    /// The best-fit runner among `candidates` (see `rank`), dropping those that can no longer
    /// take the shape: free room only shrinks within a cycle, so they never could again.
    /// With a `rank` class (not `NONE`), the highest rank wins first.
    pub fn best_fit(&self, shape: &Shape, rank: u32, candidates: &mut Vec<u32>) -> Option<usize> {
        if rank != NONE {
            return self.best_ranked(shape, rank, candidates);
        }
        let mut best: Option<(f64, u32, u32)> = None;
        let mut kept = 0;
        for k in 0..candidates.len() {
            let r = candidates[k];
            let room = &self.free[r as usize];
            if !shape.fits(room) {
                continue;
            }
            candidates[kept] = r;
            kept += 1;
            let left = self.norm.leftover(room, shape);
            // Candidates are ascending, so on a tie the lower index stays.
            let better = match best {
                None => true,
                Some((l, slots, _)) => left < l || (left == l && room.slots < slots),
            };
            if better {
                best = Some((left, room.slots, r));
            }
        }
        candidates.truncate(kept);
        best.map(|(_, _, r)| r as usize)
    }

    /// `best_fit` for a shape with a rank: the highest rank first, then best fit.
    fn best_ranked(&self, shape: &Shape, rank: u32, candidates: &mut Vec<u32>) -> Option<usize> {
        let mut best: Option<(f64, f64, u32, u32)> = None;
        candidates.retain(|&r| shape.fits(&self.free[r as usize]));
        for &r in candidates.iter() {
            let room = &self.free[r as usize];
            let value = self.reqs.rank(rank, r as usize);
            let left = self.norm.leftover(room, shape);
            let better = match best {
                None => true,
                Some((k, l, slots, _)) => {
                    value > k || (value == k && (left < l || (left == l && room.slots < slots)))
                }
            };
            if better {
                best = Some((value, left, room.slots, r));
            }
        }
        best.map(|(_, _, _, r)| r as usize)
    }

    /// Grants `shape` on runner `r`: subtracts it from what is free and returns the GPU ids,
    /// the lowest free ones.
    pub fn place(&mut self, r: usize, shape: &Shape) -> Vec<String> {
        let room = &mut self.free[r];
        debug_assert!(shape.fits(room), "placing on a runner without room");
        room.slots -= 1;
        room.millicpus -= shape.millicpus;
        room.memory -= shape.memory;
        room.gpus -= shape.gpus;
        let from = self.gpu_next[r] as usize;
        let to = from + shape.gpus as usize;
        self.gpu_next[r] = to as u32;
        let gpus = self.gpu_ids[r][from..to]
            .iter()
            .map(|g| g.to_string())
            .collect();
        if room.slots == 0 {
            self.close(r);
        }
        gpus
    }

    /// Runner `r` has just used its last free slot.
    fn close(&mut self, r: usize) {
        if self.runners[r].unavailable.is_some() {
            return;
        }
        if self.is_star[r] {
            self.open -= 1;
            self.open_star -= 1;
        } else if !self.own_queues[r].is_empty() {
            self.open -= 1;
            for &q in &self.own_queues[r] {
                self.open_named[q as usize] -= 1;
            }
        }
    }
}

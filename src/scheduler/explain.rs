//! Why a fold does not match: the first failing step per runner, aggregated into a few lines a
//! person can act on, and a one-line summary.

use super::capacity::capacity_reason_in;
use super::feasibility::{accepts_image, serves, Pool, Room, Shape};
use super::requirements::NONE;
use super::{Explanation, Rejection, RunnerView, Step};

mod words;
use crate::model::{FoldId, FoldState};
use words::union_list;
pub(super) use words::*;

/// Steps after Image, as indices into a `Tally`.
pub(super) const TALLIED: [Step; 5] = [
    Step::Slots,
    Step::Cpus,
    Step::Memory,
    Step::Gpus,
    Step::TimeLimit,
];

pub(super) fn tally_index(step: Step) -> usize {
    match step {
        Step::Slots => 0,
        Step::Cpus => 1,
        Step::Memory => 2,
        Step::Gpus => 3,
        Step::TimeLimit => 4,
        Step::Available
        | Step::Queue
        | Step::Image
        | Step::Requirements
        | Step::RunnerRequirements => unreachable!("not tallied per resource"),
    }
}

/// What a runner offers for one step: the free (or total) amount, or its hard limit.
pub(super) fn offered(step: Step, room: &Room, limit: Option<u64>) -> u64 {
    match step {
        Step::Slots => room.slots as u64,
        Step::Cpus => room.millicpus as u64,
        Step::Memory => room.memory,
        Step::Gpus => room.gpus as u64,
        Step::TimeLimit => limit.unwrap_or(u64::MAX),
        Step::Available
        | Step::Queue
        | Step::Image
        | Step::Requirements
        | Step::RunnerRequirements => 0,
    }
}

/// Runners rejected at each resource step, with the range of what they offer and the first
/// runner offering the most.
#[derive(Clone, Debug)]
pub(super) struct Tally {
    pub n: [usize; 5],
    lo: [u64; 5],
    pub hi: [u64; 5],
    pub top: [usize; 5],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            n: [0; 5],
            lo: [u64::MAX; 5],
            hi: [0; 5],
            top: [0; 5],
        }
    }
}

impl Tally {
    pub fn add(&mut self, step: Step, value: u64, runner: usize) {
        let k = tally_index(step);
        if self.n[k] == 0 || value > self.hi[k] {
            self.hi[k] = value;
            self.top[k] = runner;
        }
        self.lo[k] = self.lo[k].min(value);
        self.n[k] += 1;
    }

    /// One rejection per step that rejected a runner, in step order, against what is free
    /// now (`Free`) or what the runners have in all (`InAll`).
    fn rejections(&self, shape: &Shape, of: Offer) -> Vec<Rejection> {
        TALLIED
            .iter()
            .enumerate()
            .filter(|(k, _)| self.n[*k] > 0)
            .map(|(k, &step)| Rejection {
                step,
                runners: self.n[k],
                detail: detail(step, self.n[k], self.lo[k], self.hi[k], shape, of),
            })
            .collect()
    }
}

/// What a resource rejection compares the fold with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// What is free now (the runner could run the fold once others end).
    Free,
    /// The runner's whole capacity (it can never run the fold, busy or not).
    InAll,
}

/// The detail line of a rejection against what is free now or what runners have in all.
fn detail(step: Step, n: usize, lo: u64, hi: u64, shape: &Shape, of: Offer) -> String {
    let who = n_runners(n);
    let have = verb(n, "has", "have");
    let at_most = if lo == hi { "" } else { "at most " };
    let free = match of {
        Offer::Free => "free",
        Offer::InAll => "in all",
    };
    match step {
        Step::Slots if of == Offer::InAll => format!("slots: {who} {have} no slots"),
        Step::Slots => format!("slots: {who} {have} no free slot"),
        Step::Cpus => {
            let ask = shape.millicpus as u64;
            format!(
                "cpus: {who} {have} {at_most}{} {} {free}, fold asks {}",
                cpus(hi),
                cpus_word(hi),
                cpus(ask)
            )
        }
        Step::Memory => {
            let (h, a) = sizes(hi, shape.memory);
            format!("memory: {who} {have} {at_most}{h} {free}, fold asks {a}")
        }
        Step::Gpus => format!(
            "gpus: {who} {have} {at_most}{hi} {} {free}, fold asks {}",
            gpus_word(hi),
            shape.gpus
        ),
        Step::TimeLimit => {
            let (h, a) = durations(hi, shape.hard_limit_ms.unwrap_or(0));
            format!(
                "time limit: {who} {} folds {at_most}{h}, fold's hard limit is {a}",
                verb(n, "allows", "allow")
            )
        }
        Step::Available
        | Step::Queue
        | Step::Image
        | Step::Requirements
        | Step::RunnerRequirements => {
            unreachable!("written by head_rejections, image_rejections and requirements")
        }
    }
}

/// "it allows: a, b" / "they allow: a, b, ..." / "they allow no images", for docker runners.
fn allows(docker: &[&RunnerView]) -> String {
    let n = docker.len();
    let list = union_list(docker.iter().filter_map(|r| r.images.as_deref()));
    let they = verb(n, "it allows", "they allow");
    if list.is_empty() {
        format!("{they} no images")
    } else {
        format!("{they}: {list}")
    }
}

/// The Image rejections of `refused`: runners that do not accept a fold naming `image`.
fn image_rejections(refused: &[&RunnerView], image: Option<&str>) -> Vec<Rejection> {
    let docker: Vec<&RunnerView> = refused
        .iter()
        .copied()
        .filter(|r| r.images.is_some())
        .collect();
    let process = refused.len() - docker.len();
    let mut out = Vec::new();
    let n = docker.len();
    if n > 0 {
        let detail = match image {
            Some(img) => format!(
                "image: {} {} image {img:?} ({})",
                n_runners(n),
                verb(n, "does not allow", "do not allow"),
                allows(&docker)
            ),
            None => format!(
                "image: {} {} no default image; name one with --image ({})",
                n_runners(n),
                verb(n, "has", "have"),
                allows(&docker)
            ),
        };
        out.push(Rejection {
            step: Step::Image,
            runners: n,
            detail,
        });
    }
    if process > 0 {
        let n = process;
        out.push(Rejection {
            step: Step::Image,
            runners: n,
            detail: format!(
                "image: {} {} plain processes and {} no images",
                n_runners(n),
                verb(n, "runs", "run"),
                verb(n, "takes", "take")
            ),
        });
    }
    out
}

/// Why no runner of `serving` (all serving the fold's queue, none accepting its image) can run
/// a fold naming `image`.
pub(super) fn image_reason(serving: &[&RunnerView], image: Option<&str>, scope: &str) -> String {
    let docker: Vec<&RunnerView> = serving
        .iter()
        .copied()
        .filter(|r| r.images.is_some())
        .collect();
    let list = union_list(docker.iter().filter_map(|r| r.images.as_deref()));
    let mut what = Vec::new();
    if !docker.is_empty() {
        what.push(if list.is_empty() {
            "docker runners allow no images".to_string()
        } else {
            format!("docker runners allow: {list}")
        });
    }
    let process = serving.len() - docker.len();
    if process > 0 {
        what.push(format!(
            "{} {} plain processes",
            n_runners(process),
            verb(process, "runs", "run")
        ));
    }
    let what = what.join("; ");
    match image {
        Some(img) => format!("image: no runner{scope} allows image {img:?} ({what})"),
        None => format!(
            "image: no runner{scope} takes folds without an image; name one with --image ({what})"
        ),
    }
}

/// The Queue rejection of these runners, which do not serve `queue` (None when there are none).
fn queue_rejection(not_serving: &[&RunnerView], queue: &str) -> Option<Rejection> {
    let n = not_serving.len();
    if n == 0 {
        return None;
    }
    let served = queue_list(not_serving.iter().copied());
    let they = if served.is_empty() {
        format!("{} no queues", verb(n, "it serves", "they serve"))
    } else {
        format!("{}: {served}", verb(n, "it serves", "they serve"))
    };
    Some(Rejection {
        step: Step::Queue,
        runners: n,
        detail: format!(
            "queue: {} {} serve queue {queue:?} ({they})",
            n_runners(n),
            verb(n, "does not", "do not")
        ),
    })
}

/// The Available rejection of these unavailable runners (None when there are none).
fn unavailable(down: &[&RunnerView]) -> Option<Rejection> {
    let n = down.len();
    if n == 0 {
        return None;
    }
    let names = down.iter().map(|r| {
        format!(
            "{}: {}",
            r.name,
            r.unavailable.as_deref().unwrap_or_default()
        )
    });
    Some(Rejection {
        step: Step::Available,
        runners: n,
        detail: format!(
            "available: {} {} unavailable ({})",
            n_runners(n),
            verb(n, "is", "are"),
            name_list(names, n)
        ),
    })
}

impl Pool<'_> {
    /// On demand (not in a cycle): the unavailable runners that could never run `shape`
    /// anyway are rejected at the step that will always stop them: the queue they do not
    /// serve, the image they do not take, or (for a shape without requirements) the capacity
    /// step their whole resources fail, tallied in `never`. The Available rejection in
    /// `rejections` keeps the others: a runner down *and* unable to run the fold is rejected
    /// for what would stop it once back, as the summary says.
    fn down_but_never(&self, shape: &Shape, rejections: &mut Vec<Rejection>, never: &mut Tally) {
        let (queue, image) = (self.queues[shape.queue as usize], self.image(shape));
        let plain = shape.req == NONE && shape.runner_req == NONE;
        let (mut others, mut not_serving, mut refused) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in self.runners.iter().enumerate() {
            if r.unavailable.is_none() {
                continue;
            }
            if !serves(r, queue) {
                not_serving.push(r);
                continue;
            }
            if !accepts_image(r.images.as_deref(), image) {
                refused.push(r);
                continue;
            }
            let (limit, total) = (r.hard_limit_ms, &self.total[i]);
            let fits = shape.limit_ok(limit) && shape.fits(total);
            match (!fits && plain)
                .then(|| shape.failure(total, limit))
                .flatten()
            {
                Some(step) => never.add(step, offered(step, total, limit), i),
                None => others.push(r),
            }
        }
        rejections.retain(|r| r.step != Step::Available);
        rejections.splice(0..0, unavailable(&others));
        rejections.extend(queue_rejection(&not_serving, queue));
        rejections.extend(image_rejections(&refused, image));
    }

    /// The Available and Queue rejections for queue `q`; they do not depend on the shape.
    fn head_rejections(&mut self, q: u32) -> Vec<Rejection> {
        if let Some(head) = &self.head[q as usize] {
            return head.clone();
        }
        let runners = self.runners;
        let queue = self.queues[q as usize];
        let mut head = Vec::new();
        let down: Vec<&RunnerView> = runners.iter().filter(|r| r.unavailable.is_some()).collect();
        head.extend(unavailable(&down));
        let not_serving: Vec<&RunnerView> = runners
            .iter()
            .filter(|r| r.unavailable.is_none() && !serves(r, queue))
            .collect();
        head.extend(queue_rejection(&not_serving, queue));
        self.head[q as usize] = Some(head.clone());
        head
    }

    /// The Image rejections for the lane of `shape` (they do not depend on the resources).
    fn lane_image_rejections(&mut self, shape: &Shape) -> Vec<Rejection> {
        let lane = self.lane(shape);
        if let Some(head) = &self.lane_head[lane] {
            return head.clone();
        }
        let (runners, image) = (self.runners, self.image(shape));
        let refused: Vec<&RunnerView> = self
            .serving(shape.queue)
            .iter()
            .map(|&i| &runners[i as usize])
            .filter(|r| !accepts_image(r.images.as_deref(), image))
            .collect();
        let head = image_rejections(&refused, image);
        self.lane_head[lane] = Some(head.clone());
        head
    }

    /// Why `shape` does not match now. With `now_allowed`, runners that can take it right now
    /// are fine and the summary says so (on demand); in a cycle there are none.
    pub fn explain(&mut self, shape: &Shape, now_allowed: bool) -> Explanation {
        let q = shape.queue;
        let mut rejections = self.head_rejections(q);
        rejections.extend(self.lane_image_rejections(shape));
        let lane = self.lane(shape);
        self.lane_serving(shape);
        let serving = self.lane_serving[lane].take().unwrap_or_default();
        let judged = (shape.req != NONE || shape.runner_req != NONE)
            .then(|| self.reqs.judge(lane as u64, shape, &serving));
        if let Some(j) = &judged {
            rejections.extend(j.rejections.iter().cloned());
        }
        let meeting = judged.as_ref().map_or(&serving, |j| &j.passing);
        // A runner the fold can never fit is rejected at the first step its whole capacity
        // fails (a busy 2G runner is rejected for memory, not for its slot, when the fold
        // asks 4G): the table then agrees with a summary that blames memory.
        let mut never = Tally::default();
        if now_allowed {
            self.down_but_never(shape, &mut rejections, &mut never);
        }
        let mut busy = Tally::default();
        let mut now: Vec<usize> = Vec::new();
        let (mut usable, mut outranked) = (0, 0);
        for &r in meeting {
            let r = r as usize;
            let limit = self.runners[r].hard_limit_ms;
            let total = &self.total[r];
            if !(shape.limit_ok(limit) && shape.fits(total)) {
                let step = shape
                    .failure(total, limit)
                    .expect("a shape that does not fit a runner fails one of its steps");
                never.add(step, offered(step, total, limit), r);
                continue;
            }
            usable += 1;
            let free = &self.free[r];
            match shape.failure(free, limit) {
                Some(step) => {
                    busy.add(step, offered(step, free, limit), r);
                    if shape.fits(&self.initial[r]) {
                        outranked += 1;
                    }
                }
                None => now.push(r),
            }
        }
        self.lane_serving[lane] = Some(serving);
        rejections.extend(never.rejections(shape, Offer::InAll));
        rejections.extend(busy.rejections(shape, Offer::Free));

        let summary = if usable == 0 {
            self.unusable_summary(shape)
        } else if !now.is_empty() {
            let best = now
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    let (ra, rb) = (&self.free[a], &self.free[b]);
                    let la = self.norm.leftover(ra, shape);
                    let lb = self.norm.leftover(rb, shape);
                    la.total_cmp(&lb)
                        .then(ra.slots.cmp(&rb.slots))
                        .then(a.cmp(&b))
                })
                .expect("not empty");
            format!(
                "can run now: {} {} room (best fit: {})",
                n_runners(now.len()),
                verb(now.len(), "has", "have"),
                self.runners[best].name
            )
        } else {
            let why: Vec<String> = busy
                .rejections(shape, Offer::Free)
                .into_iter()
                .map(|r| r.detail)
                .collect();
            let mut s = format!(
                "waiting for free resources: {} that could run it {} busy ({})",
                n_runners(usable),
                verb(usable, "is", "are"),
                why.join("; ")
            );
            if outranked > 0 && !now_allowed {
                s.push_str(&format!(
                    "; {} had room at the start of this cycle, taken by folds ranked ahead",
                    n_runners(outranked)
                ));
            }
            s
        };
        Explanation {
            runners: self.runners.len(),
            rejections,
            outranked: if now_allowed { 0 } else { outranked },
            matches_empty_pool: usable > 0,
            summary,
        }
    }

    /// The summary when no available runner could run the shape even if idle.
    fn unusable_summary(&mut self, shape: &Shape) -> String {
        let (queue, image) = (self.queues[shape.queue as usize], self.image(shape));
        let serving = self.serving_any(shape.queue);
        let (runners, total) = (self.runners, &self.total);
        let reqs = &mut self.reqs;
        let reason = capacity_reason_in(queue, image, shape, runners, &serving, reqs, |i| total[i]);
        if let Some(never) = reason {
            return format!("{NEVER}: {}", never.reason);
        }
        let could: Vec<&RunnerView> = serving
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| {
                let r = &runners[i];
                r.unavailable.is_some()
                    && accepts_image(r.images.as_deref(), image)
                    && shape.limit_ok(r.hard_limit_ms)
                    && shape.fits(&total[i])
                    && reqs.passes(shape, i)
            })
            .map(|i| &runners[i])
            .collect();
        let n = could.len();
        let names = could.iter().map(|r| {
            format!(
                "{}: {}",
                r.name,
                r.unavailable.as_deref().unwrap_or_default()
            )
        });
        format!(
            "no available runner can run this fold: {} that could {} unavailable ({})",
            n_runners(n),
            verb(n, "is", "are"),
            name_list(names, n)
        )
    }
}

/// How the summary of a fold no runner of the pool could ever run begins.
const NEVER: &str = "no runner can ever run this fold";

/// What `analyze` says of a fold that is not waiting to run, in place of the pool's answer
/// (`pool`, the summary of `explain`); None for an idle fold, whose answer is the pool's. A
/// held fold keeps the pool's answer, for when it is released.
pub fn state_summary(
    id: FoldId,
    state: FoldState,
    reason: Option<&str>,
    runner: Option<&str>,
    pool: &str,
) -> Option<String> {
    let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    let on = runner
        .map(|r| format!(" on runner {r}"))
        .unwrap_or_default();
    Some(match state {
        FoldState::Idle => return None,
        FoldState::Waiting => format!(
            "waiting{why}: it gets in line once the folds it depends on end (or its array is under its cap)"
        ),
        FoldState::Held if pool.starts_with(NEVER) => {
            format!("held{why}: releasing it would not help: {pool}")
        }
        FoldState::Held => {
            format!("held{why}: it waits for `datarun queue release {id}`; released now: {pool}")
        }
        FoldState::Assigned => format!("assigned{on}: it is starting, not waiting for a runner"),
        FoldState::Running => format!("running{on}: it is not waiting for a runner"),
        FoldState::Done => format!("done{on}: it ran to the end; nothing waits"),
        FoldState::Failed => {
            format!("failed{why}: it will not run again unless it is submitted again")
        }
        FoldState::Removed => format!("removed{why}: it will not run"),
    })
}

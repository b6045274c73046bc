//! Whether a fold could ever run on the pool: the capacity check behind `unmatchable` (a
//! fold no runner could run even if idle is held at submit) and the "never" summaries.

use super::explain::{
    cpus, cpus_word, durations, gpus_word, image_reason, n_runners, offered, queue_list, sizes,
    verb, Tally, TALLIED,
};
use super::feasibility::{accepts_image, capacity, serves, Room, Shape};
use super::requirements::Reqs;
use super::{RunnerView, Step};

/// Why no runner could ever run a shape.
pub(super) struct Never {
    pub reason: String,
    /// Only requirements that cannot be evaluated (type errors) stand in the way.
    pub errors_only: bool,
}

impl Never {
    fn because(reason: String) -> Option<Never> {
        Some(Never {
            reason,
            errors_only: false,
        })
    }
}

/// `Some(reason)` when no runner serving `queue` and accepting `image` could run `shape` even
/// with nothing running on it (totals, availability ignored); the reason names the step and
/// the best runner.
pub(super) fn capacity_reason(
    queue: &str,
    image: Option<&str>,
    shape: &Shape,
    runners: &[RunnerView],
    reqs: &mut Reqs,
) -> Option<Never> {
    let serving: Vec<u32> = (0..runners.len() as u32)
        .filter(|&i| serves(&runners[i as usize], queue))
        .collect();
    capacity_reason_in(queue, image, shape, runners, &serving, reqs, |i| {
        capacity(&runners[i])
    })
}

/// `capacity_reason` given the runners serving `queue` (ascending) and their capacity.
pub(super) fn capacity_reason_in(
    queue: &str,
    image: Option<&str>,
    shape: &Shape,
    runners: &[RunnerView],
    serving: &[u32],
    reqs: &mut Reqs,
    total: impl Fn(usize) -> Room,
) -> Option<Never> {
    if runners.is_empty() {
        return Never::because("no runners are configured".into());
    }
    if serving.is_empty() {
        let served = queue_list(runners.iter());
        return Never::because(if served.is_empty() {
            format!("queue: no runner serves queue {queue:?} (no runner serves any queue)")
        } else {
            format!("queue: no runner serves queue {queue:?} (runners serve: {served})")
        });
    }
    let mut scope = if serving.len() == runners.len() {
        String::new()
    } else {
        format!(" serving queue {queue:?}")
    };
    let accepting: Vec<u32> = serving
        .iter()
        .copied()
        .filter(|&i| accepts_image(runners[i as usize].images.as_deref(), image))
        .collect();
    if accepting.is_empty() {
        let serving: Vec<&RunnerView> = serving.iter().map(|&i| &runners[i as usize]).collect();
        return Never::because(image_reason(&serving, image, &scope));
    }
    if accepting.len() < serving.len() {
        if !scope.is_empty() {
            scope.push_str(" and");
        }
        match image {
            Some(img) => scope.push_str(&format!(" allowing image {img:?}")),
            None => scope.push_str(" taking folds without an image"),
        }
    }
    // A name for this set of runners: those serving the queue that accept the image.
    let set = 1 << 63 | u64::from(shape.queue) << 32 | u64::from(shape.image);
    let judged = reqs.judge(set, shape, &accepting);
    let serving = &judged.passing;
    if serving.is_empty() {
        let reason: Vec<&str> = judged
            .rejections
            .iter()
            .map(|r| r.detail.as_str())
            .collect();
        return Some(Never {
            reason: reason.join("; "),
            errors_only: judged.errors_only,
        });
    }
    let mut t = Tally::default();
    for &i in serving {
        let i = i as usize;
        let r = &runners[i];
        let cap = total(i);
        match shape.failure(&cap, r.hard_limit_ms) {
            None => return None,
            Some(step) => t.add(step, offered(step, &cap, r.hard_limit_ms), i),
        }
    }
    let mut parts = Vec::new();
    for (k, &step) in TALLIED.iter().enumerate() {
        let n = t.n[k];
        if n == 0 {
            continue;
        }
        let every = n == serving.len();
        let hi = t.hi[k];
        let name = &runners[t.top[k]].name;
        let some = format!("{}{scope} {}", n_runners(n), verb(n, "has", "have"));
        let (what, asks, most) = match step {
            Step::Slots => {
                parts.push(if every {
                    format!("slots: no runner{scope} has any slots")
                } else {
                    format!("slots: {some} no slots")
                });
                continue;
            }
            Step::Cpus => (
                "cpus",
                format!(
                    "{} {}",
                    cpus(shape.millicpus as u64),
                    cpus_word(shape.millicpus as u64)
                ),
                cpus(hi),
            ),
            Step::Memory => {
                let (h, a) = sizes(hi, shape.memory);
                ("memory", a, h)
            }
            Step::Gpus => (
                "gpus",
                format!("{} {}", shape.gpus, gpus_word(shape.gpus as u64)),
                hi.to_string(),
            ),
            Step::TimeLimit => {
                let (h, a) = durations(hi, shape.hard_limit_ms.unwrap_or(0));
                parts.push(if every {
                    format!("time limit: fold's hard limit is {a}, the longest any runner{scope} allows is {h} ({name})")
                } else {
                    format!(
                        "time limit: fold's hard limit is {a}, {}{scope} {} at most {h} (longest: {name})",
                        n_runners(n),
                        verb(n, "allows", "allow")
                    )
                });
                continue;
            }
            Step::Available
            | Step::Queue
            | Step::Image
            | Step::Requirements
            | Step::RunnerRequirements => unreachable!("not tallied"),
        };
        parts.push(if every {
            format!("{what}: fold asks {asks}, the most any runner{scope} has is {most} ({name})")
        } else {
            format!("{what}: fold asks {asks}, {some} at most {most} (largest: {name})")
        });
    }
    Never::because(parts.join("; "))
}

//! One full `scheduler::schedule` cycle on a big snapshot: 100,000 idle folds and 1,000 runners
//! with 8 slots each. Target: under 50 ms per cycle (release build).
//!
//! Run with `cargo bench --bench scheduler`. Five cases:
//! - idle pool: every runner empty; the cycle fills the pool, then the early exit explains the
//!   rest;
//! - nearly full: only 10 free slots in the whole pool;
//! - images: the idle pool with a quarter of the runners docker runners and 35% of the
//!   folds naming an image (the Image step; see `with_images`);
//! - fair share: the idle pool with 50 owners taking turns;
//! - requirements and rank: the idle pool with requirements on both sides, custom
//!   attributes and rank (see `with_requirements`); target under 100 ms.

use datarun::scheduler::{schedule, PendingFold, Plan, RunnerView, Snapshot};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;
const MIN: u64 = 60_000;
const FOLDS: usize = 100_000;
const RUNNERS: usize = 1_000;
const SLOTS: u32 = 8;
const WARMUP: usize = 3;
const CYCLES: usize = 20;
const TARGET_MS: f64 = 50.0;
const REQUIREMENTS_TARGET_MS: f64 = 100.0;

/// Deterministic pseudo-random numbers (PCG-style LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn runners(rng: &mut Lcg) -> Vec<RunnerView> {
    (0..RUNNERS)
        .map(|i| {
            let (queues, gpus): (&[&str], usize) = match i % 10 {
                0 => (&["*"], 0),
                1 | 2 => (&["default", "H"], 0),
                3 => (&["L"], 0),
                4 => (&["gpu"], rng.pick(&[2, 4, 8])),
                _ => (&["default"], 0),
            };
            let cpus = rng.pick(&[16_000, 32_000, 64_000]);
            let memory = rng.pick(&[32 * G, 64 * G, 128 * G, 256 * G]);
            let ids: Vec<String> = (0..gpus).map(|g| g.to_string()).collect();
            RunnerView {
                name: format!("runner{i:04}"),
                queues: queues.iter().map(|q| q.to_string()).collect(),
                slots_total: SLOTS,
                slots_free: SLOTS,
                millicpus_total: cpus,
                millicpus_free: cpus,
                memory_total: memory,
                memory_free: memory,
                gpus_free: ids.clone(),
                gpus_total: ids,
                hard_limit_ms: rng.pick(&[None, Some(120 * MIN), Some(480 * MIN)]),
                unavailable: (rng.next().is_multiple_of(100)).then(|| "connecting".to_string()),
                images: None,
                arch: Some("x86_64".into()),
                os: Some("linux".into()),
                labels: vec![],
                attributes: BTreeMap::new(),
                requirements: None,
            }
        })
        .collect()
}

fn folds(rng: &mut Lcg) -> Vec<PendingFold> {
    (0..FOLDS)
        .map(|i| {
            let queue = match rng.next() % 100 {
                0..=54 => "default",
                55..=69 => "H",
                70..=79 => "L",
                80..=96 => "gpu",
                // Served only by the "*" runners.
                _ => "overflow",
            };
            let gpus = if queue == "gpu" {
                rng.pick(&[1, 1, 1, 2, 2, 4, 16])
            } else {
                0
            };
            // About 1% ask for more memory than any runner has.
            let memory = if rng.next().is_multiple_of(100) {
                1 << 40
            } else {
                rng.pick(&[512 * M, G, 2 * G, 4 * G, 8 * G, 16 * G])
            };
            PendingFold {
                id: i as i64 + 1,
                queue: queue.to_string(),
                owner: format!("user{}", rng.next() % 50),
                priority: rng.pick(&[-10, 0, 0, 0, 10]),
                submitted_at: 1_700_000_000_000 + (rng.next() % 86_400_000) as i64,
                millicpus: rng.pick(&[500, 1000, 2000, 4000, 8000]),
                memory,
                gpus,
                hard_limit_ms: rng.pick(&[None, Some(30 * MIN), Some(240 * MIN), Some(720 * MIN)]),
                image: None,
                requirements: None,
                rank: None,
            }
        })
        .collect()
}

fn idle_snapshot() -> Snapshot {
    let mut rng = Lcg(42);
    Snapshot {
        runners: runners(&mut rng),
        folds: folds(&mut rng),
        queue_priority: BTreeMap::from([("H".to_string(), 10), ("L".to_string(), -10)]),
        fair_share: None,
    }
}

/// The same pool with everything busy except 10 slots.
fn nearly_full_snapshot() -> Snapshot {
    let mut snap = idle_snapshot();
    for (i, r) in snap.runners.iter_mut().enumerate() {
        let open = i % 100 == 5;
        r.slots_free = u32::from(open);
        r.millicpus_free = r.millicpus_total / 8;
        r.memory_free = r.memory_total / 8;
        r.gpus_free.truncate(r.gpus_free.len() / 2);
    }
    snap
}

fn run(name: &str, snap: &Snapshot) -> f64 {
    // BENCH_CASE=requirements runs only the cases whose name contains it (for profiling).
    if std::env::var("BENCH_CASE").is_ok_and(|only| !name.contains(&only)) {
        return 0.0;
    }
    let mut first: Option<Plan> = None;
    for _ in 0..WARMUP {
        first = Some(schedule(black_box(snap)));
    }
    let mut ms = Vec::with_capacity(CYCLES);
    let mut last = None;
    for _ in 0..CYCLES {
        let t = Instant::now();
        let plan = schedule(black_box(snap));
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(plan);
    }
    let (first, last) = (first.expect("warm-up ran"), last.expect("cycles ran"));
    assert_eq!(
        first, last,
        "{name}: the same snapshot must give the same plan"
    );
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "  {name:<12} min {:6.2} ms  median {:6.2} ms  max {:6.2} ms   {} assigned, {} unmatched, {} explanations",
        ms[0],
        median,
        ms[ms.len() - 1],
        last.assignments.len(),
        last.unmatched.len(),
        last.explanations.len()
    );
    median
}

/// A quarter of the runners are docker runners (half of them allow the python image, half
/// python and torch; python is their default); the rest run plain processes. 20% of the folds
/// name python, 10% torch, 5% an image no runner allows; the rest name none.
fn with_images(mut snap: Snapshot) -> Snapshot {
    const PY: &str = "datarun/fold-python:0.1";
    const TORCH: &str = "datarun/fold-torch:2.3";
    let list = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for (i, r) in snap.runners.iter_mut().enumerate() {
        r.images = match i % 8 {
            0 => list(&[PY]),
            4 => list(&[PY, TORCH]),
            _ => None,
        };
    }
    for f in &mut snap.folds {
        f.image = match f.id % 20 {
            0..=3 => Some(PY.into()),
            4 | 5 => Some(TORCH.into()),
            6 => Some("evil:latest".into()),
            _ => None,
        };
    }
    snap
}

/// Requirements and rank: runners get labels, custom attributes (`disk`, `generation`) and
/// a tenth of them requirements on folds (`owner != "guest" || queue == "L"`); folds, from 50
/// owners and a guest, carry one of five requirements (or none) and 30% rank by memory.
fn with_requirements(mut snap: Snapshot) -> Snapshot {
    use datarun::scheduler::AttrValue;
    for (i, r) in snap.runners.iter_mut().enumerate() {
        if i % 3 == 0 {
            r.labels = vec!["fast-disk".into()];
        }
        r.attributes = BTreeMap::from([
            (
                "disk".to_string(),
                AttrValue::Str(if i % 2 == 0 { "ssd" } else { "hdd" }.into()),
            ),
            ("generation".to_string(), AttrValue::Int((i % 4) as i64 + 1)),
        ]);
        if i % 10 == 7 {
            r.requirements = Some("owner != \"guest\" || queue == \"L\"".into());
        }
    }
    const REQUIREMENTS: [&str; 5] = [
        "\"fast-disk\" in labels",
        "disk == \"ssd\" && generation >= 2",
        "arch == \"x86_64\" && memory >= 64G",
        "gpus >= 2",
        "cpus >= 32 || generation == 4",
    ];
    for f in &mut snap.folds {
        f.owner = if f.id % 20 == 0 {
            "guest".to_string()
        } else {
            format!("owner{:02}", f.id % 50)
        };
        f.requirements = match f.id % 20 {
            0..=7 => None,
            8..=11 => Some(REQUIREMENTS[0].into()),
            12..=14 => Some(REQUIREMENTS[1].into()),
            15 | 16 => Some(REQUIREMENTS[2].into()),
            17 | 18 => Some(REQUIREMENTS[3].into()),
            _ => Some(REQUIREMENTS[4].into()),
        };
        f.rank = (f.id % 10 < 3).then(|| "memory".to_string());
    }
    snap
}

/// Folds spread over 50 owners with different past usage; fair share on.
fn with_owners(mut snap: Snapshot) -> Snapshot {
    for f in &mut snap.folds {
        f.owner = format!("owner{:02}", f.id % 50);
    }
    let usage = (0..50)
        .map(|o| (format!("owner{o:02}"), (o * 7 % 13) as f64))
        .collect();
    snap.fair_share = Some(datarun::scheduler::FairShare { usage });
    snap
}

fn main() {
    let idle = idle_snapshot();
    let full = nearly_full_snapshot();
    println!(
        "scheduler: one schedule() cycle, {FOLDS} folds, {RUNNERS} runners x {SLOTS} slots, \
         {CYCLES} cycles after {WARMUP} warm-up"
    );
    let a = run("idle pool", &idle);
    let b = run("nearly full", &full);
    let c = run("images", &with_images(idle.clone()));
    let d = run("fair share, 50 owners", &with_owners(idle.clone()));
    let e = run("requirements and rank", &with_requirements(idle));
    let worst = a.max(b).max(c).max(d);
    println!(
        "  target < {TARGET_MS} ms per cycle (median): {}",
        if worst < TARGET_MS { "met" } else { "MISSED" }
    );
    println!(
        "  target < {REQUIREMENTS_TARGET_MS} ms per cycle with requirements (median): {}",
        if e < REQUIREMENTS_TARGET_MS {
            "met"
        } else {
            "MISSED"
        }
    );
}

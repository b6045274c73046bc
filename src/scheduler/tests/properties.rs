//! Properties over many snapshots: determinism, no oversubscription, leftovers that really do
//! not fit, early stop.

use super::*;

#[test]
fn the_same_snapshot_gives_the_same_plan_whatever_the_input_order() {
    let mut rng = Lcg(7);
    let (snap, _) = random_snapshot(&mut rng, 40, 2000);
    let a = schedule(&snap);
    let b = schedule(&snap);
    assert_eq!(a, b);
    assert!(!a.assignments.is_empty() && !a.unmatched.is_empty());
    // Shuffle the folds and the queue table: the ordering keys decide, not the input order.
    let mut shuffled = snap.clone();
    for i in (1..shuffled.folds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        shuffled.folds.swap(i, j);
    }
    let c = schedule(&shuffled);
    assert_eq!(a.assignments, c.assignments);
    assert_eq!(a.unmatched.len(), c.unmatched.len());
}

/// A random runner: partly busy, sometimes unavailable, sometimes with GPUs or images.
pub(super) fn random_runner(rng: &mut Lcg, i: usize) -> RunnerView {
    let slots = rng.below(5) as u32;
    let cpus = 1 + rng.below(16) as u32;
    let memory = (1 + rng.below(32)) * G;
    let mut r = runner(&format!("r{i}"), &[], slots, cpus, memory);
    r.queues = match rng.below(5) {
        0 => vec!["*".into()],
        1 => vec!["default".into(), "H".into()],
        2 => vec!["L".into()],
        3 => vec!["gpu".into(), "default".into()],
        _ => vec!["default".into()],
    };
    r.slots_free = rng.below(slots as u64 + 1) as u32;
    r.millicpus_free = rng.below(r.millicpus_total as u64 + 1) as u32;
    r.memory_free = rng.below(memory + 1);
    let n_gpus = if rng.below(3) == 0 { rng.below(5) } else { 0 };
    let ids: Vec<String> = (0..n_gpus).map(|g| format!("gpu{g}")).collect();
    r.gpus_free = ids.iter().filter(|_| rng.below(3) > 0).cloned().collect();
    r.gpus_total = ids;
    r.hard_limit_ms = [None, Some(HOUR), Some(4 * HOUR)][rng.below(3) as usize];
    if rng.below(10) == 0 {
        r.unavailable = Some("connecting".into());
    }
    r.images = match rng.below(6) {
        0 => Some(vec![PY.into()]),
        1 => Some(vec![PY.into(), TORCH.into()]),
        2 => Some(vec!["*".into()]),
        _ => None,
    };
    r
}

/// A random fold: queue, resources, priority, submit time, hard limit, image.
pub(super) fn random_fold(rng: &mut Lcg, id: i64) -> PendingFold {
    let queues = ["default", "H", "L", "gpu"];
    let mut f = fold(
        id,
        queues[rng.below(4) as usize],
        [250, 500, 1000, 2000, 4000, 8000][rng.below(6) as usize],
        [256 * M, G, 2 * G, 4 * G, 16 * G][rng.below(5) as usize],
        [0, 0, 0, 1, 2, 3][rng.below(6) as usize],
    );
    f.priority = rng.below(3) as i64 - 1;
    f.submitted_at = rng.below(1000) as i64;
    f.hard_limit_ms = [None, Some(HOUR / 2), Some(2 * HOUR)][rng.below(3) as usize];
    f.image = [None, None, Some(PY), Some(TORCH), Some("evil:latest")][rng.below(5) as usize]
        .map(String::from);
    f
}

/// A random pool (partly busy, some unavailable, some GPU runners) and random folds.
fn random_snapshot(rng: &mut Lcg, runners: usize, folds: usize) -> (Snapshot, ()) {
    let rs: Vec<RunnerView> = (0..runners).map(|i| random_runner(rng, i)).collect();
    let fs: Vec<PendingFold> = (0..folds as i64).map(|id| random_fold(rng, id)).collect();
    let mut snap = snapshot(fs, rs);
    snap.queue_priority.insert("H".into(), 5);
    (snap, ())
}

#[test]
fn grants_never_exceed_what_is_free_and_leftovers_really_do_not_fit() {
    let mut rng = Lcg(2024);
    for round in 0..60 {
        let (snap, ()) = random_snapshot(&mut rng, 1 + round % 25, 300);
        let plan = schedule(&snap);
        let folds: BTreeMap<i64, &PendingFold> = snap.folds.iter().map(|f| (f.id, f)).collect();

        // Every fold exactly once, in an assignment or unmatched.
        let mut seen: Vec<i64> = assigned_ids(&plan);
        seen.extend(plan.unmatched.iter().map(|u| u.0));
        seen.sort_unstable();
        assert_eq!(
            seen,
            folds.keys().copied().collect::<Vec<_>>(),
            "round {round}"
        );

        // Subtract every grant; nothing may go below zero, no GPU twice.
        let mut left = snap.runners.clone();
        for a in &plan.assignments {
            let f = folds[&a.fold];
            let r = &mut left[a.runner];
            assert!(r.unavailable.is_none(), "round {round}: unavailable runner");
            assert!(
                r.queues.iter().any(|q| q == &f.queue || q == "*"),
                "round {round}: queue"
            );
            if let (Some(fl), Some(rl)) = (f.hard_limit_ms, r.hard_limit_ms) {
                assert!(fl <= rl, "round {round}: time limit");
            }
            assert!(
                accepts_image(r.images.as_deref(), f.image.as_deref()),
                "round {round}: image {:?} on {:?}",
                f.image,
                r.images
            );
            r.slots_free = r.slots_free.checked_sub(1).expect("slots oversubscribed");
            r.millicpus_free = r
                .millicpus_free
                .checked_sub(f.millicpus)
                .expect("cpus oversubscribed");
            r.memory_free = r
                .memory_free
                .checked_sub(f.memory)
                .expect("memory oversubscribed");
            assert_eq!(a.gpus.len(), f.gpus as usize, "round {round}");
            for g in &a.gpus {
                let k = r
                    .gpus_free
                    .iter()
                    .position(|x| x == g)
                    .expect("GPU granted twice or not free");
                r.gpus_free.remove(k);
            }
        }

        // Free room only shrinks in a cycle, so a fold left unmatched cannot fit what is left.
        for &(id, e) in &plan.unmatched {
            let f = folds[&id];
            let now = explain(f, &left);
            assert!(
                !now.summary.starts_with("can run now"),
                "round {round}: fold {id} fits the leftovers: {}",
                now.summary
            );
            let e = &plan.explanations[e];
            let rejected: usize = e.rejections.iter().map(|r| r.runners).sum();
            assert_eq!(rejected, snap.runners.len(), "round {round}: {e:?}");
            assert_eq!(
                e.matches_empty_pool, now.matches_empty_pool,
                "round {round}"
            );
        }
    }
}

#[test]
fn the_cycle_stops_when_no_slot_is_left() {
    let runners = vec![
        runner("a", &["default"], 1, 8, 16 * G),
        runner("b", &["*"], 1, 8, 16 * G),
        RunnerView {
            slots_free: 0,
            ..runner("c", &["default"], 4, 8, 16 * G)
        },
    ];
    let mut folds: Vec<PendingFold> = (1..=1000)
        .map(|id| fold(id, "default", 1000, G, 0))
        .collect();
    folds.push(fold(5000, "default", 1000, 64 * G, 0));
    folds.push(fold(5001, "L", 500, G, 0));
    let plan = schedule(&snapshot(folds, runners));
    assert_eq!(assigned_ids(&plan), vec![1, 2]);
    assert_eq!(plan.unmatched.len(), 1000);
    let by_id: BTreeMap<i64, usize> = plan.unmatched.iter().copied().collect();
    let waiting = &plan.explanations[by_id[&3]];
    assert_eq!(
        waiting.rejections,
        vec![Rejection {
            step: Step::Slots,
            runners: 3,
            detail: "slots: 3 runners have no free slot".into()
        }]
    );
    assert_eq!(waiting.outranked, 2);
    let never = &plan.explanations[by_id[&5000]];
    assert!(!never.matches_empty_pool);
    assert!(never
        .summary
        .starts_with("no runner can ever run this fold: memory"));
    // "L" is served by b only, and b is full.
    let l = &plan.explanations[by_id[&5001]];
    assert!(l.matches_empty_pool);
    assert_eq!(l.rejections[0].step, Step::Queue);
    assert_eq!(
        l.rejections[0].detail,
        "queue: 2 runners do not serve queue \"L\" (they serve: default)"
    );
    assert_eq!(plan.explanations.len(), 3);
}

#[test]
fn a_runner_reporting_more_free_than_total_is_not_oversubscribed() {
    let r = RunnerView {
        slots_free: 10,
        millicpus_free: 100_000,
        memory_free: 100 * G,
        ..runner("r", &["default"], 2, 2, 2 * G)
    };
    let folds = (1..=5).map(|id| fold(id, "default", 1000, G, 0)).collect();
    let plan = schedule(&snapshot(folds, vec![r]));
    assert_eq!(assigned_ids(&plan), vec![1, 2]);
}

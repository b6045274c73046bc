use super::*;

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;
const HOUR: u64 = 3_600_000;

/// An idle runner: everything free.
fn runner(name: &str, queues: &[&str], slots: u32, cpus: u32, memory: u64) -> RunnerView {
    RunnerView {
        name: name.into(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        slots_total: slots,
        slots_free: slots,
        millicpus_total: cpus * 1000,
        millicpus_free: cpus * 1000,
        memory_total: memory,
        memory_free: memory,
        gpus_total: vec![],
        gpus_free: vec![],
        hard_limit_ms: None,
        unavailable: None,
        images: None,
    }
}

fn with_gpus(mut r: RunnerView, total: &[&str], free: &[&str]) -> RunnerView {
    r.gpus_total = total.iter().map(|g| g.to_string()).collect();
    r.gpus_free = free.iter().map(|g| g.to_string()).collect();
    r
}

/// `r` as a docker runner with this image allowlist.
fn docker(r: RunnerView, images: &[&str]) -> RunnerView {
    RunnerView {
        images: Some(images.iter().map(|i| i.to_string()).collect()),
        ..r
    }
}

/// `f` naming this image.
fn named(f: PendingFold, image: &str) -> PendingFold {
    PendingFold {
        image: Some(image.into()),
        ..f
    }
}

const PY: &str = "datarun/fold-python:0.1";
const TORCH: &str = "datarun/fold-torch:2.3";

fn fold(id: i64, queue: &str, millicpus: u32, memory: u64, gpus: u32) -> PendingFold {
    PendingFold {
        id,
        queue: queue.into(),
        owner: "alice".into(),
        priority: 0,
        submitted_at: 1_000 + id,
        millicpus,
        memory,
        gpus,
        hard_limit_ms: None,
        image: None,
    }
}

fn snapshot(folds: Vec<PendingFold>, runners: Vec<RunnerView>) -> Snapshot {
    Snapshot {
        folds,
        runners,
        queue_priority: BTreeMap::new(),
        fair_share: None,
    }
}

fn assigned_ids(plan: &Plan) -> Vec<i64> {
    plan.assignments.iter().map(|a| a.fold).collect()
}

/// Deterministic pseudo-random numbers for property-style loops.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn folds_are_taken_by_queue_priority_then_priority_then_submit_time_then_id() {
    // (id, queue, priority, submitted_at)
    let table: &[(i64, &str, i64, i64)] = &[
        (1, "default", 0, 100),
        (2, "default", 5, 300),
        (3, "H", -5, 500),
        (4, "default", 5, 200),
        (5, "L", 100, 50),
        (6, "default", 0, 100),
        (7, "H", -5, 400),
    ];
    let folds: Vec<PendingFold> = table
        .iter()
        .map(|&(id, queue, priority, submitted_at)| PendingFold {
            priority,
            submitted_at,
            ..fold(id, queue, 1000, G, 0)
        })
        .collect();
    let mut snap = snapshot(folds, vec![runner("big", &["*"], 100, 100, 100 * G)]);
    snap.queue_priority = BTreeMap::from([("H".to_string(), 10), ("L".to_string(), -10)]);
    let plan = schedule(&snap);
    assert_eq!(assigned_ids(&plan), vec![7, 3, 4, 2, 1, 6, 5]);

    // With room for only three, the first three in that order win.
    snap.runners[0].slots_free = 3;
    let plan = schedule(&snap);
    assert_eq!(assigned_ids(&plan), vec![7, 3, 4]);
    let waiting: Vec<i64> = plan.unmatched.iter().map(|u| u.0).collect();
    assert_eq!(waiting, vec![2, 1, 6, 5]);
}

#[test]
fn each_step_rejects_with_an_actionable_detail() {
    struct Case {
        name: &'static str,
        runner: RunnerView,
        fold: PendingFold,
        step: Step,
        detail: &'static str,
    }
    let base = || runner("r1", &["default", "H"], 4, 8, 16 * G);
    let ask = || fold(1, "default", 2000, 4 * G, 0);
    let cases = vec![
        Case {
            name: "available",
            runner: RunnerView {
                unavailable: Some("draining".into()),
                ..base()
            },
            fold: ask(),
            step: Step::Available,
            detail: "available: 1 runner is unavailable (r1: draining)",
        },
        Case {
            name: "queue",
            runner: base(),
            fold: fold(1, "gpu", 2000, 4 * G, 0),
            step: Step::Queue,
            detail: "queue: 1 runner does not serve queue \"gpu\" (it serves: default, H)",
        },
        Case {
            name: "image",
            runner: docker(base(), &[PY]),
            fold: named(ask(), "evil:latest"),
            step: Step::Image,
            detail: "image: 1 runner does not allow image \"evil:latest\" (it allows: datarun/fold-python:0.1)",
        },
        Case {
            name: "slots",
            runner: RunnerView {
                slots_free: 0,
                memory_free: G,
                ..base()
            },
            fold: ask(),
            step: Step::Slots,
            detail: "slots: 1 runner has no free slot",
        },
        Case {
            name: "cpus",
            runner: RunnerView {
                millicpus_free: 1500,
                memory_free: G,
                ..base()
            },
            fold: ask(),
            step: Step::Cpus,
            detail: "cpus: 1 runner has 1.5 CPUs free, fold asks 2",
        },
        Case {
            name: "memory",
            runner: RunnerView {
                memory_free: 2 * G,
                ..base()
            },
            fold: ask(),
            step: Step::Memory,
            detail: "memory: 1 runner has 2G free, fold asks 4G",
        },
        Case {
            name: "gpus",
            runner: with_gpus(base(), &["0", "1", "2", "3"], &["1", "3"]),
            fold: fold(1, "default", 2000, 4 * G, 3),
            step: Step::Gpus,
            detail: "gpus: 1 runner has 2 GPUs free, fold asks 3",
        },
        Case {
            name: "time limit",
            runner: RunnerView {
                hard_limit_ms: Some(HOUR),
                ..base()
            },
            fold: PendingFold {
                hard_limit_ms: Some(2 * HOUR),
                ..ask()
            },
            step: Step::TimeLimit,
            detail: "time limit: 1 runner allows folds 1h00m, fold's hard limit is 2h00m",
        },
    ];
    for c in cases {
        let want = vec![Rejection {
            step: c.step,
            runners: 1,
            detail: c.detail.to_string(),
        }];
        let e = explain(&c.fold, std::slice::from_ref(&c.runner));
        assert_eq!(e.rejections, want, "{}: explain", c.name);
        assert_eq!(e.runners, 1, "{}", c.name);
        // The cycle agrees with the on-demand explanation.
        let plan = schedule(&snapshot(vec![c.fold.clone()], vec![c.runner.clone()]));
        assert!(plan.assignments.is_empty(), "{}", c.name);
        assert_eq!(plan.unmatched, vec![(1, 0)], "{}", c.name);
        assert_eq!(
            plan.explanations[0].rejections, want,
            "{}: schedule",
            c.name
        );
    }
}

#[test]
fn rejections_aggregate_the_first_failing_step_per_runner() {
    let mut runners = vec![
        runner("a", &["default"], 4, 8, 16 * G),
        runner("b", &["default"], 4, 8, 16 * G),
        runner("c", &["default"], 4, 8, 16 * G),
        runner("d", &["default"], 4, 8, 16 * G),
        runner("e", &["other"], 4, 8, 16 * G),
    ];
    runners[0].memory_free = G;
    runners[1].memory_free = 2 * G;
    runners[2].memory_free = 2 * G;
    // Full and short of memory: the earlier step (slots) is the one reported.
    runners[3].slots_free = 0;
    runners[3].memory_free = 0;
    let e = explain(&fold(1, "default", 1000, 4 * G, 0), &runners);
    let got: Vec<(Step, usize, &str)> = e
        .rejections
        .iter()
        .map(|r| (r.step, r.runners, r.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Step::Queue,
                1,
                "queue: 1 runner does not serve queue \"default\" (it serves: other)"
            ),
            (Step::Slots, 1, "slots: 1 runner has no free slot"),
            (
                Step::Memory,
                3,
                "memory: 3 runners have at most 2G free, fold asks 4G"
            ),
        ]
    );
    assert!(e.matches_empty_pool);
    assert_eq!(e.outranked, 0);
    assert_eq!(
        e.summary,
        "waiting for free resources: 4 runners that could run it are busy \
         (slots: 1 runner has no free slot; memory: 3 runners have at most 2G free, fold asks 4G)"
    );
}

#[test]
fn best_fit_picks_the_runner_left_with_least_room() {
    // (fold cpus, fold memory, fold gpus, expected runner)
    let table: &[(u32, u64, u32, &str)] = &[
        (2000, 4 * G, 0, "small"),
        (6000, 4 * G, 0, "medium"),
        (2000, 48 * G, 0, "big"),
        (1000, G, 1, "gpu"),
        (100_000, G, 0, "none"),
    ];
    let runners = vec![
        runner("big", &["default"], 8, 64, 256 * G),
        runner("small", &["default"], 8, 4, 8 * G),
        runner("medium", &["default"], 8, 16, 32 * G),
        with_gpus(
            runner("gpu", &["default"], 8, 4, 8 * G),
            &["0", "1"],
            &["0", "1"],
        ),
    ];
    for &(cpus, memory, gpus, want) in table {
        let plan = schedule(&snapshot(
            vec![fold(1, "default", cpus, memory, gpus)],
            runners.clone(),
        ));
        let got = plan
            .assignments
            .first()
            .map_or("none", |a| runners[a.runner].name.as_str());
        assert_eq!(got, want, "fold {cpus}m {memory}B {gpus} gpus");
    }
}

#[test]
fn best_fit_ties_go_to_fewer_free_slots_then_lower_index() {
    let mut runners = vec![
        runner("a", &["default"], 8, 8, 16 * G),
        runner("b", &["default"], 8, 8, 16 * G),
        runner("c", &["default"], 8, 8, 16 * G),
    ];
    let plan = schedule(&snapshot(
        vec![fold(1, "default", 1000, G, 0)],
        runners.clone(),
    ));
    assert_eq!(plan.assignments[0].runner, 0);
    runners[2].slots_free = 3;
    let plan = schedule(&snapshot(
        vec![fold(1, "default", 1000, G, 0)],
        runners.clone(),
    ));
    assert_eq!(plan.assignments[0].runner, 2);
    // Best fit packs: the second fold goes where the first went.
    let plan = schedule(&snapshot(
        vec![
            fold(1, "default", 1000, G, 0),
            fold(2, "default", 1000, G, 0),
        ],
        runners,
    ));
    assert_eq!(
        plan.assignments
            .iter()
            .map(|a| a.runner)
            .collect::<Vec<_>>(),
        vec![2, 2]
    );
}

#[test]
fn gpus_are_granted_as_concrete_lowest_ids_never_twice() {
    let r = with_gpus(
        runner("g", &["default"], 8, 32, 64 * G),
        &["gpu0", "gpu1", "gpu2", "gpu10", "gpu3"],
        // gpu1 is busy; gpu3 is listed twice; gpu9 is not a device of this runner.
        &["gpu10", "gpu3", "gpu0", "gpu2", "gpu3", "gpu9"],
    );
    let folds = vec![
        fold(1, "default", 1000, G, 2),
        fold(2, "default", 1000, G, 1),
        fold(3, "default", 1000, G, 2),
        fold(4, "default", 1000, G, 1),
        fold(5, "default", 1000, G, 0),
    ];
    let plan = schedule(&snapshot(folds, vec![r]));
    let grants: Vec<(i64, Vec<&str>)> = plan
        .assignments
        .iter()
        .map(|a| (a.fold, a.gpus.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        grants,
        vec![
            (1, vec!["gpu0", "gpu2"]),
            (2, vec!["gpu3"]),
            (4, vec!["gpu10"]),
            (5, vec![]),
        ]
    );
    assert_eq!(plan.unmatched.len(), 1);
    let e = &plan.explanations[plan.unmatched[0].1];
    assert_eq!(plan.unmatched[0].0, 3);
    assert_eq!(
        e.rejections[0].detail,
        "gpus: 1 runner has 1 GPU free, fold asks 2"
    );
}

#[test]
fn three_gpus_on_a_runner_with_two_is_unmatchable() {
    let local = with_gpus(
        runner("local", &["default"], 4, 8, 32 * G),
        &["0", "1"],
        &["0", "1"],
    );
    let f = fold(1, "default", 1000, G, 3);
    let reason = unmatchable(&f, std::slice::from_ref(&local)).expect("unmatchable");
    assert_eq!(
        reason,
        "gpus: fold asks 3 GPUs, the most any runner has is 2 (local)"
    );
    let e = explain(&f, std::slice::from_ref(&local));
    assert!(!e.matches_empty_pool);
    assert_eq!(
        e.summary,
        "no runner can ever run this fold: gpus: fold asks 3 GPUs, the most any runner has is 2 (local)"
    );
    let plan = schedule(&snapshot(vec![f], vec![local]));
    assert_eq!(plan.unmatched, vec![(1, 0)]);
    assert_eq!(plan.explanations[0].summary, e.summary);
}

#[test]
fn unmatchable_names_the_step_and_the_best_runner() {
    let mut runners = vec![
        runner("a", &["default", "H"], 4, 8, 16 * G),
        runner("b", &["default"], 4, 32, 64 * G),
        runner("c", &["gpu"], 0, 64, 512 * G),
    ];
    let table: Vec<(PendingFold, Option<&str>)> = vec![
        (fold(1, "default", 8000, 16 * G, 0), None),
        (
            fold(1, "default", 64_000, G, 0),
            Some("cpus: fold asks 64 CPUs, the most any runner serving queue \"default\" has is 32 (b)"),
        ),
        (
            fold(1, "default", 1000, 100 * G, 0),
            Some("memory: fold asks 100G, the most any runner serving queue \"default\" has is 64G (b)"),
        ),
        (
            // One runner short of cpus, the other of memory.
            fold(1, "default", 16_000, 100 * G + 512 * M, 0),
            Some(
                "cpus: fold asks 16 CPUs, 1 runner serving queue \"default\" has at most 8 (largest: a); \
                 memory: fold asks 100.5G, 1 runner serving queue \"default\" has at most 64G (largest: b)",
            ),
        ),
        (
            fold(1, "nope", 1000, G, 0),
            Some("queue: no runner serves queue \"nope\" (runners serve: default, H, gpu)"),
        ),
        (
            fold(1, "gpu", 1000, G, 0),
            Some("slots: no runner serving queue \"gpu\" has any slots"),
        ),
    ];
    for (f, want) in &table {
        assert_eq!(unmatchable(f, &runners).as_deref(), *want, "{f:?}");
    }
    // Availability does not matter for unmatchable: the runner may come back.
    runners[1].unavailable = Some("draining".into());
    assert_eq!(
        unmatchable(&fold(1, "default", 32_000, G, 0), &runners),
        None
    );
    // Time limits.
    runners[0].hard_limit_ms = Some(HOUR);
    runners[1].hard_limit_ms = Some(2 * HOUR);
    let long = PendingFold {
        hard_limit_ms: Some(3 * HOUR),
        ..fold(1, "default", 1000, G, 0)
    };
    assert_eq!(
        unmatchable(&long, &runners).as_deref(),
        Some("time limit: fold's hard limit is 3h00m, the longest any runner serving queue \"default\" allows is 2h00m (b)")
    );
}

#[test]
fn unmatchable_on_an_empty_runner_list() {
    let f = fold(1, "default", 1000, G, 0);
    assert_eq!(
        unmatchable(&f, &[]).as_deref(),
        Some("no runners are configured")
    );
    let e = explain(&f, &[]);
    assert_eq!(e.runners, 0);
    assert!(e.rejections.is_empty());
    assert!(!e.matches_empty_pool);
    assert_eq!(
        e.summary,
        "no runner can ever run this fold: no runners are configured"
    );
    let plan = schedule(&snapshot(vec![f], vec![]));
    assert_eq!(plan.unmatched, vec![(1, 0)]);
    assert_eq!(plan.explanations[0].summary, e.summary);
}

#[test]
fn time_limit_step() {
    // (runner limit, fold limit, matches)
    let table: &[(Option<u64>, Option<u64>, bool)] = &[
        (None, None, true),
        (Some(HOUR), None, true),
        (None, Some(10 * HOUR), true),
        (Some(HOUR), Some(HOUR), true),
        (Some(HOUR), Some(HOUR / 2), true),
        (Some(HOUR), Some(HOUR + 1), false),
    ];
    for &(runner_limit, fold_limit, matches) in table {
        let r = RunnerView {
            hard_limit_ms: runner_limit,
            ..runner("r", &["default"], 1, 1, G)
        };
        let f = PendingFold {
            hard_limit_ms: fold_limit,
            ..fold(1, "default", 1000, G, 0)
        };
        let plan = schedule(&snapshot(vec![f.clone()], vec![r.clone()]));
        assert_eq!(plan.assignments.len() == 1, matches, "{table:?}");
        assert_eq!(unmatchable(&f, &[r]).is_none(), matches);
    }
    // The ms are shown when the rounded durations would read alike.
    let r = RunnerView {
        hard_limit_ms: Some(HOUR),
        ..runner("r", &["default"], 1, 1, G)
    };
    let f = PendingFold {
        hard_limit_ms: Some(HOUR + 1),
        ..fold(1, "default", 1000, G, 0)
    };
    assert_eq!(
        explain(&f, &[r]).rejections[0].detail,
        "time limit: 1 runner allows folds 3600000ms, fold's hard limit is 3600001ms"
    );
}

#[test]
fn unavailable_runners_take_nothing_and_say_why() {
    let runners = vec![
        RunnerView {
            unavailable: Some("draining".into()),
            ..runner("big", &["default"], 8, 64, 256 * G)
        },
        runner("small", &["default"], 8, 4, 8 * G),
    ];
    let f = fold(1, "default", 16_000, 64 * G, 0);
    let plan = schedule(&snapshot(
        vec![f.clone(), fold(2, "default", 1000, G, 0)],
        runners.clone(),
    ));
    assert_eq!(assigned_ids(&plan), vec![2]);
    assert_eq!(plan.assignments[0].runner, 1);
    let e = &plan.explanations[plan.unmatched[0].1];
    assert!(!e.matches_empty_pool);
    assert_eq!(
        e.summary,
        "no available runner can run this fold: 1 runner that could is unavailable (big: draining)"
    );
    assert_eq!(e.rejections[0].step, Step::Available);
    assert_eq!(
        e.rejections[0].detail,
        "available: 1 runner is unavailable (big: draining)"
    );
    // It is not unmatchable: the runner may come back.
    assert_eq!(unmatchable(&f, &runners), None);
    // Nothing available at all: no assignment, and no crash on the early exit.
    let all_down: Vec<RunnerView> = runners
        .iter()
        .map(|r| RunnerView {
            unavailable: Some("connecting".into()),
            ..r.clone()
        })
        .collect();
    let plan = schedule(&snapshot(vec![fold(2, "default", 1000, G, 0)], all_down));
    assert!(plan.assignments.is_empty());
    assert_eq!(plan.explanations.len(), 1);
    assert_eq!(
        plan.explanations[0].summary,
        "no available runner can run this fold: 2 runners that could are unavailable \
         (big: connecting; small: connecting)"
    );
}

#[test]
fn folds_of_one_shape_share_one_explanation() {
    let r = runner("r", &["default"], 2, 4, 8 * G);
    let mut folds: Vec<PendingFold> = (1..=6).map(|id| fold(id, "default", 1000, G, 0)).collect();
    folds.push(fold(7, "default", 1000, 16 * G, 0));
    folds.push(fold(8, "default", 1000, 16 * G, 0));
    folds.push(fold(9, "gpu", 1000, G, 0));
    let plan = schedule(&snapshot(folds, vec![r]));
    assert_eq!(assigned_ids(&plan), vec![1, 2]);
    let by_id: BTreeMap<i64, usize> = plan.unmatched.iter().copied().collect();
    assert_eq!(by_id.len(), 7);
    // 3..=6: waiting for a slot; 7, 8: never (memory); 9: never (queue).
    assert!((3..=6).all(|id| by_id[&id] == by_id[&3]));
    assert_eq!(by_id[&7], by_id[&8]);
    assert_ne!(by_id[&3], by_id[&7]);
    assert_ne!(by_id[&7], by_id[&9]);
    assert_eq!(plan.explanations.len(), 3);
    let waiting = &plan.explanations[by_id[&3]];
    assert!(waiting.matches_empty_pool);
    assert_eq!(waiting.outranked, 1);
    assert_eq!(
        waiting.summary,
        "waiting for free resources: 1 runner that could run it is busy \
         (slots: 1 runner has no free slot); 1 runner had room at the start of this cycle, \
         taken by folds ranked ahead"
    );
    assert_eq!(
        plan.explanations[by_id[&7]].summary,
        "no runner can ever run this fold: memory: fold asks 16G, the most any runner has is 8G (r)"
    );
    assert_eq!(
        plan.explanations[by_id[&9]].summary,
        "no runner can ever run this fold: queue: no runner serves queue \"gpu\" (runners serve: default)"
    );
}

#[test]
fn explain_on_demand_reports_a_runner_that_can_take_the_fold_now() {
    let runners = vec![
        runner("a", &["*"], 2, 4, 8 * G),
        runner("b", &["default"], 2, 2, 4 * G),
        RunnerView {
            slots_free: 0,
            ..runner("c", &["default"], 2, 2, 4 * G)
        },
    ];
    let e = explain(&fold(1, "default", 1000, G, 0), &runners);
    assert_eq!(e.summary, "can run now: 2 runners have room (best fit: b)");
    assert_eq!(e.rejections.len(), 1);
    assert_eq!(e.rejections[0].step, Step::Slots);
    assert!(e.matches_empty_pool);
}

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

/// A random pool (partly busy, some unavailable, some GPU runners) and random folds.
fn random_snapshot(rng: &mut Lcg, runners: usize, folds: usize) -> (Snapshot, ()) {
    let queues = ["default", "H", "L", "gpu"];
    let mut rs = Vec::new();
    for i in 0..runners {
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
        rs.push(r);
    }
    let mut fs = Vec::new();
    for id in 0..folds as i64 {
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
        fs.push(f);
    }
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

#[test]
fn image_step_passes_or_rejects_with_an_actionable_detail() {
    // (runner's allowlist (None: process runner), fold's image, rejection or None if it passes,
    //  unmatchable reason)
    type Case = (
        Option<&'static [&'static str]>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let table: &[Case] = &[
        (None, None, None, None),
        (
            None,
            Some(PY),
            Some("image: 1 runner runs plain processes and takes no images"),
            Some("image: no runner allows image \"datarun/fold-python:0.1\" (1 runner runs plain processes)"),
        ),
        (Some(&[PY]), Some(PY), None, None),
        (Some(&[PY, TORCH]), Some(TORCH), None, None),
        (
            Some(&[PY]),
            Some("evil:latest"),
            Some("image: 1 runner does not allow image \"evil:latest\" (it allows: datarun/fold-python:0.1)"),
            Some("image: no runner allows image \"evil:latest\" (docker runners allow: datarun/fold-python:0.1)"),
        ),
        (Some(&["*"]), Some("evil:latest"), None, None),
        (Some(&[PY, "*"]), Some("evil:latest"), None, None),
        // The first entry is the default image.
        (Some(&[PY]), None, None, None),
        (Some(&[PY, "*"]), None, None, None),
        (
            Some(&["*"]),
            None,
            Some("image: 1 runner has no default image; name one with --image (it allows: *)"),
            Some("image: no runner takes folds without an image; name one with --image (docker runners allow: *)"),
        ),
        (
            Some(&["*", PY]),
            None,
            Some("image: 1 runner has no default image; name one with --image (it allows: *, datarun/fold-python:0.1)"),
            Some("image: no runner takes folds without an image; name one with --image (docker runners allow: *, datarun/fold-python:0.1)"),
        ),
        (
            Some(&[]),
            Some(PY),
            Some("image: 1 runner does not allow image \"datarun/fold-python:0.1\" (it allows no images)"),
            Some("image: no runner allows image \"datarun/fold-python:0.1\" (docker runners allow no images)"),
        ),
        (
            Some(&[]),
            None,
            Some("image: 1 runner has no default image; name one with --image (it allows no images)"),
            Some("image: no runner takes folds without an image; name one with --image (docker runners allow no images)"),
        ),
    ];
    for &(images, image, rejection, reason) in table {
        let case = format!("runner {images:?}, fold {image:?}");
        let mut r = runner("r1", &["default"], 4, 8, 16 * G);
        r.images = images.map(|l| l.iter().map(|i| i.to_string()).collect());
        let mut f = fold(1, "default", 1000, G, 0);
        f.image = image.map(String::from);
        let runners = std::slice::from_ref(&r);
        assert_eq!(
            accepts_image(r.images.as_deref(), image),
            rejection.is_none(),
            "{case}"
        );
        let want: Vec<Rejection> = rejection
            .map(|d| Rejection {
                step: Step::Image,
                runners: 1,
                detail: d.into(),
            })
            .into_iter()
            .collect();
        let e = explain(&f, runners);
        assert_eq!(e.rejections, want, "{case}: explain");
        assert_eq!(e.matches_empty_pool, rejection.is_none(), "{case}");
        assert_eq!(unmatchable(&f, runners).as_deref(), reason, "{case}");
        let plan = schedule(&snapshot(vec![f], vec![r.clone()]));
        match rejection {
            None => assert_eq!(assigned_ids(&plan), vec![1], "{case}"),
            Some(_) => {
                assert_eq!(plan.unmatched, vec![(1, 0)], "{case}");
                let e = &plan.explanations[0];
                assert_eq!(e.rejections, want, "{case}: schedule");
                assert_eq!(
                    e.summary,
                    format!("no runner can ever run this fold: {}", reason.unwrap()),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn image_rejections_aggregate_by_reason() {
    let runners = vec![
        docker(runner("d1", &["default"], 4, 8, 16 * G), &[PY]),
        runner("p1", &["default"], 4, 8, 16 * G),
        docker(runner("d2", &["default"], 4, 8, 16 * G), &[PY]),
        docker(runner("any", &["default"], 4, 8, 16 * G), &["*"]),
        runner("p2", &["default"], 4, 8, 16 * G),
    ];
    let evil = named(fold(1, "default", 1000, G, 0), "evil:latest");
    let e = explain(&evil, &runners[..3]);
    let got: Vec<(Step, usize, &str)> = e
        .rejections
        .iter()
        .map(|r| (r.step, r.runners, r.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Step::Image,
                2,
                "image: 2 runners do not allow image \"evil:latest\" (they allow: datarun/fold-python:0.1)"
            ),
            (
                Step::Image,
                1,
                "image: 1 runner runs plain processes and takes no images"
            ),
        ]
    );
    assert_eq!(
        unmatchable(&evil, &runners[..3]).as_deref(),
        Some(
            "image: no runner allows image \"evil:latest\" \
             (docker runners allow: datarun/fold-python:0.1; 1 runner runs plain processes)"
        )
    );
    // With "*" in the pool the fold can run: only the runner that takes it is not rejected.
    let e = explain(&evil, &runners);
    assert_eq!(e.summary, "can run now: 1 runner has room (best fit: any)");
    let rejected: Vec<usize> = e.rejections.iter().map(|r| r.runners).collect();
    assert_eq!(rejected, vec![2, 2]);
    // Image-less folds: only the docker runner without a default is rejected.
    let plain = fold(2, "default", 1000, G, 0);
    let e = explain(&plain, &runners);
    assert_eq!(
        e.rejections,
        vec![Rejection {
            step: Step::Image,
            runners: 1,
            detail: "image: 1 runner has no default image; name one with --image (it allows: *)"
                .into()
        }]
    );
    assert_eq!(e.summary, "can run now: 4 runners have room (best fit: d1)");
}

#[test]
fn a_mixed_pool_routes_image_folds_to_docker_runners_only() {
    let runners = vec![
        runner("p1", &["default"], 2, 8, 16 * G),
        docker(runner("d-py", &["default"], 2, 8, 16 * G), &[PY]),
        runner("p2", &["default"], 2, 8, 16 * G),
        docker(runner("d-both", &["default"], 2, 8, 16 * G), &[PY, TORCH]),
        docker(runner("d-any", &["default"], 2, 8, 16 * G), &["*"]),
    ];
    // (fold id, image, runners it may go to)
    let table: &[(i64, Option<&str>, &[&str])] = &[
        (1, None, &["p1", "p2", "d-py", "d-both"]),
        (2, Some(PY), &["d-py", "d-both", "d-any"]),
        (3, None, &["p1", "p2", "d-py", "d-both"]),
        (4, Some(TORCH), &["d-both", "d-any"]),
        (5, None, &["p1", "p2", "d-py", "d-both"]),
        (6, Some(PY), &["d-py", "d-both", "d-any"]),
        (7, None, &["p1", "p2", "d-py", "d-both"]),
        (8, Some(TORCH), &["d-both", "d-any"]),
        (9, None, &["p1", "p2", "d-py", "d-both"]),
        (10, Some("other:1"), &["d-any"]),
    ];
    let folds: Vec<PendingFold> = table
        .iter()
        .map(|&(id, image, _)| PendingFold {
            image: image.map(String::from),
            ..fold(id, "default", 1000, G, 0)
        })
        .collect();
    let plan = schedule(&snapshot(folds.clone(), runners.clone()));
    // Ten slots, ten folds, each with somewhere to go: all placed, each where its image allows.
    assert!(plan.unmatched.is_empty(), "{:?}", plan.explanations);
    let mut on: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in &plan.assignments {
        let name = runners[a.runner].name.as_str();
        let (_, _, allowed) = table.iter().find(|t| t.0 == a.fold).unwrap();
        assert!(allowed.contains(&name), "fold {} on {name}", a.fold);
        on.entry(name).or_default().push(a.fold);
    }
    // Image-less folds fill the process runners and spill onto a docker runner (fold 5 on
    // d-py, its default image); best fit packs as usual.
    let want: BTreeMap<&str, Vec<i64>> = BTreeMap::from([
        ("p1", vec![1, 3]),
        ("d-py", vec![2, 5]),
        ("d-both", vec![4, 6]),
        ("p2", vec![7, 9]),
        ("d-any", vec![8, 10]),
    ]);
    assert_eq!(on, want);
}

#[test]
fn folds_of_one_image_share_a_shape_and_images_split_shapes() {
    let runners = vec![
        docker(runner("d", &["default"], 1, 4, 8 * G), &[PY]),
        runner("p", &["default"], 1, 4, 8 * G),
    ];
    let folds = vec![
        named(fold(1, "default", 1000, G, 0), PY),
        fold(2, "default", 1000, G, 0),
        named(fold(3, "default", 1000, G, 0), PY),
        named(fold(4, "default", 1000, G, 0), PY),
        named(fold(5, "default", 1000, G, 0), "evil:latest"),
        named(fold(6, "default", 1000, G, 0), "evil:latest"),
        fold(7, "default", 1000, G, 0),
    ];
    let plan = schedule(&snapshot(folds, runners));
    let placed: Vec<(i64, usize)> = plan
        .assignments
        .iter()
        .map(|a| (a.fold, a.runner))
        .collect();
    assert_eq!(placed, vec![(1, 0), (2, 1)]);
    let by_id: BTreeMap<i64, usize> = plan.unmatched.iter().copied().collect();
    assert_eq!(by_id[&3], by_id[&4]);
    assert_eq!(by_id[&5], by_id[&6]);
    assert_ne!(by_id[&3], by_id[&5]);
    let waiting = &plan.explanations[by_id[&3]];
    assert!(waiting.matches_empty_pool);
    assert_eq!(
        waiting.rejections,
        vec![
            Rejection {
                step: Step::Image,
                runners: 1,
                detail: "image: 1 runner runs plain processes and takes no images".into()
            },
            Rejection {
                step: Step::Slots,
                runners: 1,
                detail: "slots: 1 runner has no free slot".into()
            },
        ]
    );
    let never = &plan.explanations[by_id[&5]];
    assert!(!never.matches_empty_pool);
    assert_eq!(
        never.summary,
        "no runner can ever run this fold: image: no runner allows image \"evil:latest\" \
         (docker runners allow: datarun/fold-python:0.1; 1 runner runs plain processes)"
    );
    // Fold 7 (no image) waits on both runners: a different shape from 3 and 4, and a
    // different explanation (both runners are busy, none rejected by image).
    let plain = &plan.explanations[by_id[&7]];
    assert_eq!(
        plain.rejections,
        vec![Rejection {
            step: Step::Slots,
            runners: 2,
            detail: "slots: 2 runners have no free slot".into()
        }]
    );
    assert_eq!(plain.outranked, 2);
    assert_eq!(plan.explanations.len(), 3);
}

#[test]
fn unmatchable_checks_the_image_among_the_queue_s_runners() {
    let runners = vec![
        docker(runner("a", &["default"], 4, 8, 16 * G), &[PY]),
        runner("b", &["default"], 4, 32, 64 * G),
        docker(runner("c", &["other"], 4, 8, 16 * G), &["*"]),
    ];
    let table: Vec<(PendingFold, Option<&str>)> = vec![
        (named(fold(1, "default", 1000, G, 0), PY), None),
        (fold(1, "default", 1000, 32 * G, 0), None),
        (
            named(fold(1, "default", 1000, G, 0), "evil:latest"),
            Some(
                "image: no runner serving queue \"default\" allows image \"evil:latest\" \
                  (docker runners allow: datarun/fold-python:0.1; 1 runner runs plain processes)",
            ),
        ),
        (named(fold(1, "other", 1000, G, 0), "evil:latest"), None),
        (
            fold(1, "other", 1000, G, 0),
            Some(
                "image: no runner serving queue \"other\" takes folds without an image; \
                  name one with --image (docker runners allow: *)",
            ),
        ),
        (
            // b has the memory but runs plain processes.
            named(fold(1, "default", 1000, 32 * G, 0), PY),
            Some(
                "memory: fold asks 32G, the most any runner serving queue \"default\" and \
                  allowing image \"datarun/fold-python:0.1\" has is 16G (a)",
            ),
        ),
    ];
    for (f, want) in &table {
        assert_eq!(unmatchable(f, &runners).as_deref(), *want, "{f:?}");
    }
    // Availability does not matter for unmatchable; the explanation names the runner that
    // could take the fold if it came back.
    let mut down = runners.clone();
    down[0].unavailable = Some("draining".into());
    let f = named(fold(1, "default", 1000, G, 0), PY);
    assert_eq!(unmatchable(&f, &down), None);
    let e = explain(&f, &down);
    assert!(!e.matches_empty_pool);
    assert_eq!(
        e.summary,
        "no available runner can run this fold: 1 runner that could is unavailable (a: draining)"
    );
}

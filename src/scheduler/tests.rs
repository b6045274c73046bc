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
        arch: None,
        os: None,
        labels: vec![],
        attributes: BTreeMap::new(),
        requirements: None,
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
        requirements: None,
        rank: None,
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

/// Why a fold can never run (the reason of `unmatchable`).
fn never(f: &PendingFold, runners: &[RunnerView]) -> Option<String> {
    unmatchable(f, runners).map(|u| u.reason)
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
        assert_eq!(never(&f, &[r]).is_none(), matches);
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
    assert_eq!(never(&f, &runners), None);
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

mod images;
mod incremental;
mod placement;
mod properties;
mod requirements;
mod unmatchable;

//! The Requirements steps and rank: the fold's requirements on runners, runners' requirements
//! on folds, custom attributes, evaluation errors, GPUs, and rank before best fit.

use super::*;

fn requiring(f: PendingFold, requirements: &str) -> PendingFold {
    PendingFold {
        requirements: Some(requirements.into()),
        ..f
    }
}

fn ranked(f: PendingFold, rank: &str) -> PendingFold {
    PendingFold {
        rank: Some(rank.into()),
        ..f
    }
}

fn refusing(r: RunnerView, requirements: &str) -> RunnerView {
    RunnerView {
        requirements: Some(requirements.into()),
        ..r
    }
}

/// r-small: 4 cpus, 8G, x86_64; r-gpu: 16 cpus, 64G, 2 GPUs, fast-disk, disk = "ssd",
/// generation = 3; r-arm: 8 cpus, 32G, aarch64, fast-disk, generation = 2.
fn pool() -> Vec<RunnerView> {
    let mut small = runner("r-small", &["default"], 2, 4, 8 * G);
    small.arch = Some("x86_64".into());
    let mut gpu = with_gpus(
        runner("r-gpu", &["default"], 2, 16, 64 * G),
        &["0", "1"],
        &["0", "1"],
    );
    gpu.arch = Some("x86_64".into());
    gpu.labels = vec!["fast-disk".into()];
    gpu.attributes = BTreeMap::from([
        ("disk".to_string(), AttrValue::Str("ssd".into())),
        ("generation".to_string(), AttrValue::Int(3)),
    ]);
    let mut arm = runner("r-arm", &["default"], 2, 8, 32 * G);
    arm.arch = Some("aarch64".into());
    arm.labels = vec!["fast-disk".into()];
    arm.attributes = BTreeMap::from([("generation".to_string(), AttrValue::Int(2))]);
    vec![small, gpu, arm]
}

fn details(e: &Explanation) -> Vec<(Step, usize, &str)> {
    e.rejections
        .iter()
        .map(|r| (r.step, r.runners, r.detail.as_str()))
        .collect()
}

#[test]
fn fold_requirements_pick_runners_and_explain_the_others() {
    // (requirements, runners that meet them, the Requirements rejection, hold code at submit)
    type Case = (
        &'static str,
        &'static [&'static str],
        Option<&'static str>,
        Option<HoldCode>,
    );
    let table: &[Case] = &[
        ("true", &["r-small", "r-gpu", "r-arm"], None, None),
        (
            "gpus >= 1",
            &["r-gpu"],
            Some("requirements: 2 runners fail (gpus >= 1: gpus is 0 on 2)"),
            None,
        ),
        (
            "arch == \"x86_64\" && \"fast-disk\" in labels",
            &["r-gpu"],
            Some("requirements: 2 runners fail (\"fast-disk\" in labels: labels is [] on 1; arch == \"x86_64\": arch is \"aarch64\" on 1)"),
            None,
        ),
        (
            "disk == \"ssd\"",
            &["r-gpu"],
            Some("requirements: 2 runners fail (disk == \"ssd\": disk is undefined on 2)"),
            None,
        ),
        ("generation * 2 >= 4", &["r-gpu", "r-arm"], Some("requirements: 1 runner fails (generation * 2 >= 4: generation is undefined on 1)"), None),
        (
            "memory >= 32G && cpus < 16",
            &["r-arm"],
            Some("requirements: 2 runners fail (memory >= 32G: memory is 8G on 1; cpus < 16: cpus is 16 on 1)"),
            None,
        ),
        (
            "runner.name != \"r-gpu\" && slots == 2 && free_slots >= 1",
            &["r-small", "r-arm"],
            Some("requirements: 1 runner fails (runner.name != \"r-gpu\": runner.name is \"r-gpu\" on 1)"),
            None,
        ),
        (
            "memory > 1T",
            &[],
            Some("requirements: 3 runners fail (memory > 1T: memory is 8G on 1, memory is 64G on 1, memory is 32G on 1)"),
            Some(HoldCode::Unmatchable),
        ),
        (
            "gpus >= 0 && memory > \"big\"",
            &[],
            Some("requirements: cannot be evaluated on 3 runners (memory > \"big\": cannot order an integer and a string on 3)"),
            Some(HoldCode::Requirements),
        ),
        (
            "memory",
            &[],
            Some("requirements: cannot be evaluated on 3 runners (memory: must be true or false, found an integer on 3)"),
            Some(HoldCode::Requirements),
        ),
    ];
    let runners = pool();
    for &(text, meet, rejection, code) in table {
        let f = requiring(fold(1, "default", 1000, G, 0), text);
        let e = explain(&f, &runners);
        let want: Vec<(Step, usize, &str)> = rejection
            .map(|d| (Step::Requirements, 3 - meet.len(), d))
            .into_iter()
            .collect();
        assert_eq!(details(&e), want, "{text}");
        assert_eq!(e.matches_empty_pool, !meet.is_empty(), "{text}");
        let never = unmatchable(&f, &runners);
        assert_eq!(never.as_ref().map(|u| u.code), code, "{text}");
        if let (Some(u), Some(r)) = (&never, rejection) {
            assert_eq!(u.reason, r, "{text}");
        }
        // Six folds: each runner that meets them takes two, the others none.
        let folds = (1..=6)
            .map(|i| requiring(fold(i, "default", 1000, G, 0), text))
            .collect();
        let plan = schedule(&snapshot(folds, runners.clone()));
        let mut used: Vec<&str> = plan
            .assignments
            .iter()
            .map(|a| runners[a.runner].name.as_str())
            .collect();
        used.sort_unstable();
        used.dedup();
        let mut want: Vec<&str> = meet.to_vec();
        want.sort_unstable();
        assert_eq!(used, want, "{text}");
        assert_eq!(plan.assignments.len(), (2 * meet.len()).min(6), "{text}");
        if meet.is_empty() {
            let e = &plan.explanations[plan.unmatched[0].1];
            assert!(
                e.summary
                    .starts_with("no runner can ever run this fold: requirements: "),
                "{}",
                e.summary
            );
        }
    }
}

#[test]
fn runner_requirements_refuse_folds_by_their_attributes() {
    let guest_free = refusing(
        runner("gpu-1", &["default", "L"], 4, 8, 16 * G),
        "owner != \"guest\" || queue == \"L\"",
    );
    let open = runner("cpu-1", &["default", "L"], 4, 8, 16 * G);
    let owned = |id: i64, owner: &str, queue: &str| PendingFold {
        owner: owner.into(),
        ..fold(id, queue, 1000, G, 0)
    };
    // Only gpu-1: a guest in the default queue is refused, in L or as alice it is fine.
    let only = vec![guest_free.clone()];
    let guest = owned(1, "guest", "default");
    let e = explain(&guest, &only);
    assert_eq!(
        details(&e),
        vec![(
            Step::RunnerRequirements,
            1,
            "runner requirements: gpu-1 refuses (owner != \"guest\" || queue == \"L\")"
        )]
    );
    let never = unmatchable(&guest, &only).expect("refused");
    assert_eq!(never.code, HoldCode::Unmatchable);
    assert_eq!(
        never.reason,
        "runner requirements: gpu-1 refuses (owner != \"guest\" || queue == \"L\")"
    );
    assert!(unmatchable(&owned(2, "guest", "L"), &only).is_none());
    assert!(unmatchable(&owned(3, "alice", "default"), &only).is_none());

    // Both sides at once, with many owners: each fold goes where both agree.
    let runners = vec![guest_free, open];
    let mut folds = Vec::new();
    for i in 0..40 {
        let owner = if i % 4 == 0 {
            "guest".to_string()
        } else {
            format!("user{i}")
        };
        let f = owned(i + 1, &owner, "default");
        // Half the folds want gpu-1 by name; the guests among them can never have it.
        folds.push(if i % 2 == 0 {
            requiring(f, "name == \"gpu-1\"")
        } else {
            f
        });
    }
    let plan = schedule(&snapshot(folds.clone(), runners.clone()));
    for a in &plan.assignments {
        let f = &folds[(a.fold - 1) as usize];
        let on = runners[a.runner].name.as_str();
        if f.owner == "guest" {
            assert_eq!(on, "cpu-1", "fold {} of guest", f.id);
        }
        if f.requirements.is_some() {
            assert_eq!(on, "gpu-1", "fold {} asks for gpu-1", f.id);
        }
    }
    let guests_wanting_gpu: Vec<i64> = folds
        .iter()
        .filter(|f| f.owner == "guest" && f.requirements.is_some())
        .map(|f| f.id)
        .collect();
    for id in &guests_wanting_gpu {
        let (_, e) = plan
            .unmatched
            .iter()
            .find(|(f, _)| f == id)
            .expect("unmatched");
        let e = &plan.explanations[*e];
        assert_eq!(
            details(e),
            vec![
                (
                    Step::Requirements,
                    1,
                    "requirements: 1 runner fails (name == \"gpu-1\": name is \"cpu-1\" on 1)"
                ),
                (
                    Step::RunnerRequirements,
                    1,
                    "runner requirements: gpu-1 refuses (owner != \"guest\" || queue == \"L\")"
                ),
            ]
        );
        assert!(!e.matches_empty_pool);
    }
    assert_eq!(plan.assignments.len(), 8, "both runners are full");
    // Owners other than guest all behave alike: they share explanations.
    let distinct: std::collections::BTreeSet<usize> = plan.unmatched.iter().map(|u| u.1).collect();
    assert!(distinct.len() <= 4, "{distinct:?}");
}

#[test]
fn runner_requirements_that_cannot_be_evaluated_or_parsed() {
    let bad = refusing(
        runner("r1", &["default"], 4, 8, 16 * G),
        "priority > \"high\"",
    );
    let f = fold(1, "default", 1000, G, 0);
    let e = explain(&f, std::slice::from_ref(&bad));
    assert_eq!(
        details(&e),
        vec![(
            Step::RunnerRequirements,
            1,
            "runner requirements: r1 cannot evaluate its requirements (priority > \"high\": cannot order an integer and a string)"
        )]
    );
    let never = unmatchable(&f, std::slice::from_ref(&bad)).expect("never");
    assert_eq!(never.code, HoldCode::Requirements);
    // A view whose requirements do not parse (the inventory refuses them; the view is data).
    let broken = refusing(runner("r2", &["default"], 4, 8, 16 * G), "owner ==");
    let e = explain(&f, &[bad, broken]);
    assert_eq!(e.rejections.len(), 1);
    assert_eq!(
        e.rejections[0].detail,
        "runner requirements: 2 runners cannot evaluate their requirements (r1: priority > \"high\": cannot order an integer and a string; r2: requirements: do not parse: column 9: expected an expression after '=='"
            .to_string()
            + ")"
    );
}

#[test]
fn rank_comes_before_best_fit() {
    let runners = vec![
        runner("small", &["default"], 2, 8, 8 * G),
        runner("big", &["default"], 2, 8, 64 * G),
        runner("mid", &["default"], 2, 8, 32 * G),
    ];
    let pick = |f: PendingFold| {
        let plan = schedule(&snapshot(vec![f], runners.clone()));
        runners[plan.assignments[0].runner].name.clone()
    };
    let f = || fold(1, "default", 1000, G, 0);
    // Best fit alone packs onto the smallest.
    assert_eq!(pick(f()), "small");
    assert_eq!(pick(ranked(f(), "memory")), "big");
    assert_eq!(pick(ranked(f(), "-memory")), "small");
    assert_eq!(pick(ranked(f(), "name == \"mid\"")), "mid");
    // Equal, undefined or erroneous ranks everywhere: best fit decides.
    assert_eq!(pick(ranked(f(), "cpus")), "small");
    assert_eq!(pick(ranked(f(), "disk")), "small");
    assert_eq!(pick(ranked(f(), "arch + 1")), "small");
    // With requirements: the best-ranked runner that meets them.
    assert_eq!(
        pick(requiring(ranked(f(), "memory"), "memory < 64G")),
        "mid"
    );
    // Five folds ranked by memory fill big, then mid, then small.
    let folds = (1..=5)
        .map(|i| ranked(fold(i, "default", 1000, G, 0), "memory"))
        .collect();
    let plan = schedule(&snapshot(folds, runners.clone()));
    let on: Vec<&str> = plan
        .assignments
        .iter()
        .map(|a| runners[a.runner].name.as_str())
        .collect();
    assert_eq!(on, vec!["big", "big", "mid", "mid", "small"]);
}

#[test]
fn gpu_requirements() {
    let runners = vec![
        with_gpus(runner("one", &["*"], 4, 8, 16 * G), &["0"], &["0"]),
        with_gpus(
            runner("two", &["*"], 4, 8, 16 * G),
            &["0", "1"],
            &["0", "1"],
        ),
        runner("cpu", &["*"], 4, 8, 16 * G),
    ];
    // One GPU asked, but only on a machine with at least two: the lowest id there.
    let f = requiring(fold(1, "default", 1000, G, 1), "gpus >= 2");
    let plan = schedule(&snapshot(vec![f], runners.clone()));
    assert_eq!(plan.assignments[0].runner, 1);
    assert_eq!(plan.assignments[0].gpus, vec!["0".to_string()]);
    // A CPU fold that stays off GPU machines, even when only they have room.
    let mut busy = runners.clone();
    busy[2].slots_free = 0;
    let f = requiring(fold(2, "default", 1000, G, 0), "gpus == 0");
    let plan = schedule(&snapshot(vec![f.clone()], busy.clone()));
    assert!(plan.assignments.is_empty());
    let e = &plan.explanations[0];
    assert_eq!(
        details(e),
        vec![
            (
                Step::Requirements,
                2,
                "requirements: 2 runners fail (gpus == 0: gpus is 1 on 1, gpus is 2 on 1)"
            ),
            (Step::Slots, 1, "slots: 1 runner has no free slot"),
        ]
    );
    assert!(e.matches_empty_pool);
    assert!(
        e.summary
            .starts_with("waiting for free resources: 1 runner that could run it is busy"),
        "{}",
        e.summary
    );
    // A runner that only takes GPU folds.
    let picky = refusing(runners[1].clone(), "gpus >= 1");
    let plan = schedule(&snapshot(
        vec![
            fold(3, "default", 1000, G, 0),
            fold(4, "default", 1000, G, 2),
        ],
        vec![picky],
    ));
    assert_eq!(assigned_ids(&plan), vec![4]);
    assert_eq!(
        plan.assignments[0].gpus,
        vec!["0".to_string(), "1".to_string()]
    );
}

#[test]
fn fold_attributes_in_a_folds_own_expressions() {
    // fold.x reads the fold: a fold asking for at most half a machine's cpus.
    let runners = vec![
        runner("four", &["*"], 4, 4, 16 * G),
        runner("eight", &["*"], 4, 8, 16 * G),
    ];
    let f = requiring(fold(1, "default", 3000, G, 0), "fold.cpus * 2 <= cpus");
    let plan = schedule(&snapshot(vec![f.clone()], runners.clone()));
    assert_eq!(plan.assignments[0].runner, 1);
    // The same text with a different request is another class.
    let g = requiring(fold(2, "default", 2000, G, 0), "fold.cpus * 2 <= cpus");
    let plan = schedule(&snapshot(vec![f, g], runners));
    let mut on: Vec<(i64, usize)> = plan
        .assignments
        .iter()
        .map(|a| (a.fold, a.runner))
        .collect();
    on.sort_unstable();
    assert_eq!(on, vec![(1, 1), (2, 0)]);
}

//! Which fold goes first and where it lands: queue and fold priority, best fit and its ties,
//! concrete GPU ids.

use super::*;

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

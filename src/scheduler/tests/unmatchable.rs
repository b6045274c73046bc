//! Folds no runner can ever run: the failing step and the best runner are named.

use super::*;

#[test]
fn three_gpus_on_a_runner_with_two_is_unmatchable() {
    let local = with_gpus(
        runner("local", &["default"], 4, 8, 32 * G),
        &["0", "1"],
        &["0", "1"],
    );
    let f = fold(1, "default", 1000, G, 3);
    let reason = never(&f, std::slice::from_ref(&local)).expect("unmatchable");
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
        assert_eq!(never(f, &runners).as_deref(), *want, "{f:?}");
    }
    // Availability does not matter for unmatchable: the runner may come back.
    runners[1].unavailable = Some("draining".into());
    assert_eq!(never(&fold(1, "default", 32_000, G, 0), &runners), None);
    // Time limits.
    runners[0].hard_limit_ms = Some(HOUR);
    runners[1].hard_limit_ms = Some(2 * HOUR);
    let long = PendingFold {
        hard_limit_ms: Some(3 * HOUR),
        ..fold(1, "default", 1000, G, 0)
    };
    assert_eq!(
        never(&long, &runners).as_deref(),
        Some("time limit: fold's hard limit is 3h00m, the longest any runner serving queue \"default\" allows is 2h00m (b)")
    );
}

#[test]
fn unmatchable_on_an_empty_runner_list() {
    let f = fold(1, "default", 1000, G, 0);
    assert_eq!(never(&f, &[]).as_deref(), Some("no runners are configured"));
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

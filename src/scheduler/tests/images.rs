//! The Image step: allowlists, defaults, process runners, mixed pools.

use super::*;

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
        assert_eq!(never(&f, runners).as_deref(), reason, "{case}");
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
        never(&evil, &runners[..3]).as_deref(),
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
        assert_eq!(never(f, &runners).as_deref(), *want, "{f:?}");
    }
    // Availability does not matter for unmatchable; the explanation names the runner that
    // could take the fold if it came back.
    let mut down = runners.clone();
    down[0].unavailable = Some("draining".into());
    let f = named(fold(1, "default", 1000, G, 0), PY);
    assert_eq!(never(&f, &down), None);
    let e = explain(&f, &down);
    assert!(!e.matches_empty_pool);
    assert_eq!(
        e.summary,
        "no available runner can run this fold: 1 runner that could is unavailable (a: draining)"
    );
}

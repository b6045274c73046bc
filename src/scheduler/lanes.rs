//! Image lanes: folds naming different container images may only go to runners that accept
//! them (docker runners by their allowlist, process runners only folds naming none). Folds are
//! grouped by image; each group is matched by `schedule` against the pool with the runners that
//! do not accept its image marked unavailable (which is also what its explanations say), in
//! turn by the group's first fold in line, each group's grants taken off before the next.
//! With one image (the usual case) this is exactly `schedule`.

use super::{order_key, schedule, Plan, RunnerView, Snapshot};
use std::collections::BTreeMap;

/// Whether a runner with this allowlist (None: a process runner) can run a fold naming `image`.
/// A docker runner runs the images it lists ("*" = any); for folds naming none, its first entry
/// (unless "*") is the default image.
pub fn accepts_image(allowlist: Option<&[String]>, image: Option<&str>) -> bool {
    match (allowlist, image) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(list), Some(img)) => list.iter().any(|i| i == img || i == "*"),
        (Some(list), None) => list.first().is_some_and(|i| i != "*"),
    }
}

/// The runners as a fold naming `image` sees them: those that cannot run it are unavailable.
pub fn views_for_image(runners: &[RunnerView], image: Option<&str>) -> Vec<RunnerView> {
    runners
        .iter()
        .map(|r| {
            if r.unavailable.is_some() || accepts_image(r.images.as_deref(), image) {
                return r.clone();
            }
            let why = match (&r.images, image) {
                (None, Some(img)) => format!("image: runs plain processes, not image {img:?}"),
                (Some(list), Some(img)) => format!(
                    "image: does not allow {img:?} (allows: {})",
                    list.join(", ")
                ),
                _ => "image: has no default image; name one with --image".to_string(),
            };
            RunnerView {
                unavailable: Some(why),
                ..r.clone()
            }
        })
        .collect()
}

/// One matching cycle that honours every runner's image allowlist.
pub fn schedule_by_image(snapshot: &Snapshot) -> Plan {
    let mut lanes: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, f) in snapshot.folds.iter().enumerate() {
        lanes.entry(f.image.as_deref()).or_default().push(i);
    }
    let every_runner_accepts = |image: Option<&str>| {
        snapshot
            .runners
            .iter()
            .all(|r| r.unavailable.is_some() || accepts_image(r.images.as_deref(), image))
    };
    if lanes.len() <= 1 && lanes.keys().all(|image| every_runner_accepts(*image)) {
        return schedule(snapshot);
    }
    // Lanes take turns by their first fold in line.
    let mut order: Vec<(Option<&str>, Vec<usize>)> = lanes.into_iter().collect();
    let first = |folds: &[usize]| {
        folds
            .iter()
            .map(|&i| order_key(&snapshot.folds[i], &snapshot.queue_priority))
            .min()
    };
    order.sort_by_key(|(_, folds)| first(folds));

    let mut runners = snapshot.runners.clone();
    let mut plan = Plan::default();
    for (image, folds) in order {
        let lane = Snapshot {
            folds: folds.iter().map(|&i| snapshot.folds[i].clone()).collect(),
            runners: views_for_image(&runners, image),
            queue_priority: snapshot.queue_priority.clone(),
            fair_share: snapshot.fair_share.clone(),
        };
        let part = schedule(&lane);
        let by_id: std::collections::HashMap<i64, &super::PendingFold> =
            lane.folds.iter().map(|f| (f.id, f)).collect();
        for a in &part.assignments {
            let f = by_id[&a.fold];
            let r = &mut runners[a.runner];
            r.slots_free = r.slots_free.saturating_sub(1);
            r.millicpus_free = r.millicpus_free.saturating_sub(f.millicpus);
            r.memory_free = r.memory_free.saturating_sub(f.memory);
            r.gpus_free.retain(|g| !a.gpus.contains(g));
        }
        let offset = plan.explanations.len();
        plan.assignments.extend(part.assignments);
        plan.unmatched.extend(
            part.unmatched
                .into_iter()
                .map(|(fold, e)| (fold, e + offset)),
        );
        plan.explanations.extend(part.explanations);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::PendingFold;

    fn runner(name: &str, images: Option<&[&str]>, slots: u32) -> RunnerView {
        RunnerView {
            name: name.into(),
            queues: vec!["*".into()],
            slots_total: slots,
            slots_free: slots,
            millicpus_total: 8000,
            millicpus_free: 8000,
            memory_total: 8 << 30,
            memory_free: 8 << 30,
            gpus_total: vec![],
            gpus_free: vec![],
            hard_limit_ms: None,
            unavailable: None,
            images: images.map(|l| l.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn fold(id: i64, image: Option<&str>) -> PendingFold {
        PendingFold {
            id,
            queue: "default".into(),
            owner: "o".into(),
            priority: 0,
            submitted_at: id,
            millicpus: 1000,
            memory: 1 << 30,
            gpus: 0,
            hard_limit_ms: None,
            image: image.map(String::from),
        }
    }

    #[test]
    fn the_acceptance_rule() {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(accepts_image(None, None));
        assert!(!accepts_image(None, Some("a:1")));
        assert!(accepts_image(Some(&list(&["a:1", "b:1"])), Some("b:1")));
        assert!(!accepts_image(Some(&list(&["a:1"])), Some("evil:1")));
        assert!(accepts_image(Some(&list(&["*"])), Some("evil:1")));
        assert!(
            accepts_image(Some(&list(&["a:1"])), None),
            "the first entry is the default"
        );
        assert!(!accepts_image(Some(&list(&["*"])), None));
        assert!(!accepts_image(Some(&[]), None));
    }

    #[test]
    fn image_folds_only_go_to_runners_that_allow_them() {
        // "box" runs any image but has no default; "proc" runs plain processes.
        let runners = vec![runner("box", Some(&["*"]), 2), runner("proc", None, 2)];
        let folds = vec![
            fold(1, Some("ml:1")),
            fold(2, None),
            fold(3, Some("ml:1")),
            fold(4, None),
            fold(5, Some("ml:1")),
        ];
        let plan = schedule_by_image(&Snapshot {
            folds,
            runners,
            queue_priority: Default::default(),
            fair_share: None,
        });
        let on = |id: i64| {
            plan.assignments
                .iter()
                .find(|a| a.fold == id)
                .map(|a| a.runner)
        };
        assert_eq!([on(1), on(3)], [Some(0), Some(0)], "image folds on box");
        assert_eq!([on(2), on(4)], [Some(1), Some(1)], "plain folds on proc");
        assert_eq!(on(5), None, "box is full, and proc takes no images");
        let (_, e) = plan.unmatched.iter().find(|(f, _)| *f == 5).unwrap();
        let why = &plan.explanations[*e];
        assert!(
            why.rejections
                .iter()
                .any(|r| r.detail.contains("runs plain processes")),
            "{why:?}"
        );
        assert!(
            why.matches_empty_pool,
            "fold 5 could run on box when it is free"
        );
    }

    #[test]
    fn lanes_share_the_pool_without_oversubscribing() {
        let runners = vec![runner("box", Some(&["a:1", "b:1"]), 3)];
        let folds: Vec<PendingFold> = (1..=6)
            .map(|i| fold(i, Some(if i % 2 == 0 { "a:1" } else { "b:1" })))
            .collect();
        let plan = schedule_by_image(&Snapshot {
            folds,
            runners,
            queue_priority: Default::default(),
            fair_share: None,
        });
        assert_eq!(
            plan.assignments.len(),
            3,
            "3 slots in all, across both lanes"
        );
        assert_eq!(plan.unmatched.len(), 3);
    }

    #[test]
    fn one_image_is_exactly_schedule() {
        let runners = vec![runner("p", None, 2)];
        let folds = vec![fold(1, None), fold(2, None), fold(3, None)];
        let snap = Snapshot {
            folds,
            runners,
            queue_priority: Default::default(),
            fair_share: None,
        };
        assert_eq!(schedule_by_image(&snap), schedule(&snap));
    }
}

//! `schedule_index` makes exactly the decisions `schedule` makes on the same folds and
//! runners: with and without fair share, with and without the owner cap, with requirements,
//! ranks, runner requirements, images, GPUs and time limits, on pools partly busy.

use super::*;
use crate::scheduler::{schedule_index, within_owner_cap, IdleIndex, OwnerCap, PoolSize};

/// A random pool and folds from several owners, some with requirements and ranks.
fn random_case(rng: &mut Lcg, runners: usize, folds: usize) -> Snapshot {
    use super::properties::{random_fold, random_runner};
    let owners = ["ann", "bob", "cy", "guest"];
    let mut rs = Vec::new();
    for i in 0..runners {
        let mut r = random_runner(rng, i);
        if rng.below(3) == 0 {
            r.labels = vec!["fast".into()];
        }
        if rng.below(8) == 0 {
            r.requirements = Some(r#"owner != "guest" || queue == "L""#.into());
        }
        rs.push(r);
    }
    let mut fs = Vec::new();
    for id in 0..folds as i64 {
        let mut f = random_fold(rng, id);
        f.owner = owners[rng.below(4) as usize].into();
        f.requirements = [
            None,
            None,
            None,
            Some(r#""fast" in labels"#),
            Some("memory >= 8G"),
        ][rng.below(5) as usize]
            .map(String::from);
        f.rank = [None, None, Some("memory"), Some("free_slots")][rng.below(4) as usize]
            .map(String::from);
        fs.push(f);
    }
    let mut snap = snapshot(fs, rs);
    snap.queue_priority.insert("H".into(), 5);
    snap.queue_priority.insert("L".into(), -5);
    snap
}

fn compare(snap: &Snapshot, cap: Option<(u32, &BTreeMap<&str, usize>)>, what: &str) {
    let full_folds = match cap {
        Some((cap, running)) => within_owner_cap(
            snap.folds.clone(),
            cap,
            running,
            &snap.queue_priority,
            snap.fair_share.as_ref(),
        ),
        None => snap.folds.clone(),
    };
    let full = schedule(&Snapshot {
        folds: full_folds,
        ..snap.clone()
    });
    let index = IdleIndex::from_folds(snap.folds.clone(), snap.queue_priority.clone());
    // Only the runners that may take a fold are passed, with the whole pool's size.
    let open: Vec<usize> = (0..snap.runners.len())
        .filter(|&i| snap.runners[i].unavailable.is_none() && snap.runners[i].slots_free > 0)
        .collect();
    let views: Vec<RunnerView> = open.iter().map(|&i| snap.runners[i].clone()).collect();
    let inc = schedule_index(
        &index,
        &views,
        PoolSize::of(&snap.runners),
        snap.fair_share.as_ref(),
        cap.map(|(cap, running)| OwnerCap { cap, running }),
    );
    let inc: Vec<Assignment> = inc
        .into_iter()
        .map(|a| Assignment {
            runner: open[a.runner],
            ..a
        })
        .collect();
    assert_eq!(full.assignments, inc, "{what}");
}

#[test]
fn incremental_matching_decides_as_the_full_cycle() {
    let mut rng = Lcg(99);
    let mut placed = 0;
    for round in 0..120 {
        let mut snap = random_case(&mut rng, 1 + round % 30, 50 + 10 * (round % 40));
        if round % 2 == 1 {
            snap.fair_share = Some(FairShare {
                usage: BTreeMap::from([
                    ("ann".to_string(), (round % 4) as f64),
                    ("bob".to_string(), 1.5),
                ]),
            });
        }
        compare(&snap, None, &format!("round {round}"));
        let running = BTreeMap::from([("ann", 2usize), ("cy", 7)]);
        compare(
            &snap,
            Some((3, &running)),
            &format!("round {round} with a cap"),
        );
        placed += schedule(&snap).assignments.len();
    }
    assert!(placed > 500, "the cases place folds: {placed}");
}

#[test]
fn incremental_matching_follows_index_changes() {
    // The same decisions after removals, re-inserts (requeues) and a queue priority change.
    let mut rng = Lcg(7);
    let snap = random_case(&mut rng, 20, 400);
    let mut index = IdleIndex::from_folds(snap.folds.clone(), snap.queue_priority.clone());
    let mut folds = snap.folds.clone();
    let gone: Vec<i64> = folds
        .iter()
        .map(|f| f.id)
        .filter(|id| id % 3 == 0)
        .collect();
    index.remove_many(&gone);
    folds.retain(|f| f.id % 3 != 0);
    for f in folds.iter_mut().filter(|f| f.id % 5 == 0) {
        f.submitted_at = 0;
        index.insert(f.clone());
    }
    let mut qp = snap.queue_priority.clone();
    qp.insert("L".into(), 50);
    index.set_queue_priority(qp.clone());
    assert_eq!(index.len(), folds.len());
    let full = schedule(&Snapshot {
        folds,
        queue_priority: qp,
        ..snap.clone()
    });
    assert_eq!(
        full.assignments,
        schedule_index(
            &index,
            &snap.runners,
            PoolSize::of(&snap.runners),
            None,
            None
        )
    );
    assert!(!full.assignments.is_empty());
}

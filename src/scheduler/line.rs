//! The order `schedule` takes idle folds in: queue priority desc, fold priority desc ("bands");
//! within a band, submit time and id, or, with fair share, each owner's *virtual time*: the
//! owner's usage plus how many of its folds come before in the band. Owners then take turns,
//! and an owner that has used more waits more; priority still dominates.

use super::PendingFold;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// Fair share between owners: each owner's usage in slots (running folds plus past slot-time,
/// decayed; the master computes it). Owners not listed have used nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FairShare {
    pub usage: BTreeMap<String, f64>,
}

/// The band of a fold, then its submit order.
pub fn order_key(
    f: &PendingFold,
    queue_priority: &BTreeMap<String, i64>,
) -> (Reverse<i64>, Reverse<i64>, i64, i64) {
    let q = queue_priority.get(&f.queue).copied().unwrap_or(0);
    (Reverse(q), Reverse(f.priority), f.submitted_at, f.id)
}

/// Owners as indices, each with its usage looked up once (fair share): one hash per fold.
#[derive(Default)]
pub(super) struct Owners<'a> {
    ids: super::feasibility::FxMap<&'a str, usize>,
    /// Each owner's usage, by index.
    pub(super) usage: Vec<f64>,
}

impl<'a> Owners<'a> {
    /// The index of `owner`.
    pub(super) fn id(&mut self, owner: &'a str, fair: &FairShare) -> usize {
        let usage = &mut self.usage;
        *self.ids.entry(owner).or_insert_with(|| {
            usage.push(fair.usage.get(owner).copied().unwrap_or(0.0));
            usage.len() - 1
        })
    }
}

/// Reorders `range` (indices into `folds`, one band, in submit order) by virtual time; ties
/// keep submit order.
pub(super) fn fair_reorder(range: &mut [usize], folds: &[PendingFold], fair: &FairShare) {
    let mut owners = Owners::default();
    let owner: Vec<usize> = range
        .iter()
        .map(|&i| owners.id(&folds[i].owner, fair))
        .collect();
    let mut by_position: Vec<usize> = (0..range.len()).collect();
    fair_reorder_by(&mut by_position, |&p| owner[p], &owners.usage);
    let reordered: Vec<usize> = by_position.iter().map(|&p| range[p]).collect();
    range.copy_from_slice(&reordered);
}

/// Reorders `band` (one band, in submit order) by virtual time: the owner's usage plus how
/// many of its folds come before in the band; ties keep submit order. `owner` gives each
/// entry's owner as an index into `usage`.
pub(super) fn fair_reorder_by<T: Copy>(band: &mut [T], owner: impl Fn(&T) -> usize, usage: &[f64]) {
    let mut before = vec![0.0; usage.len()];
    let mut keyed: Vec<(f64, usize)> = band
        .iter()
        .enumerate()
        .map(|(position, t)| {
            let o = owner(t);
            let v = usage[o] + before[o];
            before[o] += 1.0;
            (v, position)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let reordered: Vec<T> = keyed.iter().map(|&(_, p)| band[p]).collect();
    band.copy_from_slice(&reordered);
}

/// All of `idle` in line order (indices).
pub fn line_order(
    idle: &[PendingFold],
    queue_priority: &BTreeMap<String, i64>,
    fair: Option<&FairShare>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..idle.len()).collect();
    order.sort_by_key(|&i| order_key(&idle[i], queue_priority));
    if let Some(fair) = fair {
        let band = |i: usize| {
            let k = order_key(&idle[i], queue_priority);
            (k.0, k.1)
        };
        let mut start = 0;
        while start < order.len() {
            let b = band(order[start]);
            let end = start + order[start..].iter().take_while(|&&i| band(i) == b).count();
            fair_reorder(&mut order[start..end], idle, fair);
            start = end;
        }
    }
    order
}

/// Keeps, of each owner's idle folds, only the first ones in line that its cap still allows
/// (`cap` running at once, counting those running now).
pub fn within_owner_cap(
    folds: Vec<PendingFold>,
    cap: u32,
    running: &BTreeMap<&str, usize>,
    queue_priority: &BTreeMap<String, i64>,
    fair: Option<&FairShare>,
) -> Vec<PendingFold> {
    let order = line_order(&folds, queue_priority, fair);
    let mut room: HashMap<&str, usize> = HashMap::new();
    let mut keep = vec![false; folds.len()];
    for i in order {
        let owner = folds[i].owner.as_str();
        let left = room.entry(owner).or_insert_with(|| {
            (cap as usize).saturating_sub(running.get(owner).copied().unwrap_or(0))
        });
        if *left > 0 {
            *left -= 1;
            keep[i] = true;
        }
    }
    folds
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect()
}

/// How many of `idle` come before `fold` (0 = first in line).
pub fn place_in_line(
    fold: &PendingFold,
    idle: &[PendingFold],
    queue_priority: &BTreeMap<String, i64>,
    fair: Option<&FairShare>,
) -> usize {
    let order = line_order(idle, queue_priority, fair);
    order
        .iter()
        .position(|&i| idle[i].id == fold.id)
        .unwrap_or(order.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i64, owner: &str, queue: &str, priority: i64, submitted_at: i64) -> PendingFold {
        PendingFold {
            id,
            queue: queue.into(),
            owner: owner.into(),
            priority,
            submitted_at,
            millicpus: 1000,
            memory: 1,
            gpus: 0,
            hard_limit_ms: None,
            image: None,
            requirements: None,
            rank: None,
        }
    }

    #[test]
    fn queue_priority_then_priority_then_age() {
        let qp = BTreeMap::from([("H".to_string(), 10)]);
        let idle = vec![
            f(1, "o", "default", 0, 100),
            f(2, "o", "default", 5, 200),
            f(3, "o", "H", -5, 300),
            f(4, "o", "default", 0, 50),
        ];
        let place =
            |id: i64| place_in_line(idle.iter().find(|x| x.id == id).unwrap(), &idle, &qp, None);
        assert_eq!([place(3), place(2), place(4), place(1)], [0, 1, 2, 3]);
    }

    #[test]
    fn owners_take_turns_and_heavy_users_wait() {
        // Ann submitted 4 folds before Bob's 2; with fair share they alternate.
        let idle: Vec<PendingFold> = [
            (1, "ann"),
            (2, "ann"),
            (3, "ann"),
            (4, "ann"),
            (5, "bob"),
            (6, "bob"),
        ]
        .iter()
        .map(|&(id, o)| f(id, o, "default", 0, id))
        .collect();
        let ids = |order: Vec<usize>| order.iter().map(|&i| idle[i].id).collect::<Vec<_>>();
        let none = FairShare::default();
        assert_eq!(
            ids(line_order(&idle, &BTreeMap::new(), Some(&none))),
            [1, 5, 2, 6, 3, 4]
        );
        // Ann already uses 3 slots: Bob's folds go first.
        let heavy = FairShare {
            usage: BTreeMap::from([("ann".to_string(), 3.0)]),
        };
        assert_eq!(
            ids(line_order(&idle, &BTreeMap::new(), Some(&heavy))),
            [5, 6, 1, 2, 3, 4]
        );
        // Without fair share: submit order.
        assert_eq!(
            ids(line_order(&idle, &BTreeMap::new(), None)),
            [1, 2, 3, 4, 5, 6]
        );
        // Priority still dominates fair share.
        let mut idle2 = idle.clone();
        idle2[3].priority = 1;
        assert_eq!(
            idle2[line_order(&idle2, &BTreeMap::new(), Some(&heavy))[0]].id,
            4
        );
    }
}

#[cfg(test)]
mod simulation {
    use super::*;
    use crate::scheduler::{schedule, RunnerView, Snapshot};

    fn fold(id: i64, owner: &str) -> PendingFold {
        PendingFold {
            id,
            queue: "default".into(),
            owner: owner.into(),
            priority: 0,
            submitted_at: id,
            millicpus: 1000,
            memory: 1 << 20,
            gpus: 0,
            hard_limit_ms: None,
            image: None,
            requirements: None,
            rank: None,
        }
    }

    /// Cycles until every fold of `small` has started; each cycle's folds run one cycle.
    fn cycles_until_small_done(fair: bool) -> usize {
        let mut idle: Vec<PendingFold> = (1..=1000).map(|i| fold(i, "big")).collect();
        idle.extend((1001..=1010).map(|i| fold(i, "small")));
        let runner = RunnerView {
            name: "r".into(),
            queues: vec!["*".into()],
            slots_total: 8,
            slots_free: 8,
            millicpus_total: 64_000,
            millicpus_free: 64_000,
            memory_total: 1 << 30,
            memory_free: 1 << 30,
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
        };
        let mut past: BTreeMap<String, f64> = BTreeMap::new();
        for cycle in 1..=200 {
            let snap = Snapshot {
                folds: idle.clone(),
                runners: vec![runner.clone()],
                queue_priority: BTreeMap::new(),
                fair_share: fair.then(|| FairShare {
                    usage: past.clone(),
                }),
            };
            let plan = schedule(&snap);
            assert_eq!(plan.assignments.len(), idle.len().min(8));
            for a in &plan.assignments {
                let owner = idle.iter().find(|f| f.id == a.fold).unwrap().owner.clone();
                *past.entry(owner).or_default() += 1.0;
            }
            idle.retain(|f| !plan.assignments.iter().any(|a| a.fold == f.id));
            if !idle.iter().any(|f| f.owner == "small") {
                return cycle;
            }
        }
        usize::MAX
    }

    #[test]
    fn a_small_owner_is_not_starved_by_a_big_one() {
        // 8 slots, one cycle per fold: owners alternate (4 + 4 a cycle), so the small owner's
        // 10 folds have all started by the third cycle.
        assert_eq!(cycles_until_small_done(true), 3);
        // Without fair share they wait behind all 1,000 (125 cycles).
        assert_eq!(cycles_until_small_done(false), 127);
    }
}

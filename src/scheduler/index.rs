//! The idle folds, kept between cycles: the snapshot's incremental shape.
//!
//! The master keeps one `IdleIndex`, loaded once at start and updated from what changes
//! (submits, releases, requeues, holds, removes, assignments); `schedule_index` matches from
//! it, and `analyze`/`place_in_line` read it. Nothing here scans every idle fold per cycle.
//!
//! Folds that are interchangeable for matching form a **group**: same queue, owner, priority,
//! resources, hard limit, image, requirements and rank. A group keeps its folds sorted by
//! (submit time, id), so within a group they are taken from the front. Groups live in **bands**
//! (queue priority, fold priority), visited in line order. A cycle then costs what the groups
//! it visits and the folds it places cost, however many folds wait in groups that cannot run.
//!
//! Fair share orders a band by each owner's virtual time (usage + how many of the owner's
//! folds in the band come earlier); that count is a rank over the owner's groups in the band,
//! a binary search per group (`owner_rank`).

use super::PendingFold;
use crate::model::FoldId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A band: queue priority, then fold priority, both descending (the map's order is line order).
pub type BandKey = (Reverse<i64>, Reverse<i64>);

/// Where a fold stands in its group: submit time, then id.
pub(super) type Key = (i64, FoldId);

/// What makes folds interchangeable for matching (a `PendingFold` without id and submit time).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    queue: String,
    owner: String,
    priority: i64,
    millicpus: u32,
    memory: u64,
    gpus: u32,
    hard_limit_ms: Option<u64>,
    image: Option<String>,
    requirements: Option<String>,
    rank: Option<String>,
}

impl GroupKey {
    fn of(f: &PendingFold) -> GroupKey {
        GroupKey {
            queue: f.queue.clone(),
            owner: f.owner.clone(),
            priority: f.priority,
            millicpus: f.millicpus,
            memory: f.memory,
            gpus: f.gpus,
            hard_limit_ms: f.hard_limit_ms,
            image: f.image.clone(),
            requirements: f.requirements.clone(),
            rank: f.rank.clone(),
        }
    }
}

/// Folds of one group, sorted by (submit time, id).
pub(super) struct Group {
    /// A fold of the group (id and submit time of no meaning): what the steps look at.
    pub fold: PendingFold,
    pub band: BandKey,
    pub folds: VecDeque<Key>,
}

impl Group {
    /// How many of the group's folds come before `key`.
    pub fn count_before(&self, key: Key) -> usize {
        self.folds.partition_point(|k| *k < key)
    }
}

/// A band's groups, and per owner its groups in the band and how many folds they hold.
#[derive(Default)]
pub(super) struct Band {
    pub groups: BTreeSet<u32>,
    pub owners: BTreeMap<String, (BTreeSet<u32>, usize)>,
    pub len: usize,
}

/// Past this many folds leaving a group away from its front, `remove_many` makes one pass
/// over the group rather than shifting it once per fold.
const REMOVE_ONE_BY_ONE: usize = 32;

/// The idle folds, grouped and banded (see the module docs).
#[derive(Default)]
pub struct IdleIndex {
    queue_priority: BTreeMap<String, i64>,
    groups: Vec<Option<Group>>,
    free: Vec<u32>,
    by_key: HashMap<GroupKey, u32>,
    pub(super) bands: BTreeMap<BandKey, Band>,
    /// Each fold's group and key.
    folds: HashMap<FoldId, (u32, Key)>,
}

impl IdleIndex {
    pub fn new(queue_priority: BTreeMap<String, i64>) -> IdleIndex {
        IdleIndex {
            queue_priority,
            ..IdleIndex::default()
        }
    }

    /// An index of `folds` (ids must be distinct; a repeated id keeps the last).
    pub fn from_folds(
        folds: impl IntoIterator<Item = PendingFold>,
        queue_priority: BTreeMap<String, i64>,
    ) -> IdleIndex {
        let mut index = IdleIndex::new(queue_priority);
        for f in folds {
            index.insert(f);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.folds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.folds.is_empty()
    }

    pub fn contains(&self, id: FoldId) -> bool {
        self.folds.contains_key(&id)
    }

    /// Groups of interchangeable folds (a measure of what a cycle may visit).
    pub fn groups(&self) -> usize {
        self.by_key.len()
    }

    pub fn queue_priority(&self) -> &BTreeMap<String, i64> {
        &self.queue_priority
    }

    pub(super) fn group(&self, g: u32) -> &Group {
        self.groups[g as usize]
            .as_ref()
            .expect("a listed group exists")
    }

    fn band_of(&self, queue: &str, priority: i64) -> BandKey {
        let q = self.queue_priority.get(queue).copied().unwrap_or(0);
        (Reverse(q), Reverse(priority))
    }

    /// The fold as it was inserted, if it is idle.
    pub fn get(&self, id: FoldId) -> Option<PendingFold> {
        let &(g, (submitted_at, id)) = self.folds.get(&id)?;
        Some(PendingFold {
            id,
            submitted_at,
            ..self.group(g).fold.clone()
        })
    }

    /// Adds an idle fold, or updates it (a fold inserted again replaces its earlier entry).
    pub fn insert(&mut self, f: PendingFold) {
        self.remove(f.id);
        let key = GroupKey::of(&f);
        let g = match self.by_key.get(&key) {
            Some(&g) => g,
            None => self.new_group(key, &f),
        };
        let entry = (f.submitted_at, f.id);
        let group = self.groups[g as usize].as_mut().expect("group exists");
        // Submits come in time order: appending is the rule, a requeue the exception.
        if group.folds.back().is_none_or(|last| *last < entry) {
            group.folds.push_back(entry);
        } else {
            let at = group.folds.partition_point(|k| *k < entry);
            group.folds.insert(at, entry);
        }
        let (band, owner) = (group.band, group.fold.owner.clone());
        let b = self.bands.get_mut(&band).expect("the group's band exists");
        b.len += 1;
        b.owners.get_mut(&owner).expect("the owner is listed").1 += 1;
        self.folds.insert(f.id, (g, entry));
    }

    fn new_group(&mut self, key: GroupKey, f: &PendingFold) -> u32 {
        let band = self.band_of(&f.queue, f.priority);
        let group = Group {
            fold: PendingFold {
                id: 0,
                submitted_at: 0,
                ..f.clone()
            },
            band,
            folds: VecDeque::new(),
        };
        let g = match self.free.pop() {
            Some(g) => {
                self.groups[g as usize] = Some(group);
                g
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as u32
            }
        };
        self.by_key.insert(key, g);
        let b = self.bands.entry(band).or_default();
        b.groups.insert(g);
        b.owners.entry(f.owner.clone()).or_default().0.insert(g);
        g
    }

    /// Removes a fold (assigned, held, removed...); false if it was not idle here.
    pub fn remove(&mut self, id: FoldId) -> bool {
        let Some((g, entry)) = self.folds.remove(&id) else {
            return false;
        };
        let group = self.groups[g as usize].as_mut().expect("group exists");
        // Assignments take the front: check it first.
        if group.folds.front() == Some(&entry) {
            group.folds.pop_front();
        } else if let Ok(at) = group.folds.binary_search(&entry) {
            group.folds.remove(at);
        }
        self.after_removal(g, 1);
        true
    }

    /// Removes many folds at once. What a cycle assigns is mostly the front of each group (its
    /// oldest folds), taken off the front; the few others one by one, and only when many are
    /// not at the front one pass over the group: the cost follows what leaves, not how many
    /// folds wait behind them.
    pub fn remove_many(&mut self, ids: &[FoldId]) -> usize {
        let mut per_group: BTreeMap<u32, BTreeSet<Key>> = BTreeMap::new();
        for id in ids {
            if let Some((g, entry)) = self.folds.remove(id) {
                per_group.entry(g).or_default().insert(entry);
            }
        }
        let mut removed = 0;
        for (g, gone) in per_group {
            let group = self.groups[g as usize].as_mut().expect("group exists");
            // Both are in key order: the front of `gone` that is the front of the group.
            let mut rest = gone.iter().peekable();
            while let (Some(front), Some(next)) = (group.folds.front(), rest.peek()) {
                if front != *next {
                    break;
                }
                group.folds.pop_front();
                rest.next();
            }
            let rest: Vec<Key> = rest.copied().collect();
            if rest.len() <= REMOVE_ONE_BY_ONE {
                for key in rest {
                    if let Ok(at) = group.folds.binary_search(&key) {
                        group.folds.remove(at);
                    }
                }
            } else {
                let rest: BTreeSet<Key> = rest.into_iter().collect();
                group.folds.retain(|k| !rest.contains(k));
            }
            removed += gone.len();
            self.after_removal(g, gone.len());
        }
        removed
    }

    fn after_removal(&mut self, g: u32, n: usize) {
        let group = self.groups[g as usize].as_ref().expect("group exists");
        let (band, owner, empty) = (group.band, group.fold.owner.clone(), group.folds.is_empty());
        let b = self.bands.get_mut(&band).expect("the group's band exists");
        b.len -= n;
        let o = b.owners.get_mut(&owner).expect("the owner is listed");
        o.1 -= n;
        if !empty {
            return;
        }
        o.0.remove(&g);
        if o.0.is_empty() {
            b.owners.remove(&owner);
        }
        b.groups.remove(&g);
        if b.groups.is_empty() {
            self.bands.remove(&band);
        }
        let group = self.groups[g as usize].take().expect("group exists");
        self.by_key.remove(&GroupKey::of(&group.fold));
        self.free.push(g);
    }

    /// New queue priorities (an inventory reload): every group moves to its new band.
    pub fn set_queue_priority(&mut self, queue_priority: BTreeMap<String, i64>) {
        if queue_priority == self.queue_priority {
            return;
        }
        self.queue_priority = queue_priority;
        self.bands.clear();
        for g in 0..self.groups.len() {
            let Some(group) = &self.groups[g] else {
                continue;
            };
            let band = self.band_of(&group.fold.queue, group.fold.priority);
            let (owner, n) = (group.fold.owner.clone(), group.folds.len());
            self.groups[g].as_mut().expect("group exists").band = band;
            let b = self.bands.entry(band).or_default();
            b.groups.insert(g as u32);
            b.len += n;
            let o = b.owners.entry(owner).or_default();
            o.0.insert(g as u32);
            o.1 += n;
        }
    }

    /// Every idle fold, in no particular order.
    pub fn folds(&self) -> impl Iterator<Item = PendingFold> + '_ {
        self.groups.iter().flatten().flat_map(|g| {
            g.folds.iter().map(move |&(submitted_at, id)| PendingFold {
                id,
                submitted_at,
                ..g.fold.clone()
            })
        })
    }

    /// How many of the owner's folds in `band` come before `key` (the owner's groups there).
    pub(super) fn owner_rank(&self, band: &Band, owner: &str, key: Key) -> usize {
        band.owners.get(owner).map_or(0, |(groups, _)| {
            groups
                .iter()
                .map(|&g| self.group(g).count_before(key))
                .sum()
        })
    }

    /// The owner's `k`-th fold (0-based) in `band`, in submit order, if it has that many.
    fn owner_select(&self, band: &Band, owner: &str, k: usize) -> Option<Key> {
        let (groups, n) = band.owners.get(owner)?;
        if k >= *n {
            return None;
        }
        // The answer is the smallest key with exactly k of the owner's folds before it; it is
        // the front of some group after dropping, in each group, the folds before it. Search
        // each group's keys by bisection on the rank.
        for &g in groups {
            let folds = &self.group(g).folds;
            let (mut lo, mut hi) = (0usize, folds.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                let rank = self.owner_rank(band, owner, folds[mid]);
                match rank.cmp(&k) {
                    std::cmp::Ordering::Equal => return Some(folds[mid]),
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                }
            }
        }
        None
    }

    /// How many idle folds come before `fold` in line (0 = first), with or without fair share:
    /// the same order `schedule` takes folds in. Folds not idle here count as if they were.
    pub fn place_in_line(&self, fold: &PendingFold, fair: Option<&super::FairShare>) -> usize {
        let band_key = self.band_of(&fold.queue, fold.priority);
        let key = (fold.submitted_at, fold.id);
        let mut ahead: usize = self.bands.range(..band_key).map(|(_, b)| b.len).sum();
        let Some(band) = self.bands.get(&band_key) else {
            return ahead;
        };
        match fair {
            None => {
                ahead += band
                    .groups
                    .iter()
                    .map(|&g| self.group(g).count_before(key))
                    .sum::<usize>()
            }
            Some(fair) => {
                let usage = |o: &str| fair.usage.get(o).copied().unwrap_or(0.0);
                let vt = usage(&fold.owner) + self.owner_rank(band, &fold.owner, key) as f64;
                for (owner, (_, n)) in &band.owners {
                    if *owner == fold.owner {
                        ahead += self.owner_rank(band, owner, key);
                        continue;
                    }
                    // The owner's k-th fold has virtual time usage + k: those below vt come
                    // first, one equal to it goes first if it comes earlier in submit order.
                    let u = usage(owner);
                    // The k with u + k < vt: a prefix, whose length ceil(vt - u) may be off
                    // by one in floating point, so it is checked both ways.
                    let mut before = ((vt - u).ceil().max(0.0) as usize).min(*n);
                    while before > 0 && u + ((before - 1) as f64) >= vt {
                        before -= 1;
                    }
                    while before < *n && u + (before as f64) < vt {
                        before += 1;
                    }
                    if before < *n && u + (before as f64) == vt {
                        if let Some(k) = self.owner_select(band, owner, before) {
                            if k < key {
                                before += 1;
                            }
                        }
                    }
                    ahead += before;
                }
            }
        }
        ahead
    }
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
            memory: 1 << 20,
            gpus: 0,
            hard_limit_ms: None,
            image: None,
            requirements: None,
            rank: None,
        }
    }

    #[test]
    fn groups_bands_and_removal_keep_counts() {
        let qp = BTreeMap::from([("H".to_string(), 10)]);
        let mut ix = IdleIndex::from_folds(
            [
                f(1, "ann", "default", 0, 5),
                f(2, "ann", "default", 0, 3),
                f(3, "bob", "H", 0, 9),
                f(4, "ann", "default", 1, 1),
            ],
            qp,
        );
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.groups(), 3);
        assert_eq!(ix.bands.len(), 3);
        // Folds 1 and 2 share a group, sorted by submit time.
        let (g, _) = ix.folds[&1];
        assert_eq!(
            ix.group(g).folds.iter().copied().collect::<Vec<_>>(),
            [(3, 2), (5, 1)]
        );
        assert_eq!(ix.get(2).unwrap(), f(2, "ann", "default", 0, 3));
        assert!(ix.remove(2));
        assert!(!ix.remove(2));
        assert_eq!(ix.remove_many(&[1, 3, 99]), 2);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.groups(), 1);
        assert_eq!(ix.bands.len(), 1);
        // Re-inserting a fold with new fields moves it.
        ix.insert(f(4, "ann", "H", 1, 1));
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.get(4).unwrap().queue, "H");
        ix.set_queue_priority(BTreeMap::new());
        assert_eq!(ix.bands.keys().next(), Some(&(Reverse(0), Reverse(1))));
    }

    #[test]
    fn remove_many_takes_the_front_a_few_inside_or_many_inside() {
        let ids = |ix: &IdleIndex| -> Vec<i64> {
            let (g, _) = ix.folds.values().next().copied().unwrap();
            ix.group(g).folds.iter().map(|k| k.1).collect()
        };
        let mut ix = IdleIndex::new(BTreeMap::new());
        for id in 1..=1000 {
            ix.insert(f(id, "ann", "default", 0, id));
        }
        // The oldest ten and three further in (one of them unknown): front pops and a few
        // one by one.
        let mut gone: Vec<i64> = (1..=10).collect();
        gone.extend([500, 700, 5000]);
        assert_eq!(ix.remove_many(&gone), 12);
        let left = ids(&ix);
        assert_eq!(left.len(), 988);
        assert_eq!(left[0], 11);
        assert!(!left.contains(&500) && !left.contains(&700));
        // Many away from the front: one pass; the order of the rest is kept.
        let odd: Vec<i64> = (101..=900).filter(|i| i % 2 == 1).collect();
        assert_eq!(ix.remove_many(&odd), 400);
        let left = ids(&ix);
        let expected: Vec<i64> = (11..=1000)
            .filter(|i| ![500, 700].contains(i) && !odd.contains(i))
            .collect();
        assert_eq!(left, expected);
        assert_eq!(ix.len(), expected.len());
        assert!(expected.iter().all(|id| ix.contains(*id)));
        assert!(!ix.contains(101) && !ix.contains(1));
    }

    #[test]
    fn place_in_line_agrees_with_the_full_order() {
        use crate::scheduler::{place_in_line, FairShare};
        let mut rng = 12345u64;
        let mut next = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let owners = ["ann", "bob", "cy", "dee"];
        let queues = ["default", "H", "L"];
        let qp = BTreeMap::from([("H".to_string(), 10), ("L".to_string(), -10)]);
        for round in 0..20 {
            let idle: Vec<PendingFold> = (0..150)
                .map(|id| {
                    let mut x = f(
                        id,
                        owners[next(4) as usize],
                        queues[next(3) as usize],
                        next(2) as i64,
                        next(40) as i64,
                    );
                    x.memory = [1u64, 2, 3][next(3) as usize] << 20;
                    x
                })
                .collect();
            let ix = IdleIndex::from_folds(idle.clone(), qp.clone());
            let fair = FairShare {
                usage: BTreeMap::from([
                    ("ann".to_string(), 2.0),
                    ("bob".to_string(), 0.5),
                    ("cy".to_string(), (round % 3) as f64),
                ]),
            };
            for x in idle.iter().step_by(7) {
                for fair in [None, Some(&fair)] {
                    assert_eq!(
                        ix.place_in_line(x, fair),
                        place_in_line(x, &idle, &qp, fair),
                        "round {round}, fold {}, fair {}",
                        x.id,
                        fair.is_some()
                    );
                }
            }
        }
    }
}

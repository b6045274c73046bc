//! The Requirements steps (the fold's requirements on runners, the runners' on folds) and
//! ranks.
//!
//! Expressions are parsed once per cycle (by text), and evaluated once per *class* and runner,
//! never per fold: a class is an expression with the fold attributes it reads (usually none),
//! so folds that differ only in what the expression does not read share one evaluation. A
//! runner-side class is further merged by its outcome over the whole pool (with `owner !=
//! "guest"`, every owner but guest is one class), which keeps the number of shapes small.
//! Classes whose requirements every runner meets (or whose rank is equal everywhere) are
//! `NONE` and cost nothing later.

use super::expr::{Expr, FoldAttr, Home, RunnerAttr, Scope, Value, Verdict, Why};
use super::feasibility::{capacity, FxMap, Shape};
use super::{PendingFold, Rejection, RunnerView, Step};
use std::rc::Rc;

/// No class: nothing to check (or to rank by).
pub(super) const NONE: u32 = u32::MAX;

/// How many runners, or distinct reasons, a message lists before "and N more".
const LISTED: usize = 3;

/// The fold attributes an expression may read, with the others zeroed so that folds differing
/// only there share a key. Owners, queues and images are interned ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct FoldKey {
    owner: u32,
    queue: u32,
    priority: i64,
    millicpus: u32,
    memory: u64,
    gpus: u32,
    image: u32,
}

impl FoldKey {
    fn project(mut self, mask: u8) -> FoldKey {
        let keep = |a: FoldAttr| mask & a.bit() != 0;
        if !keep(FoldAttr::Owner) {
            self.owner = 0;
        }
        if !keep(FoldAttr::Queue) {
            self.queue = 0;
        }
        if !keep(FoldAttr::Priority) {
            self.priority = 0;
        }
        if !keep(FoldAttr::Cpus) {
            self.millicpus = 0;
        }
        if !keep(FoldAttr::Memory) {
            self.memory = 0;
        }
        if !keep(FoldAttr::Gpus) {
            self.gpus = 0;
        }
        if !keep(FoldAttr::Image) {
            self.image = 0;
        }
        self
    }
}

/// A runner and a fold, as an expression sees them.
struct Pair<'a> {
    runner: &'a RunnerView,
    fold: &'a PendingFold,
    /// Judge the runner as if idle (capacity checks): free_slots = slots.
    idle: bool,
}

/// CPUs as a number: an integer when whole.
fn cpus_value<'a>(millicpus: u32) -> Value<'a> {
    if millicpus.is_multiple_of(1000) {
        Value::Int(i64::from(millicpus / 1000))
    } else {
        Value::Float(f64::from(millicpus) / 1000.0)
    }
}

impl Scope for Pair<'_> {
    fn runner(&self, attr: &RunnerAttr) -> Value<'_> {
        let r = self.runner;
        match attr {
            RunnerAttr::Name => Value::Str(&r.name),
            RunnerAttr::Cpus if r.millicpus_total == u32::MAX => Value::Undefined,
            RunnerAttr::Cpus => cpus_value(r.millicpus_total),
            RunnerAttr::Memory if r.memory_total == u64::MAX => Value::Undefined,
            RunnerAttr::Memory => Value::Int(i64::try_from(r.memory_total).unwrap_or(i64::MAX)),
            RunnerAttr::Gpus => Value::Int(i64::from(capacity(r).gpus)),
            RunnerAttr::Arch => r.arch.as_deref().map_or(Value::Undefined, Value::Str),
            RunnerAttr::Os => r.os.as_deref().map_or(Value::Undefined, Value::Str),
            RunnerAttr::Labels => Value::List(&r.labels),
            RunnerAttr::Queues => Value::List(&r.queues),
            RunnerAttr::Images => Value::List(r.images.as_deref().unwrap_or(&[])),
            RunnerAttr::Slots => Value::Int(i64::from(r.slots_total)),
            RunnerAttr::FreeSlots if self.idle => Value::Int(i64::from(r.slots_total)),
            RunnerAttr::FreeSlots => Value::Int(i64::from(r.slots_free.min(r.slots_total))),
            RunnerAttr::Custom(name) => match r.attributes.get(name) {
                None => Value::Undefined,
                Some(super::AttrValue::Str(s)) => Value::Str(s),
                Some(super::AttrValue::Int(i)) => Value::Int(*i),
                Some(super::AttrValue::Float(x)) => Value::Float(*x),
                Some(super::AttrValue::Bool(b)) => Value::Bool(*b),
            },
        }
    }

    fn fold(&self, attr: FoldAttr) -> Value<'_> {
        let f = self.fold;
        match attr {
            FoldAttr::Owner => Value::Str(&f.owner),
            FoldAttr::Queue => Value::Str(&f.queue),
            FoldAttr::Priority => Value::Int(f.priority),
            FoldAttr::Cpus => cpus_value(f.millicpus),
            FoldAttr::Memory => Value::Int(i64::try_from(f.memory).unwrap_or(i64::MAX)),
            FoldAttr::Gpus => Value::Int(i64::from(f.gpus)),
            FoldAttr::Image => f.image.as_deref().map_or(Value::Undefined, Value::Str),
        }
    }
}

/// An expression evaluated over the pool for one class of folds.
struct Class<'a, T> {
    /// A fold of the class, to evaluate (and explain) with.
    fold: &'a PendingFold,
    /// Index into `Reqs::exprs` (fold side and ranks).
    expr: u32,
    /// Per runner.
    values: Vec<T>,
}

/// The requirement steps over a set of runners.
pub(super) struct Judged {
    /// The Requirements and RunnerRequirements rejections.
    pub rejections: Vec<Rejection>,
    /// The runners that pass both steps, ascending.
    pub passing: Vec<u32>,
    /// Whether every runner rejected was rejected by an evaluation error.
    pub errors_only: bool,
}

/// The pool's expressions during one cycle.
pub(super) struct Reqs<'a> {
    runners: &'a [RunnerView],
    idle: bool,
    /// Per runner: its requirements (Err: they do not parse, and refuse every fold).
    runner_exprs: Vec<Option<Result<Expr, String>>>,
    /// The fold attributes any runner's requirements read.
    runner_mask: u8,
    /// Whether any runner has requirements.
    any_runner: bool,
    owners: FxMap<&'a str, u32>,
    /// Fold requirements and ranks by text (Err: they do not parse).
    exprs: Vec<Result<Expr, String>>,
    expr_ids: FxMap<&'a str, u32>,
    fold_keys: FxMap<(u32, FoldKey), u32>,
    fold_classes: Vec<Class<'a, Verdict>>,
    runner_keys: FxMap<FoldKey, u32>,
    runner_outcomes: FxMap<Vec<Verdict>, u32>,
    runner_classes: Vec<Class<'a, Verdict>>,
    rank_keys: FxMap<(u32, FoldKey), u32>,
    ranks: Vec<Class<'a, f64>>,
    /// `judge` by (set of runners, fold class, runner class).
    judged: FxMap<(u64, u32, u32), Rc<Judged>>,
}

impl<'a> Reqs<'a> {
    /// `idle`: judge runners as if nothing ran on them (capacity checks).
    pub fn new(runners: &'a [RunnerView], idle: bool) -> Reqs<'a> {
        let runner_exprs: Vec<Option<Result<Expr, String>>> = runners
            .iter()
            .map(|r| {
                r.requirements
                    .as_deref()
                    .map(|t| Expr::parse(t, Home::Fold).map_err(|e| e.to_string()))
            })
            .collect();
        let runner_mask = runner_exprs
            .iter()
            .flatten()
            .flatten()
            .fold(0, |m, e| m | e.fold_mask());
        Reqs {
            runners,
            idle,
            any_runner: runner_exprs.iter().any(Option::is_some),
            runner_exprs,
            runner_mask,
            owners: FxMap::default(),
            exprs: Vec::new(),
            expr_ids: FxMap::default(),
            fold_keys: FxMap::default(),
            fold_classes: Vec::new(),
            runner_keys: FxMap::default(),
            runner_outcomes: FxMap::default(),
            runner_classes: Vec::new(),
            rank_keys: FxMap::default(),
            ranks: Vec::new(),
            judged: FxMap::default(),
        }
    }

    /// Whether any expression can matter for `f`: cheap, for the common case.
    fn involved(&self, f: &PendingFold) -> bool {
        f.requirements.is_some() || f.rank.is_some() || self.any_runner
    }

    fn expr(&mut self, text: &'a str) -> u32 {
        if let Some(&id) = self.expr_ids.get(text) {
            return id;
        }
        let id = self.exprs.len() as u32;
        self.exprs
            .push(Expr::parse(text, Home::Runner).map_err(|e| e.to_string()));
        self.expr_ids.insert(text, id);
        id
    }

    fn key(&mut self, f: &'a PendingFold, queue: u32, image: u32, mask: u8) -> FoldKey {
        let owner = if mask & FoldAttr::Owner.bit() != 0 {
            let next = self.owners.len() as u32;
            *self.owners.entry(f.owner.as_str()).or_insert(next)
        } else {
            0
        };
        FoldKey {
            owner,
            queue,
            priority: f.priority,
            millicpus: f.millicpus,
            memory: f.memory,
            gpus: f.gpus,
            image,
        }
        .project(mask)
    }

    fn pair(&self, r: usize, fold: &'a PendingFold) -> Pair<'a> {
        Pair {
            runner: &self.runners[r],
            fold,
            idle: self.idle,
        }
    }

    /// Sets the shape's requirement classes for fold `f` (its queue and image already set)
    /// and returns the fold's rank class.
    pub fn classify(&mut self, f: &'a PendingFold, shape: &mut Shape) -> u32 {
        shape.req = NONE;
        shape.runner_req = NONE;
        if !self.involved(f) {
            return NONE;
        }
        let (queue, image) = (shape.queue, shape.image);
        if let Some(text) = f.requirements.as_deref() {
            let e = self.expr(text);
            let mask = self.exprs[e as usize].as_ref().map_or(0, Expr::fold_mask);
            let key = (e, self.key(f, queue, image, mask));
            shape.req = match self.fold_keys.get(&key) {
                Some(&c) => c,
                None => {
                    let values: Vec<Verdict> = (0..self.runners.len())
                        .map(|r| match &self.exprs[e as usize] {
                            Ok(x) => x.verdict(&self.pair(r, f)),
                            Err(_) => Verdict::Error,
                        })
                        .collect();
                    let c = self.add_class(values, f, e, |reqs| &mut reqs.fold_classes);
                    self.fold_keys.insert(key, c);
                    c
                }
            };
        }
        if self.any_runner {
            let key = self.key(f, queue, image, self.runner_mask);
            shape.runner_req = match self.runner_keys.get(&key) {
                Some(&c) => c,
                None => {
                    let values: Vec<Verdict> = (0..self.runners.len())
                        .map(|r| match &self.runner_exprs[r] {
                            None => Verdict::Pass,
                            Some(Ok(x)) => x.verdict(&self.pair(r, f)),
                            Some(Err(_)) => Verdict::Error,
                        })
                        .collect();
                    let c = match self.runner_outcomes.get(&values) {
                        Some(&c) => c,
                        None => {
                            let c = self.add_class(values.clone(), f, NONE, |reqs| {
                                &mut reqs.runner_classes
                            });
                            self.runner_outcomes.insert(values, c);
                            c
                        }
                    };
                    self.runner_keys.insert(key, c);
                    c
                }
            };
        }
        let Some(text) = f.rank.as_deref() else {
            return NONE;
        };
        {
            let e = self.expr(text);
            let mask = self.exprs[e as usize].as_ref().map_or(0, Expr::fold_mask);
            let key = (e, self.key(f, queue, image, mask));
            match self.rank_keys.get(&key) {
                Some(&c) => c,
                None => {
                    let values: Vec<f64> = (0..self.runners.len())
                        .map(|r| match &self.exprs[e as usize] {
                            Ok(x) => x.rank(&self.pair(r, f)),
                            Err(_) => 0.0,
                        })
                        .collect();
                    let c = if values.iter().all(|v| *v == values[0]) {
                        NONE
                    } else {
                        self.ranks.push(Class {
                            fold: f,
                            expr: e,
                            values,
                        });
                        self.ranks.len() as u32 - 1
                    };
                    self.rank_keys.insert(key, c);
                    c
                }
            }
        }
    }

    /// A new class, or NONE when every runner passes.
    fn add_class(
        &mut self,
        values: Vec<Verdict>,
        fold: &'a PendingFold,
        expr: u32,
        list: impl FnOnce(&mut Self) -> &mut Vec<Class<'a, Verdict>>,
    ) -> u32 {
        if values.iter().all(|v| *v == Verdict::Pass) {
            return NONE;
        }
        let list = list(self);
        list.push(Class { fold, expr, values });
        list.len() as u32 - 1
    }

    /// Whether runner `r` meets the shape's requirements and the shape meets the runner's.
    #[inline]
    pub fn passes(&self, shape: &Shape, r: usize) -> bool {
        (shape.req == NONE || self.fold_classes[shape.req as usize].values[r] == Verdict::Pass)
            && (shape.runner_req == NONE
                || self.runner_classes[shape.runner_req as usize].values[r] == Verdict::Pass)
    }

    /// The rank of class `rank` on runner `r` (0 without a rank).
    #[inline]
    pub fn rank(&self, rank: u32, r: usize) -> f64 {
        if rank == NONE {
            0.0
        } else {
            self.ranks[rank as usize].values[r]
        }
    }

    /// The requirement steps for `shape` over `runners`, computed once per `set` (a name
    /// for that list of runners chosen by the caller) and pair of classes: explanations are
    /// per shape, and many shapes share their classes.
    pub fn judge(&mut self, set: u64, shape: &Shape, runners: &[u32]) -> Rc<Judged> {
        let key = (set, shape.req, shape.runner_req);
        if let Some(j) = self.judged.get(&key) {
            return j.clone();
        }
        let j = Rc::new(self.judge_now(shape, runners));
        self.judged.insert(key, j.clone());
        j
    }

    fn judge_now(&self, shape: &Shape, runners: &[u32]) -> Judged {
        if shape.req == NONE && shape.runner_req == NONE {
            return Judged {
                rejections: Vec::new(),
                passing: runners.to_vec(),
                errors_only: false,
            };
        }
        let mut fold_side: Vec<(usize, Why)> = Vec::new();
        let mut runner_side: Vec<(usize, Why)> = Vec::new();
        let mut passing = Vec::new();
        for &r in runners {
            let r = r as usize;
            if shape.req != NONE {
                let class = &self.fold_classes[shape.req as usize];
                if class.values[r] != Verdict::Pass {
                    let why = match &self.exprs[class.expr as usize] {
                        Ok(e) => e.why(&self.pair(r, class.fold)),
                        Err(message) => Some(unparsed(message)),
                    };
                    fold_side.push((r, why.unwrap_or_else(|| unparsed("changed"))));
                    continue;
                }
            }
            if shape.runner_req != NONE {
                let class = &self.runner_classes[shape.runner_req as usize];
                if class.values[r] != Verdict::Pass {
                    let why = match &self.runner_exprs[r] {
                        Some(Ok(e)) => e.why(&self.pair(r, class.fold)),
                        Some(Err(message)) => Some(unparsed(message)),
                        None => None,
                    };
                    runner_side.push((r, why.unwrap_or_else(|| unparsed("changed"))));
                    continue;
                }
            }
            passing.push(r as u32);
        }
        let errors_only = fold_side.iter().chain(&runner_side).all(|(_, w)| w.error);
        let mut rejections = fold_rejections(&fold_side);
        rejections.extend(self.runner_rejections(&runner_side));
        Judged {
            rejections,
            passing,
            errors_only,
        }
    }

    fn runner_rejections(&self, refused: &[(usize, Why)]) -> Vec<Rejection> {
        let mut out = Vec::new();
        for error in [false, true] {
            let these: Vec<&(usize, Why)> =
                refused.iter().filter(|(_, w)| w.error == error).collect();
            let n = these.len();
            if n == 0 {
                continue;
            }
            // What each runner says: its requirements, or why they cannot be evaluated.
            let says = |(r, why): &(usize, Why)| {
                if error {
                    format!("{}: {}", why.leaf, why.detail)
                } else {
                    let text = self.runners[*r].requirements.as_deref().unwrap_or_default();
                    text.trim().to_string()
                }
            };
            let detail = if n == 1 {
                let (name, said) = (&self.runners[these[0].0].name, says(these[0]));
                if error {
                    format!("runner requirements: {name} cannot evaluate its requirements ({said})")
                } else {
                    format!("runner requirements: {name} refuses ({said})")
                }
            } else {
                let mut listed: Vec<String> = these
                    .iter()
                    .take(LISTED)
                    .map(|w| format!("{}: {}", self.runners[w.0].name, says(w)))
                    .collect();
                if n > LISTED {
                    listed.push(format!("and {} more", n - LISTED));
                }
                let verb = if error {
                    "cannot evaluate their requirements"
                } else {
                    "refuse"
                };
                format!(
                    "runner requirements: {n} runners {verb} ({})",
                    listed.join("; ")
                )
            };
            out.push(Rejection {
                step: Step::RunnerRequirements,
                runners: n,
                detail,
            });
        }
        out
    }
}

fn unparsed(message: &str) -> Why {
    Why {
        leaf: "requirements".into(),
        detail: format!("do not parse: {message}"),
        error: true,
    }
}

fn n_runners(n: usize) -> String {
    if n == 1 {
        "1 runner".into()
    } else {
        format!("{n} runners")
    }
}

/// "requirements: 940 runners fail (gpus >= 1: gpus is 0 on 940)", and the same for
/// evaluation errors.
fn fold_rejections(failed: &[(usize, Why)]) -> Vec<Rejection> {
    let mut out = Vec::new();
    for error in [false, true] {
        // (leaf, [(detail, count)]) in order of first appearance.
        let mut groups: Vec<(&str, Vec<(&str, usize)>)> = Vec::new();
        let mut n = 0;
        for (_, why) in failed.iter().filter(|(_, w)| w.error == error) {
            n += 1;
            let g = match groups.iter().position(|(leaf, _)| *leaf == why.leaf) {
                Some(g) => g,
                None => {
                    groups.push((&why.leaf, Vec::new()));
                    groups.len() - 1
                }
            };
            let details = &mut groups[g].1;
            match details.iter_mut().find(|(d, _)| *d == why.detail) {
                Some((_, k)) => *k += 1,
                None => details.push((&why.detail, 1)),
            }
        }
        if n == 0 {
            continue;
        }
        let mut parts: Vec<String> = groups
            .iter()
            .take(LISTED)
            .map(|(leaf, details)| {
                let mut ds: Vec<String> = details
                    .iter()
                    .take(LISTED)
                    .map(|(d, k)| {
                        if d.is_empty() {
                            format!("on {k}")
                        } else {
                            format!("{d} on {k}")
                        }
                    })
                    .collect();
                if details.len() > LISTED {
                    ds.push(format!("and {} more", details.len() - LISTED));
                }
                format!("{leaf}: {}", ds.join(", "))
            })
            .collect();
        if groups.len() > LISTED {
            parts.push(format!("and {} more", groups.len() - LISTED));
        }
        let what = match (error, n) {
            (false, 1) => "1 runner fails".to_string(),
            (false, _) => format!("{n} runners fail"),
            (true, _) => format!("cannot be evaluated on {}", n_runners(n)),
        };
        out.push(Rejection {
            step: Step::Requirements,
            runners: n,
            detail: format!("requirements: {what} ({})", parts.join("; ")),
        });
    }
    out
}

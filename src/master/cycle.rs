//! A matching cycle: the idle index brought up to date with the store, the scheduler run over
//! the open runners, and the assignments committed beside the loop (`Assigning`); the agents
//! hear of them (`Run`) once the commit answers.

use super::runners::RunnerState;
use super::{Master, OwnerCap};
use crate::inventory::ExecutorKind;
use crate::model::{AttemptId, FoldId, FoldSpec};
use crate::protocol::{Grant, RunAttempt, ToAgent};
use crate::scheduler::{self, RunnerView};
use crate::store::{FoldChange, NewAttempt};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The answer of an assignment commit.
pub(super) type Committed = crate::store::Result<Vec<(AttemptId, NewAttempt, FoldSpec)>>;

/// A cycle's assignments on their way to the store. The loop goes on meanwhile (agents'
/// reports, results, wake-ups), but runs no other cycle and takes no command until they are
/// committed: no second cycle can count the same slots, and every cancel, drain or reload
/// sees the attempts of a commit (see `Master::run`).
pub(super) struct Assigning {
    reply: tokio::sync::oneshot::Receiver<Committed>,
    /// The owner of each fold assigned (one entry per assignment).
    owners: HashMap<FoldId, String>,
    /// Folds queued behind an attempt on a runner's agent (`prefetch`), with that attempt.
    after: HashMap<FoldId, AttemptId>,
    since: Instant,
}

/// The answer of the commit under way.
pub(super) async fn committed(assigning: &mut Option<Assigning>) -> Committed {
    match assigning.as_mut() {
        Some(a) => (&mut a.reply)
            .await
            .unwrap_or(Err(crate::store::StoreError::Closed)),
        None => std::future::pending().await,
    }
}

impl Master {
    /// Brings the idle index up to date with the store: what changed since the last look.
    pub(super) async fn follow_changes(&mut self) -> anyhow::Result<()> {
        const PAGE: usize = 10_000;
        loop {
            let (changes, seq) = self.store.fold_changes(self.seq, PAGE).await?;
            self.seq = seq;
            let full = changes.len() == PAGE;
            let mut index = self.index.write().expect("index lock");
            index.set_queue_priority(self.cfg.inventory.queue_priorities());
            for change in changes {
                match change {
                    FoldChange::Idle(f) => index.insert(f),
                    FoldChange::NotIdle(id) => {
                        index.remove(id);
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// A fold whose given-up attempt is still being cancelled on a runner waits, out of the
    /// index, until that attempt is gone: an attempt never runs beside its fold's retry.
    fn park_cancelling(&mut self) {
        let cancelling: HashSet<FoldId> = self
            .runners
            .values()
            .flat_map(|r| r.cancelling.values().filter_map(|c| c.fold))
            .collect();
        if cancelling.is_empty() && self.parked.is_empty() {
            return;
        }
        let mut index = self.index.write().expect("index lock");
        let back: Vec<FoldId> = self
            .parked
            .keys()
            .copied()
            .filter(|id| !cancelling.contains(id))
            .collect();
        for id in back {
            if let Some(f) = self.parked.remove(&id) {
                // Still idle unless the store said otherwise meanwhile (follow_changes).
                if !index.contains(id) {
                    index.insert(f);
                }
            }
        }
        for id in cancelling {
            if let Some(f) = index.get(id) {
                index.remove(id);
                self.parked.insert(id, f);
            }
        }
    }

    /// One matching cycle: follow the store's changes, match from the idle index, commit,
    /// then tell the agents.
    pub(super) async fn cycle(&mut self) -> anyhow::Result<usize> {
        let t = Instant::now();
        self.follow_changes().await?;
        let followed = t.elapsed();
        self.park_cancelling();
        // Only the runners that may take a fold now are looked at in full: in a busy pool,
        // a few of many.
        let mut size = scheduler::PoolSize::default();
        let mut names: Vec<&str> = Vec::new();
        let mut views: Vec<RunnerView> = Vec::new();
        for (name, r) in &self.runners {
            r.size_into(&mut size);
            if r.open() {
                names.push(name);
                views.push(r.view());
            }
        }
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let fair_share = self.cfg.fair_share.map(|_| self.usage.share());
        let running = self.usage.running();
        let cap = self.cfg.owner_cap.map(|cap| OwnerCap {
            cap,
            running: &running,
        });
        let mut owners: HashMap<FoldId, String> = HashMap::new();
        let mut after: HashMap<FoldId, AttemptId> = HashMap::new();
        let new: Vec<NewAttempt> = {
            let index = self.index.read().expect("index lock");
            if index.is_empty() {
                return Ok(0);
            }
            let assignments = if views.is_empty() {
                Vec::new()
            } else {
                scheduler::schedule_index(&index, &views, size, fair_share.as_ref(), cap)
            };
            let mut new: Vec<NewAttempt> = assignments
                .iter()
                .map(|a| {
                    let f = index
                        .get(a.fold)
                        .expect("an assigned fold is idle in the index");
                    let grant = Grant {
                        millicpus: f.millicpus,
                        memory: f.memory,
                        gpus: a.gpus.clone(),
                    };
                    owners.insert(a.fold, f.owner);
                    NewAttempt {
                        fold: a.fold,
                        runner: names[a.runner].clone(),
                        grant,
                    }
                })
                .collect();
            // No free slot took a fold: runners with a `prefetch` get folds queued behind
            // the attempts they run (the next cycle, once these are committed, if one did).
            if new.is_empty() {
                for (q, behind) in self.match_queued(&index, size, fair_share.as_ref(), cap) {
                    owners.insert(q.fold, index.get(q.fold).expect("idle").owner);
                    after.insert(q.fold, behind);
                    new.push(q);
                }
            }
            new
        };
        drop(running);
        let matched = t.elapsed();
        if new.is_empty() {
            return Ok(0);
        }
        let assigned: Vec<FoldId> = new.iter().map(|n| n.fold).collect();
        tracing::debug!(
            target: "datarun::timing",
            "follow_ms={:.3} match_ms={:.3}",
            followed.as_secs_f64() * 1000.0,
            (matched - followed).as_secs_f64() * 1000.0,
        );
        // Whether committed or found no longer idle, these folds leave the index now.
        self.index
            .write()
            .expect("index lock")
            .remove_many(&assigned);
        // The commit goes on beside the loop (it shares its sync with the results being
        // recorded meanwhile); the agents hear of the attempts once it is durable.
        let (tx, reply) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        // Only folds queued behind running work (`after`): they may share a group's fsync.
        let behind = !after.is_empty();
        tokio::spawn(async move {
            let committed = if behind {
                store.assign_behind(new).await
            } else {
                store.assign(new).await
            };
            let _ = tx.send(committed);
        });
        self.assigning = Some(Assigning {
            reply,
            owners,
            after,
            since: Instant::now(),
        });
        Ok(assigned.len())
    }

    /// Folds to queue on the agents of runners whose slots are full and whose `prefetch`
    /// has room, each behind an attempt out there with nothing queued behind it yet and a
    /// grant that holds the fold's (it will take that attempt's slot): the scheduler matches
    /// them against each runner's view with its free slots, CPUs and memory those of the
    /// attempts it may queue behind, and each match is then placed behind the first (shortest
    /// line) whose grant holds it, or left for a later cycle. GPUs are not queued for.
    fn match_queued(
        &self,
        index: &scheduler::IdleIndex,
        size: scheduler::PoolSize,
        fair_share: Option<&scheduler::FairShare>,
        cap: Option<OwnerCap<'_>>,
    ) -> Vec<(NewAttempt, AttemptId)> {
        let mut names: Vec<&str> = Vec::new();
        let mut views: Vec<RunnerView> = Vec::new();
        let mut tails: Vec<Vec<(AttemptId, Grant)>> = Vec::new();
        for (name, r) in &self.runners {
            if !r.may_queue() {
                continue;
            }
            let (mut behind, room) = r.queue_tails();
            behind.truncate(room);
            if behind.is_empty() {
                continue;
            }
            let mut v = r.view();
            let n = behind.len() as u32;
            v.slots_free = n;
            v.slots_total = v.slots_total.max(n);
            v.millicpus_free = behind
                .iter()
                .fold(0u32, |s, (_, g)| s.saturating_add(g.millicpus));
            v.memory_free = behind
                .iter()
                .fold(0u64, |s, (_, g)| s.saturating_add(g.memory));
            v.gpus_free.clear();
            names.push(name);
            views.push(v);
            tails.push(behind);
        }
        if views.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for a in scheduler::schedule_index(index, &views, size, fair_share, cap) {
            let f = index
                .get(a.fold)
                .expect("an assigned fold is idle in the index");
            let behind = &mut tails[a.runner];
            let Some(i) = behind
                .iter()
                .position(|(_, g)| g.millicpus >= f.millicpus && g.memory >= f.memory)
            else {
                continue;
            };
            let (attempt, _) = behind.remove(i);
            out.push((
                NewAttempt {
                    fold: a.fold,
                    runner: names[a.runner].to_string(),
                    grant: Grant {
                        millicpus: f.millicpus,
                        memory: f.memory,
                        gpus: Vec::new(),
                    },
                },
                attempt,
            ));
        }
        out
    }

    /// The assignments of the last cycle are committed: their agents are told.
    pub(super) fn on_committed(&mut self, result: Committed) -> anyhow::Result<()> {
        let Assigning {
            owners,
            after,
            since,
            ..
        } = self.assigning.take().expect("a commit under way");
        let committed = result?;
        tracing::debug!(
            target: "datarun::timing",
            "assign_ms={:.3} assigned={}",
            since.elapsed().as_secs_f64() * 1000.0,
            committed.len()
        );
        if committed.len() < owners.len() {
            // Some were held or removed meanwhile: their slots are free for the next cycle.
            self.dirty = true;
        }
        for (attempt, n, spec) in committed {
            tracing::info!(target: "datarun::fold", fold = %n.fold, attempt = %attempt, runner = %n.runner, "assigned");
            self.usage.started(attempt, &owners[&n.fold]);
            let mut run = self.run_message(attempt, &n, &spec, &self.runners[&n.runner]);
            let r = self
                .runners
                .get_mut(&n.runner)
                .expect("assigned to a known runner");
            match after.get(&n.fold) {
                // Queued behind an attempt that ended meanwhile (its result arrived while
                // this commit was under way): it takes that slot now, as the agent does.
                Some(&behind) if r.holds(behind) => {
                    run.after = Some(behind);
                    r.queued.insert(
                        attempt,
                        super::runners::Queued {
                            after: behind,
                            grant: n.grant.clone(),
                        },
                    );
                }
                _ => {
                    r.grants.insert(attempt, n.grant.clone());
                }
            }
            // A runner that may queue more gets another cycle.
            if r.may_queue() {
                self.dirty = true;
            }
            if let Some(link) = &r.link {
                link.send(ToAgent::Run(run));
            }
        }
        Ok(())
    }

    pub(super) fn run_message(
        &self,
        attempt: AttemptId,
        n: &NewAttempt,
        spec: &FoldSpec,
        r: &RunnerState,
    ) -> RunAttempt {
        let (soft, hard) = crate::model::provenance::time_limits(
            (spec.soft_time_limit, spec.hard_time_limit),
            (r.spec.soft_time_limit_ms, r.spec.hard_time_limit_ms),
        );
        RunAttempt {
            attempt,
            fold: n.fold,
            command: spec.command.clone(),
            // A docker runner runs its default image (the first it allows) for folds naming none.
            image: spec.image.clone().or_else(|| match r.spec.executor {
                ExecutorKind::Docker => r.spec.images.first().filter(|i| *i != "*").cloned(),
                ExecutorKind::Process => None,
            }),
            env: spec.env.clone(),
            inputs: spec.inputs.clone(),
            grant: n.grant.clone(),
            soft_limit_ms: soft,
            hard_limit_ms: hard,
            log_limit: self.cfg.log_limit,
            output_limit: self.cfg.output_limit,
            after: None,
        }
    }
}

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
        if views.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let fair_share = self.cfg.fair_share.map(|_| self.usage.share());
        let running = self.usage.running();
        let assignments = {
            let index = self.index.read().expect("index lock");
            if index.is_empty() {
                return Ok(0);
            }
            scheduler::schedule_index(
                &index,
                &views,
                size,
                fair_share.as_ref(),
                self.cfg.owner_cap.map(|cap| OwnerCap {
                    cap,
                    running: &running,
                }),
            )
        };
        drop(running);
        let matched = t.elapsed();
        if assignments.is_empty() {
            return Ok(0);
        }
        let mut owners: HashMap<FoldId, String> = HashMap::with_capacity(assignments.len());
        let new: Vec<NewAttempt> = {
            let index = self.index.read().expect("index lock");
            assignments
                .iter()
                .map(|a| {
                    let f = index
                        .get(a.fold)
                        .expect("an assigned fold is idle in the index");
                    owners.insert(a.fold, f.owner);
                    NewAttempt {
                        fold: a.fold,
                        runner: names[a.runner].clone(),
                        grant: Grant {
                            millicpus: f.millicpus,
                            memory: f.memory,
                            gpus: a.gpus.clone(),
                        },
                    }
                })
                .collect()
        };
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
        tokio::spawn(async move {
            let _ = tx.send(store.assign(new).await);
        });
        self.assigning = Some(Assigning {
            reply,
            owners,
            since: Instant::now(),
        });
        Ok(assigned.len())
    }

    /// The assignments of the last cycle are committed: their agents are told.
    pub(super) fn on_committed(&mut self, result: Committed) -> anyhow::Result<()> {
        let Assigning { owners, since, .. } = self.assigning.take().expect("a commit under way");
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
            let run = self.run_message(attempt, &n, &spec, &self.runners[&n.runner]);
            let r = self
                .runners
                .get_mut(&n.runner)
                .expect("assigned to a known runner");
            r.grants.insert(attempt, n.grant.clone());
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
        }
    }
}

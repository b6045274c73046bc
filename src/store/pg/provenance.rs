//! Provenance records on PostgreSQL, in the SQLite store's format (`store::provenance`: the
//! compact part in `attempts.provenance`, the runner's facts once in `provenance_facts`, the
//! whole record built on read, frozen whole before a spec changes). Written in the results'
//! own transaction (`apply_reports_with`), so whoever sees a fold end can read it.

use super::attempts::{finish_attempt, start_attempt};
use super::lease::fence;
use super::PgStore;
use crate::model::provenance::{Provenance, RunnerSide};
use crate::model::{AttemptId, FoldId};
use crate::store::provenance::{
    assemble, compact_text, facts_text, frozen_text, missing, parse, pick, Row, Stored,
    COMPACT_PREFIX,
};
use crate::store::{RecordResult, Result, ResultInput};
use std::collections::HashMap;
use tokio_postgres::{GenericClient, Transaction};

/// Records the provenance of these attempts in `tx`; an attempt the store does not know, or
/// one recorded already, is skipped (as `store::provenance::write`).
async fn write(tx: &Transaction<'_>, sides: Vec<RunnerSide>) -> Result<()> {
    let mut facts_ids: HashMap<String, i64> = HashMap::new();
    for side in sides {
        let Some(facts) = facts_text(&side) else {
            continue;
        };
        let facts = match facts_ids.get(&facts) {
            Some(id) => *id,
            None => {
                let id = facts_id(tx, &facts).await?;
                facts_ids.insert(facts, id);
                id
            }
        };
        let attempt = side.attempt;
        let Some(text) = compact_text(side, facts) else {
            continue;
        };
        tx.execute(
            "UPDATE attempts SET provenance = $1 WHERE id = $2 AND provenance IS NULL",
            &[&text, &attempt],
        )
        .await?;
    }
    Ok(())
}

/// The id of a set of runner facts, stored once (found by its md5's unique index).
async fn facts_id(tx: &Transaction<'_>, facts: &str) -> Result<i64> {
    tx.execute(
        "INSERT INTO provenance_facts (facts) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&facts],
    )
    .await?;
    Ok(tx
        .query_one(
            "SELECT id FROM provenance_facts WHERE md5(facts) = md5($1) AND facts = $1",
            &[&facts],
        )
        .await?
        .get(0))
}

/// Before `fold`'s spec changes: its attempts' compact records become whole.
pub(super) async fn freeze(tx: &Transaction<'_>, fold: FoldId) -> Result<()> {
    let ids: Vec<AttemptId> = tx
        .query(
            "SELECT id FROM attempts WHERE fold_id = $1 AND provenance LIKE $2",
            &[&fold, &format!("{COMPACT_PREFIX}%")],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in ids {
        if let Some(whole) = whole(tx, id).await? {
            tx.execute(
                "UPDATE attempts SET provenance = $1 WHERE id = $2",
                &[&frozen_text(id, whole), &id],
            )
            .await?;
        }
    }
    Ok(())
}

/// The whole record of `attempt`, if it has one.
async fn whole(c: &impl GenericClient, attempt: AttemptId) -> Result<Option<Provenance>> {
    let found = c
        .query_opt(
            "SELECT a.fold_id, a.millicpus, a.memory, a.gpus, a.provenance, f.spec
             FROM attempts a JOIN folds f ON f.id = a.fold_id WHERE a.id = $1",
            &[&attempt],
        )
        .await?;
    let Some(r) = found else { return Ok(None) };
    let Some(text) = r.try_get::<_, Option<String>>(4)? else {
        return Ok(None);
    };
    let row = Row {
        fold: r.try_get(0)?,
        millicpus: r.try_get::<_, i64>(1)? as u32,
        memory: r.try_get(2)?,
        gpus: r.try_get(3)?,
        spec: r.try_get(5)?,
    };
    let compact = match parse(attempt, &text)? {
        Stored::Whole(p) => return Ok(Some(*p)),
        Stored::Compact(c) => c,
    };
    let facts: Option<String> = c
        .query_opt(
            "SELECT facts FROM provenance_facts WHERE id = $1",
            &[&compact.facts],
        )
        .await?
        .map(|r| r.get(0));
    assemble(attempt, row, *compact, facts).map(Some)
}

impl PgStore {
    /// Agent reports (attempts started, results) in one transaction, with the provenance of
    /// the finished attempts written before their results (as `Store::apply_reports_with`).
    pub async fn apply_reports_with(
        &self,
        started: Vec<AttemptId>,
        results: Vec<ResultInput>,
        provenance: Vec<RunnerSide>,
    ) -> Result<Vec<RecordResult>> {
        // The write carries the token it was issued under, however long it waits.
        let generation = self.generation();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        fence(&tx, generation, self.write_idle_ms()).await?;
        for attempt in started {
            start_attempt(&tx, attempt).await?;
        }
        write(&tx, provenance).await?;
        let mut out = Vec::with_capacity(results.len());
        for input in &results {
            out.push(finish_attempt(&tx, input, self.budget(true)).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records provenance in a transaction of its own (when the results could not be
    /// recorded together).
    pub async fn record_provenance(&self, sides: Vec<RunnerSide>) -> Result<()> {
        self.apply_reports_with(Vec::new(), Vec::new(), sides)
            .await
            .map(|_| ())
    }

    /// The provenance of `attempt` of `fold`, or of its newest attempt that has one.
    pub async fn provenance(&self, fold: FoldId, attempt: Option<AttemptId>) -> Result<Provenance> {
        let c = self.pool.get().await?;
        let found = match attempt {
            Some(a) => {
                c.query_opt(
                    "SELECT id, provenance IS NOT NULL FROM attempts WHERE id = $1 AND fold_id = $2",
                    &[&a, &fold],
                )
                .await?
            }
            None => {
                c.query_opt(
                    "SELECT id, TRUE FROM attempts
                     WHERE fold_id = $1 AND provenance IS NOT NULL ORDER BY id DESC LIMIT 1",
                    &[&fold],
                )
                .await?
            }
        };
        let found = found.map(|r| (r.get::<_, AttemptId>(0), r.get::<_, bool>(1)));
        let id = pick(fold, attempt, found)?;
        whole(&*c, id).await?.ok_or_else(|| missing(fold, id))
    }
}

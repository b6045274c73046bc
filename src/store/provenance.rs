//! Provenance records: what produced an attempt's result (`model::provenance::Provenance`).
//!
//! Kept compact (`attempts.provenance`, a [`Stored::Compact`] of a few hundred bytes): only
//! what the fold's spec and the attempt's grant do not already hold (what the agent said, the
//! runner's time limits, the master's version), with the runner's facts kept once per distinct
//! set of facts (`provenance_facts`). The whole record is built when it is read, from the spec,
//! the grant and the compact part. A spec that changes after an attempt ran (a release with
//! changes, inputs passed on) first freezes its fold's records whole ([`freeze`]), so a record
//! always tells what that attempt ran. Written in the results' own transaction
//! (`Store::apply_reports_with`), so whoever sees a fold end can read its provenance.

use super::{Result, Store, StoreError};
use crate::model::provenance::{build, Provenance, Ran, RunnerFacts, RunnerSide};
use crate::model::{AttemptId, FoldId, FoldSpec};
use crate::protocol::Grant;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The largest record kept: the spec's own bound (its argv, env and inputs) plus the runner's
/// facts and the agent's fields, which `build` clips.
pub const MAX_PROVENANCE: usize = crate::model::limits::MAX_SPEC_BYTES + (128 << 10);

/// The largest compact part kept (the agent's fields are clipped before; this bounds the rest).
const MAX_COMPACT: usize = 64 << 10;

/// `attempts.provenance` as stored: compact (written since schema 17) or whole (written
/// before, or frozen because the fold's spec changed).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Stored {
    Compact(Box<Compact>),
    Whole(Box<Provenance>),
}

/// What a record needs beyond the fold's spec and the attempt's grant.
#[derive(Serialize, Deserialize)]
pub(super) struct Compact {
    /// `provenance_facts.id` of the runner's facts.
    pub(super) facts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ran: Option<Ran>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    soft: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hard: Option<u64>,
    /// The master that recorded it.
    master: String,
}

/// Records the provenance of these attempts in `tx` (the results' transaction). An attempt the
/// store does not know, or one recorded already, is skipped. Facts seen in this batch are
/// looked up once.
pub(super) fn write(tx: &Transaction, sides: Vec<RunnerSide>) -> Result<()> {
    let mut facts_ids: HashMap<String, i64> = HashMap::new();
    for side in sides {
        let Some(facts) = facts_text(&side) else {
            continue;
        };
        let facts = match facts_ids.get(&facts) {
            Some(id) => *id,
            None => {
                let id = facts_id(tx, &facts)?;
                facts_ids.insert(facts, id);
                id
            }
        };
        let attempt = side.attempt;
        let Some(text) = compact_text(side, facts) else {
            continue;
        };
        tx.prepare_cached(
            "UPDATE attempts SET provenance = ?1 WHERE id = ?2 AND provenance IS NULL",
        )?
        .execute(params![text, attempt])?;
    }
    Ok(())
}

/// The runner's facts of `side` as kept once (`provenance_facts.facts`): None (said in the
/// log) when over `MAX_COMPACT`, so what an agent says of its machine cannot grow the store
/// without bound.
pub(super) fn facts_text(side: &RunnerSide) -> Option<String> {
    let text = serde_json::to_string(&side.runner).expect("facts serialize");
    if text.len() > MAX_COMPACT {
        tracing::warn!(
            "attempt {}: its runner's facts ({} bytes) are over {MAX_COMPACT}; provenance not kept",
            side.attempt,
            text.len()
        );
        return None;
    }
    Some(text)
}

/// `side`'s compact record, its runner's facts kept as `facts`: None (said in the log) when
/// it is over `MAX_COMPACT`.
pub(super) fn compact_text(side: RunnerSide, facts: i64) -> Option<String> {
    let compact = Compact {
        facts,
        ran: side.ran.map(Ran::clipped),
        soft: side.soft_time_limit_ms,
        hard: side.hard_time_limit_ms,
        master: env!("CARGO_PKG_VERSION").to_string(),
    };
    let text = serde_json::to_string(&Stored::Compact(Box::new(compact))).expect("serializes");
    if text.len() > MAX_COMPACT {
        tracing::warn!(
            "attempt {}: its provenance ({} bytes) is over {MAX_COMPACT}; not kept",
            side.attempt,
            text.len()
        );
        return None;
    }
    Some(text)
}

/// How a compact record's text begins (`freeze` finds those to make whole).
pub(super) const COMPACT_PREFIX: &str = "{\"facts\":";

/// A whole record as kept when its fold's spec changes (`freeze`): None (said in the log)
/// when it is over `MAX_PROVENANCE`, and so dropped.
pub(super) fn frozen_text(attempt: AttemptId, whole: Provenance) -> Option<String> {
    let text =
        serde_json::to_string(&Stored::Whole(Box::new(whole))).expect("provenance serializes");
    if text.len() > MAX_PROVENANCE {
        tracing::warn!("attempt {attempt}: its provenance is over {MAX_PROVENANCE}; dropped");
        return None;
    }
    Some(text)
}

/// A stored record read back: whole already, or its compact part (whose facts are to fetch).
pub(super) fn parse(attempt: AttemptId, text: &str) -> Result<Stored> {
    serde_json::from_str::<Stored>(text).map_err(|e| bad(attempt, e))
}

fn bad(attempt: AttemptId, e: serde_json::Error) -> StoreError {
    StoreError::Invalid(format!("attempt {attempt}: its stored provenance: {e}"))
}

/// The attempt's columns a whole record is built from (beside its compact part).
pub(super) struct Row {
    pub(super) fold: FoldId,
    pub(super) millicpus: u32,
    pub(super) memory: i64,
    pub(super) gpus: String,
    pub(super) spec: String,
}

/// The whole record of `attempt` from its row, its compact part and its runner's facts
/// (None: the facts row is missing).
pub(super) fn assemble(
    attempt: AttemptId,
    row: Row,
    compact: Compact,
    facts: Option<String>,
) -> Result<Provenance> {
    let facts = facts.ok_or_else(|| {
        StoreError::Invalid(format!("attempt {attempt}: its runner's facts are missing"))
    })?;
    let runner: RunnerFacts = serde_json::from_str(&facts).map_err(|e| bad(attempt, e))?;
    let spec: FoldSpec = serde_json::from_str(&row.spec).map_err(|e| bad(attempt, e))?;
    let grant = Grant {
        millicpus: row.millicpus,
        memory: row.memory as u64,
        gpus: serde_json::from_str(&row.gpus).unwrap_or_default(),
    };
    let side = RunnerSide {
        attempt,
        runner,
        soft_time_limit_ms: compact.soft,
        hard_time_limit_ms: compact.hard,
        ran: compact.ran,
    };
    let mut record = build(row.fold, &spec, &grant, side);
    record.versions.master = compact.master;
    Ok(record)
}

/// Which attempt `provenance(fold, attempt)` reads, from what the store found: the attempt
/// asked for (or the newest with a record) and whether it has one; else why there is none.
pub(super) fn pick(
    fold: FoldId,
    attempt: Option<AttemptId>,
    found: Option<(AttemptId, bool)>,
) -> Result<AttemptId> {
    match (found, attempt) {
        (Some((id, true)), _) => Ok(id),
        (Some((id, false)), _) => Err(StoreError::NotFound(format!(
            "attempt {id} of fold {fold} has no provenance: it has not finished, or ended \
             without a report (lost, or from before provenance was recorded)"
        ))),
        (None, Some(a)) => Err(StoreError::NotFound(format!(
            "fold {fold} has no attempt {a}"
        ))),
        (None, None) => Err(StoreError::NotFound(format!(
            "fold {fold} has no attempt with provenance yet (none has finished)"
        ))),
    }
}

/// What `pick` found no record for after all.
pub(super) fn missing(fold: FoldId, attempt: AttemptId) -> StoreError {
    StoreError::NotFound(format!(
        "attempt {attempt} of fold {fold} has no provenance"
    ))
}

/// The id of a set of runner facts, stored once.
fn facts_id(tx: &Transaction, facts: &str) -> Result<i64> {
    tx.prepare_cached("INSERT OR IGNORE INTO provenance_facts (facts) VALUES (?1)")?
        .execute([facts])?;
    Ok(tx
        .prepare_cached("SELECT id FROM provenance_facts WHERE facts = ?1")?
        .query_row([facts], |r| r.get(0))?)
}

/// Before `fold`'s spec changes: its attempts' compact records become whole, so they keep
/// telling what those attempts ran.
pub(super) fn freeze(tx: &Transaction, fold: FoldId) -> Result<()> {
    let ids: Vec<AttemptId> = tx
        .prepare_cached("SELECT id FROM attempts WHERE fold_id = ?1 AND provenance LIKE ?2")?
        .query_map(params![fold, format!("{COMPACT_PREFIX}%")], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        if let Some(whole) = whole(tx, id)? {
            tx.prepare_cached("UPDATE attempts SET provenance = ?1 WHERE id = ?2")?
                .execute(params![frozen_text(id, whole), id])?;
        }
    }
    Ok(())
}

/// The whole record of `attempt`, if it has one.
fn whole(conn: &rusqlite::Connection, attempt: AttemptId) -> Result<Option<Provenance>> {
    let row = conn
        .prepare_cached(
            "SELECT a.fold_id, a.millicpus, a.memory, a.gpus, a.provenance, f.spec
             FROM attempts a JOIN folds f ON f.id = a.fold_id WHERE a.id = ?1",
        )?
        .query_row([attempt], |r| {
            Ok((
                Row {
                    fold: r.get(0)?,
                    millicpus: r.get(1)?,
                    memory: r.get(2)?,
                    gpus: r.get(3)?,
                    spec: r.get(5)?,
                },
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((row, Some(text))) = row else {
        return Ok(None);
    };
    let compact = match parse(attempt, &text)? {
        Stored::Whole(p) => return Ok(Some(*p)),
        Stored::Compact(c) => c,
    };
    let facts: Option<String> = conn
        .prepare_cached("SELECT facts FROM provenance_facts WHERE id = ?1")?
        .query_row([compact.facts], |r| r.get(0))
        .optional()?;
    assemble(attempt, row, *compact, facts).map(Some)
}

impl Store {
    /// Records the provenance of these attempts in a transaction of its own (when their
    /// results could not be recorded together, see `apply_reports_with`).
    pub async fn record_provenance(&self, sides: Vec<RunnerSide>) -> Result<()> {
        if sides.is_empty() {
            return Ok(());
        }
        if let Some(pg) = self.pg() {
            return pg.record_provenance(sides).await;
        }
        self.call_lazy(move |conn| {
            let tx = conn.transaction()?;
            write(&tx, sides)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The provenance of `attempt` of `fold`, or of its newest attempt that has one.
    pub async fn provenance(&self, fold: FoldId, attempt: Option<AttemptId>) -> Result<Provenance> {
        if let Some(pg) = self.pg() {
            return pg.provenance(fold, attempt).await;
        }
        self.read(move |conn| {
            let row: Option<(AttemptId, bool)> = match attempt {
                Some(a) => conn
                    .prepare_cached(
                        "SELECT id, provenance IS NOT NULL FROM attempts WHERE id = ?1 AND fold_id = ?2",
                    )?
                    .query_row(params![a, fold], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
                None => conn
                    .prepare_cached(
                        "SELECT id, 1 FROM attempts
                         WHERE fold_id = ?1 AND provenance IS NOT NULL ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([fold], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            };
            let id = pick(fold, attempt, row)?;
            whole(conn, id)?.ok_or_else(|| missing(fold, id))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::provenance::RunnerFacts;
    use crate::model::{HoldCode, Outcome};
    use crate::store::tests::{assign, result, setup};
    use crate::store::ReleaseChanges;

    fn side(attempt: AttemptId) -> RunnerSide {
        RunnerSide {
            attempt,
            runner: RunnerFacts {
                name: "local".into(),
                cpus: Some(8.0),
                hostname: Some("h1".into()),
                ..Default::default()
            },
            soft_time_limit_ms: None,
            hard_time_limit_ms: Some(60_000),
            ran: None,
        }
    }

    #[tokio::test]
    async fn records_are_compact_share_facts_and_survive_a_spec_change() {
        let (_d, store, fold, first) = setup(5).await;
        let ended = store
            .apply_reports_with(
                vec![first],
                vec![result(
                    first,
                    Outcome::Error {
                        message: "bad".into(),
                    },
                )],
                vec![side(first)],
            )
            .await
            .unwrap();
        assert!(matches!(
            ended[0],
            crate::store::RecordResult::Recorded { .. }
        ));
        let before = store.provenance(fold, Some(first)).await.unwrap();
        assert_eq!(before.argv, vec!["true".to_string()]);
        assert_eq!(before.limits.memory, 1 << 20);
        assert_eq!(before.runner.hostname.as_deref(), Some("h1"));
        assert_eq!(before.limits.hard_time_limit_ms, Some(60_000));

        // A second fold on the same runner: its facts are not stored again; records stay small.
        let ids = store
            .submit(
                "ann".into(),
                false,
                vec![(crate::store::tests::spec(0), None)],
            )
            .await
            .unwrap();
        let second = assign(&store, ids[0]).await;
        store
            .apply_reports_with(
                vec![],
                vec![result(second, Outcome::Success)],
                vec![side(second)],
            )
            .await
            .unwrap();
        let (facts, longest): (i64, i64) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT COUNT(*) FROM provenance_facts),
                            (SELECT MAX(LENGTH(provenance)) FROM attempts)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(facts, 1, "one runner's facts are kept once");
        assert!(longest < 200, "a compact record is {longest} bytes");

        // The fold (back in line for a retry) is held and released with a larger memory: the first attempt's record still
        // tells what it ran with, though the spec it was built from has changed.
        store
            .hold(fold, HoldCode::User, "edit".into())
            .await
            .unwrap();
        store
            .release(
                fold,
                "ann".into(),
                ReleaseChanges {
                    memory: Some(2 << 20),
                    hard_time_limit: Some(30_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let after = store.provenance(fold, Some(first)).await.unwrap();
        assert_eq!(after, before);
        // Recorded twice: the first record stays.
        store
            .record_provenance(vec![RunnerSide {
                runner: RunnerFacts {
                    name: "other".into(),
                    ..Default::default()
                },
                ..side(first)
            }])
            .await
            .unwrap();
        assert_eq!(store.provenance(fold, None).await.unwrap(), before);

        // A runner whose facts are oversized: its attempt keeps no record, nothing is stored.
        let facts_count = || {
            store.read(|c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM provenance_facts", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
        };
        let before_huge = facts_count().await.unwrap();
        let ids = store
            .submit(
                "ann".into(),
                false,
                vec![(crate::store::tests::spec(0), None)],
            )
            .await
            .unwrap();
        let third = assign(&store, ids[0]).await;
        let mut huge = side(third);
        huge.runner.hostname = Some("h".repeat(MAX_COMPACT + 1));
        store
            .apply_reports_with(vec![], vec![result(third, Outcome::Success)], vec![huge])
            .await
            .unwrap();
        assert!(store.provenance(ids[0], None).await.is_err());
        assert_eq!(facts_count().await.unwrap(), before_huge);
    }
}

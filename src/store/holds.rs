//! Holds, releases and removals: the rules for when a fold is held (and with which code), the
//! new requests a release may carry, and the attempt a hold or remove must kill.

use super::folds::{event, get_fold, set_state};
use super::{Result, Store, StoreError};
use crate::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode, Outcome};
use rusqlite::{params, OptionalExtension, Transaction};

/// When a fold is out of retries: hold it where a person (or the OOM policy) can act and
/// release it, rather than fail it. A plain failure of the fold's own code is a result.
pub(super) fn hold_for(
    outcome: &Outcome,
    spec: &str,
    max_retries: u32,
) -> Option<(HoldCode, String)> {
    let memory = serde_json::from_str::<FoldSpec>(spec)
        .map(|s| s.resources.memory)
        .unwrap_or(0);
    match outcome {
        Outcome::OutOfMemory => Some((
            HoldCode::OutOfMemory,
            format!(
                "out of memory with a {} grant; release it with more: datarun queue release ID --memory SIZE",
                crate::units::format_size(memory)
            ),
        )),
        Outcome::ImageMissing { message, .. } => Some((HoldCode::BadImage, message.clone())),
        _ if max_retries > 0 => Some((
            HoldCode::RetriesExhausted,
            format!("failed {} times (max_retries {max_retries}); last: {outcome}", max_retries + 1),
        )),
        _ => None,
    }
}

/// When a fold has lost its runner `losses` times (this `outcome` included): past
/// `max_losses` it is held, since it may be what kills its runners. Losses never use retries.
pub(super) fn lost_too_often(
    outcome: &Outcome,
    losses: u32,
    max_losses: u32,
) -> Option<(HoldCode, String)> {
    let Outcome::Lost { reason } = outcome else {
        return None;
    };
    (losses > max_losses).then(|| {
        (
            HoldCode::LostTooOften,
            format!(
                "lost {losses} times (max_losses {max_losses}; a fold that keeps losing its \
                 runner may be what kills it); last: {reason}"
            ),
        )
    })
}

/// New requests for a fold being released.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseChanges {
    #[serde(default, with = "crate::units::size_bytes::option")]
    #[schema(schema_with = crate::units::size_bytes::schema)]
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    #[serde(default, with = "crate::units::duration_ms::option")]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    pub soft_time_limit: Option<u64>,
    #[serde(default, with = "crate::units::duration_ms::option")]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    pub hard_time_limit: Option<u64>,
}

impl ReleaseChanges {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpus.is_none()
            && self.soft_time_limit.is_none()
            && self.hard_time_limit.is_none()
    }

    /// The spec with the changes applied, checked like a new submission.
    pub fn apply(&self, spec: &FoldSpec) -> std::result::Result<FoldSpec, String> {
        let mut new = spec.clone();
        if let Some(m) = self.memory {
            new.resources.memory = m;
        }
        if let Some(c) = self.cpus {
            new.resources.cpus = c;
        }
        if self.soft_time_limit.is_some() {
            new.soft_time_limit = self.soft_time_limit;
        }
        if self.hard_time_limit.is_some() {
            new.hard_time_limit = self.hard_time_limit;
        }
        new.validate()?;
        Ok(new)
    }

    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", crate::units::format_size(m)));
        }
        if let Some(c) = self.cpus {
            parts.push(format!("cpus {c}"));
        }
        for (name, v) in [
            ("soft limit", self.soft_time_limit),
            ("hard limit", self.hard_time_limit),
        ] {
            if let Some(ms) = v {
                parts.push(format!(
                    "{name} {}",
                    crate::units::format_duration(std::time::Duration::from_millis(ms))
                ));
            }
        }
        parts.join(", ")
    }
}

/// What a hold or remove leaves for the master to do: kill an attempt that is out.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    pub attempt: AttemptId,
    pub runner: String,
}

pub(super) fn active_attempt_of(
    tx: &Transaction,
    fold: FoldId,
) -> rusqlite::Result<Option<Cancel>> {
    tx.prepare_cached(
        "SELECT a.id, a.runner FROM folds f JOIN attempts a ON a.id = f.current_attempt
         WHERE f.id = ?1 AND a.state != 'ended'",
    )?
    .query_row([fold], |r| {
        Ok(Cancel {
            attempt: r.get(0)?,
            runner: r.get(1)?,
        })
    })
    .optional()
}

impl Store {
    /// Holds a fold; returns the attempt to kill if one is out.
    pub async fn hold(
        &self,
        fold: FoldId,
        code: HoldCode,
        reason: String,
    ) -> Result<Option<Cancel>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::hold(pg, fold, code, reason),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state == FoldState::Held {
                return Err(StoreError::Conflict(format!("fold {fold} is already held")));
            }
            if f.state.is_final() {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is {}; only idle, assigned or running folds can be held",
                    f.state
                )));
            }
            let cancel = active_attempt_of(&tx, fold)?;
            set_state(&tx, fold, FoldState::Held, Some(&reason), Some(code))?;
            event(
                &tx,
                Some(fold),
                cancel.as_ref().map(|c| c.attempt),
                "held",
                &reason,
            )?;
            tx.commit()?;
            Ok(cancel)
        })
        .await
    }

    /// Puts a held fold back in line, with `changes` to its requests (already checked by the
    /// caller against the pool; checked here again as a spec).
    pub async fn release(
        &self,
        fold: FoldId,
        by: String,
        changes: ReleaseChanges,
    ) -> Result<FoldSpec> {
        if let Some(pg) = self.pg() {
            return super::engine::published(
                pg,
                crate::store::QueueStore::release(pg, fold, by, changes),
            )
            .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state != FoldState::Held {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is {}, not held; only held folds can be released",
                    f.state
                )));
            }
            let spec = changes.apply(&f.spec).map_err(StoreError::Invalid)?;
            if spec != f.spec {
                super::provenance::freeze(&tx, fold)?;
            }
            tx.prepare_cached(
                "UPDATE folds SET spec = ?1, millicpus = ?2, memory = ?3, hard_limit_ms = ?4 WHERE id = ?5",
            )?
            .execute(params![
                serde_json::to_string(&spec).expect("spec serializes"),
                spec.resources.millicpus(),
                spec.resources.memory as i64,
                spec.hard_time_limit.map(|v| v as i64),
                fold
            ])?;
            set_state(&tx, fold, FoldState::Idle, None, None)?;
            // A held fold whose attempt is still being killed gets a fresh attempt later.
            tx.execute("UPDATE folds SET current_attempt = NULL WHERE id = ?1", [fold])?;
            let detail = if changes.is_empty() {
                format!("released by {by}")
            } else {
                format!("released by {by} with {}", changes.describe())
            };
            event(&tx, Some(fold), None, "released", &detail)?;
            // Released into line only if what it waits for has ended.
            super::waiting::settle(&tx, fold)?;
            tx.commit()?;
            Ok(spec)
        })
        .await
    }

    /// Removes a fold; returns the attempt to kill if one is out.
    pub async fn remove(&self, fold: FoldId, by: String) -> Result<Option<Cancel>> {
        if let Some(pg) = self.pg() {
            return super::engine::published(pg, crate::store::QueueStore::remove(pg, fold, by))
                .await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let f = get_fold(&tx, fold)?;
            if f.state.is_final() {
                return Err(StoreError::Conflict(format!(
                    "fold {fold} is already {}",
                    f.state
                )));
            }
            let cancel = active_attempt_of(&tx, fold)?;
            set_state(
                &tx,
                fold,
                FoldState::Removed,
                Some(&format!("removed by {by}")),
                None,
            )?;
            event(
                &tx,
                Some(fold),
                cancel.as_ref().map(|c| c.attempt),
                "removed",
                &format!("removed by {by}"),
            )?;
            super::waiting::on_final(&tx, fold)?;
            tx.commit()?;
            Ok(cancel)
        })
        .await
    }
}

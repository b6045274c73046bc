//! Leadership of the masters sharing one PostgreSQL database: one `leadership` row holds the
//! holder, a generation (the fencing token) and when the lease expires, by the database's
//! clock so the masters' clocks do not matter. A master takes the lease once it has expired
//! (the generation goes up by one), renews it well within its length, and writes only while
//! it holds it: every write transaction first reads the row `FOR SHARE` (`fence`) and goes on
//! only if the generation is still its own and the lease has not expired. A deposed master's
//! late write is refused (`StoreError::Fenced`) and changes nothing; a takeover waits for
//! writes in flight (they hold the row shared), so writes never interleave across generations.

use super::PgStore;
use crate::store::{Result, StoreError};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_postgres::Transaction;

/// Who holds the leadership, as the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub holder: String,
    pub generation: i64,
    /// The lease has not expired yet.
    pub live: bool,
}

/// Refuses the transaction unless `generation` holds a lease that has not expired. The row
/// stays locked shared until the transaction ends, so no takeover can interleave.
pub(super) async fn fence(tx: &Transaction<'_>, generation: i64) -> Result<()> {
    if generation == 0 {
        return Err(StoreError::Fenced(
            "this master holds no leadership lease; only the active master writes".into(),
        ));
    }
    let row = tx
        .query_one(
            "SELECT holder, generation, expires_at > clock_timestamp() FROM leadership WHERE id = 1
             FOR SHARE",
            &[],
        )
        .await?;
    let (holder, now, live): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
    if now != generation {
        return Err(StoreError::Fenced(format!(
            "leadership generation {generation} was deposed: generation {now} is held by {holder}; \
             this master must not write"
        )));
    }
    if !live {
        return Err(StoreError::Fenced(format!(
            "the leadership lease of generation {generation} has expired; this master must not write \
             until it takes the lease again"
        )));
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl PgStore {
    /// Takes the leadership for `lease` if it is free (never taken, or expired) or already
    /// `holder`'s: a new generation, which this handle then writes under. `None` when another
    /// holder's lease is live.
    pub async fn try_acquire(&self, holder: &str, lease: Duration) -> Result<Option<i64>> {
        let c = self.pool.get().await?;
        let row = tokio::time::timeout(
            lease.max(Duration::from_secs(1)),
            c.query_opt(
                "UPDATE leadership SET holder = $1, generation = generation + 1,
                 expires_at = now() + $2::BIGINT * interval '1 millisecond'
                 WHERE id = 1 AND (expires_at <= now() OR holder = $1)
                 RETURNING generation",
                &[&holder, &millis(lease)],
            ),
        )
        .await
        .map_err(|_| StoreError::Postgres("taking the leadership lease timed out".into()))??;
        let taken = row.map(|r| r.get::<_, i64>(0));
        if let Some(g) = taken {
            self.generation.store(g, Ordering::SeqCst);
        }
        Ok(taken)
    }

    /// Extends this handle's lease (`holder`, `generation`) by `lease` from now, if it still
    /// holds it and it has not expired. Otherwise, or when the database does not answer within
    /// the lease, the leadership is lost: the handle stops writing and the error says why.
    pub async fn renew(&self, holder: &str, generation: i64, lease: Duration) -> Result<()> {
        let renewed = async {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    "UPDATE leadership SET expires_at = now() + $3::BIGINT * interval '1 millisecond'
                     WHERE id = 1 AND holder = $1 AND generation = $2 AND expires_at > now()
                     RETURNING generation",
                    &[&holder, &generation, &millis(lease)],
                )
                .await?;
            Ok::<bool, StoreError>(row.is_some())
        };
        let lost = match tokio::time::timeout(lease, renewed).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => format!(
                "leadership generation {generation} is lost: its lease expired or another master took it"
            ),
            Ok(Err(e)) => format!("leadership generation {generation} is lost: cannot renew: {e}"),
            Err(_) => format!(
                "leadership generation {generation} is lost: the database did not answer within the lease ({}ms)",
                millis(lease)
            ),
        };
        let _ = self
            .generation
            .compare_exchange(generation, 0, Ordering::SeqCst, Ordering::SeqCst);
        Err(StoreError::Fenced(lost))
    }

    /// Who holds the leadership now.
    pub async fn leadership(&self) -> Result<Leadership> {
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                "SELECT holder, generation, expires_at > now() FROM leadership WHERE id = 1",
                &[],
            )
            .await?;
        Ok(Leadership {
            holder: row.get(0),
            generation: row.get(1),
            live: row.get(2),
        })
    }
}

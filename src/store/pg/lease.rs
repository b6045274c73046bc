//! Leadership of the masters sharing one PostgreSQL database: one `leadership` row holds the
//! holder, a generation (the fencing token) and when the lease expires, by the database's
//! clock so the masters' clocks do not matter. A master takes the lease once it has expired
//! (the generation goes up by one), renews it well within its length, and writes only while
//! it holds it: every write transaction first reads the row `FOR KEY SHARE` (`fence`) and goes
//! on only if the generation is still its own and the lease has not expired. A deposed master's
//! late write is refused (`StoreError::Fenced`) and changes nothing; a takeover locks the row
//! `FOR UPDATE` and so waits for the writes in flight, so writes never interleave across
//! generations; a write whose master went silent in its middle (a partition) is ended by the
//! database once it has waited a lease for its next statement, so it cannot hold a takeover. A renewal is a plain `UPDATE` (a `FOR NO KEY UPDATE` lock), which the writes'
//! `KEY SHARE` locks do not block: a long write (a batch of thousands of folds) never keeps the
//! active master from renewing its lease.

use super::PgStore;
use crate::store::{Result, StoreError};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_postgres::Transaction;

/// The advisory lock every write transaction holds (one writer at a time).
const WRITER_LOCK: i64 = 0x6461_7461_7275_6e01;

/// How long a write transaction may wait for its master's next statement before the database
/// ends it (`idle_in_transaction_session_timeout`, for that transaction only), until a lease
/// is taken: then the lease's length (`PgStore::write_idle_ms`). A master's own pauses inside
/// one are a round trip or a read of a staged file.
pub(super) const WRITE_IDLE_MS: i64 = 10_000;

/// Who holds the leadership, as the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub holder: String,
    pub generation: i64,
    /// The lease has not expired yet.
    pub live: bool,
}

/// Refuses the transaction unless `generation` holds a lease that has not expired. The row
/// stays locked (`KEY SHARE`) until the transaction ends, so no takeover can interleave. Takes the
/// writers' turn first (`WRITER_LOCK`), so the check is made once it is this one's turn.
pub(super) async fn fence(tx: &Transaction<'_>, generation: i64, idle_ms: i64) -> Result<()> {
    if generation == 0 {
        return Err(StoreError::Fenced(
            "this master holds no leadership lease; only the active master writes".into(),
        ));
    }
    // Writers take turns, as on SQLite: a change's events get ids in commit order, so a
    // reader following `seq` (`fold_changes`) never passes a change that commits later. And
    // the database ends this transaction if the master stops talking in the middle of it (a
    // partition, a freeze) for longer than `WRITE_IDLE`: its locks would otherwise keep a
    // takeover (`FOR UPDATE` below) and every other writer waiting for as long as the dead
    // connection stays open: so a takeover comes at most about two leases after a cut.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1),
         set_config('idle_in_transaction_session_timeout', $2, true)",
        &[&WRITER_LOCK, &idle_ms.to_string()],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT holder, generation, expires_at > clock_timestamp() FROM leadership WHERE id = 1
             FOR KEY SHARE",
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
        let mut c = self.pool.get().await?;
        let attempt = async {
            // A cheap look first: a standby polls often, and the lock below waits for the
            // active master's writes in flight (and makes its next ones wait behind it).
            let free: bool = c
                .query_one(
                    "SELECT expires_at <= now() OR holder = $1 FROM leadership WHERE id = 1",
                    &[&holder],
                )
                .await?
                .get(0);
            if !free {
                return Ok(None);
            }
            let tx = c.transaction().await?;
            // FOR UPDATE: waits for the writes in flight under the old generation (`fence`).
            tx.execute("SELECT 1 FROM leadership WHERE id = 1 FOR UPDATE", &[])
                .await?;
            let row = tx
                .query_opt(
                    "UPDATE leadership SET holder = $1, generation = generation + 1,
                     expires_at = now() + $2::BIGINT * interval '1 millisecond'
                     WHERE id = 1 AND (expires_at <= now() OR holder = $1)
                     RETURNING generation",
                    &[&holder, &millis(lease)],
                )
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(row.map(|r| r.get::<_, i64>(0)))
        };
        let taken = tokio::time::timeout(lease.max(Duration::from_secs(1)), attempt)
            .await
            .map_err(|_| StoreError::Postgres("taking the leadership lease timed out".into()))??;
        if let Some(g) = taken {
            self.generation.store(g, Ordering::SeqCst);
            self.write_idle
                .store(millis(lease).max(1000), Ordering::SeqCst);
        }
        Ok(taken)
    }

    /// One renewal: true when the lease was extended by `lease` from now, false when this
    /// holder's lease is gone (expired, or another generation holds it).
    async fn renew_once(&self, holder: &str, generation: i64, lease: Duration) -> Result<bool> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "UPDATE leadership SET expires_at = now() + $3::BIGINT * interval '1 millisecond'
                 WHERE id = 1 AND holder = $1 AND generation = $2 AND expires_at > now()
                 RETURNING generation",
                &[&holder, &generation, &millis(lease)],
            )
            .await?;
        Ok(row.is_some())
    }

    /// How long (ms) the database lets a write transaction of this handle wait for its next
    /// statement (`fence`): the lease it took.
    pub(super) fn write_idle_ms(&self) -> i64 {
        self.write_idle.load(Ordering::SeqCst)
    }

    /// Stops writing under `generation` (a no-op if this handle moved on to another).
    fn step_down(&self, generation: i64) {
        let _ = self
            .generation
            .compare_exchange(generation, 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Extends this handle's lease (`holder`, `generation`) by `lease` from now, if it still
    /// holds it and it has not expired. Otherwise, or when the database does not answer within
    /// the lease, the leadership is lost: the handle stops writing and the error says why.
    pub async fn renew(&self, holder: &str, generation: i64, lease: Duration) -> Result<()> {
        let lost = match tokio::time::timeout(lease, self.renew_once(holder, generation, lease)).await {
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
        self.step_down(generation);
        Err(StoreError::Fenced(lost))
    }

    /// Renews the lease taken at `taken_at` (an instant before `try_acquire` was called) every
    /// third of it, until it is lost; the answer turns false then. A renewal counts from when
    /// it was sent, less a fifth of the lease (for clocks that run at slightly different
    /// rates, and for this process to act), so this master's own deadline comes before the
    /// database's: when a renewal has not succeeded by then (a partition, a dead database),
    /// the handle stops writing before any standby can take the lease. Ends when the receiver
    /// is dropped.
    pub fn spawn_renewer(
        &self,
        holder: String,
        generation: i64,
        lease: Duration,
        taken_at: Instant,
    ) -> tokio::sync::watch::Receiver<bool> {
        let (leading, rx) = tokio::sync::watch::channel(true);
        let store = self.clone();
        tokio::spawn(async move {
            let margin = lease / 5;
            let mut valid_until = taken_at + lease - margin;
            loop {
                let next = (Instant::now() + lease / 3).min(valid_until);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = leading.closed() => return,
                }
                let sent = Instant::now();
                let left = valid_until.saturating_duration_since(sent);
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, store.renew_once(&holder, generation, lease)).await
                {
                    Ok(Ok(true)) => valid_until = sent + lease - margin,
                    Ok(Ok(false)) => break,
                    // A failed renewal is tried again while the lease lasts.
                    Ok(Err(e)) => tracing::warn!("cannot renew the leadership lease: {e}"),
                    Err(_) => break,
                }
            }
            store.step_down(generation);
            tracing::warn!("leadership generation {generation} is lost; this master stops writing");
            leading.send_replace(false);
        });
        rx
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

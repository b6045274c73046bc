//! The PostgreSQL store (README "PostgreSQL: several masters, one active"): the queue's core
//! operations (`engine::QueueStore`) on a server database several masters can share, one of
//! them active at a time through a leadership lease whose generation fences every write
//! (`lease`). Connections come from a small pool; each operation is one transaction, as on
//! SQLite, and write transactions take turns (`lease::fence`), as SQLite's single writer, so
//! events get ids in commit order; the rows a change depends on are locked too. Beside the
//! queue: what a master needs (`ops`), folds that wait, provenance, webhooks, sweeps, blobs,
//! and the submission layer (`datasets`, `problems`, `submissions`, `runapp`), each with the
//! SQLite module's semantics, words and record builders (`store::row::Cols`).

mod attempts;
mod blobs;
mod datasets;
mod holds;
mod insert;
pub mod lease;
mod ops;
mod problems;
mod provenance;
mod queue;
mod runapp;
pub mod schema;
mod submissions;
mod sweeps;
mod waiting;
mod webhooks;

use super::records::{AttemptRecord, FoldRecord};
use super::{Result, StoreError};
use crate::model::{FoldState, HoldCode, Metrics};
use crate::protocol::Grant;
use crate::scheduler::PendingFold;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls, Row};

/// Connections a store handle opens at most.
const POOL: usize = 8;
/// How long an operation waits for a free connection.
const CHECKOUT: Duration = Duration::from_secs(30);
/// How long opening a connection may take.
const CONNECT: Duration = Duration::from_secs(10);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        })
    }
}

/// A handle to a PostgreSQL store. Cheap to clone; clones share the pool and the lease.
#[derive(Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
    /// The leadership generation this handle writes under (0: none; every write is refused).
    generation: Arc<AtomicI64>,
    /// How many runner losses a fold may take before it is held.
    max_losses: Arc<AtomicU32>,
    /// How long the database lets a write transaction sit idle (`lease::fence`), in ms.
    write_idle: Arc<AtomicI64>,
    /// The change signal (`ops::subscribe`): the newest event's id this handle saw.
    changes: Arc<tokio::sync::watch::Sender<i64>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db` or key=value) and migrates the
    /// database to the current schema.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT);
        }
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(POOL),
        });
        let mut conn = pool.get().await?;
        schema::migrate(&mut conn)
            .await
            .map_err(|message| StoreError::Postgres(format!("cannot migrate: {message}")))?;
        let newest: i64 = conn
            .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
            .await?
            .get(0);
        drop(conn);
        Ok(PgStore {
            pool,
            generation: Arc::new(AtomicI64::new(0)),
            max_losses: Arc::new(AtomicU32::new(super::DEFAULT_MAX_LOSSES)),
            write_idle: Arc::new(AtomicI64::new(lease::WRITE_IDLE_MS)),
            changes: Arc::new(tokio::sync::watch::channel(newest).0),
        })
    }

    fn new_pool(&self) -> Arc<Pool> {
        Arc::new(Pool {
            config: self.pool.config.clone(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(POOL),
        })
    }

    /// This handle (same generation, limits and change signal) with connections of its own:
    /// for a caller in another runtime (`blocking`).
    fn detached(&self) -> PgStore {
        PgStore {
            pool: self.new_pool(),
            ..self.clone()
        }
    }

    /// A second handle on the same database with its own connections and no lease: what
    /// another master process would have.
    pub async fn another(&self) -> Result<PgStore> {
        Ok(PgStore {
            pool: self.new_pool(),
            generation: Arc::new(AtomicI64::new(0)),
            max_losses: Arc::new(AtomicU32::new(self.max_losses())),
            write_idle: Arc::new(AtomicI64::new(lease::WRITE_IDLE_MS)),
            changes: Arc::new(tokio::sync::watch::channel(*self.changes.borrow()).0),
        })
    }

    /// Sets how many runner losses a fold may take before it is held (for every clone).
    pub fn set_max_losses(&self, max: u32) {
        self.max_losses.store(max, Ordering::Relaxed);
    }

    fn max_losses(&self) -> u32 {
        self.max_losses.load(Ordering::Relaxed)
    }

    /// The generation this handle writes under (0 when it holds no lease).
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// A few connections, opened when first needed; one whose session died is dropped.
struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: tokio::sync::Semaphore,
}

/// A connection taken from the pool, given back when dropped (unless it is closed).
struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Pool {
    async fn get(&self) -> Result<Conn<'_>> {
        let permit = tokio::time::timeout(CHECKOUT, self.permits.acquire())
            .await
            .map_err(|_| {
                StoreError::Postgres(format!(
                    "no free database connection within {}s",
                    CHECKOUT.as_secs()
                ))
            })?
            .map_err(|_| StoreError::Closed)?;
        let idle = loop {
            let next = self.idle.lock().expect("pool lock").pop();
            match next {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!("PostgreSQL connection ended: {e}");
                    }
                });
                client
            }
        };
        Ok(Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a connection until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                self.pool.idle.lock().expect("pool lock").push(c);
            }
        }
    }
}

/// A fold from a row of `records::FOLD_COLUMNS`.
fn fold_from_row(r: &Row) -> Result<FoldRecord> {
    let state: String = r.try_get(4)?;
    let hold: Option<String> = r.try_get(6)?;
    let outcome: Option<String> = r.try_get(15)?;
    let wall: Option<i64> = r.try_get(16)?;
    let spec: String = r.try_get(20)?;
    Ok(FoldRecord {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        queue: r.try_get(2)?,
        priority: r.try_get(3)?,
        state: FoldState::parse(&state).unwrap_or(FoldState::Held),
        reason: r.try_get(5)?,
        hold_code: hold.as_deref().and_then(HoldCode::parse),
        submitted_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
        attempts: r.try_get::<_, i64>(9)? as u32,
        retries_used: r.try_get::<_, i64>(10)? as u32,
        losses: r.try_get::<_, i64>(21)? as u32,
        current_attempt: r.try_get(11)?,
        runner: r.try_get(12)?,
        started_at: r.try_get(13)?,
        ended_at: r.try_get(14)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        metrics: match wall {
            Some(wall_ms) => Some(Metrics {
                wall_ms: wall_ms as u64,
                cpu_ms: r.try_get::<_, Option<i64>>(17)?.unwrap_or(0) as u64,
                peak_memory: r.try_get::<_, Option<i64>>(18)?.unwrap_or(0) as u64,
            }),
            None => None,
        },
        seq: r.try_get(19)?,
        array: match (
            r.try_get::<_, Option<i64>>(22)?,
            r.try_get::<_, Option<i64>>(23)?,
        ) {
            (Some(id), Some(index)) => Some(crate::store::ArrayPlace { id, index }),
            _ => None,
        },
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Invalid(format!("fold spec in the database: {e}")))?,
    })
}

/// An attempt from a row of `records::ATTEMPT_COLUMNS`.
fn attempt_from_row(r: &Row) -> Result<AttemptRecord> {
    let gpus: String = r.try_get(5)?;
    let outcome: Option<String> = r.try_get(10)?;
    let wall: Option<i64> = r.try_get(11)?;
    Ok(AttemptRecord {
        id: r.try_get(0)?,
        fold: r.try_get(1)?,
        runner: r.try_get(2)?,
        grant: Grant {
            millicpus: r.try_get::<_, i64>(3)? as u32,
            memory: r.try_get::<_, i64>(4)? as u64,
            gpus: serde_json::from_str(&gpus).unwrap_or_default(),
        },
        state: r.try_get(6)?,
        assigned_at: r.try_get(7)?,
        started_at: r.try_get(8)?,
        ended_at: r.try_get(9)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        metrics: wall.map(|w| Metrics {
            wall_ms: w as u64,
            cpu_ms: r.try_get::<_, Option<i64>>(12).ok().flatten().unwrap_or(0) as u64,
            peak_memory: r.try_get::<_, Option<i64>>(13).ok().flatten().unwrap_or(0) as u64,
        }),
        outputs: Vec::new(),
    })
}

/// The scheduler's columns of a fold (as `records::PENDING_COLUMNS`).
const PENDING_COLUMNS: &str = "id, queue, owner, priority, submitted_at, millicpus, memory, gpus,
    hard_limit_ms, image, requirements, rank";

fn pending_from_row(r: &Row) -> Result<PendingFold> {
    pending_from_row_at(r, 0)
}

/// A pending fold from `PENDING_COLUMNS` read from column `at` on.
fn pending_from_row_at(r: &Row, at: usize) -> Result<PendingFold> {
    Ok(PendingFold {
        id: r.try_get(at)?,
        queue: r.try_get(at + 1)?,
        owner: r.try_get(at + 2)?,
        priority: r.try_get(at + 3)?,
        submitted_at: r.try_get(at + 4)?,
        millicpus: r.try_get::<_, i64>(at + 5)? as u32,
        memory: r.try_get::<_, i64>(at + 6)? as u64,
        gpus: r.try_get::<_, i64>(at + 7)? as u32,
        hard_limit_ms: r.try_get::<_, Option<i64>>(at + 8)?.map(|v| v as u64),
        image: r.try_get(at + 9)?,
        requirements: r.try_get(at + 10)?,
        rank: r.try_get(at + 11)?,
    })
}

//! The queue's core operations on both stores in one run (`store::QueueStore`): the embedded
//! SQLite store and PostgreSQL (a throwaway cluster that syncs its commits, as a real one).
//!
//! 1. Durable submits/s: STORE_CLIENTS clients (default 8) submit one fold per call, each
//!    acknowledged after its commit, STORE_FOLDS folds in all (default 2,000).
//! 2. Trivial folds/s: the master's round for each fold, in batches of 50 as a loop turn
//!    makes them: assign, started, result.
//!
//! The last line printed is one JSON object with the figures. Run:
//! `cargo bench --bench store_engines`; small: `STORE_FOLDS=200 cargo bench --bench store_engines`.

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use datarun::model::{FoldSpec, Metrics, Outcome};
use datarun::protocol::Grant;
use datarun::store::pg::PgStore;
use datarun::store::{BlobData, NewAttempt, QueueStore, ResultInput, Store};
use serde_json::json;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// (durable submits/s, trivial folds/s)
async fn measure<S: QueueStore>(s: S, folds: usize, clients: usize) -> (f64, f64) {
    let spec: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (s, spec) = (s.clone(), spec.clone());
            let mine = folds / clients + usize::from(c < folds % clients);
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(mine);
                for _ in 0..mine {
                    ids.extend(
                        s.submit("bench".into(), false, vec![(spec.clone(), None)])
                            .await
                            .unwrap(),
                    );
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(folds);
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let submits = folds as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    for batch in ids.chunks(50) {
        let new = batch
            .iter()
            .map(|f| NewAttempt {
                fold: *f,
                runner: "r".into(),
                grant: Grant {
                    millicpus: 100,
                    memory: 1 << 20,
                    gpus: vec![],
                },
            })
            .collect();
        let attempts: Vec<_> = s
            .assign(new)
            .await
            .unwrap()
            .into_iter()
            .map(|(a, _, _)| a)
            .collect();
        s.apply_reports(attempts.clone(), Vec::new()).await.unwrap();
        let results = attempts
            .iter()
            .map(|a| ResultInput {
                attempt: *a,
                outcome: Outcome::Success,
                metrics: Metrics::default(),
                log: BlobData::default(),
                outputs: Vec::new(),
            })
            .collect();
        s.apply_reports(Vec::new(), results).await.unwrap();
    }
    let rounds = folds as f64 / start.elapsed().as_secs_f64();
    (submits, rounds)
}

fn main() {
    let folds = env("STORE_FOLDS", 2_000);
    let clients = env("STORE_CLIENTS", 8).max(1);
    std::env::set_var("DATARUN_PG_DURABLE", "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("datarun.db")).unwrap();
    let (sq_submits, sq_folds) = rt.block_on(measure(sqlite, folds, clients));
    println!("sqlite: {sq_submits:.0} durable submits/s, {sq_folds:.0} trivial folds/s");
    let url = pg::database();
    let (pg_submits, pg_folds) = rt.block_on(async {
        let s = PgStore::connect(&url).await.unwrap();
        s.try_acquire("bench", Duration::from_secs(3600))
            .await
            .unwrap()
            .expect("the lease");
        measure(s, folds, clients).await
    });
    println!("postgres: {pg_submits:.0} durable submits/s, {pg_folds:.0} trivial folds/s");
    println!(
        "{}",
        json!({
            "folds": folds,
            "clients": clients,
            "sqlite_submits_per_s": sq_submits.round(),
            "sqlite_folds_per_s": sq_folds.round(),
            "postgres_submits_per_s": pg_submits.round(),
            "postgres_folds_per_s": pg_folds.round(),
        })
    );
}

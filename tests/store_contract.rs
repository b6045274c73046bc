//! The store contract: one set of tests, generic over `QueueStore`, run against the embedded
//! SQLite store (a temp file) and the PostgreSQL store (a throwaway cluster, one database per
//! test): exactly-once results, late results rejected, retries and losses, each result and
//! each assignment taken once under concurrent callers, holds and releases, purge. Then the
//! PostgreSQL leadership lease: a partitioned master's late write is refused by its fencing
//! token.

mod common;

use datarun::model::{AttemptId, FoldId, FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use datarun::protocol::Grant;
use datarun::store::pg::PgStore;
use datarun::store::{
    BlobData, FoldChange, NewAttempt, QueueStore, RecordResult, ReleaseChanges, ResultInput, Store,
    StoreError,
};
use std::time::{Duration, Instant};

fn spec(json: &str) -> FoldSpec {
    serde_json::from_str(json).expect("a fold spec")
}

fn new_attempt(fold: FoldId, runner: &str) -> NewAttempt {
    NewAttempt {
        fold,
        runner: runner.into(),
        grant: Grant {
            millicpus: 1000,
            memory: 1 << 20,
            gpus: vec![],
        },
    }
}

fn result(attempt: AttemptId, outcome: Outcome) -> ResultInput {
    ResultInput {
        attempt,
        outcome,
        metrics: Metrics {
            wall_ms: 5,
            cpu_ms: 3,
            peak_memory: 1024,
        },
        log: BlobData::default(),
        outputs: Vec::new(),
    }
}

async fn submit_one<S: QueueStore>(s: &S, json: &str) -> FoldId {
    s.submit("ann".into(), false, vec![(spec(json), None)])
        .await
        .expect("submit")[0]
}

/// Assigns `fold` to runner `r` and starts it; its attempt.
async fn run<S: QueueStore>(s: &S, fold: FoldId) -> AttemptId {
    let assigned = s
        .assign(vec![new_attempt(fold, "r")])
        .await
        .expect("assign");
    assert_eq!(assigned.len(), 1, "fold {fold} is assigned");
    let attempt = assigned[0].0;
    s.mark_started(attempt).await.expect("start");
    attempt
}

async fn kinds<S: QueueStore>(s: &S, fold: FoldId) -> Vec<String> {
    s.events(fold)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn exactly_once<S: QueueStore>(s: S) {
    let fold = submit_one(&s, r#"{"command":["true"]}"#).await;
    let f = s.fold(fold).await.unwrap();
    assert_eq!((f.state, f.owner.as_str()), (FoldState::Idle, "ann"));
    let (pending, seq) = s.pending_folds().await.unwrap();
    assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), [fold]);
    assert!(seq > 0);
    let attempt = run(&s, fold).await;
    assert_eq!(s.fold(fold).await.unwrap().state, FoldState::Running);
    let active = s.active_attempts().await.unwrap();
    assert_eq!(active.len(), 1);
    assert!(active[0].started && active[0].attempt == attempt && active[0].owner == "ann");
    // A fold no longer idle is not assigned again.
    assert!(s
        .assign(vec![new_attempt(fold, "r2")])
        .await
        .unwrap()
        .is_empty());

    let first = s
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(
        first,
        RecordResult::Recorded {
            fold,
            state: FoldState::Done
        }
    );
    let again = s
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(again, RecordResult::Duplicate);
    let unknown = s
        .record_result(result(attempt + 1000, Outcome::Success))
        .await;
    assert_eq!(unknown.unwrap(), RecordResult::Unknown);

    let f = s.fold(fold).await.unwrap();
    assert_eq!(f.state, FoldState::Done);
    assert_eq!((f.attempts, f.retries_used, f.losses), (1, 0, 0));
    assert_eq!(f.outcome, Some(Outcome::Success));
    assert_eq!(f.metrics.unwrap().wall_ms, 5);
    assert!(s.active_attempts().await.unwrap().is_empty());
    assert!(s.pending_folds().await.unwrap().0.is_empty());
    assert_eq!(
        kinds(&s, fold).await,
        ["submitted", "assigned", "started", "attempt_ended"]
    );
}

async fn late_results_rejected<S: QueueStore>(s: S) {
    let fold = submit_one(&s, r#"{"command":["true"],"max_retries":1}"#).await;
    let lost = run(&s, fold).await;
    // The runner is gone: the attempt ends lost and the fold goes back in line, no retry used.
    let r = s.mark_lost(lost, "runner r vanished".into()).await.unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Idle
        }
    );
    // Its result arrives after all: rejected, recorded as such, nothing else changes.
    let late = s
        .record_result(result(lost, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(late, RecordResult::Superseded { fold });
    let f = s.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 1, 0));
    assert!(kinds(&s, fold)
        .await
        .contains(&"late_result_rejected".to_string()));

    // Its own failures use retries; out of them, it is held.
    let second = run(&s, fold).await;
    let r = s
        .record_result(result(second, Outcome::ExitCode { code: 1 }))
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Idle
        }
    );
    let third = run(&s, fold).await;
    let r = s
        .record_result(result(third, Outcome::ExitCode { code: 1 }))
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Held
        }
    );
    let f = s.fold(fold).await.unwrap();
    assert_eq!(f.hold_code, Some(HoldCode::RetriesExhausted));
    assert_eq!((f.attempts, f.retries_used, f.losses), (3, 1, 1));

    // Without retries, a failure fails the fold.
    let plain = submit_one(&s, r#"{"command":["false"]}"#).await;
    let a = run(&s, plain).await;
    let r = s
        .record_result(result(a, Outcome::ExitCode { code: 2 }))
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold: plain,
            state: FoldState::Failed
        }
    );
}

/// Many callers at once: each fold is assigned once, each result recorded once.
async fn concurrent_callers<S: QueueStore>(s: S) {
    const FOLDS: usize = 24;
    const CALLERS: usize = 8;
    let folds = s
        .submit(
            "ann".into(),
            false,
            (0..FOLDS)
                .map(|_| (spec(r#"{"command":["true"]}"#), None))
                .collect(),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let s = s.clone();
        let mut mine: Vec<NewAttempt> = folds
            .iter()
            .map(|f| new_attempt(*f, &format!("r{caller}")))
            .collect();
        if caller % 2 == 1 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move { s.assign(mine).await }));
    }
    let mut attempts = Vec::new();
    for t in tasks {
        attempts.extend(
            t.await
                .unwrap()
                .expect("assign")
                .into_iter()
                .map(|(a, n, _)| (a, n.fold)),
        );
    }
    attempts.sort_by_key(|(_, fold)| *fold);
    assert_eq!(
        attempts.iter().map(|(_, f)| *f).collect::<Vec<_>>(),
        folds,
        "every fold assigned exactly once"
    );

    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        for (attempt, _) in &attempts {
            let s = s.clone();
            let attempt = *attempt;
            tasks.push(tokio::spawn(async move {
                s.record_result(result(attempt, Outcome::Success)).await
            }));
        }
    }
    let (mut recorded, mut duplicate) = (0, 0);
    for t in tasks {
        match t.await.unwrap().expect("record") {
            RecordResult::Recorded { state, .. } => {
                assert_eq!(state, FoldState::Done);
                recorded += 1;
            }
            RecordResult::Duplicate => duplicate += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((recorded, duplicate), (FOLDS, FOLDS * (CALLERS - 1)));
    for fold in folds {
        let ended = kinds(&s, fold)
            .await
            .iter()
            .filter(|k| *k == "attempt_ended")
            .count();
        assert_eq!(ended, 1, "fold {fold} ended once");
    }
}

async fn holds_and_releases<S: QueueStore>(s: S) {
    let fold = submit_one(&s, r#"{"command":["true"],"resources":{"memory":"64M"}}"#).await;
    assert_eq!(
        s.hold(fold, HoldCode::User, "wait".into()).await.unwrap(),
        None,
        "an idle fold has nothing to kill"
    );
    assert!(matches!(
        s.hold(fold, HoldCode::User, "again".into()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.pending_folds().await.unwrap().0.is_empty());
    assert!(s
        .assign(vec![new_attempt(fold, "r")])
        .await
        .unwrap()
        .is_empty());
    let more = ReleaseChanges {
        memory: Some(128 << 20),
        ..Default::default()
    };
    let released = s.release(fold, "ann".into(), more).await.unwrap();
    assert_eq!(released.resources.memory, 128 << 20);
    let f = s.fold(fold).await.unwrap();
    assert_eq!((f.state, f.hold_code), (FoldState::Idle, None));
    assert_eq!(f.spec.resources.memory, 128 << 20);
    assert!(matches!(
        s.release(fold, "ann".into(), ReleaseChanges::default())
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Held while it runs: the attempt is to be killed; its end leaves the fold held.
    let attempt = run(&s, fold).await;
    let cancel = s
        .hold(fold, HoldCode::User, "stop it".into())
        .await
        .unwrap()
        .expect("an attempt to kill");
    assert_eq!((cancel.attempt, cancel.runner.as_str()), (attempt, "r"));
    let r = s
        .record_result(result(attempt, Outcome::Signal { signal: 9 }))
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Held
        }
    );
    s.release(fold, "ann".into(), ReleaseChanges::default())
        .await
        .unwrap();
    assert_eq!(s.pending_folds().await.unwrap().0.len(), 1);

    // Removed: final, and removing again is a conflict; a missing fold is not found.
    let again = run(&s, fold).await;
    let cancel = s.remove(fold, "ann".into()).await.unwrap().expect("a kill");
    assert_eq!(cancel.attempt, again);
    assert_eq!(s.fold(fold).await.unwrap().state, FoldState::Removed);
    assert!(matches!(
        s.remove(fold, "ann".into()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.hold(fold + 1000, HoldCode::User, "x".into()).await,
        Err(StoreError::NotFound(_))
    ));
    let held = s
        .submit(
            "ann".into(),
            false,
            vec![(
                spec(r#"{"command":["true"]}"#),
                Some((HoldCode::Unmatchable, "no runner".into())),
            )],
        )
        .await
        .unwrap()[0];
    let f = s.fold(held).await.unwrap();
    assert_eq!(
        (f.state, f.hold_code),
        (FoldState::Held, Some(HoldCode::Unmatchable))
    );
}

async fn purge<S: QueueStore>(s: S) {
    let done = submit_one(&s, r#"{"command":["true"]}"#).await;
    let waiting = submit_one(&s, r#"{"command":["true"]}"#).await;
    let a = run(&s, done).await;
    let mut input = result(a, Outcome::Success);
    input.log = BlobData::Bytes(b"the log of the done fold\n".to_vec());
    input.outputs = vec![("out.txt".into(), BlobData::Bytes(b"42\n".to_vec()))];
    s.record_result(input).await.unwrap();
    let b = run(&s, waiting).await;

    // Nothing ended before then: nothing goes.
    let nothing = s.purge(0).await.unwrap();
    assert_eq!((nothing.outputs, nothing.logs, nothing.blobs), (0, 0, 0));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let later = now + 60_000;
    let report = s.purge(later).await.unwrap();
    assert_eq!((report.outputs, report.logs, report.blobs), (1, 1, 2));
    assert_eq!(report.bytes, (25 + 3) as u64);
    // The fold and its result stay; only its files went.
    let f = s.fold(done).await.unwrap();
    assert_eq!(
        (f.state, f.outcome),
        (FoldState::Done, Some(Outcome::Success))
    );
    // A running fold is untouched, and its result still records.
    assert_eq!(
        s.record_result(result(b, Outcome::Success)).await.unwrap(),
        RecordResult::Recorded {
            fold: waiting,
            state: FoldState::Done
        }
    );
    let again = s.purge(later).await.unwrap();
    assert_eq!((again.outputs, again.logs, again.blobs), (0, 0, 0));
}

/// What the master's idle index follows: the idle folds, then every change after them.
async fn change_feed<S: QueueStore>(s: S) {
    let before = submit_one(&s, r#"{"command":["true"]}"#).await;
    let (idle, seq) = s.pending_folds().await.unwrap();
    assert_eq!(idle.iter().map(|p| p.id).collect::<Vec<_>>(), [before]);
    let (nothing, same) = s.fold_changes(seq, 100).await.unwrap();
    assert!(nothing.is_empty());
    assert_eq!(same, seq);

    let new = s
        .submit(
            "bob".into(),
            false,
            vec![
                (
                    spec(r#"{"command":["true"],"queue":"gpu","priority":5}"#),
                    None,
                ),
                (spec(r#"{"command":["true"]}"#), None),
            ],
        )
        .await
        .unwrap();
    run(&s, before).await;
    // One at a time, oldest change first.
    let (first, seq1) = s.fold_changes(seq, 1).await.unwrap();
    match &first[..] {
        [FoldChange::Idle(p)] => {
            assert_eq!(
                (p.id, p.queue.as_str(), p.owner.as_str()),
                (new[0], "gpu", "bob")
            );
            assert_eq!(p.priority, 5);
        }
        other => panic!("{other:?}"),
    }
    let (rest, seq2) = s.fold_changes(seq1, 100).await.unwrap();
    assert!(seq2 > seq1);
    match &rest[..] {
        [FoldChange::Idle(p), FoldChange::NotIdle(running)] => {
            assert_eq!((p.id, *running), (new[1], before));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.fold_changes(seq2, 100).await.unwrap().0.is_empty());
}

/// A loop turn's reports in one transaction; what a runner still runs that it should not.
async fn reports_and_superseded<S: QueueStore>(s: S) {
    let folds = s
        .submit(
            "ann".into(),
            false,
            (0..3)
                .map(|_| (spec(r#"{"command":["true"]}"#), None))
                .collect(),
        )
        .await
        .unwrap();
    let assigned = s
        .assign(folds.iter().map(|f| new_attempt(*f, "r")).collect())
        .await
        .unwrap();
    let a: Vec<AttemptId> = assigned.iter().map(|(a, _, _)| *a).collect();
    s.mark_started(a[0]).await.unwrap();
    let out = s
        .apply_reports(
            vec![a[1], a[2]],
            vec![
                result(a[0], Outcome::Success),
                result(a[0], Outcome::Success),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            RecordResult::Recorded {
                fold: folds[0],
                state: FoldState::Done
            },
            RecordResult::Duplicate
        ]
    );
    assert_eq!(s.fold(folds[1]).await.unwrap().state, FoldState::Running);
    let grants = s.attempt_grants(vec![a[2], 9999, a[0]]).await.unwrap();
    assert_eq!(
        grants
            .iter()
            .map(|(a, f, g)| (*a, *f, g.millicpus))
            .collect::<Vec<_>>(),
        [(a[2], folds[2], 1000), (a[0], folds[0], 1000)]
    );
    // Held and removed folds' attempts, and ended ones, are superseded; a running one is not.
    s.hold(folds[1], HoldCode::User, "stop".into())
        .await
        .unwrap();
    s.remove(folds[2], "ann".into()).await.unwrap();
    let gone = s.superseded_attempts(vec![a[2], a[0], a[1]]).await.unwrap();
    assert_eq!(gone, [a[2], a[0], a[1]]);
    let fresh = submit_one(&s, r#"{"command":["true"]}"#).await;
    let live = run(&s, fresh).await;
    assert!(s.superseded_attempts(vec![live]).await.unwrap().is_empty());
    assert_eq!(
        s.active_attempts()
            .await
            .unwrap()
            .iter()
            .map(|x| x.attempt)
            .collect::<Vec<_>>(),
        [a[1], a[2], live],
        "held and removed folds' attempts are out until they end"
    );
}

/// A follower of the change feed misses nothing while many writers submit at once (on
/// PostgreSQL: no change commits behind a seq the follower has passed).
async fn follower_misses_nothing<S: QueueStore>(s: S) {
    let (_, mut seq) = s.pending_folds().await.unwrap();
    let writers: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..15 {
                    ids.push(submit_one(&s, r#"{"command":["true"]}"#).await);
                }
                ids
            })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut follow = |changes: Vec<FoldChange>| {
        for c in changes {
            if let FoldChange::Idle(p) = c {
                seen.insert(p.id);
            }
        }
    };
    while !writers.iter().all(|w| w.is_finished()) {
        let (changes, next) = s.fold_changes(seq, 7).await.unwrap();
        follow(changes);
        seq = next;
    }
    let mut all = std::collections::BTreeSet::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    loop {
        let (changes, next) = s.fold_changes(seq, 7).await.unwrap();
        if changes.is_empty() {
            break;
        }
        follow(changes);
        seq = next;
    }
    assert_eq!(seen, all, "the follower saw every new fold");
}

fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("datarun.db")).unwrap();
    (dir, store)
}

/// A PostgreSQL store on a new database, holding the leadership lease.
async fn postgres() -> PgStore {
    let url = common::pg::database();
    let store = PgStore::connect(&url).await.expect("connect");
    let generation = store
        .try_acquire("contract", Duration::from_secs(600))
        .await
        .expect("lease");
    assert_eq!(generation, Some(1));
    store
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_dir, store) = super::sqlite();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::postgres().await).await;
                }
            )*
        }
    };
}

contract!(
    exactly_once,
    late_results_rejected,
    concurrent_callers,
    holds_and_releases,
    purge,
    change_feed,
    follower_misses_nothing,
    reports_and_superseded
);

#[path = "store_contract/blobs.rs"]
mod blobs;
#[path = "store_contract/datasets.rs"]
mod datasets;
#[path = "store_contract/events.rs"]
mod events;
#[path = "store_contract/problems.rs"]
mod problems;
#[path = "store_contract/provenance.rs"]
mod provenance;
#[path = "store_contract/stalled.rs"]
mod stalled;
#[path = "store_contract/submissions.rs"]
mod submissions;
#[path = "store_contract/sweeps.rs"]
mod sweeps;
#[path = "store_contract/waiting.rs"]
mod waiting;
#[path = "store_contract/webhooks.rs"]
mod webhooks;

/// A `Store` on PostgreSQL (a new database, the lease held), as `serve --store` makes it.
async fn postgres_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::on_pg(postgres().await, dir.path());
    (dir, store)
}

/// Tests of what `Store` does beyond `QueueStore`, on both engines.
macro_rules! store_contract {
    ($($module:ident::$name:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_dir, store) = super::sqlite();
                    super::$module::$name(store).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_dir, store) = super::postgres_store().await;
                    super::$module::$name(store).await;
                }
            )*
        }
    };
}

store_contract!(
    events::fold_filters_long_and_short,
    provenance::provenance_with_results,
    waiting::dependencies,
    waiting::arrays,
    webhooks::webhooks_outbox,
    sweeps::sweeps_stop_early_and_keep,
    blobs::blobs_and_their_owners,
    datasets::datasets_and_splits,
    submissions::submissions_results_once,
    submissions::submissions_feed_under_concurrent_callers,
    submissions::submissions_stop_on_failure,
    problems::problems_and_custom_splits,
    problems::runapp_ids_per_owner,
);

/// Writes without the lease are refused, and so is everything after the lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_need_the_live_lease() {
    let url = common::pg::database();
    let s = PgStore::connect(&url).await.unwrap();
    let refused = s.submit(
        "ann".into(),
        false,
        vec![(spec(r#"{"command":["true"]}"#), None)],
    );
    assert!(matches!(refused.await, Err(StoreError::Fenced(_))));
    let g = s
        .try_acquire("m1", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a free lease");
    let fold = submit_one(&s, r#"{"command":["true"]}"#).await;
    // Renewed for a short while only, then left to expire.
    s.renew("m1", g, Duration::from_millis(700)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let late = s.hold(fold, HoldCode::User, "late".into()).await;
    match late {
        Err(StoreError::Fenced(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("a write after the lease expired: {other:?}"),
    }
    assert_eq!(s.fold(fold).await.unwrap().state, FoldState::Idle);
    // An expired lease is not renewed; taking it again is a new generation.
    assert!(matches!(
        s.renew("m1", g, Duration::from_millis(300)).await,
        Err(StoreError::Fenced(_))
    ));
    let again = s.try_acquire("m1", Duration::from_secs(60)).await.unwrap();
    assert_eq!(again, Some(g + 1));
    s.hold(fold, HoldCode::User, "now".into()).await.unwrap();
}

/// Two masters on one database. A holds the lease; its link to the database is cut (a
/// partition) while a result write is on its way. B takes the lease once it expires, with the
/// next generation. When the link comes back, A's late write reaches the database and is
/// refused by its fencing token, changing nothing; A's renewer sees the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_partitioned_master_is_fenced() {
    let url = common::pg::database();
    let port = common::pg::cluster().port;
    let relay = common::pg::Relay::start(port).await;
    let via_relay = url.replace(&format!(":{port}/"), &format!(":{}/", relay.port));
    let lease = Duration::from_millis(1500);
    let a = PgStore::connect(&via_relay).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    let ga = a
        .try_acquire("master-a", lease)
        .await
        .unwrap()
        .expect("A leads");
    assert_eq!(
        b.try_acquire("master-b", lease).await.unwrap(),
        None,
        "A's lease is live"
    );
    let fold = submit_one(&a, r#"{"command":["true"]}"#).await;
    let attempt = run(&a, fold).await;
    // Measured from before the renewal: the database's lease runs from when it got it.
    let renewed = Instant::now();
    a.renew("master-a", ga, lease).await.expect("A renews");

    relay.pause(true);
    let late = tokio::spawn({
        let a = a.clone();
        async move { a.record_result(result(attempt, Outcome::Success)).await }
    });
    // B polls for the lease as a standby would.
    let gb = loop {
        if let Some(g) = b.try_acquire("master-b", lease).await.unwrap() {
            break g;
        }
        assert!(
            renewed.elapsed() < Duration::from_secs(10),
            "B never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let takeover = renewed.elapsed();
    eprintln!("B took over {takeover:?} after A's last renewal (lease {lease:?})");
    assert_eq!(gb, ga + 1);
    assert!(takeover >= lease, "B took over before A's lease ended");
    assert!(!late.is_finished(), "A's write waits on the partition");

    relay.pause(false);
    let refused = tokio::time::timeout(Duration::from_secs(10), late)
        .await
        .expect("A's late write ends")
        .unwrap();
    match refused {
        Err(StoreError::Fenced(m)) => {
            assert!(
                m.contains(&format!("generation {gb} is held by master-b")),
                "{m}"
            )
        }
        other => panic!("A's late write was not fenced: {other:?}"),
    }
    // Nothing changed: the attempt still runs, as B sees it.
    let f = b.fold(fold).await.unwrap();
    assert_eq!(f.state, FoldState::Running);
    assert!(!kinds(&b, fold).await.contains(&"attempt_ended".to_string()));
    // A's renewer sees the loss, and A stops writing.
    assert!(matches!(
        a.renew("master-a", ga, lease).await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(a.generation(), 0);
    // B goes on: the result, when it comes to B, is recorded once.
    assert_eq!(
        b.record_result(result(attempt, Outcome::Success))
            .await
            .unwrap(),
        RecordResult::Recorded {
            fold,
            state: FoldState::Done
        }
    );
    assert_eq!(
        b.leadership().await.unwrap(),
        datarun::store::pg::lease::Leadership {
            holder: "master-b".into(),
            generation: gb,
            live: true
        }
    );
}

/// A's renewer keeps the lease while the database answers; once A's link is cut, it gives
/// the lease up (A stops writing) before B can take it, and B takes it within the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_renewer_steps_down_before_the_standby_takes_over() {
    let url = common::pg::database();
    let port = common::pg::cluster().port;
    let relay = common::pg::Relay::start(port).await;
    let via_relay = url.replace(&format!(":{port}/"), &format!(":{}/", relay.port));
    let lease = Duration::from_millis(1200);
    let a = PgStore::connect(&via_relay).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    let taken_at = Instant::now();
    let ga = a
        .try_acquire("master-a", lease)
        .await
        .unwrap()
        .expect("A leads");
    let mut leading = a.spawn_renewer("master-a".into(), ga, lease, taken_at);
    // Renewed past several leases: B cannot take it.
    tokio::time::sleep(lease * 3).await;
    assert!(*leading.borrow());
    assert_eq!(b.try_acquire("master-b", lease).await.unwrap(), None);
    submit_one(&a, r#"{"command":["true"]}"#).await;

    relay.pause(true);
    let cut = Instant::now();
    let stepped_down = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| !*l))
            .await
            .expect("A's renewer sees the loss")
            .unwrap();
        Instant::now()
    });
    let gb = loop {
        if let Some(g) = b.try_acquire("master-b", lease).await.unwrap() {
            break g;
        }
        assert!(cut.elapsed() < Duration::from_secs(10), "B never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took_over = Instant::now();
    let stepped_down = stepped_down.await.unwrap();
    eprintln!(
        "A stepped down {:?} after its link was cut; B took over after {:?} (lease {lease:?})",
        stepped_down - cut,
        took_over - cut
    );
    assert_eq!(gb, ga + 1);
    assert!(stepped_down < took_over, "A stopped writing before B led");
    assert!(took_over - cut <= lease + Duration::from_secs(1));
    assert_eq!(a.generation(), 0);
    relay.pause(false);
    let refused = a.submit(
        "ann".into(),
        false,
        vec![(spec(r#"{"command":["true"]}"#), None)],
    );
    assert!(matches!(refused.await, Err(StoreError::Fenced(_))));
}

/// Migrations run once, however many masters connect, and a database newer than this build
/// is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_versioned() {
    let url = common::pg::database();
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for c in connects {
        c.await
            .unwrap()
            .expect("masters starting together migrate once");
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let version: i64 = client
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, datarun::store::pg::schema::VERSION);
    client
        .execute("UPDATE schema_version SET version = version + 1", &[])
        .await
        .unwrap();
    match PgStore::connect(&url).await {
        Err(StoreError::Postgres(m)) => assert!(m.contains("upgrade datarun"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer database was accepted"),
    }
}

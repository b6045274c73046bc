//! The store's exactly-once rules, on a real SQLite file.

use super::*;
use crate::model::{FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;

fn spec(max_retries: u32) -> FoldSpec {
    let mut s: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
    s.max_retries = max_retries;
    s
}

fn result(attempt: i64, outcome: Outcome) -> ResultInput {
    ResultInput {
        attempt,
        outcome,
        metrics: Metrics {
            wall_ms: 5,
            cpu_ms: 1,
            peak_memory: 1 << 20,
        },
        log: b"log".to_vec().into(),
        outputs: vec![("out.txt".into(), b"42".to_vec().into())],
    }
}

async fn setup(max_retries: u32) -> (tempfile::TempDir, Store, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let ids = store
        .submit("ann".into(), vec![(spec(max_retries), None)])
        .await
        .unwrap();
    let attempt = assign(&store, ids[0]).await;
    (dir, store, ids[0], attempt)
}

async fn assign(store: &Store, fold: i64) -> i64 {
    let grant = Grant {
        millicpus: 1000,
        memory: 1 << 20,
        gpus: vec![],
    };
    let out = store
        .assign(vec![NewAttempt {
            fold,
            runner: "local".into(),
            grant,
        }])
        .await
        .unwrap();
    out[0].0
}

#[tokio::test]
async fn a_result_is_recorded_once() {
    let (_d, store, fold, attempt) = setup(0).await;
    store.mark_started(attempt).await.unwrap();
    assert_eq!(store.fold(fold).await.unwrap().state, FoldState::Running);
    let r = store
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Done
        }
    );
    assert_eq!(
        store
            .record_result(result(attempt, Outcome::Success))
            .await
            .unwrap(),
        RecordResult::Duplicate
    );
    let output = store.output(fold, "out.txt".into()).await.unwrap();
    assert_eq!(output.read_all().unwrap(), b"42");
    assert_eq!(store.log(fold).await.unwrap(), b"log");
    let ended = store
        .events(fold)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "attempt_ended")
        .count();
    assert_eq!(ended, 1);
    assert!(matches!(
        store
            .record_result(result(999, Outcome::Success))
            .await
            .unwrap(),
        RecordResult::Unknown
    ));
}

#[tokio::test]
async fn a_late_result_of_a_lost_attempt_is_rejected_and_logged() {
    let (_d, store, fold, attempt) = setup(1).await;
    store.mark_started(attempt).await.unwrap();
    let r = store
        .mark_lost(attempt, "runner gone".into())
        .await
        .unwrap();
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Idle
        }
    );
    let f = store.fold(fold).await.unwrap();
    assert_eq!(
        f.retries_used, 1,
        "a lost attempt that had started uses a retry"
    );
    let second = assign(&store, fold).await;
    let late = store
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(late, RecordResult::Superseded { fold });
    assert!(store
        .events(fold)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "late_result_rejected"));
    assert_eq!(
        store.fold(fold).await.unwrap().state,
        FoldState::Assigned,
        "the late result did not move the fold"
    );
    store
        .record_result(result(second, Outcome::Success))
        .await
        .unwrap();
    assert_eq!(store.fold(fold).await.unwrap().state, FoldState::Done);
}

#[tokio::test]
async fn retries_then_failure_and_unstarted_losses_are_free() {
    let (_d, store, fold, a1) = setup(1).await;
    // Never started: requeued without using a retry.
    store
        .mark_lost(a1, "never reached the agent".into())
        .await
        .unwrap();
    assert_eq!(store.fold(fold).await.unwrap().retries_used, 0);
    let a2 = assign(&store, fold).await;
    store
        .record_result(result(a2, Outcome::ExitCode { code: 1 }))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.retries_used), (FoldState::Idle, 1));
    let a3 = assign(&store, fold).await;
    let r = store
        .record_result(result(a3, Outcome::OutOfMemory))
        .await
        .unwrap();
    // Out of retries on memory: held, with the code and what to do.
    assert_eq!(
        r,
        RecordResult::Recorded {
            fold,
            state: FoldState::Held
        }
    );
    let f = store.fold(fold).await.unwrap();
    assert_eq!(f.hold_code, Some(HoldCode::OutOfMemory));
    assert!(f.reason.unwrap().contains("--memory"));
    assert_eq!(store.attempts(fold).await.unwrap().len(), 3);
}

#[tokio::test]
async fn hold_release_remove() {
    let (_d, store, fold, attempt) = setup(0).await;
    let cancel = store
        .hold(fold, HoldCode::User, "wait".into())
        .await
        .unwrap();
    assert_eq!(cancel.map(|c| c.attempt), Some(attempt));
    assert!(matches!(
        store.hold(fold, HoldCode::User, "again".into()).await,
        Err(StoreError::Conflict(_))
    ));
    // The kill is confirmed: the fold stays held.
    store
        .record_result(result(attempt, Outcome::Cancelled))
        .await
        .unwrap();
    assert_eq!(store.fold(fold).await.unwrap().state, FoldState::Held);
    store
        .release(fold, "ann".into(), ReleaseChanges::default())
        .await
        .unwrap();
    assert_eq!(store.pending_folds().await.unwrap().len(), 1);
    assert!(store.remove(fold, "ann".into()).await.unwrap().is_none());
    assert!(matches!(
        store.remove(fold, "ann".into()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.pending_folds().await.unwrap().is_empty());
}

#[tokio::test]
async fn submit_is_all_or_nothing_and_blobs_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let (sha, size) = store.put_blob(b"data".to_vec()).await.unwrap();
    assert_eq!(
        store.put_blob(b"data".to_vec()).await.unwrap(),
        (sha.clone(), size)
    );
    let mut good = spec(0);
    good.inputs = vec![crate::model::InputRef {
        name: "d.csv".into(),
        sha256: sha,
    }];
    let mut bad = spec(0);
    bad.inputs = vec![crate::model::InputRef {
        name: "x".into(),
        sha256: "f".repeat(64),
    }];
    let err = store
        .submit("ann".into(), vec![(good.clone(), None), (bad, None)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not uploaded"), "{err}");
    assert!(store
        .list_folds(FoldFilter::default())
        .await
        .unwrap()
        .0
        .is_empty());
    let ids = store
        .submit(
            "ann".into(),
            vec![
                (good, None),
                (spec(0), Some((HoldCode::Unmatchable, "no runner".into()))),
            ],
        )
        .await
        .unwrap();
    let held = store.fold(ids[1]).await.unwrap();
    assert_eq!(
        (held.state, held.hold_code),
        (FoldState::Held, Some(HoldCode::Unmatchable))
    );
    let count: i64 = store
        .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn changed_since_pages_on_seq() {
    let (_d, store, fold, attempt) = setup(0).await;
    let (all, seq) = store.list_folds(FoldFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let (none, _) = store
        .list_folds(FoldFilter {
            since: Some(seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    store
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    let (changed, seq2) = store
        .list_folds(FoldFilter {
            since: Some(seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, fold);
    assert!(seq2 > seq);
}

#[tokio::test]
async fn tokens_verify_only_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let s2 = store.clone();
    let token = tokio::task::spawn_blocking(move || s2.create_token("ann", false))
        .await
        .unwrap()
        .unwrap();
    let p = store.verify_token(token.clone()).await.unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.admin), ("ann", false));
    assert!(store
        .verify_token(format!("{token}x"))
        .await
        .unwrap()
        .is_none());
    let stored: String = store
        .call(|c| Ok(c.query_row("SELECT hash FROM tokens", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_ne!(stored, token, "tokens are stored hashed");
}

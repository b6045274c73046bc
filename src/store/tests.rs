//! The store's exactly-once rules, on a real SQLite file.

use super::*;
use crate::model::{FoldSpec, FoldState, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;

pub(super) fn spec(max_retries: u32) -> FoldSpec {
    let mut s: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
    s.max_retries = max_retries;
    s
}

pub(crate) fn result(attempt: i64, outcome: Outcome) -> ResultInput {
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

pub(super) async fn setup(max_retries: u32) -> (tempfile::TempDir, Store, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let ids = store
        .submit("ann".into(), false, vec![(spec(max_retries), None)])
        .await
        .unwrap();
    let attempt = assign(&store, ids[0]).await;
    (dir, store, ids[0], attempt)
}

/// An attempt of `fold` on runner "local", 1 cpu and 1 MiB.
pub(crate) fn new_attempt(fold: i64) -> NewAttempt {
    NewAttempt {
        fold,
        runner: "local".into(),
        grant: Grant {
            millicpus: 1000,
            memory: 1 << 20,
            gpus: vec![],
        },
    }
}

pub(crate) async fn assign(store: &Store, fold: i64) -> i64 {
    let out = store.assign(vec![new_attempt(fold)]).await.unwrap();
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
        (f.retries_used, f.losses),
        (0, 1),
        "a lost attempt that had started is a loss, not a retry"
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
    assert_eq!(store.pending_folds().await.unwrap().0.len(), 1);
    assert!(store.remove(fold, "ann".into()).await.unwrap().is_none());
    assert!(matches!(
        store.remove(fold, "ann".into()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.pending_folds().await.unwrap().0.is_empty());
}

/// Applies the changes since `seq` to `index` and checks it holds exactly the idle folds.
async fn follow(store: &Store, seq: &mut i64, index: &mut crate::scheduler::IdleIndex) {
    let (changes, next) = store.fold_changes(*seq, 2).await.unwrap();
    assert!(next >= *seq);
    *seq = next;
    let more = changes.len() == 2;
    for c in changes {
        match c {
            FoldChange::Idle(f) => index.insert(f),
            FoldChange::NotIdle(id) => {
                index.remove(id);
            }
        }
    }
    if more {
        Box::pin(follow(store, seq, index)).await;
        return;
    }
    // The counts kept by triggers agree with counting the folds.
    let counted: Vec<(String, String, String, i64)> = store
        .read(|conn| {
            Ok(conn
                .prepare("SELECT queue, owner, state, COUNT(*) FROM folds GROUP BY queue, owner, state ORDER BY queue, owner, state")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
        .unwrap();
    let kept: Vec<(String, String, String, i64)> = store
        .queue_counts(&Scope::All)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.queue, c.owner, c.state.to_string(), c.count as i64))
        .collect();
    assert_eq!(kept, counted);
    let (idle, _) = store.pending_folds().await.unwrap();
    let mut want: Vec<i64> = idle.iter().map(|f| f.id).collect();
    let mut got: Vec<i64> = index.folds().map(|f| f.id).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    for f in idle {
        assert_eq!(
            index.get(f.id),
            Some(f),
            "the index holds what the store holds"
        );
    }
}

#[tokio::test]
async fn the_change_feed_keeps_an_idle_index_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let (_, mut seq) = store.pending_folds().await.unwrap();
    let mut index = crate::scheduler::IdleIndex::default();
    let ids = store
        .submit(
            "ann".into(),
            false,
            (0..5).map(|_| (spec(1), None)).collect(),
        )
        .await
        .unwrap();
    follow(&store, &mut seq, &mut index).await;
    assert_eq!(index.len(), 5);
    let a = assign(&store, ids[0]).await;
    let b = assign(&store, ids[1]).await;
    follow(&store, &mut seq, &mut index).await;
    // A failure with a retry left requeues; a loss of an attempt that never started too.
    store
        .record_result(result(a, Outcome::ExitCode { code: 1 }))
        .await
        .unwrap();
    store.mark_lost(b, "gone".into()).await.unwrap();
    follow(&store, &mut seq, &mut index).await;
    assert_eq!(index.len(), 5);
    store
        .hold(ids[2], HoldCode::User, "wait".into())
        .await
        .unwrap();
    store.remove(ids[3], "ann".into()).await.unwrap();
    follow(&store, &mut seq, &mut index).await;
    assert_eq!(index.len(), 3);
    let more = ReleaseChanges {
        memory: Some(2 << 30),
        ..Default::default()
    };
    store.release(ids[2], "ann".into(), more).await.unwrap();
    follow(&store, &mut seq, &mut index).await;
    assert_eq!(index.get(ids[2]).unwrap().memory, 2 << 30);
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
        sha256: sha.clone(),
    }];
    let mut bad = spec(0);
    bad.inputs = vec![crate::model::InputRef {
        name: "x".into(),
        sha256: "f".repeat(64),
    }];
    let err = store
        .submit("ann".into(), false, vec![(good.clone(), None), (bad, None)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not uploaded"), "{err}");
    assert!(store
        .list_folds(FoldFilter::default())
        .await
        .unwrap()
        .folds
        .is_empty());
    // Stored but not ann's (nobody uploaded it as ann): answered as a missing blob; an admin
    // may name any stored blob.
    let err = store
        .submit("ann".into(), false, vec![(good.clone(), None)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not uploaded"), "{err}");
    store
        .submit("root".into(), true, vec![(good.clone(), None)])
        .await
        .unwrap();
    store.own_blobs("ann".into(), vec![sha]).await.unwrap();
    let ids = store
        .submit(
            "ann".into(),
            false,
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
    let all = store.list_folds(FoldFilter::default()).await.unwrap();
    assert_eq!(all.folds.len(), 1);
    assert_eq!(all.next, None);
    let since = |seq: i64| FoldFilter {
        since: Some(seq),
        ..Default::default()
    };
    let none = store.list_folds(since(all.seq)).await.unwrap();
    assert!(none.folds.is_empty());
    store
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    let changed = store.list_folds(since(all.seq)).await.unwrap();
    assert_eq!(changed.folds.len(), 1);
    assert_eq!(changed.folds[0].id, fold);
    assert!(changed.seq > all.seq);
}

#[tokio::test]
async fn tokens_verify_only_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let s2 = store.clone();
    let (id, token) = tokio::task::spawn_blocking(move || s2.create_token("ann", false, None))
        .await
        .unwrap()
        .unwrap();
    let valid = |p: &str, admin| {
        TokenCheck::Valid(Principal {
            name: p.into(),
            admin,
            token: id,
        })
    };
    assert_eq!(
        store.verify_token(token.clone()).await.unwrap(),
        valid("ann", false)
    );
    assert_eq!(
        store.verify_token(format!("{token}x")).await.unwrap(),
        TokenCheck::Unknown
    );
    let stored: String = store
        .call(|c| Ok(c.query_row("SELECT hash FROM tokens", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_ne!(stored, token, "tokens are stored hashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_share_fsyncs_and_all_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let syncs = |store: Store| async move {
        store
            .read(|conn| {
                Ok(conn.query_row("SELECT n FROM sync_marker", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap()
    };
    let before = syncs(store.clone()).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .submit(format!("owner{}", i % 7), false, vec![(spec(0), None)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let used = syncs(store.clone()).await - before;
    assert!((1..200).contains(&used), "200 submits used {used} fsyncs");
    // A lazy change alone (a started report) is not synced.
    let before = syncs(store.clone()).await;
    let attempt = assign(&store, ids[0]).await;
    let after_assign = syncs(store.clone()).await;
    assert_eq!(after_assign, before + 1, "an assignment is durable");
    store.mark_started(attempt).await.unwrap();
    assert_eq!(syncs(store.clone()).await, after_assign);
    assert_eq!(store.fold(ids[0]).await.unwrap().state, FoldState::Running);
}

#[tokio::test]
async fn tokens_are_many_per_owner_and_end_by_revocation_or_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let s = store.clone();
    let (a, b, c, d) = tokio::task::spawn_blocking(move || {
        let a = s.create_token("ann", false, None).unwrap();
        let b = s.create_token("ann", true, None).unwrap();
        let c = s.create_token("ann", false, Some(now_ms() - 1)).unwrap();
        let d = s.create_token("bob", false, None).unwrap();
        (a, b, c, d)
    })
    .await
    .unwrap();
    assert!(
        matches!(store.verify_token(a.1.clone()).await.unwrap(), TokenCheck::Valid(p) if !p.admin)
    );
    assert!(
        matches!(store.verify_token(b.1.clone()).await.unwrap(), TokenCheck::Valid(p) if p.admin)
    );
    assert!(matches!(
        store.verify_token(c.1.clone()).await.unwrap(),
        TokenCheck::Expired(_)
    ));
    let s = store.clone();
    let (one, list, again) = tokio::task::spawn_blocking(move || {
        let one = s.revoke_token(a.0).unwrap();
        let again = s.revoke_token(a.0).unwrap_err();
        (one, s.list_tokens().unwrap(), again)
    })
    .await
    .unwrap();
    assert_eq!(one.owner, "ann");
    assert!(matches!(again, StoreError::Conflict(_)), "{again}");
    assert_eq!(list.len(), 4);
    assert!(list[0].revoked_at.is_some() && list[1].revoked_at.is_none());
    assert!(list[1].last_used_at.is_some(), "a valid use is recorded");
    assert!(matches!(
        store.verify_token(a.1).await.unwrap(),
        TokenCheck::Revoked(_)
    ));
    assert!(matches!(
        store.verify_token(b.1.clone()).await.unwrap(),
        TokenCheck::Valid(_)
    ));
    let s = store.clone();
    let ids = tokio::task::spawn_blocking(move || s.revoke_owner_tokens("ann").unwrap())
        .await
        .unwrap();
    assert_eq!(ids.len(), 2, "b and the expired c; a was revoked already");
    assert!(matches!(
        store.verify_token(b.1).await.unwrap(),
        TokenCheck::Revoked(_)
    ));
    assert!(
        matches!(store.verify_token(d.1).await.unwrap(), TokenCheck::Valid(p) if p.name == "bob")
    );
}

//! Submissions in the store: one transaction with their queue folds, results recorded once
//! per run-end, the feed hands each out once, reruns keep history.

use super::*;
use crate::model::FoldSpec;
use crate::submission::Phase;
use serde_json::json;

pub(crate) fn new_submission(
    dataset_id: DatasetId,
    name: &str,
    blob_missing: bool,
) -> NewSubmission {
    let indices = b"[0]".to_vec();
    let sha = sha256_hex(&indices);
    let input = if blob_missing {
        "0".repeat(64)
    } else {
        sha.clone()
    };
    let spec: FoldSpec = serde_json::from_value(
        json!({"command": ["true"], "inputs": [{"name": "fold.json", "sha256": input}]}),
    )
    .unwrap();
    let fold = |i| NewSubmissionFold {
        fold_index: i,
        client_id: None,
        train_sha256: sha.clone(),
        test_sha256: sha.clone(),
        train_rows: 1,
        test_rows: 1,
        spec: spec.clone(),
        held: None,
    };
    NewSubmission {
        dataset_id,
        split_id: None,
        name: name.into(),
        owner: "ann".into(),
        by_admin: false,
        files: [("classifier.py".to_string(), sha.clone())].into(),
        workflow_elements: vec!["classifier".into()],
        blobs: vec![indices],
        folds: vec![fold(0), fold(1)],
        stop_on_failure: false,
    }
}

pub(crate) async fn setup() -> (tempfile::TempDir, Store, SubmissionRecord) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let d = store
        .create_dataset(NewDataset {
            owner: "ann".into(),
            name: "d".into(),
            target_column: "y".into(),
            workflow_elements: vec!["classifier".into()],
            score_types: vec!["accuracy".into()],
            table: b"x,y\n1,a\n".to_vec(),
            rows: 1,
            stats: json!({}),
        })
        .await
        .unwrap();
    let s = store
        .create_submission(new_submission(d.id, "s", false))
        .await
        .unwrap();
    (dir, store, s)
}

fn ended(state: Phase) -> Settled {
    Settled {
        state: Some(state),
        reason: Some("why".into()),
        ..Settled::default()
    }
}

#[tokio::test]
async fn created_with_queue_folds_or_not_at_all() {
    let (_dir, store, s) = setup().await;
    assert_eq!(s.folds.len(), 2);
    assert!(s
        .folds
        .iter()
        .all(|f| f.state == Phase::Todo && f.runs == 1));
    let fold = store.fold(s.folds[0].fold_id).await.unwrap();
    assert_eq!(fold.state, crate::model::FoldState::Idle);
    // A missing input blob or a taken name stores nothing.
    let before = store
        .list_folds(FoldFilter::default())
        .await
        .unwrap()
        .folds
        .len();
    let err = store
        .create_submission(new_submission(s.dataset_id, "t", true))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = store
        .create_submission(new_submission(s.dataset_id, "s", false))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store
            .list_folds(FoldFilter::default())
            .await
            .unwrap()
            .folds
            .len(),
        before
    );
    assert!(matches!(
        store.submission(s.id + 1).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_dataset(s.dataset_id).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn results_are_recorded_once_and_handed_out_once() {
    let (_dir, store, s) = setup().await;
    let pending = store.unsettled_submission_folds(100).await.unwrap();
    assert_eq!(pending.len(), 2);
    let key = pending[0].key.clone();
    let results = vec![(pending[0].id, key.clone(), ended(Phase::Error))];
    assert_eq!(
        store
            .settle_submission_folds(results.clone())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.settle_submission_folds(results).await.unwrap(),
        0,
        "once"
    );
    // A result derived from a run-end that is no longer current is not recorded.
    let stale = vec![(pending[1].id, "stale".to_string(), ended(Phase::Tested))];
    assert_eq!(store.settle_submission_folds(stale).await.unwrap(), 0);
    assert_eq!(
        store.unsettled_submission_folds(100).await.unwrap().len(),
        1
    );

    let first = store
        .take_new_results("ann".into(), None, 100, false)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].state, first[0].delivered), (Phase::Error, true));
    assert!(store
        .take_new_results("ann".into(), None, 100, false)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .take_new_results("ann".into(), Some(s.dataset_id + 1), 100, false)
        .await
        .unwrap()
        .is_empty());
    let listed = store
        .submission_folds(&Scope::All, vec![first[0].id, 999])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    // A rerun: the old run stays in history, the fold is TODO again, its next result is new.
    let sf = &first[0];
    let spec = store.fold(sf.fold_id).await.unwrap().spec;
    let rerun = Rerun {
        id: sf.id,
        replaces: sf.fold_id,
        spec: spec.clone(),
        held: None,
    };
    let cancels = store
        .rerun_submission_folds(s.id, "ann".into(), false, "force".into(), vec![rerun], None)
        .await
        .unwrap();
    assert!(cancels.is_empty());
    let (now, _, runs) = store.submission_fold(sf.id).await.unwrap();
    assert_eq!((now.state, now.runs, runs.len()), (Phase::Todo, 2, 2));
    assert_eq!(
        store.fold(sf.fold_id).await.unwrap().state,
        crate::model::FoldState::Removed,
        "the replaced run, still queued, is removed"
    );
    let again = Rerun {
        id: sf.id,
        replaces: sf.fold_id,
        spec,
        held: None,
    };
    let err = store
        .rerun_submission_folds(s.id, "ann".into(), false, "force".into(), vec![again], None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let key = store.unsettled_submission_folds(100).await.unwrap();
    let mine = key.iter().find(|k| k.id == sf.id).unwrap();
    store
        .settle_submission_folds(vec![(sf.id, mine.key.clone(), ended(Phase::Tested))])
        .await
        .unwrap();
    let second = store
        .take_new_results("ann".into(), None, 100, false)
        .await
        .unwrap();
    assert_eq!((second.len(), second[0].state), (1, Phase::Tested));
}

#[tokio::test]
async fn a_changed_scope_reads_only_the_folds_that_changed_in_its_window() {
    let (_dir, store, _s) = setup().await;
    let all = store.unsettled_submission_folds(100).await.unwrap();
    assert_eq!(all.len(), 2);
    let before = store.newest_event().await.unwrap();
    let changed = |after, upto| {
        let store = store.clone();
        async move {
            store
                .unsettled_submission_folds_in(SettleScope::Changed { after, upto }, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.fold.id)
                .collect::<Vec<_>>()
        }
    };
    // Both were submitted up to `before`; nothing changed after it.
    assert_eq!(changed(0, before).await.len(), 2);
    assert!(changed(before, before).await.is_empty());
    // One queue fold is held: it alone is in the window after `before`.
    let held = all[1].fold.id;
    store
        .hold(held, crate::model::HoldCode::User, "look".into())
        .await
        .unwrap();
    let now = store.newest_event().await.unwrap();
    assert_eq!(changed(before, now).await, vec![held]);
    // Settled, it leaves every scope.
    let again = store
        .unsettled_submission_folds_in(
            SettleScope::Changed {
                after: before,
                upto: now,
            },
            100,
        )
        .await
        .unwrap();
    let results = vec![(again[0].id, again[0].key.clone(), ended(Phase::Error))];
    assert_eq!(store.settle_submission_folds(results).await.unwrap(), 1);
    assert!(changed(before, now).await.is_empty());
    assert_eq!(
        store.unsettled_submission_folds(100).await.unwrap().len(),
        1
    );
}

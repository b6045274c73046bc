//! The workflow task settles ends without any read, on a real SQLite store: it catches up at
//! start with folds that ended while it was not running, then follows new ends (the store's
//! change signal), and `caught_up` returns once what was committed before it is settled.

use super::*;
use crate::model::{FoldSpec, HoldCode, Metrics, Outcome};
use crate::protocol::Grant;
use crate::store::{
    sha256_hex, BlobData, NewAttempt, NewDataset, NewSubmission, NewSubmissionFold, ResultInput,
    SubmissionRecord,
};
use crate::submission::Phase;
use serde_json::json;

async fn submission(
    store: &Store,
    dataset: Option<i64>,
    name: &str,
    folds: i64,
) -> SubmissionRecord {
    let dataset_id = match dataset {
        Some(id) => id,
        None => {
            store
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
                .unwrap()
                .id
        }
    };
    let indices = b"[0]".to_vec();
    let sha = sha256_hex(&indices);
    let spec: FoldSpec = serde_json::from_value(
        json!({"command": ["true"], "inputs": [{"name": "fold.json", "sha256": sha}]}),
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
    store
        .create_submission(NewSubmission {
            dataset_id,
            split_id: None,
            name: name.into(),
            owner: "ann".into(),
            by_admin: false,
            files: [("classifier.py".to_string(), sha.clone())].into(),
            workflow_elements: vec!["classifier".into()],
            blobs: vec![indices],
            folds: (0..folds).map(fold).collect(),
        })
        .await
        .unwrap()
}

/// Polls the store (never the API) until the submission's folds are in `want`, or panics
/// after 10 s.
async fn wait_states(store: &Store, id: i64, want: &[Phase]) -> SubmissionRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.submission(id).await.unwrap();
        let states: Vec<Phase> = s.folds.iter().map(|f| f.state).collect();
        if states == want {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "submission {id}: {states:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs fold `fold` to a successful end that reached `validated` (no test table: VALIDATED).
async fn run_to_validated(store: &Store, fold: i64) {
    let grant = Grant {
        millicpus: 1000,
        memory: 1 << 20,
        gpus: vec![],
    };
    let attempt = store
        .assign(vec![NewAttempt {
            fold,
            runner: "local".into(),
            grant,
        }])
        .await
        .unwrap()[0]
        .0;
    store.mark_started(attempt).await.unwrap();
    let phases = serde_json::to_vec(&json!(["trained", "validated"])).unwrap();
    store
        .record_result(ResultInput {
            attempt,
            outcome: Outcome::Success,
            metrics: Metrics {
                wall_ms: 5,
                cpu_ms: 1,
                peak_memory: 1 << 20,
            },
            log: BlobData::Bytes(b"ok\n".to_vec()),
            outputs: vec![("phases.json".into(), BlobData::Bytes(phases))],
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_are_settled_without_a_read_after_catching_up_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    // Ends recorded while no workflow task runs (a master that was down).
    let a = submission(&store, None, "a", 2).await;
    store
        .hold(
            a.folds[0].fold_id,
            HoldCode::User,
            "held by the test".into(),
        )
        .await
        .unwrap();
    store
        .remove(a.folds[1].fold_id, "ann".into())
        .await
        .unwrap();
    assert!(store
        .submission(a.id)
        .await
        .unwrap()
        .folds
        .iter()
        .all(|f| f.state == Phase::Todo));

    let workflow = Workflow::start(store.clone());
    let a = wait_states(&store, a.id, &[Phase::Error, Phase::Error]).await;
    assert_eq!(
        a.folds[0].reason.as_deref(),
        Some("held (user): held by the test")
    );
    assert!(
        a.folds[1]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("cancelled: "),
        "{:?}",
        a.folds[1].reason
    );

    // A fold that runs to its end is settled from the store's change signal alone.
    let b = submission(&store, Some(a.dataset_id), "b", 2).await;
    run_to_validated(&store, b.folds[0].fold_id).await;
    let b_now = wait_states(&store, b.id, &[Phase::Validated, Phase::Todo]).await;
    assert_eq!(b_now.folds[0].phases, json!(["trained", "validated"]));

    // `caught_up`: once it returns, an end committed before it is recorded (no polling).
    run_to_validated(&store, b.folds[1].fold_id).await;
    let top = store.newest_event().await.unwrap();
    assert!(workflow.caught_up(top, Duration::from_secs(10)).await);
    let b_now = store.submission(b.id).await.unwrap();
    assert_eq!(b_now.folds[1].state, Phase::Validated);
    // Already current: at once.
    let t = std::time::Instant::now();
    assert!(workflow.caught_up(top, Duration::from_secs(10)).await);
    assert!(t.elapsed() < Duration::from_millis(5), "{:?}", t.elapsed());
    // Nothing is left unsettled.
    assert!(store
        .unsettled_submission_folds(10)
        .await
        .unwrap()
        .is_empty());
}

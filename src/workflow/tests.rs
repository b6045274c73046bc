//! The workflow task settles ends without any read, on a real SQLite store: it catches up at
//! start with folds that ended while it was not running, then follows new ends (the store's
//! change signal), and `caught_up` returns once what was committed before it is settled.

use super::*;
use crate::model::{HoldCode, Outcome};
use crate::store::submission_tests::{new_submission, setup};
use crate::store::tests::{assign, result};
use crate::store::{BlobData, SubmissionRecord};
use crate::submission::Phase;
use serde_json::json;

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
    let attempt = assign(store, fold).await;
    store.mark_started(attempt).await.unwrap();
    let phases = serde_json::to_vec(&json!(["trained", "validated"])).unwrap();
    let mut input = result(attempt, Outcome::Success);
    input.outputs = vec![("phases.json".into(), BlobData::Bytes(phases))];
    store.record_result(input).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_are_settled_without_a_read_after_catching_up_at_start() {
    // Ends recorded while no workflow task runs (a master that was down).
    let (_dir, store, a) = setup().await;
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
    let b = store
        .create_submission(new_submission(a.dataset_id, "b", false))
        .await
        .unwrap();
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

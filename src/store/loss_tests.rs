//! Losses (a runner or agent gone under an attempt) against a fold's own retries, on a real
//! SQLite file: a loss never uses a retry, a failure never counts as a loss, and past
//! max_losses the fold is held `lost_too_often`.

use super::tests::{assign, result, setup};
use super::*;
use crate::model::{FoldState, HoldCode, Outcome};

fn lost(reason: &str) -> Outcome {
    Outcome::Lost {
        reason: reason.into(),
    }
}

#[tokio::test]
async fn losses_and_retries_are_counted_apart() {
    // max_retries 1: one failure is retried; losses in between use none of it.
    let (_d, store, fold, a1) = setup(1).await;
    store.mark_started(a1).await.unwrap();
    store.mark_lost(a1, "lease".into()).await.unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 1, 0));
    assert!(f.reason.unwrap().contains("loss 1 (max_losses 5)"));
    // An agent reports a loss (its predecessor died under the fold): also a loss.
    let a2 = assign(&store, fold).await;
    store
        .record_result(result(a2, lost("the agent died")))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 2, 0));
    // The fold's own failure uses its retry, and is not a loss.
    let a3 = assign(&store, fold).await;
    store
        .record_result(result(a3, Outcome::ExitCode { code: 1 }))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 2, 1));
    // A loss after the retry budget is spent still requeues.
    let a4 = assign(&store, fold).await;
    store.mark_started(a4).await.unwrap();
    store.mark_lost(a4, "lease".into()).await.unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 3, 1));
    let a5 = assign(&store, fold).await;
    store
        .record_result(result(a5, Outcome::Success))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Done, 3, 1));
}

#[tokio::test]
async fn a_fold_without_retries_lost_n_times_still_ends_done() {
    let (_d, store, fold, mut attempt) = setup(0).await;
    for _ in 0..DEFAULT_MAX_LOSSES {
        store.mark_started(attempt).await.unwrap();
        store.mark_lost(attempt, "partition".into()).await.unwrap();
        assert_eq!(store.fold(fold).await.unwrap().state, FoldState::Idle);
        attempt = assign(&store, fold).await;
    }
    store
        .record_result(result(attempt, Outcome::Success))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!(
        (f.state, f.losses, f.retries_used),
        (FoldState::Done, DEFAULT_MAX_LOSSES, 0)
    );
}

#[tokio::test]
async fn past_max_losses_the_fold_is_held_lost_too_often() {
    let (_d, store, fold, a1) = setup(3).await;
    store.set_max_losses(1);
    store
        .record_result(result(a1, lost("the agent died")))
        .await
        .unwrap();
    let a2 = assign(&store, fold).await;
    store
        .record_result(result(a2, lost("the agent died again")))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!(
        (f.state, f.hold_code),
        (FoldState::Held, Some(HoldCode::LostTooOften))
    );
    assert_eq!((f.losses, f.retries_used), (2, 0), "no retry was used");
    let reason = f.reason.unwrap();
    assert!(
        reason.contains("lost 2 times (max_losses 1")
            && reason.contains("last: the agent died again"),
        "{reason}"
    );
    // A release keeps the count: the next loss holds it again; a success ends it.
    store
        .release(fold, "ann".into(), ReleaseChanges::default())
        .await
        .unwrap();
    let a3 = assign(&store, fold).await;
    store
        .record_result(result(a3, lost("once more")))
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses), (FoldState::Held, 3));
    // max_losses 0: the first loss holds.
    let (_d, store, fold, a1) = setup(0).await;
    store.set_max_losses(0);
    store.mark_started(a1).await.unwrap();
    store.mark_lost(a1, "lease".into()).await.unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!(
        (f.state, f.hold_code),
        (FoldState::Held, Some(HoldCode::LostTooOften))
    );
}

#[tokio::test]
async fn an_attempt_that_never_started_costs_nothing() {
    let (_d, store, fold, a1) = setup(0).await;
    store.set_max_losses(0);
    store
        .mark_lost(a1, "never reached the agent".into())
        .await
        .unwrap();
    let f = store.fold(fold).await.unwrap();
    assert_eq!((f.state, f.losses, f.retries_used), (FoldState::Idle, 0, 0));
}

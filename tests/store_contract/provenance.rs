//! Provenance records (`store::provenance`, `store::pg::provenance`): written with the
//! results, compact, read back whole, frozen before a release changes the spec.

use super::{new_attempt, result, spec};
use datarun::model::provenance::{RunnerFacts, RunnerSide};
use datarun::model::{AttemptId, HoldCode, Outcome};
use datarun::store::{RecordResult, ReleaseChanges, Store, StoreError};

fn side(attempt: AttemptId, runner: &str) -> RunnerSide {
    RunnerSide {
        attempt,
        runner: RunnerFacts {
            name: runner.into(),
            cpus: Some(8.0),
            hostname: Some("h1".into()),
            ..Default::default()
        },
        soft_time_limit_ms: None,
        hard_time_limit_ms: Some(60_000),
        ran: None,
    }
}

pub async fn provenance_with_results(s: Store) {
    let ids = s
        .submit(
            "ann".into(),
            false,
            vec![(spec(r#"{"command":["true"],"max_retries":1}"#), None)],
        )
        .await
        .unwrap();
    let fold = ids[0];
    let assigned = s.assign(vec![new_attempt(fold, "r")]).await.unwrap();
    let first = assigned[0].0;
    // An event about an attempt (a re-adoption) belongs to its fold.
    s.log_event(
        None,
        Some(first),
        "readopted".into(),
        "still running".into(),
    )
    .await
    .unwrap();
    let last = s.events(fold).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.attempt),
        ("readopted", Some(first))
    );
    match s.provenance(fold, None).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("none has finished"), "{m}"),
        other => panic!("before any result: {other:?}"),
    }
    let ended = s
        .apply_reports_with(
            vec![first],
            vec![result(
                first,
                Outcome::Error {
                    message: "bad".into(),
                },
            )],
            vec![side(first, "r")],
        )
        .await
        .unwrap();
    assert!(
        matches!(ended[0], RecordResult::Recorded { .. }),
        "{ended:?}"
    );
    let before = s.provenance(fold, Some(first)).await.unwrap();
    assert_eq!(before.argv, vec!["true".to_string()]);
    assert_eq!(before.limits.memory, 1 << 20);
    assert_eq!(before.runner.hostname.as_deref(), Some("h1"));
    assert_eq!(before.limits.hard_time_limit_ms, Some(60_000));
    assert_eq!(s.provenance(fold, None).await.unwrap(), before);
    match s.provenance(fold, Some(first + 1000)).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("has no attempt"), "{m}"),
        other => panic!("another attempt: {other:?}"),
    }

    // The retry runs, unfinished: it has no record yet.
    let second = s.assign(vec![new_attempt(fold, "r")]).await.unwrap()[0].0;
    match s.provenance(fold, Some(second)).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("has not finished"), "{m}"),
        other => panic!("a running attempt: {other:?}"),
    }
    // Held and released with more memory: the first attempt's record still tells what it ran.
    s.hold(fold, HoldCode::User, "edit".into()).await.unwrap();
    s.release(
        fold,
        "ann".into(),
        ReleaseChanges {
            memory: Some(2 << 20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.fold(fold).await.unwrap().spec.resources.memory, 2 << 20);
    assert_eq!(s.provenance(fold, Some(first)).await.unwrap(), before);

    // Recorded again (on its own, as after a failed batch): the first record stays.
    s.record_provenance(vec![side(first, "other")])
        .await
        .unwrap();
    assert_eq!(s.provenance(fold, Some(first)).await.unwrap(), before);
    // The second attempt's record, on its own transaction, shares the runner's facts.
    s.record_provenance(vec![side(second, "r")]).await.unwrap();
    let again = s.provenance(fold, Some(second)).await.unwrap();
    assert_eq!(again.runner, before.runner);
    assert_ne!(again, before, "its own record");
}

//! Sweeps (`store::sweeps`, `store::pg::sweeps`): an array whose points carry values, the
//! early stop decided in the transaction that records a point done, `keep` dropping outputs.

use super::{new_attempt, result, spec};
use datarun::model::sweep::StopRule;
use datarun::model::{FoldState, Outcome};
use datarun::store::{sha256_hex, BlobData, NewSweep, Store, StoreError};
use serde_json::{json, Map, Value};

fn point(x: i64) -> Map<String, Value> {
    json!({ "x": x }).as_object().unwrap().clone()
}

pub async fn sweeps_stop_early_and_keep(s: Store) {
    let (sweep, ids) = s
        .submit_sweep(
            "ann".into(),
            false,
            spec(r#"{"command":["true"]}"#),
            None,
            NewSweep {
                names: vec!["x".into()],
                points: vec![point(1), point(2), point(3)],
                stop: Some(StopRule {
                    metric: "loss".into(),
                    below: Some(0.5),
                    above: None,
                }),
                cap: Some(1),
                stop_on_failure: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let first = s.fold(ids[0]).await.unwrap();
    assert_eq!(first.state, FoldState::Idle);
    assert_eq!(s.fold(ids[1]).await.unwrap().state, FoldState::Waiting);
    let params = first
        .spec
        .inputs
        .iter()
        .find(|i| i.name == "params.json")
        .unwrap();
    assert_eq!(params.sha256, sha256_hex(br#"{"x":1}"#));

    // Point 0 reaches the target: the points not started are removed, saying why.
    let attempt = s.assign(vec![new_attempt(ids[0], "r")]).await.unwrap()[0].0;
    let mut r = result(attempt, Outcome::Success);
    r.outputs = vec![(
        "metrics.json".into(),
        BlobData::Bytes(br#"{"loss": 0.125}"#.to_vec()),
    )];
    s.apply_reports(vec![attempt], vec![r]).await.unwrap();
    let record = s.sweep(sweep).await.unwrap();
    let why = record.stopped.clone().unwrap_or_default();
    assert!(
        why.starts_with(&format!(
            "stopped early: fold {} of sweep {sweep} reached",
            ids[0]
        )),
        "{why}"
    );
    let states: Vec<&str> = record.points.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(states, ["done", "removed", "removed"]);
    assert_eq!(record.points[1].reason.as_deref(), Some(why.as_str()));
    assert_eq!(
        record.points[0]
            .metrics
            .as_ref()
            .and_then(|m| m.get("loss")),
        Some(&0.125)
    );
    assert_eq!(
        (record.points[0].outputs, record.points[2].params.get("x")),
        (1, Some(&json!(3)))
    );
    assert_eq!(
        (record.params.clone(), record.cap, record.owner.as_str()),
        (vec!["x".to_string()], Some(1), "ann")
    );

    // Keep none: the done point's outputs go, and the blob nothing refers to.
    let report = s.sweep_drop_outputs(sweep, vec![]).await.unwrap();
    assert_eq!((report.points, report.outputs, report.blobs), (1, 1, 1));
    assert_eq!(s.sweep(sweep).await.unwrap().points[0].outputs, 0);
    assert!(matches!(
        s.sweep(sweep + 100).await,
        Err(StoreError::NotFound(_))
    ));
}

//! Webhooks (`store::webhooks`, `store::pg::webhooks`): armed until the target ends, made
//! pending with their body in the transaction that ends it, leased by the delivery task,
//! each attempt recorded.

use super::{new_attempt, result, spec};
use datarun::model::{FoldId, Outcome};
use datarun::store::{AttemptEnd, HookKind, NewArray, Scope, Store};

async fn finish(s: &Store, fold: FoldId) {
    let attempt = s.assign(vec![new_attempt(fold, "r")]).await.unwrap()[0].0;
    s.apply_reports(vec![attempt], vec![result(attempt, Outcome::Success)])
        .await
        .unwrap();
}

async fn states(s: &Store) -> Vec<String> {
    s.webhooks(Scope::Owner("ann".into()), None, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.state)
        .collect()
}

pub async fn webhooks_outbox(s: Store) {
    let (token, _) = s.create_token("ann", false, None).unwrap();
    let secret = s.webhook_secret(token).await.unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        s.webhook_secret(token).await.unwrap(),
        secret,
        "the same each time"
    );

    let fold = s
        .submit(
            "ann".into(),
            false,
            vec![(spec(r#"{"command":["true"]}"#), None)],
        )
        .await
        .unwrap()[0];
    let url = "http://hooks.example/x".to_string();
    let ids = s
        .add_webhooks(
            token,
            "ann".into(),
            vec![(HookKind::Fold, fold, url.clone())],
        )
        .await
        .unwrap();
    assert!(ids[0].starts_with("evt_"), "{ids:?}");
    assert_eq!(states(&s).await, ["armed"]);
    assert!(s.due_webhooks(60_000, 10).await.unwrap().is_empty());
    assert!(s
        .webhooks(Scope::Owner("bob".into()), None, 0, 100)
        .await
        .unwrap()
        .is_empty());

    finish(&s, fold).await;
    assert_eq!(states(&s).await, ["pending"]);
    let due = s.due_webhooks(60_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let d = &due[0];
    assert_eq!(
        (
            d.event_id.as_str(),
            d.url.as_str(),
            d.secret.as_str(),
            d.attempts
        ),
        (ids[0].as_str(), url.as_str(), secret.as_str(), 0)
    );
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["id"].as_i64(),
            body["state"].as_str()
        ),
        (Some("fold"), Some(fold), Some("done"))
    );
    assert_eq!(body["outcome"]["kind"], "success", "{body}");
    assert!(
        s.due_webhooks(60_000, 10).await.unwrap().is_empty(),
        "leased"
    );
    // A failed attempt due again at once, then delivered.
    s.webhook_attempted(
        d.id,
        AttemptEnd::Failed {
            status: Some(500),
            error: "boom".into(),
            retry_at: Some(0),
        },
    )
    .await
    .unwrap();
    let again = s.due_webhooks(60_000, 10).await.unwrap();
    assert_eq!(
        (again.len(), again[0].attempts, again[0].body.as_str()),
        (1, 1, d.body.as_str())
    );
    s.webhook_attempted(d.id, AttemptEnd::Delivered { status: 200 })
        .await
        .unwrap();
    let w = &s
        .webhooks(Scope::All, Some((HookKind::Fold, fold)), 0, 10)
        .await
        .unwrap()[0];
    assert_eq!(
        (w.state.as_str(), w.attempts, w.last_status),
        ("delivered", 2, Some(200))
    );

    // A target that has ended already: its delivery is pending at once.
    let late = s
        .add_webhooks(
            token,
            "ann".into(),
            vec![(HookKind::Fold, fold, url.clone())],
        )
        .await
        .unwrap();
    let w = s.webhooks(Scope::All, None, w.id, 10).await.unwrap();
    assert_eq!(
        (w[0].event_id.as_str(), w[0].state.as_str()),
        (late[0].as_str(), "pending")
    );
    s.webhook_attempted(
        w[0].id,
        AttemptEnd::Failed {
            status: None,
            error: "gone".into(),
            retry_at: None,
        },
    )
    .await
    .unwrap();

    // An array's webhook fires once its last fold ends.
    let (array, folds) = s
        .submit_array(
            "ann".into(),
            false,
            spec(r#"{"command":["true"]}"#),
            None,
            NewArray {
                indices: vec![0, 1],
                cap: None,
                stop_on_failure: false,
            },
        )
        .await
        .unwrap();
    s.add_webhooks(token, "ann".into(), vec![(HookKind::Array, array, url)])
        .await
        .unwrap();
    finish(&s, folds[0]).await;
    assert_eq!(states(&s).await, ["delivered", "failed", "armed"]);
    finish(&s, folds[1]).await;
    let due = s.due_webhooks(60_000, 10).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["id"].as_i64(),
            body["state"].as_str()
        ),
        (Some("array"), Some(array), Some("done"))
    );
    assert_eq!(
        (
            body["outcome"]["done"].as_i64(),
            body["outcome"]["folds"].as_i64()
        ),
        (Some(2), Some(2))
    );
}

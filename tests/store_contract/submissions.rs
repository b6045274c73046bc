//! Submissions (`store::submissions`, `store::pg::submissions`): created with their queue
//! folds, a result recorded once per run-end (however many callers derive it), the "new
//! results" feed handing each result out once under concurrent callers, reruns, stop on
//! failure, and a purge that keeps what a submission refers to.

use super::{new_attempt, result, spec};
use datarun::model::{FoldState, Outcome};
use datarun::store::{
    sha256_hex, HookKind, NewDataset, NewSplit, NewSubmission, NewSubmissionFold, Rerun, Resource,
    Scope, SettleScope, Settled, Store, StoreError, SubmissionRecord,
};
use datarun::submission::Phase;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const MODEL: &[u8] = b"def classifier(): pass\n";
const TRAIN: &[u8] = b"[0,1]";
const TEST: &[u8] = b"[2]";

fn fold_json(i: i64) -> Vec<u8> {
    format!("{{\"fold\": {i}}}").into_bytes()
}

/// A dataset with a split, on which submissions are made.
pub async fn dataset(s: &Store) -> (i64, i64) {
    let d = s
        .create_dataset(NewDataset {
            owner: "ann".into(),
            name: "iris".into(),
            target_column: "y".into(),
            workflow_elements: vec!["classifier".into()],
            score_types: vec!["accuracy".into()],
            table: b"x,y\n1,a\n2,b\n3,a\n".to_vec(),
            rows: 3,
            stats: json!({}),
        })
        .await
        .unwrap();
    let split = s
        .create_split(NewSplit {
            dataset_id: d.id,
            held_out_test: 0.25,
            random_state: 1,
            stratify: false,
            train: vec![0, 1, 2],
            test: vec![],
            stats: json!({}),
        })
        .await
        .unwrap();
    (d.id, split.id)
}

fn new_submission(
    dataset: (i64, i64),
    name: &str,
    folds: i64,
    stop_on_failure: bool,
) -> NewSubmission {
    let mut blobs = vec![MODEL.to_vec(), TRAIN.to_vec(), TEST.to_vec()];
    let folds = (0..folds)
        .map(|i| {
            blobs.push(fold_json(i));
            NewSubmissionFold {
                fold_index: i,
                client_id: None,
                train_sha256: sha256_hex(TRAIN),
                test_sha256: sha256_hex(TEST),
                train_rows: 2,
                test_rows: 1,
                spec: spec(&format!(
                    r#"{{"command":["true"],"inputs":[{{"name":"fold.json","sha256":"{}"}}]}}"#,
                    sha256_hex(&fold_json(i))
                )),
                held: None,
            }
        })
        .collect();
    NewSubmission {
        dataset_id: dataset.0,
        split_id: Some(dataset.1),
        name: name.into(),
        owner: "ann".into(),
        by_admin: false,
        files: BTreeMap::from([("classifier.py".to_string(), sha256_hex(MODEL))]),
        workflow_elements: vec!["classifier".into()],
        blobs,
        folds,
        stop_on_failure,
    }
}

fn tested(score: f64) -> Settled {
    Settled {
        state: Some(Phase::Tested),
        scores: json!({"test": {"accuracy": score}}),
        phases: json!(["TRAINED", "VALIDATED", "TESTED"]),
        ..Default::default()
    }
}

/// Runs every queue fold of `sub` to success.
async fn run_all(s: &Store, sub: &SubmissionRecord) {
    for f in &sub.folds {
        let attempt = s.assign(vec![new_attempt(f.fold_id, "r")]).await.unwrap()[0].0;
        s.apply_reports(vec![attempt], vec![result(attempt, Outcome::Success)])
            .await
            .unwrap();
    }
}

/// Derives and records (as the workflow does) every unsettled result of `s`; how many.
async fn settle_all(s: &Store, score: f64) -> usize {
    let inputs = s.unsettled_submission_folds(1000).await.unwrap();
    let results = inputs
        .into_iter()
        .map(|i| (i.id, i.key, tested(score)))
        .collect();
    s.settle_submission_folds(results).await.unwrap()
}

pub async fn submissions_results_once(s: Store) {
    let ds = dataset(&s).await;
    let sub = s
        .create_submission(new_submission(ds, "first", 2, false))
        .await
        .unwrap();
    assert_eq!((sub.owner.as_str(), sub.folds.len()), ("ann", 2));
    assert_eq!(sub.folds[0].state, Phase::Todo);
    assert_eq!(
        s.fold(sub.folds[0].fold_id).await.unwrap().state,
        FoldState::Idle
    );
    assert_eq!(
        s.submission_fold_json(sub.folds[1].id).await.unwrap(),
        fold_json(1)
    );
    // The same name again on the dataset is refused and stores nothing.
    let err = s
        .create_submission(new_submission(ds, "first", 2, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("already")),
        "{err}"
    );
    let err = s
        .create_submission(new_submission((ds.0, ds.1 + 50), "other", 1, false))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let (listed, next) = s
        .list_submissions(&Scope::All, None, None, 10)
        .await
        .unwrap();
    assert_eq!((listed.len(), next), (1, None));
    assert!(s
        .visible(&Scope::Owner("bob".into()), Resource::Submission(sub.id))
        .await
        .is_err());
    assert!(s
        .visible(
            &Scope::Owner("ann".into()),
            Resource::SubmissionFold(sub.folds[0].id)
        )
        .await
        .is_ok());

    // Not stopped yet: a derived TODO is recorded, but nothing is in the feed.
    let inputs = s.unsettled_submission_folds(100).await.unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(
        (inputs[0].train_is.clone(), inputs[0].test_is.clone()),
        (vec![0, 1], vec![2])
    );
    run_all(&s, &sub).await;

    // A batch stops growing at its byte budget (at least one input): the rest come next.
    let one = s
        .unsettled_submission_folds_within(SettleScope::All, 100, 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].bytes() >= 3 * std::mem::size_of::<usize>());
    let budget = one[0].bytes() + 1;
    let both = s
        .unsettled_submission_folds_within(SettleScope::All, 100, budget)
        .await
        .unwrap();
    assert_eq!(both.len(), 2);

    // Derived by two callers at once: recorded once.
    let inputs = s.unsettled_submission_folds(100).await.unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].fold.state, FoldState::Done);
    let results: Vec<_> = inputs
        .iter()
        .map(|i| (i.id, i.key.clone(), tested(0.75)))
        .collect();
    let (a, b) = tokio::join!(
        s.settle_submission_folds(results.clone()),
        s.settle_submission_folds(results.clone())
    );
    assert_eq!(a.unwrap() + b.unwrap(), 2, "each result recorded once");
    assert_eq!(s.settle_submission_folds(results).await.unwrap(), 0);
    assert!(s.unsettled_submission_folds(100).await.unwrap().is_empty());
    // A result derived from another run-end (a stale key) is not recorded.
    let stale = vec![(sub.folds[0].id, "stale".to_string(), tested(0.1))];
    assert_eq!(s.settle_submission_folds(stale).await.unwrap(), 0);
    let (sf, parent, runs) = s.submission_fold(sub.folds[0].id).await.unwrap();
    assert_eq!(
        (sf.state, sf.scores.clone()),
        (Phase::Tested, json!({"test": {"accuracy": 0.75}}))
    );
    assert_eq!((parent.id, parent.folds.len(), runs.len()), (sub.id, 0, 1));
    assert!(sf.result_seq.is_some() && !sf.delivered);
    let board = s.leaderboard_inputs(ds.0).await.unwrap();
    assert_eq!((board.len(), board[0].scores.len()), (1, 2));

    // The feed hands each out once; its owner's only.
    assert!(s
        .take_new_results("bob".into(), None, 10, false)
        .await
        .unwrap()
        .is_empty());
    let fed = s
        .take_new_results("ann".into(), Some(ds.0), 10, false)
        .await
        .unwrap();
    assert_eq!(fed.len(), 2);
    assert!(fed.iter().all(|f| f.delivered));
    assert!(fed[0].result_seq < fed[1].result_seq);
    assert!(s
        .take_new_results("ann".into(), None, 10, false)
        .await
        .unwrap()
        .is_empty());

    // A rerun: the old run stays in the history, the new one is TODO and fed once settled.
    let (sf0, _, _) = s.submission_fold(sub.folds[0].id).await.unwrap();
    let rerun = |cause: &str| {
        let (s, cause, id) = (s.clone(), cause.to_string(), sub.id);
        let again = Rerun {
            id: sf0.id,
            replaces: sf0.fold_id,
            spec: spec(r#"{"command":["true"]}"#),
            held: None,
        };
        async move {
            s.rerun_submission_folds(id, "ann".into(), false, cause, vec![again], None)
                .await
        }
    };
    let cancels = rerun("resubmitted").await.unwrap();
    assert!(cancels.is_empty(), "the old run had ended");
    let (sf1, _, runs) = s.submission_fold(sf0.id).await.unwrap();
    assert_eq!((sf1.runs, sf1.state, runs.len()), (2, Phase::Todo, 2));
    assert_ne!(sf1.fold_id, sf0.fold_id);
    assert_eq!(runs[1].2, "resubmitted");
    // A rerun naming a run that is no longer current is refused.
    let err = rerun("again").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("changed meanwhile")),
        "{err}"
    );
    let again = s.submission(sub.id).await.unwrap();
    run_all(
        &s,
        &SubmissionRecord {
            folds: vec![again.folds[0].clone()],
            ..again
        },
    )
    .await;
    assert_eq!(settle_all(&s, 0.5).await, 1);
    let fed = s
        .take_new_results("ann".into(), None, 10, false)
        .await
        .unwrap();
    assert_eq!(fed.iter().map(|f| f.id).collect::<Vec<_>>(), [sf0.id]);
    assert_eq!(
        s.submission_folds(&Scope::Owner("bob".into()), vec![sf0.id])
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        s.submission_folds(&Scope::All, vec![sf0.id, 9999])
            .await
            .unwrap()
            .len(),
        1
    );

    // A purge keeps what the submission refers to (its files, fold.json, indices).
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000;
    s.purge(far).await.unwrap();
    assert_eq!(s.get_blob(sha256_hex(MODEL)).await.unwrap(), MODEL);
    assert_eq!(
        s.submission_fold_json(sub.folds[1].id).await.unwrap(),
        fold_json(1)
    );
    assert_eq!(s.split(ds.1).await.unwrap().1, vec![0, 1, 2]);
    // And the dataset stays while a submission refers to it.
    let err = s.delete_dataset(ds.0).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("submission")),
        "{err}"
    );
}

pub async fn submissions_feed_under_concurrent_callers(s: Store) {
    let ds = dataset(&s).await;
    let mut all = BTreeSet::new();
    for i in 0..3 {
        let sub = s
            .create_submission(new_submission(ds, &format!("s{i}"), 8, false))
            .await
            .unwrap();
        run_all(&s, &sub).await;
        all.extend(sub.folds.iter().map(|f| f.id));
    }
    assert_eq!(settle_all(&s, 0.5).await, 24);
    // 8 callers take 3 at a time until the feed is empty: each result exactly once.
    let mut callers = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        callers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let page = s
                    .take_new_results("ann".into(), None, 3, false)
                    .await
                    .unwrap();
                if page.is_empty() {
                    return got;
                }
                got.extend(page.into_iter().map(|f| f.id));
            }
        }));
    }
    let mut seen = Vec::new();
    for c in callers {
        seen.extend(c.await.unwrap());
    }
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "no result handed out twice");
    assert_eq!(unique, all, "every result handed out");
}

pub async fn submissions_stop_on_failure(s: Store) {
    let ds = dataset(&s).await;
    let sub = s
        .create_submission(new_submission(ds, "stops", 3, true))
        .await
        .unwrap();
    // A webhook of the submission: armed until all its folds have ended.
    let (token, _) = s.create_token("ann", false, None).unwrap();
    let hook = "http://hooks.example/s".to_string();
    s.add_webhooks(
        token,
        "ann".into(),
        vec![(HookKind::Submission, sub.id, hook)],
    )
    .await
    .unwrap();
    let first = sub.folds[0].fold_id;
    let attempt = s.assign(vec![new_attempt(first, "r")]).await.unwrap()[0].0;
    s.apply_reports(
        vec![attempt],
        vec![result(attempt, Outcome::ExitCode { code: 1 })],
    )
    .await
    .unwrap();
    assert_eq!(s.fold(first).await.unwrap().state, FoldState::Failed);
    for f in &sub.folds[1..] {
        let fold = s.fold(f.fold_id).await.unwrap();
        assert_eq!(fold.state, FoldState::Removed);
        let why = fold.reason.unwrap_or_default();
        assert!(
            why.starts_with(&format!(
                "stopped: fold {first} of submission {} failed with its own error",
                sub.id
            )),
            "{why}"
        );
    }
    // Its last fold ended with the first's failure: the webhook is due, saying so.
    let due = s.due_webhooks(60_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(
        (body["kind"].clone(), body["id"].clone()),
        (json!("submission"), json!(sub.id)),
        "{body}"
    );
    assert_eq!(
        (
            body["outcome"]["failed"].clone(),
            body["outcome"]["removed"].clone()
        ),
        (json!(1), json!(2)),
        "{body}"
    );
    // Settled: every result is an end, fed once.
    assert_eq!(settle_all(&s, 0.0).await, 3);
    let inputs = s
        .unsettled_submission_folds_in(
            SettleScope::Changed {
                after: 0,
                upto: i64::MAX,
            },
            10,
        )
        .await
        .unwrap();
    assert!(inputs.is_empty());
}

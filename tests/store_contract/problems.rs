//! Problem datasets and custom splits (`store::problems`, `store::pg::problems`), and the
//! `/runapp/` id maps (`store::runapp`, `store::pg::runapp`): a custom split created running
//! with its fold and settled once; `/runapp/` folds added under the client's ids, per owner,
//! a reused id refused and storing nothing, and the feed limited to them.

use super::{new_attempt, result, spec};
use datarun::model::{FoldState, Outcome};
use datarun::store::{
    sha256_hex, BlobData, CustomSplitEnd, NewProblemDataset, NewSubmission, NewSubmissionFold,
    RunappFold, RunappTarget, Settled, Store, StoreError,
};
use datarun::submission::Phase;
use serde_json::json;
use std::collections::BTreeMap;

pub async fn problems_and_custom_splits(s: Store) {
    let script = b"def prepare_data(): pass\n".to_vec();
    let data = b"some,text\n".to_vec();
    let new = |problem: &str| NewProblemDataset {
        owner: "ann".into(),
        name: "texts".into(),
        target_column: "topic".into(),
        workflow_elements: vec!["classifier".into()],
        score_types: vec!["accuracy".into()],
        problem: problem.into(),
        files: BTreeMap::from([
            ("problem.py".to_string(), script.clone()),
            ("data/texts.csv".to_string(), data.clone()),
        ]),
        stats: json!({}),
    };
    let err = s.create_problem_dataset(new("nope.py")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref m) if m.contains("not among the files")),
        "{err}"
    );
    let d = s.create_problem_dataset(new("problem.py")).await.unwrap();
    assert_eq!((d.problem.as_deref(), d.rows), (Some("problem.py"), 0));
    assert_eq!(d.table_sha256, sha256_hex(&script));
    assert_eq!(d.files["data/texts.csv"], sha256_hex(&data));
    assert!(matches!(
        s.create_problem_dataset(new("problem.py")).await,
        Err(StoreError::Conflict(_))
    ));

    // A custom split: running with its fold, then done once with the files its fold wrote.
    let split = s
        .create_custom_split(
            d.id,
            "ann".into(),
            false,
            spec(r#"{"command":["true"]}"#),
            None,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        (split.kind.as_str(), split.state.as_str()),
        ("custom", "running")
    );
    let fold = split.fold_id.unwrap();
    assert_eq!(
        s.custom_split_fold(split.id).await.unwrap().unwrap().id,
        fold
    );
    assert!(
        s.unsettled_custom_splits().await.unwrap().is_empty(),
        "its fold runs"
    );
    let err = s.delete_dataset(d.id).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("still running")),
        "{err}"
    );
    let attempt = s.assign(vec![new_attempt(fold, "r")]).await.unwrap()[0].0;
    let mut r = result(attempt, Outcome::Success);
    let truth = br#"{"y_train": [0], "y_test": [1], "labels": ["a", "b"]}"#.to_vec();
    r.outputs = vec![
        ("truth.json".into(), BlobData::Bytes(truth.clone())),
        ("train.csv".into(), BlobData::Bytes(b"t\n".to_vec())),
    ];
    s.apply_reports(vec![attempt], vec![r]).await.unwrap();
    let unsettled = s.unsettled_custom_splits().await.unwrap();
    assert_eq!(unsettled.len(), 1);
    assert_eq!(unsettled[0].truth.as_deref(), Some(truth.as_slice()));
    assert_eq!(unsettled[0].outputs["train.csv"].1, 2);
    let done = || CustomSplitEnd::Done {
        files: BTreeMap::from([("train.csv".to_string(), sha256_hex(b"t\n"))]),
        truth_sha256: sha256_hex(&truth),
        n_train: 1,
        n_test: 1,
        stats: json!({"n": 2}),
    };
    assert!(s.finish_custom_split(split.id, done()).await.unwrap());
    assert!(
        !s.finish_custom_split(split.id, done()).await.unwrap(),
        "once"
    );
    let failed = CustomSplitEnd::Failed {
        reason: "late".into(),
    };
    assert!(!s.finish_custom_split(split.id, failed).await.unwrap());
    let (rec, _, _) = s.split(split.id).await.unwrap();
    assert_eq!((rec.state.as_str(), rec.train_rows), ("done", 1));
    assert_eq!(rec.truth_sha256, Some(sha256_hex(&truth)));
    assert!(s.custom_split_fold(split.id).await.unwrap().is_none());
    // Its files became the dataset owner's: a fold of ann's may use them.
    assert!(s
        .may_use_blob(
            &datarun::store::Scope::Owner("ann".into()),
            sha256_hex(b"t\n")
        )
        .await
        .unwrap());
    // And a purge keeps what the split refers to, though the fold's outputs go.
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000;
    s.purge(far).await.unwrap();
    assert_eq!(s.get_blob(sha256_hex(&truth)).await.unwrap(), truth);
    assert_eq!(s.get_blob(sha256_hex(&data)).await.unwrap(), data);
    assert!(s
        .create_custom_split(
            d.id + 100,
            "ann".into(),
            false,
            spec(r#"{"command":["true"]}"#),
            None,
            vec![]
        )
        .await
        .is_err());
}

fn runapp_fold(index: i64) -> (Vec<Vec<u8>>, NewSubmissionFold) {
    let (train, test) = (b"[0]".to_vec(), format!("[{index}]").into_bytes());
    let fold = NewSubmissionFold {
        fold_index: index,
        client_id: Some(format!("c{index}")),
        train_sha256: sha256_hex(&train),
        test_sha256: sha256_hex(&test),
        train_rows: 1,
        test_rows: 1,
        spec: spec(r#"{"command":["true"]}"#),
        held: None,
    };
    (vec![train, test], fold)
}

fn meta(sf: i64, s: i64) -> RunappFold {
    RunappFold {
        databoard_sf_id: sf,
        databoard_s_id: s,
        priority: "L".into(),
        train_is: "eJyLjgUAARUAuQ==".into(),
        test_is: "eJyLNgIAAUAAhQ==".into(),
    }
}

pub async fn runapp_ids_per_owner(s: Store) {
    let (dataset, split) = super::submissions::dataset(&s).await;
    assert_eq!(s.runapp_split(dataset).await.unwrap(), None);
    s.runapp_set_split(dataset, split).await.unwrap();
    s.runapp_set_split(dataset, split).await.unwrap();
    assert_eq!(s.runapp_split(dataset).await.unwrap(), Some(split));

    let submission = |owner: &str| NewSubmission {
        dataset_id: dataset,
        split_id: Some(split),
        name: "db-7".into(),
        owner: owner.into(),
        by_admin: false,
        files: BTreeMap::new(),
        workflow_elements: vec!["classifier".into()],
        blobs: vec![],
        folds: vec![],
        stop_on_failure: false,
    };
    // `owner`'s fold `sf` of databoard submission 7 (new, or the existing native one).
    let add = |owner: &str, target: Option<i64>, index: i64, sf: i64| {
        let (s, owner) = (s.clone(), owner.to_string());
        let target = match target {
            Some(id) => RunappTarget::Existing(id),
            None => RunappTarget::New(submission(&owner)),
        };
        let (blobs, fold) = runapp_fold(index);
        async move {
            s.runapp_add_fold(owner, false, target, blobs, fold, meta(sf, 7))
                .await
        }
    };
    // ann's databoard submission 7, fold 70, then fold 71 of the same submission.
    let sf70 = add("ann", None, 0, 70).await.unwrap();
    let native = s.runapp_submission("ann".into(), 7).await.unwrap().unwrap();
    let sf71 = add("ann", Some(native), 1, 71).await.unwrap();
    assert_eq!(s.submission(native).await.unwrap().folds.len(), 2);
    // The id 70 again is refused and stores nothing; bob has ids of his own.
    let err = add("ann", Some(native), 2, 70).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "SubmissionFold with this databoard sf id already exists."
    );
    assert_eq!(s.submission(native).await.unwrap().folds.len(), 2);
    assert_eq!(s.runapp_submission("bob".into(), 7).await.unwrap(), None);
    let bobs = add("bob", None, 0, 70).await.unwrap();
    assert_ne!(bobs, sf70);

    let folds = s.runapp_folds("ann".into(), None).await.unwrap();
    let ids: Vec<(i64, i64)> = folds
        .iter()
        .map(|(m, f)| (m.databoard_sf_id, f.id))
        .collect();
    assert_eq!(ids, [(70, sf70), (71, sf71)]);
    assert_eq!(folds[0].0.train_is, "eJyLjgUAARUAuQ==");
    let some = s
        .runapp_folds("ann".into(), Some(vec![71, 99]))
        .await
        .unwrap();
    assert_eq!(some.len(), 1);
    let metas = s.runapp_meta(vec![sf71, 12345]).await.unwrap();
    assert_eq!(
        metas.iter().map(|m| m.databoard_sf_id).collect::<Vec<_>>(),
        [71]
    );

    // Folds added natively to the same submission are not in the /runapp/ feed.
    let (blobs, fold) = runapp_fold(3);
    let added = s
        .add_submission_folds(native, false, blobs, vec![fold])
        .await
        .unwrap();
    let sub = s.submission(native).await.unwrap();
    assert_eq!(sub.folds.len(), 3);
    for f in &sub.folds {
        let attempt = s.assign(vec![new_attempt(f.fold_id, "r")]).await.unwrap()[0].0;
        s.apply_reports(vec![attempt], vec![result(attempt, Outcome::Success)])
            .await
            .unwrap();
        assert_eq!(s.fold(f.fold_id).await.unwrap().state, FoldState::Done);
    }
    let inputs = s.unsettled_submission_folds(100).await.unwrap();
    let results = inputs
        .into_iter()
        .map(|i| {
            let settled = Settled {
                state: Some(Phase::Tested),
                ..Default::default()
            };
            (i.id, i.key, settled)
        })
        .collect();
    s.settle_submission_folds(results).await.unwrap();
    let fed = s
        .take_new_results("ann".into(), None, 10, true)
        .await
        .unwrap();
    let mut fed: Vec<i64> = fed.iter().map(|f| f.id).collect();
    fed.sort();
    assert_eq!(fed, [sf70, sf71]);
    let rest = s
        .take_new_results("ann".into(), None, 10, false)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|f| f.id).collect::<Vec<_>>(), added);
}

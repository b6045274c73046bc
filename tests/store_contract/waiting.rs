//! Folds that wait (`store::waiting`, `store::pg::waiting`): dependencies (after-ok,
//! after-any, outputs passed on as inputs) and arrays with a concurrency cap, settled in the
//! transaction that ends what they wait for.

use super::{new_attempt, result, spec};
use datarun::model::{FoldId, FoldState, HoldCode, Outcome};
use datarun::store::{sha256_hex, BlobData, NewArray, ReleaseChanges, Store, StoreError};

async fn submit(s: &Store, owner: &str, json: &str) -> Result<FoldId, StoreError> {
    s.submit(owner.into(), false, vec![(spec(json), None)])
        .await
        .map(|ids| ids[0])
}

async fn state(s: &Store, fold: FoldId) -> (FoldState, String) {
    let f = s.fold(fold).await.unwrap();
    (f.state, f.reason.unwrap_or_default())
}

/// Runs `fold` to `outcome`, with these outputs.
async fn finish(s: &Store, fold: FoldId, outcome: Outcome, outputs: Vec<(String, BlobData)>) {
    let assigned = s.assign(vec![new_attempt(fold, "r")]).await.unwrap();
    assert_eq!(assigned.len(), 1, "fold {fold} is in line");
    let mut r = result(assigned[0].0, outcome);
    r.outputs = outputs;
    s.apply_reports(vec![assigned[0].0], vec![r]).await.unwrap();
}

/// A fold of ann's that runs after `parent` (`when`: ok or any).
async fn after(s: &Store, parent: FoldId, when: &str) -> FoldId {
    let json = format!(r#"{{"command":["true"],"after":[{{"fold":{parent},"when":"{when}"}}]}}"#);
    submit(s, "ann", &json).await.unwrap()
}

fn error() -> Outcome {
    Outcome::Error {
        message: "bad".into(),
    }
}

pub async fn dependencies(s: Store) {
    let parent = submit(&s, "ann", r#"{"command":["true"]}"#).await.unwrap();
    let child = after(&s, parent, "ok").await;
    assert_eq!(
        state(&s, child).await,
        (
            FoldState::Waiting,
            format!("waiting for fold {parent} to end")
        )
    );
    let (pending, _) = s.pending_folds().await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.id).collect::<Vec<_>>(),
        [parent],
        "a waiting fold is not in line"
    );
    // Another owner cannot name it; nothing is stored.
    match submit(
        &s,
        "bob",
        &format!(r#"{{"command":["true"],"after":[{{"fold":{parent}}}]}}"#),
    )
    .await
    {
        Err(StoreError::Invalid(m)) => {
            assert!(m.contains(&format!("fold {parent} does not exist")), "{m}")
        }
        other => panic!("another owner's parent: {other:?}"),
    }
    // Held while it waits, released: it waits again.
    s.hold(child, HoldCode::User, "look".into()).await.unwrap();
    s.release(child, "ann".into(), ReleaseChanges::default())
        .await
        .unwrap();
    assert_eq!(state(&s, child).await.0, FoldState::Waiting);

    // The parent's output passed on as the child's input once it is done.
    let taker = submit(
        &s,
        "ann",
        &format!(r#"{{"command":["true"],"inputs_from":[{{"fold":{parent},"output":"model.bin","name":"in.bin"}}]}}"#),
    )
    .await
    .unwrap();
    let bytes = b"weights".to_vec();
    finish(
        &s,
        parent,
        Outcome::Success,
        vec![("model.bin".into(), BlobData::Bytes(bytes.clone()))],
    )
    .await;
    assert_eq!(state(&s, child).await.0, FoldState::Idle);
    // The output read back: whole, by chunk (as agents pull inputs), and as a fold's output.
    let sha = sha256_hex(&bytes);
    assert_eq!(s.get_blob(sha.clone()).await.unwrap(), bytes);
    assert_eq!(
        s.read_blob_chunk(sha.clone(), 2, 3).await.unwrap(),
        (7, b"igh".to_vec())
    );
    assert_eq!(
        s.output(parent, "model.bin".into()).await.unwrap().size(),
        7
    );
    assert!(matches!(
        s.output(parent, "nope".into()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.log(parent).await.unwrap().is_empty());
    let kinds: Vec<String> = s
        .events(child)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.ends_with(&["waiting".into(), "ready".into()]),
        "{kinds:?}"
    );
    let f = s.fold(taker).await.unwrap();
    assert_eq!(f.state, FoldState::Idle);
    assert_eq!(f.spec.inputs.len(), 1);
    assert_eq!(
        (
            f.spec.inputs[0].name.as_str(),
            f.spec.inputs[0].sha256.clone()
        ),
        ("in.bin", sha256_hex(&bytes))
    );
    // An output the parent does not have: the child fails, saying so.
    let missing = submit(
        &s,
        "ann",
        &format!(r#"{{"command":["true"],"inputs_from":[{{"fold":{parent},"output":"nope"}}]}}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        state(&s, missing).await,
        (
            FoldState::Failed,
            format!("fold {parent} has no output \"nope\" to pass on")
        )
    );

    // A chain: b after-ok a, c after-any b. a fails: b fails (after-ok), c goes in line.
    let a = submit(&s, "ann", r#"{"command":["false"]}"#).await.unwrap();
    let b = after(&s, a, "ok").await;
    let c = after(&s, b, "any").await;
    finish(&s, a, error(), vec![]).await;
    assert_eq!(
        state(&s, b).await,
        (
            FoldState::Failed,
            format!("fold {a} it runs after (after-ok) is failed")
        )
    );
    assert_eq!(state(&s, c).await.0, FoldState::Idle);
    // Removing a parent fails what needs it done.
    let p = submit(&s, "ann", r#"{"command":["true"]}"#).await.unwrap();
    let q = after(&s, p, "ok").await;
    s.remove(p, "ann".into()).await.unwrap();
    assert_eq!(
        state(&s, q).await,
        (
            FoldState::Failed,
            format!("fold {p} it runs after (after-ok) is removed")
        )
    );
}

pub async fn arrays(s: Store) {
    let (array, ids) = s
        .submit_array(
            "ann".into(),
            false,
            spec(r#"{"command":["true"]}"#),
            None,
            NewArray {
                indices: vec![0, 1, 2, 3],
                cap: Some(2),
                stop_on_failure: false,
            },
        )
        .await
        .unwrap();
    let states = |s: Store, ids: Vec<FoldId>| async move {
        let mut out = Vec::new();
        for id in ids {
            out.push(s.fold(id).await.unwrap().state);
        }
        out
    };
    use FoldState::{Done, Idle, Removed, Waiting};
    assert_eq!(
        states(s.clone(), ids.clone()).await,
        [Idle, Idle, Waiting, Waiting]
    );
    assert_eq!(
        state(&s, ids[3]).await.1,
        format!("array {array} runs at most 2 folds at once")
    );
    let a = s.array(array).await.unwrap();
    assert_eq!((a.owner.as_str(), a.size, a.cap), ("ann", 4, Some(2)));
    assert_eq!(
        (a.counts.get("idle"), a.counts.get("waiting")),
        (Some(&2), Some(&2))
    );
    assert_eq!(s.array_fold(array, 2).await.unwrap(), ids[2]);
    assert!(matches!(
        s.array_fold(array, 9).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.array(array + 100).await,
        Err(StoreError::NotFound(_))
    ));
    let f = s.fold(ids[1]).await.unwrap();
    assert_eq!(
        f.spec.env.get("DATARUN_ARRAY_INDEX").map(String::as_str),
        Some("1")
    );
    assert_eq!(f.array.map(|p| (p.id, p.index)), Some((array, 1)));

    // One ends: the next by index takes its place; a removed one frees its place too.
    finish(&s, ids[0], Outcome::Success, vec![]).await;
    assert_eq!(
        states(s.clone(), ids.clone()).await,
        [Done, Idle, Idle, Waiting]
    );
    s.remove(ids[1], "ann".into()).await.unwrap();
    assert_eq!(
        states(s.clone(), ids.clone()).await,
        [Done, Removed, Idle, Idle]
    );

    // Stop on failure: a fold's own failure removes the siblings not started.
    let (stopping, ids) = s
        .submit_array(
            "ann".into(),
            false,
            spec(r#"{"command":["false"]}"#),
            None,
            NewArray {
                indices: vec![0, 1, 2],
                cap: Some(1),
                stop_on_failure: true,
            },
        )
        .await
        .unwrap();
    finish(&s, ids[0], Outcome::ExitCode { code: 3 }, vec![]).await;
    assert_eq!(
        states(s.clone(), ids.clone()).await,
        [FoldState::Failed, Removed, Removed]
    );
    let why = state(&s, ids[2]).await.1;
    assert!(
        why.starts_with(&format!(
            "stopped: fold {} of array {stopping} failed",
            ids[0]
        )),
        "{why}"
    );
    assert!(s.array(stopping).await.unwrap().stop_on_failure);
}

//! Bad submissions get a clear 4xx and store nothing; a submission no runner could ever run
//! is ERROR with its hold reason (never TODO forever) and reaches the feed, recorded in the
//! store without any read; the CLI.

mod common;

use common::ml::{b64, dataset, ids, submit};
use common::Master;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn folds_stored(m: &Master) -> usize {
    m.get("/folds")["folds"].as_array().unwrap().len()
}

#[test]
fn bad_submissions_are_refused_and_store_nothing() {
    // The default inventory: a process runner only, so the fold image can never run here.
    let mut m = Master::start(None);
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let other = dataset(&m, "iris2", &csv, "species", &["accuracy"], &[]);
    let (_, split) = m.request(
        "POST",
        &format!("/datasets/{other}/splits"),
        Some(json!({"held_out_test": 0.2})),
    );
    let other_split = split["split"]["id"].as_i64().unwrap();
    let code = b64(&std::fs::read("examples/iris/submission/classifier.py").unwrap());
    let ok =
        json!({"dataset_id": d, "name": "s", "files": {"classifier.py": code}, "cv": {"k": 5}});
    let with = |patch: Value| {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(json!({"dataset_id": 999})),
            404,
            "no dataset with id 999",
        ),
        (
            with(json!({"files": {"helper.py": code}})),
            400,
            "need [\"classifier.py\"]",
        ),
        (
            with(json!({"files": {"classifier.py": code, "../evil.py": code}})),
            400,
            "'..' component",
        ),
        (
            with(json!({"files": {"/etc/cron.d/x": code, "classifier.py": code}})),
            400,
            "is absolute",
        ),
        (
            with(json!({"files": {"classifier.py": "%%%"}})),
            400,
            "not valid base64",
        ),
        (
            with(json!({"cv": null, "folds": [{"train_is": [0, 150], "test_is": [1]}]})),
            400,
            "folds[0]: train_is has index 150, out of range: the training table has 150 rows",
        ),
        (
            with(json!({"cv": null, "folds": [{"train_is": [0, 1], "test_is": [1]}]})),
            400,
            "disjoint",
        ),
        (
            with(json!({"folds": [{"train_is": [0], "test_is": [1]}]})),
            400,
            "exactly one of folds",
        ),
        (with(json!({"cv": null})), 400, "exactly one of folds"),
        (with(json!({"cv": {"k": 1}})), 400, "cv.k must be between 2"),
        (
            with(json!({"split_id": other_split})),
            400,
            "belongs to dataset",
        ),
        (
            with(json!({"soft_time_limit": "10s", "hard_time_limit": "5s"})),
            400,
            "soft_time_limit",
        ),
        (
            with(json!({"name": "a/b"})),
            400,
            "not a valid submission name",
        ),
        (
            with(json!({"dataset_id": other})),
            400,
            "exactly one of classifier or regressor",
        ),
        (with(json!({"colour": "red"})), 400, "unknown field"),
        (
            with(json!({"resources": {"cpus": -1}})),
            400,
            "resources.cpus",
        ),
    ];
    for (body, want, message) in cases {
        let (status, v) = m.request("POST", "/submissions", Some(body.clone()));
        let text = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, want, "{body}: {v}");
        assert!(text.contains(message), "{text:?} lacks {message:?}");
    }
    assert_eq!(folds_stored(&m), 0, "nothing stored");
    assert_eq!(m.request("GET", "/submissions/1", None).0, 404);

    // A valid submission that no runner here can run: held unmatchable at once, so its
    // folds are ERROR with the reason, not TODO, and they reach the feed.
    let s = submit(&m, ok.clone());
    let v = m.get(&format!("/submissions/{}", s["id"]));
    for f in v["submission"]["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "ERROR", "{f}");
        assert!(
            f["reason"]
                .as_str()
                .unwrap()
                .starts_with("held (unmatchable)"),
            "{f}"
        );
    }
    let (_, new) = m.request("POST", "/results/new", Some(json!({"dataset_id": d})));
    assert_eq!(new["results"].as_array().unwrap().len(), 5);
    // Results and their delivery survive a kill -9 of the master: nothing expires.
    m.kill9();
    m.spawn();
    let (_, again) = m.request("POST", "/results/new", None);
    assert_eq!(again["results"], json!([]), "delivered stays delivered");
    let v = m.get(&format!("/submissions/{}", s["id"]));
    assert_eq!(v["submission"]["folds"][4]["state"], "ERROR");
    let (status, _) = m.request("POST", "/submissions", Some(ok.clone()));
    assert_eq!(status, 409, "the name is taken");
    assert_eq!(folds_stored(&m), 5);
    let sid = s["id"].as_i64().unwrap();
    let fid = ids(&s)[0];
    let (status, v) = m.request(
        "GET",
        &format!("/submission-folds/{fid}/predictions/test"),
        None,
    );
    assert_eq!(status, 404, "{v}");
    assert_eq!(
        m.request(
            "GET",
            &format!("/submission-folds/{fid}/predictions/x"),
            None
        )
        .0,
        400
    );
    for (body, message) in [
        (json!({"force": "everything"}), "not one of"),
        (json!({"files": {"classifier.py": code}}), "only with force"),
        (json!({"force": "files"}), "needs files"),
        (json!({"force": "files", "files": {"x.py": code}}), "lacks"),
        (json!({"folds": [999]}), "not a fold of submission"),
    ] {
        let (status, v) = m.request("POST", &format!("/submissions/{sid}/resubmit"), Some(body));
        assert_eq!(status, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{v}"
        );
    }
    assert_eq!(folds_stored(&m), 5, "refused resubmits store nothing");
    // Without force the ERROR folds rerun (and are held again: still nothing can run them).
    let (status, v) = m.request(
        "POST",
        &format!("/submissions/{sid}/resubmit"),
        Some(json!({"folds": [fid]})),
    );
    assert_eq!((status, v["rerun"].clone()), (200, json!([fid])), "{v}");
    assert_eq!(folds_stored(&m), 6);

    // The CLI.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classifier.py");
    std::fs::copy("examples/iris/submission/classifier.py", &file).unwrap();
    let id = m.cli_ok(&[
        "submission",
        "submit",
        "--dataset",
        &d.to_string(),
        "--name",
        "cli",
        "--file",
        file.to_str().unwrap(),
        "--cv",
        "3",
        "--stratify",
        "--priority",
        "H",
    ]);
    let shown = m.cli_ok(&["submission", "show", id.trim()]);
    assert!(
        shown.contains("ERROR") && shown.contains("held (unmatchable)"),
        "{shown}"
    );
    let new = m.cli_ok(&["results", "new"]);
    assert_eq!(
        new.lines().filter(|l| l.contains("ERROR")).count(),
        4,
        "{new}"
    );
    assert!(m.cli_ok(&["results", "new"]).contains("no new results"));
    let out = m.cli(&[
        "submission",
        "submit",
        "--dataset",
        &d.to_string(),
        "--name",
        "x",
        "--file",
        "/nonexistent.py",
    ]);
    assert!(!out.status.success());
    let fold: Value = m.fold(
        m.get(&format!("/submissions/{}", id.trim()))["submission"]["folds"][0]["fold_id"]
            .as_i64()
            .unwrap(),
    );
    assert_eq!(fold["fold"]["priority"], 10, "H is priority 10");
}

/// Results are settled when folds end, not when they are read: a submission held at submit
/// (nothing here runs the fold image) is ERROR in the store file itself, with no request to
/// any route that shows submissions or results.
#[test]
fn ended_submission_folds_are_recorded_without_any_read() {
    let m = Master::start(None);
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let code = b64(&std::fs::read("examples/iris/submission/classifier.py").unwrap());
    let s = submit(
        &m,
        json!({"dataset_id": d, "name": "unread", "files": {"classifier.py": code}, "cv": {"k": 3}}),
    );
    let id = s["id"].as_i64().unwrap();
    let db = rusqlite::Connection::open_with_flags(
        m.data_dir().join("datarun.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: Vec<(String, Option<String>, Option<i64>)> = db
            .prepare(
                "SELECT state, reason, result_seq FROM submission_folds
                 WHERE submission_id = ?1 ORDER BY fold_index",
            )
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if rows.len() == 3 && rows.iter().all(|(state, _, _)| state == "ERROR") {
            for (_, reason, seq) in &rows {
                let reason = reason.as_deref().unwrap_or_default();
                assert!(reason.starts_with("held (unmatchable)"), "{reason}");
                assert!(seq.is_some(), "an ended result has its place in the feed");
            }
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {rows:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

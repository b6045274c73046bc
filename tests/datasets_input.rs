//! Datasets: bad input gets a clear 4xx and stores nothing; the CLI end to end.

mod common;

use base64::Engine;
use common::Master;
use serde_json::{json, Value};

const IRIS: &str = "examples/iris/iris.csv";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn dataset(name: &str, target: &str, csv: &[u8]) -> Value {
    json!({"name": name, "target_column": target, "csv": b64(csv)})
}

#[test]
fn bad_input_is_refused_with_a_reason_and_stores_nothing() {
    let m = Master::start_with(None, &["--max-body", "64K"]);
    let iris = std::fs::read(IRIS).unwrap();
    let (status, v) = m.request("POST", "/datasets", Some(dataset("iris", "species", &iris)));
    assert_eq!(status, 201, "{v}");
    let id = v["dataset"]["id"].as_i64().unwrap();
    let before = m.get("/datasets");
    let blobs_before = blob_count(&m);

    let mut unknown_score = dataset("x", "species", &iris);
    unknown_score["score_types"] = json!(["accuracy", "auc"]);
    let mut numeric_score_on_labels = dataset("x", "species", &iris);
    numeric_score_on_labels["score_types"] = json!(["rmse"]);
    let mut both = dataset("x", "species", &iris);
    both["table_sha256"] = json!("00");
    let splits = format!("/datasets/{id}/splits");
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "POST", "/datasets", dataset("x", "label", &iris), 400,
            "target_column \"label\" is not a column of the CSV; its columns are: sepal_length, sepal_width, petal_length, petal_width, species",
        ),
        ("POST", "/datasets", dataset("x", "a", b"a,b\n1,2\n3\n"), 400, "csv: line 3: 1 fields, but the header has 2"),
        ("POST", "/datasets", dataset("x", "a", b""), 400, "csv: the CSV is empty"),
        ("POST", "/datasets", dataset("x", "a", b"a,a\n1,2\n"), 400, "appears twice"),
        ("POST", "/datasets", dataset("x", "a", b"a\n\xff\n"), 400, "not valid UTF-8"),
        ("POST", "/datasets", unknown_score, 400, "score_types: unknown score type \"auc\""),
        ("POST", "/datasets", numeric_score_on_labels, 400, "rmse scores numbers, but the target column \"species\" is categorical"),
        (
            "POST", "/datasets",
            json!({"name": "x", "target_column": "a", "csv": "not base64!!"}), 400, "csv: not valid base64",
        ),
        ("POST", "/datasets", both, 400, "exactly one of csv (base64), table_sha256 (an uploaded blob) or files"),
        (
            "POST", "/datasets",
            json!({"name": "x", "target_column": "a", "table_sha256": "ab".repeat(32)}), 400, "POST the CSV file to /api/v1/blobs first",
        ),
        ("POST", "/datasets", dataset("iris", "species", &iris), 409, "a dataset named \"iris\" exists already"),
        ("POST", "/datasets", dataset("bad name", "species", &iris), 400, "not a valid dataset name"),
        ("POST", "/datasets", json!({"name": "x", "target": "a"}), 400, "bad JSON"),
        (
            "POST", "/datasets",
            dataset("big", "a", format!("a\n{}", "1\n".repeat(40_000)).as_bytes()), 413, "larger than this server accepts",
        ),
        ("POST", &splits, json!({"held_out_test": 1.5}), 400, "held_out_test must be between 0 and 1"),
        ("POST", &splits, json!({"held_out_test": 0.999}), 400, "leaves no row to train on"),
        ("POST", &splits, json!({"held_out_test": 0.2, "seed": 1}), 400, "unknown field `seed`"),
        ("POST", "/datasets/999/splits", json!({"held_out_test": 0.2}), 404, "no dataset with id 999"),
        ("GET", "/datasets/999", Value::Null, 404, "no dataset with id 999"),
        ("GET", "/splits/999", Value::Null, 404, "no split with id 999"),
        ("DELETE", "/datasets/999", Value::Null, 404, "no dataset with id 999"),
        ("POST", "/scores", json!({"score_types": ["accuracy"], "y_true": [1, 0], "y_pred": [1]}), 400, "y_true has 2 rows but y_pred has 1"),
        ("POST", "/scores", json!({"score_types": ["f2"], "y_true": [1]}), 400, "unknown score type \"f2\""),
    ];
    for (method, path, body, want_status, want) in cases {
        let body = (!body.is_null()).then_some(body);
        let (status, v) = m.request(method, path, body);
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, want_status, "{method} {path}: {v}");
        assert!(
            message.contains(want),
            "{method} {path}: {message:?} lacks {want:?}"
        );
        assert_eq!(
            m.get("/datasets"),
            before,
            "{method} {path} changed the datasets"
        );
    }
    assert_eq!(
        blob_count(&m),
        blobs_before,
        "a refused request stored a blob"
    );

    // A class too small to stratify: 1 row of "b".
    let (_, v) = m.request(
        "POST",
        "/datasets",
        Some(dataset("tiny", "y", b"x,y\n1,a\n2,a\n3,a\n4,b\n")),
    );
    let tiny = v["dataset"]["id"].as_i64().unwrap();
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{tiny}/splits"),
        Some(json!({"held_out_test": 0.5, "stratify": true})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("class \"b\" has 1 row(s)"),
        "{v}"
    );
    assert_eq!(
        m.get(&format!("/datasets/{tiny}/splits"))["splits"],
        json!([])
    );

    // Delete takes the splits with it.
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{id}/splits"),
        Some(json!({"held_out_test": 0.2})),
    );
    assert_eq!(status, 201, "{v}");
    let split = v["split"]["id"].as_i64().unwrap();
    let (status, v) = m.request("DELETE", &format!("/datasets/{id}"), None);
    assert_eq!((status, &v["splits_deleted"]), (200, &json!(1)), "{v}");
    assert_eq!(m.request("GET", &format!("/splits/{split}"), None).0, 404);
    assert_eq!(
        m.request("GET", &format!("/datasets/{id}/table"), None).0,
        404
    );
}

/// Blobs in the store, counted through SQLite's own file (the master holds it open in WAL mode).
fn blob_count(m: &Master) -> i64 {
    let db = m.data_dir().join("datarun.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    conn.query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn the_cli_uploads_shows_splits_and_removes() {
    let m = Master::start(None);
    let id = m
        .cli_ok(&[
            "dataset",
            "upload",
            IRIS,
            "--name",
            "iris",
            "--target",
            "species",
            "--score",
            "accuracy,roc_auc",
            "--workflow",
            "classifier",
        ])
        .trim()
        .to_string();
    assert_eq!(id, "1");
    let list = m.cli_ok(&["dataset", "list"]);
    assert!(list.starts_with("ID  NAME  TARGET   ROWS"), "{list}");
    assert!(
        list.contains("iris  species   150") && list.contains("accuracy,roc_auc"),
        "{list}"
    );
    let listed: Value = serde_json::from_str(&m.cli_ok(&["dataset", "list", "--json"])).unwrap();
    assert_eq!(
        listed["datasets"][0]["workflow_elements"],
        json!(["classifier"])
    );

    let show = m.cli_ok(&["dataset", "show", &id]);
    assert!(
        show.contains("150 rows, target species, scores accuracy,roc_auc"),
        "{show}"
    );
    // pandas: sepal_length mean 5.8433, std 0.8281, min 4.3, max 7.9.
    let line = show
        .lines()
        .find(|l| l.starts_with("sepal_length"))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words[..10],
        [
            "sepal_length",
            "numeric",
            "150",
            "0",
            "0",
            "0",
            "5.8433",
            "0.8281",
            "4.3",
            "7.9"
        ],
        "{show}"
    );
    assert!(
        show.contains("setosa 50, versicolor 50, virginica 50"),
        "{show}"
    );

    let split = m.cli_ok(&["dataset", "split", &id, "--ratio", "0.2", "--stratify"]);
    assert!(split.contains("120 train rows, 30 test rows"), "{split}");
    assert!(
        split.contains("SIMILARITY") && split.contains("1 (1-tvd)"),
        "{split}"
    );
    let json: Value = serde_json::from_str(&m.cli_ok(&[
        "dataset",
        "split",
        &id,
        "--ratio",
        "0.2",
        "--stratify",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["test"].as_array().unwrap().len(), 30);
    assert!(m.cli_ok(&["dataset", "show", &id]).contains(
        "split 2: held_out_test 0.2 random_state 42 stratified: 120 train, 30 test rows"
    ));

    let bad = m.cli(&["dataset", "split", &id, "--ratio", "1.5"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("held_out_test must be between 0 and 1"));

    assert!(m
        .cli_ok(&["dataset", "rm", &id])
        .contains("deleted dataset 1 and 2 split(s)"));
    assert_eq!(
        m.cli_ok(&["dataset", "list", "--json"]).trim(),
        "{\n  \"datasets\": []\n}"
    );
}

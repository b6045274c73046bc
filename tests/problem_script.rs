//! Problem datasets: several files with a problem script (the original datarun's
//! `specific.py`), through the real master, agent, Docker and fold image. The custom split is
//! the script's `prepare_data` run as a queue fold (`datarun-prepare`); submissions go
//! through the script's `train_submission` / `test_submission` (the image's problem mode)
//! with workflow elements the image does not know. The proof dataset is not a table at all:
//! `examples/text_problem` is JSON lines of texts in three topics.

mod common;

use common::ml::{b64, docker_inventory, ids, submit, wait_submission};
use common::Master;
use datarun::submission::npy;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(300);
const KIT: &str = "examples/text_problem";

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{KIT}/{path}")).unwrap_or_else(|e| panic!("{KIT}/{path}: {e}"))
}

fn text_dataset(m: &Master, name: &str, script: &[u8]) -> i64 {
    let body = json!({
        "name": name,
        "files": {"docs.jsonl": b64(&read("docs.jsonl")), "specific.py": b64(script)},
        "workflow_elements": ["vectorizer", "classifier"],
        "score_types": ["accuracy", "log_loss"],
    });
    let (status, v) = m.request("POST", "/datasets", Some(body));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["dataset"]["problem"], "specific.py", "{v}");
    v["dataset"]["id"].as_i64().unwrap()
}

fn custom_split(m: &Master, d: i64) -> i64 {
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{d}/splits"),
        Some(json!({"custom": true})),
    );
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["split"]["kind"], "custom", "{v}");
    assert_eq!(v["split"]["state"], "running", "{v}");
    v["split"]["id"].as_i64().unwrap()
}

fn wait_split(m: &Master, id: i64) -> Value {
    let deadline = Instant::now() + LONG;
    loop {
        let v = m.get(&format!("/splits/{id}"));
        if v["split"]["state"] != "running" {
            return v["split"].clone();
        }
        assert!(Instant::now() < deadline, "split {id} still running: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn submission(d: i64, split: i64, name: &str, dir: &str) -> Value {
    let files: BTreeMap<String, String> = ["vectorizer.py", "classifier.py"]
        .iter()
        .map(|f| (f.to_string(), b64(&read(&format!("submissions/{dir}/{f}")))))
        .collect();
    json!({"dataset_id": d, "split_id": split, "name": name, "files": files,
           "cv": {"k": 5, "seed": 42, "stratify": true},
           "resources": {"cpus": 1, "memory": "1G"}, "hard_time_limit": "5m"})
}

/// The topic of every JSON line of `data`.
fn topics(data: &[u8]) -> Vec<String> {
    String::from_utf8(data.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["topic"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_text_dataset_through_its_problem_script_end_to_end() {
    let m = Master::start(Some(&docker_inventory(3)));
    let d = text_dataset(&m, "topics", &read("specific.py"));

    // No split yet: a problem dataset's submissions need its custom split.
    let (status, v) = m.request(
        "POST",
        "/submissions",
        Some(json!({"dataset_id": d, "name": "early", "files": {"vectorizer.py": "", "classifier.py": ""}, "cv": {"k": 2}})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("custom split"),
        "{v}"
    );

    let split_id = custom_split(&m, d);
    // While prepare_data runs, a submission is refused with what it waits for.
    let (status, v) = m.request(
        "POST",
        "/submissions",
        Some(submission(d, split_id, "early", "good")),
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{v}"
    );

    let split = wait_split(&m, split_id);
    assert_eq!(split["state"], "done", "{split}");
    let files: Vec<&str> = split["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        files,
        ["test.jsonl", "train.jsonl"],
        "only what prepare_data wrote: {split}"
    );
    // The split's files, fetched back, are the script's 80/20 of every document.
    let get = |name: &str| {
        let (status, _, data) =
            m.get_bytes(&format!("/datasets/{d}/files/{name}?split={split_id}"));
        assert_eq!(status, 200, "{name}");
        data
    };
    let (train_topics, test_topics) = (topics(&get("train.jsonl")), topics(&get("test.jsonl")));
    let all = topics(&read("docs.jsonl"));
    assert_eq!(train_topics.len() + test_topics.len(), all.len());
    assert_eq!(split["train_rows"], train_topics.len());
    assert_eq!(split["test_rows"], test_topics.len());
    assert_eq!(test_topics.len(), all.len() / 5);

    let good = submit(&m, submission(d, split_id, "tfidf", "good"));
    let broken = submit(&m, submission(d, split_id, "broken", "broken"));
    let good = wait_submission(&m, good["id"].as_i64().unwrap(), LONG);
    let broken = wait_submission(&m, broken["id"].as_i64().unwrap(), LONG);

    for f in good["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
        let acc = f["scores"]["test"]["accuracy"].as_f64().unwrap();
        let valid = f["scores"]["valid"]["accuracy"].as_f64().unwrap();
        eprintln!(
            "text fold {}: valid accuracy {valid:.4}, test accuracy {acc:.4}, log loss {:.4}, timings {}",
            f["fold_index"], f["scores"]["test"]["log_loss"], f["timings"]
        );
        assert!(acc > 0.9, "fold {}: test accuracy {acc}", f["fold_index"]);
        for phase in ["train", "valid", "test"] {
            assert!(
                f["timings"][phase]["peak_memory"].as_u64().unwrap_or(0) > 1 << 20,
                "per-phase peak memory of {phase}: {f}"
            );
        }
        // The master's accuracy, again from the predictions and the split's test file.
        let (status, headers, bytes) =
            m.get_bytes(&format!("/submission-folds/{}/predictions/test", f["id"]));
        assert_eq!(status, 200);
        assert_eq!(headers["x-shape"], format!("{},3", test_topics.len()));
        let pred = npy::parse(&bytes).unwrap();
        let labels: Vec<String> = serde_json::from_str(&m.cli_ok(&[
            "fold",
            "output",
            &f["fold_id"].to_string(),
            "labels.json",
        ]))
        .unwrap();
        let hits = pred
            .rows()
            .iter()
            .zip(&test_topics)
            .filter(|(row, truth)| {
                let best = (0..3).max_by(|a, b| row[*a].total_cmp(&row[*b])).unwrap();
                &labels[best] == *truth
            })
            .count();
        let mine = hits as f64 / test_topics.len() as f64;
        assert!(
            (mine - acc).abs() < 1e-12,
            "test computes {mine}, master {acc}"
        );
    }
    for f in broken["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "ERROR", "{f}");
        let tb = f["traceback"].as_str().unwrap_or_default();
        assert!(
            tb.contains("Traceback") && tb.contains("broken on purpose"),
            "{f}"
        );
    }
    // Failures are in the feed, each result once.
    let (_, v) = m.request("POST", "/results/new", None);
    let mut fed: Vec<i64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    fed.sort();
    let mut want = ids(&good);
    want.extend(ids(&broken));
    want.sort();
    assert_eq!(fed, want);
    let (_, v) = m.request("POST", "/results/new", None);
    assert_eq!(v["results"], json!([]));

    // The leaderboard ranks the good one; the listing shows both.
    let board = m.get(&format!("/datasets/{d}/leaderboard"));
    let row = &board["rows"][0];
    assert_eq!(row["name"], "tfidf", "{board}");
    let list = m.get(&format!("/submissions?dataset_id={d}"));
    let states: Vec<&Value> = list["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["states"])
        .collect();
    assert_eq!(
        states,
        [&json!({"TESTED": 5}), &json!({"ERROR": 5})],
        "{list}"
    );
    // A dataset whose split is in use stays.
    let (status, v) = m.request("DELETE", &format!("/datasets/{d}"), None);
    assert_eq!(status, 409, "{v}");
}

#[test]
fn a_failing_prepare_data_fails_the_split_with_its_traceback() {
    let m = Master::start(Some(&docker_inventory(1)));
    let script = String::from_utf8(read("specific.py")).unwrap().replace(
        "def prepare_data(path):",
        "def prepare_data(path):\n    raise ValueError('no documents for this split')\n\n\ndef _unused(path):",
    );
    assert!(
        script.contains("no documents for this split"),
        "specific.py defines prepare_data(path)"
    );
    let d = text_dataset(&m, "bad-prepare", script.as_bytes());
    let split_id = custom_split(&m, d);
    let split = wait_split(&m, split_id);
    assert_eq!(split["state"], "failed", "{split}");
    let reason = split["reason"].as_str().unwrap();
    assert!(
        reason.contains("prepare_data") && reason.contains("no documents for this split"),
        "{reason}"
    );
    let (status, v) = m.request(
        "POST",
        "/submissions",
        Some(submission(d, split_id, "late", "good")),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("failed"),
        "{v}"
    );
    // Nothing runs any more: the failed split can go with its dataset.
    let (status, v) = m.request("DELETE", &format!("/datasets/{d}"), None);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn bad_problem_datasets_are_refused_and_store_nothing() {
    let m = Master::start(None);
    let post = |body: Value| m.request("POST", "/datasets", Some(body));
    let cases = [
        (
            json!({"name": "a", "files": {"a.csv": b64(b"x\n1\n"), "b.csv": b64(b"x\n2\n")}}),
            "need a problem script",
        ),
        (
            json!({"name": "b", "files": {"p.py": b64(b""), "q.py": b64(b""), "d.txt": b64(b"")}}),
            "name the problem script",
        ),
        (
            json!({"name": "c", "files": {"../p.py": b64(b""), "d.txt": b64(b"")}}),
            "files:",
        ),
        (
            json!({"name": "d", "files": {"/etc/p.py": b64(b"")}}),
            "files:",
        ),
        (
            json!({"name": "e", "files": {"p.py": "%%%"}}),
            "not valid base64",
        ),
        (
            json!({"name": "f", "files": {"p.py": b64(b"")}, "problem": "q.py"}),
            "not among",
        ),
        (
            json!({"name": "g", "files": {"p.py": b64(b"")}, "score_types": ["nope"]}),
            "score_types",
        ),
        (
            json!({"name": "h", "files": {"p.py": b64(b"")}, "workflow_elements": ["../x"]}),
            "workflow_elements",
        ),
        (
            json!({"name": "i", "csv": b64(b"x,y\n1,2\n"), "files": {"p.py": b64(b"")}}),
            "exactly one of",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = post(body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{body}: {v}"
        );
    }
    assert_eq!(m.get("/datasets")["datasets"], json!([]));

    // Ratio splits of a problem dataset and custom splits of a table are refused.
    let (status, v) = post(json!({"name": "ok", "files": {"p.py": b64(b""), "d.txt": b64(b"1")}}));
    assert_eq!(status, 201, "{v}");
    let p = v["dataset"]["id"].as_i64().unwrap();
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{p}/splits"),
        Some(json!({"held_out_test": 0.2})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("custom"),
        "{v}"
    );
    let (status, v) =
        post(json!({"name": "t", "target_column": "y", "csv": b64(b"x,y\n1,2\n3,4\n")}));
    assert_eq!(status, 201, "{v}");
    let t = v["dataset"]["id"].as_i64().unwrap();
    let (status, v) = m.request(
        "POST",
        &format!("/datasets/{t}/splits"),
        Some(json!({"custom": true})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without a problem script"),
        "{v}"
    );
    assert_eq!(m.get(&format!("/datasets/{t}/splits"))["splits"], json!([]));
    // A problem dataset has files, not a table.
    let (status, v) = m.request("GET", &format!("/datasets/{p}/table"), None);
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("files/NAME"),
        "{v}"
    );
    let (status, _, data) = m.get_bytes(&format!("/datasets/{p}/files/d.txt"));
    assert_eq!((status, data), (200, b"1".to_vec()));
}

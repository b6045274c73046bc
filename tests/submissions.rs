//! Submissions on CV folds through the real master, agent, Docker and fold image: iris end to
//! end (scores by the master, the broken submission's traceback, the "new results" feed under
//! concurrent callers, resubmit), a generated regression scored with RMSE, a hard time limit,
//! and priority. Bad input is in `tests/submissions_input.rs`.

mod common;

use common::ml::{b64, dataset, docker_inventory, ids, submit, wait_submission};
use common::Master;
use datarun::submission::npy;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(300);

fn iris_file(dir: &str) -> String {
    b64(&std::fs::read(format!("examples/iris/{dir}/classifier.py")).unwrap())
}

/// A stratified 80/20 split of dataset `d` (seed 42).
fn split_20(m: &Master, d: i64) -> Value {
    let (status, split) = m.request(
        "POST",
        &format!("/datasets/{d}/splits"),
        Some(json!({"held_out_test": 0.2, "random_state": 42, "stratify": true})),
    );
    assert_eq!(status, 201, "{split}");
    split
}

fn take_new(m: &Master) -> Vec<i64> {
    let (status, v) = m.request("POST", "/results/new", None);
    assert_eq!(status, 200, "{v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn iris_good_and_broken_on_5_folds_with_the_feed_once() {
    let m = Master::start(Some(&docker_inventory(4)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(
        &m,
        "iris",
        &csv,
        "species",
        &["accuracy", "roc_auc", "log_loss", "f1"],
        &["classifier"],
    );
    let split = split_20(&m, d);
    let split_id = split["split"]["id"].as_i64().unwrap();
    let request = |name: &str, dir: &str| {
        json!({"dataset_id": d, "split_id": split_id, "name": name,
               "files": {"classifier.py": iris_file(dir)},
               "cv": {"k": 5, "seed": 42, "stratify": true},
               "resources": {"cpus": 1, "memory": "512M"}, "hard_time_limit": "5m"})
    };
    let good = submit(&m, request("logreg", "submission"));
    let broken = submit(&m, request("broken", "submission_broken"));
    assert_eq!(
        good["folds"][0]["train_rows"], 96,
        "4/5 of the 120 training rows"
    );
    let good = wait_submission(&m, good["id"].as_i64().unwrap(), LONG);
    let broken = wait_submission(&m, broken["id"].as_i64().unwrap(), LONG);

    // The test table: iris rows of the split's test side.
    let species: Vec<String> = String::from_utf8(csv.clone())
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect();
    let test_rows: Vec<usize> = split["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect();
    for f in good["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
        let acc = f["scores"]["test"]["accuracy"].as_f64().unwrap();
        let valid = f["scores"]["valid"]["accuracy"].as_f64().unwrap();
        eprintln!(
            "iris fold {}: valid accuracy {valid:.4}, test accuracy {acc:.4}, roc_auc {:.4}, timings {}, metrics {}",
            f["fold_index"], f["scores"]["test"]["roc_auc"], f["timings"], f["metrics"]
        );
        assert!(acc > 0.9, "fold {}: test accuracy {acc}", f["fold_index"]);
        assert!(
            f["timings"]["test"]["cpu"].as_f64().is_some(),
            "per-phase CPU: {f}"
        );
        assert!(f["metrics"]["peak_memory"].as_u64().unwrap() > 0, "{f}");
        // The master's accuracy, again from the predictions by this test's own arithmetic.
        let (status, headers, bytes) =
            m.get_bytes(&format!("/submission-folds/{}/predictions/test", f["id"]));
        assert_eq!(status, 200);
        assert_eq!(headers["x-shape"], "30,3");
        assert_eq!(headers["x-dtype"], "<f8");
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
            .zip(&test_rows)
            .filter(|(row, &r)| {
                let best = (0..3).max_by(|a, b| row[*a].total_cmp(&row[*b])).unwrap();
                labels[best] == species[r]
            })
            .count();
        assert_eq!(hits as f64 / 30.0, acc, "the master's test accuracy");
        let (_, h, _) = m.get_bytes(&format!("/submission-folds/{}/predictions/train", f["id"]));
        assert_eq!(
            h["x-shape"], "120,3",
            "predictions cover the full training table"
        );
    }
    for f in broken["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "ERROR", "{f}");
        assert_eq!(
            f["reason"], "the submission failed: ValueError: this submission is broken on purpose",
            "{f}"
        );
    }
    let detail = m.get(&format!("/submission-folds/{}", broken["folds"][0]["id"]));
    let tb = detail["submission_fold"]["traceback"].as_str().unwrap();
    assert!(tb.starts_with("Traceback (most recent call last):"), "{tb}");
    assert!(
        tb.contains("classifier.py") && tb.ends_with("this submission is broken on purpose"),
        "{tb}"
    );
    assert!(detail["log"].as_str().unwrap().contains(tb));

    // The feed: 4 concurrent callers get the 10 results exactly once between them.
    let all: Vec<i64> = [ids(&good), ids(&broken)].concat();
    let got: Vec<i64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4).map(|_| sc.spawn(|| take_new(&m))).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let unique: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(got.len(), 10, "each result once: {got:?}");
    assert_eq!(
        unique,
        all.iter().copied().collect(),
        "every result, errors included"
    );
    assert!(take_new(&m).is_empty(), "nothing new later");
    let (status, listed) = m.request("POST", "/results/list", Some(json!({"ids": all})));
    assert_eq!(status, 200);
    assert_eq!(listed["results"].as_array().unwrap().len(), 10);
    assert!(
        take_new(&m).is_empty(),
        "fetch by ids does not change delivery"
    );

    // The leaderboard: mean and std of the good one's 5 folds; the broken one has none.
    let lb = m.get(&format!("/datasets/{d}/leaderboard"));
    eprintln!("leaderboard: {}", lb["rows"]);
    let top = &lb["rows"][0];
    assert_eq!(top["name"], "logreg");
    assert_eq!(top["folds"], 5);
    let mean = top["scores"]["test"]["accuracy"]["mean"].as_f64().unwrap();
    assert!(
        mean > 0.9 && top["scores"]["test"]["accuracy"]["std"].is_number(),
        "{top}"
    );
    assert_eq!(lb["rows"][1]["folds"], 0);
    let table = m.cli_ok(&["leaderboard", &d.to_string()]);
    assert!(
        table.contains("logreg") && table.contains("ACCURACY"),
        "{table}"
    );

    // Resubmit: without force only ERROR folds rerun; with force "files" the broken one gets
    // the good code, reruns all 5 (history kept), ends TESTED and is new in the feed again.
    let gid = good["id"].as_i64().unwrap();
    let (status, v) = m.request("POST", &format!("/submissions/{gid}/resubmit"), None);
    assert_eq!((status, v["rerun"].clone()), (200, json!([])), "{v}");
    // Through the CLI: `--failed` (the default) reruns nothing of a submission that failed
    // nowhere.
    let out = m.cli_ok(&["submission", "resubmit", &gid.to_string(), "--failed"]);
    assert_eq!(out.trim(), format!("submission {gid}: nothing to rerun"));
    let bid = broken["id"].as_i64().unwrap();
    let body = json!({"force": "files", "files": {"classifier.py": iris_file("submission")}});
    let (status, v) = m.request("POST", &format!("/submissions/{bid}/resubmit"), Some(body));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rerun"].as_array().unwrap().len(), 5);
    let fixed = wait_submission(&m, bid, LONG);
    for f in fixed["folds"].as_array().unwrap() {
        assert_eq!(
            (f["state"].as_str(), f["runs"].as_i64()),
            (Some("TESTED"), Some(2)),
            "{f}"
        );
    }
    let runs = m.get(&format!("/submission-folds/{}", fixed["folds"][0]["id"]))["runs"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    let again: BTreeSet<i64> = take_new(&m).into_iter().collect();
    assert_eq!(again, ids(&fixed).into_iter().collect());
    let (status, _) = m.request("DELETE", &format!("/datasets/{d}"), None);
    assert_eq!(status, 409, "a dataset with submissions stays");
}

/// y = 3 x1 − 2 x2 + noise, from a fixed LCG.
fn regression_csv(rows: usize) -> String {
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("x1,x2,y\n");
    for _ in 0..rows {
        let (x1, x2, e) = (next() * 10.0, next() * 10.0, next() - 0.5);
        out.push_str(&format!("{x1:.6},{x2:.6},{:.6}\n", 3.0 * x1 - 2.0 * x2 + e));
    }
    out
}

const REGRESSOR: &str = r#"from sklearn.linear_model import LinearRegression


class Regressor:
    def __init__(self):
        self.model = LinearRegression()

    def fit(self, X, y):
        self.model.fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict(X)
"#;

const SLEEPER: &str = r#"import time


class Regressor:
    def fit(self, X, y):
        time.sleep(120)

    def predict(self, X):
        return X[:, 0]
"#;

#[test]
fn regression_scored_with_rmse_and_a_hard_time_limit_ends_in_error() {
    let m = Master::start(Some(&docker_inventory(3)));
    let csv = regression_csv(200);
    let d = dataset(
        &m,
        "linear",
        csv.as_bytes(),
        "y",
        &["rmse", "mae", "r2"],
        &["regressor"],
    );
    let (_, split) = m.request(
        "POST",
        &format!("/datasets/{d}/splits"),
        Some(json!({"held_out_test": 0.2})),
    );
    let split_id = split["split"]["id"].as_i64().unwrap();
    let base = |name: &str, code: &str| {
        json!({"dataset_id": d, "split_id": split_id, "name": name, "files": {"regressor.py": b64(code.as_bytes())},
               "resources": {"cpus": 1, "memory": "512M"}})
    };
    let mut req = base("linreg", REGRESSOR);
    req["cv"] = json!({"k": 3, "seed": 1});
    let lin = submit(&m, req);
    let mut req = base("sleeper", SLEEPER);
    req["folds"] = json!([{"train_is": (0..100).collect::<Vec<_>>(), "test_is": (100..160).collect::<Vec<_>>()}]);
    req["hard_time_limit"] = json!("3s");
    let sleeper = submit(&m, req);
    // Without a split: the whole table trains, no test phase → VALIDATED.
    let whole = submit(
        &m,
        json!({"dataset_id": d, "name": "whole", "files": {"regressor.py": b64(REGRESSOR.as_bytes())},
        "folds": [{"train_is": (0..150).collect::<Vec<_>>(), "test_is": (150..200).collect::<Vec<_>>(), "client_id": "sf-77"}]}),
    );

    let lin = wait_submission(&m, lin["id"].as_i64().unwrap(), LONG);
    let truth: Vec<f64> = split["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let line = csv.lines().nth(1 + i.as_u64().unwrap() as usize).unwrap();
            line.rsplit(',').next().unwrap().parse().unwrap()
        })
        .collect();
    for f in lin["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
        let rmse = f["scores"]["test"]["rmse"].as_f64().unwrap();
        let (_, _, bytes) = m.get_bytes(&format!("/submission-folds/{}/predictions/test", f["id"]));
        let pred = npy::parse(&bytes).unwrap();
        assert_eq!(pred.shape, [40]);
        let mine = (pred
            .values
            .iter()
            .zip(&truth)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / 40.0)
            .sqrt();
        eprintln!("regression fold {}: test rmse {rmse:.6} (by the test: {mine:.6}), valid rmse {}, r2 {}",
                  f["fold_index"], f["scores"]["valid"]["rmse"], f["scores"]["test"]["r2"]);
        assert!((rmse - mine).abs() < 1e-9, "{rmse} vs {mine}");
        assert!(rmse < 0.5, "noise is uniform in ±0.5: rmse {rmse}");
        // The fold image's own RMSE (numpy) agrees too.
        let own: Value = serde_json::from_str(&m.cli_ok(&[
            "fold",
            "output",
            &f["fold_id"].to_string(),
            "scores.json",
        ]))
        .unwrap();
        assert!(
            (own["test"]["rmse"].as_f64().unwrap() - rmse).abs() < 1e-9,
            "{own}"
        );
    }
    let sleeper = wait_submission(&m, sleeper["id"].as_i64().unwrap(), LONG);
    let f = &sleeper["folds"][0];
    assert_eq!(f["state"], "ERROR", "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("timed out (hard limit"),
        "{f}"
    );
    let whole = wait_submission(&m, whole["id"].as_i64().unwrap(), LONG);
    let f = &whole["folds"][0];
    assert_eq!(
        (f["state"].as_str(), f["client_id"].as_str()),
        (Some("VALIDATED"), Some("sf-77")),
        "{f}"
    );
    assert!(f["scores"]["valid"]["rmse"].as_f64().unwrap() < 0.5, "{f}");
    assert!(
        f["scores"].get("test").is_none(),
        "no test table, no test score: {f}"
    );
}

#[test]
fn a_higher_priority_submission_starts_before_an_earlier_lower_one() {
    let m = Master::start(Some(&docker_inventory(1)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let slow = r#"import time
from sklearn.linear_model import LogisticRegression


class Classifier:
    def __init__(self):
        self.m = LogisticRegression(max_iter=1000)

    def fit(self, X, y):
        time.sleep(3)
        self.m.fit(X, y)

    def predict_proba(self, X):
        return self.m.predict_proba(X)
"#;
    let req = |name: &str, code: &str, k: usize, priority: i64| {
        json!({"dataset_id": d, "name": name, "files": {"classifier.py": b64(code.as_bytes())},
               "cv": {"k": k}, "priority": priority, "resources": {"cpus": 1, "memory": "512M"}})
    };
    let blocker = submit(&m, req("blocker", slow, 2, 0));
    let first = blocker["folds"][0]["fold_id"].as_i64().unwrap();
    m.wait_state(first, "running", LONG);
    let good = String::from_utf8(std::fs::read("examples/iris/submission/classifier.py").unwrap())
        .unwrap();
    let low = submit(&m, req("low", &good, 2, -5));
    let high = submit(&m, req("high", &good, 2, 10));
    let started = |s: &Value| -> Vec<i64> {
        let s = wait_submission(&m, s["id"].as_i64().unwrap(), LONG);
        s["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                m.fold(f["fold_id"].as_i64().unwrap())["fold"]["started_at"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    let (low, high) = (started(&low), started(&high));
    eprintln!("started: high {high:?}, low {low:?}");
    assert!(
        high.iter().max() < low.iter().min(),
        "high {high:?} before low {low:?}"
    );
}

#[test]
fn a_calibrator_is_applied_after_the_classifier() {
    let m = Master::start(Some(&docker_inventory(2)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let elements = ["classifier", "calibrator"];
    let d = dataset(&m, "iris-cal", &csv, "species", &["accuracy"], &elements);
    let split = split_20(&m, d);
    let split_id = split["split"]["id"].as_i64().unwrap();
    // Flips the probability columns (setosa <-> virginica): a good classifier scores badly.
    let calibrator = "import numpy as np\n\nclass Calibrator:\n    def fit(self, y_proba, y):\n        assert np.shape(y_proba)[1] == 3\n\n    def predict_proba(self, y_proba):\n        return np.asarray(y_proba)[:, ::-1]\n";
    let body = |files: Value| {
        json!({"dataset_id": d, "split_id": split_id, "name": "cal", "files": files,
               "cv": {"k": 2, "seed": 1},
               "resources": {"cpus": 1, "memory": "512M"}})
    };
    let (status, v) = m.request(
        "POST",
        "/submissions",
        Some(body(json!({"classifier.py": iris_file("submission")}))),
    );
    assert_eq!(status, 400, "calibrator.py is required: {v}");
    let s = submit(
        &m,
        body(json!({"classifier.py": iris_file("submission"),
                    "calibrator.py": b64(calibrator.as_bytes())})),
    );
    let s = wait_submission(&m, s["id"].as_i64().unwrap(), LONG);
    for f in s["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
        let acc = f["scores"]["valid"]["accuracy"].as_f64().unwrap();
        assert!(acc < 0.5, "the flipped columns must show: {f}");
    }
}

#[test]
fn folds_added_to_a_submission_run_and_bad_ones_store_nothing() {
    let m = Master::start(Some(&docker_inventory(2)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(
        &m,
        "iris-add",
        &csv,
        "species",
        &["accuracy"],
        &["classifier"],
    );
    let split_id = split_20(&m, d)["split"]["id"].as_i64().unwrap();
    let s = submit(
        &m,
        json!({"dataset_id": d, "split_id": split_id, "name": "add",
               "files": {"classifier.py": iris_file("submission")}, "cv": {"k": 2, "seed": 3},
               "resources": {"cpus": 1, "memory": "512M"}}),
    );
    let id = s["id"].as_i64().unwrap();
    let path = format!("/submissions/{id}/folds");
    let every_4th = |k: usize| -> (Vec<usize>, Vec<usize>) { (0..120).partition(|i| i % 4 != k) };
    let (train, test) = every_4th(0);
    let (status, v) = m.request(
        "POST",
        &path,
        Some(json!({"folds": [{"train_is": train, "test_is": test, "client_id": "extra"}]})),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["added"].as_array().unwrap().len(), 1, "{v}");
    let (train, test) = every_4th(1);
    for bad in [
        json!({"folds": [{"train_is": [0, 120], "test_is": [1]}]}),
        json!({"folds": [{"train_is": train, "test_is": test}, {"train_is": [2, 3], "test_is": [3]}]}),
        json!({"folds": []}),
    ] {
        let (status, v) = m.request("POST", &path, Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {v}");
    }
    let (status, v) = m.request(
        "POST",
        "/submissions/9999/folds",
        Some(json!({"folds": [{"train_is": [0], "test_is": [1]}]})),
    );
    assert_eq!(status, 404, "{v}");
    let s = wait_submission(&m, id, LONG);
    let folds = s["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3, "the bad posts stored nothing: {s}");
    for f in folds {
        assert_eq!(f["state"], "TESTED", "{f}");
    }
    let extra = &folds[2];
    assert_eq!(extra["client_id"], "extra", "{extra}");
    assert_eq!(
        (extra["train_rows"].as_u64(), extra["fold_index"].as_u64()),
        (Some(90), Some(2))
    );
    assert!(
        extra["scores"]["valid"]["accuracy"].as_f64().unwrap() > 0.8,
        "{extra}"
    );
}

//! A running submission fold shows how far it got before it ends: the fold image writes its
//! last phase to `$DATARUN_OUTPUT/status`, the agent sends it with the fold's progress, and the
//! API shows `live`: TRAINED, then VALIDATED, while the fold still runs, and `state` stays TODO
//! until it ends (VALIDATED is also a final state, without a test table). The `/runapp/` layer
//! shows the live phase as the fold's state, as the original did.

mod common;

use common::ml::{b64, dataset, docker_inventory, submit};
use common::Master;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Trains at once, then takes 3 s for each prediction (the valid and the test phase).
const SLOW: &str = r#"
import time
from sklearn.linear_model import LogisticRegression


class Classifier:
    def __init__(self):
        self.model = LogisticRegression(max_iter=1000)

    def fit(self, X, y):
        self.model.fit(X, y)

    def predict_proba(self, X):
        time.sleep(3)
        return self.model.predict_proba(X)
"#;

#[test]
fn a_running_fold_shows_trained_then_validated_live_before_it_ends() {
    let m = Master::start(Some(&docker_inventory(1)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let (status, split) = m.request(
        "POST",
        &format!("/datasets/{d}/splits"),
        Some(json!({"held_out_test": 0.2, "random_state": 42})),
    );
    assert_eq!(status, 201, "{split}");
    let sub = submit(
        &m,
        json!({"dataset_id": d, "split_id": split["split"]["id"], "name": "slow", "files": {"classifier.py": b64(SLOW.as_bytes())},
               "cv": {"k": 2, "seed": 1}, "resources": {"cpus": 1, "memory": "512M"}}),
    );
    let id = sub["id"].as_i64().unwrap();
    let first = sub["folds"][0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let mut status_seen = BTreeSet::new();
    loop {
        let v = m.get(&format!("/submissions/{id}"));
        let f = &v["submission"]["folds"][0];
        let state = match f["live"].as_str() {
            Some(live) => {
                assert_eq!(
                    f["state"], "TODO",
                    "a live phase only on a running fold: {f}"
                );
                live.to_string()
            }
            None => f["state"].as_str().unwrap().to_string(),
        };
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        // The queue fold's progress carries the same status.
        let fold = m.get(&format!("/folds/{}", f["fold_id"]));
        if let Some(s) = fold["progress"]["status"].as_str() {
            status_seen.insert(s.to_string());
        }
        if !f["ended_at"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "fold {first} never ended: {v}");
        std::thread::sleep(Duration::from_millis(150));
    }
    eprintln!("states seen: {seen:?}; statuses seen: {status_seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("TESTED"), "{seen:?}");
    assert!(
        seen.iter().any(|s| s == "TRAINED"),
        "TRAINED was never shown while the fold ran: {seen:?}"
    );
    assert!(status_seen.contains("trained"), "{status_seen:?}");
    // The order is the run's: never back to an earlier phase.
    let order = ["TODO", "TRAINED", "VALIDATED", "TESTED"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // Live phases are not results: the feed holds only the ended folds.
    let (_, v) = m.request("POST", "/results/new", None);
    for r in v["results"].as_array().unwrap() {
        assert!(
            ["TESTED", "ERROR", "VALIDATED"].contains(&r["state"].as_str().unwrap()),
            "{r}"
        );
    }
}

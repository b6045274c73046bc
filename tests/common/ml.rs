//! ML helpers: a Docker runner for the fold image (built if missing; fails loudly without
//! Docker), datasets and submissions over HTTP.

use super::Master;
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "datarun/fold-python:0.1";

/// An inventory with one local Docker runner allowed to run the fold image, which is built
/// first if needed (`images/build-fold-python.sh` is idempotent).
pub fn docker_inventory(slots: u32) -> String {
    docker_runner("ml", slots, "8G")
}

/// One local Docker runner `name` allowed to run the fold image (built first if needed).
pub fn docker_runner(name: &str, slots: u32, memory: &str) -> String {
    ensure_fold_image();
    format!(
        "[[runner]]\nname = \"{name}\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"{IMAGE}\"]\nslots = {slots}\ncpus = {slots}\nmemory = \"{memory}\"\nqueues = [\"*\"]\n"
    )
}

/// The fold image, built if needed (`images/build-fold-python.sh` is idempotent).
pub fn ensure_fold_image() {
    super::ensure_image("build-fold-python.sh", IMAGE);
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Uploads a dataset; returns its id.
pub fn dataset(
    m: &Master,
    name: &str,
    csv: &[u8],
    target: &str,
    scores: &[&str],
    elements: &[&str],
) -> i64 {
    let body = json!({"name": name, "target_column": target, "csv": b64(csv),
                      "score_types": scores, "workflow_elements": elements});
    let (status, v) = m.request("POST", "/datasets", Some(body));
    assert_eq!(status, 201, "{v}");
    v["dataset"]["id"].as_i64().unwrap()
}

/// Submits; returns the answer (201 expected).
pub fn submit(m: &Master, body: Value) -> Value {
    let (status, v) = m.request("POST", "/submissions", Some(body));
    assert_eq!(status, 201, "{v}");
    v["submission"].clone()
}

/// Waits until no fold of the submission is TODO; returns the submission.
pub fn wait_submission(m: &Master, id: i64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = m.get(&format!("/submissions/{id}"));
        let s = &v["submission"];
        if s["folds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["state"] != "TODO")
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "submission {id} still has TODO folds: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn ids(s: &Value) -> Vec<i64> {
    s["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect()
}

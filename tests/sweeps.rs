//! Parameter sweeps through the CLI and REST (README "Sweeps"): a grid over a seeded quadratic
//! whose best point is the known optimum, `sweep keep --best 2`, a random sweep stopped early
//! when a point reaches the target, bad files naming file:line:key, another owner's 404; and a
//! submission that stops its other folds when one fails with its own error.

mod common;

use common::ml::{dataset, docker_inventory, wait_submission};
use common::{Master, BIN};
use serde_json::{json, Value};
use std::process::Command;

const FOUR_SLOTS: &str = r#"
[[runner]]
name = "local"
transport = "local"
executor = "process"
slots = 4
cpus = 4
memory = "4G"
"#;

/// A fold computing (x-3)^2 + (y+1)^2 from its parameters into metrics.json, and copying its
/// params.json to its outputs.
const QUADRATIC: &str = r#"awk -v x="$DATARUN_PARAM_X" -v y="$DATARUN_PARAM_Y" 'BEGIN { printf "{\"loss\": %.9f, \"x\": %s}", (x-3)^2 + (y+1)^2, x }' > "$DATARUN_OUTPUT/metrics.json" && cp "$DATARUN_INPUT/params.json" "$DATARUN_OUTPUT/params.json""#;

fn loss(p: &Value) -> f64 {
    let (x, y) = (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
    (x - 3.0).powi(2) + (y + 1.0).powi(2)
}

/// Submits a sweep file through the CLI; the sweep's id and its points' names (SWEEP.INDEX).
fn submit_sweep(m: &Master, toml: &str, command: &str) -> (String, Vec<String>) {
    let file = m.dir.path().join("params.toml");
    std::fs::write(&file, toml).unwrap();
    let out = m.cli_ok(&[
        "submit",
        "--sweep",
        file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        command,
    ]);
    let names: Vec<String> = out.lines().map(str::to_string).collect();
    let id = names[0].split_once('.').unwrap().0.to_string();
    (id, names)
}

fn wait_names(m: &Master, names: &[String]) {
    let mut wait = vec!["queue", "wait", "--timeout", "120s"];
    wait.extend(names.iter().map(String::as_str));
    let out = m.cli(&wait);
    assert!(out.status.code().is_some(), "queue wait ended: {out:?}");
}

#[test]
fn a_grid_over_a_quadratic_ranks_the_optimum_first_and_keeps_the_best_two() {
    let m = Master::start(Some(FOUR_SLOTS));
    m.wait_ready(1);
    let (id, names) = submit_sweep(
        &m,
        "cap = 4\n[grid]\nx = [1, 2, 3, 4, 5]\ny = [-3, -2, -1, 0, 1]\n",
        QUADRATIC,
    );
    assert_eq!(names.len(), 25);
    wait_names(&m, &names);

    let v: Value =
        serde_json::from_str(&m.cli_ok(&["sweep", "show", &id, "--metric", "loss", "--json"]))
            .unwrap();
    assert_eq!(v["sweep"]["params"], json!(["x", "y"]));
    assert_eq!(v["sweep"]["cap"], 4);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 25);
    // The known optimum (3, -1) first, with a loss of 0; every point's metric is its loss.
    assert_eq!(points[0]["params"], json!({"x": 3, "y": -1}), "{v}");
    assert_eq!(points[0]["rank"], 1);
    assert_eq!(points[0]["metrics"]["loss"], 0.0);
    let mut last = f64::MIN;
    for p in points {
        assert_eq!(p["state"], "done", "{p}");
        let l = p["metrics"]["loss"].as_f64().unwrap();
        assert!((l - loss(&p["params"])).abs() < 1e-6, "{p}");
        assert!(l >= last, "ranked lowest first: {v}");
        last = l;
    }
    // params.json among the inputs holds the point's values.
    let best_fold = points[0]["fold"].as_i64().unwrap();
    let params = m.cli_ok(&["fold", "output", &best_fold.to_string(), "params.json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&params).unwrap(),
        json!({"x": 3, "y": -1})
    );
    // --max puts the worst first; the table is aligned, with the parameters and the metric.
    let worst: Value = serde_json::from_str(
        &m.cli_ok(&["sweep", "show", &id, "--metric", "loss", "--max", "--json"]),
    )
    .unwrap();
    // The corners: (1, -3), (1, 1), (5, -3), (5, 1), each 4 + 4.
    assert_eq!(worst["points"][0]["metrics"]["loss"], 8.0, "{worst}");
    assert_eq!(
        worst["points"][0]["params"],
        json!({"x": 1, "y": -3}),
        "{worst}"
    );
    let table = m.cli_ok(&["sweep", "show", &id, "--metric", "loss"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["RANK", "INDEX", "FOLD", "STATE", "x", "y", "loss"],
        "{table}"
    );
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first[0], "1");
    assert_eq!(first[3], "done");
    assert_eq!(&first[4..], ["3", "-1", "0"], "{table}");

    // Keep the best 2: the others' outputs are dropped.
    let out = m.cli_ok(&["sweep", "keep", &id, "--best", "2", "--metric", "loss"]);
    assert!(out.contains("dropped 46 outputs of 23 points"), "{out}");
    let after = m.get(&format!("/sweeps/{id}?metric=loss"));
    let with_outputs: Vec<&Value> = after["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outputs"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(with_outputs.len(), 2, "{after}");
    let kept: Vec<Value> = with_outputs.iter().map(|p| p["params"].clone()).collect();
    assert!(kept.contains(&json!({"x": 3, "y": -1})), "{after}");
    let dropped = &v["points"][24]["fold"];
    let (status, _) = m.request(
        "GET",
        &format!("/folds/{dropped}/outputs/metrics.json"),
        None,
    );
    assert_eq!(status, 404, "a dropped point's output is gone");
}

#[test]
fn a_random_sweep_stops_early_once_a_point_reaches_the_target() {
    let m = Master::start(Some(FOUR_SLOTS));
    m.wait_ready(1);
    // One point at a time: a point below 2 removes the points not started.
    let toml = "cap = 1\n[random]\nn = 40\nseed = 7\nx = { uniform = [0, 6] }\ny = { uniform = [-4, 2] }\n[stop]\nmetric = \"loss\"\nbelow = 2.0\n";
    let (id, names) = submit_sweep(&m, toml, QUADRATIC);
    assert_eq!(names.len(), 40);
    wait_names(&m, &names);
    let v = m.get(&format!("/sweeps/{id}"));
    let points = v["points"].as_array().unwrap();
    let stopper = points
        .iter()
        .find(|p| p["state"] == "done" && p["metrics"]["loss"].as_f64().unwrap() < 2.0)
        .unwrap_or_else(|| panic!("no point reached the target: {v}"));
    let why = format!(
        "stopped early: fold {} of sweep {id} reached loss below 2 (loss = {})",
        stopper["fold"], stopper["metrics"]["loss"]
    );
    assert_eq!(v["sweep"]["stopped"], why, "{v}");
    let at = stopper["index"].as_u64().unwrap() as usize;
    for p in &points[..at] {
        assert_eq!(p["state"], "done", "{p}");
        let l = p["metrics"]["loss"].as_f64().unwrap();
        assert!(l >= 2.0 && (l - loss(&p["params"])).abs() < 1e-6, "{p}");
    }
    assert!(at < 39, "points were left to remove: {v}");
    for p in &points[at + 1..] {
        assert_eq!(p["state"], "removed", "{p}");
        assert_eq!(p["reason"], why.as_str(), "{p}");
        assert!(p["metrics"].is_null());
    }
    // Values drawn from the seed, within their ranges.
    for p in points {
        let (x, y) = (
            p["params"]["x"].as_f64().unwrap(),
            p["params"]["y"].as_f64().unwrap(),
        );
        assert!((0.0..6.0).contains(&x) && (-4.0..2.0).contains(&y), "{p}");
    }
    // `sweep show` says why; the stopper ranks first, the removed points last without rank.
    let table = m.cli_ok(&["sweep", "show", &id, "--metric", "loss"]);
    assert!(table.starts_with(&why), "{table}");
    let ranked = m.get(&format!("/sweeps/{id}?metric=loss"));
    let last = ranked["points"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["rank"].is_null() && last["state"] == "removed",
        "{ranked}"
    );
    let minimum = points
        .iter()
        .filter_map(|p| p["metrics"]["loss"].as_f64())
        .fold(f64::MAX, f64::min);
    assert_eq!(ranked["points"][0]["metrics"]["loss"], minimum);
}

#[test]
fn bad_sweeps_name_file_line_and_key_store_nothing_and_are_the_owners() {
    let m = Master::start(Some(FOUR_SLOTS));
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    m.wait_ready(1);
    let before = m.get("/queue");
    let file = m.dir.path().join("params.toml");
    for (text, says) in [
        (
            "[grid]\nx = [1, 2]\ny = []\n",
            "params.toml:3: grid.y: expected a non-empty array",
        ),
        (
            "[random]\nn = 3\nseed = 1\nx = { uniform = [2, 1] }\n",
            "params.toml:4: random.x.uniform: low 2 is not below high 1",
        ),
        ("[grid\nx = 1\n", "params.toml:1: not valid TOML"),
        (
            "[grid]\nx = [1]\n[stop]\nmetric = \"loss\"\n",
            "params.toml:3: stop: give one of below or above",
        ),
        (
            "[random]\nn = 20000\nseed = 1\nx = { uniform = [0, 1] }\n",
            "params.toml:2: random.n: expected a whole number from 1 to 10000",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = m.cli(&["submit", "--sweep", file.to_str().unwrap(), "--", "true"]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{text}: {err}");
    }
    // REST: the key named, 400, nothing stored.
    for (sweep, says) in [
        (json!({"grid": {"DATA-X": [1]}}), "sweep: grid.DATA-X: "),
        (json!({"grid": {"x": [1]}, "cap": 0}), "sweep: cap: "),
        (
            json!({"random": {"n": 2, "seed": -1, "x": {"choice": [1]}}}),
            "sweep: random.seed",
        ),
        (
            json!({"grid": {"x": [{"a": 1}]}}),
            "sweep: grid.x[0]: expected a number",
        ),
    ] {
        let (status, v) = m.request(
            "POST",
            "/sweeps",
            Some(json!({"spec": common::sh("true"), "sweep": sweep})),
        );
        assert_eq!(status, 400, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(says), "{message}");
    }
    // A point's spec must be a valid fold: a param whose variable is too long with the rest.
    let mut spec = common::sh("true");
    spec["env"] = json!({ "PAD": "x".repeat(32 << 10), "PAD2": "x".repeat((32 << 10) - 200) });
    let (status, _) = m.request(
        "POST",
        "/sweeps",
        Some(json!({"spec": spec, "sweep": {"grid": {"x": ["y".repeat(1000)]}}})),
    );
    assert!(status == 400 || status == 413, "{status}");
    assert_eq!(m.get("/queue"), before, "nothing stored");

    // Another owner's sweep is missing to bob; its owner removes it whole as an array.
    let (status, v) = m.request(
        "POST",
        "/sweeps",
        Some(
            json!({"spec": common::sh("sleep 30"), "sweep": {"grid": {"x": [1, 2, 3]}, "cap": 1}}),
        ),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["sweep"].as_i64().unwrap();
    assert_eq!(v["folds"][2]["params"], json!({"x": 3}));
    for (method, path, body) in [
        ("GET", format!("/sweeps/{id}"), None),
        (
            "POST",
            format!("/sweeps/{id}/keep"),
            Some(json!({"best": 1, "metric": "loss"})),
        ),
    ] {
        let (status, v) = m.request_as(&bob, method, &path, body);
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["message"], format!("sweep {id} does not exist"));
    }
    let out = Command::new(BIN)
        .args(["sweep", "show", &id.to_string()])
        .env("DATARUN_SERVER", &m.url)
        .env("DATARUN_TOKEN", &bob)
        .env_remove("DATARUN_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "not found");
    let (status, v) = m.request(
        "POST",
        &format!("/sweeps/{id}/keep"),
        Some(json!({"best": 0, "metric": "loss"})),
    );
    assert_eq!(status, 400, "{v}");
    let out = m.cli_ok(&["queue", "remove", "--array", &id.to_string()]);
    assert_eq!(out.trim(), "removed 3 of 3 matching folds");
    let v = m.get(&format!("/sweeps/{id}"));
    assert!(
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "removed"),
        "{v}"
    );
}

#[test]
fn a_submission_that_stops_on_failure_removes_its_folds_not_started() {
    // One slot: the broken classifier's first fold fails with its own error while the others
    // are still in line.
    let m = Master::start(Some(&docker_inventory(1)));
    let csv = std::fs::read("examples/iris/iris.csv").unwrap();
    let d = dataset(&m, "iris", &csv, "species", &["accuracy"], &["classifier"]);
    let dir = m.dir.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("classifier.py");
    std::fs::copy("examples/iris/submission_broken/classifier.py", &file).unwrap();
    let out = m.cli_ok(&[
        "submission",
        "submit",
        "--dataset",
        &d.to_string(),
        "--name",
        "broken",
        "--file",
        file.to_str().unwrap(),
        "--cv",
        "4",
        "--stop-on-failure",
    ]);
    let id: i64 = out.trim().parse().unwrap();
    let s = wait_submission(&m, id, std::time::Duration::from_secs(300));
    assert_eq!(s["stop_on_failure"], true);
    let folds = s["folds"].as_array().unwrap();
    // The folds that ran (the first, and any the runner had already taken) failed; the rest
    // were removed naming the first.
    let (stopped, ran): (Vec<&Value>, Vec<&Value>) = folds.iter().partition(|f| {
        f["reason"]
            .as_str()
            .unwrap()
            .starts_with("cancelled: stopped")
    });
    assert!(!stopped.is_empty() && ran.len() < 4, "{s}");
    let first = ran
        .iter()
        .min_by_key(|f| f["ended_at"].as_i64().unwrap())
        .unwrap();
    let fold = m.fold(first["fold_id"].as_i64().unwrap())["fold"].clone();
    assert_eq!(fold["state"], "failed", "{fold}");
    let why = format!(
        "stopped: fold {} of submission {id} failed with its own error ({})",
        fold["id"],
        fold["reason"].as_str().unwrap()
    );
    for f in &ran {
        let queue_fold = m.fold(f["fold_id"].as_i64().unwrap());
        assert_eq!(queue_fold["fold"]["state"], "failed", "{f}");
    }
    for f in &stopped {
        assert_eq!(f["state"], "ERROR", "{f}");
        assert_eq!(f["reason"], format!("cancelled: {why}"), "{f}");
        let queue_fold = m.fold(f["fold_id"].as_i64().unwrap());
        assert_eq!(queue_fold["fold"]["state"], "removed");
    }
    let shown = m.cli_ok(&["submission", "show", &id.to_string()]);
    assert!(shown.contains(&why), "{shown}");
    assert!(shown.contains("stops the folds not started"), "{shown}");
    // Without the option every fold of a broken submission runs and fails: see
    // `tests/submissions.rs` (iris_good_and_broken_on_5_folds_with_the_feed_once).
}

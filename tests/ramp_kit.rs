//! RAMP kits fold by fold (issue #6): the example kit `examples/ramp_kit` runs through the real
//! master and a docker runner as 4 folds of one submission, one `datarun-ramp-fold` per CV fold,
//! in parallel. Each fold's outputs must be ramp's `training_output/fold_<k>/` layout, and its
//! scores and predictions must equal what `ramp-test --save-output` (run once in the same image,
//! one fold after another) writes for that fold. The broken submission fails with its traceback.

mod common;

use common::Master;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "datarun/fold-python:0.1";
const KIT: &str = "examples/ramp_kit";
const N_FOLDS: usize = 4;
/// The kit's files, under the names `ramp-test` reads them by (relative to the kit).
const KIT_FILES: [&str; 3] = ["problem.py", "data/train.csv", "data/test.csv"];
/// What ramp-test --save-output writes per fold (state.txt too), all expected from each fold.
const LAYOUT: [&str; 7] = [
    "y_pred_train.npz",
    "y_pred_test.npz",
    "scores.csv",
    "train_time",
    "valid_time",
    "test_time",
    "state.txt",
];

/// The inventory the kit ships (`examples/ramp_kit/runners.toml`: one local docker runner,
/// 4 slots, the fold image allowed), so the shipped file is the one that works.
fn inventory() -> String {
    common::ml::ensure_fold_image();
    std::fs::read_to_string("examples/ramp_kit/runners.toml").expect("the kit's runners.toml")
}

fn upload(m: &Master, data: Vec<u8>) -> String {
    let (status, v) = m.raw("POST", "/blobs", "application/octet-stream", data);
    assert_eq!(status, 201, "{v}");
    v["sha256"].as_str().unwrap().to_string()
}

/// The submission's files, relative to the kit (`submissions/<name>/...`).
fn submission_files(name: &str) -> Vec<String> {
    let dir = Path::new(KIT).join("submissions").join(name);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".py"))
        .map(|n| format!("submissions/{name}/{n}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

/// Submits every CV fold of one submission as folds of one batch: the kit's files go in as
/// inputs under their relative names, plus `ramp-fold.json` naming the submission and fold.
fn submit_submission(m: &Master, name: &str) -> Vec<i64> {
    let mut inputs = vec![];
    for file in KIT_FILES
        .iter()
        .map(|s| s.to_string())
        .chain(submission_files(name))
    {
        let sha = upload(m, std::fs::read(Path::new(KIT).join(&file)).unwrap());
        inputs.push(json!({"name": file, "sha256": sha}));
    }
    let specs = (0..N_FOLDS)
        .map(|k| {
            let fold = json!({"submission": name, "fold": k});
            let sha = upload(m, serde_json::to_vec(&fold).unwrap());
            let mut inputs = inputs.clone();
            inputs.push(json!({"name": "ramp-fold.json", "sha256": sha}));
            json!({
                "command": ["datarun-ramp-fold"],
                "image": IMAGE,
                "inputs": inputs,
                "resources": {"cpus": 1, "memory": "512M"},
                "hard_time_limit": "5m"
            })
        })
        .collect();
    m.submit(specs)
}

fn output(m: &Master, id: i64, name: &str) -> Vec<u8> {
    let out = Command::new(common::BIN)
        .args(["fold", "output", &id.to_string(), name])
        .env("DATARUN_DATA_DIR", m.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fold {id}: output {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// scores.csv as ramp writes it (`step,acc,nll,mar,time`): {step: {score: value}}, without time.
fn parse_scores(csv: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut lines = csv.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header[0], "step", "{csv}");
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{csv}");
            let scores = header[1..]
                .iter()
                .zip(&cells[1..])
                .filter(|(h, _)| **h != "time")
                .map(|(h, v)| (h.to_string(), v.parse::<f64>().unwrap()))
                .collect();
            (cells[0].to_string(), scores)
        })
        .collect()
}

/// Runs `ramp-test --submission starting_kit --save-output` once in the image on a copy of the
/// kit, then prints each fold's scores.csv and whether its predictions equal datarun's (the
/// fetched outputs under `ours`). Returns (per-fold scores.csv, per-fold "train test" equality,
/// ramp-test's own printout).
fn ramp_test(ours: &Path) -> (Vec<String>, Vec<String>, String) {
    let kit = std::fs::canonicalize(KIT).unwrap();
    let script = r#"
set -e
cp -r /kit-src /tmp/kit && cd /tmp/kit && rm -rf submissions/*/training_output
ramp-test --submission starting_kit --save-output > /tmp/ramp-test.out
cat /tmp/ramp-test.out
out=submissions/starting_kit/training_output
for k in 0 1 2 3; do echo "== scores $k"; cat $out/fold_$k/scores.csv; done
python3 - <<'EOF'
import numpy as np
for k in range(4):
    same = [np.array_equal(np.load(f"submissions/starting_kit/training_output/fold_{k}/y_pred_{s}.npz")["y_pred"],
                           np.load(f"/ours/fold_{k}/y_pred_{s}.npz")["y_pred"]) for s in ("train", "test")]
    print(f"== same {k} " + " ".join(str(x) for x in same))
EOF
"#;
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/kit-src:ro", kit.display()))
        .arg("-v")
        .arg(format!("{}:/ours:ro", ours.display()))
        .args([IMAGE, "sh", "-c", script])
        .output()
        .expect("docker run ramp-test");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ramp-test failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut scores = vec![String::new(); N_FOLDS];
    let mut same = vec![String::new(); N_FOLDS];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(k) = line.strip_prefix("== scores ") {
            current = Some(k.parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("== same ") {
            let (k, v) = rest.split_once(' ').unwrap();
            same[k.parse::<usize>().unwrap()] = v.to_string();
            current = None;
        } else if let Some(k) = current {
            scores[k].push_str(line);
            scores[k].push('\n');
        }
    }
    (scores, same, stdout)
}

#[test]
fn a_ramp_kit_runs_fold_by_fold_in_parallel_and_matches_ramp_test() {
    let m = Master::start(Some(&inventory()));
    let good = submit_submission(&m, "starting_kit");
    let broken = submit_submission(&m, "broken");
    let ended = m.wait_all(
        &[good.clone(), broken.clone()].concat(),
        Duration::from_secs(300),
    );

    // Every fold of the starting kit is done, with ramp's per-fold layout.
    let ours = tempfile::tempdir().unwrap();
    let mut intervals = vec![];
    let mut datarun_scores = vec![];
    for (k, id) in good.iter().enumerate() {
        assert_eq!(ended[k]["state"], "done", "fold {id}: {}", ended[k]);
        let detail = m.fold(*id);
        let attempt = detail["attempts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        let names: Vec<&str> = attempt["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        for file in LAYOUT {
            let name = format!("training_output/fold_{k}/{file}");
            assert!(
                names.contains(&name.as_str()),
                "fold {k}: {name} in {names:?}"
            );
            let bytes = output(&m, *id, &name);
            let dest = ours.path().join(format!("fold_{k}/{file}"));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(dest, bytes).unwrap();
        }
        assert!(names.contains(&"scores.json"), "{names:?}");
        for t in ["train_time", "valid_time", "test_time"] {
            let text = String::from_utf8(output(&m, *id, &format!("training_output/fold_{k}/{t}")))
                .unwrap();
            let secs: f64 = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{t}: {text}"));
            assert!(secs >= 0.0, "{t}: {secs}");
        }
        let state = output(&m, *id, &format!("training_output/fold_{k}/state.txt"));
        assert_eq!(String::from_utf8(state).unwrap(), "scored");
        let summary: Value = serde_json::from_slice(&output(&m, *id, "scores.json")).unwrap();
        assert_eq!(summary["fold"], k, "{summary}");
        assert_eq!(summary["n_folds"], N_FOLDS, "{summary}");
        let csv = String::from_utf8(output(
            &m,
            *id,
            &format!("training_output/fold_{k}/scores.csv"),
        ))
        .unwrap();
        let scores = parse_scores(&csv);
        assert_eq!(
            summary["scores"]["valid"]["acc"].as_f64(),
            Some(scores["valid"]["acc"])
        );
        datarun_scores.push(scores);
        let start = attempt["started_at"].as_i64().expect("started_at");
        let end = attempt["ended_at"].as_i64().expect("ended_at");
        intervals.push((start, end));
    }

    // They ran in parallel: some two of the 4 attempts overlap in time.
    let overlapping = (0..N_FOLDS)
        .flat_map(|a| (a + 1..N_FOLDS).map(move |b| (a, b)))
        .filter(|&(a, b)| intervals[a].0 < intervals[b].1 && intervals[b].0 < intervals[a].1)
        .count();
    let first = intervals.iter().map(|i| i.0).min().unwrap();
    eprintln!(
        "attempts (ms from the first start): {:?}; {overlapping} overlapping pair(s)",
        intervals
            .iter()
            .map(|(s, e)| (s - first, e - first))
            .collect::<Vec<_>>()
    );
    assert!(
        overlapping >= 1,
        "the folds ran one after another: {intervals:?}"
    );

    // The same scores (to the last bit) and predictions as ramp-test's, fold by fold.
    let (reference, same, printout) = ramp_test(ours.path());
    for k in 0..N_FOLDS {
        let expected = parse_scores(&reference[k]);
        eprintln!(
            "fold {k}: valid acc/nll/mar datarun {:?} ramp-test {:?}",
            datarun_scores[k]["valid"], expected["valid"]
        );
        assert_eq!(
            datarun_scores[k], expected,
            "fold {k}: datarun's scores differ from ramp-test's"
        );
        assert_eq!(
            same[k], "True True",
            "fold {k}: y_pred_train/y_pred_test equal to ramp-test's"
        );
        // ramp-test prints each fold's table, rounded to the score types' precision.
        let valid = printout
            .split(&format!("CV fold {k}"))
            .nth(1)
            .and_then(|s| s.lines().find(|l| l.trim_start().starts_with("valid")))
            .unwrap_or_else(|| panic!("no valid row for fold {k} in {printout}"));
        let printed_acc: f64 = valid.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(
            (printed_acc - datarun_scores[k]["valid"]["acc"]).abs() <= 0.005 + 1e-12,
            "fold {k}: ramp-test printed {valid}"
        );
    }

    // The broken submission: each fold fails, exit code 1, with the traceback in its log.
    for (i, id) in broken.iter().enumerate() {
        let failed = &ended[good.len() + i];
        assert_eq!(failed["state"], "failed", "{failed}");
        assert_eq!(failed["outcome"]["kind"], "exit_code", "{failed}");
        assert_eq!(failed["outcome"]["code"], 1, "{failed}");
        let log = m.cli_ok(&["fold", "log", &id.to_string()]);
        assert!(
            log.contains("Traceback"),
            "the traceback is in the log: {log}"
        );
        assert!(
            log.contains("ValueError: this submission is broken on purpose"),
            "{log}"
        );
        let state = output(&m, *id, &format!("training_output/fold_{i}/state.txt"));
        assert_eq!(String::from_utf8(state).unwrap(), "training_error");
    }
}

#[test]
fn the_kit_data_is_what_make_data_writes() {
    let out = Command::new(common::python3())
        .args(["examples/ramp_kit/make_data.py", "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "examples/ramp_kit/data differs from make_data.py's split: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

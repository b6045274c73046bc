//! The ML fold contract end to end: the iris example (a scikit-learn classifier, 5 stratified
//! folds) runs in the real fold image through the real master and agent. Accuracy is computed
//! here from the returned predictions, not taken from the fold's own report.

mod common;

use common::Master;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::ml::IMAGE;

fn inventory() -> String {
    common::ml::docker_inventory(5)
}

/// The iris table: (rows of features, species).
fn iris() -> (String, Vec<String>) {
    let text = std::fs::read_to_string("examples/iris/iris.csv").unwrap();
    let species = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect();
    (text, species)
}

/// 5 stratified folds: each class's rows dealt round-robin after a fixed shuffle.
fn folds(species: &[String]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in species.iter().enumerate() {
        by_class.entry(s).or_default().push(i);
    }
    let mut fold_of = vec![0usize; species.len()];
    let mut seed = 42u64;
    for rows in by_class.values_mut() {
        for i in (1..rows.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rows.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for (k, r) in rows.iter().enumerate() {
            fold_of[*r] = k % 5;
        }
    }
    (0..5)
        .map(|k| {
            let test: Vec<usize> = (0..species.len()).filter(|i| fold_of[*i] == k).collect();
            let train: Vec<usize> = (0..species.len()).filter(|i| fold_of[*i] != k).collect();
            (train, test)
        })
        .collect()
}

/// Reads a little-endian float64 .npy file: (shape, values).
fn read_npy(bytes: &[u8]) -> (Vec<usize>, Vec<f64>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f8'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[start + header_len..];
    let values = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

fn upload(m: &Master, data: Vec<u8>) -> String {
    let (status, v) = m.raw("POST", "/blobs", "application/octet-stream", data);
    assert_eq!(status, 201, "{v}");
    v["sha256"].as_str().unwrap().to_string()
}

fn submit_folds(m: &Master, submission: &str, splits: &[(Vec<usize>, Vec<usize>)]) -> Vec<i64> {
    let (csv, _) = iris();
    let data = upload(m, csv.into_bytes());
    let code = upload(
        m,
        std::fs::read(format!("examples/iris/{submission}/classifier.py")).unwrap(),
    );
    let specs: Vec<Value> = splits
        .iter()
        .map(|(train, test)| {
            let fold = json!({"dataset": "iris.csv", "target_column": "species", "train_is": train, "test_is": test,
                              "workflow_elements": ["classifier"], "submission_dir": "submission"});
            let fold_sha = upload(m, serde_json::to_vec(&fold).unwrap());
            json!({
                "command": ["datarun-fold"],
                "image": IMAGE,
                "inputs": [{"name": "iris.csv", "sha256": data}, {"name": "fold.json", "sha256": fold_sha},
                           {"name": "submission/classifier.py", "sha256": code}],
                "resources": {"cpus": 1, "memory": "512M"},
                "hard_time_limit": "5m"
            })
        })
        .collect();
    m.submit(specs)
}

#[test]
fn iris_runs_end_to_end_with_accuracy_above_0_9() {
    let m = Master::start(Some(&inventory()));
    let (_, species) = iris();
    assert_eq!(species.len(), 150);
    let splits = folds(&species);
    let good = submit_folds(&m, "submission", &splits);
    let broken = submit_folds(&m, "submission_broken", &splits[..1]);
    let ended = m.wait_all(
        &[good.clone(), broken.clone()].concat(),
        Duration::from_secs(300),
    );
    let (mut correct_all, mut tested_all) = (0, 0);
    for (k, id) in good.iter().enumerate() {
        assert_eq!(ended[k]["state"], "done", "fold {id}: {}", ended[k]);
        let labels: Vec<String> =
            serde_json::from_str(&m.cli_ok(&["fold", "output", &id.to_string(), "labels.json"]))
                .unwrap();
        let out = Command::new(common::BIN)
            .args(["fold", "output", &id.to_string(), "y_pred_train.npy"])
            .env("DATARUN_DATA_DIR", m.data_dir())
            .output()
            .unwrap();
        assert!(out.status.success());
        let (shape, probs) = read_npy(&out.stdout);
        assert_eq!(
            shape,
            vec![150, labels.len()],
            "predictions cover the full training table"
        );
        let test = &splits[k].1;
        let correct = test
            .iter()
            .filter(|&&i| {
                let row = &probs[i * labels.len()..(i + 1) * labels.len()];
                let best = (0..row.len())
                    .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                    .unwrap();
                labels[best] == species[i]
            })
            .count();
        let accuracy = correct as f64 / test.len() as f64;
        eprintln!(
            "iris fold {k}: accuracy {accuracy:.3} ({correct}/{})",
            test.len()
        );
        assert!(accuracy >= 0.85, "fold {k}: accuracy {accuracy}");
        correct_all += correct;
        tested_all += test.len();
        let phases: Vec<String> =
            serde_json::from_str(&m.cli_ok(&["fold", "output", &id.to_string(), "phases.json"]))
                .unwrap();
        assert_eq!(phases, ["trained", "validated", "tested"]);
        let show = m.cli_ok(&["fold", "show", &id.to_string()]);
        assert!(show.contains("trained, validated, tested"), "{show}");
    }
    // Every row is held out once across the 5 folds: this is the cross-validated accuracy.
    assert_eq!(tested_all, 150);
    let accuracy = correct_all as f64 / tested_all as f64;
    eprintln!("iris cross-validated accuracy {accuracy:.3}");
    assert!(accuracy > 0.9, "cross-validated accuracy {accuracy}");
    let failed = &ended[good.len()];
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["outcome"]["kind"], "exit_code");
    let log = m.cli_ok(&["fold", "log", &broken[0].to_string()]);
    assert!(
        log.contains("Traceback"),
        "the traceback is in the log: {log}"
    );
}

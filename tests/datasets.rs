//! Datasets, splits and scores through the real HTTP API and CLI. Statistics, splits' train/test
//! comparison and scores are checked against pandas, numpy, scipy and scikit-learn run in the
//! fold image `datarun/fold-python:0.1` (Docker is required: the test fails without it).

mod common;

use base64::Engine;
use common::Master;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const IMAGE: &str = "datarun/fold-python:0.1";
const IRIS: &str = "examples/iris/iris.csv";

/// Runs `script` with python3 in the fold image, `dir` mounted read-only at /data; its stdout
/// is JSON.
fn python(dir: &Path, script: &str) -> Value {
    common::ml::ensure_fold_image();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/data:ro", dir.display()))
        .args([IMAGE, "python3", "-c", script])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "python in {IMAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn put(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn upload(m: &Master, name: &str, target: &str, csv: &[u8]) -> Value {
    let body = json!({"name": name, "target_column": target, "csv": b64(csv),
                      "score_types": ["accuracy"], "workflow_elements": ["classifier"]});
    let (status, v) = m.request("POST", "/datasets", Some(body));
    assert_eq!(status, 201, "upload {name}: {v}");
    v["dataset"].clone()
}

fn close(a: &Value, b: &Value, what: &str) {
    let (x, y) = (a.as_f64(), b.as_f64());
    match (x, y) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * (1.0 + y.abs()),
            "{what}: datarun {x} vs reference {y}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// pandas' view of every column of /data/NAME: the statistics datarun documents.
const PANDAS_STATS: &str = r#"
import json, sys, numpy as np, pandas as pd
df = pd.read_csv('/data/' + sys.argv[1])
out = {}
for c in df.columns:
    s = df[c]; v = s.dropna()
    if pd.api.types.is_numeric_dtype(s):
        counts, edges = np.histogram(v, bins=10)
        out[c] = dict(kind='numeric', count=int(v.count()), nulls=int(s.isna().sum()),
            zeros=int((v == 0).sum()), negatives=int((v < 0).sum()), mean=float(v.mean()),
            std=float(v.std()), min=float(v.min()), max=float(v.max()),
            counts=[int(x) for x in counts], edges=[float(e) for e in edges])
    else:
        out[c] = dict(kind='categorical', count=int(v.count()), nulls=int(s.isna().sum()),
            unique=int(v.nunique()), empties=int((v.str.strip() == '').sum()),
            top={str(k): int(n) for k, n in v.value_counts().items()})
print(json.dumps(out))
"#;

fn pandas_stats(dir: &Path, file: &str) -> Value {
    python(
        dir,
        &PANDAS_STATS.replace("sys.argv[1]", &format!("{file:?}")),
    )
}

/// Every documented statistic of every column equals pandas'.
fn check_stats(ours: &Value, pandas: &Value) -> usize {
    let mut checked = 0;
    for c in ours["columns"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let p = &pandas[name];
        assert_eq!(c["kind"], p["kind"], "{name}: kind");
        for k in ["count", "nulls"] {
            close(&c[k], &p[k], &format!("{name}.{k}"));
            checked += 1;
        }
        if c["kind"] == "numeric" {
            for k in ["zeros", "negatives", "mean", "std", "min", "max"] {
                close(&c[k], &p[k], &format!("{name}.{k}"));
                checked += 1;
            }
            assert_eq!(c["histogram"]["counts"], p["counts"], "{name}: histogram");
            for (a, b) in c["histogram"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .zip(p["edges"].as_array().unwrap())
            {
                close(a, b, &format!("{name}: histogram edge"));
            }
            checked += 2;
        } else {
            for k in ["unique", "empties"] {
                close(&c[k], &p[k], &format!("{name}.{k}"));
                checked += 1;
            }
            for t in c["top"].as_array().unwrap() {
                let v = t["value"].as_str().unwrap();
                assert_eq!(t["count"], p["top"][v], "{name}: count of {v:?}");
                checked += 1;
            }
        }
    }
    checked
}

/// A table with nulls of several spellings, zeros, negatives, blanks and a mixed column.
fn messy_csv() -> String {
    let mut s = String::from("id,x,y,grade,mixed,label\n");
    for i in 0..97i64 {
        let x = match i % 11 {
            0 => "NA".to_string(),
            1 => String::new(),
            2 => "0".to_string(),
            _ => format!("{}", (i * 37 % 101 - 50) as f64 / 4.0),
        };
        let y = if i % 13 == 0 {
            "null".to_string()
        } else {
            format!("{:e}", (i * i % 17) as f64 - 3.5)
        };
        let grade = ["A", "B", "B", "C", "NaN", " ", "C", "C"][(i % 8) as usize];
        let mixed = if i % 9 == 0 {
            "n/a".into()
        } else if i % 5 == 0 {
            "five".into()
        } else {
            i.to_string()
        };
        s.push_str(&format!("{i},{x},{y},{grade},{mixed},{}\n", i % 3));
    }
    s
}

#[test]
fn statistics_match_pandas() {
    let m = Master::start(None);
    let dir = tempfile::tempdir().unwrap();
    let iris = std::fs::read(IRIS).unwrap();
    put(dir.path(), "iris.csv", &iris);
    let messy = messy_csv();
    put(dir.path(), "messy.csv", messy.as_bytes());

    let d = upload(&m, "iris", "species", &iris);
    assert_eq!(d["rows"], 150);
    let shown = m.get(&format!("/datasets/{}", d["id"]));
    let ours = &shown["dataset"]["stats"];
    let n = check_stats(ours, &pandas_stats(dir.path(), "iris.csv"));
    let species = &ours["columns"][4];
    assert_eq!(
        (
            species["unique"].as_u64(),
            species["top"][0]["count"].as_u64()
        ),
        (Some(3), Some(50))
    );
    eprintln!("iris: {n} statistics equal pandas'");

    let d = upload(&m, "messy", "label", messy.as_bytes());
    let ours = &m.get(&format!("/datasets/{}", d["id"]))["dataset"]["stats"];
    let x = &ours["columns"][1];
    assert!(x["nulls"].as_u64().unwrap() > 0 && x["zeros"].as_u64().unwrap() > 0);
    assert_eq!(ours["columns"][4]["kind"], "categorical");
    let n = check_stats(ours, &pandas_stats(dir.path(), "messy.csv"));
    eprintln!("messy: {n} statistics equal pandas'");

    // The table comes back as uploaded.
    let (status, table) = m.request("GET", &format!("/datasets/{}/table", d["id"]), None);
    assert_eq!((status, table.as_str()), (200, Some(messy.as_str())));
}

/// Species of each iris row, from the file itself.
fn iris_species() -> Vec<String> {
    std::fs::read_to_string(IRIS)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect()
}

/// pandas/scipy on the two sides of a split: mean, std, count and 1 − KS per numeric column,
/// 1 − TVD for the species.
const PANDAS_SPLIT: &str = r#"
import json, pandas as pd
from scipy.stats import ks_2samp
df = pd.read_csv('/data/iris.csv'); idx = json.load(open('/data/split.json'))
tr, te = df.iloc[idx['train']], df.iloc[idx['test']]
out = {}
for c in df.columns:
    if c == 'species':
        p = tr[c].value_counts(normalize=True); q = te[c].value_counts(normalize=True)
        keys = set(p.index) | set(q.index)
        out[c] = dict(similarity=1 - 0.5 * sum(abs(p.get(k, 0) - q.get(k, 0)) for k in keys))
    else:
        out[c] = dict(similarity=1 - float(ks_2samp(tr[c], te[c]).statistic),
            train_mean=float(tr[c].mean()), test_mean=float(te[c].mean()),
            train_std=float(tr[c].std()), test_std=float(te[c].std()))
print(json.dumps(out))
"#;

#[test]
fn stratified_split_of_iris() {
    let m = Master::start(None);
    let iris = std::fs::read(IRIS).unwrap();
    let d = upload(&m, "iris", "species", &iris);
    let path = format!("/datasets/{}/splits", d["id"]);
    let body = json!({"held_out_test": 0.2, "stratify": true});
    let (status, first) = m.request("POST", &path, Some(body.clone()));
    assert_eq!(status, 201, "{first}");
    let (status, second) = m.request("POST", &path, Some(body));
    assert_eq!(status, 201, "{second}");
    assert_eq!(first["split"]["random_state"], 42, "the default seed");
    assert_ne!(first["split"]["id"], second["split"]["id"]);
    assert_eq!(first["test"], second["test"], "same seed, same rows");

    let (train, test) = (indices(&first["train"]), indices(&first["test"]));
    assert_eq!((train.len(), test.len()), (120, 30));
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..150).collect::<Vec<_>>(), "disjoint and covering");
    let species = iris_species();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &test {
        *per_class.entry(&species[i]).or_default() += 1;
    }
    assert_eq!(
        per_class.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{per_class:?}"
    );

    // GET /splits/{id} gives the same rows and statistics.
    let shown = m.get(&format!("/splits/{}", first["split"]["id"]));
    assert_eq!(
        (&shown["train"], &shown["test"]),
        (&first["train"], &first["test"])
    );
    assert_eq!(shown["split"]["stats"], first["split"]["stats"]);

    // Train vs test statistics and similarity, against pandas and scipy.
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "iris.csv", &iris);
    put(
        dir.path(),
        "split.json",
        json!({"train": train, "test": test}).to_string().as_bytes(),
    );
    let reference = python(dir.path(), PANDAS_SPLIT);
    let columns = first["split"]["stats"]["columns"].as_array().unwrap();
    for c in columns {
        let name = c["name"].as_str().unwrap();
        let r = &reference[name];
        close(
            &c["similarity"],
            &r["similarity"],
            &format!("{name}: similarity"),
        );
        if name != "species" {
            close(
                &c["train"]["mean"],
                &r["train_mean"],
                &format!("{name}: train mean"),
            );
            close(
                &c["test"]["mean"],
                &r["test_mean"],
                &format!("{name}: test mean"),
            );
            close(
                &c["train"]["std"],
                &r["train_std"],
                &format!("{name}: train std"),
            );
            close(
                &c["test"]["std"],
                &r["test_std"],
                &format!("{name}: test std"),
            );
        }
        eprintln!(
            "{name}: similarity {} (scipy/pandas {})",
            c["similarity"], r["similarity"]
        );
    }
    assert_eq!(
        columns[4]["similarity"], 1.0,
        "stratified: the same class shares"
    );

    // Another seed, another split; unstratified keeps the size.
    let (_, other) = m.request(
        "POST",
        &path,
        Some(json!({"held_out_test": 0.2, "random_state": 7})),
    );
    assert_eq!(indices(&other["test"]).len(), 30);
    assert_ne!(other["test"], first["test"]);
    assert_eq!(other["split"]["stratify"], false);
}

/// scikit-learn's scores of the vectors in /data/vectors.json.
const SKLEARN_SCORES: &str = r#"
import json, numpy as np
from sklearn import metrics as M
v = json.load(open('/data/vectors.json'))
b, mc, r = v['binary'], v['multi'], v['regression']
pb = np.array(b['y_proba']); pm = np.array(mc['y_proba'])
mpred = [mc['classes'][i] for i in pm.argmax(axis=1)]
print(json.dumps({
  'binary': {'accuracy': M.accuracy_score(b['y_true'], b['y_pred']),
             'f1': M.f1_score(b['y_true'], b['y_pred']),
             'roc_auc': M.roc_auc_score(b['y_true'], pb[:, 1]),
             'log_loss': M.log_loss(b['y_true'], pb)},
  'multi': {'accuracy': M.accuracy_score(mc['y_true'], mpred),
            'f1': M.f1_score(mc['y_true'], mpred, average='macro'),
            'roc_auc': M.roc_auc_score(mc['y_true'], pm, multi_class='ovr', average='macro', labels=mc['classes']),
            'log_loss': M.log_loss(mc['y_true'], pm, labels=mc['classes'])},
  'regression': {'rmse': M.mean_squared_error(r['y_true'], r['y_pred']) ** 0.5,
                 'mae': M.mean_absolute_error(r['y_true'], r['y_pred']),
                 'r2': M.r2_score(r['y_true'], r['y_pred'])},
}))
"#;

#[test]
fn scores_match_scikit_learn() {
    let m = Master::start(None);
    let p1 = [0.1, 0.8, 0.65, 0.3, 0.9, 0.45, 0.4, 0.7, 0.2, 0.55];
    let binary = json!({
        "y_true": [0, 1, 1, 0, 1, 0, 1, 1, 0, 0],
        "y_pred": [0, 1, 1, 0, 1, 1, 0, 1, 0, 0],
        "y_proba": p1.iter().map(|p| vec![1.0 - p, *p]).collect::<Vec<_>>(),
    });
    let multi = json!({
        "y_true": ["a", "b", "c", "a", "b", "c", "a", "c", "b"],
        "classes": ["a", "b", "c"],
        "y_proba": [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2],
                    [0.3, 0.3, 0.4], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4], [0.3, 0.5, 0.2],
                    [0.1, 0.8, 0.1]],
    });
    let regression = json!({
        "y_true": [3.0, -0.5, 2.0, 7.0, 4.2, 0.0],
        "y_pred": [2.5, 0.0, 2.0, 8.0, 3.9, -0.3],
    });
    let dir = tempfile::tempdir().unwrap();
    let vectors = json!({"binary": binary, "multi": multi, "regression": regression});
    put(dir.path(), "vectors.json", vectors.to_string().as_bytes());
    let reference = python(dir.path(), SKLEARN_SCORES);
    for (case, types) in [
        ("binary", &["accuracy", "f1", "roc_auc", "log_loss"][..]),
        ("multi", &["accuracy", "f1", "roc_auc", "log_loss"][..]),
        ("regression", &["rmse", "mae", "r2"][..]),
    ] {
        let mut body = vectors[case].clone();
        body["score_types"] = json!(types);
        let (status, v) = m.request("POST", "/scores", Some(body));
        assert_eq!(status, 200, "{case}: {v}");
        for t in types {
            let (ours, theirs) = (&v["scores"][t], &reference[case][t]);
            assert!(
                (ours.as_f64().unwrap() - theirs.as_f64().unwrap()).abs() < 1e-12,
                "{case} {t}: datarun {ours} vs scikit-learn {theirs}"
            );
            eprintln!("{case} {t}: {ours} (scikit-learn {theirs})");
        }
    }
    let (_, v) = m.request(
        "POST",
        "/scores",
        Some(
            json!({"score_types": ["log_loss", "r2"], "y_true": [1.0], "y_pred": [1.0],
                    "y_proba": [[0.5, 0.5]], "classes": [0, 1]}),
        ),
    );
    assert_eq!(
        v["higher_is_better"],
        json!({"log_loss": false, "r2": true})
    );
}

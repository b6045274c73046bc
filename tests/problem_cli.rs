//! Problem datasets through the command line: the real binary against a real master, agent,
//! Docker and fold image, with `examples/text_problem` (JSON lines of texts in three topics and
//! their `specific.py`). `tests/problem_script.rs` checks the same flow over HTTP; here it is
//! `dataset upload FILE...`, `dataset split --custom --wait`, `dataset file`, `dataset show`,
//! `submission submit` and `submission list`, and what the CLI says when something is wrong.

mod common;

use common::ml::{docker_inventory, wait_submission};
use common::Master;
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(300);
const KIT: &str = "examples/text_problem";

fn kit(path: &str) -> String {
    format!("{KIT}/{path}")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(kit(path)).unwrap_or_else(|e| panic!("{KIT}/{path}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `datarun ARGS` fails with exit code `code` and says `want` on stderr.
fn fails(m: &Master, args: &[&str], code: i32, want: &str) -> Output {
    let out = m.cli(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "datarun {args:?}: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(want),
        "datarun {args:?} should say {want:?}: {}",
        stderr(&out)
    );
    out
}

fn upload(m: &Master, name: &str, files: &[&str]) -> String {
    let mut args = vec!["dataset", "upload"];
    args.extend(files);
    args.extend([
        "--name",
        name,
        "--score",
        "accuracy,log_loss",
        "--workflow",
        "vectorizer,classifier",
    ]);
    m.cli_ok(&args).trim().to_string()
}

#[test]
fn a_text_problem_through_the_cli_end_to_end() {
    let m = Master::start(Some(&docker_inventory(2)));
    let d = upload(&m, "topics", &[&kit("docs.jsonl"), &kit("specific.py")]);
    assert_eq!(d, "1");

    let list = m.cli_ok(&["dataset", "list"]);
    assert!(list.contains("KIND"), "{list}");
    let row = list.lines().find(|l| l.contains("topics")).unwrap();
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[2], words[3], words[5]),
        ("1", "topics", "-", "-", "problem"),
        "{list}"
    );
    let listed: Value = serde_json::from_str(&m.cli_ok(&["dataset", "list", "--json"])).unwrap();
    assert_eq!(listed["datasets"][0]["problem"], "specific.py", "{listed}");

    // A problem dataset splits by its script: --ratio gets the master's 400, word for word.
    fails(
        &m,
        &["dataset", "split", &d, "--ratio", "0.2"],
        1,
        "400 Bad Request: dataset 1 has a problem script (specific.py); its split is the script's prepare_data",
    );

    // Without --wait: the split's id at once, running.
    let bad = std::fs::read_to_string(kit("specific.py")).unwrap().replace(
        "def prepare_data(path):",
        "def prepare_data(path):\n    raise ValueError('no documents for this split')\n\n\ndef _unused(path):",
    );
    assert!(bad.contains("no documents for this split"));
    let bad_dir = m.dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::write(bad_dir.join("specific.py"), bad).unwrap();
    let bad_script = bad_dir.join("specific.py").to_str().unwrap().to_string();
    let b = upload(&m, "bad-prepare", &[&kit("docs.jsonl"), &bad_script]);
    let bad_split = m.cli_ok(&["dataset", "split", &b, "--custom"]);
    assert_eq!(bad_split.trim(), "1", "{bad_split}");

    // With --wait: the result of prepare_data.
    let out = m.cli_ok(&[
        "dataset",
        "split",
        &d,
        "--custom",
        "--wait",
        "--timeout",
        "5m",
    ]);
    assert_eq!(
        out.trim(),
        "split 2: done, 240 train rows, 60 test rows; files test.jsonl, train.jsonl",
        "{out}"
    );
    let show = m.cli_ok(&["dataset", "show", &d]);
    assert!(
        show.starts_with(
            "dataset 1 \"topics\": problem script specific.py, target -, scores accuracy,log_loss, workflow vectorizer,classifier"
        ),
        "{show}"
    );
    let role = |name: &str| {
        let line = show.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(
        (role("docs.jsonl"), role("specific.py")),
        ("data".into(), "script".into()),
        "{show}"
    );
    assert!(
        show.contains(
            "split 2: custom, done: 240 train, 60 test rows; files test.jsonl, train.jsonl"
        ),
        "{show}"
    );

    // Files of the dataset and of its split, to stdout or -o, as the API serves them.
    assert_eq!(
        m.cli(&["dataset", "file", &d, "specific.py"]).stdout,
        read("specific.py")
    );
    let to = m.dir.path().join("train.jsonl");
    m.cli_ok(&[
        "dataset",
        "file",
        &d,
        "train.jsonl",
        "--split",
        "2",
        "-o",
        to.to_str().unwrap(),
    ]);
    let (status, _, want) = m.get_bytes(&format!("/datasets/{d}/files/train.jsonl?split=2"));
    assert_eq!(status, 200);
    assert_eq!(std::fs::read(&to).unwrap(), want);
    assert_eq!(
        want.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        240
    );
    fails(
        &m,
        &["dataset", "file", &d, "train.jsonl"],
        3,
        "404 Not Found: no file \"train.jsonl\" here; the files are: docs.jsonl, specific.py",
    );

    // The failing prepare_data: exit 1 with the script's traceback.
    let out = fails(
        &m,
        &[
            "dataset",
            "split",
            &b,
            "--custom",
            "--wait",
            "--timeout",
            "5m",
        ],
        1,
        "failed: prepare_data did not finish",
    );
    assert!(
        stderr(&out).contains("no documents for this split"),
        "{}",
        stderr(&out)
    );
    let show = m.cli_ok(&["dataset", "show", &b]);
    assert!(
        show.contains("split 1: custom, failed: prepare_data did not finish"),
        "{show}"
    );

    let (vec, clf) = (
        kit("submissions/good/vectorizer.py"),
        kit("submissions/good/classifier.py"),
    );
    let sub = m.cli_ok(&[
        "submission",
        "submit",
        "--dataset",
        &d,
        "--split",
        "2",
        "--name",
        "tfidf",
        "--file",
        &vec,
        "--file",
        &clf,
        "--cv",
        "5",
        "--stratify",
    ]);
    let sub: i64 = sub.trim().parse().unwrap();
    let done = wait_submission(&m, sub, LONG);
    for f in done["folds"].as_array().unwrap() {
        assert_eq!(f["state"], "TESTED", "{f}");
    }

    let v: Value =
        serde_json::from_str(&m.cli_ok(&["submission", "list", "--dataset", &d, "--json"]))
            .unwrap();
    let s = &v["submissions"][0];
    assert_eq!(v["submissions"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (
            &s["id"],
            &s["dataset_id"],
            &s["split_id"],
            &s["name"],
            &s["states"]
        ),
        (
            &json!(sub),
            &json!(1),
            &json!(2),
            &json!("tfidf"),
            &json!({"TESTED": 5})
        ),
        "{v}"
    );
    assert_eq!(s["folds"].as_array().unwrap().len(), 5, "{v}");
    let table = m.cli_ok(&["submission", "list"]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        ["ID", "DATASET", "SPLIT", "NAME", "OWNER", "FOLDS", "CREATED"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..7],
        [
            sub.to_string().as_str(),
            "1",
            "2",
            "tfidf",
            "admin",
            "TESTED",
            "5"
        ],
        "{table}"
    );
    let none: Value =
        serde_json::from_str(&m.cli_ok(&["submission", "list", "--dataset", &b, "--json"]))
            .unwrap();
    assert_eq!(none["submissions"], json!([]), "{none}");
}

#[test]
fn the_cli_says_what_is_wrong_with_a_problem_upload() {
    let m = Master::start(None);
    // Several files, none a script: refused before anything is sent.
    fails(
        &m,
        &[
            "dataset",
            "upload",
            &kit("docs.jsonl"),
            &kit("README.md"),
            "--name",
            "x",
        ],
        1,
        "several files make a problem dataset, which needs its problem script (a .py file) among them; got docs.jsonl, README.md",
    );
    fails(
        &m,
        &[
            "dataset",
            "upload",
            &kit("docs.jsonl"),
            &kit("specific.py"),
            "--name",
            "x",
            "--problem",
            "problem.py",
        ],
        1,
        "--problem \"problem.py\" is not among the files (docs.jsonl, specific.py)",
    );
    fails(
        &m,
        &[
            "dataset",
            "upload",
            &kit("docs.jsonl"),
            &kit("specific.py"),
            &kit("make_data.py"),
            "--name",
            "x",
        ],
        1,
        "several scripts (specific.py, make_data.py): say which is the problem script with --problem NAME",
    );
    // One CSV still needs its target.
    fails(
        &m,
        &["dataset", "upload", "examples/iris/iris.csv", "--name", "x"],
        1,
        "--target is required for a CSV dataset",
    );
    assert_eq!(
        m.cli_ok(&["dataset", "list", "--json"]).trim(),
        "{\n  \"datasets\": []\n}"
    );
    // --ratio and --custom: one of them, not both (clap's usage errors exit 2).
    fails(&m, &["dataset", "split", "1"], 2, "--ratio");
    fails(
        &m,
        &["dataset", "split", "1", "--ratio", "0.2", "--custom"],
        2,
        "cannot be used with",
    );
    fails(
        &m,
        &["dataset", "split", "1", "--ratio", "0.2", "--wait"],
        2,
        "cannot be used with",
    );

    // --problem picks the script among several; a table dataset refuses --custom (the 400).
    let p = m.cli_ok(&[
        "dataset",
        "upload",
        &kit("docs.jsonl"),
        &kit("specific.py"),
        &kit("make_data.py"),
        "--name",
        "picked",
        "--problem",
        "specific.py",
        "--json",
    ]);
    let p: Value = serde_json::from_str(&p).unwrap();
    assert_eq!(p["dataset"]["problem"], "specific.py", "{p}");
    let t = m.cli_ok(&[
        "dataset",
        "upload",
        "examples/iris/iris.csv",
        "--name",
        "iris",
        "--target",
        "species",
    ]);
    let list = m.cli_ok(&["dataset", "list"]);
    let kinds: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(kinds, ["problem", "table"], "{list}");
    fails(
        &m,
        &["dataset", "split", t.trim(), "--custom", "--wait"],
        1,
        "is one CSV table without a problem script",
    );
}

//! Work beyond one fold, through the CLI and REST: arrays with an index and a concurrency cap,
//! dependencies (after-ok, after-any) with outputs passed along, failures that travel down a
//! chain with the reason, and what another owner or a malformed request gets.

mod common;

use common::{sh, Master, BIN};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const EIGHT_SLOTS: &str = r#"
[[runner]]
name = "local"
transport = "local"
executor = "process"
slots = 8
cpus = 8
memory = "4G"
"#;

/// Intervals [start, end] in ns, from the witness lines `start T` / `end T` of each file.
fn max_overlap(dir: &std::path::Path) -> (usize, usize) {
    let mut points = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        files += 1;
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let (kind, t) = line.split_once(' ').unwrap();
            let t: i128 = t.trim().parse().unwrap();
            points.push((t, if kind == "start" { 1 } else { -1 }));
        }
    }
    // Ends before starts at the same instant.
    points.sort();
    let (mut now, mut max) = (0i64, 0i64);
    for (_, d) in points {
        now += d;
        max = max.max(now);
    }
    (files, max as usize)
}

#[test]
fn an_array_of_100_with_a_cap_of_4_never_runs_more_than_4() {
    let m = Master::start(Some(EIGHT_SLOTS));
    m.wait_ready(1);
    let witness = m.dir.path().join("witness");
    std::fs::create_dir(&witness).unwrap();
    let script = format!(
        "echo start $(date +%s%N) >> {w}/$DATARUN_ARRAY_INDEX; sleep 0.05; echo end $(date +%s%N) >> {w}/$DATARUN_ARRAY_INDEX",
        w = witness.display()
    );
    let out = m.cli_ok(&["submit", "--array", "0-99%4", "--", "sh", "-c", &script]);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), 100, "{out}");
    let array = names[0].split_once('.').unwrap().0.to_string();
    assert_eq!(names[0], format!("{array}.0"));
    assert_eq!(names[99], format!("{array}.99"));
    // Beyond the cap, folds wait (a state of their own), saying why.
    let v = m.get(&format!("/arrays/{array}"));
    assert_eq!(v["array"]["size"], 100);
    assert_eq!(v["array"]["cap"], 4);
    let last: Value =
        serde_json::from_str(&m.cli_ok(&["fold", "show", names[99], "--json"])).unwrap();
    assert_eq!(last["fold"]["state"], "waiting", "{last}");
    assert!(
        last["fold"]["reason"]
            .as_str()
            .unwrap()
            .contains("at most 4 folds at once"),
        "{last}"
    );
    assert_eq!(last["fold"]["array"]["index"], 99);
    // `queue wait` takes ARRAY.INDEX names.
    let mut wait = vec!["queue", "wait", "--timeout", "120s"];
    wait.extend(names.iter().copied());
    let out = m.cli(&wait);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (files, overlap) = max_overlap(&witness);
    assert_eq!(
        files, 100,
        "every index ran once, with its own $DATARUN_ARRAY_INDEX"
    );
    assert!(overlap <= 4, "{overlap} folds of the array ran at once");
    assert!(
        overlap >= 2,
        "the cap is a cap, not one at a time ({overlap})"
    );
    let v = m.get(&format!("/arrays/{array}"));
    assert_eq!(v["array"]["counts"]["done"], 100, "{v}");
    let listed = m.cli_ok(&[
        "queue",
        "status",
        "--history",
        "--array",
        &array,
        "--limit",
        "0",
    ]);
    assert_eq!(listed.lines().filter(|l| l.contains(" done ")).count(), 100);
}

#[test]
fn a_chain_passes_outputs_along_and_failures_travel_down_with_the_reason() {
    let m = Master::start(Some(EIGHT_SLOTS));
    m.wait_ready(1);
    // A 3-level chain: each appends to its parent's out.txt. The first sleeps, so its
    // children are seen waiting.
    let first = m.cli_ok(&[
        "submit",
        "--",
        "sh",
        "-c",
        "sleep 1; printf 1 > $DATARUN_OUTPUT/out.txt",
    ]);
    let first = first.trim().to_string();
    let step = "cat input/out.txt > $DATARUN_OUTPUT/out.txt; printf x >> $DATARUN_OUTPUT/out.txt";
    let second = m.cli_ok(&[
        "submit",
        "--input-from",
        &format!("{first}:out.txt"),
        "--",
        "sh",
        "-c",
        step,
    ]);
    let second = second.trim().to_string();
    let third = m.cli_ok(&[
        "submit",
        "--after",
        &first,
        "--input-from",
        &format!("{second}:out.txt"),
        "--",
        "sh",
        "-c",
        step,
    ]);
    let third = third.trim().to_string();
    let f = m.fold(third.parse().unwrap());
    assert_eq!(f["fold"]["state"], "waiting", "{f}");
    assert_eq!(
        f["fold"]["reason"],
        format!("waiting for folds {first}, {second} to end"),
        "{f}"
    );
    let out = m.cli(&["queue", "wait", &third, "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.cli_ok(&["fold", "output", &third, "out.txt"]), "1xx");

    // A failing parent: its after-ok child fails saying why, and so does the grandchild;
    // an after-any child runs anyway.
    let bad = m
        .cli_ok(&["submit", "--", "sh", "-c", "sleep 0.5; exit 3"])
        .trim()
        .to_string();
    let child = m
        .cli_ok(&["submit", "--after-ok", &bad, "--", "true"])
        .trim()
        .to_string();
    let grandchild = m
        .cli_ok(&["submit", "--after", &child, "--", "true"])
        .trim()
        .to_string();
    let anyway = m
        .cli_ok(&["submit", "--after-any", &bad, "--", "true"])
        .trim()
        .to_string();
    let out = m.cli(&["queue", "wait", &grandchild, "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "the grandchild failed");
    let c = m.fold(child.parse().unwrap());
    assert_eq!(c["fold"]["state"], "failed");
    assert_eq!(
        c["fold"]["reason"],
        format!("fold {bad} it runs after (after-ok) is failed"),
        "{c}"
    );
    assert_eq!(c["fold"]["attempts"], 0, "never ran");
    let g = m.fold(grandchild.parse().unwrap());
    assert_eq!(
        g["fold"]["reason"],
        format!("fold {child} it runs after (after-ok) is failed"),
        "{g}"
    );
    let out = m.cli(&["queue", "wait", &anyway, "--timeout", "60s"]);
    assert!(out.status.success(), "after-any runs after a failure");

    // A parent done without the output a child takes: the child fails, naming it.
    // (Done before the child is submitted: a parent that ended already is settled at submit.)
    let no_output = m.cli_ok(&["submit", "--", "true"]).trim().to_string();
    m.wait_all(&[no_output.parse().unwrap()], Duration::from_secs(30));
    let wants = m
        .cli_ok(&[
            "submit",
            "--input-from",
            &format!("{no_output}:model.pkl"),
            "--",
            "true",
        ])
        .trim()
        .to_string();
    let out = m.cli(&["queue", "wait", &wants, "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1));
    let w = m.fold(wants.parse().unwrap());
    assert_eq!(
        w["fold"]["reason"],
        format!("fold {no_output} has no output \"model.pkl\" to pass on"),
        "{w}"
    );
}

#[test]
fn dependencies_and_arrays_refuse_what_is_not_theirs_or_malformed() {
    let m = Master::start(Some(EIGHT_SLOTS));
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();
    m.wait_ready(1);
    let mine = m.submit(vec![sh("true")])[0];
    m.wait_all(&[mine], Duration::from_secs(60));
    // Another owner's fold is as missing as one that does not exist; nothing is stored.
    let before = m.get("/queue");
    for parent in [mine, 999_999] {
        let mut spec = sh("true");
        spec["after"] = json!([{ "fold": parent }]);
        let (status, v) = m.request_as(&bob, "POST", "/folds", Some(spec));
        assert_eq!(status, 400, "{v}");
        assert_eq!(
            v["error"]["message"],
            format!("fold 0: after: fold {parent} does not exist"),
            "{v}"
        );
    }
    assert_eq!(m.get("/queue"), before, "nothing stored");
    let mut spec = sh("true");
    spec["after"] = json!([{ "fold": mine, "when": "sometimes" }]);
    let (status, _) = m.request("POST", "/folds", Some(spec));
    assert_eq!(status, 400);
    // Arrays: malformed specifications are refused naming the part.
    for (array, says) in [
        ("4-1", "ends before it starts"),
        ("0-9%0", "cap"),
        ("0-200000", "more than"),
    ] {
        let (status, v) = m.request(
            "POST",
            "/arrays",
            Some(json!({ "spec": sh("true"), "array": array })),
        );
        assert_eq!(status, 400, "{array}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    // 100,000 copies of a 200 KiB spec would be 20 GB: refused before anything is stored.
    let mut big = sh("true");
    big["env"] = json!({ "PAD": "x".repeat(30_000), "PAD2": "x".repeat(30_000) });
    let (status, v) = m.request(
        "POST",
        "/arrays",
        Some(json!({ "spec": big, "array": "0-99999" })),
    );
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("array: its folds' specs"),
        "{v}"
    );
    let (status, v) = m.request(
        "POST",
        "/arrays",
        Some(json!({ "spec": sh("sleep 30"), "array": "0-5%2" })),
    );
    assert_eq!(status, 201, "{v}");
    let array = v["array"].as_i64().unwrap();
    // Bob sees neither the array nor its folds by ARRAY.INDEX.
    let (status, _) = m.request_as(&bob, "GET", &format!("/arrays/{array}"), None);
    assert_eq!(status, 404);
    let out = Command::new(BIN)
        .args(["fold", "show", &format!("{array}.1")])
        .env("DATARUN_SERVER", &m.url)
        .env("DATARUN_TOKEN", &bob)
        .env_remove("DATARUN_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "not found");
    let out = m.cli(&["fold", "show", "7.x"]);
    assert_eq!(out.status.code(), Some(2), "not a fold name");
    // The whole array is removed at once, by its owner.
    let out = m.cli_ok(&["queue", "remove", "--array", &array.to_string()]);
    assert_eq!(out.trim(), "removed 6 of 6 matching folds");
    let v = m.get(&format!("/arrays/{array}"));
    assert_eq!(v["array"]["counts"]["removed"], 6, "{v}");
}

#[test]
fn an_array_that_stops_on_failure_removes_its_waiting_siblings_saying_why() {
    let m = Master::start(Some(EIGHT_SLOTS));
    m.wait_ready(1);
    // Index 0 fails at once with its own error; index 1 runs on; the rest wait for the cap.
    let script = "if [ \"$DATARUN_ARRAY_INDEX\" = 0 ]; then exit 3; fi; sleep 1";
    let out = m.cli_ok(&[
        "submit",
        "--array",
        "0-9%2",
        "--stop-on-failure",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), 10);
    let array = names[0].split_once('.').unwrap().0.to_string();
    let mut wait = vec!["queue", "wait", "--timeout", "60s"];
    wait.extend(names.iter().copied());
    let out = m.cli(&wait);
    assert_eq!(out.status.code(), Some(1), "one failed, the rest removed");
    let v = m.get(&format!("/arrays/{array}"));
    assert_eq!(v["array"]["stop_on_failure"], true);
    let counts = &v["array"]["counts"];
    assert_eq!(counts["failed"], 1, "{v}");
    // Index 1 was running when 0 failed (a cap of 2): it finishes; 2..9 were waiting.
    assert_eq!(counts["done"], 1, "{v}");
    assert_eq!(counts["removed"], 8, "{v}");
    let f: Value = serde_json::from_str(&m.cli_ok(&["fold", "show", names[5], "--json"])).unwrap();
    let first: i64 =
        serde_json::from_str::<Value>(&m.cli_ok(&["fold", "show", names[0], "--json"])).unwrap()
            ["fold"]["id"]
            .as_i64()
            .unwrap();
    assert_eq!(
        f["fold"]["reason"],
        format!("stopped: fold {first} of array {array} failed with its own error (exit code 3)"),
        "{f}"
    );
    // Without the option, a failure stops nothing.
    let out = m.cli_ok(&["submit", "--array", "0-3%1", "--", "sh", "-c", "exit 3"]);
    let names: Vec<&str> = out.lines().collect();
    let mut wait = vec!["queue", "wait", "--timeout", "60s"];
    wait.extend(names.iter().copied());
    m.cli(&wait);
    let array = names[0].split_once('.').unwrap().0;
    assert_eq!(
        m.get(&format!("/arrays/{array}"))["array"]["counts"]["failed"],
        4
    );
}

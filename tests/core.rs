//! End-to-end tests of the core: the real binary as master, its local agent, real processes,
//! a real SQLite file, real HTTP.

mod common;

use common::{python3, sh, Master};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const FOUR_SLOTS: &str = r#"
[queues.H]
priority = 10

[[runner]]
name = "local"
transport = "local"
slots = 4
cpus = 8
memory = "8G"
queues = ["default", "H"]
executor = "process"
gpus = ["0", "1"]
"#;

#[test]
fn fifty_folds_across_two_queues_run_on_four_slots() {
    let m = Master::start(Some(FOUR_SLOTS));
    // Hold the runner busy first so the rest queue up and ordering by priority shows.
    let mut folds = Vec::new();
    for i in 0..50 {
        let queue = if i % 2 == 0 { "default" } else { "H" };
        let mut f = sh(&format!(
            "echo fold-{i} > \"$DATARUN_OUTPUT/out.txt\"; sleep 0.2"
        ));
        f["queue"] = json!(queue);
        f["priority"] = json!(i % 5);
        folds.push(f);
    }
    let ids = m.submit(folds);
    assert_eq!(ids.len(), 50);
    let ended = m.wait_all(&ids, Duration::from_secs(120));
    for (i, f) in ended.iter().enumerate() {
        assert_eq!(f["state"], "done", "fold {}: {f}", ids[i]);
        assert_eq!(f["attempts"], 1);
        let out = m.cli_ok(&["fold", "output", &ids[i].to_string(), "out.txt"]);
        assert_eq!(out.trim(), format!("fold-{i}"));
    }
    // Never more than 4 at once: rebuild concurrency from the attempts' start and end times.
    let mut edges = Vec::new();
    let mut starts: Vec<(i64, String, i64)> = Vec::new();
    for id in &ids {
        let a = &m.fold(*id)["attempts"][0];
        let (s, e) = (
            a["started_at"].as_i64().unwrap(),
            a["ended_at"].as_i64().unwrap(),
        );
        assert!(e >= s);
        edges.push((s, 1));
        edges.push((e, -1));
        let f = &m.fold(*id)["fold"];
        starts.push((
            s,
            f["queue"].as_str().unwrap().to_string(),
            f["priority"].as_i64().unwrap(),
        ));
    }
    edges.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    assert!(peak <= 4, "{peak} folds ran at once on 4 slots");
    assert!(
        peak >= 2,
        "folds should have run in parallel, peak was {peak}"
    );
    // Queue H (priority 10) goes first: its folds start, on average, before the default queue's.
    let mean = |q: &str| {
        let v: Vec<i64> = starts.iter().filter(|s| s.1 == q).map(|s| s.0).collect();
        v.iter().sum::<i64>() as f64 / v.len() as f64
    };
    assert!(mean("H") < mean("default"), "queue H should run first");

    // The CLI sees it all.
    let status = m.cli_ok(&["queue", "status"]);
    assert!(
        status.contains("Total: 50 folds; 0 idle, 0 running, 0 held, 50 done"),
        "{status}"
    );
    let json: Value =
        serde_json::from_str(&m.cli_ok(&["queue", "status", "--all", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 50);
    let table = m.cli_ok(&["queue", "status", "--all"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 51);
    let runners = m.cli_ok(&["runners", "status"]);
    assert!(
        runners.contains("local") && runners.contains("0/4"),
        "{runners}"
    );
    assert!(m
        .cli(&["queue", "wait", &ids[0].to_string(), &ids[49].to_string()])
        .status
        .success());
}

#[test]
fn measures_peak_memory_and_cpu_time() {
    let py = python3();
    let m = Master::start(Some(FOUR_SLOTS));
    let alloc = json!({
        "command": [py, "-c", "import time\nx = bytearray(200*1024*1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(0.5)"],
        "resources": {"cpus": 1, "memory": "1G"}
    });
    let busy = json!({
        "command": [py, "-c", "import os, time\nt = time.time()\nwhile time.time() - t < 2: pass\nopen(os.environ['DATARUN_OUTPUT'] + '/cpu', 'w').write(str(time.process_time()))"],
        "resources": {"cpus": 1, "memory": "256M"}
    });
    let ids = m.submit(vec![alloc, busy]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let peak = folds[0]["metrics"]["peak_memory"].as_u64().unwrap() as f64;
    let want = 200.0 * 1024.0 * 1024.0;
    assert!(
        (peak - want).abs() / want < 0.15,
        "peak memory {peak} not within 15% of 200 MiB"
    );
    // Compared with what the fold measured of itself, so a loaded machine does not matter.
    let cpu = folds[1]["metrics"]["cpu_ms"].as_u64().unwrap() as f64;
    let own: f64 = m
        .cli_ok(&["fold", "output", &ids[1].to_string(), "cpu"])
        .trim()
        .parse::<f64>()
        .unwrap()
        * 1000.0;
    assert!(own > 250.0, "the busy loop got {own} ms of CPU");
    assert!(
        (cpu - own).abs() / own < 0.15,
        "cpu time {cpu} ms not within 15% of the fold's own {own} ms"
    );
    let show = m.cli_ok(&["fold", "show", &ids[0].to_string()]);
    assert!(show.contains("success"), "{show}");
}

#[test]
fn time_limits_and_memory_cap_end_folds_with_the_right_outcome() {
    let py = python3();
    let m = Master::start(Some(FOUR_SLOTS));
    let mut soft = sh("sleep 30");
    soft["soft_time_limit"] = json!("1s");
    soft["hard_time_limit"] = json!("20s");
    let mut hard = sh("trap '' TERM; while true; do sleep 0.1; done");
    hard["soft_time_limit"] = json!("1s");
    hard["hard_time_limit"] = json!("3s");
    let oom = json!({
        "command": [py, "-c", "x = bytearray(600*1024*1024)\nfor i in range(0, len(x), 4096): x[i] = 1"],
        "resources": {"cpus": 1, "memory": "200M"}
    });
    let fail = sh("echo boom >&2; exit 3");
    let ids = m.submit(vec![soft, hard, oom, fail]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let kind = |f: &Value| f["outcome"]["kind"].as_str().unwrap_or("").to_string();
    assert_eq!(kind(&folds[0]), "timed_out_soft", "{}", folds[0]);
    assert_eq!(kind(&folds[1]), "timed_out_hard", "{}", folds[1]);
    let wall = folds[1]["metrics"]["wall_ms"].as_u64().unwrap();
    assert!(
        (2900..8000).contains(&wall),
        "killed at the hard limit of 3 s, wall {wall} ms"
    );
    assert_eq!(kind(&folds[2]), "out_of_memory", "{}", folds[2]);
    assert_eq!(kind(&folds[3]), "exit_code", "{}", folds[3]);
    assert_eq!(folds[3]["outcome"]["code"], 3);
    for i in [0, 1, 3] {
        assert_eq!(folds[i]["state"], "failed", "{}", folds[i]);
    }
    // Out of memory holds the fold, so it can be released with a larger grant.
    assert_eq!(folds[2]["state"], "held");
    assert_eq!(folds[2]["hold_code"], "out_of_memory");
    let log = m.cli_ok(&["fold", "log", &ids[3].to_string()]);
    assert!(log.contains("boom"), "{log}");
}

#[test]
fn a_fold_asking_for_more_gpus_than_any_runner_says_why() {
    let m = Master::start(Some(FOUR_SLOTS));
    let mut f = sh("true");
    f["resources"]["gpus"] = json!(3);
    let (status, v) = m.request("POST", "/folds", Some(f));
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["held"][0]["code"], "unmatchable");
    let shown = m.fold(id);
    assert_eq!(shown["fold"]["state"], "held");
    assert_eq!(shown["fold"]["hold_code"], "unmatchable");
    let reason = shown["fold"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("gpu") && reason.contains('2') && reason.contains('3'),
        "{reason}"
    );
    let text = m.cli_ok(&["fold", "show", &id.to_string()]);
    assert!(text.contains("Why it is not running"), "{text}");
    assert!(text.to_lowercase().contains("gpus"), "{text}");
    // The CLI warns at submit time.
    let out = m.cli(&["submit", "--gpus", "3", "--", "true"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("held"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hold_release_and_remove_kill_running_folds() {
    let m = Master::start(Some(FOUR_SLOTS));
    let ids = m.submit(vec![sh("sleep 60"), sh("sleep 60")]);
    m.wait_state(ids[0], "running", Duration::from_secs(20));
    m.wait_state(ids[1], "running", Duration::from_secs(20));
    m.cli_ok(&["queue", "hold", &ids[0].to_string()]);
    m.cli_ok(&["queue", "remove", &ids[1].to_string()]);
    // The kill is real: both attempts end as cancelled within seconds.
    for id in &ids {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let a = &m.fold(*id)["attempts"][0];
            if a["outcome"]["kind"] == "cancelled" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "attempt of fold {id} was not killed: {a}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(m.fold(ids[0])["fold"]["state"], "held");
    assert_eq!(m.fold(ids[1])["fold"]["state"], "removed");
    let out = m.cli(&["queue", "wait", &ids[1].to_string()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "wait on a removed fold is not success"
    );
    m.cli_ok(&["queue", "release", &ids[0].to_string()]);
    m.wait_state(ids[0], "running", Duration::from_secs(20));
    assert_eq!(m.fold(ids[0])["fold"]["attempts"], 2);
    m.cli_ok(&["queue", "remove", &ids[0].to_string()]);
}

#[test]
fn kill_9_of_the_master_loses_nothing_and_runs_nothing_twice() {
    let mut m = Master::start(Some(FOUR_SLOTS));
    let folds: Vec<Value> = (0..12)
        .map(|i| {
            let mut f = sh(&format!("sleep 1.5; echo {i} >> \"$DATARUN_OUTPUT/runs\""));
            f["max_retries"] = json!(2);
            f
        })
        .collect();
    let ids = m.submit(folds);
    m.wait_state(ids[0], "running", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    m.kill9();
    std::thread::sleep(Duration::from_millis(500));
    m.spawn();
    let ended = m.wait_all(&ids, Duration::from_secs(120));
    let mut ran: BTreeMap<i64, usize> = BTreeMap::new();
    for (id, f) in ids.iter().zip(&ended) {
        assert_eq!(f["state"], "done", "fold {id}: {f}");
        let shown = m.fold(*id);
        let attempts = shown["attempts"].as_array().unwrap();
        let successes = attempts
            .iter()
            .filter(|a| a["outcome"]["kind"] == "success")
            .count();
        assert_eq!(
            successes, 1,
            "fold {id} recorded {successes} results: {attempts:?}"
        );
        let ended_events = shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "attempt_ended")
            .count();
        assert_eq!(
            ended_events,
            attempts.len(),
            "one end per attempt for fold {id}"
        );
        ran.insert(*id, attempts.len());
    }
    // The folds running at the kill were re-adopted, not rerun.
    assert!(
        ran.values().all(|n| *n == 1),
        "every fold ran once: {ran:?}"
    );
}

#[test]
fn a_missing_program_ends_the_fold_with_an_error_naming_it() {
    let m = Master::start(Some(FOUR_SLOTS));
    let ids = m.submit(vec![
        json!({"command": ["datarun-no-such-program", "x"]}),
        json!({"command": ["true"]}),
    ]);
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    assert_eq!(folds[0]["outcome"]["kind"], "error", "{}", folds[0]);
    let message = folds[0]["outcome"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("datarun-no-such-program") && message.contains("not found in PATH"),
        "{message}"
    );
    assert_eq!(folds[1]["outcome"]["kind"], "success", "{}", folds[1]);
}

//! `queue status` as condor_q shows a pool: live folds by default with RUN_TIME, the history
//! newest first, filters by owner, queue and state; hold, release and remove by constraint as
//! `condor_rm -constraint`, a tenant's constraint narrowed to its own folds; the master's log
//! names each assignment and end and every admin action with its token's owner.

mod common;

use common::{sh, Master, BIN};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::Duration;

const INVENTORY: &str = r#"
[[runner]]
name = "local"
transport = "local"
executor = "process"
slots = 2
cpus = 2
memory = "2G"
queues = ["default", "batch"]
"#;

fn cli_as(m: &Master, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DATARUN_SERVER", &m.url)
        .env("DATARUN_TOKEN", token)
        .env_remove("DATARUN_DATA_DIR")
        .output()
        .unwrap()
}

fn in_queue(q: &str, script: &str) -> Value {
    let mut f = sh(script);
    f["queue"] = json!(q);
    f
}

/// The id column of a fold table (its first word of each line after the header).
fn ids_of(table: &str) -> Vec<i64> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("ID"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn status_lists_live_folds_and_history_and_bulk_actions_follow_constraints() {
    let m = Master::start_logged(Some(INVENTORY));
    m.wait_ready(1);
    let bob = m.cli_ok(&["token", "create", "bob"]).trim().to_string();

    // Two ended folds (one done, one failed), then two long ones running and idle ones behind.
    let ended = m.submit(vec![sh("true"), sh("exit 3")]);
    m.wait_all(&ended, Duration::from_secs(30));
    let running = m.submit(vec![sh("sleep 60"), sh("sleep 60")]);
    for id in &running {
        m.wait_state(*id, "running", Duration::from_secs(30));
    }
    let batch = m.submit(vec![in_queue("batch", "true"); 3]);
    let bobs = m.submit_as(&bob, vec![in_queue("batch", "true"); 2]);
    std::thread::sleep(Duration::from_millis(1200));

    // Default: counts, then the live folds (running ones with RUN_TIME); idle ones counted only.
    let status = m.cli_ok(&["queue", "status"]);
    assert!(
        status.contains("Total: 9 folds; 5 idle, 2 running"),
        "{status}"
    );
    assert_eq!(ids_of(&status), running, "{status}");
    let row = status
        .lines()
        .find(|l| l.starts_with(&running[0].to_string()))
        .unwrap();
    // ID OWNER DATE TIME STATE RUNNER RUN_TIME ...: over a second by now, and counting.
    let cols: Vec<&str> = row.split_whitespace().collect();
    let secs: f64 = cols[6].trim_end_matches('s').parse().unwrap_or(0.0);
    assert!(
        cols[4] == "running" && (1.0..30.0).contains(&secs),
        "RUN_TIME of a running fold: {row}"
    );
    let v: Value = serde_json::from_str(&m.cli_ok(&["queue", "status", "--json"])).unwrap();
    assert_eq!(v["folds"].as_array().unwrap().len(), 2, "{v}");
    // Filters: by queue and owner (counts and folds), by state (idle listed on request).
    let idle = m.cli_ok(&["queue", "status", "--state", "idle", "--queue", "batch"]);
    let mut want: Vec<i64> = batch.iter().chain(&bobs).copied().collect();
    want.sort_unstable();
    assert_eq!(ids_of(&idle), want, "{idle}");
    let only_bob = m.cli_ok(&["queue", "status", "--owner", "bob", "--state", "idle"]);
    assert_eq!(ids_of(&only_bob), bobs, "{only_bob}");
    assert!(only_bob.contains("Total: 2 folds; 2 idle"), "{only_bob}");

    // History: ended folds, newest first, limited.
    let history = m.cli_ok(&["queue", "status", "--history"]);
    assert_eq!(ids_of(&history), vec![ended[1], ended[0]], "{history}");
    let one = m.cli_ok(&["queue", "status", "--history", "--limit", "1"]);
    assert_eq!(ids_of(&one), vec![ended[1]], "{one}");
    assert!(one.contains("more folds match"), "{one}");
    let failed = m.cli_ok(&[
        "queue",
        "status",
        "--history",
        "--state",
        "failed",
        "--json",
    ]);
    let failed: Vec<Value> = serde_json::from_str(&failed).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], ended[1]);

    // Bulk by constraint. Bob's constraint reaches only his folds, whatever it says.
    let out = cli_as(&m, &bob, &["queue", "hold", "--queue", "batch"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "held 2 of 2 matching folds"
    );
    for id in &bobs {
        assert_eq!(m.fold(*id)["fold"]["state"], "held");
    }
    for id in &batch {
        assert_eq!(m.fold(*id)["fold"]["state"], "idle", "not bob's");
    }
    let out = cli_as(&m, &bob, &["queue", "hold", "--owner", "admin"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "another owner's folds: forbidden"
    );
    // An empty constraint is a usage error, not "every fold".
    let out = m.cli(&["queue", "remove"]);
    assert_eq!(out.status.code(), Some(2));
    let (status, v) = m.request("POST", "/folds/bulk/remove", Some(json!({})));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least one of owner"),
        "{v}"
    );
    let (status, v) = m.request(
        "POST",
        "/folds/bulk/explode",
        Some(json!({"queue": "batch"})),
    );
    assert_eq!(status, 404, "{v}");

    // Admin: release bob's by owner (with new requests), remove the running ones by state.
    let out = m.cli_ok(&["queue", "release", "--owner", "bob", "--memory", "64M"]);
    assert_eq!(out.trim(), "released 2 of 2 matching folds");
    assert_eq!(
        m.fold(bobs[0])["fold"]["spec"]["resources"]["memory"],
        64 << 20
    );
    let out = m.cli_ok(&[
        "queue", "remove", "--state", "running", "--queue", "default",
    ]);
    assert_eq!(out.trim(), "removed 2 of 2 matching folds");
    for id in &running {
        m.wait_state(*id, "removed", Duration::from_secs(30));
    }
    let out = m.cli_ok(&["queue", "hold", "--state", "done"]);
    assert_eq!(
        out.trim(),
        "held 0 of 0 matching folds",
        "an ended fold is not held"
    );

    // The log: assignments and ends with runner and outcome, admin actions with the owner.
    let all: Vec<i64> = batch.iter().chain(&bobs).copied().collect();
    m.wait_all(&all, Duration::from_secs(60));
    let log = m.serve_log();
    let line = |needle: &str| log.lines().any(|l| l.contains(needle));
    assert!(
        line(&format!("fold={} attempt=", ended[0])) && line("runner=local"),
        "assignment lines:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("ended")
            && l.contains(&format!("fold={}", ended[1]))
            && l.contains("state=failed")),
        "end lines:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("admin action")
            && l.contains("owner=admin")
            && l.contains("path=/api/v1/folds/bulk/release")),
        "audit lines:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("admin action") && l.contains("owner=bob")),
        "bob is no admin:\n{log}"
    );
}

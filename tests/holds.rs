//! Held folds with codes, release with new requests, and the out-of-memory policy.

mod common;

use common::{python3, sh, Master};
use serde_json::{json, Value};
use std::time::Duration;

const RUNNER: &str = "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 2\ncpus = 4\nmemory = \"4G\"\nqueues = [\"*\"]\n";

fn hungry(py: &str, mb: u32, grant: &str) -> Value {
    json!({
        "command": [py, "-c", format!("x = bytearray({mb} * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1")],
        "resources": {"cpus": 1, "memory": grant}
    })
}

#[test]
fn out_of_memory_holds_and_release_with_more_memory_runs_it() {
    let py = python3();
    let m = Master::start(Some(RUNNER));
    // Waits are long: in the full suite, tests writing gigabytes of outputs can stall this
    // master's fsyncs (and so its runner's hello) for tens of seconds.
    let ids = m.submit(vec![hungry(py, 300, "100M")]);
    let f = m.wait_all(&ids, Duration::from_secs(180));
    assert_eq!(
        (f[0]["state"].as_str(), f[0]["hold_code"].as_str()),
        (Some("held"), Some("out_of_memory")),
        "{}",
        f[0]
    );
    assert!(
        f[0]["reason"].as_str().unwrap().contains("100M"),
        "{}",
        f[0]["reason"]
    );
    let id = ids[0].to_string();
    // A request no runner can meet is refused and changes nothing.
    let out = m.cli(&["queue", "release", "--memory", "100G", &id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.fold(ids[0])["fold"]["state"], "held");
    let (status, v) = m.request(
        "POST",
        &format!("/folds/{id}/release"),
        Some(json!({"colour": "red"})),
    );
    assert_eq!(status, 400, "{v}");
    m.cli_ok(&["queue", "release", "--memory", "1G", &id]);
    let f = m.wait_all(&ids, Duration::from_secs(180));
    assert_eq!(f[0]["state"], "done", "{}", f[0]);
    assert_eq!(f[0]["spec"]["resources"]["memory"], 1u64 << 30);
    let events = m.fold(ids[0])["events"].to_string();
    assert!(events.contains("with memory 1G"), "{events}");
}

#[test]
fn the_oom_policy_grows_the_grant_up_to_its_ceiling() {
    let py = python3();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("master.toml");
    std::fs::write(
        &cfg,
        "[policy.out_of_memory]\ngrow = 2.0\nceiling = \"1G\"\n",
    )
    .unwrap();
    let m = Master::start_with(Some(RUNNER), &["--config", cfg.to_str().unwrap()]);
    // 300 MB needs two doublings from 100M (200M, 400M); 3 GB never fits under the 1G ceiling.
    let ids = m.submit(vec![hungry(py, 300, "100M"), hungry(py, 3000, "256M")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let a = m.fold(ids[0]);
        let b = m.fold(ids[1]);
        if a["fold"]["state"] == "done"
            && b["fold"]["state"] == "held"
            && b["fold"]["spec"]["resources"]["memory"] == 1u64 << 30
        {
            assert_eq!(
                a["fold"]["spec"]["resources"]["memory"],
                400u64 << 20,
                "{}",
                a["fold"]
            );
            assert_eq!(a["attempts"].as_array().unwrap().len(), 3);
            assert!(
                a["events"].to_string().contains("the out-of-memory policy"),
                "{}",
                a["events"]
            );
            assert_eq!(
                b["fold"]["hold_code"], "out_of_memory",
                "at the ceiling it stays held"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}\n{}",
            a["fold"],
            b["fold"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exhausted_retries_hold_with_their_code() {
    let m = Master::start(Some(RUNNER));
    let mut f = sh("exit 3");
    f["max_retries"] = json!(1);
    let plain = sh("exit 3");
    let ids = m.submit(vec![f, plain]);
    let f = m.wait_all(&ids, Duration::from_secs(180));
    assert_eq!(
        (f[0]["state"].as_str(), f[0]["hold_code"].as_str()),
        (Some("held"), Some("retries_exhausted")),
        "{}",
        f[0]
    );
    assert!(
        f[0]["reason"].as_str().unwrap().contains("failed 2 times"),
        "{}",
        f[0]["reason"]
    );
    assert_eq!(f[0]["attempts"], 2);
    assert_eq!(
        f[1]["state"], "failed",
        "a fold without retries that fails has simply failed"
    );
}

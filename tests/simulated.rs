//! Simulated runners: agents inside the master's process that speak the real protocol to the
//! real loop, store and scheduler, and "run" a fold for the time its command names. One
//! machine stands in for many runners.

mod common;

use common::Master;
use serde_json::json;
use std::time::{Duration, Instant};

fn sleep(secs: &str) -> serde_json::Value {
    json!({"command": ["sleep", secs], "resources": {"cpus": 1, "memory": "1G"}})
}

#[test]
fn two_hundred_simulated_runners_run_a_thousand_folds_for_the_time_they_name() {
    let m = Master::start(Some(
        r#"
[[runner]]
name = "sim"
transport = "simulated"
count = 200
slots = 2
cpus = 4
memory = "8G"
"#,
    ));
    // Every runner connects and says hello over the protocol.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runners = m.get("/runners");
        let list = runners["runners"].as_array().unwrap();
        assert_eq!(list.len(), 200);
        if list.iter().all(|r| r["state"] == "ready") {
            assert_eq!(list[0]["facts"]["cpus"], 4.0);
            assert!(list[0]["facts"]["agent_version"]
                .as_str()
                .unwrap()
                .contains("simulated"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runners did not connect: {runners}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    let ids = m.submit((0..1000).map(|_| sleep("0.5")).collect());
    let folds = m.wait_all(&ids, Duration::from_secs(60));
    let took = t0.elapsed();
    assert!(folds.iter().all(|f| f["state"] == "done"), "{folds:?}");
    // 1000 folds of 0.5 s on 400 slots: three waves at least.
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let one = m.fold(ids[0]);
    let wall = one["attempts"][0]["metrics"]["wall_ms"].as_u64().unwrap();
    assert_eq!(wall, 500, "{one}");
    // A fold that "fails" fails, and no runner is ever over its slots.
    let bad = m.submit(vec![json!({"command": ["false"]})]);
    let f = &m.wait_all(&bad, Duration::from_secs(10))[0];
    assert_eq!(f["state"], "failed", "{f}");
    for r in m.get("/runners")["runners"].as_array().unwrap() {
        assert!(r["slots_used"].as_u64().unwrap() <= 2);
    }
}

#[test]
fn an_inventory_count_only_goes_with_simulated_runners() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    std::fs::write(
        &inv,
        "[[runner]]\nname = \"a\"\ntransport = \"local\"\ncount = 3\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["inventory", "check"])
        .arg(&inv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runners.toml:4") && err.contains("count"),
        "{err}"
    );
    std::fs::write(
        &inv,
        "[[runner]]\nname = \"s\"\ntransport = \"simulated\"\ncount = 3\nslots = 4\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["inventory", "check", "--json"])
        .arg(&inv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s-1", "s-2", "s-3"]);
}

//! End-to-end throughput: N trivial folds (`true`) on 8 local slots, through the real binary,
//! from the first submit to the last fold done. Run with `cargo bench --bench end_to_end`
//! (env BENCH_FOLDS to change N, default 1000).

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_FOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    std::fs::write(
        &inv,
        "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_datarun"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--inventory")
        .arg(&inv)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(data.join("server")) {
            break u.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::blocking::Client::new();
    // Wait for the local runner to be ready.
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/runners"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if v["runners"][0]["state"] == "ready" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fold = json!({"command": ["true"], "resources": {"cpus": 0.5, "memory": "16M"}});
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let folds: Vec<Value> = chunk.iter().map(|_| fold.clone()).collect();
        let resp = http
            .post(format!("{url}/api/v1/folds/batch"))
            .bearer_auth(&token)
            .json(&json!({ "folds": folds }))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    let submitted = start.elapsed();
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/queue"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let done: u64 = v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "done")
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        let failed: u64 = v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "failed")
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert_eq!(failed, 0, "trivial folds failed");
        if done as usize == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = start.elapsed();
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    println!(
        "end_to_end: {n} trivial folds on 8 local slots: submitted in {:.2} s, all done in {:.2} s => {:.0} folds/s",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
}

//! 200 trivial folds on 8 docker slots through datarun, against the same 200 containers started
//! with `docker run --rm` 8 at a time, in one run. `cargo bench --bench docker_vs_run`
//! (BENCH_FOLDS to change the count). Needs Docker and the test image
//! (`./images/build-busybox.sh`).

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGE: &str = "datarun/busybox:test";

fn bare_docker_run(n: usize, parallel: usize) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    let ok = Command::new("docker")
                        .args([
                            "run",
                            "--rm",
                            "--network",
                            "none",
                            "--memory",
                            "64m",
                            "--user",
                            "1000:1000",
                            IMAGE,
                            "true",
                        ])
                        .stdout(Stdio::null())
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok, "docker run failed");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    start.elapsed()
}

fn through_datarun(n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("runners.toml");
    std::fs::write(
        &inv,
        format!("[[runner]]\nname = \"bench\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"{IMAGE}\"]\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n"),
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
    let fold =
        json!({"command": ["true"], "image": IMAGE, "resources": {"cpus": 0.5, "memory": "64M"}});
    let folds: Vec<Value> = (0..n).map(|_| fold.clone()).collect();
    let start = Instant::now();
    let resp = http
        .post(format!("{url}/api/v1/folds/batch"))
        .bearer_auth(&token)
        .json(&json!({ "folds": folds }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/queue"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let count = |s: &str| -> u64 {
            v["counts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["state"] == s)
                .map(|c| c["count"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(count("failed"), 0, "folds failed: {v}");
        if count("done") as usize == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_FOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ok = Command::new("./images/build-busybox.sh")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "needs Docker and ./images/build-busybox.sh");
    let bare = bare_docker_run(n, 8);
    let ours = through_datarun(n);
    println!(
        "docker_vs_run: {n} trivial containers, 8 at a time: docker run --rm {:.2} s ({:.1}/s), datarun {:.2} s ({:.1}/s) => datarun/docker-run time ratio {:.2}",
        bare.as_secs_f64(),
        n as f64 / bare.as_secs_f64(),
        ours.as_secs_f64(),
        n as f64 / ours.as_secs_f64(),
        ours.as_secs_f64() / bare.as_secs_f64()
    );
}

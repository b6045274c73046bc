//! 200 trivial folds on 8 docker slots through datarun, against the same 200 containers started
//! with `docker run --rm` 8 at a time, in one run. `cargo bench --bench docker_vs_run`
//! (BENCH_FOLDS to change the count). Needs Docker and the test image
//! (`./images/build-busybox.sh`).

mod common;

use serde_json::json;
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
    let m = common::BenchMaster::start(&format!(
        "[[runner]]\nname = \"bench\"\ntransport = \"local\"\nexecutor = \"docker\"\nimages = [\"{IMAGE}\"]\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n"
    ));
    let fold =
        json!({"command": ["true"], "image": IMAGE, "resources": {"cpus": 0.5, "memory": "64M"}});
    m.run(&fold, n).1
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::count(200);
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

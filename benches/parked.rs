//! Trivial folds with a big queue parked behind them, through the real binary: 2,000 `true`
//! folds on 8 local slots, first with nothing else queued, then with BENCH_PARKED (default
//! 300,000) idle folds of another queue waiting behind them (its runner drained), in one run.
//! Prints both throughputs and their ratio, `queue status` latency with the parked folds, how
//! long a new high-priority fold stays idle, and the master's RSS. Run with
//! `cargo bench --bench parked` (BENCH_FOLDS to change the 2,000).

mod common;

use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    if common::listing() {
        return;
    }
    let n = common::count(2000);
    let parked: usize = std::env::var("BENCH_PARKED")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(300_000);
    let m = common::BenchMaster::start(
        "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"default\", \"H\"]\n\n\
         [[runner]]\nname = \"parking\"\ntransport = \"simulated\"\nslots = 4\nqueues = [\"parked\"]\n\n\
         [queues.H]\npriority = 10\n",
    );
    let fold = json!({"command": ["true"], "resources": {"cpus": 0.5, "memory": "16M"}});
    let (_, alone) = m.run(&fold, n);
    let alone_rate = n as f64 / alone.as_secs_f64();
    println!("parked: {n} trivial folds on 8 local slots, nothing else queued: {:.2} s = {alone_rate:.0} folds/s", alone.as_secs_f64());

    m.post("/runners/parking/drain", &json!({}));
    let t = Instant::now();
    let park = json!({"command": ["sleep", "1"], "queue": "parked", "resources": {"cpus": 1, "memory": "1G"}});
    for chunk in (0..parked).collect::<Vec<_>>().chunks(5000) {
        m.post(
            "/folds/batch",
            &json!({"folds": vec![park.clone(); chunk.len()]}),
        );
    }
    println!(
        "  {parked} folds parked behind (their runner drained) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (_, behind) = m.run(&fold, n);
    let behind_rate = n as f64 / behind.as_secs_f64();
    let mut status: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            m.get("/queue");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    status.sort_by(f64::total_cmp);
    let v = m.post(
        "/folds",
        &json!({"command": ["true"], "queue": "H", "resources": {"cpus": 0.5, "memory": "16M"}}),
    );
    let id = v["id"].as_i64().unwrap();
    let t = Instant::now();
    while m.get(&format!("/folds/{id}"))["fold"]["state"] == "idle" {
        std::thread::sleep(Duration::from_millis(2));
    }
    let high = t.elapsed().as_secs_f64() * 1000.0;
    let (rss, hwm) = m.rss_mb();
    println!(
        "  with them behind: {:.2} s = {behind_rate:.0} folds/s, {:.0}% of the throughput alone",
        behind.as_secs_f64(),
        100.0 * behind_rate / alone_rate
    );
    println!(
        "  queue status with {parked} parked: p50 {:.1} ms, max {:.1} ms; a high-priority fold left idle after {high:.0} ms; master RSS {rss:.0} MB (peak {hwm:.0} MB)",
        status[status.len() / 2],
        status[status.len() - 1]
    );
    println!(
        "{}",
        json!({"folds": n, "parked": parked, "alone_per_s": alone_rate.round(), "behind_per_s": behind_rate.round(),
               "ratio": behind_rate / alone_rate, "status_p50_ms": status[status.len() / 2],
               "high_priority_ms": high, "rss_mb": rss.round(), "rss_peak_mb": hwm.round()})
    );
}

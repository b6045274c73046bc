//! One master, many runners, a big queue: simulated runners (`transport = "simulated"`, the
//! real protocol, master, store and scheduler) stand in for SCALE_RUNNERS machines of 4 slots
//! (default 10,000), and SCALE_FOLDS folds (default 1,000,000) of SCALE_FOLD_SECS simulated
//! seconds on average (default 10; each between half and one and a half times that, seeded, so
//! that folds end all the time rather than in waves) wait in the queue.
//!
//! 1. Submit: the folds go in batches of 2,000 from 4 clients while the runners already run
//!    them (durable: each batch is acknowledged after its commit) → submits/s, and how long
//!    the pool took to fill.
//! 2. Steady state, SCALE_SECS seconds (default 20), the rest of the folds idle behind the
//!    full pool: folds end and are replaced → placements/s; meanwhile `GET /queue` and
//!    `GET /folds/{id}` latencies, a new high-priority fold's time to start, the master's cycle
//!    times (from its log) and RSS.
//!
//! The last line printed is one JSON object with the figures (`placements_per_s`,
//! `cycle_p99_ms`, `status_p50_ms`, `rss_mb`, ...). Run: `cargo bench --bench scale`;
//! small: `SCALE_RUNNERS=1000 SCALE_FOLDS=50000 cargo bench --bench scale`.

mod common;

use common::BenchMaster;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn inventory(runners: u64, queue: &str) -> String {
    format!(
        "[[runner]]\nname = \"sim\"\ntransport = \"simulated\"\ncount = {runners}\nslots = 4\ncpus = 8\nmemory = \"32G\"\nqueues = [\"{queue}\", \"H\"]\n\n[queues.H]\npriority = 10\n"
    )
}

/// The master's cycles as its log tells them: (ms, folds placed).
type Cycles = Arc<Mutex<Vec<(f64, u64)>>>;

/// A master on `runners` simulated runners whose cycles are collected.
fn start(runners: u64) -> (BenchMaster, Cycles) {
    let mut m = BenchMaster::start_with(&inventory(runners, "bench"), |cmd| {
        cmd.env("DATARUN_LOG", "warn,datarun::timing=debug")
            .stderr(Stdio::piped());
    });
    let cycles = Arc::new(Mutex::new(Vec::new()));
    let stderr = m.take_stderr().expect("piped stderr");
    let sink = cycles.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // "... cycle_ms=1.234 placed=56"
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            match (field("cycle_ms="), field("placed=")) {
                (Some(ms), Some(n)) => sink.lock().unwrap().push((ms, n as u64)),
                _ if line.contains("WARN") || line.contains("ERROR") => eprintln!("{line}"),
                _ if std::env::var_os("SCALE_TRACE").is_some() => eprintln!("{line}"),
                _ => {}
            }
        }
    });
    (m, cycles)
}

/// (idle, assigned or running, done) from `GET /queue`.
fn counts(b: &BenchMaster) -> (u64, u64, u64) {
    let v = b.get("/queue");
    let sum = |states: &[&str]| -> u64 {
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| states.contains(&c["state"].as_str().unwrap()))
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    };
    (
        sum(&["idle"]),
        sum(&["assigned", "running"]),
        sum(&["done"]),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn timed(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runners = env("SCALE_RUNNERS", 10_000);
    let folds = env("SCALE_FOLDS", 1_000_000);
    let fold_secs = env("SCALE_FOLD_SECS", 10);
    let steady_secs = env("SCALE_SECS", 20);
    let slots = runners * 4;
    println!("scale: {runners} simulated runners x 4 slots, {folds} folds of {fold_secs} s");

    let t0 = Instant::now();
    let (b, cycles) = start(runners);
    loop {
        let v = b.get("/runners");
        let list = v["runners"].as_array().unwrap();
        if list.iter().filter(|r| r["state"] == "ready").count() as u64 == runners {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let start_s = t0.elapsed().as_secs_f64();
    println!("  start: {runners} runners ready in {start_s:.1} s");

    // 1. Submit while the runners run what is already there.
    // Fold i runs fold_secs × (0.5 .. 1.5), from a fixed sequence.
    let fold = |i: u64| {
        let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        let secs = fold_secs as f64 * (0.5 + x);
        json!({"command": ["sleep", format!("{secs:.3}")], "queue": "bench",
               "resources": {"cpus": 1, "memory": "1G"}})
    };
    let batch = 2_000u64;
    let batches = folds.div_ceil(batch);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fill_target = slots.min(folds);
    let t = Instant::now();
    let fill_s = std::thread::scope(|s| {
        for _ in 0..4 {
            let (b, next, fold) = (&b, next.clone(), &fold);
            s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= batches {
                    return;
                }
                let n = batch.min(folds - i * batch);
                let batch_folds: Vec<Value> = (0..n).map(|k| fold(i * batch + k)).collect();
                let v = b.post("/folds/batch", &json!({ "folds": batch_folds }));
                assert_eq!(v["ids"].as_array().unwrap().len() as u64, n);
            });
        }
        // Meanwhile: when is the pool full?
        loop {
            let (_, running, done) = counts(&b);
            if running + done >= fill_target {
                break t.elapsed().as_secs_f64();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let submit_s = t.elapsed().as_secs_f64();
    let submits_per_s = folds as f64 / submit_s;
    let (idle, running, done) = counts(&b);
    assert_eq!(idle + running + done, folds);
    let (rss_parked, _) = b.rss_mb();
    println!(
        "  submit: {folds} folds in {submit_s:.1} s = {submits_per_s:.0} folds/s (durable), pool of {fill_target} full after {fill_s:.1} s; {idle} idle, master RSS {rss_parked:.0} MB"
    );
    let mut status_idle: Vec<f64> = (0..20)
        .map(|_| {
            timed(|| {
                counts(&b);
            })
        })
        .collect();
    status_idle.sort_by(f64::total_cmp);
    cycles.lock().unwrap().clear();

    // 3. Steady state: folds end and are replaced; measure while it lasts.
    let (_, _, done0) = counts(&b);
    let t = Instant::now();
    let mut status = Vec::new();
    let mut lookup = Vec::new();
    let mut first_start = Vec::new();
    let mut first_assigned = Vec::new();
    let mut probe = 1i64;
    while t.elapsed() < Duration::from_secs(steady_secs) {
        status.push(timed(|| {
            counts(&b);
        }));
        probe = (probe * 7919) % folds as i64 + 1;
        lookup.push(timed(|| drop(b.get(&format!("/folds/{probe}")))));
        if first_start.len() < 5
            && t.elapsed() > Duration::from_secs(2 + 3 * first_start.len() as u64)
        {
            let v = b.post(
                "/folds",
                &json!({"command": ["sleep", "1"], "queue": "H", "resources": {"cpus": 1, "memory": "1G"}}),
            );
            let id = v["id"].as_i64().unwrap();
            let s = Instant::now();
            let f = loop {
                let f = b.get(&format!("/folds/{id}"));
                if f["fold"]["state"] != "idle" {
                    break f;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            first_start.push(s.elapsed().as_secs_f64() * 1000.0);
            // The master's own clock: from its submit to its assignment (the events' times),
            // apart from how long the client's polling took to see it.
            let at = |kind: &str| {
                f["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["kind"] == kind)
                    .map(|e| e["at"].as_i64().unwrap())
            };
            if let (Some(submitted), Some(assigned)) = (at("submitted"), at("assigned")) {
                first_assigned.push((assigned - submitted) as f64);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, _, done1) = counts(&b);
    let steady = t.elapsed().as_secs_f64();
    let placements_per_s = (done1 - done0) as f64 / steady;
    let (rss, hwm) = b.rss_mb();
    status.sort_by(f64::total_cmp);
    lookup.sort_by(f64::total_cmp);
    first_start.sort_by(f64::total_cmp);
    let mut cycles: Vec<f64> = cycles.lock().unwrap().iter().map(|c| c.0).collect();
    cycles.sort_by(f64::total_cmp);
    println!(
        "  steady: {} folds ended and replaced in {steady:.1} s = {placements_per_s:.0} placements/s (demand {:.0}/s)",
        done1 - done0,
        slots as f64 / fold_secs as f64
    );
    println!(
        "  cycles: {} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
        cycles.len(),
        percentile(&cycles, 0.5),
        percentile(&cycles, 0.99),
        cycles.last().copied().unwrap_or(0.0)
    );
    println!(
        "  queue status: p50 {:.1} ms p99 {:.1} ms (after submitting: p50 {:.1} ms); fold lookup: p50 {:.1} ms p99 {:.1} ms",
        percentile(&status, 0.5),
        percentile(&status, 0.99),
        percentile(&status_idle, 0.5),
        percentile(&lookup, 0.5),
        percentile(&lookup, 0.99)
    );
    first_assigned.sort_by(f64::total_cmp);
    println!(
        "  high-priority fold left idle after: {:?} ms as the client saw it (after its submit was acknowledged, polling); {:?} ms from submitted to assigned by the master's events; master RSS {rss:.0} MB (peak {hwm:.0} MB)",
        first_start.iter().map(|v| v.round()).collect::<Vec<_>>(),
        first_assigned
    );
    println!(
        "{}",
        json!({
            "runners": runners, "folds": folds, "start_s": start_s,
            "submits_per_s": submits_per_s.round(),
            "fill_s": fill_s,
            "placements_per_s": placements_per_s.round(),
            "cycle_p50_ms": percentile(&cycles, 0.5), "cycle_p99_ms": percentile(&cycles, 0.99),
            "status_p50_ms": percentile(&status, 0.5), "status_p99_ms": percentile(&status, 0.99),
            "lookup_p50_ms": percentile(&lookup, 0.5), "lookup_p99_ms": percentile(&lookup, 0.99),
            "first_start_ms_max": first_start.last().copied().unwrap_or(0.0),
            "first_assigned_ms_max": first_assigned.last().copied().unwrap_or(0.0),
            "rss_mb": rss.round(), "rss_peak_mb": hwm.round(),
        })
    );
}

//! End-to-end throughput: N trivial folds (`true`) on 8 local slots, through the real binary,
//! from the first submit to the last fold done, on a runner without and with `prefetch = 8`
//! (README "Prefetch"), interleaved round by round so both meet the same load. Run with
//! `cargo bench --bench end_to_end` (env BENCH_FOLDS to change N, default 1000; BENCH_ROUNDS,
//! default 3).

mod common;

use serde_json::json;
use std::time::Duration;

fn runner(prefetch: u32) -> String {
    format!("[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\nprefetch = {prefetch}\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n")
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::count(1000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let fold = json!({"command": ["true"], "resources": {"cpus": 0.5, "memory": "16M"}});
    let masters = [
        (0, common::BenchMaster::start(&runner(0))),
        (8, common::BenchMaster::start(&runner(8))),
    ];
    let mut totals: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            // Who goes first alternates.
            let k = if round % 2 == 0 { k } else { 1 - k };
            let (prefetch, m) = &masters[k];
            let (submitted, total) = m.run(&fold, n);
            println!(
                "end_to_end: round {}: prefetch {prefetch}: {n} trivial folds on 8 local slots: submitted in {:.2} s, all done in {:.2} s => {:.0} folds/s",
                round + 1,
                submitted.as_secs_f64(),
                total.as_secs_f64(),
                n as f64 / total.as_secs_f64()
            );
            totals[k].push(total);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (plain, pre) = (median(&mut totals[0]), median(&mut totals[1]));
    println!(
        "end_to_end: medians of {rounds} rounds: prefetch 0: {:.2} s ({:.0} folds/s); prefetch 8: {:.2} s ({:.0} folds/s); {:.2}x",
        plain.as_secs_f64(),
        n as f64 / plain.as_secs_f64(),
        pre.as_secs_f64(),
        n as f64 / pre.as_secs_f64(),
        pre.as_secs_f64() / plain.as_secs_f64()
    );
}

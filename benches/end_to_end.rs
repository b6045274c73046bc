//! End-to-end throughput: N trivial folds (`true`) on 8 local slots, through the real binary,
//! from the first submit to the last fold done. Run with `cargo bench --bench end_to_end`
//! (env BENCH_FOLDS to change N, default 1000).

mod common;

use serde_json::json;

fn main() {
    if common::listing() {
        return;
    }
    let n = common::count(1000);
    let m = common::BenchMaster::start(
        "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n",
    );
    let fold = json!({"command": ["true"], "resources": {"cpus": 0.5, "memory": "16M"}});
    let (submitted, total) = m.run(&fold, n);
    println!(
        "end_to_end: {n} trivial folds on 8 local slots: submitted in {:.2} s, all done in {:.2} s => {:.0} folds/s",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
}

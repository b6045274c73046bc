//! Round trip through the CLI: `datarun submit -- CMD`, then `datarun queue wait ID`, one fold
//! at a time on 8 local slots, as a person at a terminal runs them: for `true` (which ends
//! before `queue wait` starts) and `sleep 0.25` (which ends while it waits). The median of
//! `BENCH_ROUNDS` rounds (default 20) after one warm-up, and beside it what the master itself
//! records from the fold's `submitted` event to its end. When `submit` takes `--wait`, the
//! same with that one command too. Run with `cargo bench --bench round_trip`.
//!
//! `BENCH_BASELINE=PATH` names another `datarun` binary (e.g. built from main) whose CLI runs
//! the same rounds against the same master, interleaved round by round with this one's, so
//! both meet the same load.

mod common;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    if common::listing() {
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let m = common::BenchMaster::start(
        "[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n",
    );
    let baseline = std::env::var("BENCH_BASELINE").ok();
    let run = |bin: &str, args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("DATARUN_DATA_DIR", m.data_dir())
            .env_remove("DATARUN_SERVER")
            .env_remove("DATARUN_TOKEN")
            .output()
            .expect("run datarun");
        assert!(
            out.status.success(),
            "datarun {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cli = |args: &[&str]| run(env!("CARGO_BIN_EXE_datarun"), args);
    let submit = ["submit", "--cpus", "0.5", "--memory", "16M"];
    // submit, then queue wait: (round trip, what the master recorded from submit to end).
    let round = |bin: &str, command: &[&str]| {
        let start = Instant::now();
        let out = run(bin, &[&submit[..], &["--"], command].concat());
        let id = out.trim().to_string();
        run(bin, &["queue", "wait", &id, "--timeout", "60s"]);
        (start.elapsed(), recorded(&m.get(&format!("/folds/{id}"))))
    };
    let with_wait = cli(&["submit", "--help"]).contains("--wait");
    let mut lines = Vec::new();
    // `true` ends before `queue wait` has started; `sleep 0.25` ends while it waits.
    for command in [&["true"][..], &["sleep", "0.25"][..]] {
        let this = env!("CARGO_BIN_EXE_datarun");
        round(this, command);
        let (mut trips, mut master, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            if let Some(bin) = &baseline {
                base.push(round(bin, command).0);
            }
            let (trip, recorded) = round(this, command);
            trips.push(trip);
            master.push(recorded);
        }
        let mut line = format!(
            "round_trip: submit + queue wait of one `{}` fold through the CLI: {}; the master records {} from submitted to ended",
            command.join(" "),
            summary(&mut trips),
            summary(&mut master)
        );
        if with_wait {
            let mut waits: Vec<Duration> = (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    cli(&[&submit[..], &["--wait", "--timeout", "60s", "--"], command].concat());
                    start.elapsed()
                })
                .collect();
            line.push_str(&format!("; submit --wait: {}", summary(&mut waits)));
        }
        if !base.is_empty() {
            line.push_str(&format!(
                "; the baseline's CLI, interleaved: {}",
                summary(&mut base)
            ));
        }
        lines.push(line);
    }
    for line in lines {
        println!("{line}");
    }
}

/// From the fold's `submitted` event to its last (`attempt_ended ...; fold is done`).
fn recorded(fold: &Value) -> Duration {
    let events = fold["events"].as_array().expect("events");
    let at = |e: &Value| e["at"].as_u64().unwrap();
    assert_eq!(fold["fold"]["state"], "done", "{fold}");
    Duration::from_millis(at(events.last().unwrap()) - at(&events[0]))
}

/// `median M ms (min A, max B) over N`.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}) over {}",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

//! datarun beside HyperQueue, in one run, interleaved round by round so both meet the same
//! load: N trivial folds (`true`, default 1,000) on 8 local slots, and the submit→done round
//! trip of one fold through each CLI.
//!
//! - datarun: `serve` with one local process runner of 8 slots and `prefetch = 8` (README
//!   "Prefetch"; HyperQueue's workers are handed tasks ahead too); `datarun submit --count N
//!   --wait -- true` (each fold 1 cpu, 16M) and `datarun submit --wait -- true`. The N folds
//!   also run on a second master whose runner has no prefetch, in the same rounds.
//! - HyperQueue: `hq server start`, `hq worker start --cpus 8`; `hq submit --array 1-N true`
//!   then `hq job wait`, and `hq submit --wait true`.
//!
//! HyperQueue is not a dependency: build it from source (README, "Benchmarks") and name the
//! binary in `HQ_BIN`; without it the bench says why and does nothing. `BENCH_FOLDS` (1000),
//! `BENCH_ROUNDS` (5) and `BENCH_TRIPS` (round trips per round, 10) change the sizes.
//! Also prints where the CPU of the N folds went, per fold, for each: the scheduler's own
//! processes, the folds themselves (their processes' start-up is most of it, and is the same
//! whoever starts them) and the CLI; with 2 cores the folds' own CPU sets a floor on the time.
//! Prints a table, the load average before and after (figures from a loaded machine say
//! little), and last one JSON line with the ratios (datarun / HyperQueue; below 1 is faster).
//! Run with `HQ_BIN=... cargo bench --bench versus_hq`.

mod common;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if common::listing() {
        return;
    }
    let Some(hq_bin) = std::env::var_os("HQ_BIN").map(PathBuf::from) else {
        println!(
            "versus_hq: skipped: HQ_BIN is not set (build HyperQueue from source and set HQ_BIN to its `hq` binary; README, \"Benchmarks\")"
        );
        return;
    };
    if !hq_bin.is_file() {
        println!(
            "versus_hq: skipped: HQ_BIN={} is not a file",
            hq_bin.display()
        );
        return;
    }
    let env_num = |key: &str, default: usize| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, rounds, trips) = (
        common::count(1000),
        env_num("BENCH_ROUNDS", 5),
        env_num("BENCH_TRIPS", 10),
    );
    let load_before = loadavg();
    let runner = |prefetch: u32| {
        format!("[[runner]]\nname = \"local\"\ntransport = \"local\"\nexecutor = \"process\"\nslots = 8\nprefetch = {prefetch}\ncpus = 8\nmemory = \"8G\"\nqueues = [\"*\"]\n")
    };
    let m = common::BenchMaster::start(&runner(8));
    let plain = common::BenchMaster::start(&runner(0));
    let hq = Hq::start(&hq_bin);
    let submit = |m: &common::BenchMaster, args: &[&str]| {
        let mut all = vec!["submit", "--cpus", "1", "--memory", "16M", "--wait"];
        all.extend_from_slice(&["--timeout", "600s"]);
        all.extend_from_slice(args);
        timed(
            Command::new(env!("CARGO_BIN_EXE_datarun"))
                .args(&all)
                .env("DATARUN_DATA_DIR", m.data_dir())
                .env_remove("DATARUN_SERVER")
                .env_remove("DATARUN_TOKEN"),
        )
    };
    let datarun = |args: &[&str]| submit(&m, args);
    let count = n.to_string();
    let array = format!("1-{n}");
    let mut times = Times::default();
    // Where the CPU of the N folds goes: the scheduler's own processes, the folds', the CLI's.
    let agent = *common::children_of(m.pid())
        .first()
        .expect("the master's local agent");
    let datarun_cpu = Processes {
        scheduler: vec![m.pid(), agent],
        runner: agent,
    };
    let hq_cpu = Processes {
        scheduler: vec![hq.server.id(), hq.worker.id()],
        runner: hq.worker.id(),
    };
    // One warm-up of each round trip (page cache, first connection).
    datarun(&["--", "true"]);
    hq.round_trip();
    for round in 0..rounds {
        // Who goes first alternates, so neither always meets the other's leftovers.
        let many_datarun = |usage: &mut Usage| {
            datarun_cpu.measure(usage, || datarun(&["--count", &count, "--", "true"]))
        };
        let many_hq = |usage: &mut Usage| hq_cpu.measure(usage, || hq.array(&array));
        let (d, h) = if round % 2 == 0 {
            let d = many_datarun(&mut times.datarun_cpu);
            (d, many_hq(&mut times.hq_cpu))
        } else {
            let h = many_hq(&mut times.hq_cpu);
            (many_datarun(&mut times.datarun_cpu), h)
        };
        times.datarun_many.push(d);
        times.hq_many.push(h);
        times
            .plain_many
            .push(submit(&plain, &["--count", &count, "--", "true"]));
        for _ in 0..trips {
            times.datarun_trip.push(datarun(&["--", "true"]));
            times.hq_trip.push(hq.round_trip());
        }
        eprintln!(
            "versus_hq: round {}/{rounds}: {n} folds: datarun {:.2} s, hq {:.2} s",
            round + 1,
            d.as_secs_f64(),
            h.as_secs_f64()
        );
    }
    let load_after = loadavg();
    times.report(n, rounds, trips, &load_before, &load_after);
}

/// The processes whose CPU a run of N folds is charged to.
struct Processes {
    /// The scheduler's own: datarun's master and agent, HyperQueue's server and worker.
    scheduler: Vec<u32>,
    /// The process that waits for the folds (their CPU is its children's).
    runner: u32,
}

impl Processes {
    /// Runs `run` (which starts and waits for the folds through the CLI) and adds the CPU
    /// each part spent meanwhile to `usage`.
    fn measure(&self, usage: &mut Usage, run: impl FnOnce() -> Duration) -> Duration {
        let own = |pids: &[u32]| pids.iter().map(|&p| common::Cpu::of(p).own).sum::<f64>();
        let (sched, folds, client) = (
            own(&self.scheduler),
            common::Cpu::of(self.runner).children,
            common::Cpu::waited_children(),
        );
        let took = run();
        usage.scheduler += own(&self.scheduler) - sched;
        usage.folds += common::Cpu::of(self.runner).children - folds;
        usage.client += common::Cpu::waited_children() - client;
        took
    }
}

/// CPU seconds spent on the N-fold runs, summed over the rounds.
#[derive(Default)]
struct Usage {
    scheduler: f64,
    folds: f64,
    client: f64,
}

impl Usage {
    /// Milliseconds per fold of each part: scheduler, folds, client.
    fn per_fold(&self, folds: usize) -> [f64; 3] {
        let per = |s: f64| s * 1000.0 / folds.max(1) as f64;
        [per(self.scheduler), per(self.folds), per(self.client)]
    }
}

#[derive(Default)]
struct Times {
    datarun_cpu: Usage,
    hq_cpu: Usage,
    datarun_many: Vec<Duration>,
    /// The same folds on a runner without prefetch.
    plain_many: Vec<Duration>,
    hq_many: Vec<Duration>,
    datarun_trip: Vec<Duration>,
    hq_trip: Vec<Duration>,
}

impl Times {
    fn report(&mut self, n: usize, rounds: usize, trips: usize, before: &str, after: &str) {
        let (dm, hm) = (median(&mut self.datarun_many), median(&mut self.hq_many));
        let (dt, ht) = (median(&mut self.datarun_trip), median(&mut self.hq_trip));
        let pm = median(&mut self.plain_many);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("versus_hq: medians, {rounds} interleaved rounds, load average before {before}, after {after}");
        println!("| measure | datarun | HyperQueue | datarun / HQ |");
        println!("|---|---|---|---|");
        println!(
            "| {n} `true` on 8 slots | {:.2} s ({:.0}/s) | {:.2} s ({:.0}/s) | {:.2} |",
            dm.as_secs_f64(),
            n as f64 / dm.as_secs_f64(),
            hm.as_secs_f64(),
            n as f64 / hm.as_secs_f64(),
            dm.as_secs_f64() / hm.as_secs_f64()
        );
        println!(
            "| the same, no prefetch | {:.2} s ({:.0}/s) | | {:.2} |",
            pm.as_secs_f64(),
            n as f64 / pm.as_secs_f64(),
            pm.as_secs_f64() / hm.as_secs_f64()
        );
        println!(
            "| submit --wait of one `true` ({} trips) | {:.1} ms | {:.1} ms | {:.2} |",
            rounds * trips,
            ms(dt),
            ms(ht),
            dt.as_secs_f64() / ht.as_secs_f64()
        );
        let (dc, hc) = (
            self.datarun_cpu.per_fold(n * rounds),
            self.hq_cpu.per_fold(n * rounds),
        );
        for (i, part) in [
            "scheduler (datarun: master + agent; HQ: server + worker)",
            "the folds themselves (`true`)",
            "the CLI (submit and wait)",
        ]
        .iter()
        .enumerate()
        {
            println!(
                "| CPU per fold: {part} | {:.3} ms | {:.3} ms | {:.2} |",
                dc[i],
                hc[i],
                dc[i] / hc[i]
            );
        }
        // No scheduler can run the folds faster than their own CPU allows on these cores.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
        let floor = |fold_ms: f64| n as f64 * fold_ms / 1000.0 / cores;
        println!(
            "| the folds' own CPU / {cores} cores (a floor no scheduler beats) | {:.2} s | {:.2} s | |",
            floor(dc[1]),
            floor(hc[1])
        );
        println!(
            "{}",
            json!({
                "bench": "versus_hq",
                "folds": n,
                "rounds": rounds,
                "datarun_many_s": dm.as_secs_f64(),
                "hq_many_s": hm.as_secs_f64(),
                "many_ratio": dm.as_secs_f64() / hm.as_secs_f64(),
                "datarun_no_prefetch_many_s": pm.as_secs_f64(),
                "no_prefetch_ratio": pm.as_secs_f64() / hm.as_secs_f64(),
                "datarun_trip_ms": ms(dt),
                "hq_trip_ms": ms(ht),
                "trip_ratio": dt.as_secs_f64() / ht.as_secs_f64(),
                "datarun_cpu_ms_per_fold": {"scheduler": dc[0], "folds": dc[1], "client": dc[2]},
                "hq_cpu_ms_per_fold": {"scheduler": hc[0], "folds": hc[1], "client": hc[2]},
                "loadavg_before": before,
                "loadavg_after": after,
            })
        );
    }
}

/// A HyperQueue server and one worker of 8 cpus, on a temp server dir.
struct Hq {
    bin: PathBuf,
    dir: tempfile::TempDir,
    server: Child,
    worker: Child,
}

impl Hq {
    fn start(bin: &Path) -> Hq {
        let dir = tempfile::tempdir().unwrap();
        let spawn = |args: &[&str]| {
            Command::new(bin)
                .args(args)
                .env("HQ_SERVER_DIR", dir.path().join("server"))
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("hq {args:?}: {e}"))
        };
        let server = spawn(&["server", "start"]);
        let hq = |dir: &Path| {
            let mut cmd = Command::new(bin);
            cmd.env("HQ_SERVER_DIR", dir.join("server"));
            cmd
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hq(dir.path())
            .args(["server", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "hq server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let worker = spawn(&["worker", "start", "--cpus", "8"]);
        let waited = hq(dir.path())
            .args(["worker", "wait", "1"])
            .stdout(Stdio::null())
            .status()
            .expect("hq worker wait");
        assert!(waited.success(), "hq worker wait 1 failed");
        Hq {
            bin: bin.to_path_buf(),
            dir,
            server,
            worker,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HQ_SERVER_DIR", self.dir.path().join("server"))
            .env("HQ_OUTPUT_MODE", "quiet")
            // Tasks write their stdout/stderr files (empty for `true`) under here.
            .current_dir(self.dir.path());
        cmd
    }

    /// `hq submit --array RANGE true`, then `hq job wait ID`.
    fn array(&self, range: &str) -> Duration {
        let start = Instant::now();
        let out = self
            .command(&["submit", "--array", range, "--", "true"])
            .output()
            .expect("hq submit");
        assert!(
            out.status.success(),
            "hq submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        timed(&mut self.command(&["job", "wait", &id]));
        start.elapsed()
    }

    fn round_trip(&self) -> Duration {
        timed(&mut self.command(&["submit", "--wait", "--", "true"]))
    }
}

impl Drop for Hq {
    fn drop(&mut self) {
        let _ = self
            .command(&["server", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for child in [&mut self.worker, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to its end; how long it took. It must succeed.
fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.stdout(Stdio::piped()).output().expect("run a CLI");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

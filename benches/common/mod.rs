//! What the end-to-end benches share: a real `datarun serve` on a temp dir, driven over HTTP.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BenchMaster {
    dir: tempfile::TempDir,
    child: Child,
    url: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl BenchMaster {
    /// Starts a master on `inventory` (TOML text) and waits until its first runner is ready.
    pub fn start(inventory: &str) -> BenchMaster {
        BenchMaster::start_with(inventory, |_| {})
    }

    /// `start`, with `configure` setting what else the `serve` command gets (environment,
    /// where its stderr goes).
    pub fn start_with(inventory: &str, configure: impl FnOnce(&mut Command)) -> BenchMaster {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("runners.toml");
        std::fs::write(&inv, inventory).unwrap();
        let data = dir.path().join("data");
        let mut cmd = Command::new(master_binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--inventory")
            .arg(&inv)
            .stdout(Stdio::null());
        configure(&mut cmd);
        let child = cmd.spawn().unwrap();
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
        let m = BenchMaster {
            dir,
            child,
            url,
            token,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap(),
        };
        while m.get("/runners")["runners"][0]["state"] != "ready" {
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// The master's data directory (the CLI finds the master and its token there).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().unwrap();
        assert!(status.is_success(), "POST {path}: {status}: {v}");
        v
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The master's stderr, when `start_with` piped it.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The master's resident memory now and at its peak, MB.
    pub fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }

    fn done(&self) -> u64 {
        let v = self.get("/queue");
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "done")
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    }

    /// Submits `n` copies of `fold` in batches of 100 and waits until all are done; returns
    /// (time to submit, time to the last fold done), both from the first submit.
    pub fn run(&self, fold: &Value, n: usize) -> (Duration, Duration) {
        let before = self.done() as usize;
        let start = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let folds: Vec<Value> = chunk.iter().map(|_| fold.clone()).collect();
            let resp = self
                .http
                .post(format!("{}/api/v1/folds/batch", self.url))
                .bearer_auth(&self.token)
                .json(&json!({ "folds": folds }))
                .send()
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
        }
        let submitted = start.elapsed();
        loop {
            let v = self.get("/queue");
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
            if count("done") as usize == before + n {
                return (submitted, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BenchMaster {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// CPU time from `/proc/<pid>/stat`, seconds: the process's own (all its threads) and that of
/// its children it has waited for.
#[derive(Clone, Copy, Default, Debug)]
pub struct Cpu {
    pub own: f64,
    pub children: f64,
}

impl Cpu {
    /// Of process `pid` now (zero if it is gone).
    pub fn of(pid: u32) -> Cpu {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name (in parentheses, which may hold spaces): fields 3 on.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let field = |n: usize| -> f64 {
            rest.split_whitespace()
                .nth(n - 3)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Cpu {
            own: (field(14) + field(15)) / tick,
            children: (field(16) + field(17)) / tick,
        }
    }

    /// The CPU time of the children this process has waited for (`getrusage`), seconds.
    pub fn waited_children() -> f64 {
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is valid and writable.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        s(usage.ru_utime) + s(usage.ru_stime)
    }
}

/// The child processes of `pid` (of all its threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Cargo and nextest list benches with `--list`; these have nothing to list.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

pub fn count(default: usize) -> usize {
    std::env::var("BENCH_FOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `datarun` the benches start as the master: this build's, or `BENCH_DATARUN` (another
/// build, e.g. an earlier commit's, to compare side by side on the same machine state).
pub fn master_binary() -> std::ffi::OsString {
    std::env::var_os("BENCH_DATARUN").unwrap_or_else(|| env!("CARGO_BIN_EXE_datarun").into())
}

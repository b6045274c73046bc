//! Test harness: runs the real `datarun` binary as a master on a temp data dir and talks to it
//! over real HTTP.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A JSON array of integers (fold ids in an answer).
pub fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|i| i.as_i64().unwrap_or_else(|| panic!("not an integer: {i}")))
        .collect()
}

pub mod daemon;
pub mod hooks;
pub mod ml;
pub mod pg;
pub mod procs;
pub mod python;

pub const BIN: &str = env!("CARGO_BIN_EXE_datarun");
/// The small test image (`images/build-busybox.sh`).
pub const BUSYBOX: &str = "datarun/busybox:test";

/// Fails loudly (never skips) unless a Docker engine answers; `why` says what needs it.
pub fn require_docker(why: &str) {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{why} needs a running Docker engine (docker info failed)"
    );
}

/// Builds `image` with its idempotent `images/<script>` (a no-op when it is up to date).
pub fn ensure_image(script: &str, image: &str) {
    require_docker(image);
    let built = Command::new(format!("./images/{script}"))
        .status()
        .unwrap_or_else(|e| panic!("run images/{script}: {e}"));
    assert!(built.success(), "cannot build {image} with images/{script}");
}

pub struct Master {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    pub token: String,
    pub inventory: Option<PathBuf>,
    pub extra: Vec<String>,
    /// Where `serve` writes its log, when the test reads it (else the test's stderr).
    pub log: Option<PathBuf>,
    http: reqwest::blocking::Client,
}

impl Master {
    /// Starts a master with the given inventory text (None: the embedded default).
    pub fn start(inventory: Option<&str>) -> Master {
        Master::start_with(inventory, &[])
    }

    /// Starts a master whose log goes to a file the test reads (`serve_log`).
    pub fn start_logged(inventory: Option<&str>) -> Master {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.log");
        let mut m = Master {
            dir,
            child: None,
            url: String::new(),
            token: String::new(),
            inventory: None,
            extra: Vec::new(),
            log: Some(log),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        if let Some(text) = inventory {
            let path = m.dir.path().join("runners.toml");
            std::fs::write(&path, text).unwrap();
            m.inventory = Some(path);
        }
        m.spawn();
        m
    }

    /// What `serve` logged so far (a master from `start_logged`).
    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.log.as_ref().expect("a logged master")).unwrap_or_default()
    }

    /// Starts a master with extra `serve` arguments.
    pub fn start_with(inventory: Option<&str>, extra: &[&str]) -> Master {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        Master::launch(inventory, extra, http)
    }

    /// Starts a master serving HTTPS with `cert` and `key` (PEM) and `extra` `serve` arguments;
    /// the harness trusts `ca`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path, extra: &[&str]) -> Master {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .add_root_certificate(ca);
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let mut args = vec!["--tls-cert", cert, "--tls-key", key];
        args.extend_from_slice(extra);
        Master::launch(None, &args, http)
    }

    fn launch(
        inventory: Option<&str>,
        extra: &[&str],
        http: reqwest::blocking::ClientBuilder,
    ) -> Master {
        let dir = tempfile::tempdir().expect("temp dir");
        let inventory = inventory.map(|text| {
            let path = dir.path().join("runners.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut m = Master {
            dir,
            child: None,
            url: String::new(),
            token: String::new(),
            inventory,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: None,
            http: http.build().unwrap(),
        };
        m.spawn();
        m
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts the serve process on the same data dir and waits until it answers.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.data_dir().join("server"));
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg("127.0.0.1:0");
        if let Some(inv) = &self.inventory {
            cmd.arg("--inventory").arg(inv);
        }
        cmd.args(&self.extra);
        cmd.env("DATARUN_LOG", "warn,datarun=debug")
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("serve log file"),
                ),
                None => Stdio::inherit(),
            });
        self.child = Some(cmd.spawn().expect("spawn datarun serve"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(url) = std::fs::read_to_string(self.data_dir().join("server")) {
                self.url = url.trim().to_string();
                self.token = std::fs::read_to_string(self.data_dir().join("admin.token"))
                    .unwrap()
                    .trim()
                    .to_string();
                if self
                    .http
                    .get(format!("{}/api/v1/health", self.url))
                    .send()
                    .is_ok()
                {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("datarun serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "datarun serve did not come up in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Runs the CLI against this master.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("DATARUN_DATA_DIR", self.data_dir())
            .env_remove("DATARUN_SERVER")
            .env_remove("DATARUN_TOKEN")
            .output()
            .expect("run datarun")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "datarun {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request_as(&self.token, method, path, body)
    }

    /// `request` with another token (another owner's, for tenancy tests).
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.url);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.url);
        let resp = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GET raw bytes: (status, headers, body).
    pub fn get_bytes(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let url = format!("{}/api/v1{path}", self.url);
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().unwrap().to_vec())
    }

    /// Waits (20 s at most) until `n` runners are ready, so that a test's first placements see
    /// the whole pool rather than whichever runner connected first.
    pub fn wait_ready(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get("/runners");
            let ready = v["runners"]
                .as_array()
                .map_or(0, |rs| rs.iter().filter(|r| r["state"] == "ready").count());
            if ready >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{n} runners ready: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Submits folds in one batch and returns their ids.
    pub fn submit(&self, folds: Vec<Value>) -> Vec<i64> {
        self.submit_as(&self.token, folds)
    }

    /// `submit` with another token (another owner's folds).
    pub fn submit_as(&self, token: &str, folds: Vec<Value>) -> Vec<i64> {
        let (status, v) = self.request_as(
            token,
            "POST",
            "/folds/batch",
            Some(json!({ "folds": folds })),
        );
        assert_eq!(status, 201, "submit: {v}");
        ints(&v["ids"])
    }

    pub fn fold(&self, id: i64) -> Value {
        self.get(&format!("/folds/{id}"))
    }

    /// Waits until every fold is done, failed, removed or held.
    pub fn wait_all(&self, ids: &[i64], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let folds: Vec<Value> = ids
                .iter()
                .map(|id| self.fold(*id)["fold"].clone())
                .collect();
            let stopped = folds.iter().all(|f| {
                matches!(
                    f["state"].as_str(),
                    Some("done" | "failed" | "removed" | "held")
                )
            });
            if stopped {
                return folds;
            }
            if Instant::now() > deadline {
                let states: Vec<String> = folds
                    .iter()
                    .map(|f| format!("{}:{}", f["id"], f["state"]))
                    .collect();
                panic!("folds did not end in {timeout:?}: {}", states.join(" "));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the agent process that owns `attempt` on local runner `runner`, from its
    /// journal (`agents/<runner>/attempts/<attempt>/run.json`: `owner` on its first line).
    pub fn attempt_owner(&self, runner: &str, attempt: i64) -> i32 {
        let path = self
            .data_dir()
            .join("agents")
            .join(runner)
            .join("attempts")
            .join(attempt.to_string())
            .join("run.json");
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
        let entry: Value =
            serde_json::from_slice(first).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        entry["owner"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no owner in {entry}", path.display())) as i32
    }

    /// Waits until fold `id` has an event of `kind`.
    pub fn wait_event(&self, id: i64, kind: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.fold(id)["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == kind)
        {
            assert!(Instant::now() < deadline, "fold {id}: no {kind} event");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_state(&self, id: i64, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.fold(id);
            if f["fold"]["state"] == state {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "fold {id} did not reach {state}: {}",
                f["fold"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: the master stops; its agents finish and exit on their own.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        // Kill leftover agents and folds started from this data dir.
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.data_dir().to_string_lossy().as_ref())
            .status();
        // And the containers of its docker runners (warm ones wait for folds until removed).
        if let Ok(agents) = std::fs::read_dir(self.data_dir().join("agents")) {
            for agent in agents.flatten() {
                remove_agent_containers(&agent.path());
            }
        }
    }
}

/// Removes every container an agent with this state dir left on the shared engine (fold
/// containers, warm containers), found by its namespace label; nothing without Docker.
pub fn remove_agent_containers(state_dir: &Path) {
    let dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    let ns = &datarun::store::sha256_hex(dir.to_string_lossy().as_bytes())[..12];
    let filter = format!("label=datarun.namespace={ns}");
    if let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
    {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// A fold spec running `sh -c SCRIPT`.
pub fn sh(script: &str) -> Value {
    json!({ "command": ["sh", "-c", script], "resources": { "cpus": 0.1, "memory": "64M" } })
}

pub fn python3() -> &'static str {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 is needed by this test (install it: apt-get install python3)"
    );
    "python3"
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Peak resident memory (VmHWM) of a live process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kb * 1024
}

/// The pids of a process's children.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Bytes in the files under `path` (recursively; 0 when it does not exist).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

impl Master {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("serve runs").id()
    }

    /// The pid of the master's local agent (`datarun agent --stdio`), once it runs.
    pub fn agent_pid(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let agent = children(self.pid()).into_iter().find(|c| {
                std::fs::read(format!("/proc/{c}/cmdline"))
                    .map(|cmd| String::from_utf8_lossy(&cmd).contains("agent\0--stdio"))
                    .unwrap_or(false)
            });
            if let Some(pid) = agent {
                return pid;
            }
            assert!(Instant::now() < deadline, "the local agent never started");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the master keeps on disk: the database (with its WAL) and the blob files.
    pub fn stored_bytes(&self) -> u64 {
        let data = self.data_dir();
        ["datarun.db", "datarun.db-wal", "datarun.db-shm", "blobs"]
            .iter()
            .map(|p| disk_usage(&data.join(p)))
            .sum()
    }
}

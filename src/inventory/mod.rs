//! The inventory: `runners.toml`, edited by hand by operators. Parsing is strict: unknown keys,
//! duplicate names, bad sizes or durations, soft > hard, oversized CIDRs are errors naming the
//! file, line and key. Parsing is pure (text in, runners out); `load` reads the file.
//!
//! Rules beyond the obvious ones (see `runners.toml` at the repository root for an example):
//! - `transport` defaults to `[defaults].transport`, else `"ssh"`; an ssh runner needs an
//!   `address`, a local runner must not have one. Nothing is guessed from the address.
//! - `user`, `identity_file`, `port`, `state_dir` and `install_docker` only mean something for ssh runners: written in a local
//!   runner they are an error, inherited from `[defaults]` they are dropped. A local runner's
//!   `port` is 0. `identity_file` is kept as written (`~` is not expanded here, see
//!   [`RunnerSpec::identity_path`]).
//! - The ssh port comes from the address (`host:port`, `[IPv6]:port`), else the `port` key
//!   (runner, then `[defaults]`), else 22. A port both in the address and in the runner's own
//!   `port` key is an error.
//! - An address with a `/` is a pool: one runner per usable host address, named `NAME-1` ..
//!   `NAME-n` in address order, even for a single-address `/32` or `/128` (so names do not
//!   change when the pool grows). IPv4 pools leave out the network and broadcast addresses
//!   (except /31, /32); IPv6 pools leave out the all-zeros anycast address (except /127, /128).
//!   At most [`MAX_CIDR_HOSTS`] runners per pool.
//! - Defaults when neither the runner nor `[defaults]` says: slots 1, queues `["default"]`,
//!   executor docker, no cpus/memory (the agent reports its own), no gpus, labels, time limits.
//! - `requirements` (an expression over fold attributes, see `crate::expr`) must parse;
//!   errors give the column within the expression. `attributes` is a table of strings,
//!   integers, floats and booleans whose names are identifiers that do not shadow a built-in
//!   runner attribute. Like every other key, both are inherited from `[defaults]` as a whole.
//! - An inventory without any runner is an error.

mod parse;
pub(crate) mod tree;

#[cfg(test)]
mod tests;

use crate::expr::AttrValue;
use crate::table::Table;
use crate::units::{format_duration, format_size};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most slots one runner may have.
pub const MAX_SLOTS: u32 = 1024;
/// The most simulated runners one `[[runner]]` entry may expand to (`count`).
pub const MAX_SIMULATED: u32 = 100_000;
/// The most runners one CIDR pool may expand to.
pub const MAX_CIDR_HOSTS: u128 = 1024;
/// The ssh port used when neither the address nor a `port` key gives one.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// Where the agent of an ssh runner lives unless the inventory says `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/datarun";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Local,
    Ssh,
    /// Agents simulated inside the master process (for scale tests and benchmarks): they speak
    /// the real protocol and "run" a fold for the time its command names (`sleep 3`).
    Simulated,
    /// An agent daemon on this machine, reached on its Unix socket (`socket`), which several
    /// masters may share.
    Unix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    Process,
    Docker,
}

/// The most warm containers one runner may keep.
pub const MAX_WARM: u32 = 16;
/// The memory a warm container may hold while it waits, unless the inventory says.
pub const DEFAULT_WARM_MEMORY: u64 = 512 << 20;
/// The least memory a warm container may be given (its interpreter must fit).
pub const MIN_WARM_MEMORY: u64 = 16 << 20;

/// A docker runner's warm containers: up to `count` containers of `image` started ahead of the
/// folds, each running `command` in its warm mode (it prepares, then waits for its go), each
/// capped at `memory` while it waits. A fold whose image is `image` and whose command starts
/// with `command` takes one (the rest of its command and its environment travel with the go);
/// see `agent::docker::warm`. The agent learns it as `--warm JSON`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmSpec {
    pub image: String,
    pub command: Vec<String>,
    pub count: u32,
    pub memory: u64,
}

impl WarmSpec {
    /// The bounds the inventory checks, for a spec that comes another way (`agent --warm`).
    pub fn check(&self) -> Result<(), String> {
        if !crate::model::valid_image(&self.image) {
            return Err(format!(
                "image {:?} is not a valid image reference",
                self.image
            ));
        }
        if self.command.is_empty() || self.command.iter().any(|w| w.is_empty()) {
            return Err("command must be a list of one or more non-empty words".into());
        }
        if !(1..=MAX_WARM).contains(&self.count) {
            return Err(format!(
                "count {} is not between 1 and {MAX_WARM}",
                self.count
            ));
        }
        if self.memory < MIN_WARM_MEMORY {
            return Err(format!(
                "memory {} is less than {}",
                format_size(self.memory),
                format_size(MIN_WARM_MEMORY)
            ));
        }
        Ok(())
    }

    /// The agent's command-line arguments that hand it this spec.
    pub fn agent_args(&self) -> [String; 2] {
        [
            "--warm".to_string(),
            serde_json::to_string(self).expect("a warm spec serializes"),
        ]
    }
}

/// One runner after `[defaults]` are applied and CIDRs are expanded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunnerSpec {
    pub name: String,
    /// Host name or IP, None for local runners.
    pub host: Option<String>,
    pub port: u16,
    pub transport: Transport,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    /// Ssh runners: where the agent lives on the runner (binary, journal, socket); None means
    /// [`DEFAULT_STATE_DIR`]. Docker bind-mounts attempt directories from here, so on a runner
    /// whose engine is not its own (docker-in-docker) it must be the same path on both sides.
    pub state_dir: Option<PathBuf>,
    /// Unix runners: the agent daemon's socket (`datarun agent --listen SOCKET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Ssh runners: provisioning may install Docker (Debian/Ubuntu) when it is missing.
    pub install_docker: bool,
    pub slots: u32,
    /// Attempts the master may queue on the runner's agent beyond its slots, each behind one
    /// that runs and started by the agent the moment that one ends (README "Prefetch"). 0: none.
    #[serde(skip_serializing_if = "is_zero")]
    pub prefetch: u32,
    /// Queues served; `"*"` serves all.
    pub queues: Vec<String>,
    /// None: taken from the agent's facts when it connects.
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    /// GPU device ids, e.g. ["0", "1"].
    pub gpus: Vec<String>,
    pub labels: Vec<String>,
    /// Docker runners: the images folds may name ("*" = any); the first is the default for
    /// folds that name none.
    pub images: Vec<String>,
    pub soft_time_limit_ms: Option<u64>,
    pub hard_time_limit_ms: Option<u64>,
    pub executor: ExecutorKind,
    /// The runner's requirements on folds: an expression over fold attributes such as
    /// `owner != "guest" || queue == "L"` (checked when the file is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// Docker runners: containers kept started ahead of the folds (`warm = { ... }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmSpec>,
    /// Custom attributes for folds' requirements and rank (`attributes = { disk = "ssd" }`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttrValue>,
    /// The line of the `[[runner]]` entry in the file (also for every runner of a CIDR pool;
    /// 0 for generated ones such as [`local_default`]).
    pub line: usize,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RunnerSpec {
    /// `host:port` (`[v6]:port` for IPv6) for ssh runners, None for local ones.
    pub fn address(&self) -> Option<String> {
        self.host.as_ref().map(|h| {
            if h.contains(':') {
                format!("[{h}]:{}", self.port)
            } else {
                format!("{h}:{}", self.port)
            }
        })
    }

    /// The identity file with a leading `~/` expanded from `$HOME`.
    pub fn identity_path(&self) -> Option<PathBuf> {
        let path = self.identity_file.as_ref()?;
        match (path.strip_prefix("~"), std::env::var_os("HOME")) {
            (Ok(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
            _ => Some(path.clone()),
        }
    }

    /// The agent's directory on an ssh runner.
    pub fn remote_state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// Whether this runner serves `queue`.
    pub fn serves(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q == "*" || q == queue)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueSpec {
    pub priority: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inventory {
    pub runners: Vec<RunnerSpec>,
    pub queues: BTreeMap<String, QueueSpec>,
    /// Where it came from (None for the embedded default).
    pub source: Option<PathBuf>,
}

impl Inventory {
    /// The priority of every queue named in `[queues.X]`; queues not listed have priority 0.
    pub fn queue_priorities(&self) -> BTreeMap<String, i64> {
        self.queues
            .iter()
            .map(|(name, q)| (name.clone(), q.priority))
            .collect()
    }

    /// The priority of one queue (0 when it has no `[queues.X]` table).
    pub fn queue_priority(&self, queue: &str) -> i64 {
        self.queues.get(queue).map_or(0, |q| q.priority)
    }

    pub fn runner(&self, name: &str) -> Option<&RunnerSpec> {
        self.runners.iter().find(|r| r.name == name)
    }
}

/// A problem in an inventory file, located for a person to fix. Displays as
/// `file:line: key: message`; `line` is 1-based, 0 when the problem is the file itself (then
/// the line, and an empty key, are left out: `file: message`). `key` is the dotted path of the
/// offending key (`runner.slots`, `defaults.memory`, `queues.H.priority`), `syntax` for
/// malformed TOML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, " {}:", self.key)?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for InventoryError {}

/// Parses inventory text. `file` is used in error messages only.
pub fn parse(text: &str, file: &str) -> Result<Inventory, InventoryError> {
    parse::parse(text, file)
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError {
        file: file.clone(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the inventory: {e}"),
    })?;
    let mut inv = parse(&text, &file)?;
    inv.source = Some(path.to_path_buf());
    Ok(inv)
}

/// The embedded default: the local machine as the only runner, serving every queue.
pub fn local_default() -> Inventory {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    Inventory {
        runners: vec![RunnerSpec {
            name: "local".to_string(),
            host: None,
            port: 0,
            transport: Transport::Local,
            user: None,
            identity_file: None,
            state_dir: None,
            socket: None,
            install_docker: false,
            slots: u32::try_from(cpus).unwrap_or(MAX_SLOTS).clamp(1, MAX_SLOTS),
            prefetch: 0,
            queues: vec!["*".to_string()],
            cpus: Some(cpus as f64),
            memory,
            gpus: Vec::new(),
            labels: Vec::new(),
            images: Vec::new(),
            soft_time_limit_ms: None,
            hard_time_limit_ms: None,
            executor: ExecutorKind::Process,
            requirements: None,
            warm: None,
            attributes: BTreeMap::new(),
            line: 0,
        }],
        queues: BTreeMap::new(),
        source: None,
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let mult = match words.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(mult)
}

/// The runners as an aligned table for people (`--json` prints the [`Inventory`] itself).
pub fn render_table(inv: &Inventory) -> String {
    let mut t = Table::new(&[
        "NAME",
        "TRANSPORT",
        "ADDRESS",
        ">SLOTS",
        "QUEUES",
        ">CPUS",
        ">MEMORY",
        "GPUS",
        "LABELS",
        "SOFT",
        "HARD",
        "EXECUTOR",
    ]);
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let limit = |ms: Option<u64>| {
        ms.map_or("-".to_string(), |ms| {
            format_duration(Duration::from_millis(ms))
        })
    };
    for r in &inv.runners {
        t.row([
            r.name.clone(),
            match r.transport {
                Transport::Local => "local",
                Transport::Ssh => "ssh",
                Transport::Simulated => "simulated",
                Transport::Unix => "unix",
            }
            .to_string(),
            r.address().unwrap_or_else(|| "-".to_string()),
            r.slots.to_string(),
            list(&r.queues),
            r.cpus.map_or("-".to_string(), |c| {
                if c.fract() == 0.0 {
                    format!("{c:.0}")
                } else {
                    format!("{c}")
                }
            }),
            r.memory.map_or("-".to_string(), format_size),
            list(&r.gpus),
            list(&r.labels),
            limit(r.soft_time_limit_ms),
            limit(r.hard_time_limit_ms),
            match r.executor {
                ExecutorKind::Process => "process",
                ExecutorKind::Docker => "docker",
            }
            .to_string(),
        ]);
    }
    t.render()
}

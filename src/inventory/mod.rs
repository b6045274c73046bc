//! The inventory: `runners.toml`, edited by hand by operators. Parsing is strict: unknown keys,
//! duplicate names, bad sizes or durations, soft > hard, oversized CIDRs are errors naming the
//! file, line and key. Parsing is pure (text in, runners out); `load` reads the file.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Local,
    Ssh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    Process,
    Docker,
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
    pub slots: u32,
    /// Queues served; `"*"` serves all.
    pub queues: Vec<String>,
    /// None: taken from the agent's facts when it connects.
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    /// GPU device ids, e.g. ["0", "1"].
    pub gpus: Vec<String>,
    pub labels: Vec<String>,
    pub soft_time_limit_ms: Option<u64>,
    pub hard_time_limit_ms: Option<u64>,
    pub executor: ExecutorKind,
    /// The line of the `[[runner]]` entry in the file (0 for generated ones).
    pub line: usize,
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

/// A problem in an inventory file, located for a person to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{file}:{line}: {key}: {message}")]
pub struct InventoryError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// Parses inventory text. `file` is used in error messages only.
pub fn parse(_text: &str, _file: &str) -> Result<Inventory, InventoryError> {
    todo!("inventory helper")
}

/// Reads and parses a file.
pub fn load(_path: &Path) -> Result<Inventory, InventoryError> {
    todo!("inventory helper")
}

/// The embedded default: the local machine as the only runner, serving every queue.
pub fn local_default() -> Inventory {
    todo!("inventory helper")
}

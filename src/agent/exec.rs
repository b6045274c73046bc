//! What every executor takes and gives back.

use crate::model::{AttemptId, Metrics, Outcome};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One attempt to run, with its grant. The agent prepares `input_dir` (the fold's inputs) and
/// an empty `output_dir` before calling the executor.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub attempt: AttemptId,
    pub fold: crate::model::FoldId,
    /// The runner's name (container label).
    pub runner: String,
    /// Container image (docker executor); None for the process executor.
    pub image: Option<String>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The attempt's own directory; the fold runs with this as its working directory.
    pub work_dir: PathBuf,
    /// Exposed to the fold as $DATARUN_INPUT.
    pub input_dir: PathBuf,
    /// Exposed to the fold as $DATARUN_OUTPUT; files written here are the fold's outputs.
    pub output_dir: PathBuf,
    /// Memory cap in bytes (whole process tree).
    pub memory_limit: Option<u64>,
    pub millicpus: u32,
    pub soft_limit: Option<Duration>,
    pub hard_limit: Option<Duration>,
    /// GPU device ids granted (CUDA_VISIBLE_DEVICES for the process executor).
    pub gpus: Vec<String>,
    /// Keep at most this many bytes of stdout+stderr (the tail; the cut is marked).
    pub log_limit: u64,
    /// Outputs larger than this in total end the attempt as `OutputLimit` (the fold is killed
    /// as soon as the agent sees it; see `agent::outputs`).
    pub output_limit: u64,
}

/// How the attempt ended, what it measured, its log and its output files.
#[derive(Clone, Debug)]
pub struct ExecResult {
    pub outcome: Outcome,
    pub metrics: crate::model::Metrics,
    /// stdout and stderr interleaved, at most `log_limit` bytes (plus the cut marker).
    pub log: Vec<u8>,
    /// Relative names of regular files found under `output_dir` (sorted), each checked with
    /// `model::check_file_name`.
    pub outputs: Vec<String>,
    /// The engine's id of the image the container ran (docker executor).
    pub image_id: Option<String>,
}

impl ExecResult {
    pub fn error(message: impl Into<String>) -> ExecResult {
        ExecResult {
            outcome: Outcome::Error {
                message: message.into(),
            },
            metrics: Metrics::default(),
            log: Vec::new(),
            outputs: Vec::new(),
            image_id: None,
        }
    }
}

/// Millicpus as a plain number of cores: 1500 -> "1.5", 2000 -> "2".
pub(crate) fn format_cpus(millicpus: u32) -> String {
    let (whole, frac) = (millicpus / 1000, millicpus % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    format!("{whole}.{frac:03}")
        .trim_end_matches('0')
        .to_string()
}

/// Resolves once cancel is true; never, if nobody can cancel any more.
pub(crate) async fn cancelled(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `deadline`; forever when there is none.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

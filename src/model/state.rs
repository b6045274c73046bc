//! Where a fold is (`FoldState`), how an attempt ended (`Outcome`), what it measured
//! (`Metrics`, `Progress` while it runs) and why a fold is held (`HoldCode`): the states and
//! their names as the API, the store and the CLI write them. Plain data, no IO.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FoldState {
    /// Waiting for other folds (dependencies) or for its array's concurrency cap; not in line.
    Waiting,
    Idle,
    Assigned,
    Running,
    Done,
    Failed,
    Held,
    Removed,
}

impl FoldState {
    pub const ALL: [FoldState; 8] = [
        FoldState::Waiting,
        FoldState::Idle,
        FoldState::Assigned,
        FoldState::Running,
        FoldState::Done,
        FoldState::Failed,
        FoldState::Held,
        FoldState::Removed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FoldState::Waiting => "waiting",
            FoldState::Idle => "idle",
            FoldState::Assigned => "assigned",
            FoldState::Running => "running",
            FoldState::Done => "done",
            FoldState::Failed => "failed",
            FoldState::Held => "held",
            FoldState::Removed => "removed",
        }
    }
    pub fn parse(s: &str) -> Option<FoldState> {
        FoldState::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Done, failed and removed folds never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FoldState::Done | FoldState::Failed | FoldState::Removed
        )
    }
    /// Assigned or running: an attempt is out on a runner.
    pub fn is_active(self) -> bool {
        matches!(self, FoldState::Assigned | FoldState::Running)
    }
}

impl fmt::Display for FoldState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The program exited with a non-zero code.
    ExitCode {
        code: i32,
    },
    /// The program was killed by a signal it did not get from datarun.
    Signal {
        signal: i32,
    },
    /// Ran past the soft limit, got SIGTERM and stopped before the hard limit.
    TimedOutSoft,
    /// Ran past the hard limit (or ignored SIGTERM) and was killed.
    TimedOutHard,
    /// Went over its memory grant and was killed.
    OutOfMemory,
    /// The runner or the connection to it was lost; the fold may run again.
    Lost {
        reason: String,
    },
    /// Removed by a person while it ran.
    Cancelled,
    /// The fold's image is not on the runner (there is no registry: it must be loaded).
    ImageMissing {
        image: String,
        message: String,
    },
    /// datarun could not start or watch the fold (missing program, engine error).
    Error {
        message: String,
    },
    /// Its outputs went over the runner's output limit: the agent killed it as soon as it saw
    /// that (or found it at the end), deleted them and sent none. `bytes` is what it had
    /// written by then, `limit` the limit; with `entries`, it made more than that many files
    /// and directories (the most the agent counts). A failure of the fold's own, like an
    /// exit code: retried per `max_retries`, then failed.
    OutputLimit {
        bytes: u64,
        limit: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entries: Option<u64>,
    },
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ExitCode { .. } => "exit_code",
            Outcome::Signal { .. } => "signal",
            Outcome::TimedOutSoft => "timed_out_soft",
            Outcome::TimedOutHard => "timed_out_hard",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::Lost { .. } => "lost",
            Outcome::Cancelled => "cancelled",
            Outcome::ImageMissing { .. } => "image_missing",
            Outcome::Error { .. } => "error",
            Outcome::OutputLimit { .. } => "output_limit",
        }
    }
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
    /// The fold's own failure, the same wherever it runs (an exit code, a signal, outputs over
    /// the limit): not its runner's (lost), not its grant's (out of memory), not time.
    pub fn is_own_failure(&self) -> bool {
        matches!(
            self,
            Outcome::ExitCode { .. } | Outcome::Signal { .. } | Outcome::OutputLimit { .. }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "success"),
            Outcome::ExitCode { code } => write!(f, "exit code {code}"),
            Outcome::Signal { signal } => write!(f, "killed by signal {signal}"),
            Outcome::TimedOutSoft => write!(f, "timed out (soft limit, SIGTERM)"),
            Outcome::TimedOutHard => write!(f, "timed out (hard limit, SIGKILL)"),
            Outcome::OutOfMemory => write!(f, "out of memory"),
            Outcome::Lost { reason } => write!(f, "lost: {reason}"),
            Outcome::Cancelled => write!(f, "cancelled"),
            Outcome::ImageMissing { message, .. } => write!(f, "image missing: {message}"),
            Outcome::Error { message } => write!(f, "error: {message}"),
            Outcome::OutputLimit {
                entries: Some(entries),
                ..
            } => write!(
                f,
                "outputs too large: more than {entries} files and directories, over the limit of {entries}"
            ),
            Outcome::OutputLimit { bytes, limit, .. } => write!(
                f,
                "outputs too large: {} ({bytes} bytes) over the limit of {}",
                crate::units::format_size(*bytes),
                crate::units::format_size(*limit)
            ),
        }
    }
}

/// What an attempt measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Wall-clock time from start to exit, ms.
    pub wall_ms: u64,
    /// User + system CPU time of the whole process tree, ms.
    pub cpu_ms: u64,
    /// Peak resident memory of the fold (its whole tree), bytes.
    pub peak_memory: u64,
}

/// Live figures of a running attempt (progress).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub memory: u64,
    pub peak_memory: u64,
    /// What the fold says it is doing: the first line of the file `status` in its output
    /// directory, if it writes one (e.g. the fold image's "trained", "validated").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The file in a fold's output directory whose first line is shown live as its status.
pub const STATUS_FILE: &str = "status";
/// At most this many bytes of it are read.
pub const STATUS_MAX: usize = 200;

/// Why a fold is held, so tools can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldCode {
    /// A person held it.
    User,
    /// No runner in the inventory could ever run it.
    Unmatchable,
    /// Its own code failed more often than max_retries allows.
    RetriesExhausted,
    /// It went over its memory grant: release it with more memory.
    OutOfMemory,
    /// Its image is missing or not allowed.
    BadImage,
    /// Its requirements (or a runner's on it) cannot be evaluated: a type error such as
    /// comparing memory with a string.
    Requirements,
    /// Its runner was lost under it (crash, partition) more often than the master's
    /// `[policy] max_losses` allows: it may be what kills its runners.
    LostTooOften,
}

impl HoldCode {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldCode::User => "user",
            HoldCode::Unmatchable => "unmatchable",
            HoldCode::RetriesExhausted => "retries_exhausted",
            HoldCode::OutOfMemory => "out_of_memory",
            HoldCode::BadImage => "bad_image",
            HoldCode::Requirements => "requirements",
            HoldCode::LostTooOften => "lost_too_often",
        }
    }
    pub const ALL: [HoldCode; 7] = [
        HoldCode::User,
        HoldCode::Unmatchable,
        HoldCode::RetriesExhausted,
        HoldCode::OutOfMemory,
        HoldCode::BadImage,
        HoldCode::Requirements,
        HoldCode::LostTooOften,
    ];

    pub fn parse(s: &str) -> Option<HoldCode> {
        HoldCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

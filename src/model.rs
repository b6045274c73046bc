//! The domain: folds, attempts, outcomes and metrics. Plain data shared by the store, the
//! scheduler snapshot builder, the API and the agent protocol. No IO here.

pub mod array;
pub mod limits;
pub mod provenance;
pub mod sweep;

pub use limits::{FieldError, MAX_EXPRESSION, MAX_RETRIES};

use crate::expr::{Expr, Home};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub type FoldId = i64;
pub type AttemptId = i64;

/// The queue a fold goes to when it names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Priority aliases kept from the original datarun (`H` and `L` lanes).
pub const PRIORITY_HIGH: i64 = 10;
pub const PRIORITY_LOW: i64 = -10;

/// Resources a fold asks for, or a runner offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores; fractions allowed (0.5 = half a core).
    pub cpus: f64,
    /// Bytes of memory; written "2G", "512M" or a byte count.
    #[serde(with = "crate::units::size_bytes")]
    #[schema(schema_with = crate::units::size_bytes::schema)]
    pub memory: u64,
    /// Number of GPUs (the scheduler grants concrete device ids).
    pub gpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1.0,
            memory: 256 << 20,
            gpus: 0,
        }
    }
}

impl Resources {
    /// CPUs in thousandths of a core, the unit the scheduler counts in.
    pub fn millicpus(&self) -> u32 {
        (self.cpus * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
    }
}

/// A fold's priority as written by a client: an integer, or the original's `H` / `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Priority(pub i64);

impl Priority {
    pub fn parse(text: &str) -> Result<Priority, String> {
        match text.trim() {
            "H" | "h" => Ok(Priority(PRIORITY_HIGH)),
            "L" | "l" => Ok(Priority(PRIORITY_LOW)),
            t => t.parse::<i64>().map(Priority).map_err(|_| {
                format!("bad priority {text:?}: expected an integer, \"H\" (= {PRIORITY_HIGH}) or \"L\" (= {PRIORITY_LOW})")
            }),
        }
    }
}

impl utoipa::PartialSchema for Priority {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
            )))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(format!(
                "an integer (higher runs first), or \"H\" (= {PRIORITY_HIGH}) or \"L\" (= {PRIORITY_LOW})"
            )))
            .into()
    }
}
impl utoipa::ToSchema for Priority {}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => Ok(Priority(i)),
            Raw::Text(t) => Priority::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A named input of a fold: a stored blob placed in the fold's input directory under `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRef {
    pub name: String,
    pub sha256: String,
}

/// What a client submits: everything needed to run one fold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FoldSpec {
    /// argv; the first element is the program.
    pub command: Vec<String>,
    /// Container image (docker executor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    /// Milliseconds; at the soft limit the fold gets SIGTERM.
    #[serde(
        default,
        with = "crate::units::duration_ms::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    pub soft_time_limit: Option<u64>,
    /// Milliseconds; at the hard limit the fold gets SIGKILL.
    #[serde(
        default,
        with = "crate::units::duration_ms::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::units::duration_ms::schema)]
    pub hard_time_limit: Option<u64>,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub priority: Priority,
    /// How many times a fold may be run again after a failed or lost attempt.
    #[serde(default)]
    pub max_retries: u32,
    /// An expression over runner attributes that a runner must meet, e.g.
    /// `gpus >= 1 && "fast-disk" in labels` (see `crate::expr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// An expression over runner attributes; runners ranking higher are preferred (`memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<String>,
    /// Folds this one waits for (`submit --after`, `--after-any`): it stays `waiting` until
    /// they end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// Outputs of other folds taken as inputs once those folds are done (`--input-from
    /// ID:NAME`); each is also an `after` (ok) dependency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs_from: Vec<InputFrom>,
    /// A URL called when the fold ends (README "Webhooks"); taken out of the spec at submit
    /// and kept as the fold's webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A fold another waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub fold: FoldId,
    #[serde(default)]
    pub when: DependOn,
}

/// When a dependency is met: Slurm's `afterok` and `afterany`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependOn {
    /// The parent is done; if it fails or is removed, the child fails too, saying why.
    #[default]
    Ok,
    /// The parent ended, however.
    Any,
}

impl DependOn {
    pub fn as_str(self) -> &'static str {
        match self {
            DependOn::Ok => "ok",
            DependOn::Any => "any",
        }
    }
}

/// An output of a fold taken as an input of another once it is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFrom {
    pub fold: FoldId,
    /// The output's name in the parent.
    pub output: String,
    /// The input's name in this fold (default: the output's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl InputFrom {
    pub fn input_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.output)
    }
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_string()
}

impl FoldSpec {
    /// Checks a spec for mistakes a person can fix; the message names the field. Size limits
    /// ([`limits`]) come first, so nothing costly is done on an oversized spec.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_sizes()?;
        if let Some(url) = &self.webhook {
            crate::webhooks::guard::check_url("webhook", url)?;
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err("command: must name a program (e.g. [\"python3\", \"train.py\"])".into());
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err("command: arguments must not contain NUL bytes".into());
        }
        let r = &self.resources;
        if !r.cpus.is_finite() || r.cpus < 0.0 {
            return Err(format!("resources.cpus: {} is not a non-negative number", r.cpus).into());
        }
        if r.cpus > 100_000.0 {
            return Err(format!("resources.cpus: {} is beyond any machine", r.cpus).into());
        }
        if r.memory == 0 {
            return Err("resources.memory: must be more than 0 (e.g. \"512M\")".into());
        }
        if let (Some(soft), Some(hard)) = (self.soft_time_limit, self.hard_time_limit) {
            if soft > hard {
                return Err(format!(
                    "soft_time_limit ({}) is longer than hard_time_limit ({}): the soft limit must come first",
                    crate::units::format_duration(std::time::Duration::from_millis(soft)),
                    crate::units::format_duration(std::time::Duration::from_millis(hard))
                ).into());
            }
        }
        if self.soft_time_limit == Some(0) || self.hard_time_limit == Some(0) {
            return Err("time limits must be longer than 0s".into());
        }
        if !valid_name(&self.queue) {
            return Err(format!(
                "queue: {:?} is not a valid queue name (1-64 letters, digits, '-', '_', '.')",
                self.queue
            )
            .into());
        }
        if let Some(image) = &self.image {
            if !valid_image(image) {
                return Err(format!("image: {image:?} is not a valid image reference (e.g. \"datarun/fold-python:0.1\", at most 255 bytes)").into());
            }
        }
        for (field, text) in [("requirements", &self.requirements), ("rank", &self.rank)] {
            if let Some(text) = text {
                Expr::parse(text, Home::Runner).map_err(|e| format!("{field}: {e}"))?;
            }
        }
        if self.max_retries > MAX_RETRIES {
            return Err(format!("max_retries: at most {MAX_RETRIES}").into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for input in &self.inputs {
            check_file_name(&input.name).map_err(|e| format!("inputs: {e}"))?;
            if !is_sha256_hex(&input.sha256) {
                return Err(format!(
                    "inputs: {:?} has sha256 {:?}, which is not 64 lowercase hex digits",
                    input.name, input.sha256
                )
                .into());
            }
            if !seen.insert(input.name.as_str()) {
                return Err(format!("inputs: {:?} is named twice", input.name).into());
            }
        }
        for dep in &self.after {
            if dep.fold <= 0 {
                return Err(format!("after: {} is not a fold id", dep.fold).into());
            }
        }
        for from in &self.inputs_from {
            if from.fold <= 0 {
                return Err(format!("inputs_from: {} is not a fold id", from.fold).into());
            }
            check_file_name(&from.output).map_err(|e| format!("inputs_from: output: {e}"))?;
            check_file_name(from.input_name()).map_err(|e| format!("inputs_from: {e}"))?;
            if !seen.insert(from.input_name()) {
                return Err(format!("inputs_from: {:?} is named twice", from.input_name()).into());
            }
        }
        for key in self.env.keys() {
            // The array's id and index are set by the master on each fold of an array.
            // The array's id and index, and a sweep point's values (`model::sweep`).
            let set_by_master =
                ARRAY_ENV.contains(&key.as_str()) || key.starts_with(sweep::PARAM_ENV_PREFIX);
            if key.is_empty()
                || key.contains('=')
                || key.contains('\0')
                || (key.starts_with("DATARUN_") && !set_by_master)
            {
                return Err(format!("env: {key:?} is not allowed as a variable name").into());
            }
        }
        Ok(())
    }
}

/// The variables an array's folds get: its id and the fold's index.
pub const ARRAY_ENV: [&str; 2] = ["DATARUN_ARRAY_ID", "DATARUN_ARRAY_INDEX"];

/// Names of queues, runners, owners: short, printable, no separators.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A Docker image reference such as `datarun/fold-python:0.1` or `busybox@sha256:...`.
pub fn valid_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 255
        && !image.starts_with(['-', '.', '/', ':'])
        && image
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b))
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name as given by a client (input or output name): relative, no `..`, no absolute
/// path, no control characters. Subdirectories (`data/train.csv`) are allowed.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("file name {name:?} must have 1 to 255 characters"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(format!(
            "file name {name:?} is absolute; give a relative name such as \"train.csv\""
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "file name {name:?} contains control characters or backslashes"
        ));
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "file name {name:?} contains an empty, '.' or '..' component; it must stay inside the fold's directory"
            ));
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_file_names_are_rejected() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "",
            "a//b",
            "./x",
            "a\0b",
            "a\\b",
            "x/..",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in ["train.csv", "data/train.csv", "x..y", ".hidden"] {
            assert!(check_file_name(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[test]
    fn hold_codes_round_trip() {
        for code in HoldCode::ALL {
            assert_eq!(HoldCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(
                json,
                format!("\"{}\"", code.as_str()),
                "serde and as_str agree"
            );
        }
    }

    #[test]
    fn priority_aliases() {
        assert_eq!(Priority::parse("H").unwrap(), Priority(PRIORITY_HIGH));
        assert_eq!(Priority::parse("L").unwrap(), Priority(PRIORITY_LOW));
        assert_eq!(Priority::parse("-3").unwrap(), Priority(-3));
        assert!(Priority::parse("urgent").is_err());
        let p: Priority = serde_json::from_str("\"H\"").unwrap();
        assert_eq!(p, Priority(PRIORITY_HIGH));
    }

    #[test]
    fn spec_validation_names_the_field() {
        let spec: FoldSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
        assert!(spec.validate().is_ok());
        assert_eq!(spec.queue, "default");
        let bad = r#"{"command":["true"],"resources":{"cpus":-1}}"#;
        let spec: FoldSpec = serde_json::from_str(bad).unwrap();
        assert!(spec
            .validate()
            .unwrap_err()
            .message()
            .contains("resources.cpus"));
        let bad = r#"{"command":["true"],"soft_time_limit":"10s","hard_time_limit":"5s"}"#;
        let spec: FoldSpec = serde_json::from_str(bad).unwrap();
        assert!(spec
            .validate()
            .unwrap_err()
            .message()
            .contains("soft_time_limit"));
        assert!(
            serde_json::from_str::<FoldSpec>(r#"{"command":["true"],"colour":"red"}"#).is_err()
        );
        assert!(serde_json::from_str::<FoldSpec>(
            r#"{"command":["true"],"resources":{"memory":"-1G"}}"#
        )
        .is_err());
    }
}

//! The domain: folds, attempts, outcomes and metrics. Plain data shared by the store, the
//! scheduler snapshot builder, the API and the agent protocol. No IO here.

pub mod array;
pub mod limits;
pub mod provenance;
mod state;
pub mod sweep;

pub use limits::{FieldError, MAX_EXPRESSION, MAX_RETRIES};
pub use state::{FoldState, HoldCode, Metrics, Outcome, Progress, STATUS_FILE, STATUS_MAX};

use crate::expr::{Expr, Home};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        if r.memory > limits::MAX_MEMORY {
            return Err(format!(
                "resources.memory: {} is beyond any machine (at most {})",
                crate::units::format_size(r.memory),
                crate::units::format_size(limits::MAX_MEMORY)
            )
            .into());
        }
        for (field, limit) in [
            ("soft_time_limit", self.soft_time_limit),
            ("hard_time_limit", self.hard_time_limit),
        ] {
            if limit.is_some_and(|ms| ms > limits::MAX_TIME_LIMIT_MS) {
                return Err(format!(
                    "{field}: at most {} days",
                    limits::MAX_TIME_LIMIT_MS / (24 * 3600 * 1000)
                )
                .into());
            }
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

//! Limits on what a client may send, independent of any runner, and the error that names the
//! field a request broke them in. Every limit is listed in the README ("Limits"); a request over
//! a size limit answers 413, a malformed one 400, and nothing is stored either way.

use std::fmt;

/// Arguments in a fold's command.
pub const MAX_COMMAND_ARGS: usize = 4096;
/// Bytes of a fold's command, all arguments together.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Variables in a fold's `env`.
pub const MAX_ENV_VARS: usize = 1024;
/// Bytes of one variable name.
pub const MAX_ENV_NAME: usize = 256;
/// Bytes of one variable's value.
pub const MAX_ENV_VALUE: usize = 32 << 10;
/// Bytes of a fold's `env`, names and values together.
pub const MAX_ENV_BYTES: usize = 64 << 10;
/// Inputs of one fold (each name at most 255 bytes, see `check_file_name`).
pub const MAX_INPUTS: usize = 1024;
/// The longest requirements or rank expression, in bytes.
pub const MAX_EXPRESSION: usize = 4096;
/// Retries a fold may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Folds one fold may wait for (`after`).
pub const MAX_DEPENDENCIES: usize = 1000;
/// Folds in one array (`submit --array`).
pub const MAX_ARRAY: usize = 100_000;
/// Points in one sweep (`submit --sweep`): the grid's size times the random samples.
pub const MAX_SWEEP_POINTS: usize = 10_000;
/// Parameters of one sweep.
pub const MAX_SWEEP_PARAMS: usize = 32;
/// Bytes of one parameter value given as a string.
pub const MAX_PARAM_VALUE: usize = 1024;
/// The body of `POST /sweeps` (a spec and the sweep document).
pub const MAX_SWEEP_BODY: usize = 4 << 20;
/// A whole fold spec, serialized as the master stores and lists it.
pub const MAX_SPEC_BYTES: usize = 256 << 10;
/// The body of `POST /folds` (one spec, with room for whitespace and escapes), and of every
/// request that carries no files nor index lists (holds, bulk actions, arrays, result feeds).
pub const MAX_SPEC_BODY: usize = 1 << 20;
/// Folds in one batch (`POST /folds/batch`).
pub const MAX_BATCH_FOLDS: usize = 10_000;
/// The body of `POST /folds/batch`.
pub const MAX_BATCH_BODY: usize = 64 << 20;
/// The body of `POST /scores` (labels and probabilities, parsed whole).
pub const MAX_SCORE_BODY: usize = 8 << 20;
/// Distinct webhook hosts (host and port) in one batch of folds: each is looked up before the
/// folds are stored.
pub const MAX_WEBHOOK_HOSTS: usize = 16;
/// Rows scored by one `POST /scores`.
pub const MAX_SCORE_ROWS: usize = 1_000_000;
/// A short free text a person writes (a hold reason).
pub const MAX_REASON: usize = 1024;
/// A fold's time limits, at most (a year and a day): longer ones would overflow a runner's
/// clock, and no fold is meant to run longer.
pub const MAX_TIME_LIMIT_MS: u64 = 366 * 24 * 3600 * 1000;
/// A fold's memory, at most (1 PiB): beyond any machine.
pub const MAX_MEMORY: u64 = 1 << 50;
/// A label a client chooses: a target column, a client's fold id, a workflow element list.
pub const MAX_LABEL: usize = 1024;
/// Names in a list of names (workflow elements, score types).
pub const MAX_NAMES: usize = 64;
/// Folds in one submission (given as a list or as `cv.k`), or added to it at once.
pub const MAX_SUBMISSION_FOLDS: usize = 1000;
/// A `/runapp/` fold's `train_is` or `test_is` text (b64(zlib(int64 LE)); it is kept).
pub const MAX_INDICES_TEXT: usize = 16 << 20;

/// Rows in one page of a listing when the client gives no `limit`.
pub const DEFAULT_PAGE: u32 = 500;
/// The most rows in one page of a listing (`limit`); more answers 400.
pub const MAX_PAGE: u32 = 1000;
/// A page of folds ends early once its specs reach this many bytes (a full page of the
/// largest specs would otherwise be 256 MiB); its `next` cursor goes on from there.
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Ids in one lookup by ids (`POST /results/list`).
pub const MAX_IDS: usize = 10_000;

/// Fold ids in the `folds` filter of `GET /events`.
pub const MAX_EVENT_FOLDS: usize = 1000;
/// How long a long poll of `GET /events` waits when the client gives no `timeout`.
pub const DEFAULT_EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest `timeout` of a long poll of `GET /events`.
pub const MAX_EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long one event stream (`GET /events` as server-sent events) lasts; clients reconnect.
pub const EVENT_STREAM_LIFE: std::time::Duration = std::time::Duration::from_secs(600);
/// The longest webhook URL (`submit --webhook`, the `webhook` field of REST bodies).
pub const MAX_WEBHOOK_URL: usize = 2048;
/// Long polls and event streams served at once, unless `serve --max-waiters` says otherwise.
pub const DEFAULT_MAX_WAITERS: u32 = 1000;

/// Why a field of a request was refused: over a size limit (HTTP 413) or malformed (400). The
/// message starts with the field (`env: 3 MiB is over the limit of 64 KiB`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldError {
    Invalid(String),
    TooLarge(String),
}

impl FieldError {
    /// `field: SIZE is over the limit of LIMIT` (sizes in bytes).
    pub fn too_large(field: &str, size: usize, limit: usize) -> FieldError {
        FieldError::TooLarge(format!(
            "{field}: {} is over the limit of {}",
            bytes(size),
            bytes(limit)
        ))
    }

    /// `field: N WHAT is over the limit of LIMIT` (counts).
    pub fn too_many(field: &str, count: usize, what: &str, limit: usize) -> FieldError {
        FieldError::TooLarge(format!(
            "{field}: {count} {what} is over the limit of {limit}"
        ))
    }

    pub fn message(&self) -> &str {
        match self {
            FieldError::Invalid(m) | FieldError::TooLarge(m) => m,
        }
    }

    pub fn is_too_large(&self) -> bool {
        matches!(self, FieldError::TooLarge(_))
    }

    /// The same error with `prefix: ` in front (`fold 3: env: ...`).
    pub fn prefixed(self, prefix: &str) -> FieldError {
        match self {
            FieldError::Invalid(m) => FieldError::Invalid(format!("{prefix}: {m}")),
            FieldError::TooLarge(m) => FieldError::TooLarge(format!("{prefix}: {m}")),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for FieldError {}

impl From<String> for FieldError {
    fn from(m: String) -> FieldError {
        FieldError::Invalid(m)
    }
}

impl From<&str> for FieldError {
    fn from(m: &str) -> FieldError {
        FieldError::Invalid(m.to_string())
    }
}

impl From<FieldError> for String {
    fn from(e: FieldError) -> String {
        e.message().to_string()
    }
}

impl super::FoldSpec {
    /// The size limits: counts and bytes of the command, env, inputs and expressions, then
    /// the whole spec. Over one is [`FieldError::TooLarge`] (413).
    pub(super) fn check_sizes(&self) -> Result<(), FieldError> {
        check_count("command", self.command.len(), "arguments", MAX_COMMAND_ARGS)?;
        let command: usize = self.command.iter().map(String::len).sum();
        if command > MAX_COMMAND_BYTES {
            return Err(FieldError::too_large("command", command, MAX_COMMAND_BYTES));
        }
        check_count("env", self.env.len(), "variables", MAX_ENV_VARS)?;
        let mut env = 0;
        for (key, value) in &self.env {
            if key.len() > MAX_ENV_NAME {
                let short: String = key.chars().take(20).collect();
                return Err(FieldError::too_large(
                    &format!("env: the name {short:?}…"),
                    key.len(),
                    MAX_ENV_NAME,
                ));
            }
            if value.len() > MAX_ENV_VALUE {
                return Err(FieldError::too_large(
                    &format!("env: {key}"),
                    value.len(),
                    MAX_ENV_VALUE,
                ));
            }
            env += key.len() + value.len();
        }
        if env > MAX_ENV_BYTES {
            return Err(FieldError::too_large("env", env, MAX_ENV_BYTES));
        }
        check_count("inputs", self.inputs.len(), "inputs", MAX_INPUTS)?;
        check_count("after", self.after.len(), "folds", MAX_DEPENDENCIES)?;
        check_count("inputs_from", self.inputs_from.len(), "outputs", MAX_INPUTS)?;
        for (field, text) in [("requirements", &self.requirements), ("rank", &self.rank)] {
            if let Some(text) = text {
                if text.len() > MAX_EXPRESSION {
                    return Err(FieldError::too_large(field, text.len(), MAX_EXPRESSION));
                }
            }
        }
        let whole = json_size(self);
        if whole > MAX_SPEC_BYTES {
            return Err(FieldError::too_large(
                "the fold spec",
                whole,
                MAX_SPEC_BYTES,
            ));
        }
        Ok(())
    }
}

/// A size for people: `900 bytes`, `64 KiB`, `1.5 MiB`.
pub fn bytes(n: usize) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    let short = crate::units::format_size(n as u64);
    let (number, unit) = short.split_at(short.len() - 1);
    format!("{number} {unit}iB")
}

/// A free text a client chooses: at most `limit` bytes, no NUL or other control characters
/// but tab and newline.
pub fn check_text(field: &str, text: &str, limit: usize) -> Result<(), FieldError> {
    if text.len() > limit {
        return Err(FieldError::too_large(field, text.len(), limit));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(FieldError::Invalid(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(())
}

/// At most `limit` items in a list.
pub fn check_count(field: &str, count: usize, what: &str, limit: usize) -> Result<(), FieldError> {
    if count > limit {
        return Err(FieldError::too_many(field, count, what, limit));
    }
    Ok(())
}

/// A spec stored once per fold of an array or a sweep: the copies together are bounded as a
/// batch of folds is (`MAX_BATCH_BODY`), so a small body cannot make a huge insert.
pub fn check_copies<T: serde::Serialize>(
    field: &str,
    spec: &T,
    copies: usize,
) -> Result<(), FieldError> {
    let total = json_size(spec).saturating_mul(copies);
    if total > MAX_BATCH_BODY {
        return Err(FieldError::too_large(field, total, MAX_BATCH_BODY));
    }
    Ok(())
}

/// How many bytes `value` takes as JSON, without building the text.
pub fn json_size<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing plain data into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_name_the_field_and_the_limit() {
        use crate::model::{FoldSpec, InputRef};
        let base = || -> FoldSpec { serde_json::from_str(r#"{"command":["true"]}"#).unwrap() };
        let input = |i: usize| InputRef {
            name: format!("{i:0>200}"),
            sha256: "a".repeat(64),
        };
        type Change<'a> = Box<dyn Fn(&mut FoldSpec) + 'a>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "args",
                Box::new(|s| s.command = vec!["x".into(); MAX_COMMAND_ARGS + 1]),
                "command: 4097 arguments is over the limit of 4096",
            ),
            (
                "command bytes",
                Box::new(|s| s.command = vec!["x".repeat(40 << 10), "y".repeat(40 << 10)]),
                "command: 80 KiB is over the limit of 64 KiB",
            ),
            (
                "env count",
                Box::new(|s| {
                    s.env = (0..=MAX_ENV_VARS)
                        .map(|i| (format!("V{i}"), String::new()))
                        .collect()
                }),
                "env: 1025 variables",
            ),
            (
                "env name",
                Box::new(|s| {
                    s.env.insert("N".repeat(300), "1".into());
                }),
                "is over the limit of 256 bytes",
            ),
            (
                "env value",
                Box::new(|s| {
                    s.env.insert("BIG".into(), "v".repeat(33 << 10));
                }),
                "env: BIG: 33 KiB is over the limit of 32 KiB",
            ),
            (
                "env total",
                Box::new(|s| {
                    s.env = (0..3)
                        .map(|i| (format!("V{i}"), "v".repeat(30 << 10)))
                        .collect()
                }),
                "env: 90 KiB is over the limit of 64 KiB",
            ),
            (
                "inputs",
                Box::new(|s| s.inputs = (0..=MAX_INPUTS).map(input).collect()),
                "inputs: 1025 inputs is over the limit of 1024",
            ),
            (
                "expression",
                Box::new(|s| s.requirements = Some("1 == 1 && ".repeat(500))),
                "requirements: 4.9 KiB is over the limit of 4 KiB",
            ),
            (
                "whole spec",
                Box::new(move |s| s.inputs = (0..1000).map(input).collect()),
                "the fold spec: ",
            ),
        ];
        for (what, change, needle) in cases {
            let mut spec = base();
            change(&mut spec);
            let e = spec.validate().unwrap_err();
            assert!(e.is_too_large(), "{what}: {e}");
            assert!(
                e.message().contains(needle),
                "{what}: {e:?} should contain {needle:?}"
            );
        }
        // Just under every limit is fine.
        let mut spec = base();
        spec.command = vec!["x".repeat(32 << 10), "y".repeat((32 << 10) - 1)];
        spec.env = (0..2)
            .map(|i| (format!("V{i}"), "v".repeat(30 << 10)))
            .collect();
        spec.validate().unwrap();
        // Malformed is not too large.
        let mut spec = base();
        spec.queue = "a b".into();
        assert!(!spec.validate().unwrap_err().is_too_large());
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(bytes(900), "900 bytes");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(3 << 20), "3 MiB");
        assert_eq!(bytes(1536 << 10), "1.5 MiB");
        assert_eq!(
            FieldError::too_large("env", 3 << 20, MAX_ENV_BYTES).to_string(),
            "env: 3 MiB is over the limit of 64 KiB"
        );
    }

    #[test]
    fn texts() {
        assert!(check_text("reason", "out of disk\non r1", 100).is_ok());
        assert!(check_text("reason", &"x".repeat(101), 100)
            .unwrap_err()
            .is_too_large());
        assert!(!check_text("reason", "a\0b", 100)
            .unwrap_err()
            .is_too_large());
        assert_eq!(json_size(&serde_json::json!({"a": [1, 2]})), 11);
    }
}

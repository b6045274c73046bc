//! Provenance: what produced an attempt's result. The agent reports what only it knows
//! ([`Ran`]: the image id it actually ran, or the program it resolved; its version and
//! executor) in its `Finished` report; the master adds the runner's facts and its own version
//! ([`RunnerSide`]); the store joins both with the fold's spec and the attempt's grant
//! ([`build`]) and keeps the result ([`Provenance`]) with the attempt.
//!
//! Secrets: the value of every environment variable whose name contains SECRET, TOKEN,
//! PASSWORD, PASSWD, KEY or CREDENTIAL (any case) is recorded as [`REDACTED`]; a rerun must be
//! given those values again.
//!
//! A docker fold is pinned to the image it ran as `NAME@sha256:HEX` (see [`pinned_image`]).

use super::{AttemptId, FoldId, FoldSpec, InputRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Name parts that mark a variable as a secret (compared in upper case).
const SECRET_MARKS: [&str; 6] = ["SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"];

/// The most repo digests kept, and the longest text an agent may put in one field: an agent's
/// report cannot make a record grow without bound.
const MAX_DIGESTS: usize = 16;
const MAX_FIELD: usize = 4096;

/// Whether a variable's value is kept out of records.
pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKS.iter().any(|m| upper.contains(m))
}

/// The environment as recorded: secrets' values replaced by [`REDACTED`].
pub fn redact(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = if is_secret(k) { REDACTED } else { v.as_str() };
            (k.clone(), v.to_string())
        })
        .collect()
}

/// A program a process fold ran: its resolved path and the sha256 of its file (none when it
/// could not be read or is larger than the agent hashes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What ran: the executor, and the image (docker) or the program (process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    /// "docker" or "process"; absent when the agent did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// The image as the fold named it (a tag, or a pinned reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The engine's id of the image the container ran (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// A process fold's program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Program>,
}

/// What the agent alone knows about how it ran an attempt (an optional field of its report:
/// older agents send none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    #[serde(flatten)]
    pub executed: Executed,
    pub agent_version: String,
}

impl Ran {
    /// The same, every field within [`MAX_FIELD`] and at most [`MAX_DIGESTS`] digests: what an
    /// agent says cannot make a record grow without bound.
    pub fn clipped(self) -> Ran {
        let e = self.executed;
        Ran {
            executed: Executed {
                executor: e.executor.map(clip),
                image: e.image.map(clip),
                image_id: e.image_id.map(clip),
                repo_digests: e
                    .repo_digests
                    .into_iter()
                    .take(MAX_DIGESTS)
                    .map(clip)
                    .collect(),
                program: e.program.map(|p| Program {
                    path: clip(p.path),
                    sha256: p.sha256.map(clip),
                }),
            },
            agent_version: clip(self.agent_version),
        }
    }
}

/// The runner as the master knows it when the result arrives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerFacts {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
}

/// What the master adds to an agent's report.
#[derive(Clone, Debug)]
pub struct RunnerSide {
    pub attempt: AttemptId,
    pub runner: RunnerFacts,
    /// The runner's own time limits (the tighter of its and the fold's apply).
    pub soft_time_limit_ms: Option<u64>,
    pub hard_time_limit_ms: Option<u64>,
    /// The agent's part, if it sent one.
    pub ran: Option<Ran>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// The agent's version (its report's, else its hello's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub master: String,
}

/// The limits the attempt was granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantedLimits {
    pub cpus: f64,
    pub memory: u64,
    pub gpus: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_time_limit_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_time_limit_ms: Option<u64>,
}

/// What produced one attempt's result, as stored and served
/// (`GET /api/v1/folds/{id}/provenance`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub fold: FoldId,
    pub attempt: AttemptId,
    #[serde(flatten)]
    pub executed: Executed,
    /// Input name -> sha256.
    pub inputs: BTreeMap<String, String>,
    pub argv: Vec<String>,
    /// Secrets redacted (see [`is_secret`]).
    pub env: BTreeMap<String, String>,
    pub runner: RunnerFacts,
    pub versions: Versions,
    pub limits: GrantedLimits,
}

/// The time limits an attempt runs under: the tighter hard limit of the fold's and the
/// runner's, and a soft limit only when it comes before the hard one.
pub fn time_limits(
    fold: (Option<u64>, Option<u64>),
    runner: (Option<u64>, Option<u64>),
) -> (Option<u64>, Option<u64>) {
    let hard = match (fold.1, runner.1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let soft = fold.0.or(runner.0).filter(|s| hard.is_none_or(|h| *s < h));
    (soft, hard)
}

fn clip(text: String) -> String {
    if text.len() <= MAX_FIELD {
        return text;
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The record of one attempt: the fold's spec (argv, env redacted, inputs, image), the grant,
/// and what the master and the agent said.
pub fn build(
    fold: FoldId,
    spec: &FoldSpec,
    grant: &crate::protocol::Grant,
    side: RunnerSide,
) -> Provenance {
    let ran = side.ran.unwrap_or_default().clipped();
    let (soft, hard) = time_limits(
        (spec.soft_time_limit, spec.hard_time_limit),
        (side.soft_time_limit_ms, side.hard_time_limit_ms),
    );
    let mut executed = ran.executed;
    executed.image = executed.image.or_else(|| spec.image.clone());
    Provenance {
        fold,
        attempt: side.attempt,
        executed,
        inputs: spec
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.sha256.clone()))
            .collect(),
        argv: spec.command.clone(),
        env: redact(&spec.env),
        runner: side.runner,
        versions: Versions {
            agent: Some(ran.agent_version).filter(|v| !v.is_empty()),
            master: env!("CARGO_PKG_VERSION").to_string(),
        },
        limits: GrantedLimits {
            cpus: f64::from(grant.millicpus) / 1000.0,
            memory: grant.memory,
            gpus: grant.gpus.clone(),
            soft_time_limit_ms: soft,
            hard_time_limit_ms: hard,
        },
    }
}

/// `NAME@sha256:HEX`: the image a rerun runs. `NAME` (the tag, digest removed) is what runner
/// allowlists and scheduling match; `HEX` is the engine's image id it ran, or its first repo
/// digest when the engine gave no id.
pub fn pinned_image(p: &Provenance) -> Option<String> {
    let e = &p.executed;
    let name = unpinned(e.image.as_deref()?);
    let id = e.image_id.as_deref().or_else(|| {
        e.repo_digests
            .first()
            .and_then(|d| d.split_once('@').map(|(_, d)| d))
    })?;
    Some(format!("{name}@{id}"))
}

/// An image reference without its `@sha256:...` pin (the name allowlists match).
pub fn unpinned(image: &str) -> &str {
    match pin_at(image) {
        Some(i) => &image[..i],
        None => image,
    }
}

/// The pin of `NAME@sha256:HEX` (`sha256:HEX`), if the reference has one.
pub fn pin(image: &str) -> Option<&str> {
    pin_at(image).map(|i| &image[i + 1..])
}

/// Where the first `@sha256:` starts. A search for the byte `@` first: the scheduler's Image
/// step unpins once per fold and runner, and a substring search set up per call was 8% of a
/// cycle over 100,000 folds naming images.
fn pin_at(image: &str) -> Option<usize> {
    image
        .match_indices('@')
        .map(|(i, _)| i)
        .find(|&i| image[i..].starts_with("@sha256:"))
}

/// Why a rerun of this record cannot be submitted with `given` secrets, or the environment
/// it runs with: every redacted variable must be given again, and only those.
pub fn rerun_env(
    p: &Provenance,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let redacted: Vec<&String> = p
        .env
        .iter()
        .filter(|(_, v)| *v == REDACTED)
        .map(|(k, _)| k)
        .collect();
    if let Some(extra) = given.keys().find(|k| !redacted.contains(k)) {
        return Err(format!(
            "env: {extra} is not a redacted variable of attempt {} (only redacted secrets are \
             given again; the rest is rerun as recorded)",
            p.attempt
        ));
    }
    let missing: Vec<&str> = redacted
        .iter()
        .filter(|k| !given.contains_key(k.as_str()))
        .map(|k| k.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "attempt {} ran with secrets whose values were not recorded: give them again \
             (--env NAME=VALUE, or \"env\" in the body): {}",
            p.attempt,
            missing.join(", ")
        ));
    }
    let mut env = p.env.clone();
    env.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// The inputs of a record as a fold names them.
pub fn inputs(p: &Provenance) -> Vec<InputRef> {
    p.inputs
        .iter()
        .map(|(name, sha256)| InputRef {
            name: name.clone(),
            sha256: sha256.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_name_in_any_case() {
        let env: BTreeMap<String, String> = [
            ("API_TOKEN", "t"),
            ("db_password", "p"),
            ("aws_secret_access_key", "s"),
            ("SSH_PASSWD", "x"),
            ("MyKey", "k"),
            ("GCP_CREDENTIALS", "c"),
            ("SEED", "42"),
            ("PATH", "/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = redact(&env);
        for k in [
            "API_TOKEN",
            "db_password",
            "aws_secret_access_key",
            "SSH_PASSWD",
            "MyKey",
            "GCP_CREDENTIALS",
        ] {
            assert_eq!(r[k], REDACTED, "{k}");
        }
        assert_eq!(r["SEED"], "42");
        assert_eq!(r["PATH"], "/bin");
    }

    #[test]
    fn time_limits_take_the_tighter_hard_and_an_earlier_soft() {
        assert_eq!(
            time_limits((Some(5), Some(10)), (None, Some(8))),
            (Some(5), Some(8))
        );
        assert_eq!(
            time_limits((Some(9), None), (None, Some(8))),
            (None, Some(8))
        );
        assert_eq!(time_limits((None, None), (Some(3), None)), (Some(3), None));
    }

    #[test]
    fn pins_and_unpins() {
        assert_eq!(unpinned("busybox:test@sha256:ab"), "busybox:test");
        assert_eq!(unpinned("busybox:test"), "busybox:test");
        assert_eq!(pin("busybox:test@sha256:ab"), Some("sha256:ab"));
        assert_eq!(pin("busybox:test"), None);
        // Only an `@` that starts `@sha256:` pins; the first such one.
        assert_eq!(unpinned("a@b@sha256:cd"), "a@b");
        assert_eq!(pin("a@b@sha256:cd"), Some("sha256:cd"));
        assert_eq!(unpinned("a@sha256:b@sha256:c"), "a");
        assert_eq!(unpinned("a@sha256"), "a@sha256");
        assert_eq!(pin("a@"), None);
    }

    #[test]
    fn a_rerun_needs_every_redacted_secret_and_only_those() {
        let p = Provenance {
            fold: 1,
            attempt: 2,
            executed: Executed {
                image: Some("busybox:test".into()),
                image_id: Some("sha256:ab".into()),
                ..Executed::default()
            },
            inputs: BTreeMap::new(),
            argv: vec!["true".into()],
            env: [("A_TOKEN", REDACTED), ("SEED", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runner: RunnerFacts::default(),
            versions: Versions {
                agent: None,
                master: "x".into(),
            },
            limits: GrantedLimits {
                cpus: 1.0,
                memory: 1,
                gpus: vec![],
                soft_time_limit_ms: None,
                hard_time_limit_ms: None,
            },
        };
        assert_eq!(pinned_image(&p).as_deref(), Some("busybox:test@sha256:ab"));
        let none = BTreeMap::new();
        let err = rerun_env(&p, &none).unwrap_err();
        assert!(err.contains("A_TOKEN"), "{err}");
        let extra: BTreeMap<String, String> = [("SEED".to_string(), "2".to_string())].into();
        assert!(rerun_env(&p, &extra).is_err());
        let given: BTreeMap<String, String> = [("A_TOKEN".to_string(), "v".to_string())].into();
        let env = rerun_env(&p, &given).unwrap();
        assert_eq!(env["A_TOKEN"], "v");
        assert_eq!(env["SEED"], "1");
    }
}

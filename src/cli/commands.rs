//! Client commands: each talks to the master over the REST API and prints a table or JSON.

use super::Conn;
use crate::model::Priority;
use crate::units::{format_duration, format_size};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An exit with a chosen status code and nothing more to say (the command printed it).
#[derive(Debug)]
pub struct Exit(pub u8);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

/// `--env NAME=VALUE` arguments as a map.
pub(super) fn parse_env(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for kv in args {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected NAME=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

pub(super) fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Lines on stdout in one buffered write rather than one write each (a thousand fold ids).
fn print_lines(lines: impl Iterator<Item = String>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

pub(super) fn ms(v: &Value) -> String {
    v.as_u64()
        .map(|m| format_duration(Duration::from_millis(m)))
        .unwrap_or_else(|| "-".into())
}

pub(super) fn size(v: &Value) -> String {
    v.as_u64().map(format_size).unwrap_or_else(|| "-".into())
}

pub(super) fn when(v: &Value) -> String {
    match v.as_i64() {
        Some(t) => {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(t as u64);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        None => "-".into(),
    }
}

pub(super) fn short_when(v: &Value) -> String {
    let full = when(v);
    // 2026-11-25T06:50:12Z -> 11-25 06:50:12
    if full.len() >= 19 {
        format!("{} {}", &full[5..10], &full[11..19])
    } else {
        full
    }
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long, short, default_value = crate::model::DEFAULT_QUEUE)]
    queue: String,
    /// An integer, or H / L as in the original datarun.
    #[arg(long, short, default_value = "0", value_parser = Priority::parse, allow_hyphen_values = true)]
    priority: Priority,
    #[arg(long, default_value = "1")]
    cpus: f64,
    #[arg(long, default_value = "256M", value_parser = crate::units::parse_size)]
    memory: u64,
    #[arg(long, default_value = "0")]
    gpus: u32,
    /// SIGTERM after this long, e.g. 5m.
    #[arg(long, value_parser = crate::units::parse_duration)]
    soft_limit: Option<Duration>,
    /// SIGKILL after this long.
    #[arg(long, value_parser = crate::units::parse_duration)]
    hard_limit: Option<Duration>,
    /// A file to place in the fold's input directory (repeatable): `PATH` keeps its file name,
    /// `NAME=PATH` places it as NAME, which may have directories (`data/train.csv`).
    #[arg(long = "input", short = 'i', value_name = "[NAME=]PATH")]
    inputs: Vec<String>,
    /// NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    #[arg(long, default_value = "0")]
    max_retries: u32,
    /// Container image (docker runners).
    #[arg(long)]
    image: Option<String>,
    /// An expression over runner attributes a runner must meet, e.g.
    /// 'gpus >= 1 && "fast-disk" in labels' (see the README, "Requirements and rank").
    #[arg(long, allow_hyphen_values = true)]
    requirements: Option<String>,
    /// An expression over runner attributes; higher is preferred, e.g. 'memory' ('-memory':
    /// the smallest).
    #[arg(long, allow_hyphen_values = true)]
    rank: Option<String>,
    /// How many identical folds to submit.
    #[arg(long, default_value = "1", conflicts_with = "array")]
    count: u32,
    /// An array: one fold per index, `$DATARUN_ARRAY_INDEX` in its environment, e.g. 0-4,
    /// 0-99:2, 1,3,5-7; `%N` runs at most N at once (0-99%8). Prints ARRAY.INDEX per fold.
    #[arg(long)]
    array: Option<String>,
    /// With --array or --sweep: when a fold fails with its own error (exit code, signal,
    /// outputs over the limit), remove its idle and waiting siblings, saying why.
    #[arg(long)]
    stop_on_failure: bool,
    /// A parameter sweep (README "Sweeps"): a TOML file with a [grid] and/or seeded [random]
    /// samples; one fold per point, its values in $DATARUN_PARAM_<NAME> and params.json.
    /// Prints SWEEP.INDEX per point (the sweep is an array: `queue remove --array SWEEP`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["array", "count"])]
    sweep: Option<PathBuf>,
    /// Call this URL when each fold ends (with --array: once, when the whole array has
    /// ended): a signed JSON POST, retried until delivered (README "Webhooks").
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Wait until these folds are done (`ID,ID...`, or `ARRAY.INDEX`); if one fails or is
    /// removed, this fold fails saying why (Slurm's afterok). Also --after-ok.
    #[arg(long, alias = "after-ok", value_delimiter = ',')]
    after: Vec<String>,
    /// Wait until these folds end, however they end (Slurm's afterany).
    #[arg(long, value_delimiter = ',')]
    after_any: Vec<String>,
    /// `ID:NAME` or `ID:NAME=AS`: once fold ID is done, its output NAME is an input of this
    /// fold (named AS), which waits for ID as --after does. Repeatable.
    #[arg(long, value_name = "ID:NAME[=AS]")]
    input_from: Vec<String>,
    #[arg(long)]
    json: bool,
    /// Then wait until the folds end, as `queue wait` does: exit 0 when all are done, 1 when
    /// any failed, was removed or is held, 2 on --timeout.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (exit 6).
    #[arg(long, requires = "wait", value_parser = crate::units::parse_duration)]
    timeout: Option<Duration>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// A fold named on the command line: its id, or `ARRAY.INDEX` (looked up on the master).
pub fn resolve_fold(client: &super::client::Client, text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(id) = text.parse::<i64>() {
        return Ok(id);
    }
    let bad = || super::exit::usage(format!("{text:?} is not a fold id (ID or ARRAY.INDEX)"));
    let (array, index) = text.split_once('.').ok_or_else(bad)?;
    let (array, index): (i64, i64) = (
        array.parse().map_err(|_| bad())?,
        index.parse().map_err(|_| bad())?,
    );
    let v: Value = client.get(&format!("/arrays/{array}/{index}"))?;
    v["fold"]["id"]
        .as_i64()
        .with_context(|| format!("fold {text}: no id in the master's answer"))
}

/// Fold ids or `ARRAY.INDEX` names, resolved.
pub fn resolve_folds(client: &super::client::Client, texts: &[String]) -> Result<Vec<i64>> {
    texts.iter().map(|t| resolve_fold(client, t)).collect()
}

/// `--input [NAME=]PATH`: the name in the fold's input directory and the local file.
fn input_arg(arg: &str) -> Result<(String, PathBuf)> {
    let (name, path) = match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !Path::new(arg).exists() => {
            (name.to_string(), PathBuf::from(path))
        }
        _ => {
            let path = PathBuf::from(arg);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("--input {arg}: not a file name"))?
                .to_string();
            (name, path)
        }
    };
    crate::model::check_file_name(&name).map_err(|e| anyhow::anyhow!("--input {arg}: {e}"))?;
    Ok((name, path))
}

pub fn submit(a: SubmitArgs) -> Result<()> {
    if a.stop_on_failure && a.array.is_none() && a.sweep.is_none() {
        return Err(super::exit::usage(
            "--stop-on-failure needs --array or --sweep",
        ));
    }
    // A bad sweep file is refused before anything is uploaded.
    let sweep = a
        .sweep
        .as_deref()
        .map(super::sweep::read_file)
        .transpose()?;
    let client = a.conn.client()?;
    let mut inputs = Vec::new();
    for arg in &a.inputs {
        let (name, path) = input_arg(arg)?;
        let data = std::fs::read(&path)
            .with_context(|| format!("--input {arg}: cannot read {}", path.display()))?;
        let blob: Value = client.post_bytes("/blobs", data)?;
        inputs.push(json!({"name": name, "sha256": blob["sha256"]}));
    }
    let env = parse_env(&a.env)?;
    let spec = json!({
        "command": a.command,
        "image": a.image,
        "inputs": inputs,
        "env": env,
        "resources": {"cpus": a.cpus, "memory": a.memory, "gpus": a.gpus},
        "soft_time_limit": a.soft_limit.map(|d| d.as_secs_f64()),
        "hard_time_limit": a.hard_limit.map(|d| d.as_secs_f64()),
        "queue": a.queue,
        "priority": a.priority.0,
        "max_retries": a.max_retries,
        "requirements": a.requirements,
        "rank": a.rank,
    });
    let mut spec = spec;
    let mut after = Vec::new();
    for (ids, when) in [(&a.after, "ok"), (&a.after_any, "any")] {
        for id in ids {
            after.push(json!({ "fold": resolve_fold(&client, id)?, "when": when }));
        }
    }
    let mut inputs_from = Vec::new();
    for arg in &a.input_from {
        let (id, name) = arg
            .split_once(':')
            .with_context(|| format!("--input-from {arg:?}: expected ID:NAME or ID:NAME=AS"))?;
        let mut from = json!({ "fold": resolve_fold(&client, id)?, "output": name });
        if let Some((output, to)) = name.split_once('=') {
            from = json!({ "fold": from["fold"], "output": output, "name": to });
        }
        inputs_from.push(from);
    }
    if !after.is_empty() {
        spec["after"] = json!(after);
    }
    if !inputs_from.is_empty() {
        spec["inputs_from"] = json!(inputs_from);
    }
    // With --wait: where the event log stands before the folds exist, so that every change
    // of theirs comes as an event after it and they need no lookup one by one.
    let since = a
        .wait
        .then(|| super::wait::event_seq(&client))
        .transpose()?;
    let wait = |ids: &[i64]| match since {
        Some(seq) => super::wait::wait_since(&a.conn, ids, a.timeout, seq),
        None => Ok(()),
    };
    if a.array.is_some() || sweep.is_some() {
        let answer: Value = match (&a.array, sweep) {
            (Some(array), _) => client.post(
                "/arrays",
                &json!({ "spec": spec, "array": array, "stop_on_failure": a.stop_on_failure, "webhook": a.webhook }),
            )?,
            (None, sweep) => {
                let mut v: Value = client.post(
                    "/sweeps",
                    &json!({ "spec": spec, "sweep": sweep, "stop_on_failure": a.stop_on_failure, "webhook": a.webhook }),
                )?;
                v["array"] = v["sweep"].clone();
                v
            }
        };
        let folds: Vec<&Value> = answer["folds"].as_array().into_iter().flatten().collect();
        if a.json {
            print_json(&answer)?;
        } else {
            print_lines(
                folds
                    .iter()
                    .map(|f| format!("{}.{}", answer["array"], f["index"])),
            )?;
            if let Some(h) = answer["held"].as_object() {
                eprintln!(
                    "warning: the array's folds are held: {}",
                    h["reason"].as_str().unwrap_or("")
                );
            }
        }
        let ids: Vec<i64> = folds.iter().filter_map(|f| f["id"].as_i64()).collect();
        return wait(&ids);
    }
    if let Some(url) = &a.webhook {
        spec["webhook"] = json!(url);
    }
    // The spec once, and how many folds it becomes.
    let answer: Value = client.post(
        "/folds/batch",
        &json!({ "folds": [spec], "count": a.count }),
    )?;
    if a.json {
        print_json(&answer)?;
    } else {
        let ids = answer["ids"].as_array().into_iter().flatten();
        print_lines(ids.map(|id| id.to_string()))?;
        for h in answer["held"].as_array().into_iter().flatten() {
            eprintln!(
                "warning: fold {} is held: {}",
                h["id"],
                h["reason"].as_str().unwrap_or("")
            );
        }
    }
    let ids: Vec<i64> = answer["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    wait(&ids)
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Load an image tarball (from `docker save`) into this machine's Docker engine; `-` reads
    /// it from stdin (as `datarun provision` streams it over SSH).
    Load { file: PathBuf },
    /// The engine's version and whether it has these images (used by `datarun provision`).
    #[command(hide = true)]
    Probe { images: Vec<String> },
}

pub async fn image(cmd: ImageCmd) -> Result<()> {
    let file = match cmd {
        ImageCmd::Load { file } => file,
        ImageCmd::Probe { images } => {
            let out = crate::agent::docker::engine::probe(&images)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            print!("{out}");
            return Ok(());
        }
    };
    let (path, shown) = if file.as_os_str() == "-" {
        (PathBuf::from("/dev/stdin"), PathBuf::from("stdin"))
    } else {
        (file.clone(), file)
    };
    let docker = crate::agent::docker::DockerExecutor::connect(Default::default()).await?;
    let names = docker.load_image(&path).await?;
    if names.is_empty() {
        bail!(
            "{}: the engine loaded no named image (is it a `docker save` tarball?)",
            shown.display()
        );
    }
    for name in names {
        println!("loaded {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::input_arg;
    use std::path::PathBuf;

    #[test]
    fn input_names() {
        let (name, path) = input_arg("/tmp/kit/train.csv").unwrap();
        assert_eq!(
            (name.as_str(), path),
            ("train.csv", PathBuf::from("/tmp/kit/train.csv"))
        );
        let (name, path) = input_arg("data/train.csv=/tmp/kit/train.csv").unwrap();
        assert_eq!(
            (name.as_str(), path),
            ("data/train.csv", PathBuf::from("/tmp/kit/train.csv"))
        );
        for hostile in ["../x=/tmp/a", "/etc/passwd=/tmp/a", "a/../../b=/tmp/a"] {
            let err = input_arg(hostile).unwrap_err().to_string();
            assert!(err.contains("--input"), "{hostile}: {err}");
        }
    }
}

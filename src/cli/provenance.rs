//! `datarun fold provenance ID` and `datarun fold rerun ID [--compare]` (README "Provenance
//! and rerun"): thin over `GET /folds/{id}/provenance` and `POST /folds/{id}/rerun`.

use super::commands::{print_json, size, Exit};
use super::Conn;
use crate::table::Table;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `fold provenance`: the record as aligned FIELD / VALUE rows, or as JSON.
pub fn show(conn: &Conn, id: &str, attempt: Option<i64>, json: bool) -> Result<()> {
    let client = conn.client()?;
    let id = super::commands::resolve_fold(&client, id)?;
    let query = attempt.map(|a| format!("?attempt={a}")).unwrap_or_default();
    let p: Value = client.get(&format!("/folds/{id}/provenance{query}"))?;
    if json {
        return print_json(&p);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| t.row([k.to_string(), v]);
    row("fold", text(&p["fold"]));
    row("attempt", text(&p["attempt"]));
    row("executor", text(&p["executor"]));
    if !p["image"].is_null() {
        row("image", text(&p["image"]));
        row("image id", text(&p["image_id"]));
        for d in p["repo_digests"].as_array().into_iter().flatten() {
            row("repo digest", text(d));
        }
    }
    if !p["program"].is_null() {
        row("program", text(&p["program"]["path"]));
        row("program sha256", text(&p["program"]["sha256"]));
    }
    let argv: Vec<&str> = p["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    row("argv", shell_words::join(argv));
    for (k, v) in p["env"].as_object().into_iter().flatten() {
        row("env", format!("{k}={}", text(v)));
    }
    for (k, v) in p["inputs"].as_object().into_iter().flatten() {
        row("input", format!("{k} sha256:{}", text(v)));
    }
    let r = &p["runner"];
    row("runner", text(&r["name"]));
    row(
        "runner facts",
        format!(
            "{} cpus, {}, {} {}, host {}",
            text(&r["cpus"]),
            size(&r["memory"]),
            text(&r["os"]),
            text(&r["arch"]),
            text(&r["hostname"])
        ),
    );
    if !r["docker_version"].is_null() {
        row("docker", text(&r["docker_version"]));
    }
    row("agent version", text(&p["versions"]["agent"]));
    row("master version", text(&p["versions"]["master"]));
    let l = &p["limits"];
    let gpus: Vec<String> = l["gpus"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let ms = |v: &Value| {
        v.as_u64()
            .map(|m| crate::units::format_duration(Duration::from_millis(m)))
            .unwrap_or_else(|| "-".into())
    };
    row(
        "limits",
        format!(
            "{} cpus, {}, gpus [{}], soft {}, hard {}",
            text(&l["cpus"]),
            size(&l["memory"]),
            gpus.join(","),
            ms(&l["soft_time_limit_ms"]),
            ms(&l["hard_time_limit_ms"])
        ),
    );
    print!("{}", t.render());
    Ok(())
}

/// What `fold rerun` is asked.
pub struct Rerun {
    pub attempt: Option<i64>,
    pub env: Vec<String>,
    pub compare: bool,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

/// `fold rerun`: submits the rerun and prints its id; with --wait, waits for it; with
/// --compare, also compares its outputs with the original's (exit 0 all byte-identical, 1
/// otherwise, with the table).
pub fn rerun(conn: &Conn, id: &str, a: Rerun) -> Result<()> {
    let client = conn.client()?;
    let id = super::commands::resolve_fold(&client, id)?;
    let env = super::commands::parse_env(&a.env)?;
    let mut body = json!({ "env": env });
    if let Some(attempt) = a.attempt {
        body["attempt"] = json!(attempt);
    }
    let made: Value = client.post(&format!("/folds/{id}/rerun"), &body)?;
    let new = made["id"]
        .as_i64()
        .context("the master answered no fold id")?;
    let original = made["from"]["attempt"].as_i64().unwrap_or_default();
    println!("{new}");
    if !a.compare && !a.wait {
        return Ok(());
    }
    let waited = super::wait::wait(conn, &[new], a.timeout);
    if !a.compare {
        return waited;
    }
    if let Err(e) = waited {
        eprintln!("rerun fold {new} did not end done: nothing to compare");
        return Err(e);
    }
    let before: Value = client.get(&format!("/folds/{id}"))?;
    let after: Value = client.get(&format!("/folds/{new}"))?;
    let outputs_of = |v: &Value, attempt: Option<i64>| -> BTreeMap<String, String> {
        let attempts = v["attempts"].as_array().cloned().unwrap_or_default();
        let chosen = match attempt {
            Some(a) => attempts.iter().find(|x| x["id"].as_i64() == Some(a)),
            None => attempts.last(),
        };
        chosen
            .and_then(|x| x["outputs"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some((
                    o["name"].as_str()?.to_string(),
                    o["sha256"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let was = outputs_of(&before, Some(original));
    let now = outputs_of(&after, None);
    let names: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    let mut t = Table::new(&["OUTPUT", "ORIGINAL", "RERUN", "SAME"]);
    let mut differ = Vec::new();
    for name in &names {
        let (x, y) = (was.get(*name), now.get(*name));
        let same = x.is_some() && x == y;
        if !same {
            differ.push(name.as_str());
        }
        let show =
            |s: Option<&String>| s.map_or("-".to_string(), |s| s[..s.len().min(16)].to_string());
        t.row([
            name.to_string(),
            show(x),
            show(y),
            if same { "yes" } else { "NO" }.to_string(),
        ]);
    }
    print!("{}", t.render());
    if differ.is_empty() {
        println!(
            "identical: the {} outputs of fold {new} are byte-identical to those of fold {id} attempt {original}",
            names.len()
        );
        Ok(())
    } else {
        println!(
            "different: {} of {} outputs differ from fold {id} attempt {original}: {}",
            differ.len(),
            names.len(),
            differ.join(", ")
        );
        Err(Exit(super::exit::FAILED).into())
    }
}

//! `datarun fold ...`: show, output, log.

use super::commands::print_json;
use super::commands::{ms, short_when, size, when};
use super::Conn;
use crate::table::Table;
use crate::units::format_duration;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum FoldCmd {
    /// Everything about one fold: spec, state, attempts, and why it is not running.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write one output file of the fold's newest attempt to stdout (or --output FILE).
    Output {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
        name: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The fold's log (stdout and stderr, tail-capped).
    Log {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
    },
}

pub fn fold(cmd: FoldCmd) -> Result<()> {
    match cmd {
        FoldCmd::Show { conn, id, json } => {
            let client = conn.client()?;
            let id = super::commands::resolve_fold(&client, &id)?;
            let v: Value = client.get(&format!("/folds/{id}"))?;
            if json {
                return print_json(&v);
            }
            // ML folds report their phases (trained, validated, tested) in phases.json.
            let newest = v["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .cloned()
                .unwrap_or_default();
            let has_phases = newest["outputs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["name"] == "phases.json");
            let phases = if has_phases {
                client
                    .get_bytes(&format!("/folds/{id}/outputs/phases.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            } else {
                None
            };
            show_fold(&v, phases);
            Ok(())
        }
        FoldCmd::Output {
            conn,
            id,
            name,
            output,
        } => {
            let client = conn.client()?;
            let id = super::commands::resolve_fold(&client, &id)?;
            let data = client.get_bytes(&format!("/folds/{id}/outputs/{name}"))?;
            match output {
                Some(path) => std::fs::write(&path, data)
                    .with_context(|| format!("cannot write {}", path.display())),
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&data)?;
                    Ok(())
                }
            }
        }
        FoldCmd::Log { conn, id } => {
            let client = conn.client()?;
            let id = super::commands::resolve_fold(&client, &id)?;
            let data = client.get_bytes(&format!("/folds/{id}/log"))?;
            use std::io::Write;
            std::io::stdout().write_all(&data)?;
            Ok(())
        }
    }
}

fn show_fold(v: &Value, phases: Option<Vec<String>>) {
    let f = &v["fold"];
    let s = &f["spec"];
    let cmd = s["command"]
        .as_array()
        .map(|a| shell_words::join(a.iter().filter_map(|x| x.as_str())))
        .unwrap_or_default();
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, val: String| t.row([k.to_string(), val]);
    row("id", f["id"].to_string());
    row("state", f["state"].as_str().unwrap_or("").to_string());
    if let Some(r) = f["reason"].as_str() {
        row("reason", r.to_string());
    }
    row("owner", f["owner"].as_str().unwrap_or("").to_string());
    row(
        "queue",
        format!(
            "{} (priority {})",
            f["queue"].as_str().unwrap_or(""),
            f["priority"]
        ),
    );
    row("command", cmd);
    row(
        "resources",
        format!(
            "{} cpus, {}, {} gpus",
            s["resources"]["cpus"],
            size(&s["resources"]["memory"]),
            s["resources"]["gpus"]
        ),
    );
    let limit = |k: &str| {
        s[k].as_f64()
            .map(|x| format_duration(Duration::from_secs_f64(x)))
            .unwrap_or_else(|| "-".into())
    };
    row(
        "time limits",
        format!(
            "soft {}, hard {}",
            limit("soft_time_limit"),
            limit("hard_time_limit")
        ),
    );
    row("submitted", when(&f["submitted_at"]));
    row(
        "attempts",
        format!(
            "{} (retries used {} of {}; runner lost {} times)",
            f["attempts"], f["retries_used"], s["max_retries"], f["losses"]
        ),
    );
    if let Some(o) = f["outcome"].as_object() {
        row("outcome", describe_outcome(&Value::Object(o.clone())));
    }
    if let Some(phases) = phases {
        row("phases", phases.join(", "));
    }
    if !v["progress"].is_null() {
        let p = &v["progress"];
        row(
            "progress",
            format!(
                "running {}, cpu {}, memory {} (peak {})",
                ms(&p["wall_ms"]),
                ms(&p["cpu_ms"]),
                size(&p["memory"]),
                size(&p["peak_memory"])
            ),
        );
    }
    print!("{}", t.render());
    if let Some(why) = v["why_pending"].as_object() {
        println!(
            "\nWhy it is not running: {}",
            why["summary"].as_str().unwrap_or("")
        );
        for r in why["rejections"].as_array().into_iter().flatten() {
            println!("  - {}", r["detail"].as_str().unwrap_or(""));
        }
    }
    let attempts = v["attempts"].as_array().cloned().unwrap_or_default();
    if !attempts.is_empty() {
        println!();
        let mut t = Table::new(&[
            "ATTEMPT",
            "RUNNER",
            "STARTED",
            "OUTCOME",
            ">WALL",
            ">CPU",
            ">PEAK_MEM",
            "OUTPUTS",
        ]);
        for a in &attempts {
            let outputs: Vec<&str> = a["outputs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["name"].as_str())
                .collect();
            t.row([
                a["id"].to_string(),
                a["runner"].as_str().unwrap_or("").to_string(),
                short_when(&a["started_at"]),
                if a["outcome"].is_null() {
                    a["state"].as_str().unwrap_or("").to_string()
                } else {
                    describe_outcome(&a["outcome"])
                },
                ms(&a["metrics"]["wall_ms"]),
                ms(&a["metrics"]["cpu_ms"]),
                size(&a["metrics"]["peak_memory"]),
                outputs.join(","),
            ]);
        }
        print!("{}", t.render());
    }
}

fn describe_outcome(o: &Value) -> String {
    match serde_json::from_value::<crate::model::Outcome>(o.clone()) {
        Ok(o) => o.to_string(),
        Err(_) => o.to_string(),
    }
}

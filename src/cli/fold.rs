//! `datarun fold ...`: show, output, log, provenance, rerun (`cli::provenance`).

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
    /// The fold's log (stdout and stderr, tail-capped); with --follow, as it is written.
    Log {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
        /// Print the log as the fold writes it, until the fold ends; the exit code then says
        /// how it ended (0 done, 1 otherwise).
        #[arg(long, short)]
        follow: bool,
        /// Start at this byte of the fold's output (see README "Live logs").
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// What produced a result: image digest, inputs' sha256, argv, environment (secrets
    /// redacted), runner and its facts, versions, limits (README "Provenance and rerun").
    Provenance {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
        /// Another attempt of the fold than its newest with a record.
        #[arg(long)]
        attempt: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Submit a new fold from exactly a result's record (image pinned by id, same inputs,
    /// argv, environment and limits); prints its id.
    Rerun {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
        /// Another attempt of the fold than its newest with a record.
        #[arg(long)]
        attempt: Option<i64>,
        /// NAME=VALUE of a secret the record redacted (each must be given again).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Wait for the rerun, then say whether each output is byte-identical to the
        /// original's: exit 0 all identical, 1 otherwise (with the table).
        #[arg(long)]
        compare: bool,
        /// Wait until the rerun ends (exit 0 done, 1 otherwise).
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit 6).
        #[arg(long, value_parser = crate::units::parse_duration)]
        timeout: Option<Duration>,
    },
}

pub fn fold(cmd: FoldCmd) -> Result<()> {
    match cmd {
        FoldCmd::Provenance {
            conn,
            id,
            attempt,
            json,
        } => super::provenance::show(&conn, &id, attempt, json),
        FoldCmd::Rerun {
            conn,
            id,
            attempt,
            env,
            compare,
            wait,
            timeout,
        } => {
            let rerun = super::provenance::Rerun {
                attempt,
                env,
                compare,
                wait,
                timeout,
            };
            super::provenance::rerun(&conn, &id, rerun)
        }
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
        FoldCmd::Log {
            conn,
            id,
            follow: true,
            offset,
        } => {
            let id = super::commands::resolve_fold(&conn.client()?, &id)?;
            follow_log(&conn, id, offset)
        }
        FoldCmd::Log {
            conn, id, offset, ..
        } => {
            let client = conn.client()?;
            let id = super::commands::resolve_fold(&client, &id)?;
            let path = match offset {
                0 => format!("/folds/{id}/log"),
                n => format!("/folds/{id}/log?offset={n}"),
            };
            let data = client.get_bytes(&path)?;
            use std::io::Write;
            std::io::stdout().write_all(&data)?;
            Ok(())
        }
    }
}

/// How long one followed response may last: the master ends it after `EVENT_STREAM_LIFE`
/// (after waiting up to `MAX_EVENTS_WAIT` for the fold to start), and it is asked again.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(
    crate::model::limits::EVENT_STREAM_LIFE.as_secs()
        + crate::model::limits::MAX_EVENTS_WAIT.as_secs()
        + 60,
);

/// A number from a response header.
fn header_num(resp: &reqwest::blocking::Response, name: &str) -> Option<i64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// Copies a response to stdout as it arrives; returns how many bytes it had. A response cut
/// off ends the copy: the caller asks again from where it stopped.
fn print_stream(
    resp: &mut reqwest::blocking::Response,
    out: &mut impl std::io::Write,
) -> Result<u64> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(got),
            Ok(n) => n,
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
        got += n as u64;
    }
}

/// `fold log ID --follow`: prints the log as it arrives, asking again where a response ended
/// (it ends with the attempt, after a while, or when a flood dropped unread bytes); once the
/// fold stopped, prints the rest of its recorded log and exits with how it ended. A retry's
/// attempt is followed from its start.
fn follow_log(conn: &Conn, id: i64, mut offset: u64) -> Result<()> {
    use crate::api::follow::{HEADER_ATTEMPT, HEADER_OFFSET, HEADER_SKIPPED};
    use crate::model::FoldState;
    let client = conn.client()?;
    let mut attempt: Option<i64> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let v: Value = client.get(&format!("/folds/{id}"))?;
        let state = v["fold"]["state"].as_str().and_then(FoldState::parse);
        let stopped = state.is_some_and(|s| s.is_final() || s == FoldState::Held);
        let query = if stopped { "" } else { "&follow=1" };
        let path = format!("/folds/{id}/log?offset={offset}{query}");
        let mut resp = client.get_stream(&path, FOLLOW_TIMEOUT)?;
        let now = header_num(&resp, HEADER_ATTEMPT);
        if let (Some(before), Some(now)) = (attempt, now) {
            if before != now {
                eprintln!("[datarun: fold {id}: attempt {before} ended; attempt {now} follows]");
                attempt = Some(now);
                if offset != 0 {
                    offset = 0;
                    continue;
                }
            }
        }
        attempt = attempt.or(now);
        let start = header_num(&resp, HEADER_OFFSET).unwrap_or(offset as i64) as u64;
        let marker = match header_num(&resp, HEADER_SKIPPED).unwrap_or(0) {
            n if n > 0 => crate::agent::tail::marker(n as u64).len() as u64,
            _ => 0,
        };
        let got = print_stream(&mut resp, &mut out)?;
        offset = start + got.saturating_sub(marker);
        if stopped {
            return match state {
                Some(FoldState::Done) => Ok(()),
                _ => {
                    let state = state.map(|s| s.to_string()).unwrap_or_default();
                    eprintln!("fold {id} ended {state}");
                    Err(super::commands::Exit(super::exit::FAILED).into())
                }
            };
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(200));
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

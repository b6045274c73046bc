//! Client commands: each talks to the master over the REST API and prints a table or JSON.

use super::Conn;
use crate::model::{FoldState, Priority};
use crate::table::Table;
use crate::units::{format_duration, format_size};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An exit with a chosen status code and nothing more to say (the command printed it).
#[derive(Debug)]
pub struct Exit(pub u8);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn ms(v: &Value) -> String {
    v.as_u64()
        .map(|m| format_duration(Duration::from_millis(m)))
        .unwrap_or_else(|| "-".into())
}

fn size(v: &Value) -> String {
    v.as_u64().map(format_size).unwrap_or_else(|| "-".into())
}

fn when(v: &Value) -> String {
    match v.as_i64() {
        Some(t) => {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(t as u64);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        None => "-".into(),
    }
}

fn short_when(v: &Value) -> String {
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
    /// A file to place in the fold's input directory, under its file name (repeatable).
    #[arg(long = "input", short = 'i')]
    inputs: Vec<PathBuf>,
    /// NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    #[arg(long, default_value = "0")]
    max_retries: u32,
    /// Container image (docker runners).
    #[arg(long)]
    image: Option<String>,
    /// How many identical folds to submit.
    #[arg(long, default_value = "1")]
    count: u32,
    #[arg(long)]
    json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn submit(a: SubmitArgs) -> Result<()> {
    let client = a.conn.client()?;
    let mut inputs = Vec::new();
    for path in &a.inputs {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("--input {}: not a file name", path.display()))?;
        let data = std::fs::read(path)
            .with_context(|| format!("--input {}: cannot read it", path.display()))?;
        let blob: Value = client.post_bytes("/blobs", data)?;
        inputs.push(json!({"name": name, "sha256": blob["sha256"]}));
    }
    let mut env = BTreeMap::new();
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected NAME=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
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
    });
    let folds: Vec<Value> = (0..a.count).map(|_| spec.clone()).collect();
    let answer: Value = client.post("/folds/batch", &json!({ "folds": folds }))?;
    if a.json {
        return print_json(&answer);
    }
    for id in answer["ids"].as_array().into_iter().flatten() {
        println!("{id}");
    }
    for h in answer["held"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: fold {} is held: {}",
            h["id"],
            h["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Counts per queue and owner; `--all` lists every fold.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        all: bool,
        /// With --all: only folds in these states (comma-separated).
        #[arg(long)]
        state: Option<String>,
        /// Scheduled maintenance jobs and their recent runs.
        #[arg(long)]
        maintenance: bool,
        #[arg(long)]
        json: bool,
    },
    /// Hold folds (a running one is killed; release puts it back in line).
    Hold {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        reason: Option<String>,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Put held folds back in line, optionally with new requests.
    Release {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_parser = crate::units::parse_size)]
        memory: Option<u64>,
        #[arg(long)]
        cpus: Option<f64>,
        #[arg(long, value_parser = crate::units::parse_duration)]
        soft_limit: Option<Duration>,
        #[arg(long, value_parser = crate::units::parse_duration)]
        hard_limit: Option<Duration>,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Remove folds (a running one is killed).
    Remove {
        #[command(flatten)]
        conn: Conn,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Why a fold is not running: each feasibility step, the empty pool, its place in line.
    Analyze {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Wait until the folds end: exit 0 when all are done, 1 when any failed, was removed or
    /// is held, 2 on timeout.
    Wait {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_parser = crate::units::parse_duration)]
        timeout: Option<Duration>,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

pub fn queue(cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::Status {
            conn,
            all,
            state,
            maintenance,
            json,
        } => {
            let client = conn.client()?;
            if maintenance {
                let v: Value = client.get("/maintenance")?;
                return if json {
                    print_json(&v)
                } else {
                    print_maintenance(&v)
                };
            }
            if all {
                let path = match &state {
                    Some(s) => format!("/folds?state={s}"),
                    None => "/folds".into(),
                };
                let v: Value = client.get(&path)?;
                return if json {
                    print_json(&v["folds"])
                } else {
                    print_folds(&v["folds"])
                };
            }
            let v: Value = client.get("/queue")?;
            if json {
                return print_json(&v);
            }
            print_counts(&v["counts"]);
            Ok(())
        }
        QueueCmd::Hold { conn, reason, ids } => {
            each(&conn, &ids, "hold", reason.map(|r| json!({"reason": r})))
        }
        QueueCmd::Release {
            conn,
            memory,
            cpus,
            soft_limit,
            hard_limit,
            ids,
        } => {
            let mut changes = serde_json::Map::new();
            if let Some(m) = memory {
                changes.insert("memory".into(), json!(m));
            }
            if let Some(c) = cpus {
                changes.insert("cpus".into(), json!(c));
            }
            if let Some(d) = soft_limit {
                changes.insert("soft_time_limit".into(), json!(d.as_secs_f64()));
            }
            if let Some(d) = hard_limit {
                changes.insert("hard_time_limit".into(), json!(d.as_secs_f64()));
            }
            each(&conn, &ids, "release", Some(Value::Object(changes)))
        }
        QueueCmd::Remove { conn, ids } => each(&conn, &ids, "remove", None),
        QueueCmd::Wait { conn, timeout, ids } => wait(&conn, &ids, timeout),
        QueueCmd::Analyze { conn, id, json } => {
            let v: Value = conn.client()?.get(&format!("/folds/{id}/analyze"))?;
            if json {
                return print_json(&v);
            }
            print_analysis(&v);
            Ok(())
        }
    }
}

fn each(conn: &Conn, ids: &[i64], action: &str, body: Option<Value>) -> Result<()> {
    let client = conn.client()?;
    let mut failed = 0;
    for id in ids {
        match client.post::<Value>(
            &format!("/folds/{id}/{action}"),
            body.as_ref().unwrap_or(&json!({})),
        ) {
            Ok(v) => println!("fold {id}: {}", v["fold"]["state"].as_str().unwrap_or("?")),
            Err(e) => {
                eprintln!("fold {id}: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}

fn print_analysis(v: &Value) {
    println!(
        "fold {}: {}{}",
        v["fold"],
        v["state"].as_str().unwrap_or(""),
        v["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let mut t = Table::new(&["STEP", ">PASS", ">FAIL", "WHY"]);
    for s in v["steps"].as_array().into_iter().flatten() {
        let why: Vec<&str> = s["why"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .collect();
        t.row([
            s["step"].as_str().unwrap_or("").to_string(),
            s["passed"].to_string(),
            s["rejected"].to_string(),
            why.join("; "),
        ]);
    }
    print!("{}", t.render());
    println!(
        "\n{} of {} runners could take it now.",
        v["matching_now"], v["runners"]
    );
    let empty = if v["matches_empty_pool"] == true {
        "yes"
    } else {
        "no: it can never run on this pool as it is"
    };
    println!("Would it run on an empty pool? {empty}");
    if let Some(p) = v["place_in_line"].as_u64() {
        println!("Place in line: {} of {} idle folds", p + 1, v["idle"]);
    }
    println!("In short: {}", v["summary"].as_str().unwrap_or(""));
}

fn print_maintenance(v: &Value) -> Result<()> {
    let mut t = Table::new(&["JOB", "SCHEDULE", "NEXT RUN"]);
    for j in v["jobs"].as_array().into_iter().flatten() {
        t.row([
            j["name"].as_str().unwrap_or(""),
            j["schedule"].as_str().unwrap_or(""),
            j["next_run"].as_str().unwrap_or("-"),
        ]);
    }
    if t.is_empty() {
        println!("no maintenance scheduled (datarun serve --config FILE)");
    } else {
        print!("{}", t.render());
    }
    let mut t = Table::new(&["AT", "RUN"]);
    for r in v["recent"].as_array().into_iter().flatten() {
        t.row([
            when(&r["at"]),
            r["detail"].as_str().unwrap_or("").to_string(),
        ]);
    }
    if !t.is_empty() {
        println!();
        print!("{}", t.render());
    }
    Ok(())
}

fn print_counts(counts: &Value) {
    let mut rows: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for c in counts.as_array().into_iter().flatten() {
        let key = (
            c["queue"].as_str().unwrap_or("").to_string(),
            c["owner"].as_str().unwrap_or("").to_string(),
        );
        let state = c["state"].as_str().unwrap_or("").to_string();
        let n = c["count"].as_u64().unwrap_or(0);
        *rows
            .entry(key)
            .or_default()
            .entry(state.clone())
            .or_default() += n;
        *totals.entry(state).or_default() += n;
    }
    let cols = ["idle", "running", "held", "done", "failed", "removed"];
    let mut t = Table::new(&[
        "QUEUE", "OWNER", ">IDLE", ">RUNNING", ">HELD", ">DONE", ">FAILED", ">REMOVED",
    ]);
    let get = |m: &BTreeMap<String, u64>, s: &str| -> u64 {
        if s == "running" {
            m.get("running").copied().unwrap_or(0) + m.get("assigned").copied().unwrap_or(0)
        } else {
            m.get(s).copied().unwrap_or(0)
        }
    };
    for ((q, o), m) in &rows {
        let mut cells = vec![q.clone(), o.clone()];
        cells.extend(cols.iter().map(|s| get(m, s).to_string()));
        t.row(cells);
    }
    print!("{}", t.render());
    let total: u64 = totals.values().sum();
    let parts: Vec<String> = cols
        .iter()
        .map(|s| format!("{} {s}", get(&totals, s)))
        .collect();
    println!("\nTotal: {total} folds; {}", parts.join(", "));
}

fn print_folds(folds: &Value) -> Result<()> {
    let mut t = Table::new(&[
        "ID",
        "OWNER",
        "SUBMITTED",
        "STATE",
        "RUNNER",
        ">RUN_TIME",
        ">MEMORY",
        "COMMAND",
    ]);
    for f in folds.as_array().into_iter().flatten() {
        let cmd = f["spec"]["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let cmd: String = if cmd.chars().count() > 40 {
            cmd.chars().take(39).chain(['…']).collect()
        } else {
            cmd
        };
        t.row([
            f["id"].to_string(),
            f["owner"].as_str().unwrap_or("").to_string(),
            short_when(&f["submitted_at"]),
            f["state"].as_str().unwrap_or("").to_string(),
            f["runner"].as_str().unwrap_or("-").to_string(),
            ms(&f["metrics"]["wall_ms"]),
            size(&f["metrics"]["peak_memory"]),
            cmd,
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn wait(conn: &Conn, ids: &[i64], timeout: Option<Duration>) -> Result<()> {
    let client = conn.client()?;
    let start = Instant::now();
    let wanted: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    let mut states: BTreeMap<i64, FoldState> = BTreeMap::new();
    let mut seq = 0i64;
    loop {
        let v: Value = client.get(&format!("/folds?since={seq}"))?;
        for f in v["folds"].as_array().into_iter().flatten() {
            let id = f["id"].as_i64().unwrap_or(-1);
            if wanted.contains(&id) {
                if let Some(st) = f["state"].as_str().and_then(FoldState::parse) {
                    states.insert(id, st);
                }
            }
        }
        seq = v["seq"].as_i64().unwrap_or(seq);
        // After the first (full) listing, a fold we have not seen does not exist.
        if let Some(missing) = wanted.iter().find(|id| !states.contains_key(id)) {
            bail!("fold {missing} does not exist");
        }
        let stopped = |s: &FoldState| s.is_final() || *s == FoldState::Held;
        if states.len() == wanted.len() && states.values().all(stopped) {
            let bad: Vec<String> = states
                .iter()
                .filter(|(_, s)| **s != FoldState::Done)
                .map(|(id, s)| format!("{id} {s}"))
                .collect();
            if bad.is_empty() {
                return Ok(());
            }
            eprintln!("not done: {}", bad.join(", "));
            return Err(Exit(1).into());
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let pending =
                states.iter().filter(|(_, s)| !stopped(s)).count() + wanted.len() - states.len();
            eprintln!("timed out with {pending} folds still pending");
            return Err(Exit(2).into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Subcommand)]
pub enum FoldCmd {
    /// Everything about one fold: spec, state, attempts, and why it is not running.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write one output file of the fold's newest attempt to stdout (or --output FILE).
    Output {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        name: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The fold's log (stdout and stderr, tail-capped).
    Log {
        #[command(flatten)]
        conn: Conn,
        id: i64,
    },
}

pub fn fold(cmd: FoldCmd) -> Result<()> {
    match cmd {
        FoldCmd::Show { conn, id, json } => {
            let client = conn.client()?;
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
            let data = conn
                .client()?
                .get_bytes(&format!("/folds/{id}/outputs/{name}"))?;
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
            let data = conn.client()?.get_bytes(&format!("/folds/{id}/log"))?;
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
            "{} (retries used {} of {})",
            f["attempts"], f["retries_used"], s["max_retries"]
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

#[derive(Subcommand)]
pub enum RunnersCmd {
    /// Slots used and free, resources, connection state.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Re-read the inventory file now (the master also notices edits, and SIGHUP).
    Reload {
        #[command(flatten)]
        conn: Conn,
    },
    /// No new folds on this runner; running ones finish.
    Drain {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
    /// Undo drain.
    Resume {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
}

pub fn runners(cmd: RunnersCmd) -> Result<()> {
    let (conn, json) = match cmd {
        RunnersCmd::Status { conn, json } => (conn, json),
        RunnersCmd::Reload { conn } => {
            let v: Value = conn.client()?.post("/runners/reload", &json!({}))?;
            let r = &v["reloaded"];
            let names = |k: &str| {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            println!("inventory reloaded: added [{}], removed (draining) [{}], changed [{}], {} unchanged", names("added"), names("removed"), names("changed"), r["unchanged"]);
            return Ok(());
        }
        RunnersCmd::Drain { conn, name } => {
            conn.client()?
                .post::<Value>(&format!("/runners/{name}/drain"), &json!({}))?;
            println!("runner {name}: drained (running folds finish; no new ones)");
            return Ok(());
        }
        RunnersCmd::Resume { conn, name } => {
            conn.client()?
                .post::<Value>(&format!("/runners/{name}/resume"), &json!({}))?;
            println!("runner {name}: resumed");
            return Ok(());
        }
    };
    let v: Value = conn.client()?.get("/runners")?;
    if json {
        return print_json(&v["runners"]);
    }
    let mut t = Table::new(&[
        "NAME", "STATE", ">SLOTS", ">CPUS", ">MEMORY", "GPUS", "QUEUES",
    ]);
    for r in v["runners"].as_array().into_iter().flatten() {
        let gpus_total = r["gpus_total"].as_array().map(|a| a.len()).unwrap_or(0);
        let gpus_used = r["gpus_used"].as_array().map(|a| a.len()).unwrap_or(0);
        let queues: Vec<&str> = r["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q.as_str())
            .collect();
        t.row([
            r["name"].as_str().unwrap_or("").to_string(),
            r["state"].as_str().unwrap_or("").to_string(),
            format!("{}/{}", r["slots_used"], r["slots_total"]),
            format!("{}/{}", r["cpus_used"], r["cpus_total"]),
            format!("{}/{}", size(&r["memory_used"]), size(&r["memory_total"])),
            format!("{gpus_used}/{gpus_total}"),
            queues.join(","),
        ]);
    }
    print!("{}", t.render());
    if let Some(e) = v["inventory_error"].as_str() {
        println!("\ninventory edit rejected: {e}");
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum InventoryCmd {
    /// Parse an inventory and print the expanded runner table.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn inventory(cmd: InventoryCmd) -> Result<()> {
    let InventoryCmd::Check { file, json } = cmd;
    let inv = crate::inventory::load(&file)?;
    if json {
        return print_json(&serde_json::to_value(&inv)?);
    }
    print!("{}", crate::inventory::render_table(&inv));
    println!(
        "\n{}: {} runners, all valid",
        file.display(),
        inv.runners.len()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create (or replace) the token NAME and print it; folds submitted with it are owned by NAME.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, env = "DATARUN_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub fn token(cmd: TokenCmd) -> Result<()> {
    let TokenCmd::Create {
        name,
        admin,
        data_dir,
    } = cmd;
    let dir = data_dir.unwrap_or_else(super::default_data_dir);
    let db = dir.join("datarun.db");
    if !db.exists() {
        bail!("no datarun database in {}: run `datarun serve --data-dir {}` once first, or pass --data-dir", dir.display(), dir.display());
    }
    let store = crate::store::Store::open(&db)?;
    println!("{}", store.create_token(&name, admin)?);
    Ok(())
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Load an image tarball (from `docker save`) into this machine's Docker engine.
    Load { file: PathBuf },
}

pub async fn image(cmd: ImageCmd) -> Result<()> {
    let ImageCmd::Load { file } = cmd;
    let docker = crate::agent::docker::DockerExecutor::connect(Default::default()).await?;
    let names = docker.load_image(&file).await?;
    if names.is_empty() {
        bail!(
            "{}: the engine loaded no named image (is it a `docker save` tarball?)",
            file.display()
        );
    }
    for name in names {
        println!("loaded {name}");
    }
    Ok(())
}

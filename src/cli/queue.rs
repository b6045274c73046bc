//! `datarun queue ...`: status, hold, release, remove, analyze, wait.

use super::commands::{ms, short_when, size, when};
use super::commands::{print_json, Exit};
use super::paging::{each_page, JsonArray};
use super::Conn;
use crate::model::FoldState;
use crate::table::Table;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
        /// Fair share: each owner's running and idle folds and effective usage.
        #[arg(long)]
        owners: bool,
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
    /// is held, 6 on timeout.
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
            owners,
            json,
        } => {
            let client = conn.client()?;
            if owners {
                let v: Value = client.get("/owners")?;
                return if json {
                    print_json(&v)
                } else {
                    print_owners(&v)
                };
            }
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
                // Every page, however many folds (the master answers at most 1,000 a page).
                if json {
                    let mut out = JsonArray::start();
                    each_page(&client, &path, "folds", ("after", None), |folds| {
                        out.rows(folds)
                    })?;
                    out.end();
                    return Ok(());
                }
                let mut t = fold_table();
                each_page(&client, &path, "folds", ("after", None), |folds| {
                    folds.iter().for_each(|f| fold_row(&mut t, f));
                    Ok(())
                })?;
                print!("{}", t.render());
                return Ok(());
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

fn print_owners(v: &Value) -> Result<()> {
    let mut idle: BTreeMap<String, u64> = BTreeMap::new();
    for c in v["counts"].as_array().into_iter().flatten() {
        if c["state"] == "idle" {
            *idle
                .entry(c["owner"].as_str().unwrap_or("").to_string())
                .or_default() += c["count"].as_u64().unwrap_or(0);
        }
    }
    let mut rows: BTreeMap<String, (u64, f64, f64)> =
        idle.keys().map(|o| (o.clone(), (0, 0.0, 0.0))).collect();
    for o in v["owners"].as_array().into_iter().flatten() {
        let name = o["owner"].as_str().unwrap_or("").to_string();
        rows.insert(
            name,
            (
                o["running"].as_u64().unwrap_or(0),
                o["past_slot_hours"].as_f64().unwrap_or(0.0),
                o["effective_usage"].as_f64().unwrap_or(0.0),
            ),
        );
    }
    let mut t = Table::new(&[
        "OWNER",
        ">RUNNING",
        ">IDLE",
        ">PAST_SLOT_HOURS",
        ">EFFECTIVE_USAGE",
    ]);
    for (owner, (running, past, effective)) in &rows {
        t.row([
            owner.clone(),
            running.to_string(),
            idle.get(owner).copied().unwrap_or(0).to_string(),
            format!("{past:.2}"),
            format!("{effective:.2}"),
        ]);
    }
    print!("{}", t.render());
    if v["fair_share"] == true {
        println!("\nFair share is on: within a priority band, owners take turns by effective usage (lowest first).");
    } else {
        println!("\nFair share is off ([fair_share] enabled = false): folds run in submit order within a priority band.");
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
    if let Some(c) = v["owner_cap"].as_object() {
        let (running, cap) = (
            c["running"].as_u64().unwrap_or(0),
            c["cap"].as_u64().unwrap_or(0),
        );
        let note = if running >= cap {
            ": at its cap, this fold waits until one of them ends"
        } else {
            ""
        };
        println!(
            "Owner {} runs {running} of at most {cap} folds at once{note}",
            c["owner"].as_str().unwrap_or("")
        );
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

fn fold_table() -> Table {
    Table::new(&[
        "ID",
        "OWNER",
        "SUBMITTED",
        "STATE",
        "RUNNER",
        ">RUN_TIME",
        ">MEMORY",
        "COMMAND",
    ])
}

fn fold_row(t: &mut Table, f: &Value) {
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

/// Waits for folds by id, however many folds the master holds, on events the master pushes:
/// where its event log stands first, then each fold by id (`GET /folds/{id}`: one that does
/// not exist is an error at once), then long polls of the events of the folds still going
/// (`GET /events?folds=...&since=...`; an event that is a fold's newest carries its state),
/// until every fold stopped or `timeout` passed. No sleeping: each poll returns as soon as one
/// of the folds changes.
pub(super) fn wait(conn: &Conn, ids: &[i64], timeout: Option<Duration>) -> Result<()> {
    use crate::model::limits::{MAX_EVENTS_WAIT, MAX_EVENT_FOLDS};
    let client = conn.client()?;
    let start = Instant::now();
    let wanted: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    // From now: whatever changes after the lookups below comes as an event after this seq.
    let now: Value = client.get("/events?timeout=0")?;
    let mut seq = now["seq"].as_i64().unwrap_or(0);
    let mut states: BTreeMap<i64, FoldState> = BTreeMap::new();
    let state_of = |v: &Value| v.as_str().and_then(FoldState::parse);
    for &id in &wanted {
        let v: Value = client
            .get(&format!("/folds/{id}"))
            .with_context(|| format!("fold {id} does not exist or cannot be read"))?;
        if let Some(st) = state_of(&v["fold"]["state"]) {
            states.insert(id, st);
        }
    }
    let stopped = |s: &FoldState| s.is_final() || *s == FoldState::Held;
    loop {
        let going: Vec<String> = wanted
            .iter()
            .filter(|id| !states.get(id).is_some_and(stopped))
            .map(i64::to_string)
            .collect();
        if going.is_empty() {
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
        let left = match timeout {
            Some(t) if start.elapsed() >= t => {
                eprintln!("timed out with {} folds still pending", going.len());
                return Err(Exit(super::exit::TIMEOUT).into());
            }
            Some(t) => (t - start.elapsed()).min(MAX_EVENTS_WAIT),
            None => MAX_EVENTS_WAIT,
        };
        // Only these folds' events, while they fit a filter; else all the caller may see.
        let folds = if going.len() <= MAX_EVENT_FOLDS {
            format!("&folds={}", going.join(","))
        } else {
            String::new()
        };
        let page: Value = client.get(&format!(
            "/events?since={seq}{folds}&timeout={}ms",
            left.as_millis()
        ))?;
        for e in page["events"].as_array().into_iter().flatten() {
            let id = e["fold"].as_i64().unwrap_or(-1);
            if let (true, Some(st)) = (wanted.contains(&id), state_of(&e["state"])) {
                states.insert(id, st);
            }
        }
        seq = page["seq"].as_i64().unwrap_or(seq);
    }
}

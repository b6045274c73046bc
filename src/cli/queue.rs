//! `datarun queue ...`: status, hold, release, remove, analyze (wait: `wait.rs`).

use super::commands::{ms, short_when, size, when};
use super::commands::{print_json, Exit};
use super::paging::{each_page, first_rows, JsonArray};
use super::Conn;
use crate::table::Table;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Counts per queue and owner, then the live folds (running and held; idle ones are
    /// counted, `--state idle` lists them); `--history` the ended ones, newest first; `--all`
    /// every fold. Filters: `--owner`, `--queue`, `--state`.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Every fold that matches the filters, in id order.
        #[arg(long, conflicts_with = "history")]
        all: bool,
        /// Ended folds (done, failed, removed), newest first.
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        filter: Constraint,
        /// At most this many folds listed (0: no limit); default 50.
        #[arg(long)]
        limit: Option<usize>,
        /// Scheduled maintenance jobs and their recent runs.
        #[arg(long)]
        maintenance: bool,
        /// Fair share: each owner's running and idle folds and effective usage.
        #[arg(long)]
        owners: bool,
        #[arg(long)]
        json: bool,
    },
    /// Hold folds by id or by constraint (a running one is killed; release puts it back in line).
    Hold {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        filter: Constraint,
        /// Fold ids, or ARRAY.INDEX.
        ids: Vec<String>,
    },
    /// Put held folds back in line (by id or by constraint), optionally with new requests.
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
        #[command(flatten)]
        filter: Constraint,
        /// Fold ids, or ARRAY.INDEX.
        ids: Vec<String>,
    },
    /// Remove folds by id or by constraint (a running one is killed).
    Remove {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: Constraint,
        /// Fold ids, or ARRAY.INDEX.
        ids: Vec<String>,
    },
    /// Why a fold is not running: each feasibility step, the empty pool, its place in line.
    Analyze {
        #[command(flatten)]
        conn: Conn,
        /// A fold id, or ARRAY.INDEX.
        id: String,
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
        /// Fold ids, or ARRAY.INDEX.
        ids: Vec<String>,
    },
}

/// Which folds: `condor_q`'s and `condor_rm -constraint`'s filters.
#[derive(clap::Args, Default)]
pub struct Constraint {
    /// Only this owner's folds.
    #[arg(long)]
    owner: Option<String>,
    /// Only this queue's folds.
    #[arg(long)]
    queue: Option<String>,
    /// Only the folds of this array.
    #[arg(long)]
    array: Option<i64>,
    /// Only folds in these states (comma-separated: idle, assigned, running, held, done, failed, removed).
    #[arg(long)]
    state: Option<String>,
}

impl Constraint {
    fn is_empty(&self) -> bool {
        self.owner.is_none() && self.queue.is_none() && self.state.is_none() && self.array.is_none()
    }

    /// The query string of a listing, with `state` unless the caller sets its own.
    fn query(&self, state: Option<&str>) -> Result<String> {
        let mut q = Vec::new();
        for (key, value) in [
            ("owner", self.owner.as_deref()),
            ("queue", self.queue.as_deref()),
            ("state", state.or(self.state.as_deref())),
        ] {
            if let Some(v) = value {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.,@".contains(c))
                {
                    return Err(super::exit::usage(format!("--{key}: {v:?} is not a name")));
                }
                q.push(format!("{key}={v}"));
            }
        }
        if let Some(a) = self.array {
            q.push(format!("array={a}"));
        }
        Ok(q.join("&"))
    }

    fn counts_row(&self, c: &Value) -> bool {
        self.owner.as_ref().is_none_or(|o| c["owner"] == o.as_str())
            && self.queue.as_ref().is_none_or(|q| c["queue"] == q.as_str())
    }
}

/// The live folds `queue status` lists by default (idle ones are only counted).
const LIVE: &str = "assigned,running,held";
const ENDED: &str = "done,failed,removed";

pub fn queue(cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::Status {
            conn,
            all,
            history,
            filter,
            limit,
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
                let path = format!("/folds?{}", filter.query(None)?);
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
            let max = match limit {
                Some(0) => None,
                other => Some(other.unwrap_or(50)),
            };
            if history {
                let state = filter.state.is_none().then_some(ENDED);
                let path = format!("/folds?order=newest&{}", filter.query(state)?);
                let (folds, more) = first_rows(&client, &path, "folds", "before", max)?;
                if json {
                    return print_json(&json!(folds));
                }
                print_folds(&folds, more, "queue status --history --limit 0");
                return Ok(());
            }
            let v: Value = client.get("/queue")?;
            let counts: Vec<Value> = v["counts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| filter.counts_row(c))
                .cloned()
                .collect();
            let state = filter.state.is_none().then_some(LIVE);
            let path = format!("/folds?{}", filter.query(state)?);
            let (folds, more) = first_rows(&client, &path, "folds", "after", max)?;
            let health = client.health();
            if json {
                return print_json(
                    &json!({ "master": health, "counts": counts, "folds": folds, "more": more }),
                );
            }
            if let Some(line) = super::client::Client::master_line(&health) {
                println!("{line}");
            }
            print_counts(&json!(counts));
            if !folds.is_empty() {
                println!();
                print_folds(&folds, more, "queue status --all");
            }
            Ok(())
        }
        QueueCmd::Hold {
            conn,
            reason,
            filter,
            ids,
        } => {
            let body = reason.map(|r| json!({"reason": r}));
            by_ids_or_constraint(&conn, &ids, &filter, "hold", body)
        }
        QueueCmd::Release {
            conn,
            memory,
            cpus,
            soft_limit,
            hard_limit,
            filter,
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
            let body = if filter.is_empty() {
                Some(Value::Object(changes))
            } else {
                Some(json!({ "changes": changes }))
            };
            by_ids_or_constraint(&conn, &ids, &filter, "release", body)
        }
        QueueCmd::Remove { conn, filter, ids } => {
            by_ids_or_constraint(&conn, &ids, &filter, "remove", None)
        }
        QueueCmd::Wait { conn, timeout, ids } => {
            let ids = super::commands::resolve_folds(&conn.client()?, &ids)?;
            super::wait::wait(&conn, &ids, timeout)
        }
        QueueCmd::Analyze { conn, id, json } => {
            let client = conn.client()?;
            let id = super::commands::resolve_fold(&client, &id)?;
            let v: Value = client.get(&format!("/folds/{id}/analyze"))?;
            if json {
                return print_json(&v);
            }
            print_analysis(&v);
            Ok(())
        }
    }
}

/// Folds by id (one request each), or every fold matching a constraint (and the ids, when
/// given) through `POST /folds/bulk/ACTION`, called again while more match.
fn by_ids_or_constraint(
    conn: &Conn,
    ids: &[String],
    filter: &Constraint,
    action: &str,
    body: Option<Value>,
) -> Result<()> {
    if filter.is_empty() {
        if ids.is_empty() {
            return Err(super::exit::usage(format!(
                "queue {action}: name fold ids or a constraint (--owner, --queue, --state)"
            )));
        }
        let ids = super::commands::resolve_folds(&conn.client()?, ids)?;
        return each(conn, &ids, action, body);
    }
    let client = conn.client()?;
    let ids = super::commands::resolve_folds(&client, ids)?;
    let mut req = body.unwrap_or_else(|| json!({}));
    for (key, value) in [
        ("owner", &filter.owner),
        ("queue", &filter.queue),
        ("state", &filter.state),
    ] {
        if let Some(v) = value {
            req[key] = json!(v);
        }
    }
    if let Some(a) = filter.array {
        req["array"] = json!(a);
    }
    if !ids.is_empty() {
        req["ids"] = json!(ids);
    }
    let (mut matched, mut changed, mut failed) = (0, 0, 0);
    loop {
        let v: Value = client.post(&format!("/folds/bulk/{action}"), &req)?;
        matched += v["matched"].as_u64().unwrap_or(0);
        changed += v["changed"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        for e in v["errors"].as_array().into_iter().flatten() {
            eprintln!("fold {}: {}", e["id"], e["error"].as_str().unwrap_or(""));
        }
        if v["more"] != true || v["changed"] == 0 {
            break;
        }
    }
    let done = match action {
        "hold" => "held",
        "release" => "released",
        _ => "removed",
    };
    println!("{done} {changed} of {matched} matching folds");
    if failed > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
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
    // A fold that is not waiting (running, done, failed, removed) has no steps to show.
    if !matches!(v["state"].as_str(), Some("idle" | "held")) {
        println!("In short: {}", v["summary"].as_str().unwrap_or(""));
        return;
    }
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
    let cols = [
        "waiting", "idle", "running", "held", "done", "failed", "removed",
    ];
    let mut t = Table::new(&[
        "QUEUE", "OWNER", ">WAITING", ">IDLE", ">RUNNING", ">HELD", ">DONE", ">FAILED", ">REMOVED",
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
    // "0 waiting" only when some fold waits (most pools use no dependencies nor arrays).
    let parts: Vec<String> = cols
        .iter()
        .filter(|s| **s != "waiting" || get(&totals, s) > 0)
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

/// A list of folds, and where to see the rest when it was cut.
fn print_folds(folds: &[Value], more: bool, rest: &str) {
    let mut t = fold_table();
    folds.iter().for_each(|f| fold_row(&mut t, f));
    print!("{}", t.render());
    if more {
        println!("… more folds match: {rest}");
    }
}

/// How long a fold ran: so far for one running now (by this machine's clock), else its
/// recorded wall time.
fn run_time(f: &Value) -> String {
    let live = matches!(f["state"].as_str(), Some("running" | "assigned"));
    match (live, f["started_at"].as_i64()) {
        (true, Some(started)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            ms(&json!((now - started).max(0)))
        }
        _ => ms(&f["metrics"]["wall_ms"]),
    }
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
    // A held fold shows why instead of its command.
    let cmd = match (f["state"].as_str(), f["reason"].as_str()) {
        (Some("held"), Some(reason)) => format!("held: {reason}"),
        _ => cmd,
    };
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
        run_time(f),
        size(&f["metrics"]["peak_memory"]),
        cmd,
    ]);
}

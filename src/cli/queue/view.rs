//! How `queue` answers are shown: the fold tables, the counts per queue and owner, owners'
//! shares, `analyze`'s steps and the maintenance report.

use crate::cli::commands::{ms, short_when, size, when};
use crate::table::Table;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn print_owners(v: &Value) -> Result<()> {
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

pub(super) fn print_analysis(v: &Value) {
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

pub(super) fn print_maintenance(v: &Value) -> Result<()> {
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

pub(super) fn print_counts(counts: &Value) {
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

pub(super) fn fold_table() -> Table {
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
pub(super) fn print_folds(folds: &[Value], more: bool, rest: &str) {
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

pub(super) fn fold_row(t: &mut Table, f: &Value) {
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

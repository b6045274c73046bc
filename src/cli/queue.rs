//! `datarun queue ...`: status, hold, release, remove, analyze (wait: `wait.rs`).

use super::commands::{print_json, Exit};
use super::paging::{each_page, first_rows, JsonArray};
use super::Conn;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use std::time::Duration;
use view::{
    fold_row, fold_table, print_analysis, print_counts, print_folds, print_maintenance,
    print_owners,
};

mod view;

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

//! `datarun sweep show|keep`: a sweep's points ranked by a metric of their `metrics.json`,
//! and dropping the outputs of all but the best (README "Sweeps").

use super::commands::print_json;
use super::Conn;
use crate::table::Table;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Subcommand)]
pub enum SweepCmd {
    /// The points: rank, index, fold, state, parameters and the metric (points without it
    /// last).
    Show {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        /// Rank by this metric of the points' metrics.json.
        #[arg(long)]
        metric: Option<String>,
        #[command(flatten)]
        order: Order,
        #[arg(long)]
        json: bool,
    },
    /// Drop the outputs of every ended point but the best N by a metric.
    Keep {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        best: usize,
        #[arg(long)]
        metric: String,
        #[command(flatten)]
        order: Order,
        #[arg(long)]
        json: bool,
    },
}

/// `--min` (the default: lowest first) or `--max`.
#[derive(Args)]
pub struct Order {
    /// The lowest value is the best (the default).
    #[arg(long, conflicts_with = "max")]
    min: bool,
    /// The highest value is the best.
    #[arg(long)]
    max: bool,
}

impl Order {
    fn name(&self) -> &'static str {
        if self.max {
            "max"
        } else {
            "min"
        }
    }
}

/// Reads and checks a sweep file (errors name `file:line: key`); its JSON document.
pub fn read_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--sweep: cannot read {}", path.display()))?;
    let (doc, _) = crate::model::sweep::from_toml(&path.display().to_string(), &text)
        .map_err(super::exit::usage)?;
    Ok(doc)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

pub fn sweep(cmd: SweepCmd) -> Result<()> {
    match cmd {
        SweepCmd::Show {
            conn,
            id,
            metric,
            order,
            json,
        } => {
            let path = match &metric {
                Some(m) => format!(
                    "/sweeps/{id}?metric={}&order={}",
                    urlencoding(m),
                    order.name()
                ),
                None => format!("/sweeps/{id}"),
            };
            let v: Value = conn.client()?.get(&path)?;
            if json {
                return print_json(&v);
            }
            let s = &v["sweep"];
            let names: Vec<&str> = s["params"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut columns = vec![">RANK", ">INDEX", ">FOLD", "STATE"];
            let upper: Vec<String> = names.iter().map(|n| format!(">{n}")).collect();
            columns.extend(upper.iter().map(String::as_str));
            let metric_col = metric.as_ref().map(|m| format!(">{m}"));
            if let Some(m) = &metric_col {
                columns.push(m);
            }
            let mut t = Table::new(&columns);
            for p in v["points"].as_array().into_iter().flatten() {
                let mut row = vec![
                    cell(&p["rank"]),
                    p["index"].to_string(),
                    p["fold"].to_string(),
                    p["state"].as_str().unwrap_or("").to_string(),
                ];
                row.extend(names.iter().map(|n| cell(&p["params"][*n])));
                if let Some(m) = &metric {
                    row.push(cell(&p["metrics"][m.as_str()]));
                }
                t.row(row);
            }
            if let Some(why) = s["stopped"].as_str() {
                println!("{why}");
            }
            print!("{}", t.render());
            Ok(())
        }
        SweepCmd::Keep {
            conn,
            id,
            best,
            metric,
            order,
            json,
        } => {
            let v: Value = conn.client()?.post(
                &format!("/sweeps/{id}/keep"),
                &json!({ "best": best, "metric": metric, "order": order.name() }),
            )?;
            if json {
                return print_json(&v);
            }
            let kept: Vec<String> = v["kept"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            let d = &v["dropped"];
            println!(
                "sweep {id}: kept the outputs of fold{} {}; dropped {} outputs of {} points ({} blobs deleted)",
                if kept.len() == 1 { "" } else { "s" },
                if kept.is_empty() { "-".into() } else { kept.join(", ") },
                d["outputs"],
                d["points"],
                d["blobs"]
            );
            Ok(())
        }
    }
}

/// A query value, percent-encoded.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

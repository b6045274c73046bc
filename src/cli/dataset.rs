//! `datarun dataset ...`: upload, list, show, split, rm.

use super::commands::{print_json, short_when, size};
use super::Conn;
use crate::table::Table;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Upload a CSV file (header line first) as a dataset; prints its id.
    Upload {
        #[command(flatten)]
        conn: Conn,
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// The column to predict.
        #[arg(long)]
        target: String,
        /// Score types, comma-separated: accuracy, roc_auc, log_loss, f1, rmse, mae, r2.
        #[arg(long, value_delimiter = ',')]
        score: Vec<String>,
        /// Workflow elements, comma-separated (e.g. classifier).
        #[arg(long, value_delimiter = ',')]
        workflow: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every dataset.
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// One dataset's column statistics and splits.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Hold out a share of the rows for test; shows train and test side by side.
    Split {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        /// The share of rows held out for test, in (0, 1).
        #[arg(long)]
        ratio: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Keep the target column's class proportions on both sides.
        #[arg(long)]
        stratify: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a dataset and its splits.
    Rm {
        #[command(flatten)]
        conn: Conn,
        id: i64,
    },
}

pub fn dataset(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Upload {
            conn,
            file,
            name,
            target,
            score,
            workflow,
            json,
        } => {
            let client = conn.client()?;
            let data =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let blob: Value = client.post_bytes("/blobs", data)?;
            let body = json!({
                "name": name, "target_column": target, "score_types": score,
                "workflow_elements": workflow, "table_sha256": blob["sha256"],
            });
            let v: Value = client.post("/datasets", &body)?;
            if json {
                return print_json(&v);
            }
            println!("{}", v["dataset"]["id"]);
            Ok(())
        }
        DatasetCmd::List { conn, json } => {
            let v: Value = conn.client()?.get("/datasets")?;
            if json {
                return print_json(&v);
            }
            let mut t = Table::new(&[
                ">ID", "NAME", "TARGET", ">ROWS", ">SIZE", "SCORES", "CREATED",
            ]);
            for d in v["datasets"].as_array().into_iter().flatten() {
                t.row([
                    d["id"].to_string(),
                    str_of(&d["name"]),
                    str_of(&d["target_column"]),
                    d["rows"].to_string(),
                    size(&d["size"]),
                    list_of(&d["score_types"]),
                    short_when(&d["created_at"]),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        DatasetCmd::Show { conn, id, json } => {
            let v: Value = conn.client()?.get(&format!("/datasets/{id}"))?;
            if json {
                return print_json(&v);
            }
            let d = &v["dataset"];
            println!(
                "dataset {} {:?}: {} rows, target {}, scores {}, workflow {}",
                d["id"],
                str_of(&d["name"]),
                d["rows"],
                str_of(&d["target_column"]),
                list_of(&d["score_types"]),
                list_of(&d["workflow_elements"]),
            );
            print!("{}", stats_table(&d["stats"]["columns"]));
            for s in v["splits"].as_array().into_iter().flatten() {
                println!(
                    "split {}: held_out_test {} random_state {}{}: {} train, {} test rows",
                    s["id"],
                    s["held_out_test"],
                    s["random_state"],
                    if s["stratify"] == true {
                        " stratified"
                    } else {
                        ""
                    },
                    s["train_rows"],
                    s["test_rows"]
                );
            }
            Ok(())
        }
        DatasetCmd::Split {
            conn,
            id,
            ratio,
            seed,
            stratify,
            json,
        } => {
            let body = json!({"held_out_test": ratio, "random_state": seed, "stratify": stratify});
            let v: Value = conn
                .client()?
                .post(&format!("/datasets/{id}/splits"), &body)?;
            if json {
                return print_json(&v);
            }
            let s = &v["split"];
            println!(
                "split {}: {} train rows, {} test rows",
                s["id"], s["train_rows"], s["test_rows"]
            );
            print!("{}", comparison_table(&s["stats"]["columns"]));
            Ok(())
        }
        DatasetCmd::Rm { conn, id } => {
            let v: Value = conn.client()?.delete(&format!("/datasets/{id}"))?;
            println!("deleted dataset {id} and {} split(s)", v["splits_deleted"]);
            Ok(())
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn list_of(v: &Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// A number with at most 4 decimals, trailing zeros dropped; "-" for null.
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => {
            let s = format!("{x:.4}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s == "-0" {
                "0".into()
            } else {
                s.to_string()
            }
        }
        None => "-".into(),
    }
}

fn top(c: &Value, n: usize) -> String {
    let top: Vec<String> = c["top"]
        .as_array()
        .into_iter()
        .flatten()
        .take(n)
        .map(|t| format!("{} {}", str_of(&t["value"]), t["count"]))
        .collect();
    top.join(", ")
}

fn stats_table(columns: &Value) -> String {
    let mut t = Table::new(&[
        "COLUMN", "KIND", ">COUNT", ">NULLS", ">ZEROS", ">NEG", ">MEAN", ">STD", ">MIN", ">MAX",
        ">UNIQUE", "TOP",
    ]);
    for c in columns.as_array().into_iter().flatten() {
        let numeric = c["kind"] == "numeric";
        let opt = |k: &str| {
            if numeric {
                c[k].to_string()
            } else {
                "-".into()
            }
        };
        t.row([
            str_of(&c["name"]),
            str_of(&c["kind"]),
            c["count"].to_string(),
            c["nulls"].to_string(),
            opt("zeros"),
            opt("negatives"),
            num(&c["mean"]),
            num(&c["std"]),
            num(&c["min"]),
            num(&c["max"]),
            if numeric {
                "-".into()
            } else {
                c["unique"].to_string()
            },
            top(c, 3),
        ]);
    }
    t.render()
}

/// One side of a column in a split, in a few words.
fn summary(c: &Value) -> String {
    if c["kind"] == "numeric" {
        format!(
            "n {} mean {} std {} [{}, {}]",
            c["count"],
            num(&c["mean"]),
            num(&c["std"]),
            num(&c["min"]),
            num(&c["max"])
        )
    } else {
        format!("n {} unique {}: {}", c["count"], c["unique"], top(c, 3))
    }
}

fn comparison_table(columns: &Value) -> String {
    let mut t = Table::new(&["COLUMN", "KIND", "TRAIN", "TEST", ">SIMILARITY"]);
    for c in columns.as_array().into_iter().flatten() {
        t.row([
            str_of(&c["name"]),
            str_of(&c["train"]["kind"]),
            summary(&c["train"]),
            summary(&c["test"]),
            format!("{} ({})", num(&c["similarity"]), str_of(&c["method"])),
        ]);
    }
    t.render()
}

//! `datarun dataset show`: a table dataset's column statistics, a problem dataset's script and
//! files; then the splits. Also the statistics tables `dataset split --ratio` prints.

use super::{list_of, or_dash, str_of};
use crate::cli::commands::print_json;
use crate::cli::Conn;
use crate::table::Table;
use anyhow::Result;
use serde_json::Value;

pub(super) fn show(conn: &Conn, id: i64, json: bool) -> Result<()> {
    let v: Value = conn.client()?.get(&format!("/datasets/{id}"))?;
    if json {
        return print_json(&v);
    }
    let d = &v["dataset"];
    match d["problem"].as_str() {
        None => {
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
        }
        Some(script) => {
            println!(
                "dataset {} {:?}: problem script {script}, target {}, scores {}, workflow {}",
                d["id"],
                str_of(&d["name"]),
                or_dash(str_of(&d["target_column"])),
                list_of(&d["score_types"]),
                list_of(&d["workflow_elements"]),
            );
            print!("{}", files_table(d, script));
            // CSV files among them have statistics, as a table dataset's.
            let per_file = &d["stats"]["files"];
            for (name, stats) in per_file.as_object().into_iter().flatten() {
                println!("{name}: {} rows", stats["rows"]);
                print!("{}", stats_table(&stats["columns"]));
            }
        }
    }
    for s in v["splits"].as_array().into_iter().flatten() {
        println!("{}", split_line(s));
    }
    Ok(())
}

/// A problem dataset's files: which is the script, and their digests.
fn files_table(d: &Value, script: &str) -> String {
    let mut t = Table::new(&["FILE", "ROLE", ">ROWS", "SHA256"]);
    for (name, sha) in d["files"].as_object().into_iter().flatten() {
        let rows = &d["stats"]["files"][name]["rows"];
        t.row([
            name.clone(),
            if name == script { "script" } else { "data" }.into(),
            if rows.is_u64() {
                rows.to_string()
            } else {
                "-".into()
            },
            sha.as_str().unwrap_or("").chars().take(12).collect(),
        ]);
    }
    t.render()
}

/// One split in a line: a held-out split's ratio and seed, or a custom split's state.
fn split_line(s: &Value) -> String {
    if s["kind"] != "custom" {
        return format!(
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
    match s["state"].as_str().unwrap_or("") {
        "done" => format!(
            "split {}: custom, done: {} train, {} test rows; files {}",
            s["id"],
            s["train_rows"],
            s["test_rows"],
            file_names(&s["files"])
        ),
        "failed" => format!(
            "split {}: custom, failed: {}",
            s["id"],
            s["reason"]
                .as_str()
                .and_then(|r| r.lines().next())
                .unwrap_or("")
        ),
        state => format!(
            "split {}: custom, {state}{}",
            s["id"],
            s["fold_id"]
                .as_i64()
                .map(|f| format!(" (prepare_data in fold {f})"))
                .unwrap_or_default()
        ),
    }
}

/// The names of a `{name: sha256}` object, comma-separated; "-" for none.
pub(super) fn file_names(files: &Value) -> String {
    let names: Vec<&str> = files
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
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

pub(super) fn comparison_table(columns: &Value) -> String {
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

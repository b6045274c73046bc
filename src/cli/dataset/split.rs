//! `datarun dataset split`: a held-out split by ratio, or a problem dataset's custom split
//! (its script's prepare_data as a queue fold), optionally waited for.

use super::show::{comparison_table, file_names};
use crate::cli::commands::{print_json, Exit};
use crate::cli::Conn;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(super) fn held_out(
    conn: &Conn,
    id: i64,
    ratio: f64,
    seed: u64,
    stratify: bool,
    json: bool,
) -> Result<()> {
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

/// Starts a custom split; `wait`: Some(timeout) to wait until it is no longer running.
pub(super) fn custom(
    conn: &Conn,
    id: i64,
    priority: Option<String>,
    wait: Option<Option<Duration>>,
    json: bool,
) -> Result<()> {
    let client = conn.client()?;
    let mut body = json!({"custom": true});
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    let v: Value = client.post(&format!("/datasets/{id}/splits"), &body)?;
    let split = v["split"]["id"].as_i64().unwrap_or(-1);
    let Some(timeout) = wait else {
        if json {
            return print_json(&v);
        }
        println!("{split}");
        return Ok(());
    };
    let start = Instant::now();
    loop {
        let v: Value = client.get(&format!("/splits/{split}"))?;
        let s = &v["split"];
        let fold = &v["fold"];
        let held = s["state"] == "running" && fold["state"] == "held";
        if s["state"] != "running" || held {
            if json {
                print_json(&v)?;
            } else {
                print_custom(s, fold);
            }
            return match s["state"].as_str() {
                Some("done") => Ok(()),
                _ => Err(Exit(1).into()),
            };
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!(
                "timed out: split {split} is still running (its prepare fold {} is {})",
                fold["id"],
                fold["state"].as_str().unwrap_or("?")
            );
            return Err(Exit(crate::cli::exit::TIMEOUT).into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A custom split that stopped running (or whose fold is held): its rows and files, or why
/// it failed (on stderr).
fn print_custom(s: &Value, fold: &Value) {
    match s["state"].as_str().unwrap_or("") {
        "done" => println!(
            "split {}: done, {} train rows, {} test rows; files {}",
            s["id"],
            s["train_rows"],
            s["test_rows"],
            file_names(&s["files"])
        ),
        "failed" => eprintln!(
            "split {} failed: {}",
            s["id"],
            s["reason"].as_str().unwrap_or("no reason recorded")
        ),
        _ => eprintln!(
            "split {} waits: its prepare fold {} is held: {}",
            s["id"],
            fold["id"],
            fold["reason"].as_str().unwrap_or("no reason recorded")
        ),
    }
}

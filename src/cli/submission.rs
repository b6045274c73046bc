//! `datarun submission submit|list|show`, `datarun results new`, `datarun leaderboard DATASET`.

use super::commands::{print_json, short_when, size};
use super::paging::all_pages;
use super::Conn;
use crate::table::Table;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SubmissionCmd {
    /// Submit files (e.g. classifier.py) to be trained and tested on CV folds; prints the id.
    Submit {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        dataset: i64,
        /// A split of the dataset: its train rows train, its test rows test.
        #[arg(long)]
        split: Option<i64>,
        #[arg(long)]
        name: String,
        /// A file of the submission (its name is kept); repeat for more.
        #[arg(long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Number of cross-validation folds.
        #[arg(long, default_value_t = 5)]
        cv: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        stratify: bool,
        /// An integer, or H / L.
        #[arg(long)]
        priority: Option<String>,
        /// When a fold fails with its own error (exit code, signal, outputs over the limit),
        /// remove the submission's idle and waiting folds, saying why.
        #[arg(long)]
        stop_on_failure: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every submission (or a dataset's): its folds' states counted.
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        dataset: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// A submission's folds: state, scores, timings.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run a submission's folds again: by default (`--failed`) only those that ended in
    /// ERROR; `--retrain` all of them (or those of `--fold`), even those that ended well.
    Resubmit {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        /// Only the folds that failed (the default).
        #[arg(long, conflicts_with = "retrain")]
        failed: bool,
        /// Every fold (or those of --fold), whatever its state.
        #[arg(long)]
        retrain: bool,
        /// Only these submission folds (repeatable).
        #[arg(long = "fold")]
        folds: Vec<i64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ResultsCmd {
    /// Results not handed out yet (each is handed out once, errors included).
    New {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        dataset: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

pub fn submission(cmd: SubmissionCmd) -> Result<()> {
    match cmd {
        SubmissionCmd::Submit {
            conn,
            dataset,
            split,
            name,
            files,
            cv,
            seed,
            stratify,
            priority,
            stop_on_failure,
            json,
        } => {
            let mut encoded = Map::new();
            for path in &files {
                let data = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no file name", path.display()))?;
                let text = crate::protocol::b64(&data);
                encoded.insert(name.to_string(), Value::String(text));
            }
            let mut body = json!({"dataset_id": dataset, "split_id": split, "name": name,
                                  "files": encoded, "cv": {"k": cv, "seed": seed, "stratify": stratify}});
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if stop_on_failure {
                body["stop_on_failure"] = json!(true);
            }
            let v: Value = conn.client()?.post("/submissions", &body)?;
            if json {
                return print_json(&v);
            }
            println!("{}", v["submission"]["id"]);
            if let Some(reason) = v["held"]["reason"].as_str() {
                eprintln!("held: {reason}");
            }
            Ok(())
        }
        SubmissionCmd::List {
            conn,
            dataset,
            json,
        } => {
            let path = match dataset {
                Some(d) => format!("/submissions?dataset_id={d}"),
                None => "/submissions".into(),
            };
            let v = json!({ "submissions": all_pages(&conn.client()?, &path, "submissions")? });
            if json {
                return print_json(&v);
            }
            let mut t = Table::new(&[
                ">ID", ">DATASET", ">SPLIT", "NAME", "OWNER", "FOLDS", "CREATED",
            ]);
            for s in v["submissions"].as_array().into_iter().flatten() {
                let states: Vec<String> = s["states"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(state, n)| format!("{state} {n}"))
                    .collect();
                t.row([
                    s["id"].to_string(),
                    s["dataset_id"].to_string(),
                    s["split_id"]
                        .as_i64()
                        .map_or_else(|| "-".into(), |i| i.to_string()),
                    s["name"].as_str().unwrap_or("").to_string(),
                    s["owner"].as_str().unwrap_or("").to_string(),
                    if states.is_empty() {
                        "-".into()
                    } else {
                        states.join(", ")
                    },
                    short_when(&s["created_at"]),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        SubmissionCmd::Resubmit {
            conn,
            id,
            failed: _,
            retrain,
            folds,
            json,
        } => {
            let mut body = serde_json::json!({});
            if retrain {
                body["force"] = "retrain".into();
            }
            if !folds.is_empty() {
                body["folds"] = serde_json::json!(folds);
            }
            let v: Value = conn
                .client()?
                .post(&format!("/submissions/{id}/resubmit"), &body)?;
            if json {
                return print_json(&v);
            }
            let rerun: Vec<String> = v["rerun"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f.to_string())
                .collect();
            if rerun.is_empty() {
                println!("submission {id}: nothing to rerun");
            } else {
                println!("submission {id}: rerunning folds {}", rerun.join(", "));
            }
            Ok(())
        }
        SubmissionCmd::Show { conn, id, json } => {
            let v: Value = conn.client()?.get(&format!("/submissions/{id}"))?;
            if json {
                return print_json(&v);
            }
            let s = &v["submission"];
            println!(
                "submission {} {:?} by {} on dataset {}{}",
                s["id"],
                s["name"].as_str().unwrap_or(""),
                s["owner"].as_str().unwrap_or(""),
                s["dataset_id"],
                s["split_id"]
                    .as_i64()
                    .map(|i| format!(", split {i}"))
                    .unwrap_or_default()
            );
            if s["stop_on_failure"] == true {
                println!("a fold failing with its own error stops the folds not started");
            }
            print!(
                "{}",
                folds_table(s["folds"].as_array().into_iter().flatten())
            );
            Ok(())
        }
    }
}

pub fn results(cmd: ResultsCmd) -> Result<()> {
    match cmd {
        ResultsCmd::New {
            conn,
            dataset,
            json,
        } => {
            // The feed hands out at most a page a call: take pages until it is empty.
            let client = conn.client()?;
            let limit = crate::model::limits::MAX_PAGE as usize;
            let mut results: Vec<Value> = Vec::new();
            loop {
                let v: Value = client.post(
                    "/results/new",
                    &json!({"dataset_id": dataset, "limit": limit}),
                )?;
                let page = v["results"].as_array().cloned().unwrap_or_default();
                let last = page.len() < limit;
                results.extend(page);
                if last {
                    break;
                }
            }
            if json {
                return print_json(&json!({ "results": results }));
            }
            if results.is_empty() {
                println!("no new results");
            } else {
                print!("{}", folds_table(results.iter()));
            }
            Ok(())
        }
    }
}

/// One line per submission fold: state, test (else valid) scores, time, memory, reason.
fn folds_table<'a>(folds: impl Iterator<Item = &'a Value>) -> String {
    let mut t = Table::new(&[
        ">ID", ">SUB", ">FOLD", "STATE", "SCORES", ">WALL", ">CPU", ">PEAK", "REASON",
    ]);
    for f in folds {
        let scores = &f["scores"];
        let phase = if scores.get("test").is_some() {
            "test"
        } else {
            "valid"
        };
        let text: Vec<String> = scores[phase]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{phase} {k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
            .collect();
        let m = &f["metrics"];
        let ms = |v: &Value| {
            v.as_u64()
                .map(|x| format!("{:.2}s", x as f64 / 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        t.row([
            f["id"].to_string(),
            f["submission_id"].to_string(),
            f["fold_index"].to_string(),
            f["state"].as_str().unwrap_or("").to_string(),
            if text.is_empty() {
                "-".into()
            } else {
                text.join(", ")
            },
            ms(&m["wall_ms"]),
            ms(&m["cpu_ms"]),
            if m["peak_memory"].is_u64() {
                size(&m["peak_memory"])
            } else {
                "-".into()
            },
            f["reason"].as_str().unwrap_or("").to_string(),
        ]);
    }
    t.render()
}

pub fn leaderboard(conn: Conn, dataset: i64, json: bool) -> Result<()> {
    let v: Value = conn
        .client()?
        .get(&format!("/datasets/{dataset}/leaderboard"))?;
    if json {
        return print_json(&v);
    }
    let kinds: Vec<String> = v["score_types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_uppercase))
        .collect();
    let mut columns = vec![">RANK", ">ID", "NAME", "OWNER", ">FOLDS"];
    let heads: Vec<String> = kinds.iter().map(|k| format!(">{k}")).collect();
    columns.extend(heads.iter().map(String::as_str));
    let mut t = Table::new(&columns);
    for r in v["rows"].as_array().into_iter().flatten() {
        let mut cells = vec![
            r["rank"].to_string(),
            r["submission_id"].to_string(),
            r["name"].as_str().unwrap_or("").to_string(),
            r["owner"].as_str().unwrap_or("").to_string(),
            r["folds"].to_string(),
        ];
        for k in &kinds {
            let k = k.to_lowercase();
            let stat = match r["scores"]["test"].get(&k) {
                Some(s) => s,
                None => &r["scores"]["valid"][&k],
            };
            cells.push(match (stat["mean"].as_f64(), stat["std"].as_f64()) {
                (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
                (Some(m), None) => format!("{m:.4}"),
                _ => "-".into(),
            });
        }
        t.row(cells);
    }
    print!("{}", t.render());
    println!("mean ± sample std (ddof = 1) across folds, on the test table (valid without one)");
    Ok(())
}

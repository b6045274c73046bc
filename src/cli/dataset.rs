//! `datarun dataset ...`: upload, list, show, split, file, rm.

mod show;
mod split;

use super::commands::{print_json, short_when, size};
use super::paging::all_pages;
use super::Conn;
use crate::table::Table;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Upload a dataset; prints its id. One CSV file (header line first, --target required) is a
    /// table dataset; several files with a problem script (a .py file, see --problem) are a
    /// problem dataset, split by the script's prepare_data (`dataset split ID --custom`).
    Upload {
        #[command(flatten)]
        conn: Conn,
        /// The CSV file, or the problem dataset's files (each stored under its base name).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long)]
        name: String,
        /// The column to predict: required for a CSV table; a problem dataset's script decides
        /// (given, it is only shown).
        #[arg(long)]
        target: Option<String>,
        /// The problem script among the files, by base name (default: the only .py file).
        #[arg(long, value_name = "NAME")]
        problem: Option<String>,
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
    /// One dataset: its column statistics (or a problem dataset's script and files) and splits.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Split a dataset: hold out a share of a table's rows for test (--ratio; shows train and
    /// test side by side), or run a problem dataset's prepare_data (--custom).
    Split {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        /// The share of rows held out for test, in (0, 1).
        #[arg(long, required_unless_present = "custom", conflicts_with = "custom")]
        ratio: Option<f64>,
        #[arg(long, default_value_t = 42, conflicts_with = "custom")]
        seed: u64,
        /// Keep the target column's class proportions on both sides.
        #[arg(long, conflicts_with = "custom")]
        stratify: bool,
        /// A problem dataset's split: its script's prepare_data, run as a queue fold; prints
        /// the split's id at once (state running) unless --wait.
        #[arg(long)]
        custom: bool,
        /// With --custom: wait until prepare_data ends, print the split; exit 1 if it failed
        /// (or its fold is held), 2 on --timeout.
        #[arg(long, requires = "custom", conflicts_with = "ratio")]
        wait: bool,
        /// With --wait: give up after this long (e.g. 10m).
        #[arg(long, requires = "wait", value_parser = crate::units::parse_duration)]
        timeout: Option<Duration>,
        /// With --custom: the prepare fold's priority, an integer, or H / L.
        #[arg(long, requires = "custom", conflicts_with = "ratio")]
        priority: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write one file of a problem dataset (or of its custom split, --split) to stdout or -o.
    File {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        name: String,
        /// A custom split of the dataset: one of the files its prepare_data wrote.
        #[arg(long)]
        split: Option<i64>,
        #[arg(long, short)]
        output: Option<PathBuf>,
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
            files,
            name,
            target,
            problem,
            score,
            workflow,
            json,
        } => {
            let mut body =
                json!({"name": name, "score_types": score, "workflow_elements": workflow});
            let client = conn.client()?;
            match upload_kind(&files, target.as_deref(), problem.as_deref())? {
                Kind::Table(file) => {
                    let data = std::fs::read(file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let blob: Value = client.post_bytes("/blobs", data)?;
                    body["target_column"] = json!(target);
                    body["table_sha256"] = blob["sha256"].clone();
                }
                Kind::Problem(named) => {
                    let mut encoded = Map::new();
                    for (base, path) in named {
                        let data = std::fs::read(path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        encoded.insert(base, Value::String(crate::protocol::b64(&data)));
                    }
                    body["files"] = Value::Object(encoded);
                    if let Some(p) = problem {
                        body["problem"] = json!(p);
                    }
                    if let Some(t) = target {
                        body["target_column"] = json!(t);
                    }
                }
            }
            let v: Value = client.post("/datasets", &body)?;
            if json {
                return print_json(&v);
            }
            println!("{}", v["dataset"]["id"]);
            Ok(())
        }
        DatasetCmd::List { conn, json } => {
            let v = json!({ "datasets": all_pages(&conn.client()?, "/datasets", "datasets")? });
            if json {
                return print_json(&v);
            }
            let mut t = Table::new(&[
                ">ID", "NAME", "TARGET", ">ROWS", ">SIZE", "KIND", "SCORES", "CREATED",
            ]);
            for d in v["datasets"].as_array().into_iter().flatten() {
                let problem = d["problem"].is_string();
                t.row([
                    d["id"].to_string(),
                    str_of(&d["name"]),
                    or_dash(str_of(&d["target_column"])),
                    if problem {
                        "-".into()
                    } else {
                        d["rows"].to_string()
                    },
                    size(&d["size"]),
                    if problem { "problem" } else { "table" }.into(),
                    list_of(&d["score_types"]),
                    short_when(&d["created_at"]),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        DatasetCmd::Show { conn, id, json } => show::show(&conn, id, json),
        DatasetCmd::Split {
            conn,
            id,
            ratio,
            seed,
            stratify,
            custom,
            wait,
            timeout,
            priority,
            json,
        } => match ratio {
            Some(ratio) if !custom => split::held_out(&conn, id, ratio, seed, stratify, json),
            _ => split::custom(&conn, id, priority, wait.then_some(timeout), json),
        },
        DatasetCmd::File {
            conn,
            id,
            name,
            split,
            output,
        } => {
            let mut path = format!("/datasets/{id}/files/{}", encode_segment(&name));
            if let Some(s) = split {
                path.push_str(&format!("?split={s}"));
            }
            let data = conn.client()?.get_bytes(&path)?;
            match output {
                Some(out) => std::fs::write(&out, data)
                    .with_context(|| format!("cannot write {}", out.display())),
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&data)?;
                    Ok(())
                }
            }
        }
        DatasetCmd::Rm { conn, id } => {
            let v: Value = conn.client()?.delete(&format!("/datasets/{id}"))?;
            println!("deleted dataset {id} and {} split(s)", v["splits_deleted"]);
            Ok(())
        }
    }
}

/// What `upload` was given: one CSV table, or a problem dataset's files by base name.
enum Kind<'a> {
    Table(&'a Path),
    Problem(Vec<(String, &'a Path)>),
}

/// One file that is not a script, without --problem, is a CSV table (which needs --target);
/// anything else is a problem dataset, which needs its script among the files.
fn upload_kind<'a>(
    files: &'a [PathBuf],
    target: Option<&str>,
    problem: Option<&str>,
) -> Result<Kind<'a>> {
    let mut named: Vec<(String, &Path)> = Vec::new();
    for path in files {
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?;
        if let Some((_, other)) = named.iter().find(|(n, _)| n == base) {
            bail!(
                "{} and {} have the same name {base:?}: a dataset's files are stored under their base names",
                other.display(),
                path.display()
            );
        }
        named.push((base.to_string(), path));
    }
    let scripts: Vec<&str> = named
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.ends_with(".py"))
        .collect();
    if let [(_, path)] = &named[..] {
        if scripts.is_empty() && problem.is_none() {
            if target.is_none() {
                bail!(
                    "--target is required for a CSV dataset: the column to predict (or give several files with a problem script)"
                );
            }
            return Ok(Kind::Table(path));
        }
    }
    let names = || {
        named
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match problem {
        Some(p) if !named.iter().any(|(n, _)| n == p) => {
            bail!("--problem {p:?} is not among the files ({})", names())
        }
        Some(_) => {}
        None if scripts.is_empty() => bail!(
            "several files make a problem dataset, which needs its problem script (a .py file) among them; got {} (upload one CSV table with --target instead)",
            names()
        ),
        None if scripts.len() > 1 => bail!(
            "several scripts ({}): say which is the problem script with --problem NAME",
            scripts.join(", ")
        ),
        None => {}
    }
    Ok(Kind::Problem(named))
}

/// A file name as one URL path segment.
fn encode_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
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

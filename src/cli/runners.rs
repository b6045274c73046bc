//! `datarun runners` (status, drain, resume) and `datarun inventory check`.

use super::commands::{print_json, size};
use super::Conn;
use crate::table::Table;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RunnersCmd {
    /// Slots used and free, resources, connection state.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Re-read the inventory file now (the master also notices edits, and SIGHUP).
    Reload {
        #[command(flatten)]
        conn: Conn,
    },
    /// No new folds on this runner; running ones finish.
    Drain {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
    /// Undo drain.
    Resume {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
}

pub fn runners(cmd: RunnersCmd) -> Result<()> {
    let (conn, json) = match cmd {
        RunnersCmd::Status { conn, json } => (conn, json),
        RunnersCmd::Reload { conn } => {
            let v: Value = conn.client()?.post("/runners/reload", &json!({}))?;
            let r = &v["reloaded"];
            let names = |k: &str| {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            println!("inventory reloaded: added [{}], removed (draining) [{}], changed [{}], {} unchanged", names("added"), names("removed"), names("changed"), r["unchanged"]);
            return Ok(());
        }
        RunnersCmd::Drain { conn, name } => {
            conn.client()?
                .post::<Value>(&format!("/runners/{name}/drain"), &json!({}))?;
            println!("runner {name}: drained (running folds finish; no new ones)");
            return Ok(());
        }
        RunnersCmd::Resume { conn, name } => {
            conn.client()?
                .post::<Value>(&format!("/runners/{name}/resume"), &json!({}))?;
            println!("runner {name}: resumed");
            return Ok(());
        }
    };
    let client = conn.client()?;
    let mut v: Value = client.get("/runners")?;
    let health = client.health();
    if json {
        // The whole answer: the runners and a rejected inventory edit (`inventory_error`),
        // with which master answered (`master`).
        v["master"] = health;
        return print_json(&v);
    }
    if let Some(line) = super::client::Client::master_line(&health) {
        println!("{line}");
    }
    let mut t = Table::new(&[
        "NAME", "VIA", ">SLOTS", ">CPUS", ">MEMORY", "GPUS", "QUEUES", "MACHINE", "STATE",
    ]);
    for r in v["runners"].as_array().into_iter().flatten() {
        let gpus_total = r["gpus_total"].as_array().map(|a| a.len()).unwrap_or(0);
        let gpus_used = r["gpus_used"].as_array().map(|a| a.len()).unwrap_or(0);
        let queues: Vec<&str> = r["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q.as_str())
            .collect();
        t.row([
            r["name"].as_str().unwrap_or("").to_string(),
            r["transport"].as_str().unwrap_or("").to_string(),
            format!("{}/{}", r["slots_used"], r["slots_total"]),
            format!("{}/{}", r["cpus_used"], r["cpus_total"]),
            format!("{}/{}", size(&r["memory_used"]), size(&r["memory_total"])),
            format!("{gpus_used}/{gpus_total}"),
            queues.join(","),
            machine(&r["facts"]),
            r["state"].as_str().unwrap_or("").to_string(),
        ]);
    }
    print!("{}", t.render());
    if let Some(e) = v["inventory_error"].as_str() {
        println!("\ninventory edit rejected: {e}");
    }
    Ok(())
}

/// "x86_64, Docker 20.10.24, 52G free" from an agent's facts ("-" before its first hello).
fn machine(facts: &Value) -> String {
    let Some(arch) = facts["arch"].as_str() else {
        return "-".into();
    };
    let mut parts = vec![arch.to_string()];
    if let Some(v) = facts["docker_version"].as_str() {
        parts.push(format!("Docker {}", v.split(' ').next().unwrap_or(v)));
    }
    if facts["disk_free"].is_u64() {
        parts.push(format!("{} free", size(&facts["disk_free"])));
    }
    parts.join(", ")
}

#[derive(Subcommand)]
pub enum InventoryCmd {
    /// Parse an inventory and print the expanded runner table.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn inventory(cmd: InventoryCmd) -> Result<()> {
    let InventoryCmd::Check { file, json } = cmd;
    let inv = crate::inventory::load(&file)?;
    if json {
        return print_json(&serde_json::to_value(&inv)?);
    }
    print!("{}", crate::inventory::render_table(&inv));
    println!(
        "\n{}: {} runners, all valid",
        file.display(),
        inv.runners.len()
    );
    Ok(())
}

//! `datarun token` (create, list, revoke): straight on the store, as the operator of the
//! master's data directory or database.

use super::commands::{print_json, short_when, when};
use crate::table::Table;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a NEW token for NAME and print it (once; only its hash is kept). Folds and
    /// datasets made with it are owned by NAME; NAME's other tokens keep working.
    Create {
        name: String,
        /// An admin token: sees and manages every owner's folds and data, and the runners.
        #[arg(long)]
        admin: bool,
        /// Valid for this long ("30d", "12h", "90m"); default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[command(flatten)]
        at: StoreAt,
    },
    /// Every token: id, owner, admin, created, expires, revoked, last used (never a secret).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: StoreAt,
    },
    /// Revoke the token ID (from `token list`), or with --owner every token of NAME.
    Revoke {
        #[arg(required_unless_present = "owner", conflicts_with = "owner")]
        id: Option<i64>,
        #[arg(long, value_name = "NAME")]
        owner: Option<String>,
        #[command(flatten)]
        at: StoreAt,
    },
}

/// Which store the tokens are in: the master's data dir's SQLite, or its PostgreSQL.
#[derive(Args)]
pub struct StoreAt {
    #[arg(long, env = "DATARUN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The master's PostgreSQL store (`serve --store`), instead of the data dir's SQLite.
    #[arg(
        long,
        env = "DATARUN_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,
}

/// Tokens are managed on the master's machine, in its data dir's database.
fn token_store(at: StoreAt) -> Result<crate::store::Store> {
    let dir = at.data_dir.unwrap_or_else(super::default_data_dir);
    if let Some(url) = at.store {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return Ok(rt.block_on(crate::store::Store::open_pg(&url, &dir))?);
    }
    let db = dir.join("datarun.db");
    if !db.exists() {
        bail!("no datarun database in {}: run `datarun serve --data-dir {}` once first, or pass --data-dir", dir.display(), dir.display());
    }
    Ok(crate::store::Store::open(&db)?)
}

/// The longest `--expires` accepted.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

pub fn token(cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create {
            name,
            admin,
            expires,
            at,
        } => {
            let expires_at = match expires {
                None => None,
                Some(text) => {
                    let life = crate::units::parse_duration(&text)
                        .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                    if life.is_zero() || life > MAX_TOKEN_LIFE {
                        bail!("--expires: {text:?} must be more than 0 and at most 100 years");
                    }
                    Some(crate::store::now_ms() + life.as_millis() as i64)
                }
            };
            let store = token_store(at)?;
            let (id, secret) = store.create_token(&name, admin, expires_at)?;
            let until = expires_at
                .map(|t| format!(", expires {}", when(&json!(t))))
                .unwrap_or_default();
            let kind = if admin { "admin token" } else { "token" };
            eprintln!("{kind} {id} for {name}{until} (shown once; revoke it with `datarun token revoke {id}`)");
            let hook_secret = store.webhook_secret_blocking(id)?;
            eprintln!("webhook secret (signs the webhooks this token asks for; also GET /api/v1/webhook-secret): {hook_secret}");
            println!("{secret}");
        }
        TokenCmd::List { json, at } => {
            let tokens = token_store(at)?.list_tokens()?;
            if json {
                return print_json(&json!({ "tokens": tokens }));
            }
            let now = crate::store::now_ms();
            let mut t = Table::new(&[
                "ID",
                "OWNER",
                "ADMIN",
                "STATE",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ]);
            for k in &tokens {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(at), _) => format!("revoked {}", short_when(&json!(at))),
                    (None, Some(at)) if at <= now => "expired".into(),
                    _ => "valid".into(),
                };
                t.row([
                    k.id.to_string(),
                    k.owner.clone(),
                    if k.admin { "yes" } else { "no" }.into(),
                    state,
                    short_when(&json!(k.created_at)),
                    short_when(&json!(k.expires_at)),
                    short_when(&json!(k.last_used_at)),
                ]);
            }
            print!("{}", t.render());
        }
        TokenCmd::Revoke { id, owner, at } => {
            let store = token_store(at)?;
            match (id, owner) {
                (Some(id), _) => {
                    let t = store.revoke_token(id)?;
                    println!("revoked token {id} of {}", t.owner);
                }
                (None, Some(owner)) => {
                    let ids = store.revoke_owner_tokens(&owner)?;
                    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                    println!(
                        "revoked {} token(s) of {owner}: {}",
                        ids.len(),
                        ids.join(", ")
                    );
                }
                (None, None) => bail!("name a token id or --owner NAME"),
            }
        }
    }
    Ok(())
}

//! The command line: clap definitions, then one function per command. Human output is aligned
//! tables; every listing takes `--json` for scripts.

mod client;
mod commands;
mod fold;
mod provision;
mod queue;
mod serve;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use client::default_data_dir;
pub use commands::Exit;

#[derive(Parser)]
#[command(
    name = "datarun",
    version,
    about = "Train and test ML submissions on cross-validation folds, HTCondor-style"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How a client command finds the master.
#[derive(Args, Clone)]
pub struct Conn {
    /// Master URL, e.g. http://127.0.0.1:4680 (default: the one `datarun serve` wrote in the data dir).
    #[arg(long, env = "DATARUN_SERVER", global = true)]
    server: Option<String>,
    /// API token (default: the admin token in the data dir).
    #[arg(long, env = "DATARUN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The master's data directory (for the local server address and admin token).
    #[arg(long, env = "DATARUN_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl Conn {
    fn client(&self) -> Result<client::Client> {
        let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        client::Client::new(self.server.clone(), self.token.clone(), &dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the master: REST API, durable queue, scheduler, and the local agents.
    Serve {
        #[arg(long, env = "DATARUN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Inventory file (runners.toml); default: this machine as the only runner.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Master config file (scheduled maintenance: health checks, backups, purges).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:4680")]
        listen: std::net::SocketAddr,
        /// Largest request body (uploads, batches), e.g. 256M.
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        max_body: u64,
        /// Keep at most this much of each fold's log (the tail).
        #[arg(long, default_value = "1M", value_parser = parse_size)]
        log_limit: u64,
        /// Largest total size of one fold's outputs.
        #[arg(long, default_value = "128M", value_parser = parse_size)]
        output_limit: u64,
        /// A runner silent this long loses its attempts, which are requeued.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        lease: std::time::Duration,
    },
    /// Submit one fold: `datarun submit [OPTIONS] -- CMD ARGS...`; prints its id.
    Submit(commands::SubmitArgs),
    /// The queue: status, hold, release, remove, wait.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// One fold: show, output, log.
    #[command(subcommand)]
    Fold(fold::FoldCmd),
    /// Runners as the master sees them.
    #[command(subcommand)]
    Runners(commands::RunnersCmd),
    /// Inventory files.
    #[command(subcommand)]
    Inventory(commands::InventoryCmd),
    /// Container images on this machine's Docker engine (no registry needed).
    #[command(subcommand)]
    Image(commands::ImageCmd),
    /// Bootstrap the inventory's ssh runners: Docker, the agent, its images and service.
    Provision(provision::ProvisionArgs),
    /// API tokens (run on the master's machine; writes to its data dir).
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// Run the agent (started by the master; not for people).
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        stdio: bool,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        runner: String,
        #[arg(long, default_value = "process")]
        executor: String,
        /// Images folds may name (docker runners), repeatable.
        #[arg(long = "image")]
        images: Vec<String>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(s)
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data_dir,
            inventory,
            config,
            listen,
            max_body,
            log_limit,
            output_limit,
            lease,
        } => {
            let args = serve::ServeArgs {
                data_dir: data_dir.unwrap_or_else(default_data_dir),
                inventory,
                config,
                listen,
                max_body,
                log_limit,
                output_limit,
                lease,
            };
            runtime()?.block_on(serve::run(args))
        }
        Command::Agent {
            stdio,
            state_dir,
            runner,
            executor,
            images,
        } => {
            anyhow::ensure!(
                stdio,
                "the agent speaks over --stdio only (remote agents come with ssh runners)"
            );
            let executor = match executor.as_str() {
                "process" => crate::inventory::ExecutorKind::Process,
                "docker" => crate::inventory::ExecutorKind::Docker,
                other => anyhow::bail!("--executor {other:?}: expected process or docker"),
            };
            let cfg = crate::agent::daemon::AgentConfig {
                state_dir,
                runner,
                executor,
                images,
            };
            runtime()?.block_on(crate::agent::daemon::run_stdio(cfg))
        }
        Command::Submit(args) => commands::submit(args),
        Command::Queue(cmd) => queue::queue(cmd),
        Command::Fold(cmd) => fold::fold(cmd),
        Command::Runners(cmd) => commands::runners(cmd),
        Command::Inventory(cmd) => commands::inventory(cmd),
        Command::Token(cmd) => commands::token(cmd),
        Command::Provision(args) => provision::provision(args),
        Command::Image(cmd) => runtime()?.block_on(commands::image(cmd)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

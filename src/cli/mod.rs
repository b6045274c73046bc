//! The command line: clap definitions, then one function per command. Human output is aligned
//! tables; every listing takes `--json` for scripts.

mod client;
mod commands;
mod dataset;
pub mod exit;
mod fold;
mod paging;
mod provenance;
mod provision;
mod queue;
mod runners;
mod serve;
mod submission;
mod sweep;
mod token;
mod wait;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

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
    /// How log lines are written on stderr: `text` (colours only on a terminal, and never
    /// with NO_COLOR set) or `json` (one object a line, for log collectors).
    #[arg(long, global = true, env = "DATARUN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Logging on stderr, filtered by `DATARUN_LOG` (default `warn,datarun=info`).
fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DATARUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,datarun=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        // Children (local agents) log the same way.
        std::env::set_var("DATARUN_LOG_FORMAT", "json");
        builder.json().with_current_span(false).init();
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(colour).init();
    }
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
    /// Also trust the CA certificates in this PEM file (a master serving HTTPS with a private
    /// CA); the system's roots stay trusted.
    #[arg(long, env = "DATARUN_CA_CERT", global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

impl Conn {
    fn client(&self) -> Result<client::Client> {
        let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        client::Client::new(
            self.server.clone(),
            self.token.clone(),
            self.ca_cert.as_deref(),
            &dir,
        )
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
        /// datarun's known_hosts file for ssh runners (host keys are checked strictly; record
        /// them with `datarun provision --accept-new`). Default: $DATARUN_KNOWN_HOSTS, else
        /// ~/.config/datarun/known_hosts.
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
        /// Serve `GET /metrics` (Prometheus) without a token; by default it takes an admin
        /// token. The page has no per-owner figures either way.
        #[arg(long)]
        metrics_public: bool,
        #[command(flatten)]
        edge: serve::EdgeArgs,
        #[command(flatten)]
        webhooks: crate::webhooks::WebhookArgs,
        /// `/runapp/`: the most the b64(zlib) fields of one request may inflate to, together
        /// (a zlib bomb stops there and answers 413).
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        max_inflated: u64,
        /// Requests per token: `20/s`, `600/m`, or `off`; over it answers 429 with Retry-After.
        #[arg(long, default_value = "20/s", value_parser = crate::api::rate_limit::parse_rate)]
        rate_limit: f64,
        /// Requests a token may make at once after a quiet spell.
        #[arg(long, default_value = "100")]
        rate_burst: u32,
        /// Limit admin tokens too (by default they are exempt).
        #[arg(long)]
        rate_limit_admins: bool,
        #[command(flatten)]
        ha: serve::StoreArgs,
    },
    /// Submit one fold: `datarun submit [OPTIONS] -- CMD ARGS...`; prints its id.
    Submit(commands::SubmitArgs),
    /// The queue: status, hold, release, remove, wait.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// One fold: show, output, log.
    #[command(subcommand)]
    Fold(fold::FoldCmd),
    /// Datasets: upload a CSV or files with a problem script, statistics, splits.
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// Submissions on CV folds: submit, list, show.
    #[command(subcommand)]
    Submission(submission::SubmissionCmd),
    /// Parameter sweeps (`submit --sweep`): points ranked by a metric, keep the best.
    #[command(subcommand)]
    Sweep(sweep::SweepCmd),
    /// Results of submission folds: the "new results" feed.
    #[command(subcommand)]
    Results(submission::ResultsCmd),
    /// A dataset's leaderboard: mean and std of each score across folds, per submission.
    Leaderboard {
        #[command(flatten)]
        conn: Conn,
        dataset: i64,
        #[arg(long)]
        json: bool,
    },
    /// Runners as the master sees them.
    #[command(subcommand)]
    Runners(runners::RunnersCmd),
    /// Inventory files.
    #[command(subcommand)]
    Inventory(runners::InventoryCmd),
    /// Container images on this machine's Docker engine (no registry needed).
    #[command(subcommand)]
    Image(commands::ImageCmd),
    /// Bootstrap the inventory's ssh runners: Docker, the agent, its images and service.
    Provision(provision::ProvisionArgs),
    /// API tokens (run on the master's machine; writes to its data dir).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Shell completions for bash, zsh or fish, on stdout
    /// (`datarun completions bash > /etc/bash_completion.d/datarun`).
    Completions {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
    /// The manual page (roff) on stdout (`datarun man | man -l -`).
    Man,
    /// Run the agent (started by the master; not for people).
    #[command(hide = true)]
    Agent {
        /// Serve one master on stdin/stdout (the local transport).
        #[arg(long, conflicts_with_all = ["listen", "connect", "ping", "facts"])]
        stdio: bool,
        /// Run as a daemon serving masters on this Unix socket (ssh runners).
        #[arg(long, value_name = "SOCKET", conflicts_with_all = ["connect", "ping", "facts"])]
        listen: Option<PathBuf>,
        /// Join stdin/stdout to the daemon on this socket (what the master runs over ssh).
        #[arg(long, value_name = "SOCKET", conflicts_with_all = ["ping", "facts"])]
        connect: Option<PathBuf>,
        /// Health check: exit 0 and print this machine's facts if the daemon answers.
        #[arg(long, value_name = "SOCKET", conflicts_with = "facts")]
        ping: Option<PathBuf>,
        /// Print this machine's facts (cpus, memory, arch, Docker, GPUs, disk) as JSON.
        #[arg(long)]
        facts: bool,
        #[arg(long, required_if_eq_any = [("stdio", "true")], required_unless_present_any = ["connect", "ping", "facts"])]
        state_dir: Option<PathBuf>,
        #[arg(long, required_unless_present_any = ["connect", "ping", "facts"])]
        runner: Option<String>,
        #[arg(long, default_value = "process")]
        executor: String,
        /// Images folds may name (docker runners), repeatable.
        #[arg(long = "image")]
        images: Vec<String>,
        /// Warm containers (docker runners), as JSON: {"image": ..., "command": [...],
        /// "count": N, "memory": BYTES}, as the inventory's `warm` key gives it.
        #[arg(long, value_name = "JSON")]
        warm: Option<String>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s)
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(s)
}

/// Client commands that only talk to the master and print stop quietly when their output
/// closes (`datarun fold show 1 | head`): Rust ignores SIGPIPE, so `println!` would panic on
/// the closed pipe; the default disposition ends the process as any Unix tool does. Never for
/// the master, the agent, or the commands that drive SSH sessions or the Docker engine, which
/// must see EPIPE as an error on their own connections instead of dying.
fn restore_sigpipe(command: &Command) {
    let client = !matches!(
        command,
        Command::Serve { .. } | Command::Agent { .. } | Command::Provision(_) | Command::Image(_)
    );
    if client {
        // SAFETY: setting a signal disposition to its default before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    restore_sigpipe(&cli.command);
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
            known_hosts,
            metrics_public,
            edge,
            webhooks,
            max_inflated,
            rate_limit,
            rate_burst,
            rate_limit_admins,
            ha,
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
                known_hosts,
                metrics_public,
                edge,
                webhooks,
                max_inflated,
                rate_limit: crate::api::rate_limit::RateLimit {
                    per_second: rate_limit,
                    burst: f64::from(rate_burst),
                    admins: rate_limit_admins,
                },
                ha,
            };
            runtime()?.block_on(serve::run(args))
        }
        Command::Agent {
            stdio,
            listen,
            connect,
            ping,
            facts,
            state_dir,
            runner,
            executor,
            images,
            warm,
        } => {
            use crate::agent::{bridge, facts as agent_facts, serve};
            if let Some(socket) = connect {
                let rt = runtime()?;
                let result = rt.block_on(bridge::connect(&socket));
                // The stdin reader may still block in a thread that dropping the runtime
                // would wait for.
                rt.shutdown_background();
                return result;
            }
            if let Some(socket) = ping {
                return runtime()?.block_on(async {
                    bridge::ping(&socket, std::time::Duration::from_secs(5)).await?;
                    let dir = socket.parent().map(Path::to_path_buf);
                    let facts =
                        agent_facts::gather(dir.as_deref(), agent_facts::Engine::Probe).await;
                    println!("{}", serde_json::to_string(&facts)?);
                    Ok(())
                });
            }
            if facts {
                return runtime()?.block_on(async {
                    let facts =
                        agent_facts::gather(Some(Path::new("/")), agent_facts::Engine::Probe).await;
                    println!("{}", serde_json::to_string(&facts)?);
                    Ok(())
                });
            }
            anyhow::ensure!(
                stdio || listen.is_some(),
                "say how masters reach this agent: --stdio or --listen SOCKET"
            );
            let (Some(state_dir), Some(runner)) = (state_dir, runner) else {
                anyhow::bail!("--state-dir and --runner are required");
            };
            let executor = match executor.as_str() {
                "process" => crate::inventory::ExecutorKind::Process,
                "docker" => crate::inventory::ExecutorKind::Docker,
                other => anyhow::bail!("--executor {other:?}: expected process or docker"),
            };
            let warm = match warm {
                None => None,
                Some(json) => {
                    let spec: crate::inventory::WarmSpec = serde_json::from_str(&json)
                        .map_err(|e| anyhow::anyhow!("--warm {json:?}: {e}"))?;
                    spec.check()
                        .map_err(|e| anyhow::anyhow!("--warm {json:?}: {e}"))?;
                    anyhow::ensure!(
                        executor == crate::inventory::ExecutorKind::Docker,
                        "--warm: only docker runners keep warm containers"
                    );
                    Some(spec)
                }
            };
            let cfg = crate::agent::daemon::AgentConfig {
                state_dir,
                runner,
                executor,
                images,
                warm,
            };
            run_agent(move |rt| match listen {
                Some(socket) => rt.block_on(serve::run_listen(cfg, &socket)),
                None => rt.block_on(serve::run_stdio(cfg)),
            })
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell.as_str() {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "datarun",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Submit(args) => commands::submit(args),
        Command::Queue(cmd) => queue::queue(cmd),
        Command::Fold(cmd) => fold::fold(cmd),
        Command::Dataset(cmd) => dataset::dataset(cmd),
        Command::Submission(cmd) => submission::submission(cmd),
        Command::Sweep(cmd) => sweep::sweep(cmd),
        Command::Results(cmd) => submission::results(cmd),
        Command::Leaderboard {
            conn,
            dataset,
            json,
        } => submission::leaderboard(conn, dataset, json),
        Command::Runners(cmd) => runners::runners(cmd),
        Command::Inventory(cmd) => runners::inventory(cmd),
        Command::Token(cmd) => token::token(cmd),
        Command::Provision(args) => provision::provision(args),
        Command::Image(cmd) => runtime()?.block_on(commands::image(cmd)),
    }
}

/// Runs the agent on one runtime thread. Its work is waiting (on folds, pipes, the engine,
/// the master) and short steps between the waits; what blocks or may take long (input
/// copies, output scans, hashing, removing a directory, the journal's syncs and recovery)
/// goes to blocking threads or the journal's own. On a multi-threaded runtime every step of
/// a fold (its message, its spawn, its exit, its result) could wake another worker thread:
/// 1,000 trivial folds cost the agent about 15% less CPU on one (0.29 against 0.34 ms a fold).
/// The runtime thread is not the main thread: the folds it spawns are its children, and the
/// main thread's are only the orphans the agent adopts as a subreaper
/// (`agent::process::reap::adopted`).
fn run_agent(
    run: impl FnOnce(&tokio::runtime::Runtime) -> Result<()> + Send + 'static,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("datarun-agent".into())
        .spawn(move || run(&runtime))?
        .join()
        .map_err(|_| anyhow::anyhow!("the agent's runtime thread panicked"))?
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

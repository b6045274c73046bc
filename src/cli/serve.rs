//! `datarun serve`: the master. Opens the store in the data directory, loads the inventory
//! (or the embedded default: this machine as the only runner), writes the admin token and the
//! server address for local CLI calls, and serves the API while the master loop runs.

use crate::api::{self, ApiState};
use crate::master::role::{holder_name, holder_url, Role};
use crate::master::{Master, MasterConfig};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ServeArgs {
    pub data_dir: PathBuf,
    pub inventory: Option<PathBuf>,
    /// The master's config file (scheduled maintenance).
    pub config: Option<PathBuf>,
    pub listen: SocketAddr,
    pub max_body: u64,
    pub log_limit: u64,
    pub output_limit: u64,
    pub lease: Duration,
    pub known_hosts: Option<PathBuf>,
    /// `GET /metrics` without a token.
    pub metrics_public: bool,
    /// `/runapp/`: the most one request's b64(zlib) fields inflate to.
    pub max_inflated: u64,
    pub rate_limit: api::rate_limit::RateLimit,
    pub edge: EdgeArgs,
    pub webhooks: crate::webhooks::WebhookArgs,
    pub ha: StoreArgs,
}

/// `serve` flags for the store and, on PostgreSQL, the masters' leadership.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Keep the queue in PostgreSQL (`postgres://user:password@host:port/db`) instead of
    /// SQLite in the data directory; several masters may share it, one active at a time.
    #[arg(
        long,
        env = "DATARUN_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// On PostgreSQL: how long the active master's leadership lasts without a renewal; a
    /// standby takes over within it once the active master is gone.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub leader_lease: Duration,
    /// The URL other masters' standby answers name for this one (default: its listen address).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
}

/// `serve` flags for the HTTP edge: TLS and the limits that hold against hostile clients.
#[derive(clap::Args, Clone, Debug)]
pub struct EdgeArgs {
    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Time for a TLS handshake and for each request's head; idle keep-alive connections are
    /// closed after it too.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub header_timeout: Duration,
    /// A request body that stalls this long, or falls behind --body-min-rate after it, answers
    /// 408 and its connection is closed; so is one whose client reads nothing of its answer
    /// for this long.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub body_timeout: Duration,
    /// Bytes per second a request body must average once --body-timeout has passed (0: none).
    #[arg(long, default_value = "1K", value_parser = super::parse_size)]
    pub body_min_rate: u64,
    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Connections served at once from one client address (at most --max-connections);
    /// more are closed as they are accepted, so that slow clients from one address cannot
    /// hold every connection. Raise it behind a proxy that is the only client.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections_per_ip: u32,
    /// Long polls and event streams (`GET /events`) served at once; more answer 503 with
    /// Retry-After. Each holds a connection: keep it below --max-connections.
    #[arg(long, default_value_t = crate::model::limits::DEFAULT_MAX_WAITERS, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_waiters: u32,
}

/// Holds an exclusive lock on the data directory for the life of the process: two masters on
/// one queue would run folds twice.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("master.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another datarun master is already serving {} (lock {} is held); stop it first or use another --data-dir", dir.display(), path.display());
    }
    Ok(file)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

/// The admin token local CLI calls pick up; made once, kept across restarts. A new one is made
/// when the file is missing or its token is no longer a valid admin token (revoked, expired);
/// other tokens are left as they are.
async fn ensure_admin_token(store: &Store, dir: &Path) -> Result<()> {
    let path = dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let check = store.verify_token(existing.trim().to_string()).await?;
        if matches!(check, crate::store::TokenCheck::Valid(p) if p.admin) {
            return Ok(());
        }
    }
    let store = store.clone();
    let (_, token) =
        tokio::task::spawn_blocking(move || store.create_token("admin", true, None)).await??;
    write_private(&path, &format!("{token}\n"))
}

pub async fn run(args: ServeArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let _lock = lock_data_dir(&args.data_dir)?;
    let inventory = match &args.inventory {
        Some(path) => crate::inventory::load(path)?,
        None => crate::inventory::local_default(),
    };
    let master_file = match &args.config {
        Some(path) => crate::maintenance::load(path, &args.data_dir).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let jobs = master_file.jobs;
    let tls = match (&args.edge.tls_cert, &args.edge.tls_key) {
        (Some(cert), Some(key)) => Some(crate::edge::tls::acceptor(cert, key)?),
        _ => None,
    };
    let limits = edge_limits(&args);
    let pg_url = args.ha.store.as_deref();
    let store = match pg_url {
        Some(url) => Store::open_pg(url, &args.data_dir)
            .await
            .context("cannot open the PostgreSQL store (--store)")?,
        None => Store::open(&args.data_dir.join("datarun.db"))?,
    };
    store.set_max_losses(master_file.max_losses);
    ensure_admin_token(&store, &args.data_dir).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let mut addr = bound;
    // Local CLI calls reach a master listening on every address through loopback (a TLS
    // certificate names 127.0.0.1, never 0.0.0.0).
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let advertise = args.ha.advertise.clone().unwrap_or_else(|| url.clone());
    let role = Role::new(
        if pg_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        advertise.clone(),
    );
    let api_limits = std::sync::Arc::new(api::ApiLimits {
        max_inflated: args.max_inflated as usize,
        rate: api::rate_limit::RateLimiter::new(args.rate_limit),
        waiters: api::Waiters::new(args.edge.max_waiters as usize),
        https: tls.is_some(),
        metrics_public: args.metrics_public,
        webhook_allow: args.webhooks.webhook_allow.clone().unwrap_or_default(),
    });
    let source = inventory
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded default (this machine)".into());
    if bound == addr {
        println!("datarun master serving {url}");
    } else {
        println!("datarun master serving {url} (listening on {bound})");
    }
    match pg_url {
        Some(_) => println!(
            "  store:     PostgreSQL (--store), leadership lease {}ms, advertised as {advertise}",
            args.ha.leader_lease.as_millis()
        ),
        None => println!("  data:      {}", args.data_dir.display()),
    }
    println!(
        "  inventory: {source} ({} runner{})",
        inventory.runners.len(),
        if inventory.runners.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    println!(
        "  token:     {} (admin)",
        args.data_dir.join("admin.token").display()
    );
    let schedule = crate::maintenance::describe(&jobs, chrono::Utc::now());
    if schedule.is_empty() {
        println!("  maintenance: none scheduled (see --config)");
    }
    for job in &schedule {
        println!(
            "  maintenance: {:<12} {:<16} next {}",
            job.name,
            job.schedule,
            job.next_run.as_deref().unwrap_or("never")
        );
    }
    tracing::info!("serving on {url}");

    let waiters = api_limits.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Long polls answer and event streams end now, not at the end of the grace period.
        waiters.waiters.close();
    };
    let app = role.app();
    let server_file = args.data_dir.join("server");
    let shared = store.shared();
    if shared {
        // Until it leads, a master answers the reads the database answers alone.
        role.serve_reads(api::router(
            ApiState {
                store: store.clone(),
                master: crate::master::MasterHandle::standby(),
                maintenance: std::sync::Arc::new(jobs.clone()),
                limits: api_limits.clone(),
            },
            args.max_body as usize,
        ));
        if let Some(pg) = store.pg() {
            tokio::spawn(follow_while_standby(pg.clone(), role.clone()));
        }
    }
    let active = Active {
        args: &args,
        inventory,
        master_file_oom: master_file.oom,
        fair_share: master_file.fair_share,
        owner_cap: master_file.owner_cap,
        jobs,
        api_limits,
        store,
        role,
    };
    if !shared {
        // One master: the API answers once the master is up (requests wait in the backlog
        // until then, as the `server` file is written only now).
        let running = active.start().await?;
        write_private(&server_file, &format!("{url}\n"))?;
        let server = crate::edge::serve(listener, app, limits, tls, shutdown);
        return tokio::select! {
            () = server => Ok(()),
            r = running.wait() => r,
        };
    }
    // On PostgreSQL a standby serves (its health, 503 for the rest) while it waits. It reads
    // the leadership once first, so that its first answers already name the active master.
    if let Some(pg) = active.store.pg() {
        match pg.leadership().await {
            Ok(l) => active
                .role
                .set_active_url(l.live.then(|| holder_url(&l.holder).to_string())),
            Err(e) => tracing::warn!("cannot read the leadership: {e}"),
        }
    }
    write_private(&server_file, &format!("{url}\n"))?;
    let server = crate::edge::serve(listener, app, limits, tls, shutdown);
    tokio::select! {
        () = server => Ok(()),
        r = async { active.start().await?.wait().await } => r,
    }
}

/// How often a standby reads the newest event, so that its event feed's waits wake.
const STANDBY_FEED: Duration = Duration::from_millis(250);

/// While this master is a standby, the change signal follows the active master's writes
/// (read every `STANDBY_FEED`); once active, its own writes publish it.
async fn follow_while_standby(pg: crate::store::pg::PgStore, role: Role) {
    while !role.is_active() {
        pg.publish().await;
        tokio::time::sleep(STANDBY_FEED).await;
    }
}

/// The active master at work: its loop and, on PostgreSQL, its hold on the leadership.
struct Running {
    master_task: tokio::task::JoinHandle<anyhow::Result<()>>,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Running {
    /// Until the loop ends or the leadership is lost: a master that loses it stops with an
    /// error (restart it to serve as a standby again).
    async fn wait(mut self) -> Result<()> {
        let lost = async {
            match self.leading.as_mut() {
                Some(rx) => {
                    while *rx.borrow_and_update() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.master_task => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.context("the master loop failed")),
                Err(e) => bail!("the master loop panicked: {e}"),
            },
            () = lost => bail!(
                "this master lost the leadership lease (the database did not renew it in time, or another master took it); \
                 it has stopped writing and exits: restart it to serve as a standby"
            ),
        }
    }
}

/// What the master needs to become the active one.
struct Active<'a> {
    args: &'a ServeArgs,
    inventory: crate::inventory::Inventory,
    master_file_oom: Option<crate::maintenance::config::OomPolicy>,
    fair_share: Option<Duration>,
    owner_cap: Option<u32>,
    jobs: Vec<crate::maintenance::config::Job>,
    api_limits: std::sync::Arc<api::ApiLimits>,
    store: Store,
    role: Role,
}

impl Active<'_> {
    /// Waits for the leadership (PostgreSQL; at once on SQLite), then starts the master loop,
    /// its maintenance and its API.
    async fn start(self) -> Result<Running> {
        let leading = match self.store.pg() {
            Some(pg) => {
                let holder = holder_name(self.role.advertise());
                let (generation, taken_at) =
                    take_leadership(pg, &self.role, &holder, self.args.ha.leader_lease).await;
                tracing::info!(
                    "took the leadership (generation {generation}); this master is active"
                );
                println!("  role:      active (leadership generation {generation})");
                Some(pg.spawn_renewer(holder, generation, self.args.ha.leader_lease, taken_at))
            }
            None => None,
        };
        let args = self.args;
        let agent_exe = std::env::current_exe()
            .context("cannot find the datarun binary to start agents from")?;
        let cfg = MasterConfig {
            data_dir: args.data_dir.clone(),
            inventory: self.inventory,
            agent_exe,
            log_limit: args.log_limit,
            output_limit: args.output_limit,
            lease: args.lease,
            // The operator's ssh config: $DATARUN_SSH_CONFIG, else ~/.ssh/config.
            ssh: crate::provision::SshOptions {
                config: crate::provision::ssh::config::default_path(),
                ..crate::provision::SshOptions::new(
                    args.known_hosts
                        .clone()
                        .unwrap_or_else(crate::provision::known_hosts::default_path),
                )
            },
            oom_policy: self.master_file_oom,
            fair_share: self.fair_share,
            owner_cap: self.owner_cap,
        };
        let (master, handle) = Master::new(cfg, self.store.clone()).await?;
        let master_task = tokio::spawn(master.run());
        // SIGHUP re-reads the inventory, as `datarun runners reload` does.
        let hup_handle = handle.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match hup_handle.reload().await {
                    Ok(report) => tracing::info!("SIGHUP: inventory reloaded: {report:?}"),
                    Err(e) => tracing::error!("SIGHUP: inventory reload rejected: {e}"),
                }
            }
        });
        let jobs = std::sync::Arc::new(self.jobs);
        tokio::spawn(crate::webhooks::run(
            self.store.clone(),
            crate::webhooks::Config::from(&args.webhooks),
        ));
        tokio::spawn(crate::maintenance::run(
            jobs.as_ref().clone(),
            self.store.clone(),
            handle.clone(),
        ));
        self.role.activate(api::router(
            ApiState {
                store: self.store,
                master: handle,
                maintenance: jobs,
                limits: self.api_limits,
            },
            args.max_body as usize,
        ));
        Ok(Running {
            master_task,
            leading,
        })
    }
}

/// Polls the leadership until this master takes it; meanwhile it is a standby and its role
/// names the active master. Returns the generation and when the winning attempt was sent.
async fn take_leadership(
    pg: &crate::store::pg::PgStore,
    role: &Role,
    holder: &str,
    lease: Duration,
) -> (i64, std::time::Instant) {
    let poll = (lease / 20).max(Duration::from_millis(50));
    let mut announced = false;
    loop {
        let sent = std::time::Instant::now();
        match pg.try_acquire(holder, lease).await {
            Ok(Some(generation)) => return (generation, sent),
            Ok(None) => match pg.leadership().await {
                Ok(l) => {
                    let active = l.live.then(|| holder_url(&l.holder).to_string());
                    if !announced {
                        println!(
                            "  role:      standby (active master: {})",
                            active.as_deref().unwrap_or("none yet")
                        );
                        announced = true;
                    }
                    role.set_active_url(active);
                }
                Err(e) => tracing::warn!("cannot read the leadership: {e}"),
            },
            Err(e) => tracing::warn!("cannot take the leadership: {e}"),
        }
        tokio::time::sleep(poll).await;
    }
}

/// The edge's limits from the flags, with connections capped by what file descriptors allow.
fn edge_limits(args: &ServeArgs) -> crate::edge::Limits {
    let wanted = args.edge.max_connections as usize;
    let max_connections = crate::edge::connection_budget(wanted);
    if max_connections < wanted {
        tracing::warn!(
            "--max-connections {wanted} lowered to {max_connections}: the open-file limit (ulimit -n) leaves no more"
        );
    }
    crate::edge::Limits {
        header_timeout: args.edge.header_timeout,
        body: crate::edge::BodyPace {
            timeout: args.edge.body_timeout,
            min_rate: args.edge.body_min_rate,
        },
        max_body: args.max_body,
        max_connections,
        max_per_peer: (args.edge.max_connections_per_ip as usize).min(max_connections),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; agents finish their running folds and keep the results");
}

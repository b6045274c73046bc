//! `datarun provision runners.toml`: bootstrap the inventory's ssh runners.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::commands::Exit;
use crate::provision::playbook::AgentBinary;
use crate::provision::report::{exit_code, failure_line, progress_line, summary, Status};
use crate::provision::run::{provision as run, Event, RunOptions};
use crate::provision::{select::select, HostKeyPolicy, SshOptions};

#[derive(Args)]
pub struct ProvisionArgs {
    /// The inventory (runners.toml).
    file: PathBuf,
    /// Hosts provisioned at once.
    #[arg(long, default_value_t = 10)]
    forks: usize,
    /// Show what would change, change nothing.
    #[arg(long)]
    check: bool,
    /// Only these runners: a name (`*` globs), a label or a CIDR; repeatable, comma-separated.
    #[arg(long)]
    limit: Vec<String>,
    /// datarun's known_hosts file, shared with `datarun serve` (default: $DATARUN_KNOWN_HOSTS,
    /// else ~/.config/datarun/known_hosts).
    #[arg(long, env = "DATARUN_KNOWN_HOSTS")]
    known_hosts: Option<PathBuf>,
    /// Record the host key of hosts not in the known_hosts file yet (a changed key is still
    /// refused).
    #[arg(long)]
    accept_new: bool,
    /// Give up connecting to a host after this long, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    connect_timeout: Duration,
    /// Print the reports as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// The OpenSSH client config to follow (Host aliases, User, Port, IdentityFile,
    /// IdentityAgent, ProxyJump); `none` for none. Default: $DATARUN_SSH_CONFIG, else
    /// ~/.ssh/config when it exists.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
}

pub fn provision(args: ProvisionArgs) -> Result<()> {
    let started = Instant::now();
    let inventory = crate::inventory::load(&args.file)?;
    let runners = select(&inventory.runners, &args.limit).map_err(anyhow::Error::msg)?;
    if runners.is_empty() {
        eprintln!(
            "{}: no ssh runner to provision (local runners need none)",
            args.file.display()
        );
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find this program's own binary")?;
    let binary = AgentBinary::read(&exe)
        .with_context(|| format!("cannot read this program's binary {}", exe.display()))?;
    let known_hosts = args
        .known_hosts
        .unwrap_or_else(crate::provision::known_hosts::default_path);
    let opts = RunOptions {
        ssh: SshOptions {
            connect_timeout: args.connect_timeout,
            policy: if args.accept_new {
                HostKeyPolicy::AcceptNew
            } else {
                HostKeyPolicy::Strict
            },
            config: ssh_config(args.ssh_config),
            ..SshOptions::new(known_hosts)
        },
        check: args.check,
        forks: args.forks,
    };
    let check = args.check;
    eprintln!(
        "provisioning {} runner{}{} ({} at once)",
        runners.len(),
        if runners.len() == 1 { "" } else { "s" },
        if check {
            " in check mode (nothing is changed)"
        } else {
            ""
        },
        args.forks.max(1)
    );
    let progress = Arc::new(move |event: Event| {
        let line = match event {
            Event::Step(host, step) => progress_line(host, step, check),
            Event::Failed(host, failure) => failure_line(host, failure, Status::Failed),
            Event::Unreachable(host, failure) => failure_line(host, failure, Status::Unreachable),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
    let reports = super::runtime()?
        .block_on(run(runners, binary, opts, progress))
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let mut out = std::io::stdout().lock();
        if std::io::stderr().is_terminal() {
            writeln!(out)?;
        }
        write!(out, "{}", summary(&reports, check, started.elapsed()))?;
    }
    match exit_code(&reports) {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}

/// The ssh config `--ssh-config` names (`none`: none), else the default one.
pub(super) fn ssh_config(arg: Option<PathBuf>) -> Option<PathBuf> {
    match arg {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p),
        None => crate::provision::ssh::config::default_path(),
    }
}

//! A small SSH client over russh: one TCP connection per host, many channels on it.
//!
//! Host keys are checked against datarun's own known_hosts file ([`super::known_hosts`]), and,
//! when an ssh config is followed, the operator's own (`UserKnownHostsFile`, default
//! `~/.ssh/known_hosts`), read-only. The
//! client logs in as OpenSSH would ([`auth`]): the identity files given (unencrypted ed25519,
//! ECDSA or RSA keys, RSA with SHA-2 signatures only), then the keys of an `ssh-agent`
//! (passphrase-protected keys work through it). Where to connect follows the inventory, then
//! the operator's ssh config ([`config`]: Host aliases, HostName, User, Port, IdentityFile,
//! IdentityAgent, ProxyJump). Jump hosts are connected to in turn, each next hop over a
//! `direct-tcpip` channel of the previous one, their host keys checked too. Each hop's
//! connecting (TCP or channel, handshake, authentication) is bounded by `connect_timeout`; a
//! live connection sends keepalives and is dropped after three unanswered.

mod auth;
mod channel;
pub mod config;
mod error;
mod identity;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

pub use channel::{ExecOutput, StreamWriter};
pub use config::{ConfigError, SshConfig};
pub use error::SshError;

use super::known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, KnownHostsError};

/// Where to connect, as whom, with which keys, through which jump hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key files tried in order (may be empty when an agent holds the keys).
    pub identity_files: Vec<PathBuf>,
    /// The `ssh-agent` socket whose keys are tried after the files.
    pub agent: Option<PathBuf>,
    /// Jump hosts (`ProxyJump`), first hop first; each is reached through the ones before it,
    /// and this target through the last.
    pub jumps: Vec<SshTarget>,
    /// The operator's OpenSSH known_hosts files, trusted read-only besides datarun's own
    /// (see [`KnownHosts::check_with`]).
    pub trusted_known_hosts: Vec<PathBuf>,
}

impl SshTarget {
    /// `user@host:22` with this identity file, no agent, no jump host.
    pub fn new(host: impl Into<String>, user: impl Into<String>, identity: PathBuf) -> Self {
        SshTarget {
            host: host.into(),
            port: 22,
            user: user.into(),
            identity_files: vec![identity],
            agent: None,
            jumps: Vec::new(),
            trusted_known_hosts: Vec::new(),
        }
    }

    /// The target of an inventory ssh runner. The runner's `address` is looked up in the ssh
    /// config (`opts.config`) as a Host alias; the inventory's `user`, `port` (when not 22) and
    /// `identity_file` win over the config's `User`, `Port` and `IdentityFile`. Defaults: user
    /// root; keys: the config's IdentityFiles, else those of ~/.ssh/id_ed25519, id_ecdsa,
    /// id_rsa that exist, then the agent's (`IdentityAgent`, else `$SSH_AUTH_SOCK`).
    /// Provisioning and the master's ssh transport both log in this way.
    pub fn for_runner(
        runner: &crate::inventory::RunnerSpec,
        opts: &SshOptions,
    ) -> Result<SshTarget, String> {
        let alias = runner
            .host
            .clone()
            .ok_or_else(|| format!("runner {} has no address", runner.name))?;
        let config = match &opts.config {
            Some(path) => Some(
                SshConfig::load(path)
                    .map_err(|e| format!("runner {}: ssh config {e}", runner.name))?,
            ),
            None => None,
        };
        let port = (runner.port != crate::inventory::DEFAULT_SSH_PORT).then_some(runner.port);
        let given = Given {
            user: runner.user.clone(),
            port,
            identity: runner.identity_path(),
        };
        resolve(&alias, given, config.as_ref(), 0)
            .map_err(|e| format!("runner {}: {e}", runner.name))
    }

    /// `host:port` (`[v6]:port` for IPv6 addresses), as errors name it.
    pub fn label(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the inventory (or a ProxyJump hop) says itself; it wins over the ssh config.
struct Given {
    user: Option<String>,
    port: Option<u16>,
    identity: Option<PathBuf>,
}

/// The target for `alias`: what is given, then the config, then the defaults; its jump
/// hosts resolved the same way (the first hop's own ProxyJump too, at most
/// [`config::MAX_JUMPS`] hops in all).
fn resolve(
    alias: &str,
    given: Given,
    config: Option<&SshConfig>,
    depth: usize,
) -> Result<SshTarget, String> {
    let hc = config.map(|c| c.resolve(alias)).unwrap_or_default();
    let host = hc.host_name.clone().unwrap_or_else(|| alias.to_string());
    let user = given.user.or(hc.user).unwrap_or_else(|| "root".into());
    let port = given.port.or(hc.port).unwrap_or(22);
    let agent = auth::agent_socket(hc.identity_agent.as_ref());
    let mut identity_files: Vec<PathBuf> = match given.identity {
        Some(path) => vec![path],
        None => hc
            .identity_files
            .iter()
            .map(|p| config::expand_path(p, &host, &user))
            .collect(),
    };
    if identity_files.is_empty() {
        identity_files = default_identities();
    }
    if identity_files.is_empty() && agent.is_none() {
        return Err(format!(
            "no key to log in to {alias} with: no identity_file in the inventory or IdentityFile \
             in the ssh config, no ~/.ssh/id_ed25519, id_ecdsa or id_rsa, and no ssh-agent \
             (SSH_AUTH_SOCK is not set)"
        ));
    }
    // With an ssh config followed, the operator's known_hosts files vouch for hosts too.
    let trusted_known_hosts = match (config, hc.user_known_hosts) {
        (None, _) => Vec::new(),
        (Some(_), Some(files)) => files,
        (Some(_), None) => vec![
            PathBuf::from("~/.ssh/known_hosts"),
            PathBuf::from("~/.ssh/known_hosts2"),
        ],
    }
    .iter()
    .map(|p| config::expand_path(p, &host, &user))
    .collect();
    let mut jumps = Vec::new();
    for (i, hop) in hc.proxy_jump.unwrap_or_default().into_iter().enumerate() {
        if depth + jumps.len() >= config::MAX_JUMPS {
            return Err(format!(
                "more than {} ProxyJump hops to reach {alias} (a loop in the ssh config?)",
                config::MAX_JUMPS
            ));
        }
        let given = Given {
            user: hop.user,
            port: hop.port,
            identity: None,
        };
        let mut target = resolve(&hop.host, given, config, depth + jumps.len() + 1)?;
        // Only the first hop is reached by its own ProxyJump; later ones go through the hop
        // before them, as with `ssh -J a,b`.
        let own = std::mem::take(&mut target.jumps);
        if i == 0 {
            jumps.extend(own);
        }
        jumps.push(target);
    }
    Ok(SshTarget {
        host,
        port,
        user,
        identity_files,
        agent,
        jumps,
        trusted_known_hosts,
    })
}

/// How to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Bound on TCP connect + handshake + authentication, per hop.
    pub connect_timeout: Duration,
    /// Interval of keepalives when the server is silent.
    pub keepalive: Duration,
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    /// The operator's ssh config to follow (see [`config::default_path`]); None: none.
    pub config: Option<PathBuf>,
}

impl SshOptions {
    /// The defaults (10 s connect timeout, 15 s keepalive, strict host keys, no ssh config)
    /// with this file.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            known_hosts: known_hosts.into(),
            policy: HostKeyPolicy::Strict,
            config: None,
        }
    }
}

/// The default key files that exist: ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
fn default_identities() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let home = PathBuf::from(home);
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .filter(|p| p.exists())
        .collect()
}

/// Quotes one word for the remote shell.
pub fn quote(arg: &str) -> String {
    shell_words::quote(arg).into_owned()
}

/// The russh handler: checks the host key, keeping the reason of a refusal for the error.
pub(crate) struct Client {
    host: String,
    port: u16,
    label: String,
    known_hosts: KnownHosts,
    trusted: Vec<PathBuf>,
    policy: HostKeyPolicy,
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(_) => {
                self.refuse(SshError::HostKeyUnsupported {
                    host: self.label.clone(),
                    message: "the host offered a certificate; datarun checks plain host keys \
                              against its known_hosts file"
                        .into(),
                });
                return Ok(false);
            }
        };
        let (kh, trusted, host, port, policy) = (
            self.known_hosts.clone(),
            self.trusted.clone(),
            self.host.clone(),
            self.port,
            self.policy,
        );
        let checked =
            tokio::task::spawn_blocking(move || kh.check_with(&trusted, &host, port, &key, policy))
                .await
                .unwrap_or_else(|e| {
                    Err(KnownHostsError::Io {
                        file: self.known_hosts.path().to_path_buf(),
                        source: std::io::Error::other(e),
                    })
                });
        match checked {
            Ok(HostKeyStatus::Known { .. }) => Ok(true),
            Ok(HostKeyStatus::Recorded { line }) => {
                tracing::info!(host = %self.label, "recorded a new host key at {}:{line}",
                    self.known_hosts.path().display());
                Ok(true)
            }
            Err(source) => {
                self.refuse(SshError::HostKey {
                    host: self.label.clone(),
                    source,
                });
                Ok(false)
            }
        }
    }
}

impl Client {
    fn refuse(&self, error: SshError) {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }
}

/// An authenticated connection. Clones share it; each command gets its own channel.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    handle: client::Handle<Client>,
    label: String,
    /// The jump hosts' connections, first hop first: kept open while this one is.
    via: Vec<client::Handle<Client>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.label)
            .finish()
    }
}

impl Session {
    /// Connects through the target's jump hosts, if any, then to the target, checking every
    /// host key and authenticating on each; each hop within `opts.connect_timeout`.
    pub async fn connect(target: &SshTarget, opts: &SshOptions) -> Result<Session, SshError> {
        let mut via: Vec<(client::Handle<Client>, String)> = Vec::new();
        for hop in &target.jumps {
            let handle = connect_hop(hop, via.last(), opts).await?;
            via.push((handle, hop.label()));
        }
        let handle = connect_hop(target, via.last(), opts).await?;
        let label = target.label();
        tracing::debug!(host = %label, user = %target.user, jumps = via.len(), "ssh connected");
        Ok(Session {
            inner: Arc::new(Inner {
                handle,
                label,
                via: via.into_iter().map(|(h, _)| h).collect(),
            }),
        })
    }

    /// `host:port` of this session.
    pub fn host(&self) -> &str {
        &self.inner.label
    }

    /// Runs a command (already shell-quoted by the caller) and collects its exit status, stdout
    /// and stderr. A non-zero status is an `Ok` output, not an error. Its stdin is empty.
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, SshError> {
        self.exec_with_input(command, tokio::io::empty(), |_| {})
            .await
    }

    /// Same, streaming `input` into the command's stdin (then EOF), with a progress callback
    /// receiving the total of bytes sent so far.
    pub async fn exec_with_input(
        &self,
        command: &str,
        input: impl AsyncRead + Unpin + Send,
        progress: impl FnMut(u64) + Send,
    ) -> Result<ExecOutput, SshError> {
        let inner = &self.inner;
        channel::exec_with_input(&inner.handle, &inner.label, command, input, progress).await
    }

    /// Opens a command as a duplex byte stream: (its stdin, its stdout). Its stderr is logged via
    /// tracing (target `datarun::remote`). Shutting the writer down, or dropping it, sends EOF.
    /// Keep reading the reader: once its buffer (4 MiB) is full the whole connection waits.
    pub async fn open_stream(
        &self,
        command: &str,
    ) -> Result<
        (
            impl AsyncWrite + Unpin + Send + 'static,
            impl AsyncRead + Unpin + Send + 'static,
        ),
        SshError,
    > {
        channel::open_stream(&self.inner.handle, &self.inner.label, command).await
    }

    /// Says goodbye to the server. Clones of this session stop working too.
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        for hop in self.inner.via.iter().rev() {
            let _ = hop
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }
}

/// Connects to one hop: over TCP, or through the previous hop's `direct-tcpip` channel;
/// checks its host key and authenticates, all within `opts.connect_timeout`.
async fn connect_hop(
    hop: &SshTarget,
    via: Option<&(client::Handle<Client>, String)>,
    opts: &SshOptions,
) -> Result<client::Handle<Client>, SshError> {
    let label = hop.label();
    let started = Instant::now();
    let deadline = started + opts.connect_timeout;
    let timed_out = |stage| SshError::TimedOut {
        host: label.clone(),
        stage,
        after: started.elapsed(),
        timeout: opts.connect_timeout,
    };
    let host = hop.host.trim_start_matches('[').trim_end_matches(']');
    let config = Arc::new(client::Config {
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    });
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client {
        host: host.to_string(),
        port: hop.port,
        label: label.clone(),
        known_hosts: KnownHosts::new(&opts.known_hosts),
        trusted: hop.trusted_known_hosts.clone(),
        policy: opts.policy,
        refusal: refusal.clone(),
    };
    let handshake = match via {
        None => {
            let socket =
                tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((host, hop.port)))
                    .await
                    .map_err(|_| timed_out("connecting (TCP)"))?
                    .map_err(|source| SshError::Unreachable {
                        host: label.clone(),
                        source,
                    })?;
            let _ = socket.set_nodelay(true);
            tokio::time::timeout_at(deadline, client::connect_stream(config, socket, handler)).await
        }
        Some((bastion, bastion_label)) => {
            let open = bastion.channel_open_direct_tcpip(host, u32::from(hop.port), "127.0.0.1", 0);
            let channel = tokio::time::timeout_at(deadline, open)
                .await
                .map_err(|_| timed_out("opening a channel through the jump host"))?
                .map_err(|e| SshError::Unreachable {
                    host: label.clone(),
                    source: std::io::Error::other(format!(
                        "the jump host {bastion_label} cannot reach it: {e}"
                    )),
                })?;
            let stream = channel.into_stream();
            tokio::time::timeout_at(deadline, client::connect_stream(config, stream, handler)).await
        }
    };
    let mut handle = match handshake {
        Err(_) => return Err(timed_out("exchanging keys (SSH handshake)")),
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let refused = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(refused.unwrap_or_else(|| SshError::Handshake {
                host: label.clone(),
                message: e.to_string(),
            }));
        }
    };
    tokio::time::timeout_at(deadline, auth::authenticate(&mut handle, hop, &label))
        .await
        .map_err(|_| timed_out("authenticating"))??;
    Ok(handle)
}

#[cfg(test)]
#[path = "ssh/resolve_tests.rs"]
mod resolve_tests;

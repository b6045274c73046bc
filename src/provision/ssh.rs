//! A small SSH client over russh: one TCP connection per host, many channels on it.
//!
//! Host keys are checked against datarun's own known_hosts file ([`super::known_hosts`]); the
//! client authenticates with one unencrypted private key (ed25519, ECDSA or RSA, RSA with
//! SHA-2 signatures only). Connecting (TCP, handshake, authentication) is bounded by
//! `connect_timeout`; a live connection sends keepalives and is dropped after three unanswered.

mod channel;
mod error;
mod identity;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

pub use channel::{ExecOutput, StreamWriter};
pub use error::SshError;

use super::known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, KnownHostsError};

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
}

impl SshTarget {
    /// `user@host:22` with this identity file.
    pub fn new(host: impl Into<String>, user: impl Into<String>, identity: PathBuf) -> Self {
        SshTarget {
            host: host.into(),
            port: 22,
            user: user.into(),
            identity_file: identity,
        }
    }

    /// The target of an inventory ssh runner: its user (default root) and identity file
    /// (default the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exists). Provisioning
    /// and the master's ssh transport both log in this way.
    pub fn for_runner(runner: &crate::inventory::RunnerSpec) -> Result<SshTarget, String> {
        let host = runner
            .host
            .clone()
            .ok_or_else(|| format!("runner {} has no address", runner.name))?;
        let identity = match runner.identity_path() {
            Some(path) => path,
            None => default_identity().ok_or_else(|| {
                format!(
                    "runner {}: no identity_file in the inventory and no ~/.ssh/id_ed25519, \
                     id_ecdsa or id_rsa",
                    runner.name
                )
            })?,
        };
        let mut target = SshTarget::new(host, runner.user.as_deref().unwrap_or("root"), identity);
        target.port = runner.port;
        Ok(target)
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

/// How to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Bound on TCP connect + handshake + authentication.
    pub connect_timeout: Duration,
    /// Interval of keepalives when the server is silent.
    pub keepalive: Duration,
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
}

impl SshOptions {
    /// The defaults (10 s connect timeout, 15 s keepalive, strict host keys) with this file.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            known_hosts: known_hosts.into(),
            policy: HostKeyPolicy::Strict,
        }
    }
}

fn default_identity() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .find(|p| p.exists())
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
        let (kh, host, port, policy) = (
            self.known_hosts.clone(),
            self.host.clone(),
            self.port,
            self.policy,
        );
        let checked = tokio::task::spawn_blocking(move || kh.check(&host, port, &key, policy))
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
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.label)
            .finish()
    }
}

impl Session {
    /// Connects, checks the host key and authenticates, all within `opts.connect_timeout`.
    pub async fn connect(target: &SshTarget, opts: &SshOptions) -> Result<Session, SshError> {
        let label = target.label();
        let key = identity::load(&target.identity_file).map_err(|reason| SshError::Identity {
            host: label.clone(),
            path: target.identity_file.clone(),
            reason,
        })?;
        let started = Instant::now();
        let deadline = started + opts.connect_timeout;
        let timed_out = |stage| SshError::TimedOut {
            host: label.clone(),
            stage,
            after: started.elapsed(),
            timeout: opts.connect_timeout,
        };

        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let socket = tokio::time::timeout_at(
            deadline,
            tokio::net::TcpStream::connect((host, target.port)),
        )
        .await
        .map_err(|_| timed_out("connecting (TCP)"))?
        .map_err(|source| SshError::Unreachable {
            host: label.clone(),
            source,
        })?;
        let _ = socket.set_nodelay(true);

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
            port: target.port,
            label: label.clone(),
            known_hosts: KnownHosts::new(&opts.known_hosts),
            policy: opts.policy,
            refusal: refusal.clone(),
        };
        let handshake = client::connect_stream(config, socket, handler);
        let mut handle = match tokio::time::timeout_at(deadline, handshake).await {
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

        let key_type = key.algorithm().as_str().to_string();
        let authenticate = async {
            let hash = if key.algorithm().is_rsa() {
                // SHA-2 only: sha-512 or sha-256 as the server announces, sha-256 otherwise.
                match handle.best_supported_rsa_hash().await {
                    Ok(Some(Some(hash))) => Some(hash),
                    _ => Some(HashAlg::Sha256),
                }
            } else {
                None
            };
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            handle.authenticate_publickey(&target.user, key).await
        };
        let auth = tokio::time::timeout_at(deadline, authenticate)
            .await
            .map_err(|_| timed_out("authenticating"))?
            .map_err(|e| SshError::Handshake {
                host: label.clone(),
                message: format!("authentication failed: {e}"),
            })?;
        if !auth.success() {
            return Err(SshError::AuthRefused {
                host: label,
                user: target.user.clone(),
                key: target.identity_file.clone(),
                key_type,
            });
        }
        tracing::debug!(host = %label, user = %target.user, "ssh connected");
        Ok(Session {
            inner: Arc::new(Inner { handle, label }),
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
    }
}

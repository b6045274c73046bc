//! The SSH client's errors. Every one names the host (`host:port`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::super::known_hosts::KnownHostsError;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection failed (refused, no route, name not resolved).
    #[error("ssh {host}: cannot connect: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: io::Error,
    },
    /// A step of the connection took longer than the connect timeout.
    #[error("ssh {host}: timed out after {:.1} s while {stage} (connect timeout {} s)",
            .after.as_secs_f32(), .timeout.as_secs_f32())]
    TimedOut {
        host: String,
        stage: &'static str,
        after: Duration,
        timeout: Duration,
    },
    /// The SSH handshake (version exchange, key exchange) failed.
    #[error("ssh {host}: SSH handshake failed: {message}")]
    Handshake { host: String, message: String },
    /// The host key is unknown, changed or revoked (the message names file and line).
    #[error("ssh {host}: {source}")]
    HostKey {
        host: String,
        #[source]
        source: KnownHostsError,
    },
    /// The host's key could not be checked (e.g. it offered a certificate).
    #[error("ssh {host}: host key refused: {message}")]
    HostKeyUnsupported { host: String, message: String },
    /// The identity file could not be used.
    #[error("ssh {host}: bad identity file {}: {reason}", .path.display())]
    Identity {
        host: String,
        path: PathBuf,
        reason: String,
    },
    /// The server refused the key for this user.
    #[error(
        "ssh {host}: authentication refused for user {user} with key {} ({key_type}); is its \
         public key ({}.pub) in ~{user}/.ssh/authorized_keys on the host?",
        .key.display(), .key.display()
    )]
    AuthRefused {
        host: String,
        user: String,
        key: PathBuf,
        key_type: String,
    },
    /// Opening or using a channel failed, or the connection was lost meanwhile.
    #[error("ssh {host}: {message}")]
    Channel { host: String, message: String },
    /// Reading the input to send to a command failed.
    #[error("ssh {host}: reading the input for `{command}` failed: {source}")]
    Input {
        host: String,
        command: String,
        #[source]
        source: io::Error,
    },
}

impl SshError {
    /// The `host:port` the error is about.
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::TimedOut { host, .. }
            | SshError::Handshake { host, .. }
            | SshError::HostKey { host, .. }
            | SshError::HostKeyUnsupported { host, .. }
            | SshError::Identity { host, .. }
            | SshError::AuthRefused { host, .. }
            | SshError::Channel { host, .. }
            | SshError::Input { host, .. } => host,
        }
    }
}

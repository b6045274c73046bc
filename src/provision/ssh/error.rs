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
    /// The server accepted none of the keys tried for this user (each named with why).
    #[error(
        "ssh {host}: authentication refused for user {user}; tried: {}. Is one of these \
         public keys in ~{user}/.ssh/authorized_keys on the host?",
        .tried.join("; ")
    )]
    AuthRefused {
        host: String,
        user: String,
        tried: Vec<String>,
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
    /// Whether the host's sshd could not be reached at all (no route, refused, timed out,
    /// the SSH handshake failed or the connection was lost), as opposed to a host that answered
    /// and refused (host key, keys) or failed a step.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::TimedOut { .. } | SshError::Handshake { .. }
        )
    }

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

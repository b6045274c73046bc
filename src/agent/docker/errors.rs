//! What the engine's errors say: its status code, its own words (or the client error with its
//! causes), and why it cannot be reached with what to do about it.

use super::DockerError;
use bollard::errors::Error as EngineError;
use std::io;

pub(super) fn status(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words when it gave any, else the client error with its causes.
pub(super) fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError {
            message,
            status_code,
        } if !message.is_empty() => {
            let _ = status_code;
            message.clone()
        }
        EngineError::DockerStreamError { error } if !error.is_empty() => error.clone(),
        EngineError::DockerContainerWaitError { error, code } if !error.is_empty() => {
            format!("{error} (exit code {code})")
        }
        other => error_chain(other),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Why the engine cannot be reached, and what to do about it.
pub(super) fn unavailable(e: &EngineError) -> DockerError {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let mut kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            kind = Some(io.kind());
        }
        source = cause.source();
    }
    let hint = match kind {
        Some(io::ErrorKind::PermissionDenied) => {
            "this user may not use the engine's socket: run the agent as root, or add its user to the `docker` group and log in again"
        }
        Some(io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            "the engine is not running: start it (`sudo systemctl start docker`), or install it (`datarun provision` does)"
        }
        _ => {
            "check that the engine runs (`sudo systemctl status docker`) and that this user may use its socket (root or the `docker` group)"
        }
    };
    DockerError::Unavailable(format!(
        "cannot reach the Docker engine at {host} ({}): {hint}",
        error_chain(e)
    ))
}

//! What `datarun`'s exit code says, one number per kind of end (README "Exit codes").

/// It worked.
pub const OK: u8 = 0;
/// What was asked ran and failed (a fold failed, was held or removed; a split failed), or the
/// master refused the request (400, 409, 413, 429, 5xx). `provision` has Ansible's codes
/// (`provision::report::exit_code`).
pub const FAILED: u8 = 1;
/// The command line is wrong (clap's usage errors; the admin token withheld from another
/// server).
pub const USAGE: u8 = 2;
/// The master has no such thing (404).
pub const NOT_FOUND: u8 = 3;
/// The token is missing, unknown, expired or revoked, or may not do this (401, 403).
pub const UNAUTHORIZED: u8 = 4;
/// The master could not be reached (connection refused, DNS, TLS).
pub const UNREACHABLE: u8 = 5;
/// A wait ran out (`--timeout`).
pub const TIMEOUT: u8 = 6;

/// An error with the exit code it ends the command with; its message is printed.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A usage error (exit 2) with its message.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

/// The exit code for an answer of the master with this HTTP status.
pub fn for_status(status: u16) -> u8 {
    match status {
        401 | 403 => UNAUTHORIZED,
        404 => NOT_FOUND,
        _ => FAILED,
    }
}

/// The exit code of an error ending a command: the code it carries, else `FAILED`.
pub fn of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Failure>().map(|f| f.code))
        .unwrap_or(FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_survive_context() {
        let all = [
            OK,
            FAILED,
            USAGE,
            NOT_FOUND,
            UNAUTHORIZED,
            UNREACHABLE,
            TIMEOUT,
        ];
        let mut seen = all.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), all.len());
        let e = anyhow::Error::new(Failure {
            code: NOT_FOUND,
            message: "no fold with id 9".into(),
        })
        .context("fold show 9");
        assert_eq!(of(&e), NOT_FOUND);
        assert_eq!(of(&anyhow::anyhow!("plain")), FAILED);
        assert_eq!(for_status(403), UNAUTHORIZED);
        assert_eq!(for_status(409), FAILED);
    }
}

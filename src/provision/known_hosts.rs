//! datarun's own known_hosts file: which host key each runner is expected to present.
//!
//! The format is OpenSSH's: one `hosts keytype base64 [comment]` line per key, `#` comments,
//! `hosts` a comma-separated list of names, `[host]:port` for ports other than 22, patterns with
//! `*` and `?`, `!` negations, and hashed names (`|1|salt|hash`, HMAC-SHA1 of the name, as
//! `ssh-keygen -H` and `HashKnownHosts yes` write them). `@revoked` lines are honoured;
//! `@cert-authority` lines are skipped (datarun checks plain host keys).
//!
//! A changed key is always refused, whatever the policy. An unknown host is refused under
//! [`HostKeyPolicy::Strict`] and recorded once under [`HostKeyPolicy::AcceptNew`]; the record is
//! made under a lock (`<file>.lock`) by writing a new file and renaming it over the old one, so
//! concurrent connections never tear or duplicate a line.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use russh::keys::{HashAlg, PublicKey};

/// What to do with a host whose key is not in the file yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse it; the error says how to accept it (`--accept-new`).
    #[default]
    Strict,
    /// Record its key once (like OpenSSH's `StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// The outcome of a successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key was already recorded at this line (1-based).
    Known { line: usize },
    /// The host was unknown and its key has just been recorded at this line.
    Recorded { line: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error(
        "host key of {host} is unknown ({key}; datarun's known hosts file is {}): run again \
         with --accept-new to record it, or add `{entry}` to that file", .file.display()
    )]
    Unknown {
        host: String,
        file: PathBuf,
        /// Type and SHA256 fingerprint of the key presented.
        key: String,
        entry: String,
    },
    #[error(
        "HOST KEY CHANGED for {host}: it now presents {key}, but {}:{line} records a different \
         {recorded_type} key. This may be a man-in-the-middle attack, or the host was \
         reinstalled: if the change is expected, delete line {line} of {} and connect again \
         with --accept-new", .file.display(), .file.display()
    )]
    Changed {
        host: String,
        file: PathBuf,
        line: usize,
        key: String,
        recorded_type: String,
    },
    #[error("host key of {host} ({key}) is marked @revoked at {}:{line}", .file.display())]
    Revoked {
        host: String,
        file: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{}:{line}: bad known_hosts line: {reason}", .file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("known hosts file {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// datarun's own known_hosts file, shared by `datarun provision` (which records keys with
/// `--accept-new`) and `datarun serve` (which only trusts recorded keys):
/// `$DATARUN_KNOWN_HOSTS`, else `$XDG_CONFIG_HOME/datarun/known_hosts`, else
/// `~/.config/datarun/known_hosts`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DATARUN_KNOWN_HOSTS") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("datarun").join("known_hosts")
}

/// The name a host is recorded under: `host` for port 22, `[host]:port` otherwise.
pub fn entry_name(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// The line recorded for a host key: `name keytype base64`.
pub fn entry_line(host: &str, port: u16, key: &PublicKey) -> String {
    format!("{} {}", entry_name(host, port), key_text(key))
}

/// `keytype base64`, without the comment.
fn key_text(key: &PublicKey) -> String {
    let text = key.to_openssh().unwrap_or_default();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A known_hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    /// Skip lines it cannot read (the operator's own files, which may hold key types datarun
    /// does not know) instead of refusing.
    lenient: bool,
}

enum Lookup {
    Known(usize),
    Revoked(usize),
    Changed { line: usize, recorded_type: String },
    Unknown,
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownHosts {
            path: path.into(),
            lenient: false,
        }
    }

    /// Checks `host:port` against this file and, when it does not know the host, against the
    /// operator's OpenSSH files `trusted` (read-only, unreadable lines skipped): a key they
    /// record is accepted, a different one refused as changed. Only a host none of them knows
    /// is left to `policy` (and recorded in this file). Blocking file IO.
    pub fn check_with(
        &self,
        trusted: &[PathBuf],
        host: &str,
        port: u16,
        key: &PublicKey,
        policy: HostKeyPolicy,
    ) -> Result<HostKeyStatus, KnownHostsError> {
        match self.check(host, port, key, HostKeyPolicy::Strict) {
            Err(KnownHostsError::Unknown { .. }) => {}
            other => return other,
        }
        for file in trusted {
            let theirs = KnownHosts {
                path: file.clone(),
                lenient: true,
            };
            match theirs.check(host, port, key, HostKeyPolicy::Strict) {
                Err(KnownHostsError::Unknown { .. }) => {}
                Ok(HostKeyStatus::Known { line }) => {
                    tracing::debug!(%host, "host key trusted by {}:{line}", file.display());
                    return Ok(HostKeyStatus::Known { line });
                }
                other => return other,
            }
        }
        self.check(host, port, key, policy)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the key `host:port` presented; records it when unknown and the policy allows.
    /// Blocking file IO (call it from `spawn_blocking` in async code).
    pub fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
        policy: HostKeyPolicy,
    ) -> Result<HostKeyStatus, KnownHostsError> {
        let name = entry_name(host, port);
        match self.lookup(&self.read()?, &name, key)? {
            Lookup::Known(line) => Ok(HostKeyStatus::Known { line }),
            Lookup::Unknown if policy == HostKeyPolicy::AcceptNew => self.record(&name, key),
            other => Err(self.refusal(&name, key, other)),
        }
    }

    fn refusal(&self, name: &str, key: &PublicKey, lookup: Lookup) -> KnownHostsError {
        let (host, file) = (name.to_string(), self.path.clone());
        let key_desc = format!("{} {}", key.algorithm().as_str(), fingerprint(key));
        match lookup {
            Lookup::Revoked(line) => KnownHostsError::Revoked {
                host,
                file,
                line,
                key: key_desc,
            },
            Lookup::Changed {
                line,
                recorded_type,
            } => KnownHostsError::Changed {
                host,
                file,
                line,
                key: key_desc,
                recorded_type,
            },
            Lookup::Known(_) | Lookup::Unknown => KnownHostsError::Unknown {
                entry: format!("{name} {}", key_text(key)),
                host,
                file,
                key: key_desc,
            },
        }
    }

    fn io(&self, source: io::Error) -> KnownHostsError {
        KnownHostsError::Io {
            file: self.path.clone(),
            source,
        }
    }

    /// The file's text; a missing file is an empty one.
    fn read(&self) -> Result<String, KnownHostsError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn lookup(&self, text: &str, name: &str, key: &PublicKey) -> Result<Lookup, KnownHostsError> {
        let mut changed: Option<(usize, String)> = None;
        let mut known = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let entry = match parse_line(raw) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(_) if self.lenient => continue,
                Err(reason) => {
                    return Err(KnownHostsError::Malformed {
                        file: self.path.clone(),
                        line,
                        reason,
                    })
                }
            };
            if !hosts_match(entry.hosts, name) {
                continue;
            }
            let same = entry.key.key_data() == key.key_data();
            match entry.marker {
                Some(Marker::Revoked) if same => return Ok(Lookup::Revoked(line)),
                Some(_) => {}
                None if same => known = known.or(Some(line)),
                None => {
                    // Prefer reporting a recorded key of the same type as the one presented.
                    let same_type = entry.key.algorithm() == key.algorithm();
                    let better = changed
                        .as_ref()
                        .is_none_or(|(_, t)| same_type && t.as_str() != key.algorithm().as_str());
                    if better {
                        changed = Some((line, entry.key.algorithm().as_str().to_string()));
                    }
                }
            }
        }
        Ok(match (known, changed) {
            (Some(line), _) => Lookup::Known(line),
            (None, Some((line, recorded_type))) => Lookup::Changed {
                line,
                recorded_type,
            },
            (None, None) => Lookup::Unknown,
        })
    }

    /// Records `name key` under the lock, unless another connection did it meanwhile.
    fn record(&self, name: &str, key: &PublicKey) -> Result<HostKeyStatus, KnownHostsError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(self.io(io::Error::last_os_error()));
        }
        let text = self.read()?;
        match self.lookup(&text, name, key)? {
            Lookup::Known(line) => return Ok(HostKeyStatus::Known { line }),
            Lookup::Unknown => {}
            other => return Err(self.refusal(name, key, other)),
        }
        let mut new = text;
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&format!("{name} {}\n", key_text(key)));
        let line = new.lines().count();
        self.replace(&new).map_err(|e| self.io(e))?;
        drop(lock);
        Ok(HostKeyStatus::Recorded { line })
    }

    /// Writes a sibling temporary file, syncs it and renames it over the file.
    fn replace(&self, text: &str) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(
            ".tmp.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            if let Ok(meta) = fs::metadata(&self.path) {
                file.set_permissions(meta.permissions())?;
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

enum Marker {
    Revoked,
    CertAuthority,
}

struct Entry<'a> {
    marker: Option<Marker>,
    hosts: &'a str,
    key: PublicKey,
}

/// One line: `Ok(None)` for blanks, comments and entries datarun cannot match (hashed names).
fn parse_line(raw: &str) -> Result<Option<Entry<'_>>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next().unwrap_or_default();
    let marker = match first {
        "@revoked" => Some(Marker::Revoked),
        "@cert-authority" => Some(Marker::CertAuthority),
        m if m.starts_with('@') => return Err(format!("unknown marker {m}")),
        _ => None,
    };
    if marker.is_some() {
        first = fields.next().ok_or("a marker without hosts")?;
    }
    let (Some(key_type), Some(base64)) = (fields.next(), fields.next()) else {
        return Err("expected `hosts keytype base64-key`".into());
    };
    for host in first.split(',') {
        if let Some(hashed) = host.strip_prefix("|1|") {
            decode_hashed(hashed).ok_or_else(|| {
                format!("bad hashed host name {host:?} (expected |1|base64-salt|base64-hash)")
            })?;
        }
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}"))
        .map_err(|e| format!("cannot read the {key_type} key: {e}"))?;
    if matches!(marker, Some(Marker::CertAuthority)) {
        return Ok(None);
    }
    Ok(Some(Entry {
        marker,
        hosts: first,
        key,
    }))
}

/// Whether the `hosts` field of a line names `name` (lowercase, `[host]:port` off port 22).
fn hosts_match(hosts: &str, name: &str) -> bool {
    let mut matched = false;
    for entry in hosts.split(',') {
        let (negated, entry) = match entry.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let hit = match entry.strip_prefix("|1|") {
            Some(hashed) => decode_hashed(hashed).is_some_and(|(salt, hash)| {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
                ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
            }),
            None => super::ssh::config::glob(&entry.to_ascii_lowercase(), name),
        };
        if hit {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// The salt and hash of a hashed name (`salt|hash` after `|1|`, both base64).
fn decode_hashed(text: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let (salt, hash) = text.split_once('|')?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (salt, hash) = (b64.decode(salt).ok()?, b64.decode(hash).ok()?);
    (hash.len() == 20).then_some((salt, hash))
}

#[cfg(test)]
#[path = "known_hosts_tests.rs"]
mod tests;

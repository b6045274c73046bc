//! The operator's OpenSSH client configuration (`~/.ssh/config`), the part datarun follows:
//! `Host` blocks (patterns with `*`, `?` and `!` negation, several per line), `HostName` (with
//! `%h`), `User`, `Port`, `IdentityFile` (with `~`, `%d`, `%u`, `%h`, `%r`; every one given is
//! tried, in order), `IdentityAgent` (a socket path, `SSH_AUTH_SOCK` or `none`),
//! `UserKnownHostsFile` (files, or `none`) and `ProxyJump` (`[user@]host[:port]`, comma-separated hops, or `none`).
//! As in OpenSSH the first value found for a host wins (so specific blocks go first) and
//! settings before the first `Host` apply to every host. `Include` is followed (`~`, paths
//! relative to `~/.ssh`, `*` and `?` in file names), its lines in the scope of the block it is
//! in. Other keywords are ignored; `Match` blocks never apply (except `Match all`). A known
//! keyword with a bad value is an error naming `file:line` of the file it is in.

use std::path::{Path, PathBuf};

/// The largest ssh config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// How deep `Include`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// The most hops of a `ProxyJump` chain, the jump hosts' own `ProxyJump`s included.
pub const MAX_JUMPS: usize = 8;

/// A problem in the ssh config file, `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", .file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file itself.
    pub line: usize,
    pub message: String,
}

/// One jump host as `ProxyJump` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// What the config says about one host (None: it says nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// `Some(None)`: `IdentityAgent none`.
    pub identity_agent: Option<Option<PathBuf>>,
    /// `Some(empty)`: `ProxyJump none`.
    pub proxy_jump: Option<Vec<Jump>>,
    /// `Some(empty)`: `UserKnownHostsFile none`.
    pub user_known_hosts: Option<Vec<PathBuf>>,
}

#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    IdentityAgent(Option<String>),
    UserKnownHosts(Vec<String>),
    ProxyJump(Vec<Jump>),
}

#[derive(Debug, Clone)]
struct Block {
    /// (negated, lowercase pattern); empty: applies to every host.
    patterns: Vec<(bool, String)>,
    /// A `Match` block: never applies.
    never: bool,
    settings: Vec<Setting>,
}

/// A parsed ssh config file.
#[derive(Debug, Clone)]
pub struct SshConfig {
    path: PathBuf,
    blocks: Vec<Block>,
}

/// The ssh config to follow when nothing else is said: `$DATARUN_SSH_CONFIG` (empty or `none`:
/// none), else `~/.ssh/config` when it exists.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DATARUN_SSH_CONFIG") {
        return (!p.is_empty() && p != "none").then(|| PathBuf::from(p));
    }
    let path = PathBuf::from(std::env::var_os("HOME")?)
        .join(".ssh")
        .join("config");
    path.exists().then_some(path)
}

impl SshConfig {
    /// Reads and parses a file (at most [`MAX_CONFIG_BYTES`]), and the files it includes.
    pub fn load(path: &Path) -> Result<SshConfig, ConfigError> {
        let text = read(path).map_err(|message| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message,
        })?;
        SshConfig::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SshConfig, ConfigError> {
        let mut blocks = vec![Block {
            patterns: Vec::new(),
            never: false,
            settings: Vec::new(),
        }];
        parse_into(text, path, &mut blocks, 0)?;
        Ok(SshConfig {
            path: path.to_path_buf(),
            blocks,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the config says about `host` (the name as given: an alias or an address).
    pub fn resolve(&self, host: &str) -> HostConfig {
        let name = host.to_ascii_lowercase();
        let mut out = HostConfig::default();
        for block in self.blocks.iter().filter(|b| b.applies(&name)) {
            for setting in &block.settings {
                match setting {
                    Setting::HostName(v) => {
                        out.host_name
                            .get_or_insert_with(|| v.replace("%h", host).replace("%%", "%"));
                    }
                    Setting::User(v) => {
                        out.user.get_or_insert_with(|| v.clone());
                    }
                    Setting::Port(p) => {
                        out.port.get_or_insert(*p);
                    }
                    Setting::IdentityFile(v) => out.identity_files.push(PathBuf::from(v)),
                    Setting::IdentityAgent(v) => {
                        out.identity_agent
                            .get_or_insert_with(|| v.as_ref().map(PathBuf::from));
                    }
                    Setting::UserKnownHosts(v) => {
                        out.user_known_hosts
                            .get_or_insert_with(|| v.iter().map(PathBuf::from).collect());
                    }
                    Setting::ProxyJump(v) => {
                        out.proxy_jump.get_or_insert_with(|| v.clone());
                    }
                }
            }
        }
        out
    }
}

/// Parses `text` (from `path`) onto `blocks`, whose last one is the current block.
fn parse_into(
    text: &str,
    path: &Path,
    blocks: &mut Vec<Block>,
    depth: usize,
) -> Result<(), ConfigError> {
    for (index, raw) in text.lines().enumerate() {
        let err = |message: String| ConfigError {
            file: path.to_path_buf(),
            line: index + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (written, rest) = split_keyword(line);
        let keyword = written.to_ascii_lowercase();
        let args = words(rest).map_err(err)?;
        let one = |what: &str| -> Result<String, ConfigError> {
            match args.as_slice() {
                [value] => Ok(value.clone()),
                [] => Err(err(format!("{written} needs {what}"))),
                _ => Err(err(format!("{written} takes one value ({what})"))),
            }
        };
        let setting = match keyword.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(err("Host needs at least one pattern".into()));
                }
                let patterns = args
                    .iter()
                    .map(|p| match p.strip_prefix('!') {
                        Some(p) => (true, p.to_ascii_lowercase()),
                        None => (false, p.to_ascii_lowercase()),
                    })
                    .collect();
                blocks.push(Block {
                    patterns,
                    never: false,
                    settings: Vec::new(),
                });
                continue;
            }
            "include" => {
                if args.is_empty() {
                    return Err(err(format!("{written} needs files")));
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(err(format!(
                        "Include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
                    )));
                }
                // Included lines are in the scope of the block the Include is in, and so are
                // the lines after it.
                let (patterns, never) = blocks
                    .last()
                    .map(|b| (b.patterns.clone(), b.never))
                    .unwrap_or_default();
                for arg in &args {
                    for file in include_files(arg) {
                        let text = read(&file)
                            .map_err(|e| err(format!("Include {}: {e}", file.display())))?;
                        blocks.push(Block {
                            patterns: patterns.clone(),
                            never,
                            settings: Vec::new(),
                        });
                        parse_into(&text, &file, blocks, depth + 1)?;
                    }
                }
                blocks.push(Block {
                    patterns,
                    never,
                    settings: Vec::new(),
                });
                continue;
            }
            "match" => {
                let all = args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                blocks.push(Block {
                    patterns: Vec::new(),
                    never: !all,
                    settings: Vec::new(),
                });
                continue;
            }
            "hostname" => Setting::HostName(one("a host name")?),
            "user" => Setting::User(one("a user name")?),
            "port" => {
                let value = one("a port number")?;
                Setting::Port(parse_port(&value).map_err(err)?)
            }
            "identityfile" => Setting::IdentityFile(one("a file")?),
            "identityagent" => {
                let value = one("a socket path, SSH_AUTH_SOCK or none")?;
                Setting::IdentityAgent((!value.eq_ignore_ascii_case("none")).then_some(value))
            }
            "userknownhostsfile" => {
                if args.is_empty() {
                    return Err(err(format!("{written} needs files or none")));
                }
                let none = args.len() == 1 && args[0].eq_ignore_ascii_case("none");
                Setting::UserKnownHosts(if none { Vec::new() } else { args.clone() })
            }
            "proxyjump" => {
                Setting::ProxyJump(parse_jumps(&one("[user@]host[:port],...")?).map_err(err)?)
            }
            _ => continue,
        };
        if let Some(block) = blocks.last_mut() {
            block.settings.push(setting);
        }
    }
    Ok(())
}

/// A config file's text, at most [`MAX_CONFIG_BYTES`]; the error is the reason.
fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_CONFIG_BYTES} an ssh config may have",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))
}

/// The files an `Include` argument names: `~/` expanded, relative to `~/.ssh`, `*` and `?`
/// in the file name matched (sorted); none when nothing matches, as OpenSSH.
fn include_files(arg: &str) -> Vec<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let path = match arg.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if Path::new(arg).is_absolute() => PathBuf::from(arg),
        None => home.join(".ssh").join(arg),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| glob(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

impl Block {
    fn applies(&self, name: &str) -> bool {
        if self.never {
            return false;
        }
        if self.patterns.is_empty() {
            return true;
        }
        let mut matched = false;
        for (negated, pattern) in &self.patterns {
            if glob(pattern, name) {
                if *negated {
                    return false;
                }
                matched = true;
            }
        }
        matched
    }
}

/// `keyword value` or `keyword=value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    (keyword, rest.trim())
}

/// Arguments split on whitespace, `"double quoted"` ones kept whole.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => word.push(c),
                    None => return Err("unbalanced double quote".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    Ok(out)
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("bad port {text:?} (expected 1-65535)")),
    }
}

/// `ProxyJump` hops: `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma-separated;
/// `none` is no hop.
pub fn parse_jumps(text: &str) -> Result<Vec<Jump>, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',').map(|hop| parse_jump(hop.trim())).collect()
}

fn parse_jump(text: &str) -> Result<Jump, String> {
    let bad =
        |why: &str| format!("bad ProxyJump hop {text:?}: {why} (expected [user@]host[:port])");
    let spec = text.strip_prefix("ssh://").unwrap_or(text);
    let (user, hostport) = match spec.rsplit_once('@') {
        Some((u, rest)) if !u.is_empty() => (Some(u.to_string()), rest),
        Some(_) => return Err(bad("empty user")),
        None => (None, spec),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (hostport, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad("no host"));
    }
    let port = port.map(parse_port).transpose().map_err(|e| bad(&e))?;
    Ok(Jump {
        user,
        host: host.to_string(),
        port,
    })
}

/// OpenSSH's patterns: `*` any run of characters, `?` one character (lowercase both sides).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(&'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `~/` and the `%d` (home), `%u` (local user), `%h` (host), `%r` (remote user) tokens of an
/// `IdentityFile`.
pub fn expand_path(path: &Path, host: &str, user: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let text = path.to_string_lossy();
    let text = match text.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None if text == "~" => home.clone(),
        None => text.into_owned(),
    };
    let local = std::env::var("USER").unwrap_or_default();
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home),
            Some('u') => out.push_str(&local),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(user),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    PathBuf::from(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

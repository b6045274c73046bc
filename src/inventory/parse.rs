//! From TOML text to an [`Inventory`]: walk the located tree, check every key, apply
//! `[defaults]`, expand CIDR pools, and report the first problem with its file, line and key.

mod exprs;

use super::tree::{self, Entry, Item, Node};
use super::{ExecutorKind, Inventory, InventoryError, QueueSpec, RunnerSpec, Transport};
use super::{DEFAULT_SSH_PORT, MAX_CIDR_HOSTS, MAX_SLOTS};
use crate::model::{valid_image, valid_name};
use crate::scheduler::AttrValue;
use crate::units::{format_duration, parse_duration, parse_size};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

const TOP_KEYS: &[&str] = &["defaults", "queues", "runner"];
const RUNNER_KEYS: &[&str] = &[
    "name",
    "address",
    "transport",
    "user",
    "identity_file",
    "port",
    "state_dir",
    "install_docker",
    "slots",
    "queues",
    "cpus",
    "memory",
    "gpus",
    "labels",
    "images",
    "soft_time_limit",
    "hard_time_limit",
    "executor",
    "requirements",
    "attributes",
];
const QUEUE_KEYS: &[&str] = &["priority"];

type Result<T> = std::result::Result<T, InventoryError>;

/// The text being parsed, to turn spans into lines and build errors.
struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: &Option<Range<usize>>, fallback: usize) -> usize {
        span.as_ref()
            .map_or(fallback, |s| tree::line_of(self.text, s.start))
    }

    fn err(&self, line: usize, key: &str, message: impl Into<String>) -> InventoryError {
        InventoryError {
            file: self.file.to_string(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn type_err(&self, line: usize, key: &str, expected: &str, item: &Item) -> InventoryError {
        self.err(
            line,
            key,
            format!("expected {expected}, found {}", item.node.kind()),
        )
    }

    fn syntax(&self, e: &toml::de::Error) -> InventoryError {
        let line = e.span().map_or(1, |s| tree::line_of(self.text, s.start));
        let message = e
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        self.err(line, "syntax", format!("not valid TOML: {message}"))
    }

    fn unknown(
        &self,
        line: usize,
        key: &str,
        name: &str,
        known: &[&str],
        what: &str,
    ) -> InventoryError {
        let hint = match suggest(name, known) {
            Some(s) => format!("did you mean {s:?}?"),
            None => format!("{what} takes: {}", known.join(", ")),
        };
        self.err(line, key, format!("unknown key {name:?}; {hint}"))
    }

    fn string<'i>(&self, item: &'i Item, line: usize, key: &str) -> Result<&'i str> {
        match &item.node {
            Node::Str(s) => Ok(s),
            _ => Err(self.type_err(line, key, "a string", item)),
        }
    }

    /// A list of distinct names (queues, gpus, labels); `"*"` only where `star` allows it.
    fn names(
        &self,
        item: &Item,
        line: usize,
        key: &str,
        what: &str,
        star: bool,
    ) -> Result<Vec<String>> {
        let Node::Array(elems) = &item.node else {
            return Err(self.type_err(
                line,
                key,
                &format!("a list of {what}, e.g. [\"a\", \"b\"]"),
                item,
            ));
        };
        let mut out: Vec<String> = Vec::with_capacity(elems.len());
        for el in elems {
            let el_line = self.line(&el.span, line);
            let s = match &el.node {
                Node::Str(s) => s,
                Node::Int(n) => {
                    return Err(self.err(
                        el_line,
                        key,
                        format!("{what} are strings: write \"{n}\" instead of {n}"),
                    ))
                }
                _ => {
                    return Err(self.err(
                        el_line,
                        key,
                        format!(
                            "expected a list of {what} (strings), found {} in it",
                            el.node.kind()
                        ),
                    ))
                }
            };
            let valid = if what == "images" {
                valid_image(s)
            } else {
                valid_name(s)
            };
            if what == "images" && !(valid || (star && s == "*")) {
                return Err(self.err(
                    el_line,
                    key,
                    format!("{s:?} is not a valid image reference (e.g. \"datarun/fold-python:0.1\"), or \"*\" for any image"),
                ));
            }
            if !(valid || (star && s == "*")) {
                let also = if star {
                    ", or \"*\" for every queue"
                } else {
                    ""
                };
                return Err(self.err(
                    el_line,
                    key,
                    format!(
                        "{s:?} is not a valid name (1-64 letters, digits, '-', '_', '.'{also})"
                    ),
                ));
            }
            if out.iter().any(|o| o == s) {
                return Err(self.err(el_line, key, format!("{s:?} is listed twice")));
            }
            out.push(s.clone());
        }
        Ok(out)
    }

    fn integer(&self, item: &Item, line: usize, key: &str) -> Result<i64> {
        match item.node {
            Node::Int(n) => Ok(n),
            _ => Err(self.type_err(line, key, "an integer", item)),
        }
    }

    fn duration_ms(&self, item: &Item, line: usize, key: &str) -> Result<u64> {
        let ms = match &item.node {
            Node::Int(n) if *n >= 0 => n.checked_mul(1000).map(|ms| ms as u64),
            Node::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e15 => {
                Some((f * 1000.0).round() as u64)
            }
            Node::Int(_) | Node::Float(_) => {
                return Err(self.err(line, key, "must be a positive number of seconds"))
            }
            Node::Str(s) => Some(
                parse_duration(s)
                    .map_err(|m| self.err(line, key, m))?
                    .as_millis()
                    .min(u64::MAX as u128) as u64,
            ),
            _ => {
                return Err(self.type_err(
                    line,
                    key,
                    "a duration such as \"5m\" or \"300s\", or a number of seconds",
                    item,
                ))
            }
        };
        match ms {
            None => Err(self.err(line, key, "duration is too large")),
            Some(0) => Err(self.err(line, key, "must be longer than zero")),
            Some(ms) => Ok(ms),
        }
    }

    fn size(&self, item: &Item, line: usize, key: &str) -> Result<u64> {
        let bytes = match &item.node {
            Node::Int(n) if *n >= 0 => *n as u64,
            Node::Int(n) => {
                return Err(self.err(line, key, format!("bad size {n}: must not be negative")))
            }
            Node::Str(s) => parse_size(s).map_err(|m| self.err(line, key, m))?,
            _ => {
                return Err(self.type_err(
                    line,
                    key,
                    "a size such as \"16G\" or a number of bytes",
                    item,
                ))
            }
        };
        if bytes == 0 {
            return Err(self.err(line, key, "must be larger than zero"));
        }
        Ok(bytes)
    }
}

/// The closest known key, for typos such as `slot` or `[[runners]]`.
fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// A value and the line it was written on.
#[derive(Clone, Debug)]
struct At<T> {
    v: T,
    line: usize,
    /// Inherited from `[defaults]` rather than written in the runner.
    inherited: bool,
}

impl<T> At<T> {
    fn of(line: usize, inherited: bool, v: T) -> At<T> {
        At { v, line, inherited }
    }
}

/// The keys a runner shares with `[defaults]`, as written.
#[derive(Clone, Debug, Default)]
struct Fields {
    transport: Option<At<Transport>>,
    user: Option<At<String>>,
    identity_file: Option<At<String>>,
    port: Option<At<u16>>,
    state_dir: Option<At<String>>,
    install_docker: Option<At<bool>>,
    slots: Option<At<u32>>,
    queues: Option<At<Vec<String>>>,
    cpus: Option<At<f64>>,
    memory: Option<At<u64>>,
    gpus: Option<At<Vec<String>>>,
    labels: Option<At<Vec<String>>>,
    images: Option<At<Vec<String>>>,
    soft: Option<At<u64>>,
    hard: Option<At<u64>>,
    executor: Option<At<ExecutorKind>>,
    requirements: Option<At<String>>,
    attributes: Option<At<BTreeMap<String, AttrValue>>>,
}

impl Fields {
    /// Fills every key the runner left out from `[defaults]`.
    fn or_defaults(self, d: &Fields) -> Fields {
        Fields {
            transport: self.transport.or_else(|| d.transport.clone()),
            user: self.user.or_else(|| d.user.clone()),
            identity_file: self.identity_file.or_else(|| d.identity_file.clone()),
            port: self.port.or_else(|| d.port.clone()),
            state_dir: self.state_dir.or_else(|| d.state_dir.clone()),
            install_docker: self.install_docker.or_else(|| d.install_docker.clone()),
            slots: self.slots.or_else(|| d.slots.clone()),
            queues: self.queues.or_else(|| d.queues.clone()),
            cpus: self.cpus.or_else(|| d.cpus.clone()),
            memory: self.memory.or_else(|| d.memory.clone()),
            gpus: self.gpus.or_else(|| d.gpus.clone()),
            labels: self.labels.or_else(|| d.labels.clone()),
            images: self.images.or_else(|| d.images.clone()),
            soft: self.soft.or_else(|| d.soft.clone()),
            hard: self.hard.or_else(|| d.hard.clone()),
            executor: self.executor.or_else(|| d.executor.clone()),
            requirements: self.requirements.or_else(|| d.requirements.clone()),
            attributes: self.attributes.or_else(|| d.attributes.clone()),
        }
    }
}

/// A `[[runner]]` or `[defaults]` table, checked key by key.
struct Table {
    fields: Fields,
    name: Option<At<String>>,
    address: Option<At<String>>,
}

fn parse_table(ctx: &Ctx, section: &str, entries: &[Entry], table_line: usize) -> Result<Table> {
    let defaults = section == "defaults";
    let mut t = Table {
        fields: Fields::default(),
        name: None,
        address: None,
    };
    for e in entries {
        let line = ctx.line(&e.key_span, ctx.line(&e.value.span, table_line));
        let key = format!("{section}.{}", e.key);
        let key = key.as_str();
        let v = &e.value;
        let f = &mut t.fields;
        match e.key.as_str() {
            "name" | "address" if defaults => {
                return Err(ctx.err(
                    line,
                    key,
                    format!(
                        "cannot be set in [defaults]: every runner has its own {}",
                        e.key
                    ),
                ))
            }
            "name" => {
                let name = ctx.string(v, line, key)?;
                if !valid_name(name) {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("{name:?} is not a valid runner name (1-64 letters, digits, '-', '_', '.')"),
                    ));
                }
                t.name = Some(At::of(line, defaults, name.to_string()));
            }
            "address" => {
                t.address = Some(At::of(
                    line,
                    defaults,
                    ctx.string(v, line, key)?.to_string(),
                ))
            }
            "transport" => {
                f.transport = Some(At::of(
                    line,
                    defaults,
                    match ctx.string(v, line, key)? {
                        "local" => Transport::Local,
                        "ssh" => Transport::Ssh,
                        other => {
                            return Err(ctx.err(
                                line,
                                key,
                                format!("expected \"local\" or \"ssh\", found {other:?}"),
                            ))
                        }
                    },
                ))
            }
            "executor" => {
                f.executor = Some(At::of(
                    line,
                    defaults,
                    match ctx.string(v, line, key)? {
                        "process" => ExecutorKind::Process,
                        "docker" => ExecutorKind::Docker,
                        other => {
                            return Err(ctx.err(
                                line,
                                key,
                                format!("expected \"docker\" or \"process\", found {other:?}"),
                            ))
                        }
                    },
                ))
            }
            "user" => {
                let user = ctx.string(v, line, key)?;
                if !valid_name(user) || user.starts_with('-') {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("{user:?} is not a valid user name (letters, digits, '-', '_', '.'; not starting with '-')"),
                    ));
                }
                f.user = Some(At::of(line, defaults, user.to_string()));
            }
            "identity_file" => {
                let path = ctx.string(v, line, key)?;
                if path.trim().is_empty() || path.chars().any(char::is_control) {
                    return Err(ctx.err(line, key, format!("{path:?} is not a usable file path")));
                }
                f.identity_file = Some(At::of(line, defaults, path.to_string()));
            }
            "state_dir" => {
                let path = ctx.string(v, line, key)?;
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_control())
                    || path.split('/').any(|part| part == "..")
                {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("{path:?} must be an absolute path without \"..\", e.g. \"/var/lib/datarun\""),
                    ));
                }
                f.state_dir = Some(At::of(
                    line,
                    defaults,
                    path.trim_end_matches('/').to_string(),
                ));
            }
            "install_docker" => {
                let Node::Bool(b) = v.node else {
                    return Err(ctx.type_err(line, key, "true or false", v));
                };
                f.install_docker = Some(At::of(line, defaults, b));
            }
            "port" => {
                let n = ctx.integer(v, line, key)?;
                let port = u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
                    ctx.err(line, key, format!("must be between 1 and 65535, found {n}"))
                })?;
                f.port = Some(At::of(line, defaults, port));
            }
            "slots" => {
                let n = ctx.integer(v, line, key)?;
                if !(1..=i64::from(MAX_SLOTS)).contains(&n) {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("must be between 1 and {MAX_SLOTS}, found {n}"),
                    ));
                }
                f.slots = Some(At::of(line, defaults, n as u32));
            }
            "queues" => {
                let queues = ctx.names(v, line, key, "queue names", true)?;
                if queues.is_empty() {
                    return Err(ctx.err(
                        line,
                        key,
                        "must list at least one queue (use [\"*\"] for every queue)",
                    ));
                }
                if queues.len() > 1 && queues.iter().any(|q| q == "*") {
                    return Err(ctx.err(
                        line,
                        key,
                        "\"*\" already serves every queue; list it alone",
                    ));
                }
                f.queues = Some(At::of(line, defaults, queues));
            }
            "cpus" => {
                let cpus = match v.node {
                    Node::Int(n) => n as f64,
                    Node::Float(x) => x,
                    _ => return Err(ctx.type_err(line, key, "a number of cpus", v)),
                };
                if !(cpus.is_finite() && cpus > 0.0) {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("must be larger than zero, found {cpus}"),
                    ));
                }
                f.cpus = Some(At::of(line, defaults, cpus));
            }
            "memory" => f.memory = Some(At::of(line, defaults, ctx.size(v, line, key)?)),
            "gpus" => {
                f.gpus = Some(At::of(
                    line,
                    defaults,
                    ctx.names(v, line, key, "gpu ids", false)?,
                ))
            }
            "labels" => {
                f.labels = Some(At::of(
                    line,
                    defaults,
                    ctx.names(v, line, key, "labels", false)?,
                ))
            }
            "images" => {
                f.images = Some(At::of(
                    line,
                    defaults,
                    ctx.names(v, line, key, "images", true)?,
                ))
            }
            "soft_time_limit" => {
                f.soft = Some(At::of(line, defaults, ctx.duration_ms(v, line, key)?))
            }
            "hard_time_limit" => {
                f.hard = Some(At::of(line, defaults, ctx.duration_ms(v, line, key)?))
            }
            "requirements" => {
                f.requirements = Some(At::of(line, defaults, ctx.requirements(v, line, key)?))
            }
            "attributes" => {
                f.attributes = Some(At::of(line, defaults, ctx.attributes(v, line, key)?))
            }
            other => {
                let (known, what) = if defaults {
                    (&RUNNER_KEYS[2..], "[defaults]")
                } else {
                    (RUNNER_KEYS, "a [[runner]]")
                };
                return Err(ctx.unknown(line, key, other, known, what));
            }
        }
    }
    Ok(t)
}

fn parse_queues(ctx: &Ctx, entry: &Entry, line: usize) -> Result<BTreeMap<String, QueueSpec>> {
    let Node::Table(queues) = &entry.value.node else {
        return Err(ctx.type_err(
            line,
            "queues",
            "a table of queues such as [queues.H] with priority = 10",
            &entry.value,
        ));
    };
    let mut out = BTreeMap::new();
    for q in queues {
        let qline = ctx.line(&q.key_span, ctx.line(&q.value.span, line));
        let key = format!("queues.{}", q.key);
        if !valid_name(&q.key) {
            return Err(ctx.err(
                qline,
                &key,
                format!(
                    "{:?} is not a valid queue name (1-64 letters, digits, '-', '_', '.')",
                    q.key
                ),
            ));
        }
        let Node::Table(fields) = &q.value.node else {
            return Err(ctx.type_err(
                qline,
                &key,
                &format!("a table such as [queues.{}] with priority = 10", q.key),
                &q.value,
            ));
        };
        let mut spec = QueueSpec { priority: 0 };
        for f in fields {
            let fline = ctx.line(&f.key_span, qline);
            let fkey = format!("{key}.{}", f.key);
            match f.key.as_str() {
                "priority" => spec.priority = ctx.integer(&f.value, fline, &fkey)?,
                other => return Err(ctx.unknown(fline, &fkey, other, QUEUE_KEYS, "a queue")),
            }
        }
        out.insert(q.key.clone(), spec);
    }
    Ok(out)
}

/// What an `address` says.
#[derive(Debug, PartialEq)]
pub(super) enum Address {
    /// One host (name, IPv4 or IPv6 without brackets), with the port if one was given.
    Host { host: String, port: Option<u16> },
    /// A pool: one runner per usable host address.
    Cidr(IpNet),
}

pub(super) fn parse_address(s: &str) -> std::result::Result<Address, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} must not contain spaces"));
    }
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a valid CIDR (expected e.g. \"10.1.0.0/29\" or \"fd00::/125\"; \
                 a pool's ssh port is set with the port key)"
            )
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "{s:?} has host bits set; did you mean \"{}\"?",
                net.trunc()
            ));
        }
        return Ok(Address::Cidr(net));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| {
            format!("{s:?} is missing the closing ']' (expected \"[IPv6]:port\")")
        })?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("{inner:?} is not a valid IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => {
                let p = after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: expected \":port\" after ']'"))?;
                Some(parse_port(p)?)
            }
        };
        return Ok(Address::Host {
            host: ip.to_string(),
            port,
        });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Address::Host {
            host: ip.to_string(),
            port: None,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => {
            return Err(format!(
            "{s:?} is not a valid address; an IPv6 address with a port is written \"[addr]:port\""
        ))
        }
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Address::Host {
            host: ip.to_string(),
            port,
        });
    }
    check_hostname(host)?;
    Ok(Address::Host {
        host: host.to_string(),
        port,
    })
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("port {p:?} must be a number between 1 and 65535"))
}

fn check_hostname(host: &str) -> std::result::Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "{host:?} is not a valid host name (letters, digits and '-' in dot-separated labels)"
        ));
    }
    Ok(())
}

/// How many runners a pool expands to: IPv4 leaves out the network and broadcast addresses
/// (except in /31 and /32), IPv6 leaves out the subnet-router anycast address (all host bits
/// zero) except in /127 and /128.
pub(super) fn cidr_size(net: &IpNet) -> u128 {
    let (bits, reserved) = match net {
        IpNet::V4(n) => {
            let bits = 32 - u32::from(n.prefix_len());
            (bits, if bits >= 2 { 2 } else { 0 })
        }
        IpNet::V6(n) => {
            let bits = 128 - u32::from(n.prefix_len());
            (bits, if bits >= 2 { 1 } else { 0 })
        }
    };
    if bits >= 128 {
        return u128::MAX;
    }
    (1u128 << bits) - reserved
}

fn cidr_hosts(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => n.hosts().map(IpAddr::V4).collect(),
        IpNet::V6(n) => {
            let skip = usize::from(n.prefix_len() < 127);
            n.hosts().skip(skip).map(IpAddr::V6).collect()
        }
    }
}

fn describe_ms(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

fn origin(at: &At<u64>) -> String {
    if at.inherited {
        format!(" (from [defaults], line {})", at.line)
    } else {
        String::new()
    }
}

/// Where a runner name came from, to explain duplicates.
struct Seen {
    line: usize,
    note: String,
}

pub(super) fn parse(text: &str, file: &str) -> Result<Inventory> {
    let ctx = Ctx { text, file };
    let root = tree::parse_document(text).map_err(|e| ctx.syntax(&e))?;
    let Node::Table(top) = &root.node else {
        return Err(ctx.err(1, "syntax", "expected a TOML document"));
    };

    let mut defaults = Fields::default();
    let mut queues = BTreeMap::new();
    let mut runner_items: Vec<(&Item, usize)> = Vec::new();
    let mut runner_key_line = None;
    // Check the top level first so that a misspelt section is reported before its contents.
    for e in top {
        let line = ctx.line(&e.key_span, ctx.line(&e.value.span, 1));
        if !TOP_KEYS.contains(&e.key.as_str()) {
            let hint = match suggest(&e.key, TOP_KEYS) {
                Some("runner") => "did you mean [[runner]]?".to_string(),
                Some(s) => format!("did you mean [{s}]?"),
                None => "the file has [defaults], [queues.NAME] and [[runner]] tables".to_string(),
            };
            return Err(ctx.err(line, &e.key, format!("unknown key {:?}; {hint}", e.key)));
        }
    }
    for e in top {
        let line = ctx.line(&e.key_span, ctx.line(&e.value.span, 1));
        match e.key.as_str() {
            "defaults" => {
                let Node::Table(entries) = &e.value.node else {
                    return Err(ctx.type_err(line, "defaults", "a [defaults] table", &e.value));
                };
                let table_line = ctx.line(&e.value.span, line);
                defaults = parse_table(&ctx, "defaults", entries, table_line)?.fields;
            }
            "queues" => queues = parse_queues(&ctx, e, line)?,
            _ => {
                runner_key_line = Some(line);
                let Node::Array(items) = &e.value.node else {
                    return Err(ctx.err(
                        line,
                        "runner",
                        format!(
                            "expected [[runner]] tables (an array), found {}; write [[runner]], not [runner]",
                            e.value.node.kind()
                        ),
                    ));
                };
                runner_items.extend(items.iter().map(|i| (i, line)));
            }
        }
    }
    if runner_items.is_empty() {
        let line = runner_key_line.unwrap_or(1);
        return Err(ctx.err(
            line,
            "runner",
            "no runners: add at least one [[runner]] table with a name",
        ));
    }

    let mut runners: Vec<RunnerSpec> = Vec::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut add = |r: RunnerSpec, name_line: usize, note: String| -> Result<()> {
        if let Some(prev) = seen.get(&r.name) {
            return Err(ctx.err(
                name_line,
                "runner.name",
                format!(
                    "duplicate runner name {:?}{note}: the runner at line {} is already called that{}",
                    r.name, prev.line, prev.note
                ),
            ));
        }
        seen.insert(r.name.clone(), Seen { line: r.line, note });
        runners.push(r);
        Ok(())
    };

    for (item, fallback) in runner_items {
        let rline = ctx.line(&item.span, fallback);
        let Node::Table(entries) = &item.node else {
            return Err(ctx.type_err(rline, "runner", "a [[runner]] table", item));
        };
        let t = parse_table(&ctx, "runner", entries, rline)?;
        let name = t.name.ok_or_else(|| {
            ctx.err(
                rline,
                "runner.name",
                "missing: every [[runner]] needs a name, e.g. name = \"gpu-box\"",
            )
        })?;
        let own = t.fields.clone();
        let f = t.fields.or_defaults(&defaults);

        if let (Some(soft), Some(hard)) = (&f.soft, &f.hard) {
            if soft.v > hard.v {
                return Err(ctx.err(
                    rline,
                    "runner.soft_time_limit",
                    format!(
                        "runner {:?}: soft_time_limit {}{} is longer than hard_time_limit {}{}; \
                         the soft limit (SIGTERM) must not come after the hard one (SIGKILL)",
                        name.v,
                        describe_ms(soft.v),
                        origin(soft),
                        describe_ms(hard.v),
                        origin(hard)
                    ),
                ));
            }
        }

        let transport = f.transport.as_ref().map_or(Transport::Ssh, |t| t.v);
        let base = RunnerSpec {
            name: name.v.clone(),
            host: None,
            port: 0,
            transport,
            user: None,
            identity_file: None,
            state_dir: None,
            install_docker: false,
            slots: f.slots.as_ref().map_or(1, |s| s.v),
            queues: f
                .queues
                .as_ref()
                .map_or_else(|| vec!["default".to_string()], |q| q.v.clone()),
            cpus: f.cpus.as_ref().map(|c| c.v),
            memory: f.memory.as_ref().map(|m| m.v),
            gpus: f.gpus.as_ref().map_or_else(Vec::new, |g| g.v.clone()),
            labels: f.labels.as_ref().map_or_else(Vec::new, |l| l.v.clone()),
            images: f.images.as_ref().map_or_else(Vec::new, |l| l.v.clone()),
            soft_time_limit_ms: f.soft.as_ref().map(|s| s.v),
            hard_time_limit_ms: f.hard.as_ref().map(|h| h.v),
            executor: f.executor.as_ref().map_or(ExecutorKind::Docker, |e| e.v),
            requirements: f.requirements.as_ref().map(|r| r.v.clone()),
            attributes: f
                .attributes
                .as_ref()
                .map_or_else(BTreeMap::new, |a| a.v.clone()),
            line: rline,
        };
        if let (ExecutorKind::Process, Some(images)) = (base.executor, &f.images) {
            return Err(ctx.err(
                images.line,
                "runner.images",
                "only docker runners run images; this runner's executor is \"process\"".to_string(),
            ));
        }

        match transport {
            Transport::Local => {
                if let Some(a) = &t.address {
                    return Err(ctx.err(
                        a.line,
                        "runner.address",
                        format!(
                            "runner {:?} has transport = \"local\", which takes no address; \
                             remove it or use transport = \"ssh\"",
                            name.v
                        ),
                    ));
                }
                // Written in the runner itself, ssh-only keys are a mistake; inherited from
                // [defaults] (meant for the ssh runners) they are simply not used.
                let ssh_only = [
                    ("user", own.user.as_ref().map(|a| a.line)),
                    ("identity_file", own.identity_file.as_ref().map(|a| a.line)),
                    ("port", own.port.as_ref().map(|a| a.line)),
                    ("state_dir", own.state_dir.as_ref().map(|a| a.line)),
                    (
                        "install_docker",
                        own.install_docker.as_ref().map(|a| a.line),
                    ),
                ];
                if let Some((key, Some(line))) = ssh_only.into_iter().find(|(_, l)| l.is_some()) {
                    return Err(ctx.err(
                        line,
                        &format!("runner.{key}"),
                        format!(
                            "only ssh runners have a {key}; runner {:?} has transport = \"local\"",
                            name.v
                        ),
                    ));
                }
                add(base, name.line, String::new())?;
            }
            Transport::Ssh => {
                let address = t.address.ok_or_else(|| {
                    ctx.err(
                        rline,
                        "runner.address",
                        format!(
                            "missing: ssh runner {:?} needs an address (host, host:port, \
                             [IPv6]:port or a CIDR such as \"10.0.0.0/29\"); \
                             for this machine use transport = \"local\"",
                            name.v
                        ),
                    )
                })?;
                let parsed = parse_address(&address.v)
                    .map_err(|m| ctx.err(address.line, "runner.address", m))?;
                let base = RunnerSpec {
                    user: f.user.as_ref().map(|u| u.v.clone()),
                    identity_file: f.identity_file.as_ref().map(|i| PathBuf::from(&i.v)),
                    port: f.port.as_ref().map_or(DEFAULT_SSH_PORT, |p| p.v),
                    state_dir: f.state_dir.as_ref().map(|d| PathBuf::from(&d.v)),
                    install_docker: f.install_docker.as_ref().is_some_and(|b| b.v),
                    ..base
                };
                match parsed {
                    Address::Host { host, port } => {
                        if let (Some(p), Some(key)) = (port, &own.port) {
                            return Err(ctx.err(
                                key.line,
                                "runner.port",
                                format!(
                                    "the address {:?} already gives port {p}; keep only one",
                                    address.v
                                ),
                            ));
                        }
                        let spec = RunnerSpec {
                            host: Some(host),
                            port: port.unwrap_or(base.port),
                            ..base
                        };
                        add(spec, name.line, String::new())?;
                    }
                    Address::Cidr(net) => {
                        let count = cidr_size(&net);
                        if count > MAX_CIDR_HOSTS {
                            let count = if count == u128::MAX {
                                "2^128".to_string()
                            } else {
                                count.to_string()
                            };
                            return Err(ctx.err(
                                address.line,
                                "runner.address",
                                format!(
                                    "{net} would expand to {count} runners, more than the limit of \
                                     {MAX_CIDR_HOSTS} per [[runner]]; use a longer prefix or several pools"
                                ),
                            ));
                        }
                        for (i, ip) in cidr_hosts(&net).into_iter().enumerate() {
                            let expanded = format!("{}-{}", name.v, i + 1);
                            if !valid_name(&expanded) {
                                return Err(ctx.err(
                                    name.line,
                                    "runner.name",
                                    format!(
                                        "{expanded:?}, the name of a runner in pool {net}, is longer \
                                         than 64 characters; shorten the name"
                                    ),
                                ));
                            }
                            let spec = RunnerSpec {
                                name: expanded,
                                host: Some(ip.to_string()),
                                ..base.clone()
                            };
                            let note = format!(" (from {:?} = {net})", name.v);
                            add(spec, name.line, note)?;
                        }
                    }
                }
            }
        }
    }

    Ok(Inventory {
        runners,
        queues,
        source: None,
    })
}

//! From TOML text to an [`Inventory`]: walk the located tree, check every key, apply
//! `[defaults]`, expand CIDR pools, and report the first problem with its file, line and key.

mod address;
mod exprs;
mod fields;
mod values;
mod warm;

use self::address::cidr_hosts;
pub(super) use self::address::{cidr_size, parse_address, Address};
use self::fields::{parse_table, At, Fields};
use super::tree::{self, Entry, Item, Node};
use super::{ExecutorKind, Inventory, InventoryError, QueueSpec, RunnerSpec, Transport};
use super::{DEFAULT_SSH_PORT, MAX_CIDR_HOSTS};
use crate::model::valid_name;
use crate::units::format_duration;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

const TOP_KEYS: &[&str] = &["defaults", "queues", "runner"];
const QUEUE_KEYS: &[&str] = &["priority"];

type Result<T> = std::result::Result<T, InventoryError>;

/// The text being parsed, to turn spans into lines and build errors.
struct Ctx<'a> {
    lines: tree::Lines,
    file: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: &Option<Range<usize>>, fallback: usize) -> usize {
        span.as_ref()
            .map_or(fallback, |s| self.lines.line_of(s.start))
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
        let line = e.span().map_or(1, |s| self.lines.line_of(s.start));
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
    let ctx = Ctx {
        lines: tree::Lines::new(text),
        file,
    };
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
        if let (Some(count), false) = (&t.count, transport == Transport::Simulated) {
            return Err(ctx.err(
                count.line,
                "runner.count",
                format!(
                    "only simulated runners have a count; runner {:?} is not transport = \"simulated\"",
                    name.v
                ),
            ));
        }
        let base = RunnerSpec {
            name: name.v.clone(),
            host: None,
            port: 0,
            transport,
            user: None,
            identity_file: None,
            state_dir: None,
            socket: None,
            install_docker: false,
            slots: f.slots.as_ref().map_or(1, |s| s.v),
            prefetch: f.prefetch.as_ref().map_or(0, |p| p.v),
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
            executor: f.executor.as_ref().map_or(
                if transport == Transport::Simulated {
                    ExecutorKind::Process
                } else {
                    ExecutorKind::Docker
                },
                |e| e.v,
            ),
            requirements: f.requirements.as_ref().map(|r| r.v.clone()),
            warm: f.warm.as_ref().map(|w| w.v.clone()),
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

        if let Some(warm) = &f.warm {
            if base.executor != ExecutorKind::Docker {
                return Err(ctx.err(
                    warm.line,
                    "runner.warm",
                    format!(
                        "only docker runners keep warm containers; runner {:?}'s executor is \"process\"",
                        name.v
                    ),
                ));
            }
            let allowed = base.images.iter().any(|i| *i == warm.v.image || i == "*");
            if !allowed {
                return Err(ctx.err(
                    warm.line,
                    "runner.warm.image",
                    format!(
                        "{:?} is not among runner {:?}'s images ({}): a warm container runs an image the runner allows",
                        warm.v.image,
                        name.v,
                        if base.images.is_empty() { "none".to_string() } else { base.images.join(", ") }
                    ),
                ));
            }
        }

        if let (Some(socket), false) = (&f.socket, transport == Transport::Unix) {
            if !socket.inherited {
                return Err(ctx.err(
                    socket.line,
                    "runner.socket",
                    format!(
                        "only unix runners have a socket; runner {:?} is not transport = \"unix\"",
                        name.v
                    ),
                ));
            }
        }
        match transport {
            Transport::Unix => {
                if let Some(a) = &t.address {
                    return Err(ctx.err(
                        a.line,
                        "runner.address",
                        format!(
                            "runner {:?} is reached on its Unix socket, which takes no address; use socket = \"/path/agent.sock\"",
                            name.v
                        ),
                    ));
                }
                let socket = f.socket.as_ref().ok_or_else(|| {
                    ctx.err(
                        rline,
                        "runner.socket",
                        format!(
                            "missing: unix runner {:?} needs the socket of its agent daemon (socket = \"/path/agent.sock\", served by `datarun agent --listen`)",
                            name.v
                        ),
                    )
                })?;
                let spec = RunnerSpec {
                    socket: Some(PathBuf::from(&socket.v)),
                    ..base
                };
                add(spec, name.line, String::new())?;
            }
            Transport::Simulated => {
                if let Some(a) = &t.address {
                    return Err(ctx.err(
                        a.line,
                        "runner.address",
                        format!(
                            "runner {:?} is simulated, which takes no address (use count = N for many)",
                            name.v
                        ),
                    ));
                }
                match &t.count {
                    None => add(base, name.line, String::new())?,
                    Some(count) => {
                        for i in 1..=count.v {
                            let expanded = format!("{}-{i}", name.v);
                            if !valid_name(&expanded) {
                                return Err(ctx.err(
                                    name.line,
                                    "runner.name",
                                    format!(
                                        "{expanded:?}, the name of simulated runner {i}, is longer than 64 characters; shorten the name"
                                    ),
                                ));
                            }
                            let spec = RunnerSpec {
                                name: expanded,
                                ..base.clone()
                            };
                            add(
                                spec,
                                name.line,
                                format!(" (from {:?}, count = {})", name.v, count.v),
                            )?;
                        }
                    }
                }
            }
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

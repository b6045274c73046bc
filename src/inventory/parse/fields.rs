//! The keys of a `[[runner]]` or `[defaults]` table, each checked as it is read, and how a
//! runner inherits the keys it leaves out from `[defaults]`.

use super::{Ctx, Result};
use crate::expr::AttrValue;
use crate::inventory::tree::{Entry, Node};
use crate::inventory::{ExecutorKind, Transport, WarmSpec, MAX_SLOTS};
use crate::model::valid_name;
use std::collections::BTreeMap;

/// The keys of a `[[runner]]`; the first `RUNNER_ONLY` are not allowed in `[defaults]`.
const RUNNER_KEYS: &[&str] = &[
    "name",
    "address",
    "count",
    "transport",
    "user",
    "identity_file",
    "port",
    "state_dir",
    "socket",
    "install_docker",
    "slots",
    "prefetch",
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
    "warm",
];

const RUNNER_ONLY: usize = 3;

/// A value and the line it was written on.
#[derive(Clone, Debug)]
pub(super) struct At<T> {
    pub(super) v: T,
    pub(super) line: usize,
    /// Inherited from `[defaults]` rather than written in the runner.
    pub(super) inherited: bool,
}

impl<T> At<T> {
    fn of(line: usize, inherited: bool, v: T) -> At<T> {
        At { v, line, inherited }
    }
}

/// The keys a runner shares with `[defaults]`, as written.
#[derive(Clone, Debug, Default)]
pub(super) struct Fields {
    pub(super) transport: Option<At<Transport>>,
    pub(super) user: Option<At<String>>,
    pub(super) identity_file: Option<At<String>>,
    pub(super) port: Option<At<u16>>,
    pub(super) state_dir: Option<At<String>>,
    pub(super) socket: Option<At<String>>,
    pub(super) install_docker: Option<At<bool>>,
    pub(super) slots: Option<At<u32>>,
    pub(super) prefetch: Option<At<u32>>,
    pub(super) queues: Option<At<Vec<String>>>,
    pub(super) cpus: Option<At<f64>>,
    pub(super) memory: Option<At<u64>>,
    pub(super) gpus: Option<At<Vec<String>>>,
    pub(super) labels: Option<At<Vec<String>>>,
    pub(super) images: Option<At<Vec<String>>>,
    pub(super) soft: Option<At<u64>>,
    pub(super) hard: Option<At<u64>>,
    pub(super) executor: Option<At<ExecutorKind>>,
    pub(super) requirements: Option<At<String>>,
    pub(super) attributes: Option<At<BTreeMap<String, AttrValue>>>,
    pub(super) warm: Option<At<WarmSpec>>,
}

impl Fields {
    /// Fills every key the runner left out from `[defaults]`.
    pub(super) fn or_defaults(self, d: &Fields) -> Fields {
        Fields {
            transport: self.transport.or_else(|| d.transport.clone()),
            user: self.user.or_else(|| d.user.clone()),
            identity_file: self.identity_file.or_else(|| d.identity_file.clone()),
            port: self.port.or_else(|| d.port.clone()),
            state_dir: self.state_dir.or_else(|| d.state_dir.clone()),
            socket: self.socket.or_else(|| d.socket.clone()),
            install_docker: self.install_docker.or_else(|| d.install_docker.clone()),
            slots: self.slots.or_else(|| d.slots.clone()),
            prefetch: self.prefetch.or_else(|| d.prefetch.clone()),
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
            warm: self.warm.or_else(|| d.warm.clone()),
        }
    }
}

/// A `[[runner]]` or `[defaults]` table, checked key by key.
pub(super) struct Table {
    pub(super) fields: Fields,
    pub(super) name: Option<At<String>>,
    pub(super) address: Option<At<String>>,
    /// Simulated runners: how many (named NAME-1 .. NAME-N).
    pub(super) count: Option<At<u32>>,
}

pub(super) fn parse_table(
    ctx: &Ctx,
    section: &str,
    entries: &[Entry],
    table_line: usize,
) -> Result<Table> {
    let defaults = section == "defaults";
    let mut t = Table {
        fields: Fields::default(),
        name: None,
        address: None,
        count: None,
    };
    for e in entries {
        let line = ctx.line(&e.key_span, ctx.line(&e.value.span, table_line));
        let key = format!("{section}.{}", e.key);
        let key = key.as_str();
        let v = &e.value;
        let f = &mut t.fields;
        match e.key.as_str() {
            "name" | "address" | "count" if defaults => {
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
            "count" => {
                let n = ctx.integer(v, line, key)?;
                let n = u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=crate::inventory::MAX_SIMULATED).contains(n))
                    .ok_or_else(|| {
                        ctx.err(
                            line,
                            key,
                            format!(
                                "{n} is not between 1 and {}",
                                crate::inventory::MAX_SIMULATED
                            ),
                        )
                    })?;
                t.count = Some(At::of(line, defaults, n));
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
                        "simulated" => Transport::Simulated,
                        "unix" => Transport::Unix,
                        other => {
                            return Err(ctx.err(
                                line,
                                key,
                                format!(
                                    "expected \"local\", \"ssh\", \"unix\" or \"simulated\", found {other:?}"
                                ),
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
            "socket" => {
                let path = ctx.string(v, line, key)?;
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_control())
                    || path.split('/').any(|part| part == "..")
                    || path.len() > 107
                {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("{path:?} must be an absolute path of at most 107 bytes without \"..\", e.g. \"/var/lib/datarun/agent.sock\""),
                    ));
                }
                f.socket = Some(At::of(line, defaults, path.to_string()));
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
            "prefetch" => {
                let n = ctx.integer(v, line, key)?;
                if !(0..=i64::from(MAX_SLOTS)).contains(&n) {
                    return Err(ctx.err(
                        line,
                        key,
                        format!("must be between 0 and {MAX_SLOTS}, found {n}"),
                    ));
                }
                f.prefetch = Some(At::of(line, defaults, n as u32));
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
            "warm" => f.warm = Some(At::of(line, defaults, ctx.warm(v, line, key)?)),
            other => {
                let (known, what) = if defaults {
                    (&RUNNER_KEYS[RUNNER_ONLY..], "[defaults]")
                } else {
                    (RUNNER_KEYS, "a [[runner]]")
                };
                return Err(ctx.unknown(line, key, other, known, what));
            }
        }
    }
    Ok(t)
}

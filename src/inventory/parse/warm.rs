//! `warm = { image = "...", command = ["..."], count = N, memory = "512M" }`: a docker
//! runner's warm containers, each key checked with its own line.

use super::{Ctx, Result};
use crate::inventory::tree::{Item, Node};
use crate::inventory::{WarmSpec, DEFAULT_WARM_MEMORY, MAX_WARM, MIN_WARM_MEMORY};
use crate::model::valid_image;
use crate::units::format_size;

const WARM_KEYS: &[&str] = &["image", "command", "count", "memory"];

impl Ctx<'_> {
    pub(super) fn warm(&self, item: &Item, line: usize, key: &str) -> Result<WarmSpec> {
        let Node::Table(entries) = &item.node else {
            return Err(self.type_err(
                line,
                key,
                "a table such as { image = \"datarun/fold-python:0.1\", command = [\"datarun-ramp-fold\"], count = 3 }",
                item,
            ));
        };
        let (mut image, mut command, mut count, mut memory) = (None, None, None, None);
        for e in entries {
            let line = self.line(&e.key_span, self.line(&e.value.span, line));
            let sub = format!("{key}.{}", e.key);
            let v = &e.value;
            match e.key.as_str() {
                "image" => {
                    let s = self.string(v, line, &sub)?;
                    if !valid_image(s) {
                        return Err(self.err(
                            line,
                            &sub,
                            format!("{s:?} is not a valid image reference (e.g. \"datarun/fold-python:0.1\"); a warm image is named, never \"*\""),
                        ));
                    }
                    image = Some(s.to_string());
                }
                "command" => {
                    let Node::Array(words) = &v.node else {
                        return Err(self.type_err(
                            line,
                            &sub,
                            "a list of words such as [\"datarun-ramp-fold\"]",
                            v,
                        ));
                    };
                    let mut out = Vec::with_capacity(words.len());
                    for w in words {
                        match &w.node {
                            Node::Str(s) if !s.is_empty() && !s.contains('\0') => {
                                out.push(s.clone())
                            }
                            _ => {
                                return Err(self.err(
                                    self.line(&w.span, line),
                                    &sub,
                                    "every word of the command is a non-empty string",
                                ))
                            }
                        }
                    }
                    if out.is_empty() {
                        return Err(self.err(
                            line,
                            &sub,
                            "must name the program, e.g. [\"datarun-ramp-fold\"]",
                        ));
                    }
                    command = Some(out);
                }
                "count" => {
                    let n = self.integer(v, line, &sub)?;
                    let n = u32::try_from(n)
                        .ok()
                        .filter(|n| (1..=MAX_WARM).contains(n))
                        .ok_or_else(|| {
                            self.err(line, &sub, format!("{n} is not between 1 and {MAX_WARM}"))
                        })?;
                    count = Some(n);
                }
                "memory" => {
                    let m = self.size(v, line, &sub)?;
                    if m < MIN_WARM_MEMORY {
                        return Err(self.err(
                            line,
                            &sub,
                            format!(
                                "{} is less than {}: the waiting interpreter must fit",
                                format_size(m),
                                format_size(MIN_WARM_MEMORY)
                            ),
                        ));
                    }
                    memory = Some(m);
                }
                other => return Err(self.unknown(line, &sub, other, WARM_KEYS, "warm")),
            }
        }
        let missing = |what: &str, example: &str| {
            self.err(
                line,
                key,
                format!("missing {what}: warm needs image, command and count, e.g. {example}"),
            )
        };
        let example =
            "{ image = \"datarun/fold-python:0.1\", command = [\"datarun-ramp-fold\"], count = 3 }";
        Ok(WarmSpec {
            image: image.ok_or_else(|| missing("image", example))?,
            command: command.ok_or_else(|| missing("command", example))?,
            count: count.ok_or_else(|| missing("count", example))?,
            memory: memory.unwrap_or(DEFAULT_WARM_MEMORY),
        })
    }
}

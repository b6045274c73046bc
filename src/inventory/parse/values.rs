//! Typed readers for a key's value: strings, lists of names, integers, durations and sizes,
//! each failing with the key and line it was written on.

use super::{Ctx, Result};
use crate::inventory::tree::{Item, Node};
use crate::model::{valid_image, valid_name};
use crate::units::{parse_duration, parse_size};

impl Ctx<'_> {
    pub(super) fn string<'i>(&self, item: &'i Item, line: usize, key: &str) -> Result<&'i str> {
        match &item.node {
            Node::Str(s) => Ok(s),
            _ => Err(self.type_err(line, key, "a string", item)),
        }
    }

    /// A list of distinct names (queues, gpus, labels); `"*"` only where `star` allows it.
    pub(super) fn names(
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

    pub(super) fn integer(&self, item: &Item, line: usize, key: &str) -> Result<i64> {
        match item.node {
            Node::Int(n) => Ok(n),
            _ => Err(self.type_err(line, key, "an integer", item)),
        }
    }

    pub(super) fn duration_ms(&self, item: &Item, line: usize, key: &str) -> Result<u64> {
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

    pub(super) fn size(&self, item: &Item, line: usize, key: &str) -> Result<u64> {
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

//! Requirements and rank expressions, in the spirit of HTCondor ClassAds.
//!
//! A fold may carry `requirements` (`gpus >= 1 && arch == "x86_64" && "fast-disk" in labels`)
//! and `rank` (`memory`: prefer big machines); a runner may carry its own `requirements` on
//! folds (`owner != "guest" || queue == "L"`). The language (grammar in `parser`):
//!
//! - Values: integers, floats, strings (`"..."` or `'...'`, escapes `\" \' \\ \n \t`), `true`,
//!   `false`, lists of strings (only from attributes), and *undefined* (an attribute the
//!   runner does not have). Sizes are integers with a binary unit: `4G` = 4 × 2^30, `512M`.
//! - Operators, loosest first: `||`; `&&`; `== != < <= > >= in` (they do not chain); `+ -`;
//!   `* /`; unary `! -`; parentheses. `/` of two integers truncates.
//! - Names: in a fold's expressions bare names are the **runner's** attributes; in a runner's
//!   requirements they are the **fold's**. `runner.x` and `fold.x` name either side anywhere.
//!   Runners: `name`, `cpus`, `memory` (bytes), `gpus` (count), `arch`, `os` (from the agent;
//!   undefined until it reports), `labels`, `queues`, `images` (lists), `slots`, `free_slots`
//!   (at the start of the matching cycle), and any custom attribute from the inventory's
//!   `attributes` (any other name: undefined where a runner lacks it). Folds: `owner`,
//!   `queue`, `priority`, `cpus`, `memory`, `gpus`, `image` (undefined when it names none);
//!   any other fold name is an error when the expression is read.
//! - Undefined and errors: an operation on undefined is undefined, except that `false && x`
//!   and `x && false` are false and `true || x` and `x || true` are true. Comparing values of
//!   different types (an integer with a string), ordering booleans or lists, arithmetic on
//!   non-numbers, division by zero, `!` or `&&` on a non-boolean are *errors*; an error
//!   propagates like undefined but is reported as such.
//! - `s in list` is membership, `s in t` (two strings) is "t contains s".
//! - Requirements are met only when they evaluate to `true`: false and undefined reject the
//!   runner, an error rejects it with the error. A rank is a number (true = 1, false = 0);
//!   anything else ranks 0. Higher rank is preferred.

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

pub use eval::{Scope, Value, Verdict, Why};

use serde::Serialize;
use std::fmt;

/// Whose attributes bare names are: the runner's (in a fold's expressions) or the fold's (in a
/// runner's requirements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    Runner,
    Fold,
}

/// A syntax error, located: `offset` is a byte offset into the text, `column` 1-based (in
/// characters). Displays as `column 12: expected an expression after '&&'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub column: usize,
    pub message: String,
}

impl ExprError {
    fn at(text: &str, offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            offset,
            column: ExprError::column_of(text, offset),
            message: message.into(),
        }
    }

    fn column_of(text: &str, offset: usize) -> usize {
        text[..offset.min(text.len())].chars().count() + 1
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ExprError {}

/// A runner attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RunnerAttr {
    Name,
    Cpus,
    Memory,
    Gpus,
    Arch,
    Os,
    Labels,
    Queues,
    Images,
    Slots,
    FreeSlots,
    /// From the inventory's `attributes`.
    Custom(String),
}

/// The built-in runner attributes; custom attributes may not use these names.
pub const BUILTIN_RUNNER: &[&str] = &[
    "name",
    "cpus",
    "memory",
    "gpus",
    "arch",
    "os",
    "labels",
    "queues",
    "images",
    "slots",
    "free_slots",
];

/// Words that are no attribute's name.
const RESERVED: &[&str] = &["true", "false", "in", "runner", "fold"];

impl RunnerAttr {
    fn of(name: &str) -> RunnerAttr {
        match name {
            "name" => RunnerAttr::Name,
            "cpus" => RunnerAttr::Cpus,
            "memory" => RunnerAttr::Memory,
            "gpus" => RunnerAttr::Gpus,
            "arch" => RunnerAttr::Arch,
            "os" => RunnerAttr::Os,
            "labels" => RunnerAttr::Labels,
            "queues" => RunnerAttr::Queues,
            "images" => RunnerAttr::Images,
            "slots" => RunnerAttr::Slots,
            "free_slots" => RunnerAttr::FreeSlots,
            other => RunnerAttr::Custom(other.to_string()),
        }
    }
}

/// A fold attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FoldAttr {
    Owner,
    Queue,
    Priority,
    Cpus,
    Memory,
    Gpus,
    Image,
}

impl FoldAttr {
    pub const NAMES: [&'static str; 7] = [
        "owner", "queue", "priority", "cpus", "memory", "gpus", "image",
    ];
    const ALL: [FoldAttr; 7] = [
        FoldAttr::Owner,
        FoldAttr::Queue,
        FoldAttr::Priority,
        FoldAttr::Cpus,
        FoldAttr::Memory,
        FoldAttr::Gpus,
        FoldAttr::Image,
    ];

    fn of(name: &str) -> Option<FoldAttr> {
        let i = FoldAttr::NAMES.iter().position(|n| *n == name)?;
        Some(FoldAttr::ALL[i])
    }

    /// This attribute's bit in `Expr::fold_mask`.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A name after resolution: which side, which attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Runner(RunnerAttr),
    Fold(FoldAttr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Attr(Attr),
    Not(Box<Node>),
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
}

/// A node of the tree and its byte span in the text.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    kind: Kind,
    span: (usize, usize),
}

/// A parsed expression with its names resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    text: String,
    root: Node,
    fold_mask: u8,
}

impl Expr {
    /// Parses `text`; bare names are `home`'s attributes.
    pub fn parse(text: &str, home: Home) -> Result<Expr, ExprError> {
        let toks = lexer::tokens(text)?;
        let root = parser::Parser {
            text,
            toks,
            pos: 0,
            home,
        }
        .parse()?;
        let mut fold_mask = 0;
        root.visit(&mut |n| {
            if let Kind::Attr(Attr::Fold(a)) = &n.kind {
                fold_mask |= a.bit();
            }
        });
        Ok(Expr {
            text: text.to_string(),
            root,
            fold_mask,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The fold attributes the expression reads, as `FoldAttr::bit`s.
    pub fn fold_mask(&self) -> u8 {
        self.fold_mask
    }
}

impl Node {
    fn visit(&self, f: &mut impl FnMut(&Node)) {
        f(self);
        match &self.kind {
            Kind::Not(x) | Kind::Neg(x) => x.visit(f),
            Kind::Bin(_, l, r) => {
                l.visit(f);
                r.visit(f);
            }
            _ => {}
        }
    }
}

/// A custom runner attribute (the inventory's `attributes = { disk = "ssd", generation = 3 }`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Whether `name` may name a custom runner attribute: an identifier (letters, digits, '_', not
/// starting with a digit) that is neither a built-in attribute nor a reserved word.
pub fn check_attribute_name(name: &str) -> Result<(), String> {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if !ident {
        return Err(format!(
            "{name:?} is not a valid attribute name (letters, digits and '_', not starting with a digit)"
        ));
    }
    if BUILTIN_RUNNER.contains(&name) {
        return Err(format!(
            "{name:?} is a built-in runner attribute; a custom attribute may not shadow it"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("{name:?} is a reserved word"));
    }
    Ok(())
}

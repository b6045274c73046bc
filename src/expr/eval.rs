//! Evaluation (three-valued, with errors) and, for explanations, which part of an expression
//! made it fail.

use super::{Attr, Expr, FoldAttr, Kind, Node, Op, RunnerAttr};
use crate::units::format_size;
use std::cmp::Ordering;

/// A value during evaluation. Strings and lists borrow from the expression or the scope.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Undefined,
    /// A type error, division by zero, ...: why, in words.
    Error(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    List(&'a [String]),
}

impl Value<'_> {
    /// "an integer", "a string", ... for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Undefined => "undefined",
            Value::Error(_) => "an error",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(x) => Some(x),
            _ => None,
        }
    }

    /// The value as a person reads it; `size` writes integers as sizes (memory).
    pub fn show(&self, size: bool) -> String {
        match self {
            Value::Undefined => "undefined".into(),
            Value::Error(e) => format!("an error ({e})"),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) if size && *i >= 0 => format_size(*i as u64),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => format!("{x}"),
            Value::Str(s) => format!("{s:?}"),
            Value::List(l) => format!("{l:?}"),
        }
    }
}

/// Where names get their values: the runner and the fold being matched.
pub trait Scope {
    fn runner(&self, attr: &RunnerAttr) -> Value<'_>;
    fn fold(&self, attr: FoldAttr) -> Value<'_>;
}

/// Whether requirements are met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Evaluated to true.
    Pass,
    /// False or undefined.
    Fail,
    /// An error, or a value that is not a boolean.
    Error,
}

/// Why requirements are not met: the part that failed (`leaf`, as written) and, for a failure,
/// the values of the attributes it reads (`gpus is 0`), for an error its message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Why {
    pub leaf: String,
    pub detail: String,
    pub error: bool,
}

impl Expr {
    pub fn eval<'a, S: Scope>(&'a self, scope: &'a S) -> Value<'a> {
        eval(&self.root, scope)
    }

    /// Requirements: met only when true.
    pub fn verdict<S: Scope>(&self, scope: &S) -> Verdict {
        match self.eval(scope) {
            Value::Bool(true) => Verdict::Pass,
            Value::Bool(false) | Value::Undefined => Verdict::Fail,
            _ => Verdict::Error,
        }
    }

    /// A rank: a number (true = 1, false = 0); anything else is 0.
    pub fn rank<S: Scope>(&self, scope: &S) -> f64 {
        match self.eval(scope) {
            Value::Int(i) => i as f64,
            Value::Float(x) if x.is_finite() => x,
            Value::Bool(b) => f64::from(u8::from(b)),
            _ => 0.0,
        }
    }

    /// Why the requirements are not met (None when they are).
    pub fn why<S: Scope>(&self, scope: &S) -> Option<Why> {
        let text = |n: &Node| self.text[n.span.0..n.span.1].to_string();
        match self.eval(scope) {
            Value::Bool(true) => None,
            Value::Error(message) => Some(Why {
                leaf: text(deepest_error(&self.root, scope)),
                detail: message,
                error: true,
            }),
            Value::Bool(false) | Value::Undefined => {
                let leaf = blame(&self.root, scope);
                let mut seen: Vec<String> = Vec::new();
                let mut parts = Vec::new();
                leaf.visit(&mut |n| {
                    if let Kind::Attr(a) = &n.kind {
                        let name = text(n);
                        if !seen.contains(&name) && seen.len() < 3 {
                            let size = matches!(
                                a,
                                Attr::Runner(RunnerAttr::Memory) | Attr::Fold(FoldAttr::Memory)
                            );
                            parts.push(format!("{name} is {}", eval(n, scope).show(size)));
                            seen.push(name);
                        }
                    }
                });
                Some(Why {
                    leaf: text(leaf),
                    detail: parts.join(", "),
                    error: false,
                })
            }
            other => Some(Why {
                leaf: self.text.trim().to_string(),
                detail: format!("must be true or false, found {}", other.kind()),
                error: true,
            }),
        }
    }
}

/// The part of a false or undefined expression to blame: the first operand of `&&` that is not
/// true, recursively; anything else as a whole.
fn blame<'n, S: Scope>(n: &'n Node, scope: &S) -> &'n Node {
    match &n.kind {
        Kind::Bin(Op::And, l, r) => {
            if eval(l, scope) != Value::Bool(true) {
                blame(l, scope)
            } else {
                blame(r, scope)
            }
        }
        _ => n,
    }
}

/// The innermost node whose value is an error.
fn deepest_error<'n, S: Scope>(n: &'n Node, scope: &S) -> &'n Node {
    let children: Vec<&Node> = match &n.kind {
        Kind::Not(x) | Kind::Neg(x) => vec![x],
        Kind::Bin(_, l, r) => vec![l, r],
        _ => vec![],
    };
    children
        .into_iter()
        .find(|c| matches!(eval(c, scope), Value::Error(_)))
        .map_or(n, |c| deepest_error(c, scope))
}

fn eval<'a, S: Scope>(n: &'a Node, s: &'a S) -> Value<'a> {
    match &n.kind {
        Kind::Int(i) => Value::Int(*i),
        Kind::Float(x) => Value::Float(*x),
        Kind::Str(t) => Value::Str(t),
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Attr(Attr::Runner(a)) => s.runner(a),
        Kind::Attr(Attr::Fold(a)) => s.fold(*a),
        Kind::Not(x) => match eval(x, s) {
            Value::Bool(b) => Value::Bool(!b),
            v @ (Value::Undefined | Value::Error(_)) => v,
            v => Value::Error(format!("'!' needs true or false, found {}", v.kind())),
        },
        Kind::Neg(x) => match eval(x, s) {
            Value::Int(i) => i
                .checked_neg()
                .map_or_else(|| Value::Error("integer overflow".into()), Value::Int),
            Value::Float(x) => Value::Float(-x),
            v @ (Value::Undefined | Value::Error(_)) => v,
            v => Value::Error(format!("'-' needs a number, found {}", v.kind())),
        },
        Kind::Bin(Op::And, l, r) => logic(false, l, r, s),
        Kind::Bin(Op::Or, l, r) => logic(true, l, r, s),
        Kind::Bin(op, l, r) => binary(*op, eval(l, s), eval(r, s)),
    }
}

/// `&&` (`decides` = false) and `||` (`decides` = true), left to right.
fn logic<'a, S: Scope>(decides: bool, l: &'a Node, r: &'a Node, s: &'a S) -> Value<'a> {
    let op = if decides { "||" } else { "&&" };
    let not_bool =
        |v: &Value| Value::Error(format!("'{op}' needs true or false, found {}", v.kind()));
    let a = eval(l, s);
    match a {
        Value::Bool(x) if x == decides => return a,
        Value::Error(_) => return a,
        Value::Bool(_) | Value::Undefined => {}
        ref v => return not_bool(v),
    }
    let b = eval(r, s);
    match b {
        Value::Bool(x) if x == decides => b,
        Value::Error(_) | Value::Undefined => b,
        Value::Bool(_) => a,
        ref v => not_bool(v),
    }
}

fn binary<'a>(op: Op, a: Value<'a>, b: Value<'a>) -> Value<'a> {
    for v in [&a, &b] {
        if let Value::Error(_) = v {
            return v.clone();
        }
    }
    if a == Value::Undefined || b == Value::Undefined {
        return Value::Undefined;
    }
    match op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => arith(op, a, b),
        Op::Eq | Op::Ne => match equal(&a, &b) {
            Some(eq) => Value::Bool(eq == (op == Op::Eq)),
            None => mismatch(&a, &b),
        },
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let ord = match (&a, &b) {
                (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                _ => match (a.number(), b.number()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                },
            };
            match ord {
                Some(o) => Value::Bool(match op {
                    Op::Lt => o == Ordering::Less,
                    Op::Le => o != Ordering::Greater,
                    Op::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }),
                None => Value::Error(format!("cannot order {} and {}", a.kind(), b.kind())),
            }
        }
        Op::In => match (&a, &b) {
            (Value::Str(x), Value::List(l)) => Value::Bool(l.iter().any(|i| i == x)),
            (Value::Str(x), Value::Str(y)) => Value::Bool(y.contains(x)),
            _ => Value::Error(format!(
                "'in' needs a string on the left and a list or a string on the right, found {} in {}",
                a.kind(),
                b.kind()
            )),
        },
        Op::And | Op::Or => unreachable!("evaluated by logic"),
    }
}

fn mismatch<'a>(a: &Value, b: &Value) -> Value<'a> {
    Value::Error(format!("cannot compare {} with {}", a.kind(), b.kind()))
}

/// `Some(a == b)` when the two can be compared for equality.
fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x == y),
        (Value::Str(x), Value::Str(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::List(_), _) | (_, Value::List(_)) => None,
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => Some(x == y),
            _ => None,
        },
    }
}

fn arith<'a>(op: Op, a: Value<'a>, b: Value<'a>) -> Value<'a> {
    let sym = match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        _ => "/",
    };
    if let (Value::Int(x), Value::Int(y)) = (&a, &b) {
        let r = match op {
            Op::Add => x.checked_add(*y),
            Op::Sub => x.checked_sub(*y),
            Op::Mul => x.checked_mul(*y),
            _ if *y == 0 => return Value::Error("division by zero".into()),
            _ => x.checked_div(*y),
        };
        return r.map_or_else(|| Value::Error("integer overflow".into()), Value::Int);
    }
    match (a.number(), b.number()) {
        (Some(_), Some(y)) if op == Op::Div && y == 0.0 => Value::Error("division by zero".into()),
        (Some(x), Some(y)) => Value::Float(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            _ => x / y,
        }),
        _ => Value::Error(format!(
            "'{sym}' needs numbers, found {} and {}",
            a.kind(),
            b.kind()
        )),
    }
}

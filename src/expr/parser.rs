//! Recursive descent from tokens to a tree whose names are resolved to attributes.
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := cmp ( "&&" cmp )*
//! cmp     := sum ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" ) sum )?
//! sum     := product ( ( "+" | "-" ) product )*
//! product := unary ( ( "*" | "/" ) unary )*
//! unary   := ( "!" | "-" ) unary | primary
//! primary := INT | FLOAT | SIZE | STRING | "true" | "false" | name | "(" or ")"
//! name    := IDENT | ( "runner" | "fold" ) "." IDENT
//! ```

use super::lexer::{Tok, Token};
use super::{Attr, ExprError, FoldAttr, Home, Node, Op, RunnerAttr};

pub(super) struct Parser<'t> {
    pub text: &'t str,
    pub toks: Vec<Token>,
    pub pos: usize,
    pub home: Home,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn err(&self, at: usize, message: impl Into<String>) -> ExprError {
        ExprError::at(self.text, at, message)
    }

    /// The whole text: one expression and nothing after it.
    pub fn parse(&mut self) -> Result<Node, ExprError> {
        if self.toks.len() == 1 {
            return Err(self.err(0, "empty expression"));
        }
        let node = self.or()?;
        let t = &self.toks[self.pos];
        if t.tok != Tok::End {
            let what = if t.tok == Tok::RParen {
                "')' without a matching '('".to_string()
            } else {
                format!(
                    "unexpected {} after a complete expression; join conditions with && or ||",
                    t.tok.describe()
                )
            };
            return Err(self.err(t.start, what));
        }
        Ok(node)
    }

    fn binary(&mut self, op: Op, left: Node, right: Node) -> Node {
        Node {
            span: (left.span.0, right.span.1),
            kind: super::Kind::Bin(op, Box::new(left), Box::new(right)),
        }
    }

    /// The operand after an operator token `op` (already consumed, at `at`).
    fn operand(
        &mut self,
        op: &Tok,
        next: fn(&mut Self) -> Result<Node, ExprError>,
    ) -> Result<Node, ExprError> {
        let t = &self.toks[self.pos];
        let starts_operand = matches!(
            t.tok,
            Tok::Int(_)
                | Tok::Float(_)
                | Tok::Str(_)
                | Tok::Ident(_)
                | Tok::True
                | Tok::False
                | Tok::LParen
                | Tok::Not
                | Tok::Minus
        );
        if !starts_operand {
            let found = if t.tok == Tok::End {
                String::new()
            } else {
                format!(", found {}", t.tok.describe())
            };
            return Err(self.err(
                t.start,
                format!("expected an expression after '{}'{found}", op.symbol()),
            ));
        }
        next(self)
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while *self.peek() == Tok::Or {
            let t = self.next();
            let right = self.operand(&t.tok, Self::and)?;
            left = self.binary(Op::Or, left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.cmp()?;
        while *self.peek() == Tok::And {
            let t = self.next();
            let right = self.operand(&t.tok, Self::cmp)?;
            left = self.binary(Op::And, left, right);
        }
        Ok(left)
    }

    fn cmp_op(tok: &Tok) -> Option<Op> {
        Some(match tok {
            Tok::Eq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            Tok::In => Op::In,
            _ => return None,
        })
    }

    fn cmp(&mut self) -> Result<Node, ExprError> {
        let left = self.sum()?;
        let Some(op) = Self::cmp_op(self.peek()) else {
            return Ok(left);
        };
        let t = self.next();
        let right = self.operand(&t.tok, Self::sum)?;
        let node = self.binary(op, left, right);
        let after = &self.toks[self.pos];
        if Self::cmp_op(&after.tok).is_some() {
            return Err(self.err(
                after.start,
                format!(
                    "comparisons do not chain: write 'a {} b && b {} c'",
                    t.tok.symbol(),
                    after.tok.symbol()
                ),
            ));
        }
        Ok(node)
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => Op::Add,
                Tok::Minus => Op::Sub,
                _ => return Ok(left),
            };
            let t = self.next();
            let right = self.operand(&t.tok, Self::product)?;
            left = self.binary(op, left, right);
        }
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => Op::Mul,
                Tok::Slash => Op::Div,
                _ => return Ok(left),
            };
            let t = self.next();
            let right = self.operand(&t.tok, Self::unary)?;
            left = self.binary(op, left, right);
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let not = match self.peek() {
            Tok::Not => true,
            Tok::Minus => false,
            _ => return self.primary(),
        };
        let t = self.next();
        let inner = self.operand(&t.tok, Self::unary)?;
        let span = (t.start, inner.span.1);
        let kind = if not {
            super::Kind::Not(Box::new(inner))
        } else {
            super::Kind::Neg(Box::new(inner))
        };
        Ok(Node { kind, span })
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let t = self.next();
        let lit = |kind| {
            Ok(Node {
                kind,
                span: (t.start, t.end),
            })
        };
        match t.tok {
            Tok::Int(n) => lit(super::Kind::Int(n)),
            Tok::Float(x) => lit(super::Kind::Float(x)),
            Tok::Str(ref s) => lit(super::Kind::Str(s.clone())),
            Tok::True => lit(super::Kind::Bool(true)),
            Tok::False => lit(super::Kind::Bool(false)),
            Tok::LParen => {
                let inner = self.or()?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(self.err(
                        close.start,
                        format!(
                            "expected ')' to close the '(' at column {}, found {}",
                            ExprError::column_of(self.text, t.start),
                            close.tok.describe()
                        ),
                    ));
                }
                Ok(Node {
                    kind: inner.kind,
                    span: (t.start, close.end),
                })
            }
            Tok::Ident(ref name) => self.name(name, t.start, t.end),
            Tok::End => Err(self.err(t.start, "expected an expression, found the end")),
            ref other => Err(self.err(
                t.start,
                format!("expected an expression, found {}", other.describe()),
            )),
        }
    }

    fn name(&mut self, first: &str, start: usize, end: usize) -> Result<Node, ExprError> {
        let scoped = matches!(first, "runner" | "fold");
        let (side, name, end) = if scoped && *self.peek() == Tok::Dot {
            self.next();
            let t = self.next();
            let Tok::Ident(name) = t.tok else {
                return Err(self.err(
                    t.start,
                    format!(
                        "expected an attribute name after '{first}.', found {}",
                        t.tok.describe()
                    ),
                ));
            };
            let side = if first == "runner" {
                Home::Runner
            } else {
                Home::Fold
            };
            (side, name, t.end)
        } else if scoped {
            return Err(self.err(
                end,
                format!("expected '.' and an attribute name after '{first}' (e.g. {first}.name)"),
            ));
        } else {
            (self.home, first.to_string(), end)
        };
        let attr = match side {
            Home::Runner => Attr::Runner(RunnerAttr::of(&name)),
            Home::Fold => Attr::Fold(FoldAttr::of(&name).ok_or_else(|| {
                self.err(
                    start,
                    format!(
                        "folds have no attribute '{name}' (they have: {})",
                        FoldAttr::NAMES.join(", ")
                    ),
                )
            })?),
        };
        Ok(Node {
            kind: super::Kind::Attr(attr),
            span: (start, end),
        })
    }
}

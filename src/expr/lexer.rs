//! Tokens of the expression language, each with its byte span.

use super::ExprError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    True,
    False,
    In,
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Dot,
    End,
}

impl Tok {
    /// How the token reads in a message: "'&&'", "a number", "the end".
    pub fn describe(&self) -> String {
        match self {
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Ident(name) => format!("'{name}'"),
            Tok::End => "the end".into(),
            other => format!("'{}'", other.symbol()),
        }
    }

    pub fn symbol(&self) -> &'static str {
        match self {
            Tok::True => "true",
            Tok::False => "false",
            Tok::In => "in",
            Tok::And => "&&",
            Tok::Or => "||",
            Tok::Not => "!",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Dot => ".",
            _ => "",
        }
    }
}

/// A token and its byte range in the text.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

pub(super) fn tokens(text: &str) -> Result<Vec<Token>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let two = |next: u8| b.get(i + 1) == Some(&next);
        let (tok, len) = match c {
            b'&' if two(b'&') => (Tok::And, 2),
            b'|' if two(b'|') => (Tok::Or, 2),
            b'=' if two(b'=') => (Tok::Eq, 2),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'<' if two(b'=') => (Tok::Le, 2),
            b'>' if two(b'=') => (Tok::Ge, 2),
            b'!' => (Tok::Not, 1),
            b'<' => (Tok::Lt, 1),
            b'>' => (Tok::Gt, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => (Tok::Dot, 1),
            b'&' | b'|' => {
                let op = if c == b'&' { "&&" } else { "||" };
                return Err(ExprError::at(
                    text,
                    start,
                    format!("'{}' is not an operator; did you mean '{op}'?", c as char),
                ));
            }
            b'=' => {
                return Err(ExprError::at(
                    text,
                    start,
                    "'=' is not an operator; did you mean '=='?",
                ))
            }
            b'"' | b'\'' => {
                let (s, len) = string(text, start)?;
                (Tok::Str(s), len)
            }
            b'0'..=b'9' | b'.' => number(text, start)?,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                let word = &text[i..i + len];
                let tok = match word {
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "in" => Tok::In,
                    _ => Tok::Ident(word.to_string()),
                };
                (tok, len)
            }
            _ => {
                let ch = text[i..].chars().next().expect("not at the end");
                return Err(ExprError::at(
                    text,
                    start,
                    format!("unexpected character {ch:?}"),
                ));
            }
        };
        i += len;
        out.push(Token { tok, start, end: i });
    }
    out.push(Token {
        tok: Tok::End,
        start: b.len(),
        end: b.len(),
    });
    Ok(out)
}

/// A quoted string starting at `start` ("..." or '...'; escapes \" \' \\ \n \t).
fn string(text: &str, start: usize) -> Result<(String, usize), ExprError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, k + 2)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\'' | '\\'))) => out.push(e),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((j, e)) => {
                    return Err(ExprError::at(
                        text,
                        start + 1 + j - 1,
                        format!("unknown escape '\\{e}' (use \\\", \\', \\\\, \\n or \\t)"),
                    ))
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(ExprError::at(
        text,
        start,
        format!("this string has no closing {quote}"),
    ))
}

/// An integer, a float, or a size with a binary unit (`4G`, `512M`, `1.5G`, `200MiB`).
fn number(text: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let rest = &text[start..];
    let digits = rest
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.')
        .count();
    let unit = rest[digits..]
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count();
    let len = digits + unit;
    let word = &rest[..len];
    let num = &rest[..digits];
    let tok = if unit > 0 {
        let bytes = crate::units::parse_size(word).map_err(|e| ExprError::at(text, start, e))?;
        Tok::Int(i64::try_from(bytes).map_err(|_| ExprError::at(text, start, "too large"))?)
    } else if num.contains('.') {
        Tok::Float(
            num.parse()
                .map_err(|_| ExprError::at(text, start, format!("{num:?} is not a number")))?,
        )
    } else {
        Tok::Int(num.parse().map_err(|_| {
            ExprError::at(text, start, format!("{num} is too large for an integer"))
        })?)
    };
    Ok((tok, len))
}

//! A TOML document as a tree of located values, so that every error can name its line.
//!
//! `toml::Spanned<T>` cannot be used directly for a generic tree: implicit tables (the `queues`
//! in `[queues.H]`, the `a` in `a.b = 1`) have no span, and `Spanned<Node>` then fails with a
//! confusing serde error; datetimes are maps whose key has no span either. So this module speaks
//! the `serde_spanned` protocol itself and accepts a value with or without a span.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;

// The protocol `toml` uses to hand out spans (serde_spanned 0.6, `__unstable`). The tests
// exercise every path through it, so a change upstream shows up as a failing test.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A value and where it is in the text (None for implicit tables).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub node: Node,
    pub span: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Item>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Option<Range<usize>>,
    pub value: Item,
}

impl Node {
    /// "a string", "an integer", ... for messages such as "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Datetime(_) => "a date/time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// Parses TOML text into a located tree; errors are toml's own (with their span).
pub(crate) fn parse_document(text: &str) -> Result<Item, toml::de::Error> {
    toml::from_str(text)
}

/// Where the lines of a text start, so that the line of a byte offset is a binary search
/// (counting newlines from the start for every key made `inventory check` quadratic).
pub(crate) struct Lines {
    /// Byte offsets of the newlines, in order.
    newlines: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines {
            newlines: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, ItemVisitor)
    }
}

/// The value inside a spanned wrapper: its deserializer still holds the span and would wrap it
/// again if asked through `deserialize_struct`, so ask for the bare value.
struct Unspanned;

impl<'de> DeserializeSeed<'de> for Unspanned {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

fn plain(node: Node) -> Item {
    Item { node, span: None }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Item, E> {
        Ok(plain(Node::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
        Ok(plain(Node::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
        i64::try_from(v)
            .map(|v| plain(Node::Int(v)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Item, E> {
        Ok(plain(Node::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
        Ok(plain(Node::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Item, E> {
        Ok(plain(Node::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            items.push(item);
        }
        Ok(plain(Node::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(plain(Node::Table(Vec::new())));
        };
        match first.name.as_str() {
            // A spanned value: start, end, then the value itself.
            SPANNED_START => {
                let start: usize = map.next_value()?;
                let mut end = start;
                let mut value = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key.name.as_str() {
                        SPANNED_END => end = map.next_value()?,
                        SPANNED_VALUE => value = Some(map.next_value_seed(Unspanned)?),
                        other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
                    }
                }
                let mut item = value.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
                item.span = Some(start..end);
                Ok(item)
            }
            DATETIME_FIELD => Ok(plain(Node::Datetime(map.next_value::<String>()?))),
            // An ordinary table, possibly without a span of its own.
            _ => {
                let mut entries = vec![Entry {
                    key: first.name,
                    key_span: first.span,
                    value: map.next_value()?,
                }];
                while let Some(key) = map.next_key::<Key>()? {
                    entries.push(Entry {
                        key: key.name,
                        key_span: key.span,
                        value: map.next_value()?,
                    });
                }
                Ok(plain(Node::Table(entries)))
            }
        }
    }
}

/// A table key, with its span when the deserializer knows it.
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_string(),
            span: None,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let (mut start, mut end, mut name) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
            }
        }
        Ok(Key {
            name: name.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?,
            span: start.zip(end).map(|(s, e)| s..e),
        })
    }
}

#[cfg(test)]
mod line_tests {
    use super::Lines;

    #[test]
    fn lines_of_offsets() {
        let text = "a = 1\n\nb = 2\nc";
        let lines = Lines::new(text);
        let expect = |offset: usize| {
            text.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        for offset in 0..=text.len() + 3 {
            assert_eq!(
                lines.line_of(offset),
                expect(offset.min(text.len())),
                "offset {offset}"
            );
        }
    }
}

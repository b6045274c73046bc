//! The keys that feed requirements and rank expressions: a runner's `requirements` on folds
//! and its custom `attributes`.

use super::{Ctx, Result};
use crate::expr::AttrValue;
use crate::expr::{check_attribute_name, Expr, Home};
use crate::inventory::tree::{Item, Node};
use crate::model::MAX_EXPRESSION;
use std::collections::BTreeMap;

impl Ctx<'_> {
    /// An expression over fold attributes; a syntax error names its column within it.
    pub(super) fn requirements(&self, item: &Item, line: usize, key: &str) -> Result<String> {
        let text = self.string(item, line, key)?;
        if text.len() > MAX_EXPRESSION {
            return Err(self.err(line, key, format!("at most {MAX_EXPRESSION} bytes")));
        }
        Expr::parse(text, Home::Fold)
            .map_err(|e| self.err(line, key, format!("{e} (in {text:?})")))?;
        Ok(text.to_string())
    }

    /// `{ disk = "ssd", generation = 3 }`: strings, integers, floats and booleans under names
    /// that do not shadow a built-in runner attribute.
    pub(super) fn attributes(
        &self,
        item: &Item,
        line: usize,
        key: &str,
    ) -> Result<BTreeMap<String, AttrValue>> {
        let Node::Table(entries) = &item.node else {
            return Err(self.type_err(
                line,
                key,
                "a table such as { disk = \"ssd\", generation = 3 }",
                item,
            ));
        };
        let mut out = BTreeMap::new();
        for e in entries {
            let eline = self.line(&e.key_span, self.line(&e.value.span, line));
            let ekey = format!("{key}.{}", e.key);
            check_attribute_name(&e.key).map_err(|m| self.err(eline, &ekey, m))?;
            let value = match &e.value.node {
                Node::Str(s) => AttrValue::Str(s.clone()),
                Node::Int(i) => AttrValue::Int(*i),
                Node::Float(x) if x.is_finite() => AttrValue::Float(*x),
                Node::Bool(b) => AttrValue::Bool(*b),
                _ => {
                    return Err(self.type_err(
                        eline,
                        &ekey,
                        "a string, an integer, a number or a boolean",
                        &e.value,
                    ))
                }
            };
            out.insert(e.key.clone(), value);
        }
        Ok(out)
    }
}

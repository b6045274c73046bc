//! A sweep file in TOML: turned into the JSON document `from_json` checks, remembering the line
//! of every key, so that an error reads `params.toml:4: grid.lr: ...` as the inventory's do.

use super::{from_json, Sweep};
use crate::inventory::tree::{parse_document, Item, Lines, Node};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Parses and checks a sweep file: the document as JSON (what `POST /sweeps` takes) and the
/// sweep; the error is `file:line: key: message`.
pub fn from_toml(file: &str, text: &str) -> Result<(Value, Sweep), String> {
    let lines = Lines::new(text);
    let item = parse_document(text).map_err(|e| {
        let line = e.span().map_or(1, |s| lines.line_of(s.start));
        let message = e.message().trim().replace('\n', " ");
        format!("{file}:{line}: not valid TOML: {message}")
    })?;
    let mut at = HashMap::new();
    let doc = to_json(&item, "", &lines, &mut at).map_err(|(key, message)| {
        let line = line_of(&at, &key);
        format!("{file}:{line}: {key}: {message}")
    })?;
    let sweep = from_json(&doc).map_err(|e| {
        let line = line_of(&at, &e.key);
        if e.key.is_empty() {
            format!("{file}: {}", e.message)
        } else {
            format!("{file}:{line}: {}: {}", e.key, e.message)
        }
    })?;
    Ok((doc, sweep))
}

/// The line of `key`, or of the nearest enclosing key that has one (1 when none does).
fn line_of(at: &HashMap<String, usize>, key: &str) -> usize {
    let mut key = key;
    loop {
        if let Some(line) = at.get(key) {
            return *line;
        }
        match key.rfind(['.', '[']) {
            Some(i) => key = &key[..i],
            None => return 1,
        }
    }
}

fn to_json(
    item: &Item,
    key: &str,
    lines: &Lines,
    at: &mut HashMap<String, usize>,
) -> Result<Value, (String, String)> {
    if let Some(span) = &item.span {
        at.entry(key.to_string())
            .or_insert_with(|| lines.line_of(span.start));
    }
    Ok(match &item.node {
        Node::Str(s) => Value::String(s.clone()),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| (key.to_string(), format!("{f} is not a finite number")))?,
        Node::Bool(b) => Value::Bool(*b),
        Node::Datetime(_) => {
            return Err((
                key.to_string(),
                "a date/time is not a parameter value".into(),
            ))
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, it)| to_json(it, &format!("{key}[{i}]"), lines, at))
                .collect::<Result<_, _>>()?,
        ),
        Node::Table(entries) => {
            let mut map = Map::new();
            for e in entries {
                let sub = if key.is_empty() {
                    e.key.clone()
                } else {
                    format!("{key}.{}", e.key)
                };
                if let Some(span) = &e.key_span {
                    at.insert(sub.clone(), lines.line_of(span.start));
                }
                map.insert(e.key.clone(), to_json(&e.value, &sub, lines, at)?);
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_and_its_errors_with_lines() {
        let text = "cap = 2\n[grid]\nlr = [0.1, 0.01]\n\n[random]\nn = 3\nseed = 7\nx = { uniform = [-5, 5] }\n[stop]\nmetric = \"loss\"\nbelow = 0.5\n";
        let (doc, s) = from_toml("p.toml", text).unwrap();
        assert_eq!(doc["random"]["x"]["uniform"][1], 5);
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.cap, Some(2));
        let bad = text.replace("uniform = [-5, 5]", "uniform = [5, -5]");
        assert_eq!(
            from_toml("p.toml", &bad).unwrap_err(),
            "p.toml:8: random.x.uniform: low 5 is not below high -5"
        );
        let bad = text.replace("lr = [0.1, 0.01]", "lr = []");
        let e = from_toml("p.toml", &bad).unwrap_err();
        assert!(e.starts_with("p.toml:3: grid.lr: "), "{e}");
        let e = from_toml("p.toml", "[grid\nx=1").unwrap_err();
        assert!(e.starts_with("p.toml:1: not valid TOML"), "{e}");
        let e = from_toml("p.toml", "when = 1979-05-27\n[grid]\na=[1]").unwrap_err();
        assert!(e.starts_with("p.toml:1: when: "), "{e}");
        assert_eq!(
            from_toml("p.toml", "").unwrap_err(),
            "p.toml: give parameters in [grid] and/or [random]"
        );
    }
}

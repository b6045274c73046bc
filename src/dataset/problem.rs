//! Problem datasets, the pure part: which of a dataset's files is the problem script, the
//! custom split's files among a prepare fold's outputs, and the targets (`truth.json`) that
//! `datarun-prepare` writes from the script's `get_train_data` / `get_test_data`.
//!
//! The truth comes from the prepare fold, which runs only the dataset owner's script, never a
//! submission's code, so a submission cannot tamper with what it is scored against.

use serde_json::Value;
use std::collections::BTreeMap;

/// The name the original datarun gave the problem script.
pub const SPECIFIC: &str = "specific.py";
/// Where a problem dataset's files go in a fold's input (and the prepare fold's output).
pub const DATA_DIR: &str = "data";
/// The prepare fold's description, its command and its targets output.
pub const PREPARE_JSON: &str = "prepare.json";
pub const PREPARE_COMMAND: &str = "datarun-prepare";
pub const TRUTH_JSON: &str = "truth.json";

/// The script among a dataset's file names: `named` if given (it must be one of them and end
/// in `.py`), else the only `.py` file.
pub fn pick_script<'a>(
    names: impl IntoIterator<Item = &'a String>,
    named: Option<&str>,
) -> Result<String, String> {
    let names: Vec<&String> = names.into_iter().collect();
    let scripts: Vec<&&String> = names.iter().filter(|n| n.ends_with(".py")).collect();
    match named {
        Some(p) if !p.ends_with(".py") => Err(format!("problem: {p:?} is not a .py file")),
        Some(p) if names.iter().any(|n| n.as_str() == p) => Ok(p.to_string()),
        Some(p) => Err(format!(
            "problem: {p:?} is not among the files ({})",
            join(&names)
        )),
        None => match scripts.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(format!(
                "several files need a problem script (a .py file with prepare_data, get_train_data, get_test_data, train_submission, test_submission); the files are {}",
                join(&names)
            )),
            _ => Err(format!(
                "several .py files ({}): name the problem script with \"problem\"",
                scripts.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )),
        },
    }
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The custom split's files: the prepare fold's outputs under `data/`, by their name there.
pub fn split_files(outputs: &BTreeMap<String, (String, u64)>) -> BTreeMap<String, String> {
    let prefix = format!("{DATA_DIR}/");
    outputs
        .iter()
        .filter_map(|(name, (sha, _))| {
            name.strip_prefix(&prefix)
                .map(|rest| (rest.to_string(), sha.clone()))
        })
        .collect()
}

/// The targets of a custom split, as texts the scorer compares (`None`: a missing value).
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub y_train: Vec<Option<String>>,
    pub y_test: Vec<Option<String>>,
    /// The classes a classifier's probability columns stand for (sorted unique of y_train).
    pub labels: Option<Vec<String>>,
}

/// A label or number as text, the way the fold image's labels read: strings as they are,
/// numbers as Rust prints an f64 (so 3 and 3.0 agree), booleans as Python prints them.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Number(n) => n.as_f64().map(|x| x.to_string()),
        _ => None,
    }
}

/// Reads `truth.json`: {"n_train", "n_test", "y_train": [...], "y_test": [...], "labels"}.
pub fn parse_truth(data: &[u8]) -> Result<Truth, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("{TRUTH_JSON}: {e}"))?;
    let list = |key: &str| -> Result<Vec<Option<String>>, String> {
        let items = v[key]
            .as_array()
            .ok_or_else(|| format!("{TRUTH_JSON}: {key} is not a list"))?;
        let texts: Vec<Option<String>> = items.iter().map(text).collect();
        let n = v[format!("n_{}", &key[2..])].as_u64();
        if n.is_some_and(|n| n as usize != texts.len()) {
            return Err(format!(
                "{TRUTH_JSON}: {key} has {} values, n_{} says {}",
                texts.len(),
                &key[2..],
                n.unwrap_or(0)
            ));
        }
        Ok(texts)
    };
    let (y_train, y_test) = (list("y_train")?, list("y_test")?);
    if y_train.is_empty() {
        return Err(format!("{TRUTH_JSON}: get_train_data returned no rows"));
    }
    let labels = v["labels"]
        .as_array()
        .map(|ls| ls.iter().map(text).collect::<Option<Vec<_>>>())
        .unwrap_or(None);
    Ok(Truth {
        y_train,
        y_test,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_script_is_the_only_py_or_the_named_one() {
        let files = names(&["docs.jsonl", "problem.py"]);
        assert_eq!(pick_script(&files, None).unwrap(), "problem.py");
        let two = names(&["a.py", "b.py", "d.csv"]);
        assert!(pick_script(&two, None)
            .unwrap_err()
            .contains("name the problem script"));
        assert_eq!(pick_script(&two, Some("b.py")).unwrap(), "b.py");
        assert!(pick_script(&two, Some("c.py"))
            .unwrap_err()
            .contains("not among"));
        assert!(pick_script(&two, Some("d.csv"))
            .unwrap_err()
            .contains("not a .py"));
        let none = names(&["a.csv", "b.csv"]);
        assert!(pick_script(&none, None)
            .unwrap_err()
            .contains("need a problem script"));
    }

    #[test]
    fn split_files_are_the_outputs_under_data() {
        let mut out = BTreeMap::new();
        out.insert("data/train.jsonl".to_string(), ("s1".to_string(), 10));
        out.insert("data/sub/x.npy".to_string(), ("s2".to_string(), 3));
        out.insert("truth.json".to_string(), ("s3".to_string(), 5));
        let files = split_files(&out);
        assert_eq!(files.len(), 2);
        assert_eq!(files["train.jsonl"], "s1");
        assert_eq!(files["sub/x.npy"], "s2");
    }

    #[test]
    fn truth_reads_labels_and_numbers_as_the_image_prints_them() {
        let t = parse_truth(
            br#"{"n_train": 3, "n_test": 1, "y_train": ["a", "b", null], "y_test": [1.0], "labels": ["a", "b"]}"#,
        )
        .unwrap();
        assert_eq!(t.y_train, vec![Some("a".into()), Some("b".into()), None]);
        assert_eq!(t.y_test, vec![Some("1".into())]);
        assert_eq!(t.labels, Some(vec!["a".into(), "b".into()]));
        let err = parse_truth(br#"{"n_train": 2, "n_test": 0, "y_train": [1], "y_test": []}"#)
            .unwrap_err();
        assert!(err.contains("n_train says 2"), "{err}");
        assert!(parse_truth(br#"{"y_train": [], "y_test": []}"#)
            .unwrap_err()
            .contains("no rows"));
        assert!(parse_truth(b"not json").is_err());
    }
}

//! A submission fold's result, derived from its queue fold once that fold stops.
//!
//! | queue fold | submission fold |
//! | --- | --- |
//! | idle, assigned, running | `TODO` (the fold's state and reason say why it waits) |
//! | done, `phases.json` reached "tested" and there is a test table | `TESTED` |
//! | done, reached "validated", no test table (no split) | `VALIDATED` |
//! | done but short of those phases | `ERROR`: the phases it reached |
//! | failed, exit code 1 | `ERROR`: the submission failed, with the traceback from its log |
//! | failed, exit code 2 | `ERROR`: bad fold inputs, with the image's message |
//! | failed otherwise (time limit, signal, engine error) | `ERROR`: the outcome |
//! | held (out of memory, retries exhausted, missing image, unmatchable, by a person) | `ERROR`: the hold code and reason; releasing the fold puts it back to `TODO` |
//! | removed | `ERROR`: removed (cancelled) |
//!
//! So no submission fold stays `TODO` once its queue fold has stopped for any reason.

use super::npy::Array;
use super::Phase;
use crate::dataset::score::{self, Inputs};
use crate::dataset::ScoreType;
use crate::model::{FoldState, HoldCode, Outcome};
use std::collections::BTreeMap;

/// What the queue fold says about a run.
pub struct RunView<'a> {
    pub state: FoldState,
    pub reason: Option<&'a str>,
    pub hold_code: Option<HoldCode>,
    pub outcome: Option<&'a Outcome>,
    /// `phases.json` of the run ("trained", "validated", "tested"), empty if absent.
    pub phases: &'a [String],
    pub has_test_table: bool,
    pub log: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub phase: Phase,
    pub reason: Option<String>,
    pub traceback: Option<String>,
}

pub fn verdict(run: &RunView) -> Verdict {
    let error = |reason: String| Verdict {
        phase: Phase::Error,
        reason: Some(reason),
        traceback: None,
    };
    let reached = |p: &str| run.phases.iter().any(|x| x == p);
    match run.state {
        FoldState::Waiting | FoldState::Idle | FoldState::Assigned | FoldState::Running => {
            Verdict {
                phase: Phase::Todo,
                reason: run.reason.map(str::to_string),
                traceback: None,
            }
        }
        FoldState::Done if run.has_test_table && reached("tested") => Verdict {
            phase: Phase::Tested,
            reason: None,
            traceback: None,
        },
        FoldState::Done if !run.has_test_table && reached("validated") => Verdict {
            phase: Phase::Validated,
            reason: None,
            traceback: None,
        },
        FoldState::Done => error(format!(
            "the fold exited 0 but reached only the phases {:?} (phases.json)",
            run.phases
        )),
        FoldState::Failed => match run.outcome {
            Some(Outcome::ExitCode { code: 1 }) => {
                let traceback = traceback(run.log);
                let last = traceback
                    .as_deref()
                    .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
                    .map(str::to_string)
                    .or_else(|| last_message(run.log));
                Verdict {
                    phase: Phase::Error,
                    reason: Some(match last {
                        Some(l) => format!("the submission failed: {l}"),
                        None => "the submission failed (exit code 1)".to_string(),
                    }),
                    traceback,
                }
            }
            Some(Outcome::ExitCode { code: 2 }) => error(format!(
                "bad fold inputs: {}",
                last_message(run.log).unwrap_or_else(|| "exit code 2".into())
            )),
            Some(o) => error(o.to_string()),
            None => error(run.reason.unwrap_or("failed").to_string()),
        },
        FoldState::Held => error(format!(
            "held ({}): {}",
            run.hold_code.map(HoldCode::as_str).unwrap_or("held"),
            run.reason.unwrap_or("no reason given")
        )),
        FoldState::Removed => error(format!(
            "cancelled: {}",
            run.reason.unwrap_or("the fold was removed")
        )),
    }
}

const TRACEBACK: &str = "Traceback (most recent call last):";

/// The last Python traceback in a log: from its `Traceback (most recent call last):` line
/// through the indented frames to the exception line(s), up to a blank line or the end.
pub fn traceback(log: &str) -> Option<String> {
    let start = log.rfind(TRACEBACK)?;
    let mut out = Vec::new();
    let mut in_frames = true;
    for line in log[start..].lines() {
        if out.is_empty() {
            out.push(line);
            continue;
        }
        if in_frames && (line.starts_with(' ') || line.starts_with('\t')) {
            out.push(line);
            continue;
        }
        in_frames = false;
        if line.trim().is_empty() || line.starts_with("datarun-fold:") {
            break;
        }
        out.push(line);
    }
    Some(out.join("\n"))
}

/// The last `datarun-fold: ...` line of a log (the image's own message), else its last line.
fn last_message(log: &str) -> Option<String> {
    let lines = || log.lines().rev().filter(|l| !l.trim().is_empty());
    lines()
        .find_map(|l| l.strip_prefix("datarun-fold: "))
        .or_else(|| lines().next())
        .map(|l| l.trim().to_string())
}

/// The truth of one table's target column, as text (classifiers) or numbers (regressors).
pub type Truth = [Option<String>];

/// Each score type on `rows` of `pred` (all rows when None) against `truth` (one per
/// selected row). Classifier predictions are probabilities, columns in `labels` order. A
/// score that cannot be computed is left out, with why in the second map.
pub fn scores(
    kinds: &[ScoreType],
    pred: &Array,
    rows: Option<&[usize]>,
    truth: &Truth,
    labels: Option<&[String]>,
) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut ok = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let all = pred.rows();
    let selected: Vec<Vec<f64>> = match rows {
        Some(idx) => idx.iter().filter_map(|&i| all.get(i).cloned()).collect(),
        None => all,
    };
    for &kind in kinds {
        let r = score_one(kind, pred, &selected, truth, labels);
        match r {
            Ok(v) => {
                ok.insert(kind.name().to_string(), v);
            }
            Err(e) => {
                errors.insert(kind.name().to_string(), e);
            }
        }
    }
    (ok, errors)
}

fn score_one(
    kind: ScoreType,
    pred: &Array,
    rows: &[Vec<f64>],
    truth: &Truth,
    labels: Option<&[String]>,
) -> Result<f64, String> {
    if rows.len() != truth.len() {
        return Err(format!(
            "{} predictions for {} rows of truth",
            rows.len(),
            truth.len()
        ));
    }
    if rows.is_empty() {
        return Err("no rows to score".into());
    }
    let y_true = truth
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.clone()
                .ok_or_else(|| format!("the target is null on row {i}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if kind.is_classification() {
        if pred.shape.len() != 2 {
            return Err(format!(
                "{} needs class probabilities (2-D predictions), got shape {:?}",
                kind.name(),
                pred.shape
            ));
        }
        let inputs = Inputs {
            y_true,
            y_pred: None,
            y_proba: Some(rows.to_vec()),
            classes: labels.map(<[String]>::to_vec),
        };
        return score::compute(kind, &inputs);
    }
    if rows.iter().any(|r| r.len() != 1) {
        return Err(format!(
            "{} needs one value per row, got shape {:?}",
            kind.name(),
            pred.shape
        ));
    }
    let t = y_true
        .iter()
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .map_err(|_| format!("the target {x:?} is not a number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let p: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    Ok(match kind {
        ScoreType::Rmse => score::rmse(&t, &p),
        ScoreType::Mae => score::mae(&t, &p),
        _ => score::r2(&t, &p),
    })
}

/// Labels from `labels.json` as text, the way the dataset's CSV cells read: strings as they
/// are, integral numbers without ".0".
pub fn label_texts(labels: &serde_json::Value) -> Option<Vec<String>> {
    labels
        .as_array()?
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
            serde_json::Value::Number(n) => n.as_f64().map(|x| x.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;

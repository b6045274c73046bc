//! Scores of predictions, each defined as scikit-learn defines it (and checked against it in
//! `tests/datasets.rs`):
//!
//! | name | definition | better |
//! | --- | --- | --- |
//! | `accuracy` | share of rows whose predicted label equals the true one | higher |
//! | `roc_auc` | binary: area under the ROC curve of the second class's probability (ties count ½, as the Mann–Whitney U); more classes: the unweighted mean of each class against the rest (sklearn `multi_class="ovr", average="macro"`) | higher |
//! | `log_loss` | −mean log p(true class), probabilities clipped to [1e-15, 1 − 1e-15] and each row renormalised to sum 1 (sklearn ≤ 1.2 with `eps=1e-15`) | lower |
//! | `f1` | two labels: F1 of the greater label (in byte order: `1` of 0/1, `True` of False/True); more: the unweighted mean of each label's F1 over the labels in truth or prediction (sklearn `average="macro"`); a label never predicted nor true scores 0 | higher |
//! | `rmse` | √(mean squared error) | lower |
//! | `mae` | mean absolute error | lower |
//! | `r2` | 1 − SS_res / SS_tot; when the truth is constant: 1 if the predictions are exact, else 0 (sklearn `force_finite=True`) | higher |
//!
//! Labels are compared as text. Probabilities come as one row per sample, one column per class,
//! in the order of `classes` (default: the distinct true labels sorted by bytes, sklearn's
//! order for strings). Given probabilities only, the predicted label is the most probable class
//! (the first on ties), which is how RAMP turns probabilities into labels.

use serde::Serialize;
use std::collections::HashMap;

pub const LOG_LOSS_EPS: f64 = 1e-15;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ScoreType {
    Accuracy,
    RocAuc,
    LogLoss,
    F1,
    Rmse,
    Mae,
    R2,
}

impl ScoreType {
    pub const ALL: [ScoreType; 7] = [
        ScoreType::Accuracy,
        ScoreType::RocAuc,
        ScoreType::LogLoss,
        ScoreType::F1,
        ScoreType::Rmse,
        ScoreType::Mae,
        ScoreType::R2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScoreType::Accuracy => "accuracy",
            ScoreType::RocAuc => "roc_auc",
            ScoreType::LogLoss => "log_loss",
            ScoreType::F1 => "f1",
            ScoreType::Rmse => "rmse",
            ScoreType::Mae => "mae",
            ScoreType::R2 => "r2",
        }
    }

    pub fn parse(name: &str) -> Result<ScoreType, String> {
        let want = name.trim().to_ascii_lowercase().replace('-', "_");
        ScoreType::ALL
            .into_iter()
            .find(|s| s.name() == want)
            .ok_or_else(|| {
                let names: Vec<&str> = ScoreType::ALL.iter().map(|s| s.name()).collect();
                format!("unknown score type {name:?} (known: {})", names.join(", "))
            })
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, ScoreType::LogLoss | ScoreType::Rmse | ScoreType::Mae)
    }

    /// Whether it scores class labels or probabilities (else numbers: a regression).
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            ScoreType::Accuracy | ScoreType::RocAuc | ScoreType::LogLoss | ScoreType::F1
        )
    }
}

/// What a client sends to be scored: the truth and labels, values or probabilities, as text.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub y_true: Vec<String>,
    /// Predicted labels (classification) or values (regression).
    pub y_pred: Option<Vec<String>>,
    /// One row per sample, one column per class of `classes`.
    pub y_proba: Option<Vec<Vec<f64>>>,
    pub classes: Option<Vec<String>>,
}

pub fn compute(kind: ScoreType, inputs: &Inputs) -> Result<f64, String> {
    let n = inputs.y_true.len();
    if n == 0 {
        return Err("y_true is empty".into());
    }
    let name = kind.name();
    if !kind.is_classification() {
        let y_pred = inputs
            .y_pred
            .as_ref()
            .ok_or_else(|| format!("{name} needs y_pred (the predicted values)"))?;
        let t = numbers("y_true", &inputs.y_true)?;
        let p = numbers("y_pred", y_pred)?;
        same_len(name, n, p.len(), "y_pred")?;
        return Ok(match kind {
            ScoreType::Rmse => rmse(&t, &p),
            ScoreType::Mae => mae(&t, &p),
            _ => r2(&t, &p),
        });
    }
    let classes = match &inputs.classes {
        Some(c) => c.clone(),
        None => {
            let mut c = inputs.y_true.clone();
            c.sort();
            c.dedup();
            c
        }
    };
    match kind {
        ScoreType::Accuracy | ScoreType::F1 => {
            let pred = match (&inputs.y_pred, &inputs.y_proba) {
                (Some(p), _) => p.clone(),
                (None, Some(proba)) => {
                    check_proba(name, proba, n, &classes)?;
                    proba
                        .iter()
                        .map(|row| classes[argmax(row)].clone())
                        .collect()
                }
                (None, None) => return Err(format!("{name} needs y_pred or y_proba")),
            };
            same_len(name, n, pred.len(), "y_pred")?;
            Ok(if kind == ScoreType::Accuracy {
                accuracy(&inputs.y_true, &pred)
            } else {
                f1(&inputs.y_true, &pred)
            })
        }
        _ => {
            let proba = inputs.y_proba.as_ref().ok_or_else(|| {
                format!("{name} needs y_proba (one probability per class and row)")
            })?;
            check_proba(name, proba, n, &classes)?;
            let truth = class_indices(&inputs.y_true, &classes)?;
            if kind == ScoreType::LogLoss {
                Ok(log_loss(&truth, proba))
            } else {
                roc_auc(&truth, proba, classes.len())
            }
        }
    }
}

fn numbers(what: &str, xs: &[String]) -> Result<Vec<f64>, String> {
    xs.iter()
        .enumerate()
        .map(|(i, x)| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{what}[{i}] = {x:?} is not a number"))
        })
        .collect()
}

fn same_len(name: &str, n: usize, m: usize, what: &str) -> Result<(), String> {
    if n == m {
        Ok(())
    } else {
        Err(format!("{name}: y_true has {n} rows but {what} has {m}"))
    }
}

fn check_proba(name: &str, proba: &[Vec<f64>], n: usize, classes: &[String]) -> Result<(), String> {
    same_len(name, n, proba.len(), "y_proba")?;
    if classes.len() < 2 {
        return Err(format!(
            "{name} needs at least 2 classes, found {classes:?}"
        ));
    }
    for (i, row) in proba.iter().enumerate() {
        if row.len() != classes.len() {
            return Err(format!(
                "y_proba[{i}] has {} columns but there are {} classes {classes:?}",
                row.len(),
                classes.len()
            ));
        }
        if row.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(format!(
                "y_proba[{i}] has a negative or non-finite probability"
            ));
        }
    }
    Ok(())
}

fn class_indices(labels: &[String], classes: &[String]) -> Result<Vec<usize>, String> {
    // The first of equal classes, as a search from the front would find it.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(classes.len());
    for (i, c) in classes.iter().enumerate().rev() {
        index.insert(c, i);
    }
    labels
        .iter()
        .map(|l| {
            index.get(l.as_str()).copied().ok_or_else(|| {
                format!("the true label {l:?} is not one of the classes {classes:?}")
            })
        })
        .collect()
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, p) in row.iter().enumerate() {
        if *p > row[best] {
            best = i;
        }
    }
    best
}

pub fn accuracy<T: PartialEq>(y_true: &[T], y_pred: &[T]) -> f64 {
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    hits as f64 / y_true.len() as f64
}

/// A label's true positives, false positives and false negatives.
#[derive(Clone, Copy, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn f1(self) -> f64 {
        if self.tp == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / (2 * self.tp + self.fp + self.fn_) as f64
        }
    }
}

/// F1: binary (the greater label is positive) for up to two labels, else macro. One pass
/// counts every label (a label per row costs no more than two labels).
pub fn f1(y_true: &[String], y_pred: &[String]) -> f64 {
    let mut counts: HashMap<&str, Counts> = HashMap::new();
    for (t, p) in y_true.iter().zip(y_pred) {
        if t == p {
            counts.entry(t).or_default().tp += 1;
        } else {
            counts.entry(t).or_default().fn_ += 1;
            counts.entry(p).or_default().fp += 1;
        }
    }
    // Labels of rows beyond the shorter list still count as labels (scoring 0).
    let paired = y_true.len().min(y_pred.len());
    for l in y_true[paired..].iter().chain(&y_pred[paired..]) {
        counts.entry(l).or_default();
    }
    // Summed in label order, as always (the same last bits).
    let mut labels: Vec<&str> = counts.keys().copied().collect();
    labels.sort_unstable();
    match labels[..] {
        [] => 0.0,
        [.., greatest] if labels.len() <= 2 => counts[greatest].f1(),
        _ => labels.iter().map(|l| counts[l].f1()).sum::<f64>() / labels.len() as f64,
    }
}

/// AUC of `scores` for the rows where `positive` holds: P(score_pos > score_neg) + ½ P(=).
fn auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over ties, then Mann–Whitney U.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// ROC AUC: binary on the second column, else macro one-vs-rest. Refused when a class has
/// no rows or all of them (the curve is undefined).
pub fn roc_auc(y_true: &[usize], proba: &[Vec<f64>], n_classes: usize) -> Result<f64, String> {
    let one = |c: usize| {
        let positive: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        let scores: Vec<f64> = proba.iter().map(|row| row[c]).collect();
        auc(&positive, &scores).ok_or_else(|| {
            format!("roc_auc is undefined: class {c} is on no row or on every row of y_true")
        })
    };
    if n_classes == 2 {
        return one(1);
    }
    let mut sum = 0.0;
    for c in 0..n_classes {
        sum += one(c)?;
    }
    Ok(sum / n_classes as f64)
}

pub fn log_loss(y_true: &[usize], proba: &[Vec<f64>]) -> f64 {
    let total: f64 = y_true
        .iter()
        .zip(proba)
        .map(|(&t, row)| {
            let clipped: Vec<f64> = row
                .iter()
                .map(|p| p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))
                .collect();
            let sum: f64 = clipped.iter().sum();
            -(clipped[t] / sum).ln()
        })
        .sum();
    total / y_true.len() as f64
}

pub fn rmse(t: &[f64], p: &[f64]) -> f64 {
    (t.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / t.len() as f64).sqrt()
}

pub fn mae(t: &[f64], p: &[f64]) -> f64 {
    t.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / t.len() as f64
}

pub fn r2(t: &[f64], p: &[f64]) -> f64 {
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let ss_res: f64 = t.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum();
    let ss_tot: f64 = t.iter().map(|a| (a - mean) * (a - mean)).sum();
    if ss_tot == 0.0 {
        return if ss_res == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - ss_res / ss_tot
}

#[cfg(test)]
mod tests;

//! The leaderboard of a dataset: per submission, per phase (`valid`, `test`) and score type,
//! the mean and the sample standard deviation (ddof = 1, as pandas' `std()`; absent with one
//! fold) across the submission's ended folds that scored it (`TESTED`, or `VALIDATED` for a
//! submission without a test table). Ranked by the dataset's first score type on `test` (on
//! `valid` for submissions without a test table), best first, respecting whether higher is
//! better; submissions that have no such score go last, by id.

use crate::dataset::ScoreType;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

pub fn mean_std(xs: &[f64]) -> Option<Stat> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = (n > 1)
        .then(|| (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt());
    Some(Stat { mean, std, n })
}

/// One submission's scores per fold: phase → score type → value.
pub type FoldScores = BTreeMap<String, BTreeMap<String, f64>>;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub rank: usize,
    pub submission_id: i64,
    pub name: String,
    pub owner: String,
    /// Folds that counted (ended with scores).
    pub folds: usize,
    /// phase → score type → stat.
    pub scores: BTreeMap<String, BTreeMap<String, Stat>>,
}

pub struct Entry {
    pub submission_id: i64,
    pub name: String,
    pub owner: String,
    pub folds: Vec<FoldScores>,
}

pub fn leaderboard(score_types: &[ScoreType], entries: Vec<Entry>) -> Vec<Row> {
    let mut rows: Vec<Row> = entries
        .into_iter()
        .map(|e| {
            let mut values: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
            for fold in &e.folds {
                for (phase, scores) in fold {
                    for (kind, v) in scores {
                        let slot = values.entry(phase.clone()).or_default();
                        slot.entry(kind.clone()).or_default().push(*v);
                    }
                }
            }
            let scores = values
                .into_iter()
                .map(|(phase, kinds)| {
                    let stats = kinds
                        .into_iter()
                        .filter_map(|(k, xs)| mean_std(&xs).map(|s| (k, s)))
                        .collect();
                    (phase, stats)
                })
                .collect();
            Row {
                rank: 0,
                submission_id: e.submission_id,
                name: e.name,
                owner: e.owner,
                folds: e.folds.len(),
                scores,
            }
        })
        .collect();
    let first = score_types.first().copied();
    let key = |r: &Row| -> Option<f64> {
        let kind = first?;
        let of = |phase: &str| r.scores.get(phase)?.get(kind.name()).map(|s| s.mean);
        let v = of("test").or_else(|| of("valid"))?;
        Some(if kind.higher_is_better() { -v } else { v })
    };
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.submission_id.cmp(&b.submission_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.submission_id.cmp(&b.submission_id),
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(phase: &str, kind: &str, v: f64) -> FoldScores {
        BTreeMap::from([(phase.to_string(), BTreeMap::from([(kind.to_string(), v)]))])
    }

    #[test]
    fn mean_and_sample_std() {
        let s = mean_std(&[0.9, 1.0, 0.95, 0.95]).unwrap();
        assert!((s.mean - 0.95).abs() < 1e-12);
        // pandas: pd.Series([0.9, 1.0, 0.95, 0.95]).std() = 0.040824829046386304
        assert!((s.std.unwrap() - 0.040824829046386304).abs() < 1e-12);
        assert_eq!(mean_std(&[2.0]).unwrap().std, None);
        assert_eq!(mean_std(&[]), None);
    }

    #[test]
    fn ranks_respect_the_direction_of_the_first_score() {
        let entry = |id, v: f64| Entry {
            submission_id: id,
            name: format!("s{id}"),
            owner: "o".into(),
            folds: vec![fold("test", "rmse", v), fold("test", "rmse", v + 0.2)],
        };
        let rows = leaderboard(
            &[ScoreType::Rmse],
            vec![
                entry(1, 0.5),
                entry(2, 0.3),
                Entry {
                    submission_id: 3,
                    name: "none".into(),
                    owner: "o".into(),
                    folds: vec![],
                },
            ],
        );
        let order: Vec<i64> = rows.iter().map(|r| r.submission_id).collect();
        assert_eq!(order, [2, 1, 3], "lower rmse first, no scores last");
        assert_eq!(rows[0].rank, 1);
        let s = &rows[0].scores["test"]["rmse"];
        assert!((s.mean - 0.4).abs() < 1e-12 && s.n == 2);
        let acc = leaderboard(
            &[ScoreType::Accuracy],
            vec![
                Entry {
                    submission_id: 1,
                    name: "a".into(),
                    owner: "o".into(),
                    folds: vec![fold("valid", "accuracy", 0.8)],
                },
                Entry {
                    submission_id: 2,
                    name: "b".into(),
                    owner: "o".into(),
                    folds: vec![fold("valid", "accuracy", 0.9)],
                },
            ],
        );
        assert_eq!(
            acc[0].submission_id, 2,
            "higher accuracy first (valid when no test)"
        );
    }
}

//! Per-column statistics (in the manner of AWS Athena's column statistics) and the train/test
//! comparison of a split.
//!
//! - **numeric**: `count` (non-null cells), `nulls`, `zeros`, `negatives`, `mean`, `std` (the
//!   *sample* standard deviation, ddof = 1, as pandas `Series.std()`; null below 2 values),
//!   `min`, `max`, and a `histogram` of 10 equal-width bins over [min, max] computed as
//!   `numpy.histogram(values, bins=10)`: the last bin is closed, and a constant column gets
//!   the range [v − 0.5, v + 0.5].
//! - **categorical**: `count`, `nulls`, `empties` (non-null cells that are blank after trimming
//!   spaces, such as `" "`: empty cells themselves are nulls), `unique` (distinct non-null
//!   values), `top`: the 20 most frequent values with their counts (count descending, then
//!   value ascending), and `other`, the count of the cells outside the top.
//!
//! Nulls are those of [`super::csv::NULLS`] (pandas' defaults).
//!
//! **Similarity** of a column between train and test, in [0, 1], 1 = same distribution:
//! numeric: 1 − the two-sample Kolmogorov–Smirnov statistic (the largest gap between the two
//! empirical CDFs, as `scipy.stats.ks_2samp(...).statistic`); categorical: 1 − the total
//! variation distance between the value frequencies (½ Σ |p − q|). Nulls are left out; a
//! column with no values on one side has no similarity (null).

use super::csv::{Table, Values};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub const BINS: usize = 10;
pub const TOP: usize = 20;

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TableStats {
    pub rows: usize,
    pub columns: Vec<ColumnStats>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ColumnStats {
    pub name: String,
    pub count: usize,
    pub nulls: usize,
    #[serde(flatten)]
    pub kind: KindStats,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindStats {
    Numeric {
        zeros: usize,
        negatives: usize,
        mean: Option<f64>,
        std: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        histogram: Histogram,
    },
    Categorical {
        empties: usize,
        unique: usize,
        top: Vec<ValueCount>,
        other: usize,
    },
}

/// `edges` has one more entry than `counts` (empty when there are no values).
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<usize>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ValueCount {
    pub value: String,
    pub count: usize,
}

/// One column of a split: both sides' statistics and how alike they are.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ColumnComparison {
    pub name: String,
    pub train: ColumnStats,
    pub test: ColumnStats,
    pub similarity: Option<f64>,
    /// "1-ks" (numeric) or "1-tvd" (categorical).
    pub method: &'static str,
}

pub fn table_stats(table: &Table) -> TableStats {
    TableStats {
        rows: table.rows,
        columns: table
            .columns
            .iter()
            .map(|c| column_stats(&c.name, &c.values))
            .collect(),
    }
}

pub fn column_stats(name: &str, values: &Values) -> ColumnStats {
    match values {
        Values::Numeric(cells) => {
            let xs: Vec<f64> = cells.iter().flatten().copied().collect();
            ColumnStats {
                name: name.to_string(),
                count: xs.len(),
                nulls: cells.len() - xs.len(),
                kind: numeric(&xs),
            }
        }
        Values::Categorical(cells) => {
            let vs: Vec<&str> = cells.iter().flatten().map(String::as_str).collect();
            ColumnStats {
                name: name.to_string(),
                count: vs.len(),
                nulls: cells.len() - vs.len(),
                kind: categorical(&vs),
            }
        }
    }
}

fn numeric(xs: &[f64]) -> KindStats {
    let n = xs.len();
    let mean = (n > 0).then(|| xs.iter().sum::<f64>() / n as f64);
    let std = match mean {
        Some(m) if n > 1 => {
            Some((xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt())
        }
        _ => None,
    };
    let min = xs.iter().copied().reduce(f64::min);
    let max = xs.iter().copied().reduce(f64::max);
    KindStats::Numeric {
        zeros: xs.iter().filter(|x| **x == 0.0).count(),
        negatives: xs.iter().filter(|x| **x < 0.0).count(),
        mean,
        std,
        min,
        max,
        histogram: histogram(xs),
    }
}

/// `numpy.histogram(xs, bins=10)`, edge cases included (see the module doc).
pub fn histogram(xs: &[f64]) -> Histogram {
    let (Some(mut lo), Some(mut hi)) = (
        xs.iter().copied().reduce(f64::min),
        xs.iter().copied().reduce(f64::max),
    ) else {
        return Histogram::default();
    };
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    // numpy.linspace: start + i * step, the last edge exactly `hi`.
    let step = (hi - lo) / BINS as f64;
    let mut edges: Vec<f64> = (0..=BINS).map(|i| i as f64 * step + lo).collect();
    edges[BINS] = hi;
    let mut counts = vec![0usize; BINS];
    for &x in xs {
        let mut i = (((x - lo) / (hi - lo)) * BINS as f64) as usize;
        i = i.min(BINS - 1);
        // numpy's corrections for rounding at the edges.
        if i > 0 && x < edges[i] {
            i -= 1;
        }
        if i < BINS - 1 && x >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    }
    Histogram { edges, counts }
}

fn categorical(vs: &[&str]) -> KindStats {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in vs {
        *counts.entry(v).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.iter().map(|(v, c)| (*v, *c)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<ValueCount> = ranked
        .iter()
        .take(TOP)
        .map(|(v, c)| ValueCount {
            value: v.to_string(),
            count: *c,
        })
        .collect();
    let shown: usize = top.iter().map(|t| t.count).sum();
    KindStats::Categorical {
        empties: vs.iter().filter(|v| v.trim().is_empty()).count(),
        unique: counts.len(),
        top,
        other: vs.len() - shown,
    }
}

/// The two-sample Kolmogorov–Smirnov statistic: sup |F_a(x) − F_b(x)|. None if a side is empty.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    Some(d)
}

/// Total variation distance between the value frequencies of two samples. None if one is empty.
pub fn total_variation<S: AsRef<str>>(a: &[S], b: &[S]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // Counted, then divided once, so equal shares compare exactly equal.
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for v in a {
        counts.entry(v.as_ref()).or_default().0 += 1;
    }
    for v in b {
        counts.entry(v.as_ref()).or_default().1 += 1;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let gap: f64 = counts
        .values()
        .map(|(x, y)| (*x as f64 / na - *y as f64 / nb).abs())
        .sum();
    Some(0.5 * gap)
}

/// Train and test side by side, column by column (both tables have the same columns, as
/// `Table::take` makes them).
pub fn compare(train: &Table, test: &Table) -> Vec<ColumnComparison> {
    train
        .columns
        .iter()
        .zip(&test.columns)
        .map(|(a, b)| {
            let (similarity, method) = match (&a.values, &b.values) {
                (Values::Numeric(x), Values::Numeric(y)) => {
                    let x: Vec<f64> = x.iter().flatten().copied().collect();
                    let y: Vec<f64> = y.iter().flatten().copied().collect();
                    (ks_statistic(&x, &y).map(|d| 1.0 - d), "1-ks")
                }
                (Values::Categorical(x), Values::Categorical(y)) => {
                    let x: Vec<&String> = x.iter().flatten().collect();
                    let y: Vec<&String> = y.iter().flatten().collect();
                    (total_variation(&x, &y).map(|d| 1.0 - d), "1-tvd")
                }
                _ => (None, "none"),
            };
            ColumnComparison {
                name: a.name.clone(),
                train: column_stats(&a.name, &a.values),
                test: column_stats(&b.name, &b.values),
                similarity,
                method,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::csv::parse;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn numeric_stats_by_hand() {
        // values 1, 2, 0, -3, 5 (and a null): mean 1, deviations 0,1,-1,-4,4 → ss 34,
        // sample variance 34/4 = 8.5.
        let t = parse(b"x\n1\n2\n0\nNA\n-3\n5\n").unwrap();
        let s = column_stats("x", &t.columns[0].values);
        assert_eq!((s.count, s.nulls), (5, 1));
        let KindStats::Numeric {
            zeros,
            negatives,
            mean,
            std,
            min,
            max,
            histogram,
        } = s.kind
        else {
            panic!("not numeric")
        };
        assert_eq!((zeros, negatives), (1, 1));
        assert!(close(mean.unwrap(), 1.0));
        assert!(close(std.unwrap(), 8.5f64.sqrt()));
        assert_eq!((min, max), (Some(-3.0), Some(5.0)));
        // edges -3, -2.2, -1.4, -0.6, 0.2, 1.0, 1.8, ...: -3 → bin 0, 0 → bin 3, 1 → bin 5
        // (its left edge), 2 → bin 6, 5 → the last bin (closed).
        assert_eq!(histogram.counts, [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]);
        assert!(close(histogram.edges[5], 1.0));
    }

    #[test]
    fn histogram_edge_cases() {
        let cases: &[(&[f64], &[usize])] = &[
            (&[], &[]),
            (&[7.0], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            (&[2.0, 2.0, 2.0], &[0, 0, 0, 0, 0, 3, 0, 0, 0, 0]),
            (&[0.0, 10.0], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            (&[0.0, 1.0, 9.99, 10.0], &[1, 1, 0, 0, 0, 0, 0, 0, 0, 2]),
        ];
        for (xs, want) in cases {
            assert_eq!(&histogram(xs).counts, want, "{xs:?}");
        }
        assert_eq!(histogram(&[7.0]).edges[0], 6.5);
    }

    #[test]
    fn std_is_null_below_two_values_and_stats_of_an_all_null_column() {
        let t = parse(b"x,y\n4,\n").unwrap();
        let s = column_stats("x", &t.columns[0].values);
        assert!(matches!(
            s.kind,
            KindStats::Numeric {
                std: None,
                mean: Some(m),
                ..
            } if m == 4.0
        ));
        let s = column_stats("y", &t.columns[1].values);
        assert_eq!((s.count, s.nulls), (0, 1));
        assert!(matches!(
            s.kind,
            KindStats::Numeric {
                mean: None,
                min: None,
                ..
            }
        ));
    }

    #[test]
    fn categorical_stats_by_hand() {
        let t = parse(b"c\nb\na\nb\n\nnull\n \nc\nb\n").unwrap();
        let s = column_stats("c", &t.columns[0].values);
        assert_eq!((s.count, s.nulls), (6, 1)); // the blank line is skipped, "null" is null
        let KindStats::Categorical {
            empties,
            unique,
            top,
            other,
        } = s.kind
        else {
            panic!("not categorical")
        };
        assert_eq!((empties, unique, other), (1, 4, 0));
        let top: Vec<(&str, usize)> = top.iter().map(|v| (v.value.as_str(), v.count)).collect();
        assert_eq!(top, [("b", 3), (" ", 1), ("a", 1), ("c", 1)]);
    }

    #[test]
    fn top_keeps_twenty_and_counts_the_rest() {
        let mut csv = String::from("c\n");
        for i in 0..25 {
            for _ in 0..(i + 1) {
                csv.push_str(&format!("v{i:02}\n"));
            }
        }
        let t = parse(csv.as_bytes()).unwrap();
        let s = column_stats("c", &t.columns[0].values);
        let KindStats::Categorical { top, other, .. } = s.kind else {
            panic!()
        };
        assert_eq!(top.len(), 20);
        assert_eq!((top[0].value.as_str(), top[0].count), ("v24", 25));
        assert_eq!(other, 1 + 2 + 3 + 4 + 5);
    }

    #[test]
    fn ks_and_tvd_by_hand() {
        let cases: &[(&[f64], &[f64], f64)] = &[
            (&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 0.0),
            (&[1.0, 2.0], &[3.0, 4.0], 1.0),
            // F_a jumps at 1,2,3,4 by 1/4; F_b at 3,4,5: at x=2, 0.5 vs 0 → 0.5.
            (&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0], 0.5),
            // ties across samples: at x=1: 2/3 vs 1/2 → 1/6; at x=2: 1 vs 1/2 → 1/2
            (&[1.0, 1.0, 2.0], &[1.0, 3.0], 0.5),
        ];
        for (a, b, d) in cases {
            assert!(close(ks_statistic(a, b).unwrap(), *d), "{a:?} {b:?}");
        }
        assert_eq!(ks_statistic(&[], &[1.0]), None);
        // a: x 1/2, y 1/2; b: x 1/4, y 1/4, z 1/2 → ½(¼ + ¼ + ½) = ½
        assert!(close(
            total_variation(&["x", "y"], &["x", "y", "z", "z"]).unwrap(),
            0.5
        ));
        assert!(close(
            total_variation(&["a", "b"], &["b", "a"]).unwrap(),
            0.0
        ));
    }

    #[test]
    fn compare_puts_sides_together() {
        let t = parse(b"x,s\n1,a\n2,a\n3,b\n4,b\n").unwrap();
        let cmp = compare(&t.take(&[0, 2]), &t.take(&[1, 3]));
        assert_eq!(cmp.len(), 2);
        assert_eq!(cmp[0].method, "1-ks");
        assert!(close(cmp[0].similarity.unwrap(), 0.5));
        assert_eq!(cmp[1].method, "1-tvd");
        assert!(close(cmp[1].similarity.unwrap(), 1.0));
        assert_eq!(cmp[0].train.count, 2);
    }
}

//! Cross-validation folds over the training table, seeded with the same SplitMix64 +
//! Fisher–Yates as `dataset::split`, so a `(k, seed, stratify)` always gives the same folds.
//!
//! - Plain: shuffle `0..rows`, then deal the shuffled rows round-robin to the k test sets.
//! - Stratified: the classes in byte order of their names; each class's rows are shuffled in
//!   turn with the same generator and dealt round-robin, carrying on where the last class
//!   stopped, so every test set holds each class in proportion (± 1 row).
//!
//! Each fold's train indices are the rows not in its test set; both are sorted.

use crate::dataset::split::{by_class, shuffle, SplitMix64};

/// (train_is, test_is) per fold.
pub type Folds = Vec<(Vec<usize>, Vec<usize>)>;

pub const MAX_FOLDS: usize = 100;

pub fn kfold(
    rows: usize,
    k: usize,
    seed: u64,
    strata: Option<&[Option<String>]>,
) -> Result<Folds, String> {
    if !(2..=MAX_FOLDS).contains(&k) {
        return Err(format!("cv.k must be between 2 and {MAX_FOLDS}, not {k}"));
    }
    if k > rows {
        return Err(format!(
            "cv.k = {k} folds need at least {k} rows; the training table has {rows}"
        ));
    }
    let mut rng = SplitMix64::new(seed);
    let order: Vec<usize> = match strata {
        None => {
            let mut all: Vec<usize> = (0..rows).collect();
            shuffle(&mut all, &mut rng);
            all
        }
        Some(labels) => {
            let mut classes = by_class(labels).map_err(|nulls| {
                format!(
                    "cv.stratify: the target column has {nulls} null cells in the training table; stratified folds need a class on every row"
                )
            })?;
            let mut all = Vec::with_capacity(rows);
            for rows in classes.values_mut() {
                shuffle(rows, &mut rng);
                all.extend_from_slice(rows);
            }
            all
        }
    };
    let mut fold_of = vec![0usize; rows];
    for (p, &row) in order.iter().enumerate() {
        fold_of[row] = p % k;
    }
    Ok((0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) = (0..rows).partition(|&i| fold_of[i] == f);
            (train, test)
        })
        .collect())
}

/// Checks a client's fold: indices in range of the training table, no repeats, train and
/// test disjoint, train not empty. `what` names the fold in the message.
pub fn check_fold(what: &str, train: &[usize], test: &[usize], rows: usize) -> Result<(), String> {
    if train.is_empty() {
        return Err(format!(
            "{what}: train_is is empty; a fold needs rows to train on"
        ));
    }
    let mut seen = vec![0u8; rows];
    for (name, idx, mark) in [("train_is", train, 1u8), ("test_is", test, 2u8)] {
        for &i in idx {
            if i >= rows {
                return Err(format!(
                    "{what}: {name} has index {i}, out of range: the training table has {rows} rows (0 to {})",
                    rows.saturating_sub(1)
                ));
            }
            match seen[i] {
                0 => seen[i] = mark,
                m if m == mark => return Err(format!("{what}: {name} has index {i} twice")),
                _ => {
                    return Err(format!(
                        "{what}: index {i} is in both train_is and test_is; they must be disjoint"
                    ))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_cover_every_row_once_and_are_pinned() {
        let folds = kfold(10, 3, 42, None).unwrap();
        let mut all: Vec<usize> = folds.iter().flat_map(|(_, t)| t.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        for (train, test) in &folds {
            assert_eq!(train.len() + test.len(), 10);
            check_fold("f", train, test, 10).unwrap();
        }
        assert_eq!(
            folds.iter().map(|(_, t)| t.len()).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(kfold(10, 3, 42, None).unwrap(), folds, "deterministic");
        assert_ne!(kfold(10, 3, 43, None).unwrap(), folds);
    }

    #[test]
    fn stratified_folds_keep_the_shares() {
        let labels: Vec<Option<String>> = (0..120)
            .map(|i| Some(["a", "b", "c"][i % 3].to_string()))
            .collect();
        let folds = kfold(120, 5, 42, Some(&labels)).unwrap();
        for (_, test) in &folds {
            assert_eq!(test.len(), 24);
            for c in ["a", "b", "c"] {
                let n = test
                    .iter()
                    .filter(|&&i| labels[i].as_deref() == Some(c))
                    .count();
                assert_eq!(n, 8, "class {c}");
            }
        }
        let mut nulls = labels.clone();
        nulls[3] = None;
        assert!(kfold(120, 5, 42, Some(&nulls))
            .unwrap_err()
            .contains("1 null cells"));
    }

    #[test]
    fn bad_k_and_bad_indices_are_named() {
        assert!(kfold(10, 1, 0, None).unwrap_err().contains("between 2"));
        assert!(kfold(3, 5, 0, None)
            .unwrap_err()
            .contains("at least 5 rows"));
        assert!(check_fold("folds[0]", &[0, 9], &[1], 5)
            .unwrap_err()
            .contains("index 9, out of range"));
        assert!(check_fold("f", &[0, 1], &[1], 5)
            .unwrap_err()
            .contains("disjoint"));
        assert!(check_fold("f", &[0, 0], &[1], 5)
            .unwrap_err()
            .contains("twice"));
        assert!(check_fold("f", &[], &[1], 5).unwrap_err().contains("empty"));
        assert!(check_fold("f", &[0], &[], 5).is_ok());
    }
}

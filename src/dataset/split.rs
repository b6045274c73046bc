//! Held-out splits: a ratio of the rows goes to test, the rest to train, chosen by a seeded
//! shuffle that gives the same rows on every platform and every build: our own SplitMix64
//! generator and Fisher–Yates, so no dependency's algorithm can change a stored split.
//!
//! - The test side has `ceil(ratio × rows)` rows, as scikit-learn's `train_test_split`.
//! - Plain: shuffle 0..rows, the first `n_test` are test.
//! - Stratified: the rows of each class (classes in byte order of their names) are shuffled in
//!   turn with the same generator; class c gives `floor(ratio × n_c)` test rows, and the rows
//!   still missing to reach `n_test` go one each to the classes with the largest remainders
//!   (ties: the larger class, then the name). Every class must keep at least one row on each
//!   side, else the split is refused naming the class.
//!
//! Indices are returned sorted ascending.

use std::collections::BTreeMap;

/// SplitMix64 (Steele, Lea, Flood 2014), the generator Java's `SplittableRandom` uses.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), without modulo bias (rejection of the incomplete last range).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        // Accept x < 2^64 − (2^64 mod n): a whole number of ranges of n.
        let limit = u64::MAX - (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= limit {
                return x % n;
            }
        }
    }
}

/// Fisher–Yates (Durstenfeld): for i from the end, swap i with a uniform j in 0..=i.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOut {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `rows` rows; `strata` (one class per row, None = null) makes it stratified.
pub fn held_out(
    rows: usize,
    ratio: f64,
    seed: u64,
    strata: Option<&[Option<String>]>,
) -> Result<HeldOut, String> {
    if !(ratio > 0.0 && ratio < 1.0) {
        return Err(format!(
            "held_out_test must be between 0 and 1 (exclusive), not {ratio}"
        ));
    }
    let n_test = (ratio * rows as f64).ceil() as usize;
    if n_test >= rows {
        return Err(format!(
            "held_out_test {ratio} of {rows} rows leaves no row to train on"
        ));
    }
    let mut rng = SplitMix64::new(seed);
    let mut test = match strata {
        None => {
            let mut all: Vec<usize> = (0..rows).collect();
            shuffle(&mut all, &mut rng);
            all.truncate(n_test);
            all
        }
        Some(labels) => stratified(labels, ratio, n_test, &mut rng)?,
    };
    test.sort_unstable();
    let mut is_test = vec![false; rows];
    for &i in &test {
        is_test[i] = true;
    }
    let train = (0..rows).filter(|&i| !is_test[i]).collect();
    Ok(HeldOut { train, test })
}

/// The rows of each class, classes in byte order of their names; Err(how many nulls) when a
/// row has no class.
pub fn by_class(labels: &[Option<String>]) -> Result<BTreeMap<&str, Vec<usize>>, usize> {
    let nulls = labels.iter().filter(|l| l.is_none()).count();
    if nulls > 0 {
        return Err(nulls);
    }
    let mut classes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        classes
            .entry(l.as_deref().unwrap_or(""))
            .or_default()
            .push(i);
    }
    Ok(classes)
}

fn stratified(
    labels: &[Option<String>],
    ratio: f64,
    n_test: usize,
    rng: &mut SplitMix64,
) -> Result<Vec<usize>, String> {
    let mut classes = by_class(labels).map_err(|nulls| {
        format!(
            "the target column has {nulls} null cells; a stratified split needs a class on every row"
        )
    })?;
    // Largest remainder allocation of n_test over the classes.
    let mut alloc: Vec<(&str, usize, usize, f64)> = classes
        .iter()
        .map(|(c, rows)| {
            let exact = ratio * rows.len() as f64;
            (
                *c,
                rows.len(),
                exact.floor() as usize,
                exact - exact.floor(),
            )
        })
        .collect();
    let given: usize = alloc.iter().map(|a| a.2).sum();
    let mut order: Vec<usize> = (0..alloc.len()).collect();
    order.sort_by(|&a, &b| {
        alloc[b]
            .3
            .total_cmp(&alloc[a].3)
            .then(alloc[b].1.cmp(&alloc[a].1))
            .then(alloc[a].0.cmp(alloc[b].0))
    });
    for &k in order.iter().take(n_test.saturating_sub(given)) {
        alloc[k].2 += 1;
    }
    for (class, size, n, _) in &alloc {
        if *n == 0 || n == size {
            let side = if *n == 0 { "test" } else { "train" };
            return Err(format!(
                "class {class:?} has {size} row(s): too few to stratify with held_out_test {ratio} (it would have no {side} row); use a larger ratio or no stratify"
            ));
        }
    }
    let mut test = Vec::with_capacity(n_test);
    for ((_, rows), (_, _, n, _)) in classes.iter_mut().zip(&alloc) {
        shuffle(rows, rng);
        test.extend_from_slice(&rows[..*n]);
    }
    Ok(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for state 0 of the reference splitmix64.c (Vigna), as published.
        let mut r = SplitMix64::new(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f]
        );
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[r.below(3) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 900), "{seen:?}");
        assert_eq!(SplitMix64::new(1).below(1), 0);
        let big = u64::MAX / 2 + 7;
        assert!(SplitMix64::new(2).below(big) < big);
    }

    #[test]
    fn the_same_seed_gives_the_same_split_and_another_seed_another() {
        let a = held_out(100, 0.25, 42, None).unwrap();
        assert_eq!(a, held_out(100, 0.25, 42, None).unwrap());
        assert_ne!(a, held_out(100, 0.25, 43, None).unwrap());
        assert_eq!((a.train.len(), a.test.len()), (75, 25));
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(a.test.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_pinned_split_never_changes() {
        // Stored splits must stay reproducible: 10 rows, ratio 0.3, seed 42, as also computed
        // by a separate Python transcription of the module doc; a change here breaks every
        // stored random_state.
        let s = held_out(10, 0.3, 42, None).unwrap();
        assert_eq!(s.test, [0, 5, 9]);
        assert_eq!(s.train, [1, 2, 3, 4, 6, 7, 8]);
    }

    #[test]
    fn test_size_is_the_ceiling_like_sklearn() {
        for (rows, ratio, n_test) in [(10, 0.25, 3), (150, 0.2, 30), (7, 0.1, 1), (3, 0.5, 2)] {
            assert_eq!(
                held_out(rows, ratio, 0, None).unwrap().test.len(),
                n_test,
                "{rows} {ratio}"
            );
        }
    }

    fn labels(spec: &[(&str, usize)]) -> Vec<Option<String>> {
        spec.iter()
            .flat_map(|(c, n)| std::iter::repeat_n(Some(c.to_string()), *n))
            .collect()
    }

    #[test]
    fn stratified_keeps_class_proportions() {
        let l = labels(&[("a", 50), ("b", 50), ("c", 50)]);
        let s = held_out(150, 0.2, 42, Some(&l)).unwrap();
        assert_eq!(s.test.len(), 30);
        for c in ["a", "b", "c"] {
            let n = s
                .test
                .iter()
                .filter(|&&i| l[i].as_deref() == Some(c))
                .count();
            assert_eq!(n, 10, "class {c}");
        }
        // Uneven classes: 0.3 × (7, 3, 10) = 2.1, 0.9, 3 → floors 2, 0, 3, n_test 6, one more
        // to b (largest remainder .9).
        let l = labels(&[("a", 7), ("b", 3), ("c", 10)]);
        let s = held_out(20, 0.3, 1, Some(&l)).unwrap();
        let count = |c: &str| {
            s.test
                .iter()
                .filter(|&&i| l[i].as_deref() == Some(c))
                .count()
        };
        assert_eq!((count("a"), count("b"), count("c")), (2, 1, 3));
    }

    #[test]
    fn refusals_say_why() {
        type Case = (usize, f64, Option<Vec<Option<String>>>, &'static str);
        let cases: Vec<Case> = vec![
            (10, 1.5, None, "between 0 and 1"),
            (10, 0.0, None, "between 0 and 1"),
            (10, f64::NAN, None, "between 0 and 1"),
            (10, 0.95, None, "leaves no row to train on"),
            (
                11,
                0.2,
                Some(labels(&[("a", 10), ("b", 1)])),
                "class \"b\" has 1 row(s)",
            ),
            (
                3,
                0.5,
                Some(vec![Some("a".into()), None, Some("a".into())]),
                "1 null cells",
            ),
        ];
        for (rows, ratio, strata, want) in cases {
            let err = held_out(rows, ratio, 42, strata.as_deref()).unwrap_err();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}

//! scikit-learn's `train_test_split(X, test_size=t, random_state=seed)` row indices, bit for
//! bit: numpy's legacy `RandomState(seed).permutation(n)` (MT19937 seeded like numpy's
//! legacy integer seeding, then the legacy Fisher–Yates shuffle with numpy's masked-rejection
//! bounded draw) and `ShuffleSplit`'s arithmetic (`n_test = ceil(t·n)`, `n_train = n − n_test`,
//! test = `perm[:n_test]`, train = `perm[n_test:n_test + n_train]`).
//!
//! The `/runapp/` compatibility layer needs it because databoard recomputes the split locally
//! with scikit-learn and aligns the predictions it gets back with its own `y_test`.
//! Checked against scikit-learn in the fold image by `tests/sklearn_split.rs`.
//!
//! **Pure**: no IO.

const N: usize = 624;
const M: usize = 397;

/// numpy's legacy MT19937 (`randomkit`).
pub struct Mt19937 {
    key: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// `RandomState(seed)` for an integer seed in 0..2³² (numpy's `mt19937_seed`).
    pub fn new(seed: u32) -> Mt19937 {
        let mut key = [0u32; N];
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Mt19937 { key, pos: N }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        let mag = |y: u32| if y & 1 == 1 { 0x9908_b0df } else { 0 };
        for i in 0..N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % N] & LOWER);
            self.key[i] = self.key[(i + M) % N] ^ (y >> 1) ^ mag(y);
        }
        self.pos = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// A uniform integer in `0..=max` (numpy's legacy `random_interval`).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        loop {
            let v = if max <= 0xffff_ffff {
                self.next_u32() as u64 & mask
            } else {
                self.next_u64() & mask
            };
            if v <= max {
                return v;
            }
        }
    }
}

/// `numpy.random.RandomState(seed).permutation(n)`.
pub fn permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.interval(i as u64) as usize;
        v.swap(i, j);
    }
    v
}

/// `(train, test)` row indices of `train_test_split(X, test_size, random_state=seed)` for `n`
/// rows, or why scikit-learn would refuse.
pub fn train_test_split(
    n: usize,
    test_size: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), String> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(format!(
            "held_out_test: {test_size} is not a fraction strictly between 0 and 1"
        ));
    }
    let seed = u32::try_from(seed)
        .map_err(|_| format!("random_state: {seed} is not between 0 and 2**32 - 1"))?;
    let n_test = (test_size * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(format!(
            "held_out_test {test_size} of {n} rows leaves an empty train or test set"
        ));
    }
    let perm = permutation(n, seed);
    let test = perm[..n_test].to_vec();
    let train = perm[n_test..].to_vec();
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_known_outputs() {
        // np.random.RandomState(42).permutation(10)
        assert_eq!(permutation(10, 42), vec![8, 1, 5, 0, 7, 2, 9, 4, 3, 6]);
        // np.random.RandomState(5489).randint(0, 2**32) draws the reference MT19937 stream.
        let mut r = Mt19937::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
    }

    #[test]
    fn split_arithmetic() {
        let (train, test) = train_test_split(150, 0.2, 42).unwrap();
        assert_eq!((train.len(), test.len()), (120, 30));
        let perm = permutation(150, 42);
        assert_eq!(test, perm[..30]);
        assert_eq!(train, perm[30..]);
        // ceil: 0.25 of 10 rows is 3 test rows.
        assert_eq!(train_test_split(10, 0.25, 0).unwrap().1.len(), 3);
        assert!(train_test_split(10, 1.0, 0).is_err());
        assert!(train_test_split(10, 0.2, 1 << 32).is_err());
    }
}

//! Array specifications as Slurm writes them: `0-4`, `0-99:2`, `1,3,5-7`, and a cap on how
//! many run at once after `%`: `0-99%8`.

use super::limits::MAX_ARRAY;

/// An array's indices, in the order given (each once), and its cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    pub indices: Vec<i64>,
    pub cap: Option<u32>,
}

/// Parses `0-99:2%8`; the error says what is wrong, naming the part.
pub fn parse_array(text: &str) -> Result<ArraySpec, String> {
    let text = text.trim();
    let (ranges, cap) = match text.split_once('%') {
        Some((r, c)) => {
            let cap: u32 =
                c.trim().parse().ok().filter(|c| *c > 0).ok_or_else(|| {
                    format!("array: the cap {c:?} after % is not a positive number")
                })?;
            (r, Some(cap))
        }
        None => (text, None),
    };
    if ranges.trim().is_empty() {
        return Err(
            "array: give indices, e.g. 0-4, 0-99:2, 1,3,5-7 (and %N to run at most N at once)"
                .into(),
        );
    }
    let mut indices = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for part in ranges.split(',') {
        let part = part.trim();
        let number = |s: &str| -> Result<i64, String> {
            s.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=i64::from(u32::MAX)).contains(n))
                .ok_or_else(|| format!("array: {s:?} in {part:?} is not an index (0 or more)"))
        };
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => {
                let step = number(s)?;
                if step == 0 {
                    return Err(format!("array: the step in {part:?} must be at least 1"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(range)?;
                (n, n)
            }
        };
        if last < first {
            return Err(format!("array: {part:?} ends before it starts"));
        }
        if (last - first) / step + 1 + indices.len() as i64 > MAX_ARRAY as i64 {
            return Err(format!("array: more than {MAX_ARRAY} folds"));
        }
        let mut i = first;
        while i <= last {
            if seen.insert(i) {
                indices.push(i);
            }
            i += step;
        }
    }
    Ok(ArraySpec { indices, cap })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_steps_lists_and_caps() {
        let ok = |t: &str| parse_array(t).unwrap();
        assert_eq!(ok("0-4").indices, vec![0, 1, 2, 3, 4]);
        assert_eq!(ok("0-9:3").indices, vec![0, 3, 6, 9]);
        assert_eq!(ok("1,3,5-7").indices, vec![1, 3, 5, 6, 7]);
        assert_eq!(ok("2,2,1-2").indices, vec![2, 1], "each index once");
        assert_eq!(
            ok("0-99%8"),
            ArraySpec {
                indices: (0..100).collect(),
                cap: Some(8)
            }
        );
        assert_eq!(ok("7").indices, vec![7]);
        for (bad, says) in [
            ("", "give indices"),
            ("4-1", "ends before it starts"),
            ("0-9:0", "step"),
            ("a-3", "\"a\""),
            ("-1", "is not an index"),
            ("0-4%0", "cap"),
            ("0-4%x", "cap"),
            ("0-200000", "more than 100000"),
        ] {
            let e = parse_array(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

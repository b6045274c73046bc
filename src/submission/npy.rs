//! A small reader for NumPy `.npy` files (format 1.0, 2.0 and 3.0) holding little-endian,
//! C-order arrays of `float64` (`<f8`), `float32` (`<f4`) or `int64` (`<i8`): what the fold
//! image writes for predictions. Values come out as `f64`; anything else is refused by name.

#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The numpy dtype string as written, e.g. `<f8`.
    pub dtype: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Array {
    /// Rows of a 2-D array (or one value per row of a 1-D one).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        match self.shape.as_slice() {
            [_, cols] if *cols > 0 => self.values.chunks(*cols).map(<[f64]>::to_vec).collect(),
            [_, _] => Vec::new(),
            _ => self.values.iter().map(|v| vec![*v]).collect(),
        }
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let end = start
        .checked_add(len)
        .filter(|e| *e <= bytes.len())
        .ok_or(".npy header is cut short")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| ".npy header is not text")?;
    let dtype = field(header, "descr")?;
    let dtype = dtype.trim_matches(|c| c == '\'' || c == '"').to_string();
    if field(header, "fortran_order")? != "False" {
        return Err("Fortran-order .npy arrays are not supported".into());
    }
    let shape_text = field(header, "shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {shape_text:?}"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or("shape too large")?;
    let width = match dtype.as_str() {
        "<f8" | "<i8" => 8,
        "<f4" => 4,
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (float64, float32 or int64, little-endian)"
            ))
        }
    };
    let data = &bytes[end..];
    if data.len() != count * width {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {} bytes of data, the file has {}",
            count * width,
            data.len()
        ));
    }
    let values = data
        .chunks_exact(width)
        .map(|c| match dtype.as_str() {
            "<f8" => f64::from_le_bytes(c.try_into().expect("8 bytes")),
            "<i8" => i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64,
            _ => f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64,
        })
        .collect();
    Ok(Array {
        dtype,
        shape,
        values,
    })
}

/// The value of `'key': value` in the header dict (a quoted string, True/False or a tuple).
fn field<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let at = header
        .find(&format!("'{key}'"))
        .ok_or_else(|| format!(".npy header lacks {key:?}"))?;
    let rest = header[at + key.len() + 2..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| format!(".npy header: no value for {key:?}"))?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q).map(|i| i + 2)
    } else {
        rest.find([',', '}'])
    };
    Ok(rest[..end.ok_or_else(|| format!(".npy header: bad value for {key:?}"))?].trim())
}

/// Writes a float64 C-order array as .npy version 1.0 (for tests and tools).
pub fn write_f64(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of `np.save(f, np.array([[0.25, 0.75], [1.0, 0.0]]))` by numpy 1.26.
    fn numpy_2x2() -> Vec<u8> {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
        let mut h = header.to_string();
        h.push_str(&" ".repeat(118 - header.len() - 1));
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        for v in [0.25f64, 0.75, 1.0, 0.0] {
            b.extend(v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_float64_matrices_and_vectors() {
        let a = parse(&numpy_2x2()).unwrap();
        assert_eq!((a.dtype.as_str(), a.shape.clone()), ("<f8", vec![2, 2]));
        assert_eq!(a.rows(), vec![vec![0.25, 0.75], vec![1.0, 0.0]]);
        let v = parse(&write_f64(&[3], &[1.5, -2.0, 3.0])).unwrap();
        assert_eq!(
            (v.shape.clone(), v.values.clone()),
            (vec![3], vec![1.5, -2.0, 3.0])
        );
        assert_eq!(v.rows(), vec![vec![1.5], vec![-2.0], vec![3.0]]);
        assert_eq!(write_f64(&[2, 2], &[0.25, 0.75, 1.0, 0.0]).len() % 64, 32);
    }

    #[test]
    fn reads_float32_and_int64() {
        let mut b = write_f64(&[2], &[0.0, 0.0]);
        let at = b.windows(4).position(|w| w == b"<f8'").unwrap();
        b[at..at + 3].copy_from_slice(b"<i8");
        let n = b.len();
        b[n - 16..n - 8].copy_from_slice(&7i64.to_le_bytes());
        b[n - 8..].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(parse(&b).unwrap().values, vec![7.0, -1.0]);
        let mut f = write_f64(&[2], &[0.0, 0.0]);
        f[at..at + 3].copy_from_slice(b"<f4");
        f.truncate(f.len() - 16);
        f.extend(0.5f32.to_le_bytes());
        f.extend(2.0f32.to_le_bytes());
        assert_eq!(parse(&f).unwrap().values, vec![0.5, 2.0]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse(b"hello").unwrap_err().contains("magic"));
        let mut b = numpy_2x2();
        b.pop();
        assert!(parse(&b).unwrap_err().contains("needs 32 bytes"));
        let mut o = numpy_2x2();
        let at = o.windows(4).position(|w| w == b"<f8'").unwrap();
        o[at..at + 3].copy_from_slice(b"|O8");
        assert!(parse(&o).unwrap_err().contains("not supported"));
        let mut fo = numpy_2x2();
        let at = fo.windows(5).position(|w| w == b"False").unwrap();
        fo[at..at + 5].copy_from_slice(b"True ");
        assert!(parse(&fo).unwrap_err().contains("Fortran"));
    }
}

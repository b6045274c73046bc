//! The original's encodings: standard base64 (lenient like Python 2's `b64decode`: characters
//! outside the alphabet are skipped) of zlib streams; row indices int64 little-endian;
//! predictions float64 little-endian, flattened row-major.

use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use std::io::{Read, Write};

/// Decompressed data larger than this is refused (a zlib bomb must not fill the memory).
const MAX_INFLATED: u64 = 1 << 30;

/// base64 → zlib → bytes, or why not.
pub fn decode_zb64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    let z = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("not valid base64 ({e})"))?;
    let mut out = Vec::new();
    ZlibDecoder::new(z.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a zlib stream ({e})"))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(format!("inflates to more than {MAX_INFLATED} bytes"));
    }
    Ok(out)
}

/// bytes → zlib (level 6, like Python's `zlib.compress`) → base64.
pub fn encode_zb64(data: &[u8]) -> String {
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(data).expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(z.finish().expect("writing to memory"))
}

/// `b64(zlib(int64 LE))` row indices, each below `rows`.
pub fn decode_indices(text: &str, rows: usize) -> Result<Vec<usize>, String> {
    let data = decode_zb64(text)?;
    if data.len() % 8 != 0 {
        return Err(format!(
            "{} bytes is not a whole number of int64 indices",
            data.len()
        ));
    }
    data.chunks_exact(8)
        .map(|c| {
            let v = i64::from_le_bytes(c.try_into().expect("8 bytes"));
            usize::try_from(v)
                .ok()
                .filter(|&i| i < rows)
                .ok_or_else(|| format!("index {v} is not a row of the {rows} training rows"))
        })
        .collect()
}

/// `b64(zlib(float64 LE))` of values (already row-major).
pub fn encode_f64(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode_zb64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_zlib_base64() {
        // base64.b64encode(zlib.compress(np.array([0, 2, 5], dtype=np.int64).tobytes()))
        let py = "eJxjYIAAJijNCqUBAGAACA==";
        assert_eq!(decode_indices(py, 6).unwrap(), vec![0, 2, 5]);
        // Python 2's b64decode skips characters outside the alphabet.
        assert_eq!(
            decode_indices("eJxjYIAAJijN\nCqUBAGAACA==", 6).unwrap(),
            vec![0, 2, 5]
        );
        assert!(decode_indices(py, 5).unwrap_err().contains("index 5"));
        let values = [0.25, -1.5, 3.0];
        let back = decode_zb64(&encode_f64(&values)).unwrap();
        assert_eq!(back.len(), 24);
        assert_eq!(f64::from_le_bytes(back[8..16].try_into().unwrap()), -1.5);
        assert!(encode_zb64(b"x").starts_with("eJ")); // zlib header 78 9c
        assert!(decode_zb64("bm90IHpsaWI=").unwrap_err().contains("zlib"));
    }
}

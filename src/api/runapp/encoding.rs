//! The original's encodings: standard base64 (lenient like Python 2's `b64decode`: characters
//! outside the alphabet are skipped) of zlib streams; row indices int64 little-endian;
//! predictions float64 little-endian, flattened row-major.

use crate::model::limits::bytes;
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use std::io::{Read, Write};

/// What the b64(zlib) fields of one request may still inflate to, together: a zlib bomb
/// (1 GiB of zeros is about 1 MB compressed) stops at the cap, while it is being inflated,
/// and answers 413; many fields cannot add up past it either. The cap is
/// `serve --max-inflated` (64 MiB by default).
pub struct Inflater {
    cap: usize,
    left: usize,
}

/// Why a b64(zlib) field was refused: the message, and whether it was over the cap (413)
/// rather than malformed (400).
#[derive(Debug)]
pub struct Undecodable {
    pub message: String,
    pub too_large: bool,
}

impl Undecodable {
    fn invalid(message: String) -> Undecodable {
        Undecodable {
            message,
            too_large: false,
        }
    }
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Inflater {
    pub fn new(cap: usize) -> Inflater {
        Inflater { cap, left: cap }
    }

    /// base64 → zlib → bytes, inflated in chunks and stopped at what is left of the cap.
    pub fn decode(&mut self, text: &str) -> Result<Vec<u8>, Undecodable> {
        let z = base64::engine::general_purpose::STANDARD
            .decode(compact(text))
            .map_err(|e| Undecodable::invalid(format!("not valid base64 ({e})")))?;
        let mut inflater = ZlibDecoder::new(z.as_slice());
        let mut out: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = inflater
                .read(&mut chunk)
                .map_err(|e| Undecodable::invalid(format!("not a zlib stream ({e})")))?;
            if n == 0 {
                break;
            }
            if out.len() + n > self.left {
                return Err(Undecodable {
                    message: format!(
                        "inflates to more than {} (the request's b64(zlib) fields together may inflate to at most {}: serve --max-inflated)",
                        bytes(self.left),
                        bytes(self.cap)
                    ),
                    too_large: true,
                });
            }
            if out.capacity() < out.len() + n {
                // Grow by doubling, but never past what is left: no allocation over the cap.
                let want = (out.capacity() * 2).max(out.len() + n).min(self.left);
                out.reserve_exact(want - out.len());
            }
            out.extend_from_slice(&chunk[..n]);
        }
        self.left -= out.len();
        Ok(out)
    }

    /// `b64(zlib(int64 LE))` row indices, each below `rows`.
    pub fn indices(&mut self, text: &str, rows: usize) -> Result<Vec<usize>, Undecodable> {
        let data = self.decode(text)?;
        if data.len() % 8 != 0 {
            return Err(Undecodable::invalid(format!(
                "{} bytes is not a whole number of int64 indices",
                data.len()
            )));
        }
        data.chunks_exact(8)
            .map(|c| {
                let v = i64::from_le_bytes(c.try_into().expect("8 bytes"));
                usize::try_from(v)
                    .ok()
                    .filter(|&i| i < rows)
                    .ok_or_else(|| {
                        Undecodable::invalid(format!(
                            "index {v} is not a row of the {rows} training rows"
                        ))
                    })
            })
            .collect()
    }
}

/// Base64 text without what decoders skip (line breaks, spaces, anything outside the
/// alphabet): what a client's text decodes to, in as few bytes as it takes. Kept in place of
/// the posted text, so that padding does not make a fold's stored and listed text larger
/// than its indices.
pub fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect()
}

/// bytes → zlib (level 6, like Python's `zlib.compress`) → base64.
pub fn encode_zb64(data: &[u8]) -> String {
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(data).expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(z.finish().expect("writing to memory"))
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
        let mut z = Inflater::new(1 << 20);
        // base64.b64encode(zlib.compress(np.array([0, 2, 5], dtype=np.int64).tobytes()))
        let py = "eJxjYIAAJijNCqUBAGAACA==";
        assert_eq!(z.indices(py, 6).unwrap(), vec![0, 2, 5]);
        // Python 2's b64decode skips characters outside the alphabet.
        assert_eq!(
            z.indices("eJxjYIAAJijN\nCqUBAGAACA==", 6).unwrap(),
            vec![0, 2, 5]
        );
        assert!(z.indices(py, 5).unwrap_err().message.contains("index 5"));
        let values = [0.25, -1.5, 3.0];
        let back = z.decode(&encode_f64(&values)).unwrap();
        assert_eq!(back.len(), 24);
        assert_eq!(f64::from_le_bytes(back[8..16].try_into().unwrap()), -1.5);
        assert!(encode_zb64(b"x").starts_with("eJ")); // zlib header 78 9c
        let e = z.decode("bm90IHpsaWI=").unwrap_err();
        assert!(e.message.contains("zlib") && !e.too_large, "{e}");
    }

    #[test]
    fn a_bomb_stops_at_the_cap_and_fields_add_up() {
        let bomb = encode_zb64(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10, "8 MiB of zeros compress well");
        let mut z = Inflater::new(1 << 20);
        let e = z.decode(&bomb).unwrap_err();
        assert!(e.too_large && e.message.contains("1 MiB"), "{e}");
        // 600 KiB fits, a second 600 KiB does not: the cap is for the request.
        let part = encode_zb64(&vec![1u8; 600 << 10]);
        let mut z = Inflater::new(1 << 20);
        assert_eq!(z.decode(&part).unwrap().len(), 600 << 10);
        assert!(z.decode(&part).unwrap_err().too_large);
    }
}

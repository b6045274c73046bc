//! Human units used across the inventory, the CLI and the API: sizes ("16G", "512M")
//! and durations ("5m", "300s", "1h30m").

use std::time::Duration;

/// Parses a size such as `16G`, `512M`, `200MiB`, `1.5G` or a plain byte count.
/// Suffixes are binary (K = 1024). Returns a message fit for a user on error.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty size (expected e.g. \"16G\", \"512M\" or a byte count)".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "bad size {text:?}: unknown unit {unit:?} (use K, M, G or T)"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected a number followed by K, M, G or T"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("bad size {text:?}: must not be negative"));
    }
    let bytes = value * mult as f64;
    // Stored as a signed 64-bit integer: 2^63 itself would not read back.
    if bytes >= i64::MAX as f64 {
        return Err(format!("bad size {text:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes with a binary suffix and at most one decimal: `1.5G`, `200M`, `512B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (suffix, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            return if (v - v.round()).abs() < 0.05 {
                format!("{}{suffix}", v.round() as u64)
            } else {
                format!("{v:.1}{suffix}")
            };
        }
    }
    format!("{bytes}B")
}

/// Parses a duration such as `5m`, `300s`, `1h30m`, `250ms` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (expected e.g. \"5m\" or \"300s\")".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("bad duration {text:?}: too long"));
        }
        return Err(format!("bad duration {text:?}: must not be negative"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("bad duration {text:?}: {e} (expected e.g. \"5m\", \"300s\", \"1h30m\")")
    })
}

/// Milliseconds as stored (a signed 64-bit integer), or None when beyond it: a duration's
/// milliseconds never wrap to a short one.
fn millis(ms: f64) -> Option<u64> {
    let ms = ms.round();
    (ms < i64::MAX as f64).then_some(ms as u64)
}

/// Formats a duration compactly: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Serde helpers for durations kept as milliseconds but written by people as "5m" or 300.
pub mod duration_ms {
    use serde::{de, Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Human {
        Secs(f64),
        Text(String),
    }

    fn to_ms(h: Human) -> Result<u64, String> {
        match h {
            Human::Secs(s) if s.is_finite() && s >= 0.0 => {
                super::millis(s * 1000.0).ok_or_else(|| format!("bad duration {s}: too long"))
            }
            Human::Secs(s) => Err(format!("bad duration {s}: must not be negative")),
            Human::Text(t) => {
                let d = super::parse_duration(&t)?;
                super::millis(d.as_millis() as f64)
                    .ok_or_else(|| format!("bad duration {t:?}: too long"))
            }
        }
    }

    /// The OpenAPI schema of what is accepted: seconds, or text as `5m`, `1h30m`.
    pub fn schema() -> utoipa::openapi::schema::Schema {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0)),
            )
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "a duration: seconds, or text such as \"300s\", \"5m\", \"1h30m\"",
            ))
            .build()
            .into()
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(ms) => s.serialize_some(&(*ms as f64 / 1000.0)),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            let h: Option<Human> = Option::deserialize(d)?;
            h.map(to_ms).transpose().map_err(de::Error::custom)
        }
    }
}

/// Serde helper for sizes in bytes that people write as "16G" or as a number.
pub mod size_bytes {
    use serde::{de, Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Human {
        Bytes(i64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    /// The OpenAPI schema of what is accepted: bytes, or text as `2G`, `512M`.
    pub fn schema() -> utoipa::openapi::schema::Schema {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0.0)),
            )
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("a size: bytes, or text such as \"512M\", \"2G\""))
            .build()
            .into()
    }

    /// For optional sizes.
    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] u64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Human::deserialize(d)? {
            Human::Bytes(b) if b >= 0 => Ok(b as u64),
            Human::Bytes(b) => Err(de::Error::custom(format!(
                "bad size {b}: must not be negative"
            ))),
            Human::Text(t) => super::parse_size(&t).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and durations that would not read back, or would panic or wrap on the way in,
    /// are refused with a message (a fold asking 2^63 bytes was stored and then unreadable;
    /// `1e20` seconds panicked in `Duration::from_secs_f64`; `1e19` wrapped).
    #[test]
    fn sizes_and_durations_beyond_storage_are_refused() {
        assert!(parse_size("8388608T").unwrap_err().contains("too large"));
        assert_eq!(parse_size("8388607T").unwrap(), 8_388_607u64 << 40);
        for bad in ["1e20", "1e300"] {
            assert!(
                parse_duration(bad).unwrap_err().contains("too long"),
                "{bad}"
            );
        }
        #[derive(serde::Deserialize, Debug)]
        struct Limit {
            #[serde(with = "duration_ms::option")]
            ms: Option<u64>,
        }
        let parse =
            |v: serde_json::Value| serde_json::from_value::<Limit>(serde_json::json!({"ms": v}));
        for bad in [
            serde_json::json!(1e19),
            serde_json::json!("1e19"),
            serde_json::json!(1e17),
        ] {
            let e = parse(bad.clone()).unwrap_err().to_string();
            assert!(e.contains("too long"), "{bad}: {e}");
        }
        assert_eq!(
            parse(serde_json::json!(1e9)).unwrap().ms,
            Some(1_000_000_000_000)
        );
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("16G", 16u64 << 30),
            ("512M", 512 << 20),
            ("200MiB", 200 << 20),
            ("1.5G", 3 << 29),
            ("1024", 1024),
            ("4k", 4096),
        ] {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        for bad in ["", "G", "-1G", "12X", "1.2.3M"] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(format_size(16 << 30), "16G");
        assert_eq!(format_size(3 << 29), "1.5G");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        for bad in ["", "-3", "5 parsecs", "m"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
    }
}

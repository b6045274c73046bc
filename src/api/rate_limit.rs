//! Per-token request rate limits: a token bucket per principal, in memory, checked by a layer
//! that runs after authentication (it reads the `Principal` the auth layer put on the
//! request). Over the limit a request answers 429 with `Retry-After`. Admin tokens are exempt
//! unless `serve --rate-limit-admins`. The map of buckets is bounded: a bucket that has filled
//! up again is the same as a new one and is dropped first, then the least recently used.

use crate::store::Principal;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most buckets kept; more principals than this share the eviction described above.
pub const MAX_BUCKETS: usize = 10_000;

/// `serve --rate-limit RATE --rate-burst N [--rate-limit-admins]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained; 0 turns the limit off.
    pub per_second: f64,
    /// Requests a token may make at once after a quiet spell.
    pub burst: f64,
    /// Whether admin tokens are limited too.
    pub admins: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 20.0,
            burst: 100.0,
            admins: false,
        }
    }
}

/// `20/s`, `600/m`, `3600/h`, a bare number (per second), or `off` / `0`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t == "off" {
        return Ok(0.0);
    }
    let (count, per) = match t.split_once('/') {
        Some((c, unit)) => (c, unit.trim()),
        None => (t, "s"),
    };
    let seconds = match per {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => {
            return Err(format!(
                "rate {text:?}: unknown unit {other:?} (use /s, /m or /h)"
            ))
        }
    };
    let count: f64 = count
        .trim()
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite() && *c >= 0.0)
        .ok_or_else(|| {
            format!("rate {text:?}: expected requests per time such as 20/s, 600/m, or off")
        })?;
    Ok(count / seconds)
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request from `who`'s bucket, or says how long until one is available.
    pub fn check(&self, who: &Principal, now: Instant) -> Result<(), Duration> {
        let RateLimit {
            per_second,
            burst,
            admins,
        } = self.limit;
        if per_second <= 0.0 || (who.admin && !admins) {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&who.name) && buckets.len() >= MAX_BUCKETS {
            evict(&mut buckets, now, per_second, burst);
        }
        let b = buckets.entry(who.name.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// Drops every bucket that has filled up again (forgetting it changes nothing); if none has,
/// the least recently used one.
fn evict(buckets: &mut HashMap<String, Bucket>, now: Instant, per_second: f64, burst: f64) {
    let before = buckets.len();
    buckets.retain(|_, b| {
        b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
    });
    if buckets.len() == before {
        if let Some(oldest) = buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(k, _)| k.clone())
        {
            buckets.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, admin: bool) -> Principal {
        Principal {
            name: name.into(),
            admin,
            token: 1,
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20/s").unwrap(), 20.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_rate("5").unwrap(), 5.0);
        assert_eq!(parse_rate("off").unwrap(), 0.0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5/day").is_err());
        assert!(parse_rate("-1/s").is_err());
    }

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let l = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 5.0,
            admins: false,
        });
        let t0 = Instant::now();
        let ann = who("ann", false);
        for _ in 0..5 {
            l.check(&ann, t0).unwrap();
        }
        let wait = l.check(&ann, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // Another principal has its own bucket; admins are exempt by default.
        l.check(&who("bob", false), t0).unwrap();
        for _ in 0..100 {
            l.check(&who("root", true), t0).unwrap();
        }
        // 100 ms later one more request fits, not two.
        let t1 = t0 + Duration::from_millis(100);
        l.check(&ann, t1).unwrap();
        assert!(l.check(&ann, t1).is_err());
    }

    #[test]
    fn admins_can_be_limited_and_the_limit_turned_off() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1.0,
            admins: true,
        });
        let t0 = Instant::now();
        l.check(&who("root", true), t0).unwrap();
        assert!(l.check(&who("root", true), t0).is_err());
        let off = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 1.0,
            admins: true,
        });
        for _ in 0..10 {
            off.check(&who("ann", false), t0).unwrap();
        }
    }

    #[test]
    fn the_map_of_buckets_is_bounded() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 2.0,
            admins: false,
        });
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS + 500 {
            l.check(&who(&format!("u{i}"), false), t0).unwrap();
        }
        assert!(l.len() <= MAX_BUCKETS, "{}", l.len());
        // Later, refilled buckets go first.
        l.check(&who("late", false), t0 + Duration::from_secs(10))
            .unwrap();
        assert!(l.len() <= 2, "refilled buckets were dropped: {}", l.len());
    }
}

//! Abuse limits: a token bucket per API key (answered 429 with `Retry-After` when empty) and
//! the largest request bodies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest JSON body: a spec, an apply batch, a secret of 1 MiB in base64.
pub const MAX_JSON_BODY_BYTES: usize = 4 << 20;
/// The largest image archive `POST /api/v1/images/import` takes.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 30;
/// The largest model file `POST /api/v1/models/import` takes.
pub const MAX_MODEL_BYTES: u64 = 512 << 30;

/// How fast one API key may call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls allowed at once after a quiet spell.
    pub burst: f64,
}

impl RateLimit {
    /// Login attempts per user name: five a minute, after a burst of five.
    pub const LOGIN: RateLimit = RateLimit {
        per_second: 5.0 / 60.0,
        burst: 5.0,
    };
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            per_second: 100.0,
            burst: 200.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// One bucket per key, filled at `limit.per_second` up to `limit.burst`.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let full = self.limit.burst;
            let per_second = self.limit.per_second;
            buckets.retain(|_, bucket| {
                let elapsed = now
                    .saturating_duration_since(bucket.refilled_at)
                    .as_secs_f64();
                bucket.tokens + elapsed * per_second < full
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.limit.burst,
            refilled_at: now,
        });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.limit.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", start).is_ok());
        }
        let wait = limiter.check("a", start).expect_err("the burst is spent");
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(limiter.check("b", start).is_ok());
        // A tenth of a second later, one more call.
        let later = start + Duration::from_millis(100);
        assert!(limiter.check("a", later).is_ok());
        assert!(limiter.check("a", later).is_err());
    }
}

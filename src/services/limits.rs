//! Per-station rate limiting: a token bucket per station name, refilled continuously.
//!
//! In-process: with several replicas each enforces its own share (docs/operations.md).
//! Time is passed in, so the buckets are testable without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets keyed by station name. A rate of 0 disables limiting.
pub struct StationRateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets idle this long are full again and can be forgotten.
const IDLE: Duration = Duration::from_secs(600);

impl StationRateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate_per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate_per_sec > 0.0
    }

    /// Takes one token for `station`, or says how long until one is available.
    pub fn check(&self, station: &str, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .expect("the rate limiter lock is never poisoned");
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.updated) < IDLE);
        }
        let bucket = buckets.entry(station.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.rate_per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate_per_station() {
        let limiter = StationRateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("line-1", t0).is_ok());
        }
        let wait = limiter.check("line-1", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another station has its own bucket.
        assert!(limiter.check("line-2", t0).is_ok());
        // Half a second later one token is back.
        assert!(
            limiter
                .check("line-1", t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .check("line-1", t0 + Duration::from_millis(500))
                .is_err()
        );
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter.check("line-1", later).is_ok());
        }
        assert!(limiter.check("line-1", later).is_err());
    }

    #[test]
    fn a_zero_rate_disables_limiting() {
        let limiter = StationRateLimiter::new(0.0, 1);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(limiter.check("line-1", now).is_ok());
        }
    }
}

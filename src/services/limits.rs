//! Per-station rate limiting: a token bucket per station name (GCRA, from the `governor`
//! crate), refilled continuously at `server.station_rate_per_sec` up to `server.station_burst`.
//!
//! In-process: with several replicas each enforces its own share (docs/operations.md).
//! The clock is a type parameter, so the buckets are testable without sleeping.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Buckets kept before idle (full again) ones are forgotten.
const MAX_TRACKED_STATIONS: usize = 10_000;

/// A GCRA bucket per station name.
type Buckets<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Token buckets keyed by station name. A rate of 0 disables limiting.
pub struct StationRateLimiter<C: Clock = DefaultClock> {
    limiter: Option<Buckets<C>>,
    clock: C,
}

impl StationRateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self::with_clock(rate_per_sec, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> StationRateLimiter<C> {
    /// `rate_per_sec` is validated by the settings: 0 (unlimited) or positive and finite.
    pub fn with_clock(rate_per_sec: f64, burst: u32, clock: C) -> Self {
        let limiter = (rate_per_sec > 0.0).then(|| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let period = Duration::from_secs_f64(1.0 / rate_per_sec);
            let quota = Quota::with_period(period)
                .expect("a positive finite rate has a non-zero period")
                .allow_burst(burst);
            RateLimiter::dashmap_with_clock(quota, clock.clone())
        });
        Self { limiter, clock }
    }

    pub fn enabled(&self) -> bool {
        self.limiter.is_some()
    }

    /// Takes one token for `station`, or says how long until one is available.
    pub fn check(&self, station: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED_STATIONS {
            limiter.retain_recent();
        }
        limiter
            .check_key(&station.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn allows_a_burst_then_the_rate_per_station() {
        let clock = FakeRelativeClock::default();
        let limiter = StationRateLimiter::with_clock(2.0, 3, clock.clone());
        for _ in 0..3 {
            assert!(limiter.check("line-1").is_ok());
        }
        let wait = limiter.check("line-1").unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another station has its own bucket.
        assert!(limiter.check("line-2").is_ok());
        // Half a second later one token is back.
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check("line-1").is_ok());
        assert!(limiter.check("line-1").is_err());
        // Never more than the burst, however long the pause.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert!(limiter.check("line-1").is_ok());
        }
        assert!(limiter.check("line-1").is_err());
    }

    #[test]
    fn a_zero_rate_disables_limiting() {
        let limiter = StationRateLimiter::new(0.0, 1);
        assert!(!limiter.enabled());
        for _ in 0..100 {
            assert!(limiter.check("line-1").is_ok());
        }
    }

    #[test]
    fn a_fractional_rate_spaces_requests_out() {
        let clock = FakeRelativeClock::default();
        let limiter = StationRateLimiter::with_clock(0.5, 1, clock.clone());
        assert!(limiter.check("line-1").is_ok());
        let wait = limiter.check("line-1").unwrap_err();
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        clock.advance(Duration::from_secs(2));
        assert!(limiter.check("line-1").is_ok());
    }
}

//! [`ThrottledRegistry`]: any [`IotRegistry`] kept under AWS IoT's per-account API rates. Each
//! call first takes a token from one bucket per target (`aws.api_rate_per_sec`, burst
//! `aws.api_burst`), so that revoking or syncing many certificates paces itself instead of
//! failing. A call AWS still throttles (after the SDK's own retries) is retried after a pause
//! that doubles each time, from [`FIRST_BACKOFF`] up to `aws.throttle_retries` times; the bucket
//! is empty meanwhile, so the other calls wait too.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::{
    AwsError, CaDescription, CaUpdate, CertificatePage, CertificateProvider, DeviceCertificate,
    IotRegistry, RegisterCaRequest, RegisteredCa,
};

/// The pause after the first throttled answer; each further one doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// No pause is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The pacing of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Calls per second; 0 = no bucket (throttled calls are still retried).
    pub rate_per_sec: f64,
    pub burst: u32,
    /// Retries of a throttled call.
    pub throttle_retries: u32,
}

pub struct ThrottledRegistry {
    inner: Arc<dyn IotRegistry>,
    bucket: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
    pace: Pace,
    /// The registration target's name, the `target` label of the throttling counter.
    target: String,
}

impl ThrottledRegistry {
    /// `pace.rate_per_sec` is validated by the settings: 0 or positive and finite.
    pub fn new(inner: Arc<dyn IotRegistry>, pace: Pace) -> Self {
        let bucket = (pace.rate_per_sec > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / pace.rate_per_sec);
            let burst = NonZeroU32::new(pace.burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(period)
                .expect("a positive finite rate has a non-zero period")
                .allow_burst(burst);
            RateLimiter::direct(quota)
        });
        Self {
            inner,
            bucket,
            pace,
            target: crate::config::DEFAULT_AWS_TARGET.to_owned(),
        }
    }

    /// The registration target this registry serves, for the `target` label.
    pub fn for_target(mut self, target: &str) -> Self {
        self.target = target.to_owned();
        self
    }

    async fn take_token(&self) {
        if let Some(bucket) = &self.bucket {
            bucket.until_ready().await;
        }
    }

    /// Waits out a throttled answer: drains the bucket, so that other calls wait too.
    async fn back_off(&self, operation: &str, attempt: u32, error: &AwsError) {
        let pause = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(MAX_BACKOFF);
        tracing::warn!(operation, attempt = attempt + 1, pause_ms = pause.as_millis() as u64,
            error = %error, "AWS IoT throttled the call; pausing before retrying");
        metrics::counter!(
            "factory_ca_aws_throttled_total",
            "operation" => operation.to_owned(),
            "target" => self.target.clone(),
        )
        .increment(1);
        if let Some(bucket) = &self.bucket {
            while bucket.check().is_ok() {}
        }
        tokio::time::sleep(pause).await;
    }
}

/// Whether AWS throttled the call (its error code, or HTTP 429).
pub fn is_throttling(error: &AwsError) -> bool {
    let AwsError::Unavailable(failure) = error else {
        return false;
    };
    failure.http_status == Some(429)
        || matches!(
            failure.code.as_deref(),
            Some(
                "ThrottlingException"
                    | "Throttling"
                    | "TooManyRequestsException"
                    | "RequestLimitExceeded"
            )
        )
}

/// Implements [`IotRegistry`] for [`ThrottledRegistry`]: each method takes a token, calls the
/// inner registry, and retries a throttled call after a pause.
macro_rules! throttled_registry {
    ($($operation:literal => fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        #[async_trait]
        impl IotRegistry for ThrottledRegistry {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$out, AwsError> {
                    let mut attempt = 0;
                    loop {
                        self.take_token().await;
                        match self.inner.$name($($arg.clone()),*).await {
                            Err(e) if is_throttling(&e) && attempt < self.pace.throttle_retries => {
                                self.back_off($operation, attempt, &e).await;
                                attempt += 1;
                            }
                            result => return result,
                        }
                    }
                }
            )*
        }
    };
}

iot_operations!(throttled_registry);

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::aws::AwsFailure;
    use crate::aws::fake::FakeIotRegistry;

    /// The fake behind a throttle with a burst of one.
    fn throttled(
        rate_per_sec: f64,
        throttle_retries: u32,
    ) -> (Arc<FakeIotRegistry>, ThrottledRegistry) {
        let fake = Arc::new(FakeIotRegistry::new());
        let pace = Pace {
            rate_per_sec,
            burst: 1,
            throttle_retries,
        };
        let registry = ThrottledRegistry::new(fake.clone() as Arc<dyn IotRegistry>, pace);
        (fake, registry)
    }

    fn throttling() -> AwsError {
        AwsError::Unavailable(AwsFailure {
            code: Some("ThrottlingException".into()),
            message: "Rate exceeded".into(),
            http_status: Some(400),
            request_id: None,
        })
    }

    #[tokio::test]
    async fn calls_wait_for_a_token_at_the_configured_rate() {
        let (fake, registry) = throttled(20.0, 0);
        let started = Instant::now();
        for _ in 0..11 {
            registry.get_registration_code().await.unwrap();
        }
        let elapsed = started.elapsed();
        // The first call takes the one token; ten more at 20 per second take half a second.
        assert!(
            elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        assert_eq!(fake.calls().len(), 11);
    }

    #[tokio::test]
    async fn a_throttled_call_is_retried_after_a_pause_and_other_errors_are_not() {
        let (fake, registry) = throttled(0.0, 2);
        fake.fail_next(throttling());
        let started = Instant::now();
        registry.get_registration_code().await.unwrap();
        assert!(started.elapsed() >= FIRST_BACKOFF);
        assert_eq!(fake.calls(), ["GetRegistrationCode", "GetRegistrationCode"]);

        fake.fail_next(AwsError::Unavailable("connection refused".into()));
        assert!(registry.get_registration_code().await.is_err());
        assert_eq!(fake.calls().len(), 3);
        assert!(!is_throttling(&AwsError::Unavailable("x".into())));
        assert!(is_throttling(&AwsError::Unavailable(AwsFailure {
            http_status: Some(429),
            ..AwsFailure::default()
        })));
    }

    #[tokio::test]
    async fn a_call_still_throttled_after_the_retries_fails_with_aws_words() {
        let (fake, registry) = throttled(0.0, 0);
        fake.fail_next(throttling());
        let error = registry.get_registration_code().await.unwrap_err();
        assert_eq!(error.failure().code.as_deref(), Some("ThrottlingException"));
        assert_eq!(fake.calls().len(), 1);
    }
}

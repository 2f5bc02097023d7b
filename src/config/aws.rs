//! `[aws]` settings: AWS IoT registration (one region, or named registration targets in
//! several regions and accounts), pacing, and the KMS endpoint of `awskms:` CA keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, seconds};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Off by default: the AWS endpoints answer 503 aws_not_configured, everything else works.
    pub enabled: bool,
    pub region: String,
    /// Another endpoint (an emulator, a VPC endpoint). Credentials always come from the
    /// standard AWS chain (environment, profile, SSO, container or instance role).
    pub endpoint_url: Option<String>,
    /// The AWS KMS endpoint of CA keys named `awskms:` (a VPC endpoint, an emulator); unset:
    /// `endpoint_url`, else AWS's endpoint for the region.
    pub kms_endpoint_url: Option<String>,
    /// An IAM role (another account's, typically) to assume through STS with the standard
    /// chain's credentials; unset: the chain's credentials are used directly.
    pub role_arn: Option<String>,
    /// Attempts per AWS call, the first included (the SDK's standard retry with backoff).
    pub max_attempts: u32,
    /// Upper bound on one AWS call, retries included.
    #[serde(with = "seconds")]
    pub operation_timeout_secs: Duration,
    /// How often revocations AWS has not been told of yet are pushed again.
    #[serde(with = "seconds")]
    pub revocation_retry_secs: Duration,
    /// How often every registered CA is synced with ListCertificatesByCA; 0 = never (use
    /// POST /v1/admin/cas/{id}/aws/sync).
    #[serde(with = "seconds")]
    pub sync_interval_secs: Duration,
    /// AWS IoT calls per second (one token bucket for the target); 0 = unpaced.
    pub api_rate_per_sec: f64,
    /// Calls that may go at once after an idle spell.
    pub api_burst: u32,
    /// Revocation pushes in flight at once per target (each still paced by the bucket): with
    /// one, a backlog drains at no more than one push per AWS round trip.
    pub revocation_push_concurrency: u32,
    /// Retries of a call AWS throttles, after pauses doubling from half a second.
    pub throttle_retries: u32,
    /// Named registration targets (`[aws.targets.<name>]`): each a region, optionally another
    /// endpoint, another account's role and its own pacing. None named: the one target
    /// `default`, made of `region`, `endpoint_url`, `role_arn` and the pacing above.
    pub targets: std::collections::BTreeMap<String, AwsTargetSettings>,
}

/// `[aws.targets.<name>]`: one (region, account) a CA may be registered in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsTargetSettings {
    pub region: String,
    /// Another endpoint (an emulator, a VPC endpoint) for this target.
    pub endpoint_url: Option<String>,
    /// An IAM role of the target's account, assumed through STS with the standard chain's
    /// credentials; unset: the chain's credentials are used directly.
    pub role_arn: Option<String>,
    /// AWS IoT calls per second to this target; unset: `aws.api_rate_per_sec`.
    pub api_rate_per_sec: Option<f64>,
    /// Burst of this target's bucket; unset: `aws.api_burst`.
    pub api_burst: Option<u32>,
    /// Revocation pushes in flight at once to this target; unset:
    /// `aws.revocation_push_concurrency`.
    pub revocation_push_concurrency: Option<u32>,
}

/// One registration target as the service uses it: the named settings, or `[aws]` itself for
/// the target `default`, with the pacing resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsTarget {
    pub name: String,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub role_arn: Option<String>,
    pub api_rate_per_sec: f64,
    pub api_burst: u32,
    pub revocation_push_concurrency: u32,
}

/// The target the single `[aws]` section makes when no target is named.
pub const DEFAULT_AWS_TARGET: &str = "default";

impl AwsSettings {
    /// The `[aws]` checks of [`super::Settings::validate`]: the targets always, the rest when
    /// AWS is enabled (the KMS endpoint always: KMS keys work while AWS IoT calls are off).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_targets()?;
        check_push_concurrency(
            "aws.revocation_push_concurrency",
            self.revocation_push_concurrency,
        )?;
        if self.enabled {
            if self.region.is_empty() && self.targets.is_empty() {
                return Err(ConfigError(
                    "aws.region must be set when aws.enabled is true".into(),
                ));
            }
            if !(1..=10).contains(&self.max_attempts) {
                return Err(ConfigError(
                    "aws.max_attempts must be between 1 and 10".into(),
                ));
            }
            if self.revocation_retry_secs.is_zero() {
                return Err(ConfigError(
                    "aws.revocation_retry_secs must be at least 1".into(),
                ));
            }
            if self.operation_timeout_secs.is_zero() {
                return Err(ConfigError(
                    "aws.operation_timeout_secs must be at least 1".into(),
                ));
            }
            if let Some(role) = &self.role_arn
                && !(role.starts_with("arn:") && role.contains(":role/"))
            {
                return Err(ConfigError(
                    "aws.role_arn must be an IAM role ARN: arn:aws:iam::<account>:role/<name>"
                        .into(),
                ));
            }
            if !(self.api_rate_per_sec.is_finite() && self.api_rate_per_sec >= 0.0)
                || self.api_burst == 0
                || self.throttle_retries > 10
            {
                return Err(ConfigError(
                    "aws.api_rate_per_sec must be 0 or more, aws.api_burst at least 1 and \
                     aws.throttle_retries at most 10"
                        .into(),
                ));
            }
            if let Some(url) = &self.endpoint_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError(
                    "aws.endpoint_url must be an http(s) URL".into(),
                ));
            }
        }
        if let Some(url) = &self.kms_endpoint_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError(
                "aws.kms_endpoint_url must be an http(s) URL".into(),
            ));
        }
        Ok(())
    }

    /// The registration targets, by name: the named ones, or `default` from `[aws]`.
    pub fn resolved_targets(&self) -> Vec<AwsTarget> {
        if self.targets.is_empty() {
            return vec![AwsTarget {
                name: DEFAULT_AWS_TARGET.to_owned(),
                region: self.region.clone(),
                endpoint_url: self.endpoint_url.clone(),
                role_arn: self.role_arn.clone(),
                api_rate_per_sec: self.api_rate_per_sec,
                api_burst: self.api_burst,
                revocation_push_concurrency: self.revocation_push_concurrency,
            }];
        }
        self.targets
            .iter()
            .map(|(name, t)| AwsTarget {
                name: name.clone(),
                region: t.region.clone(),
                endpoint_url: t.endpoint_url.clone(),
                role_arn: t.role_arn.clone(),
                api_rate_per_sec: t.api_rate_per_sec.unwrap_or(self.api_rate_per_sec),
                api_burst: t.api_burst.unwrap_or(self.api_burst),
                revocation_push_concurrency: t
                    .revocation_push_concurrency
                    .unwrap_or(self.revocation_push_concurrency),
            })
            .collect()
    }

    /// Target names: lower-case letters and digits, words joined by `-` or `_`, at most 32
    /// characters; two names may not differ only by `-` against `_`.
    fn validate_targets(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeMap::new();
        for (name, t) in &self.targets {
            let words_ok = !name.is_empty()
                && name.len() <= 32
                && name.split(['-', '_']).all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
            if !words_ok {
                return Err(ConfigError(format!(
                    "aws.targets.{name}: a target name is lower-case letters and digits, words \
                     joined by '-' or '_' (e.g. eu, us-east, prod_eu), at most 32 characters"
                )));
            }
            if let Some(other) = seen.insert(name.replace('-', "_"), name) {
                return Err(ConfigError(format!(
                    "aws.targets.{name} and aws.targets.{other} differ only by '-' and '_': \
                     name targets apart"
                )));
            }
            if t.region.is_empty() {
                return Err(ConfigError(format!(
                    "aws.targets.{name}.region must be set (e.g. \"eu-west-1\")"
                )));
            }
            if let Some(role) = &t.role_arn
                && !(role.starts_with("arn:") && role.contains(":role/"))
            {
                return Err(ConfigError(format!(
                    "aws.targets.{name}.role_arn must be an IAM role ARN: \
                     arn:aws:iam::<account>:role/<name>"
                )));
            }
            if let Some(url) = &t.endpoint_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError(format!(
                    "aws.targets.{name}.endpoint_url must be an http(s) URL"
                )));
            }
            if let Some(n) = t.revocation_push_concurrency {
                check_push_concurrency(
                    &format!("aws.targets.{name}.revocation_push_concurrency"),
                    n,
                )?;
            }
            if t.api_rate_per_sec
                .is_some_and(|r| !(r.is_finite() && r >= 0.0))
                || t.api_burst == Some(0)
            {
                return Err(ConfigError(format!(
                    "aws.targets.{name}: api_rate_per_sec must be 0 or more and api_burst at \
                     least 1"
                )));
            }
        }
        Ok(())
    }
}

/// The most revocation pushes in flight at once to one target: more would only queue on the
/// target's token bucket.
pub const MAX_PUSH_CONCURRENCY: u32 = 256;

fn check_push_concurrency(key: &str, n: u32) -> Result<(), ConfigError> {
    if (1..=MAX_PUSH_CONCURRENCY).contains(&n) {
        return Ok(());
    }
    Err(ConfigError(format!(
        "{key} must be between 1 (one push at a time) and {MAX_PUSH_CONCURRENCY}, not {n}"
    )))
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            region: "us-east-1".into(),
            endpoint_url: None,
            kms_endpoint_url: None,
            role_arn: None,
            max_attempts: 3,
            operation_timeout_secs: Duration::from_secs(20),
            revocation_retry_secs: Duration::from_secs(60),
            sync_interval_secs: Duration::ZERO,
            api_rate_per_sec: 10.0,
            api_burst: 10,
            revocation_push_concurrency: 8,
            throttle_retries: 5,
            targets: std::collections::BTreeMap::new(),
        }
    }
}

//! The AWS SDK configuration our clients share (AWS IoT per registration target, AWS KMS for CA
//! keys): a region, an optional endpoint, the attempts and per-call timeout of `[aws]`, and the
//! credentials of the standard AWS chain (environment, profile, SSO, container or instance
//! role), or of a role assumed through STS with those credentials and renewed before they
//! expire.

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iot::config::SharedCredentialsProvider;

use crate::config::AwsSettings;

/// The configuration a client of `region` (at `endpoint_url` when given, as `role_arn` when
/// given) is built from with `Client::new`.
pub async fn load(
    settings: &AwsSettings,
    region: &str,
    endpoint_url: Option<&str>,
    role_arn: Option<&str>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(settings.operation_timeout_secs)
                .build(),
        );
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    let Some(role_arn) = role_arn else {
        return config;
    };
    let role = AssumeRoleProvider::builder(role_arn)
        .session_name("factory-ca")
        .configure(&config)
        .build()
        .await;
    config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(role))
        .build()
}

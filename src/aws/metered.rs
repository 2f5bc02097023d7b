//! [`MeteredRegistry`]: any [`IotRegistry`] with Prometheus metrics on each call
//! (`factory_ca_aws_calls_total{operation, outcome, target}` and
//! `factory_ca_aws_call_duration_seconds{operation, target}`), `target` naming the registration
//! target the registry serves.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    AwsError, CaDescription, CaUpdate, CertificatePage, CertificateProvider, DeviceCertificate,
    IotRegistry, RegisterCaRequest, RegisteredCa,
};

pub struct MeteredRegistry {
    inner: Arc<dyn IotRegistry>,
    /// The registration target's name, the `target` label.
    target: String,
}

impl MeteredRegistry {
    pub fn new(inner: Arc<dyn IotRegistry>, target: &str) -> Self {
        Self {
            inner,
            target: target.to_owned(),
        }
    }
}

/// The `outcome` label of a call.
fn outcome<T>(result: &Result<T, AwsError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(AwsError::AlreadyExists(_)) => "already_exists",
        Err(AwsError::NotFound(_)) => "not_found",
        Err(AwsError::CertificateValidation(_)) => "certificate_validation",
        Err(AwsError::InvalidState(_)) => "invalid_state",
        Err(AwsError::InvalidRequest(_)) => "invalid_request",
        Err(AwsError::Unauthorized(_)) => "unauthorized",
        Err(AwsError::Unavailable(_)) => "unavailable",
    }
}

async fn metered<T>(
    target: &str,
    operation: &'static str,
    call: impl Future<Output = Result<T, AwsError>>,
) -> Result<T, AwsError> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!(
        "factory_ca_aws_call_duration_seconds",
        "operation" => operation,
        "target" => target.to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "factory_ca_aws_calls_total",
        "operation" => operation,
        "outcome" => outcome(&result),
        "target" => target.to_owned(),
    )
    .increment(1);
    result
}

/// Implements [`IotRegistry`] for [`MeteredRegistry`]: each method forwards to the inner
/// registry through [`metered`], labelled with AWS's name of the operation.
macro_rules! metered_registry {
    ($($operation:literal => fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        #[async_trait]
        impl IotRegistry for MeteredRegistry {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$out, AwsError> {
                    metered(&self.target, $operation, self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

iot_operations!(metered_registry);

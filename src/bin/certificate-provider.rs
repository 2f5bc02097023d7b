//! The AWS IoT certificate provider Lambda function: the Lambda runtime around
//! [`factory_ca::certificate_provider::handle`]. Settings from the environment (see
//! docs/fleet-provisioning.md); a bad setting stops the function at its cold start, with the
//! variable to fix in the log.

use factory_ca::certificate_provider::{
    CertificateProviderEvent, CertificateProviderResponse, FactoryCaClient, ProviderError,
    ProviderSettings, handle,
};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

/// A refusal as Lambda reports it: `errorType` is factory-ca's code (or `invalid_event`,
/// `factory_ca_unreachable`), `errorMessage` the whole message, the code first.
struct Failure(ProviderError);

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Diagnostic {
        Diagnostic {
            error_type: failure.0.code().to_owned(),
            error_message: failure.0.to_string(),
        }
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .with_target(false)
        .init();
    let settings = ProviderSettings::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|e| tracing::error!(error = %e, "certificate provider settings"))?;
    let client = FactoryCaClient::new(&settings)
        .inspect_err(|e| tracing::error!(error = %e, "certificate provider settings"))?;
    let client = std::sync::Arc::new(client);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CertificateProviderEvent>| {
            let client = client.clone();
            async move {
                handle(event.payload, client.as_ref())
                    .await
                    .map_err(Failure)
                    .map(|r: CertificateProviderResponse| r)
            }
        },
    ))
    .await
}

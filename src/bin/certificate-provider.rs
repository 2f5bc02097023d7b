//! The AWS IoT certificate provider Lambda function: the Lambda runtime around
//! [`factory_ca::certificate_provider::handle`]. Settings from the environment (see
//! docs/fleet-provisioning.md); the station token from Secrets Manager is read once, at the
//! cold start; a bad setting stops the function there, with the variable to fix in the log.

use factory_ca::certificate_provider::{
    CertificateProviderEvent, CertificateProviderResponse, FactoryCaClient, ProviderError,
    ProviderSettings, handle, secrets,
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
    let mut settings = ProviderSettings::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|e| tracing::error!(error = %e, "certificate provider settings"))?;
    if let Some(secret_id) = settings.token_secret_id.clone() {
        // The function's region and role, from Lambda's environment.
        let config = aws_config::load_from_env().await;
        let client = aws_sdk_secretsmanager::Client::new(&config);
        settings.token = Some(
            secrets::station_token(&client, &secret_id)
                .await
                .inspect_err(|e| tracing::error!(error = %e, "station token"))?,
        );
    }
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

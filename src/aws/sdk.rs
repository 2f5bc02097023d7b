//! [`IotRegistry`] over the real `aws-sdk-iot` client. The only module that imports the SDK.

use async_trait::async_trait;
use aws_sdk_iot::Client;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::config::retry::RetryConfig;
use aws_sdk_iot::config::timeout::TimeoutConfig;
use aws_sdk_iot::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_iot::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iot::operation::RequestId;
use aws_sdk_iot::types::{
    AutoRegistrationStatus, CaCertificateStatus, CertificateMode as SdkMode,
    CertificateProviderOperation, CertificateStatus, TemplateType,
};
use time::OffsetDateTime;

use super::{
    AwsError, AwsFailure, CaDescription, CaUpdate, CertificateMode, CertificatePage,
    CertificateProvider, DeviceCertificate, IotRegistry, RegisterCaRequest, RegisteredCa,
    RegistrationConfig,
};
use crate::config::{AwsSettings, AwsTarget};

pub struct SdkIotRegistry {
    client: Client,
}

impl SdkIotRegistry {
    /// Region, optional endpoint and retries from `[aws]`; credentials from the standard AWS
    /// chain (environment, profile, SSO, container or instance role), or, with `aws.role_arn`,
    /// those of that role, assumed through STS with the chain's credentials and renewed before
    /// they expire.
    pub async fn from_settings(settings: &AwsSettings) -> Self {
        let target = AwsTarget {
            name: crate::config::DEFAULT_AWS_TARGET.to_owned(),
            region: settings.region.clone(),
            endpoint_url: settings.endpoint_url.clone(),
            role_arn: settings.role_arn.clone(),
            api_rate_per_sec: settings.api_rate_per_sec,
            api_burst: settings.api_burst,
        };
        Self::from_target(settings, &target).await
    }

    /// One registration target: its region, endpoint and role; retries and timeouts from
    /// `[aws]`. Credentials as for [`SdkIotRegistry::from_settings`].
    pub async fn from_target(settings: &AwsSettings, target: &AwsTarget) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(target.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(settings.operation_timeout_secs)
                    .build(),
            );
        if let Some(url) = &target.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        let Some(role_arn) = &target.role_arn else {
            return Self {
                client: Client::new(&config),
            };
        };
        let role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("factory-ca")
            .configure(&config)
            .build()
            .await;
        let iot = aws_sdk_iot::config::Builder::from(&config)
            .credentials_provider(role)
            .build();
        Self {
            client: Client::from_conf(iot),
        }
    }

    /// An emulator on loopback (the moto server in tests): fixed dummy credentials, one
    /// attempt per call (the emulator's 500s would otherwise be retried).
    pub fn for_emulator(endpoint_url: &str) -> Self {
        Self::for_emulator_in(endpoint_url, "us-east-1")
    }

    /// [`SdkIotRegistry::for_emulator`] in another region (the emulator keeps one IoT registry
    /// per region and account).
    pub fn for_emulator_in(endpoint_url: &str, region: &str) -> Self {
        let config = aws_sdk_iot::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(endpoint_url)
            .credentials_provider(Credentials::new(
                "testing", "testing", None, None, "emulator",
            ))
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

/// Every SDK call's error becomes an [`AwsError`] here (through `?`): classified by AWS's error
/// code (and HTTP status for codeless 5xx), keeping AWS's code, message, HTTP status and request
/// id. The SDK's full error chain (often kilobytes of debug output) goes to the debug log only.
impl<E> From<SdkError<E, HttpResponse>> for AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn from(error: SdkError<E, HttpResponse>) -> Self {
        tracing::debug!(error = %DisplayErrorContext(&error), "AWS IoT call failed");
        let failure = failure_of(&error);
        let server_error = failure.http_status.is_some_and(|s| s >= 500);
        match failure.code.as_deref() {
            Some("ResourceAlreadyExistsException") => AwsError::AlreadyExists(failure),
            Some("ResourceNotFoundException") => AwsError::NotFound(failure),
            Some("CertificateValidationException" | "RegistrationCodeValidationException") => {
                AwsError::CertificateValidation(failure)
            }
            Some("CertificateStateException" | "DeleteConflictException") => {
                AwsError::InvalidState(failure)
            }
            Some(
                "UnauthorizedException" | "AccessDeniedException" | "UnrecognizedClientException",
            ) => AwsError::Unauthorized(failure),
            Some(
                "ThrottlingException"
                | "ServiceUnavailableException"
                | "InternalFailureException"
                | "InternalException"
                | "InternalServerException",
            ) => AwsError::Unavailable(failure),
            _ if server_error => AwsError::Unavailable(failure),
            Some(_) => AwsError::InvalidRequest(failure),
            None => AwsError::Unavailable(failure),
        }
    }
}

/// AWS's words from an SDK error, or a one-line account of why there are none.
fn failure_of<E>(error: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let http_status = error.raw_response().map(|r| r.status().as_u16());
    let request_id = error.request_id().map(str::to_owned).or_else(|| {
        error.raw_response().and_then(|r| {
            ["x-amzn-RequestId", "x-amz-request-id"]
                .iter()
                .find_map(|h| r.headers().get(*h).map(str::to_owned))
        })
    });
    let code = error.code().map(str::to_owned);
    let message = match (error.message(), error) {
        (Some(message), _) => message.to_owned(),
        (None, _) if code.is_some() => "AWS sent no message with this error code".to_owned(),
        (None, SdkError::TimeoutError(_)) => {
            "no answer within aws.operation_timeout_secs".to_owned()
        }
        (None, SdkError::DispatchFailure(d)) => {
            let why = if d.is_timeout() {
                "connection timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "the request could not be sent"
            };
            format!("AWS IoT was not reached ({why}; the debug log has the details)")
        }
        (None, SdkError::ConstructionFailure(_)) => {
            "the request could not be built (the debug log has the details)".to_owned()
        }
        (None, _) => match http_status {
            Some(_) => "the answer has no AWS error code or message (the endpoint may not \
                        implement this operation; the debug log has the body)"
                .to_owned(),
            None => "AWS IoT's answer could not be read (the debug log has the details)".to_owned(),
        },
    };
    AwsFailure {
        code,
        message,
        http_status,
        request_id,
    }
}

fn sdk_registration_config(c: &RegistrationConfig) -> aws_sdk_iot::types::RegistrationConfig {
    aws_sdk_iot::types::RegistrationConfig::builder()
        .set_template_body(c.template_body.clone())
        .set_role_arn(c.role_arn.clone())
        .set_template_name(c.template_name.clone())
        .build()
}

fn missing(what: &str) -> AwsError {
    AwsError::Unavailable(format!("AWS IoT answered without {what}").into())
}

fn to_time(t: Option<&aws_sdk_iot::primitives::DateTime>) -> Option<OffsetDateTime> {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
}

/// AWS's name of an enum value (`ACTIVE`, `ENABLE`, ...), or `absent` when it sent none.
fn name_or<T: AsRef<str>>(value: Option<&T>, absent: &str) -> String {
    value.map_or(absent, AsRef::as_ref).to_owned()
}

/// A device certificate as `DescribeCertificate` and `ListCertificatesByCA` describe it.
fn device_certificate(
    certificate_id: &str,
    status: Option<&CertificateStatus>,
    created: Option<&aws_sdk_iot::primitives::DateTime>,
) -> DeviceCertificate {
    DeviceCertificate {
        certificate_id: certificate_id.to_owned(),
        status: name_or(status, ""),
        created_at: to_time(created),
    }
}

#[async_trait]
impl IotRegistry for SdkIotRegistry {
    async fn get_registration_code(&self) -> Result<String, AwsError> {
        let out = self.client.get_registration_code().send().await?;
        out.registration_code()
            .map(str::to_owned)
            .ok_or_else(|| missing("a registration code"))
    }

    async fn register_ca_certificate(
        &self,
        req: RegisterCaRequest,
    ) -> Result<RegisteredCa, AwsError> {
        let mode = match req.mode {
            CertificateMode::Default => SdkMode::Default,
            CertificateMode::SniOnly => SdkMode::SniOnly,
        };
        let out = self
            .client
            .register_ca_certificate()
            .ca_certificate(req.ca_certificate_pem)
            .set_verification_certificate(req.verification_certificate_pem)
            .certificate_mode(mode)
            .set_as_active(req.set_as_active)
            .allow_auto_registration(req.allow_auto_registration)
            .set_registration_config(
                req.registration_config
                    .as_ref()
                    .map(sdk_registration_config),
            )
            .send()
            .await?;
        Ok(RegisteredCa {
            certificate_id: out
                .certificate_id()
                .ok_or_else(|| missing("a certificate id"))?
                .to_owned(),
            certificate_arn: out.certificate_arn().unwrap_or_default().to_owned(),
        })
    }

    async fn describe_ca_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CaDescription, AwsError> {
        let out = self
            .client
            .describe_ca_certificate()
            .certificate_id(certificate_id)
            .send()
            .await?;
        let d = out
            .certificate_description()
            .ok_or_else(|| missing("a certificate description"))?;
        Ok(CaDescription {
            certificate_id: d.certificate_id().unwrap_or(certificate_id).to_owned(),
            certificate_arn: d.certificate_arn().unwrap_or_default().to_owned(),
            status: name_or(d.status(), ""),
            auto_registration_status: name_or(d.auto_registration_status(), "DISABLE"),
            certificate_mode: name_or(d.certificate_mode(), "DEFAULT"),
            registration_config: out.registration_config().map(|c| RegistrationConfig {
                template_body: c.template_body().map(str::to_owned),
                role_arn: c.role_arn().map(str::to_owned),
                template_name: c.template_name().map(str::to_owned),
            }),
        })
    }

    async fn update_ca_certificate(
        &self,
        certificate_id: &str,
        update: CaUpdate,
    ) -> Result<(), AwsError> {
        self.client
            .update_ca_certificate()
            .certificate_id(certificate_id)
            .set_new_status(update.active.map(|a| {
                if a {
                    CaCertificateStatus::Active
                } else {
                    CaCertificateStatus::Inactive
                }
            }))
            .set_new_auto_registration_status(update.auto_registration.map(|e| {
                if e {
                    AutoRegistrationStatus::Enable
                } else {
                    AutoRegistrationStatus::Disable
                }
            }))
            .set_registration_config(
                update
                    .registration_config
                    .as_ref()
                    .map(sdk_registration_config),
            )
            .send()
            .await?;
        Ok(())
    }

    async fn delete_ca_certificate(&self, certificate_id: &str) -> Result<(), AwsError> {
        self.client
            .delete_ca_certificate()
            .certificate_id(certificate_id)
            .send()
            .await?;
        Ok(())
    }

    async fn create_jitp_template(
        &self,
        name: &str,
        body: &str,
        role_arn: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .create_provisioning_template()
            .template_name(name)
            .template_body(body)
            .provisioning_role_arn(role_arn)
            .enabled(true)
            .r#type(TemplateType::Jitp)
            .send()
            .await?;
        Ok(out.template_arn().unwrap_or_default().to_owned())
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .register_certificate()
            .certificate_pem(certificate_pem)
            .ca_certificate_pem(ca_certificate_pem)
            .status(CertificateStatus::from(status))
            .send()
            .await?;
        out.certificate_id()
            .map(str::to_owned)
            .ok_or_else(|| missing("a certificate id"))
    }

    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<DeviceCertificate, AwsError> {
        let out = self
            .client
            .describe_certificate()
            .certificate_id(certificate_id)
            .send()
            .await?;
        let d = out
            .certificate_description()
            .ok_or_else(|| missing("a certificate description"))?;
        Ok(device_certificate(
            d.certificate_id().unwrap_or(certificate_id),
            d.status(),
            d.creation_date(),
        ))
    }

    async fn update_certificate(&self, certificate_id: &str, status: &str) -> Result<(), AwsError> {
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(CertificateStatus::from(status))
            .send()
            .await?;
        Ok(())
    }

    async fn list_certificates_by_ca(
        &self,
        ca_certificate_id: &str,
        marker: Option<&str>,
    ) -> Result<CertificatePage, AwsError> {
        let out = self
            .client
            .list_certificates_by_ca()
            .ca_certificate_id(ca_certificate_id)
            .set_marker(marker.map(str::to_owned))
            .page_size(250)
            .send()
            .await?;
        Ok(CertificatePage {
            certificates: out
                .certificates()
                .iter()
                .map(|c| {
                    device_certificate(
                        c.certificate_id().unwrap_or_default(),
                        c.status(),
                        c.creation_date(),
                    )
                })
                .collect(),
            next_marker: out.next_marker().map(str::to_owned),
        })
    }

    async fn create_certificate_provider(
        &self,
        name: &str,
        lambda_function_arn: &str,
        operations: &[String],
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .create_certificate_provider()
            .certificate_provider_name(name)
            .lambda_function_arn(lambda_function_arn)
            .set_account_default_for_operations(Some(
                operations
                    .iter()
                    .map(|o| CertificateProviderOperation::from(o.as_str()))
                    .collect(),
            ))
            .send()
            .await?;
        Ok(out
            .certificate_provider_arn()
            .unwrap_or_default()
            .to_owned())
    }

    async fn describe_certificate_provider(
        &self,
        name: &str,
    ) -> Result<CertificateProvider, AwsError> {
        let out = self
            .client
            .describe_certificate_provider()
            .certificate_provider_name(name)
            .send()
            .await?;
        Ok(CertificateProvider {
            name: out.certificate_provider_name().unwrap_or(name).to_owned(),
            arn: out
                .certificate_provider_arn()
                .unwrap_or_default()
                .to_owned(),
            lambda_function_arn: out.lambda_function_arn().unwrap_or_default().to_owned(),
            account_default_for_operations: out
                .account_default_for_operations()
                .iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
            created_at: to_time(out.creation_date()),
            last_modified_at: to_time(out.last_modified_date()),
        })
    }

    async fn delete_certificate_provider(&self, name: &str) -> Result<(), AwsError> {
        self.client
            .delete_certificate_provider()
            .certificate_provider_name(name)
            .send()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_iot::config::http::HttpResponse;
    use aws_sdk_iot::error::{ErrorMetadata, SdkError};
    use aws_sdk_iot::operation::update_ca_certificate::UpdateCACertificateError;

    use crate::aws::{AwsError, AwsFailure};

    fn answer(status: u16, request_id: Option<&str>) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().unwrap(), "<html>".into());
        if let Some(id) = request_id {
            response
                .headers_mut()
                .insert("x-amzn-RequestId", id.to_owned());
        }
        response
    }

    #[test]
    fn keeps_awss_code_message_status_and_request_id() {
        let meta = ErrorMetadata::builder()
            .code("ResourceNotFoundException")
            .message("The certificate given in the request does not exist")
            .build();
        let error = SdkError::service_error(
            UpdateCACertificateError::generic(meta),
            answer(404, Some("6c1e3f0a")),
        );
        assert_eq!(
            AwsError::from(error),
            AwsError::NotFound(AwsFailure {
                code: Some("ResourceNotFoundException".into()),
                message: "The certificate given in the request does not exist".into(),
                http_status: Some(404),
                request_id: Some("6c1e3f0a".into()),
            })
        );
    }

    #[test]
    fn a_codeless_5xx_is_one_line_without_the_sdk_dump() {
        let error = SdkError::service_error(
            UpdateCACertificateError::generic(ErrorMetadata::builder().build()),
            answer(500, None),
        );
        let classified = AwsError::from(error);
        assert!(
            matches!(classified, AwsError::Unavailable(_)),
            "{classified:?}"
        );
        assert_eq!(
            classified.to_string(),
            "AWS IoT is unavailable: the answer has no AWS error code or message (the endpoint \
             may not implement this operation; the debug log has the body) (HTTP 500, no \
             request id)"
        );
    }
}

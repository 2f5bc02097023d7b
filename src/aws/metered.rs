//! [`MeteredRegistry`]: any [`IotRegistry`] with Prometheus metrics on each call
//! (`factory_ca_aws_calls_total{operation, outcome}` and
//! `factory_ca_aws_call_duration_seconds{operation}`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    AwsError, CaDescription, CaUpdate, CertificatePage, DeviceCertificate, IotRegistry,
    RegisterCaRequest, RegisteredCa,
};

pub struct MeteredRegistry {
    inner: Arc<dyn IotRegistry>,
}

impl MeteredRegistry {
    pub fn new(inner: Arc<dyn IotRegistry>) -> Self {
        Self { inner }
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
    operation: &'static str,
    call: impl Future<Output = Result<T, AwsError>>,
) -> Result<T, AwsError> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!("factory_ca_aws_call_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "factory_ca_aws_calls_total",
        "operation" => operation,
        "outcome" => outcome(&result),
    )
    .increment(1);
    result
}

#[async_trait]
impl IotRegistry for MeteredRegistry {
    async fn get_registration_code(&self) -> Result<String, AwsError> {
        metered("GetRegistrationCode", self.inner.get_registration_code()).await
    }

    async fn register_ca_certificate(
        &self,
        req: RegisterCaRequest,
    ) -> Result<RegisteredCa, AwsError> {
        metered(
            "RegisterCACertificate",
            self.inner.register_ca_certificate(req),
        )
        .await
    }

    async fn describe_ca_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CaDescription, AwsError> {
        metered(
            "DescribeCACertificate",
            self.inner.describe_ca_certificate(certificate_id),
        )
        .await
    }

    async fn update_ca_certificate(
        &self,
        certificate_id: &str,
        update: CaUpdate,
    ) -> Result<(), AwsError> {
        metered(
            "UpdateCACertificate",
            self.inner.update_ca_certificate(certificate_id, update),
        )
        .await
    }

    async fn delete_ca_certificate(&self, certificate_id: &str) -> Result<(), AwsError> {
        metered(
            "DeleteCACertificate",
            self.inner.delete_ca_certificate(certificate_id),
        )
        .await
    }

    async fn create_jitp_template(
        &self,
        name: &str,
        body: &str,
        role_arn: &str,
    ) -> Result<String, AwsError> {
        metered(
            "CreateProvisioningTemplate",
            self.inner.create_jitp_template(name, body, role_arn),
        )
        .await
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: &str,
    ) -> Result<String, AwsError> {
        metered(
            "RegisterCertificate",
            self.inner
                .register_certificate(certificate_pem, ca_certificate_pem, status),
        )
        .await
    }

    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<DeviceCertificate, AwsError> {
        metered(
            "DescribeCertificate",
            self.inner.describe_certificate(certificate_id),
        )
        .await
    }

    async fn update_certificate(&self, certificate_id: &str, status: &str) -> Result<(), AwsError> {
        metered(
            "UpdateCertificate",
            self.inner.update_certificate(certificate_id, status),
        )
        .await
    }

    async fn list_certificates_by_ca(
        &self,
        ca_certificate_id: &str,
        marker: Option<&str>,
    ) -> Result<CertificatePage, AwsError> {
        metered(
            "ListCertificatesByCA",
            self.inner
                .list_certificates_by_ca(ca_certificate_id, marker),
        )
        .await
    }
}

//! An in-memory AWS IoT that enforces the rules of the real one that matter to us (see
//! `docs/jitp.md`), for fast tests of everything the moto emulator does not check: CA:TRUE, a
//! verification certificate whose CN is the registration code and that the CA signed,
//! SNI_ONLY without a verification certificate, deletion only when INACTIVE,
//! ResourceAlreadyExists, at most 10 CAs per subject, templates that only use the
//! parameters JITP supplies, and certificate providers (which moto lacks): AWS's name
//! pattern, a Lambda function ARN, `CreateCertificateFromCsr` as the only operation, and one
//! provider per account.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    AwsError, AwsFailure, CaDescription, CaUpdate, CertificateMode, CertificatePage,
    CertificateProvider, DeviceCertificate, IotRegistry, RegisterCaRequest, RegisteredCa,
    RegistrationConfig, certificate_provider,
};
use crate::ca::{is_signed_by, sha256_hex};
use crate::jitp::CertificateField;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
struct FakeCa {
    der: Vec<u8>,
    subject: Vec<u8>,
    active: bool,
    auto_registration: bool,
    mode: CertificateMode,
    registration_config: Option<RegistrationConfig>,
}

#[derive(Debug, Clone)]
struct FakeCertificate {
    ca_id: String,
    status: String,
    created_at: OffsetDateTime,
}

#[derive(Debug, Default)]
struct State {
    cas: BTreeMap<String, FakeCa>,
    certificates: BTreeMap<String, FakeCertificate>,
    templates: BTreeMap<String, String>,
    certificate_providers: BTreeMap<String, CertificateProvider>,
    calls: Vec<String>,
    fail_next: Option<AwsError>,
    auto_registration_ignored: bool,
    fail_after: Option<(usize, AwsError)>,
    down: Option<AwsError>,
    /// Certificates whose UpdateCertificate fails, with the error.
    refused_certificates: BTreeMap<String, AwsError>,
    /// How long UpdateCertificate and RegisterCertificate take to answer.
    latency: std::time::Duration,
    /// UpdateCertificate and RegisterCertificate calls under way now, and the most at once.
    in_flight: usize,
    most_in_flight: usize,
}

impl State {
    fn ca(&self, certificate_id: &str) -> Result<&FakeCa, AwsError> {
        self.cas
            .get(certificate_id)
            .ok_or_else(|| no_ca(certificate_id))
    }

    fn ca_mut(&mut self, certificate_id: &str) -> Result<&mut FakeCa, AwsError> {
        self.cas
            .get_mut(certificate_id)
            .ok_or_else(|| no_ca(certificate_id))
    }
}

fn no_ca(certificate_id: &str) -> AwsError {
    aws(
        AwsError::NotFound,
        format!("CA certificate {certificate_id}"),
    )
}

pub struct FakeIotRegistry {
    registration_code: String,
    page_size: usize,
    state: Mutex<State>,
}

impl Default for FakeIotRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeIotRegistry {
    pub fn new() -> Self {
        Self {
            registration_code: hex::encode([0x5a; 32]),
            page_size: 2,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the fake's lock is never poisoned")
    }

    /// The next call fails with `error` (then calls succeed again).
    pub fn fail_next(&self, error: AwsError) {
        self.state().fail_next = Some(error);
    }

    /// The call after the next `calls` succeed fails with `error` (then calls succeed again):
    /// a failure part way through a paged listing.
    pub fn fail_after(&self, calls: usize, error: AwsError) {
        self.state().fail_after = Some((calls, error));
    }

    /// From now on, accept auto-registration in RegisterCACertificate and UpdateCACertificate
    /// but keep it off, as the moto emulator does: for tests of answers that must show what AWS
    /// did rather than what was asked.
    pub fn ignore_auto_registration(&self) {
        self.state().auto_registration_ignored = true;
    }

    /// Every call fails with `error` until [`FakeIotRegistry::restore`]: a target that is down,
    /// throttles everything, or refuses our credentials.
    pub fn go_down(&self, error: AwsError) {
        self.state().down = Some(error);
    }

    /// Calls succeed again after [`FakeIotRegistry::go_down`] and
    /// [`FakeIotRegistry::refuse_certificate`].
    pub fn restore(&self) {
        let mut state = self.state();
        state.down = None;
        state.refused_certificates.clear();
    }

    /// UpdateCertificate of `certificate_id` fails with `error` until
    /// [`FakeIotRegistry::restore`]: one certificate AWS will not change.
    pub fn refuse_certificate(&self, certificate_id: &str, error: AwsError) {
        self.state()
            .refused_certificates
            .insert(certificate_id.to_owned(), error);
    }

    /// UpdateCertificate and RegisterCertificate answer after `latency`, as AWS does over the
    /// network; the calls overlap, as AWS's do.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state().latency = latency;
    }

    /// The most UpdateCertificate and RegisterCertificate calls that were under way at once.
    pub fn most_in_flight(&self) -> usize {
        self.state().most_in_flight
    }

    /// Waits out the configured latency, counting the call as under way meanwhile.
    async fn answer_late(&self) {
        let latency = {
            let mut state = self.state();
            state.in_flight += 1;
            state.most_in_flight = state.most_in_flight.max(state.in_flight);
            state.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.state().in_flight -= 1;
    }

    /// The operations called so far, in order (e.g. `RegisterCACertificate`).
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// What JITP does when a device first connects with a certificate of a registered CA
    /// whose auto-registration is enabled: registers the certificate (PENDING_ACTIVATION
    /// until the template ran; we mark it ACTIVE as the template's Certificate resource does).
    pub fn simulate_first_connection(&self, certificate_der: &[u8]) -> Result<String, AwsError> {
        let mut state = self.state();
        let id = sha256_hex(certificate_der);
        let ca_id = state
            .cas
            .iter()
            .find(|(_, ca)| {
                ca.active && ca.auto_registration && is_signed_by(certificate_der, &ca.der)
            })
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                aws(
                    AwsError::InvalidRequest,
                    "no active CA with auto-registration signed it".into(),
                )
            })?;
        if let Some(existing) = state.certificates.get(&id) {
            return if existing.status == "REVOKED" {
                Err(aws(
                    AwsError::InvalidState,
                    "the certificate is REVOKED".into(),
                ))
            } else {
                Ok(id)
            };
        }
        state.certificates.insert(
            id.clone(),
            FakeCertificate {
                ca_id,
                status: "ACTIVE".into(),
                created_at: OffsetDateTime::now_utc(),
            },
        );
        Ok(id)
    }

    fn begin(&self, operation: &str) -> Result<std::sync::MutexGuard<'_, State>, AwsError> {
        let mut state = self.state();
        state.calls.push(operation.to_owned());
        if let Some(error) = &state.down {
            return Err(error.clone());
        }
        match state.fail_after.take() {
            Some((0, error)) => return Err(error),
            Some((n, error)) => state.fail_after = Some((n - 1, error)),
            None => {}
        }
        match state.fail_next.take() {
            Some(error) => Err(error),
            None => Ok(state),
        }
    }
}

/// A fake request id, unique in this process, like the `x-amzn-RequestId` AWS sends.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("fake-{:012x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// AWS IoT's answer to a call over one of its quotas: `LimitExceededException`, HTTP 410.
fn limit_exceeded(message: String) -> AwsError {
    AwsError::InvalidRequest(AwsFailure {
        code: Some("LimitExceededException".into()),
        message,
        http_status: Some(410),
        request_id: Some(request_id()),
    })
}

/// An error as AWS IoT would answer it: the exception's name, its HTTP status and a request id.
fn aws(kind: fn(AwsFailure) -> AwsError, message: String) -> AwsError {
    let (code, status) = match kind(AwsFailure::default()) {
        AwsError::AlreadyExists(_) => ("ResourceAlreadyExistsException", 409),
        AwsError::NotFound(_) => ("ResourceNotFoundException", 404),
        AwsError::CertificateValidation(_) => ("CertificateValidationException", 400),
        AwsError::InvalidState(_) => ("CertificateStateException", 406),
        AwsError::InvalidRequest(_) => ("InvalidRequestException", 400),
        AwsError::Unauthorized(_) => ("UnauthorizedException", 401),
        AwsError::Unavailable(_) => ("ServiceUnavailableException", 503),
    };
    kind(AwsFailure {
        code: Some(code.to_owned()),
        message,
        http_status: Some(status),
        request_id: Some(request_id()),
    })
}

fn ca_arn(id: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:cacert/{id}")
}

fn pem_der(text: &str, what: &str) -> Result<Vec<u8>, AwsError> {
    pem::parse(text).map(|p| p.into_contents()).map_err(|_| {
        aws(
            AwsError::CertificateValidation,
            format!("the {what} is not a PEM certificate"),
        )
    })
}

fn check_registration_config(
    config: &RegistrationConfig,
    templates: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    match (&config.template_body, &config.template_name) {
        (Some(body), None) => {
            let role = config.role_arn.as_deref().unwrap_or_default();
            if !role.starts_with("arn:aws:iam::") || !role.contains(":role/") {
                return Err(aws(
                    AwsError::InvalidRequest,
                    "roleArn must be an IAM role ARN".into(),
                ));
            }
            check_template_body(body)
        }
        (None, Some(name)) => templates
            .contains_key(name)
            .then_some(())
            .ok_or_else(|| aws(AwsError::NotFound, format!("provisioning template {name}"))),
        _ => Err(aws(
            AwsError::InvalidRequest,
            "registrationConfig needs templateBody with roleArn, or templateName".into(),
        )),
    }
}

fn check_template_body(body: &str) -> Result<(), AwsError> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| aws(AwsError::InvalidRequest, "templateBody is not JSON".into()))?;
    let parameters = value
        .get("Parameters")
        .and_then(|p| p.as_object())
        .ok_or_else(|| {
            aws(
                AwsError::InvalidRequest,
                "templateBody has no Parameters object".into(),
            )
        })?;
    if value.get("Resources").and_then(|r| r.as_object()).is_none() {
        return Err(aws(
            AwsError::InvalidRequest,
            "templateBody has no Resources object".into(),
        ));
    }
    if let Some(bad) = parameters
        .keys()
        .find(|k| CertificateField::from_parameter_name(k).is_none())
    {
        return Err(aws(
            AwsError::InvalidRequest,
            format!("template parameter {bad} is not supplied by JITP"),
        ));
    }
    Ok(())
}

#[async_trait]
impl IotRegistry for FakeIotRegistry {
    async fn get_registration_code(&self) -> Result<String, AwsError> {
        drop(self.begin("GetRegistrationCode")?);
        Ok(self.registration_code.clone())
    }

    async fn register_ca_certificate(
        &self,
        req: RegisterCaRequest,
    ) -> Result<RegisteredCa, AwsError> {
        let mut state = self.begin("RegisterCACertificate")?;
        let der = pem_der(&req.ca_certificate_pem, "CA certificate")?;
        let (_, ca) = X509Certificate::from_der(&der).map_err(|_| {
            aws(
                AwsError::CertificateValidation,
                "the CA certificate is not X.509".into(),
            )
        })?;
        if !ca.is_ca() {
            return Err(aws(
                AwsError::CertificateValidation,
                "Contents of the CA Certificate certificate are not correct".into(),
            ));
        }
        match (req.mode, &req.verification_certificate_pem) {
            (CertificateMode::Default, None) => {
                return Err(aws(
                    AwsError::InvalidRequest,
                    "a verification certificate is required in DEFAULT mode".into(),
                ));
            }
            (CertificateMode::SniOnly, Some(_)) => {
                return Err(aws(
                    AwsError::InvalidRequest,
                    "SNI_ONLY mode takes no verification certificate".into(),
                ));
            }
            (CertificateMode::Default, Some(pem)) => {
                let vder = pem_der(pem, "verification certificate")?;
                let (_, verification) = X509Certificate::from_der(&vder).map_err(|_| {
                    aws(
                        AwsError::CertificateValidation,
                        "the verification certificate is not X.509".into(),
                    )
                })?;
                let cn = verification
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|c| c.as_str().ok());
                if cn != Some(self.registration_code.as_str()) {
                    return Err(aws(
                        AwsError::CertificateValidation,
                        "the verification certificate's CN is not the registration code".into(),
                    ));
                }
                if !is_signed_by(&vder, &der) {
                    return Err(aws(
                        AwsError::CertificateValidation,
                        "the verification certificate is not signed by the CA".into(),
                    ));
                }
            }
            (CertificateMode::SniOnly, None) => {}
        }
        if let Some(config) = &req.registration_config {
            check_registration_config(config, &state.templates)?;
        }
        let id = sha256_hex(&der);
        if state.cas.contains_key(&id) {
            return Err(aws(AwsError::AlreadyExists, format!("CA certificate {id}")));
        }
        let subject = ca.subject().as_raw().to_vec();
        if state.cas.values().filter(|c| c.subject == subject).count() >= 10 {
            return Err(limit_exceeded(
                "at most 10 CA certificates with the same subject".into(),
            ));
        }
        let auto_registration = req.allow_auto_registration && !state.auto_registration_ignored;
        state.cas.insert(
            id.clone(),
            FakeCa {
                der,
                subject,
                active: req.set_as_active,
                auto_registration,
                mode: req.mode,
                registration_config: req.registration_config,
            },
        );
        Ok(RegisteredCa {
            certificate_arn: ca_arn(&id),
            certificate_id: id,
        })
    }

    async fn describe_ca_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CaDescription, AwsError> {
        let state = self.begin("DescribeCACertificate")?;
        let ca = state.ca(certificate_id)?;
        Ok(CaDescription {
            certificate_id: certificate_id.to_owned(),
            certificate_arn: ca_arn(certificate_id),
            status: if ca.active { "ACTIVE" } else { "INACTIVE" }.into(),
            auto_registration_status: if ca.auto_registration {
                "ENABLE"
            } else {
                "DISABLE"
            }
            .into(),
            certificate_mode: ca.mode.as_aws().into(),
            registration_config: ca.registration_config.clone(),
        })
    }

    async fn update_ca_certificate(
        &self,
        certificate_id: &str,
        update: CaUpdate,
    ) -> Result<(), AwsError> {
        let mut state = self.begin("UpdateCACertificate")?;
        if let Some(config) = &update.registration_config {
            check_registration_config(config, &state.templates)?;
        }
        let ignored = state.auto_registration_ignored;
        let ca = state.ca_mut(certificate_id)?;
        if let Some(active) = update.active {
            ca.active = active;
        }
        if let Some(auto) = update.auto_registration {
            ca.auto_registration = auto && !ignored;
        }
        if let Some(config) = update.registration_config {
            ca.registration_config = Some(config);
        }
        Ok(())
    }

    async fn delete_ca_certificate(&self, certificate_id: &str) -> Result<(), AwsError> {
        let mut state = self.begin("DeleteCACertificate")?;
        let ca = state.ca(certificate_id)?;
        if ca.active {
            return Err(aws(
                AwsError::InvalidState,
                "a CA certificate must be INACTIVE before it can be deleted".into(),
            ));
        }
        state.cas.remove(certificate_id);
        Ok(())
    }

    async fn create_jitp_template(
        &self,
        name: &str,
        body: &str,
        role_arn: &str,
    ) -> Result<String, AwsError> {
        let mut state = self.begin("CreateProvisioningTemplate")?;
        check_registration_config(
            &RegistrationConfig {
                template_body: Some(body.to_owned()),
                role_arn: Some(role_arn.to_owned()),
                template_name: None,
            },
            &state.templates,
        )?;
        if state.templates.contains_key(name) {
            return Err(aws(
                AwsError::AlreadyExists,
                format!("provisioning template {name}"),
            ));
        }
        state.templates.insert(name.to_owned(), body.to_owned());
        Ok(format!(
            "arn:aws:iot:{REGION}:{ACCOUNT}:provisioningtemplate/{name}"
        ))
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: &str,
    ) -> Result<String, AwsError> {
        self.answer_late().await;
        let mut state = self.begin("RegisterCertificate")?;
        let der = pem_der(certificate_pem, "certificate")?;
        let ca_der = pem_der(ca_certificate_pem, "CA certificate")?;
        let ca_id = sha256_hex(&ca_der);
        if !state.cas.contains_key(&ca_id) {
            return Err(aws(
                AwsError::InvalidRequest,
                "the CA certificate is not registered".into(),
            ));
        }
        if !is_signed_by(&der, &ca_der) {
            return Err(aws(
                AwsError::CertificateValidation,
                "the certificate is not signed by the CA".into(),
            ));
        }
        let id = sha256_hex(&der);
        if state.certificates.contains_key(&id) {
            return Err(aws(AwsError::AlreadyExists, format!("certificate {id}")));
        }
        state.certificates.insert(
            id.clone(),
            FakeCertificate {
                ca_id,
                status: status.to_owned(),
                created_at: OffsetDateTime::now_utc(),
            },
        );
        Ok(id)
    }

    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<DeviceCertificate, AwsError> {
        let state = self.begin("DescribeCertificate")?;
        let c = state
            .certificates
            .get(certificate_id)
            .ok_or_else(|| aws(AwsError::NotFound, format!("certificate {certificate_id}")))?;
        Ok(DeviceCertificate {
            certificate_id: certificate_id.to_owned(),
            status: c.status.clone(),
            created_at: Some(c.created_at),
        })
    }

    async fn update_certificate(&self, certificate_id: &str, status: &str) -> Result<(), AwsError> {
        self.answer_late().await;
        let mut state = self.begin("UpdateCertificate")?;
        if let Some(error) = state.refused_certificates.get(certificate_id) {
            return Err(error.clone());
        }
        let c = state
            .certificates
            .get_mut(certificate_id)
            .ok_or_else(|| aws(AwsError::NotFound, format!("certificate {certificate_id}")))?;
        c.status = status.to_owned();
        Ok(())
    }

    async fn list_certificates_by_ca(
        &self,
        ca_certificate_id: &str,
        marker: Option<&str>,
    ) -> Result<CertificatePage, AwsError> {
        let state = self.begin("ListCertificatesByCA")?;
        let all: Vec<_> = state
            .certificates
            .iter()
            .filter(|(_, c)| c.ca_id == ca_certificate_id)
            .filter(|(id, _)| marker.is_none_or(|m| id.as_str() > m))
            .collect();
        let page: Vec<_> = all.iter().take(self.page_size).collect();
        let next_marker = (all.len() > self.page_size)
            .then(|| page.last().map(|(id, _)| (*id).clone()))
            .flatten();
        Ok(CertificatePage {
            certificates: page
                .into_iter()
                .map(|(id, c)| DeviceCertificate {
                    certificate_id: (*id).clone(),
                    status: c.status.clone(),
                    created_at: Some(c.created_at),
                })
                .collect(),
            next_marker,
        })
    }

    async fn create_certificate_provider(
        &self,
        name: &str,
        lambda_function_arn: &str,
        operations: &[String],
    ) -> Result<String, AwsError> {
        let mut state = self.begin("CreateCertificateProvider")?;
        let invalid = |m: String| aws(AwsError::InvalidRequest, m);
        certificate_provider::check_name(name).map_err(invalid)?;
        certificate_provider::check_lambda_function_arn(lambda_function_arn).map_err(invalid)?;
        certificate_provider::check_operations(operations).map_err(invalid)?;
        if state.certificate_providers.contains_key(name) {
            return Err(aws(
                AwsError::AlreadyExists,
                format!("certificate provider {name} already exists"),
            ));
        }
        if let Some(existing) = state.certificate_providers.keys().next() {
            return Err(limit_exceeded(format!(
                "the account already has a certificate provider ({existing}); an account has \
                 at most one"
            )));
        }
        let arn = format!("arn:aws:iot:{REGION}:{ACCOUNT}:certificateprovider/{name}");
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 ns is valid");
        state.certificate_providers.insert(
            name.to_owned(),
            CertificateProvider {
                name: name.to_owned(),
                arn: arn.clone(),
                lambda_function_arn: lambda_function_arn.to_owned(),
                account_default_for_operations: operations.to_vec(),
                created_at: Some(now),
                last_modified_at: Some(now),
            },
        );
        Ok(arn)
    }

    async fn describe_certificate_provider(
        &self,
        name: &str,
    ) -> Result<CertificateProvider, AwsError> {
        let state = self.begin("DescribeCertificateProvider")?;
        state
            .certificate_providers
            .get(name)
            .cloned()
            .ok_or_else(|| aws(AwsError::NotFound, format!("certificate provider {name}")))
    }

    async fn delete_certificate_provider(&self, name: &str) -> Result<(), AwsError> {
        let mut state = self.begin("DeleteCertificateProvider")?;
        state
            .certificate_providers
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| aws(AwsError::NotFound, format!("certificate provider {name}")))
    }
}

#[cfg(test)]
mod certificate_provider_tests {
    use super::*;

    const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:factory-ca-provider";

    fn ops() -> Vec<String> {
        vec!["CreateCertificateFromCsr".to_owned()]
    }

    #[tokio::test]
    async fn the_fake_keeps_awss_rules_for_certificate_providers() {
        let fake = FakeIotRegistry::new();
        let bad_name = fake
            .create_certificate_provider("has space", LAMBDA, &ops())
            .await;
        assert!(matches!(bad_name, Err(AwsError::InvalidRequest(_))));
        let bad_arn = fake
            .create_certificate_provider("p", "arn:aws:iam::123456789012:role/r", &ops())
            .await;
        assert!(matches!(bad_arn, Err(AwsError::InvalidRequest(_))));
        let bad_ops = fake
            .create_certificate_provider("p", LAMBDA, &["CreateKeysAndCertificate".into()])
            .await;
        assert!(matches!(bad_ops, Err(AwsError::InvalidRequest(_))));

        let arn = fake
            .create_certificate_provider("p", LAMBDA, &ops())
            .await
            .unwrap();
        assert!(arn.ends_with(":certificateprovider/p"), "{arn}");
        let again = fake.create_certificate_provider("p", LAMBDA, &ops()).await;
        assert!(matches!(again, Err(AwsError::AlreadyExists(_))));
        let second = fake.create_certificate_provider("q", LAMBDA, &ops()).await;
        match second {
            Err(AwsError::InvalidRequest(f)) => {
                assert_eq!(f.code.as_deref(), Some("LimitExceededException"))
            }
            other => panic!("one provider per account: {other:?}"),
        }
        let described = fake.describe_certificate_provider("p").await.unwrap();
        assert_eq!(described.lambda_function_arn, LAMBDA);
        assert_eq!(described.account_default_for_operations, ops());
        fake.delete_certificate_provider("p").await.unwrap();
        assert!(matches!(
            fake.describe_certificate_provider("p").await,
            Err(AwsError::NotFound(_))
        ));
        assert!(matches!(
            fake.delete_certificate_provider("p").await,
            Err(AwsError::NotFound(_))
        ));
        // Deleted, the account may have another.
        fake.create_certificate_provider("q", LAMBDA, &ops())
            .await
            .unwrap();
    }
}

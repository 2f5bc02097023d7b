//! AWS IoT behind a narrow async trait, [`IotRegistry`]: the calls factory-ca makes, in our own
//! types. [`sdk::SdkIotRegistry`] implements it with `aws-sdk-iot` (the only module that imports
//! the SDK); [`fake::FakeIotRegistry`] implements it in memory and enforces AWS's rules, for
//! tests of everything the moto emulator does not check.
//!
//! Contract for implementations:
//! - Each call is one AWS API call (the SDK's own retries included); no caching.
//! - Errors are [`AwsError`]s classified by AWS's error code; throttling, 5xx and network
//!   failures after retries are `Unavailable`.
//! - Timeouts are the SDK's (operation timeout configured by `aws.operation_timeout_secs`).

/// Calls `$decorator!` with every [`IotRegistry`] method and AWS's name of its operation: the
/// one list the wrapping registries ([`metered`], [`throttled`]) implement the trait from.
macro_rules! iot_operations {
    ($decorator:ident) => {
        $decorator! {
            "GetRegistrationCode" => fn get_registration_code(&self) -> String;
            "RegisterCACertificate" => fn register_ca_certificate(&self, req: RegisterCaRequest)
                -> RegisteredCa;
            "DescribeCACertificate" => fn describe_ca_certificate(&self, certificate_id: &str)
                -> CaDescription;
            "UpdateCACertificate" => fn update_ca_certificate(
                &self, certificate_id: &str, update: CaUpdate) -> ();
            "DeleteCACertificate" => fn delete_ca_certificate(&self, certificate_id: &str) -> ();
            "CreateProvisioningTemplate" => fn create_jitp_template(
                &self, name: &str, body: &str, role_arn: &str) -> String;
            "RegisterCertificate" => fn register_certificate(
                &self, certificate_pem: &str, ca_certificate_pem: &str, status: &str) -> String;
            "DescribeCertificate" => fn describe_certificate(&self, certificate_id: &str)
                -> DeviceCertificate;
            "UpdateCertificate" => fn update_certificate(
                &self, certificate_id: &str, status: &str) -> ();
            "ListCertificatesByCA" => fn list_certificates_by_ca(
                &self, ca_certificate_id: &str, marker: Option<&str>) -> CertificatePage;
            "CreateCertificateProvider" => fn create_certificate_provider(
                &self, name: &str, lambda_function_arn: &str, operations: &[String]) -> String;
            "DescribeCertificateProvider" => fn describe_certificate_provider(&self, name: &str)
                -> CertificateProvider;
            "DeleteCertificateProvider" => fn delete_certificate_provider(&self, name: &str)
                -> ();
        }
    };
}

pub mod certificate_provider;
pub mod fake;
pub mod metered;
pub mod sdk;
pub mod sdk_config;
pub mod throttled;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use certificate_provider::CertificateProvider;

/// How AWS should treat the CA (RegisterCACertificate `certificateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateMode {
    /// Needs a verification certificate proving we hold the CA key.
    Default,
    /// No verification certificate; the same CA may be registered in many accounts.
    SniOnly,
}

impl std::fmt::Display for CertificateMode {
    /// Our spelling (`default`, `sni_only`), as the API and the audit log show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertificateMode::Default => "default",
            CertificateMode::SniOnly => "sni_only",
        })
    }
}

impl CertificateMode {
    pub fn as_aws(self) -> &'static str {
        match self {
            CertificateMode::Default => "DEFAULT",
            CertificateMode::SniOnly => "SNI_ONLY",
        }
    }
}

/// A CA's status in AWS IoT (DescribeCACertificate `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaStatus {
    Active,
    Inactive,
}

/// `ALL`, `as_aws`, `from_aws` and `Display` (AWS's spelling, which the API and the ledger show
/// too) for an enum of AWS status names, each name written once.
macro_rules! aws_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_aws(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            pub fn from_aws(value: &str) -> Option<$ty> {
                $ty::ALL.iter().copied().find(|s| s.as_aws() == value)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_aws())
            }
        }
    };
}

aws_names!(CaStatus {
    Active => "ACTIVE",
    Inactive => "INACTIVE",
});

impl CaStatus {
    /// `ACTIVE` when `active`.
    pub fn from_active(active: bool) -> CaStatus {
        if active {
            CaStatus::Active
        } else {
            CaStatus::Inactive
        }
    }
}

/// A device certificate's status in AWS IoT (ListCertificatesByCA, DescribeCertificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AwsCertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingTransfer,
    RegisterInactive,
    PendingActivation,
}

aws_names!(AwsCertificateStatus {
    Active => "ACTIVE",
    Inactive => "INACTIVE",
    Revoked => "REVOKED",
    PendingTransfer => "PENDING_TRANSFER",
    RegisterInactive => "REGISTER_INACTIVE",
    PendingActivation => "PENDING_ACTIVATION",
});

/// `registrationConfig`: the JITP template, inline or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationConfig {
    /// The template as an escaped JSON string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RegisterCaRequest {
    pub ca_certificate_pem: String,
    pub verification_certificate_pem: Option<String>,
    pub mode: CertificateMode,
    pub set_as_active: bool,
    pub allow_auto_registration: bool,
    pub registration_config: Option<RegistrationConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredCa {
    pub certificate_id: String,
    pub certificate_arn: String,
}

/// What DescribeCACertificate says about a CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CaDescription {
    pub certificate_id: String,
    pub certificate_arn: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `ENABLE` or `DISABLE`.
    pub auto_registration_status: String,
    /// `DEFAULT` or `SNI_ONLY`.
    pub certificate_mode: String,
    pub registration_config: Option<RegistrationConfig>,
}

/// UpdateCACertificate; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct CaUpdate {
    pub active: Option<bool>,
    pub auto_registration: Option<bool>,
    pub registration_config: Option<RegistrationConfig>,
}

/// A device certificate as AWS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub certificate_id: String,
    /// `ACTIVE`, `INACTIVE`, `REVOKED`, `PENDING_ACTIVATION`, ...
    pub status: String,
    pub created_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct CertificatePage {
    pub certificates: Vec<DeviceCertificate>,
    pub next_marker: Option<String>,
}

/// What AWS IoT said about a failed call, in AWS's words: its error code, message, HTTP status
/// and request id (the id AWS support asks for). Shown in problem details and the audit log; the
/// SDK's full debug output goes to the debug log only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsFailure {
    /// AWS's error code, e.g. `ResourceNotFoundException`; none when AWS sent no error body
    /// (a proxy's 5xx page) or the call never reached AWS.
    pub code: Option<String>,
    /// AWS's message, or what happened when AWS sent none.
    pub message: String,
    /// The HTTP status of AWS's answer; none when no answer came (timeout, connection).
    pub http_status: Option<u16>,
    /// The `x-amzn-RequestId` of AWS's answer.
    pub request_id: Option<String>,
}

impl AwsFailure {
    /// A failure with a message only (no answer from AWS, or raised by factory-ca itself).
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

impl From<String> for AwsFailure {
    fn from(message: String) -> Self {
        Self::message(message)
    }
}

impl From<&str> for AwsFailure {
    fn from(message: &str) -> Self {
        Self::message(message)
    }
}

impl std::fmt::Display for AwsFailure {
    /// `ResourceNotFoundException: <message> (HTTP 404, request id <id>)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)?;
        match (self.http_status, &self.request_id) {
            (Some(status), Some(id)) => write!(f, " (HTTP {status}, request id {id})"),
            (Some(status), None) => write!(f, " (HTTP {status}, no request id)"),
            (None, Some(id)) => write!(f, " (request id {id})"),
            (None, None) => Ok(()),
        }
    }
}

/// AWS IoT errors, by what the caller can do about them.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AwsError {
    /// ResourceAlreadyExistsException.
    #[error("AWS IoT: the resource already exists: {0}")]
    AlreadyExists(AwsFailure),
    /// ResourceNotFoundException.
    #[error("AWS IoT: not found: {0}")]
    NotFound(AwsFailure),
    /// CertificateValidationException, RegistrationCodeValidationException.
    #[error("AWS IoT rejected the certificate: {0}")]
    CertificateValidation(AwsFailure),
    /// CertificateStateException, e.g. deleting a CA that is still ACTIVE.
    #[error("AWS IoT: wrong state for this operation: {0}")]
    InvalidState(AwsFailure),
    /// InvalidRequestException, LimitExceededException and other 4xx.
    #[error("AWS IoT rejected the request: {0}")]
    InvalidRequest(AwsFailure),
    /// UnauthorizedException, AccessDenied: our credentials may not do this.
    #[error("AWS IoT denied access: {0}")]
    Unauthorized(AwsFailure),
    /// Throttling, 5xx, timeouts and network failures after the SDK's retries.
    #[error("AWS IoT is unavailable: {0}")]
    Unavailable(AwsFailure),
}

impl AwsError {
    /// What AWS said.
    pub fn failure(&self) -> &AwsFailure {
        match self {
            AwsError::AlreadyExists(f)
            | AwsError::NotFound(f)
            | AwsError::CertificateValidation(f)
            | AwsError::InvalidState(f)
            | AwsError::InvalidRequest(f)
            | AwsError::Unauthorized(f)
            | AwsError::Unavailable(f) => f,
        }
    }
}

/// One registration target at run time: its name (`[aws.targets.<name>]`, or `default`), its
/// region and the registry that reaches it (paced by its own token bucket).
#[derive(Clone)]
pub struct AwsTargetRegistry {
    pub name: String,
    pub region: String,
    /// The account of the target's `role_arn`, when one is assumed.
    pub account: Option<String>,
    pub registry: std::sync::Arc<dyn IotRegistry>,
    /// Revocation pushes in flight at once (`revocation_push_concurrency`), at least 1.
    pub push_concurrency: usize,
}

impl std::fmt::Debug for AwsTargetRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsTargetRegistry")
            .field("name", &self.name)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The account id of an IAM role ARN (`arn:aws:iam::<account>:role/<name>`).
pub fn role_account(role_arn: &str) -> Option<String> {
    role_arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

impl AwsError {
    /// What failed, for the per-target state: `throttled`, `unreachable` (no answer),
    /// `unavailable` (a 5xx), `access_denied`, `not_found`, `already_exists`,
    /// `certificate_validation`, `invalid_state` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            AwsError::AlreadyExists(_) => "already_exists",
            AwsError::NotFound(_) => "not_found",
            AwsError::CertificateValidation(_) => "certificate_validation",
            AwsError::InvalidState(_) => "invalid_state",
            AwsError::InvalidRequest(_) => "rejected",
            AwsError::Unauthorized(_) => "access_denied",
            AwsError::Unavailable(f) => {
                let code = f.code.as_deref().unwrap_or("");
                if code.contains("Throttl")
                    || code == "TooManyRequestsException"
                    || f.http_status == Some(429)
                {
                    "throttled"
                } else if f.http_status.is_none() {
                    "unreachable"
                } else {
                    "unavailable"
                }
            }
        }
    }
}

/// The AWS IoT calls factory-ca makes.
#[async_trait]
pub trait IotRegistry: Send + Sync {
    /// GetRegistrationCode: the account's code (64 hex characters), stable until rotated.
    async fn get_registration_code(&self) -> Result<String, AwsError>;
    async fn register_ca_certificate(
        &self,
        req: RegisterCaRequest,
    ) -> Result<RegisteredCa, AwsError>;
    async fn describe_ca_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CaDescription, AwsError>;
    async fn update_ca_certificate(
        &self,
        certificate_id: &str,
        update: CaUpdate,
    ) -> Result<(), AwsError>;
    /// DeleteCACertificate; AWS requires the CA to be INACTIVE first.
    async fn delete_ca_certificate(&self, certificate_id: &str) -> Result<(), AwsError>;
    /// CreateProvisioningTemplate with type JITP. Returns the template ARN.
    async fn create_jitp_template(
        &self,
        name: &str,
        body: &str,
        role_arn: &str,
    ) -> Result<String, AwsError>;
    /// RegisterCertificate with the CA's PEM and the given status (e.g. `REVOKED`).
    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: &str,
    ) -> Result<String, AwsError>;
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<DeviceCertificate, AwsError>;
    /// UpdateCertificate `newStatus`.
    async fn update_certificate(&self, certificate_id: &str, status: &str) -> Result<(), AwsError>;
    /// One page of ListCertificatesByCA.
    async fn list_certificates_by_ca(
        &self,
        ca_certificate_id: &str,
        marker: Option<&str>,
    ) -> Result<CertificatePage, AwsError>;
    /// CreateCertificateProvider: makes the account's certificate provider (one per account).
    /// Returns its ARN.
    async fn create_certificate_provider(
        &self,
        name: &str,
        lambda_function_arn: &str,
        operations: &[String],
    ) -> Result<String, AwsError>;
    async fn describe_certificate_provider(
        &self,
        name: &str,
    ) -> Result<CertificateProvider, AwsError>;
    async fn delete_certificate_provider(&self, name: &str) -> Result<(), AwsError>;
}

//! [`ApiError`]: the one error shape of the API, RFC 9457 (formerly 7807)
//! `application/problem+json` with a stable snake_case `code`.
//!
//! Domain errors carry no HTTP; this is where each becomes a status and a code. A 5xx body
//! says only what happened in general; its cause is logged here, once, with the request.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error_code::ErrorCode;
use crate::ca::{CaError, CsrError, PolicyViolation};
use crate::provisioning::ProvisioningError;
use crate::services::ca_admin::CaAdminError;
use crate::services::issuance::IssuanceError;
use crate::services::revocation::RevocationError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Logged, never sent.
    internal: Option<String>,
    /// Seconds for the Retry-After header (503s get 1 unless set).
    retry_after: Option<u64>,
}

/// An RFC 9457 problem: the body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:factory-ca:error:<code>`.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP reason phrase.
    title: &'a str,
    status: u16,
    /// What happened and what to fix.
    detail: &'a str,
    /// The stable snake_case error code.
    code: &'a str,
    /// The request's `x-request-id`, to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    /// An error with `code` (which fixes the status) and a message that says what to fix.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            internal: None,
            retry_after: None,
        }
    }

    /// The HTTP status of this error's code.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Sets the Retry-After header, in whole seconds (at least 1).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "send a valid, unrevoked API token as 'Authorization: Bearer <token>'",
        )
    }

    /// A 401 that says what was wrong with the credentials, then what to send.
    pub fn unauthorized_because(reason: &str) -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            format!(
                "{reason}; send a valid, unrevoked API token as 'Authorization: Bearer <token>'"
            ),
        )
    }

    pub fn forbidden(needed: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("this token's role may not do this; it needs the {needed} role"),
        )
    }

    /// A 500 whose cause is logged and not shown.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            internal: Some(cause.into()),
            ..Self::new(
                ErrorCode::InternalError,
                "an internal error occurred; it has been logged",
            )
        }
    }

    pub fn store_unavailable(cause: &StoreError) -> Self {
        Self {
            internal: Some(cause.to_string()),
            ..Self::new(
                ErrorCode::StoreUnavailable,
                "the certificate ledger is unavailable; nothing was issued, retry later",
            )
        }
    }
}

impl ApiError {
    fn problem(&self, request_id: Option<String>) -> Problem<'_> {
        Problem {
            kind: format!("urn:factory-ca:error:{}", self.code),
            title: self.status().canonical_reason().unwrap_or("Error"),
            status: self.code.status_u16(),
            detail: &self.message,
            code: self.code.as_str(),
            request_id,
        }
    }

    /// The problem+json body alone, for answers written outside axum (the TLS port's answer to
    /// plain HTTP).
    pub fn problem_json(&self) -> String {
        serde_json::to_string(&self.problem(None)).expect("a problem serializes")
    }
}

/// Marks a response whose request failed on the store (the fail-fast layer wakes the
/// database probe when it sees one).
#[derive(Clone, Copy, Debug)]
pub struct StoreFailed;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(code = self.code.as_str(), status = self.code.status_u16(), %cause, "request failed");
        }
        let body = self.problem(super::extract::current_request_id());
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let retry_after = self
            .retry_after
            .or((self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == ErrorCode::StoreUnavailable {
            response.extensions_mut().insert(StoreFailed);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::store_unavailable(&e)
    }
}

impl From<CsrError> for ApiError {
    fn from(e: CsrError) -> Self {
        match e {
            CsrError::Malformed(m) => ApiError::new(ErrorCode::InvalidCsr, m),
            CsrError::SignatureInvalid(m) => ApiError::new(ErrorCode::CsrSignatureInvalid, m),
            CsrError::UnsupportedKey(m) => ApiError::new(ErrorCode::UnsupportedKey, m),
        }
    }
}

impl From<PolicyViolation> for ApiError {
    fn from(v: PolicyViolation) -> Self {
        let code = match &v {
            PolicyViolation::MissingCommonName(_) => ErrorCode::MissingCommonName,
            PolicyViolation::InvalidThingName(_) => ErrorCode::InvalidThingName,
            PolicyViolation::MissingCountry(_) => ErrorCode::MissingCountry,
            PolicyViolation::InvalidCountry(_) => ErrorCode::InvalidCountry,
            PolicyViolation::SubjectAttributeNotAllowed(_) => ErrorCode::SubjectAttributeNotAllowed,
            PolicyViolation::InvalidSubjectAttribute(_) => ErrorCode::InvalidSubjectAttribute,
            PolicyViolation::MissingSubjectAttribute(_) => ErrorCode::MissingSubjectAttribute,
        };
        ApiError::new(code, v.to_string())
    }
}

impl From<IssuanceError> for ApiError {
    fn from(e: IssuanceError) -> Self {
        match e {
            IssuanceError::Csr(e) => e.into(),
            IssuanceError::Policy(v) => v.into(),
            IssuanceError::NameConstraintsViolation(m) => {
                ApiError::new(ErrorCode::NameConstraintsViolation, m)
            }
            e @ IssuanceError::ThingAlreadyProvisioned { .. } => {
                ApiError::new(ErrorCode::ThingAlreadyProvisioned, e.to_string())
            }
            e @ IssuanceError::IdempotencyKeyReused => {
                ApiError::new(ErrorCode::IdempotencyKeyReused, e.to_string())
            }
            e @ IssuanceError::InvalidIdempotencyKey => {
                ApiError::new(ErrorCode::InvalidIdempotencyKey, e.to_string())
            }
            IssuanceError::CaUnavailable(m) => ApiError::new(ErrorCode::CaUnavailable, m),
            IssuanceError::SignerUnavailable(m) => ApiError::new(ErrorCode::SignerUnavailable, m),
            e @ IssuanceError::RenewalSubjectMismatch { .. } => {
                ApiError::new(ErrorCode::RenewalSubjectMismatch, e.to_string())
            }
            e @ IssuanceError::RenewedCertificateNotActive { .. } => {
                ApiError::new(ErrorCode::CertificateSuperseded, e.to_string())
            }
            IssuanceError::Store(e) => e.into(),
            IssuanceError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<CaAdminError> for ApiError {
    fn from(e: CaAdminError) -> Self {
        match e {
            CaAdminError::Rejected(CaError::Rejected(m)) => ApiError::new(ErrorCode::CaRejected, m),
            CaAdminError::Rejected(CaError::SignerUnavailable(m))
            | CaAdminError::SignerUnavailable(m) => ApiError::new(ErrorCode::SignerUnavailable, m),
            CaAdminError::Rejected(other) => ApiError::internal(other.to_string()),
            e @ CaAdminError::AlreadyExists(_) => {
                ApiError::new(ErrorCode::CaAlreadyExists, e.to_string())
            }
            e @ CaAdminError::NotFound(_) => ApiError::new(ErrorCode::CaNotFound, e.to_string()),
            e @ CaAdminError::KeyFile { .. } => ApiError::internal(e.to_string()),
            CaAdminError::Store(e) => e.into(),
        }
    }
}

impl From<crate::services::crl::CrlError> for ApiError {
    fn from(e: crate::services::crl::CrlError) -> Self {
        use crate::services::crl::CrlError;
        match e {
            CrlError::Ca(e) => e.into(),
            CrlError::Store(e) => e.into(),
            CrlError::Signing {
                source: CaError::SignerUnavailable(m),
                ..
            } => ApiError::new(ErrorCode::SignerUnavailable, m),
            CrlError::Signing {
                source: CaError::NotPermitted(m),
                ..
            } => ApiError::new(ErrorCode::CaCannotSignCrls, m),
            e @ CrlError::Signing { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(e: RevocationError) -> Self {
        match e {
            e @ RevocationError::NotFound(_) => {
                ApiError::new(ErrorCode::CertificateNotFound, e.to_string())
            }
            e @ RevocationError::AlreadyRevoked { .. } => {
                ApiError::new(ErrorCode::CertificateAlreadyRevoked, e.to_string())
            }
            RevocationError::Store(e) => e.into(),
        }
    }
}

impl From<crate::services::bulk_revocation::BulkRevocationError> for ApiError {
    fn from(e: crate::services::bulk_revocation::BulkRevocationError) -> Self {
        use crate::services::bulk_revocation::BulkRevocationError as E;
        let code = match &e {
            E::InvalidFilter(_) => ErrorCode::InvalidRevocationFilter,
            E::ListTooLong(_) => ErrorCode::RevocationListTooLong,
            E::CaNotFound(_) => ErrorCode::CaNotFound,
            E::JobNotFound(_) => ErrorCode::RevocationJobNotFound,
            E::IdempotencyKeyReused(_) => ErrorCode::IdempotencyKeyReused,
            E::Store(_) => {
                let E::Store(e) = e else { unreachable!() };
                return e.into();
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ProvisioningError> for ApiError {
    fn from(e: ProvisioningError) -> Self {
        use crate::aws::AwsError;
        let message = e.to_string();
        match e {
            ProvisioningError::NotConfigured => ApiError::new(ErrorCode::AwsNotConfigured, message),
            ProvisioningError::CaNotFound(_) => ApiError::new(ErrorCode::CaNotFound, message),
            ProvisioningError::NotRegistered(_) => {
                ApiError::new(ErrorCode::AwsNotRegistered, message)
            }
            ProvisioningError::PreflightFailed(_) => {
                ApiError::new(ErrorCode::PreflightFailed, message)
            }
            ProvisioningError::Template(_) => ApiError::new(ErrorCode::InvalidTemplate, message),
            ProvisioningError::InvalidRequest(_) => {
                ApiError::new(ErrorCode::UnprocessableRequest, message)
            }
            ProvisioningError::Aws(aws) => match aws {
                AwsError::AlreadyExists(_) => {
                    ApiError::new(ErrorCode::AwsResourceAlreadyExists, message)
                }
                AwsError::NotFound(_) => ApiError::new(ErrorCode::AwsResourceNotFound, message),
                AwsError::CertificateValidation(_) => {
                    ApiError::new(ErrorCode::AwsCertificateValidation, message)
                }
                AwsError::InvalidState(_) => ApiError::new(ErrorCode::AwsInvalidState, message),
                AwsError::InvalidRequest(_) => ApiError::new(ErrorCode::AwsInvalidRequest, message),
                AwsError::Unauthorized(_) => ApiError::new(ErrorCode::AwsAccessDenied, message),
                AwsError::Unavailable(_) => ApiError::new(ErrorCode::AwsUnavailable, message),
            },
            ProvisioningError::SyncRunning { .. } => {
                ApiError::new(ErrorCode::AwsSyncRunning, message)
            }
            ProvisioningError::UnknownTarget { .. } => {
                ApiError::new(ErrorCode::UnknownAwsTarget, message)
            }
            ProvisioningError::AllTargetsFailed { first, .. } => {
                let mut error = ApiError::from(*first);
                error.message = message;
                error
            }
            ProvisioningError::Authority(e) => e.into(),
            ProvisioningError::Store(e) => e.into(),
        }
    }
}

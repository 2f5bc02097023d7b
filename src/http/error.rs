//! [`ApiError`]: the one error shape of the API, RFC 9457 (formerly 7807)
//! `application/problem+json` with a stable snake_case `code`.
//!
//! Domain errors carry no HTTP; this is where each becomes a status and a code. A 5xx body
//! says only what happened in general; its cause is logged here, once, with the request.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::authorities::AuthorityError;
use crate::ca::{CaError, CsrError, PolicyViolation};
use crate::issuance::IssuanceError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Logged, never sent.
    internal: Option<String>,
    /// Seconds for the Retry-After header (503s get 1 unless set).
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    /// The request's `x-request-id`, to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            internal: None,
            retry_after: None,
        }
    }

    /// Sets the Retry-After header, in whole seconds (at least 1).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid, unrevoked API token as 'Authorization: Bearer <token>'",
        )
    }

    pub fn forbidden(needed: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token's role may not do this; it needs the {needed} role"),
        )
    }

    /// A 500 whose cause is logged and not shown.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: "an internal error occurred; it has been logged".into(),
            internal: Some(cause.into()),
            retry_after: None,
        }
    }

    pub fn store_unavailable(cause: &StoreError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "store_unavailable",
            message: "the certificate ledger is unavailable; nothing was issued, retry later"
                .into(),
            internal: Some(cause.to_string()),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(code = self.code, status = self.status.as_u16(), %cause, "request failed");
        }
        let body = Problem {
            kind: format!("urn:factory-ca:error:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.message,
            code: self.code,
            request_id: super::extract::current_request_id(),
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
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
            CsrError::Malformed(m) => ApiError::bad_request("invalid_csr", m),
            CsrError::SignatureInvalid(m) => ApiError::bad_request("csr_signature_invalid", m),
            CsrError::UnsupportedKey(m) => ApiError::unprocessable("unsupported_key", m),
        }
    }
}

impl From<PolicyViolation> for ApiError {
    fn from(v: PolicyViolation) -> Self {
        let code = match &v {
            PolicyViolation::MissingCommonName(_) => "missing_common_name",
            PolicyViolation::InvalidThingName(_) => "invalid_thing_name",
            PolicyViolation::MissingCountry(_) => "missing_country",
            PolicyViolation::InvalidCountry(_) => "invalid_country",
            PolicyViolation::SubjectAttributeNotAllowed(_) => "subject_attribute_not_allowed",
            PolicyViolation::InvalidSubjectAttribute(_) => "invalid_subject_attribute",
            PolicyViolation::MissingSubjectAttribute(_) => "missing_subject_attribute",
        };
        ApiError::unprocessable(code, v.to_string())
    }
}

impl From<IssuanceError> for ApiError {
    fn from(e: IssuanceError) -> Self {
        match e {
            IssuanceError::Csr(e) => e.into(),
            IssuanceError::Policy(v) => v.into(),
            e @ IssuanceError::ThingAlreadyProvisioned(_) => ApiError::new(
                StatusCode::CONFLICT,
                "thing_already_provisioned",
                e.to_string(),
            ),
            e @ IssuanceError::IdempotencyKeyReused => {
                ApiError::unprocessable("idempotency_key_reused", e.to_string())
            }
            e @ IssuanceError::InvalidIdempotencyKey => {
                ApiError::bad_request("invalid_idempotency_key", e.to_string())
            }
            IssuanceError::CaUnavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ca_unavailable", m)
            }
            IssuanceError::Store(e) => e.into(),
            IssuanceError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::Rejected(CaError::Rejected(m)) => {
                ApiError::unprocessable("ca_rejected", m)
            }
            AuthorityError::Rejected(other) => ApiError::internal(other.to_string()),
            e @ AuthorityError::AlreadyExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "ca_already_exists", e.to_string())
            }
            e @ AuthorityError::NotFound(_) => ApiError::not_found("ca_not_found", e.to_string()),
            e @ AuthorityError::KeyFile { .. } => ApiError::internal(e.to_string()),
            AuthorityError::Store(e) => e.into(),
        }
    }
}

//! [`ErrorCode`]: every error the API answers with, as a stable snake_case `code` and its HTTP
//! status. This list is the one source: `ApiError` takes only these, the OpenAPI document's
//! `Problem.code` enum and each operation's error responses are built from them, and a test holds
//! the table in `docs/api.md` to the same pairs.
//!
//! A code is part of the API contract: add codes, never rename or remove one.

use axum::http::StatusCode;

macro_rules! error_codes {
    ($( $(#[$meta:meta])* $variant:ident = ($status:literal, $code:literal), )*) => {
        /// A stable error code and the HTTP status it is answered with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[$meta])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table in `docs/api.md` (by status).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `code` field of the problem body.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status this code is answered with.
            pub const fn status_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// The JSON body is malformed, misses a field or has an unknown one.
    InvalidRequest = (400, "invalid_request"),
    /// A query parameter is bad.
    InvalidQuery = (400, "invalid_query"),
    /// The body is not a strict DER PKCS#10 request.
    InvalidCsr = (400, "invalid_csr"),
    /// An EST body is not base64, the Content-Transfer-Encoding RFC 7030 sends DER in.
    InvalidTransferEncoding = (400, "invalid_transfer_encoding"),
    /// The CSR's signature does not verify, or uses an algorithm we do not accept.
    CsrSignatureInvalid = (400, "csr_signature_invalid"),
    /// The `Idempotency-Key` is not 1 to 255 visible ASCII characters.
    InvalidIdempotencyKey = (400, "invalid_idempotency_key"),
    /// A plain `http://` request reached the HTTPS port.
    HttpsRequired = (400, "https_required"),
    /// The credentials are missing, malformed, unknown or revoked.
    Unauthorized = (401, "unauthorized"),
    /// EST simplereenroll without a device certificate as the TLS client certificate.
    DeviceCertificateRequired = (401, "device_certificate_required"),
    /// The caller's role may not use this route.
    Forbidden = (403, "forbidden"),
    /// A device certificate (one of ours, as TLS client certificate) on a route other than
    /// EST simplereenroll, cacerts or csrattrs.
    DeviceCertificateNotAllowed = (403, "device_certificate_not_allowed"),
    /// EST simplereenroll: the client certificate chains to our CA but is not in the ledger.
    CertificateUnknown = (403, "certificate_unknown"),
    /// EST simplereenroll: the client certificate is revoked.
    CertificateRevoked = (403, "certificate_revoked"),
    /// EST simplereenroll: the client certificate has expired.
    CertificateExpired = (403, "certificate_expired"),
    /// No such route.
    NotFound = (404, "not_found"),
    /// No ledger row has this serial.
    CertificateNotFound = (404, "certificate_not_found"),
    /// No live token has this name.
    TokenNotFound = (404, "token_not_found"),
    /// No CA has this id.
    CaNotFound = (404, "ca_not_found"),
    /// No bulk revocation job has this id.
    RevocationJobNotFound = (404, "revocation_job_not_found"),
    /// No `[est.labels]` entry has this label.
    EstLabelNotFound = (404, "est_label_not_found"),
    /// AWS IoT answered ResourceNotFoundException.
    AwsResourceNotFound = (404, "aws_resource_not_found"),
    /// The route exists, but not for this method.
    MethodNotAllowed = (405, "method_not_allowed"),
    /// The thing name already has an active certificate.
    ThingAlreadyProvisioned = (409, "thing_already_provisioned"),
    /// A live token already has this name.
    TokenNameTaken = (409, "token_name_taken"),
    /// The store already has this CA certificate.
    CaAlreadyExists = (409, "ca_already_exists"),
    /// The certificate was revoked before.
    CertificateAlreadyRevoked = (409, "certificate_already_revoked"),
    /// EST simplereenroll: the client certificate was renewed before.
    CertificateSuperseded = (409, "certificate_superseded"),
    /// The CA is not registered in AWS IoT.
    AwsNotRegistered = (409, "aws_not_registered"),
    /// The request names an AWS target that is not configured (`[aws.targets.<name>]`).
    UnknownAwsTarget = (400, "unknown_aws_target"),
    /// A sync of the CA in the AWS target is running already (another request, the background
    /// runner, or another replica holds it).
    AwsSyncRunning = (409, "aws_sync_running"),
    /// AWS IoT answered ResourceAlreadyExistsException.
    AwsResourceAlreadyExists = (409, "aws_resource_already_exists"),
    /// AWS IoT refused the operation in the resource's current state.
    AwsInvalidState = (409, "aws_invalid_state"),
    /// The request body did not arrive within `server.body_read_timeout_secs`.
    RequestBodyTimeout = (408, "request_body_timeout"),
    /// The CA's certificate does not allow it to sign CRLs (keyUsage without cRLSign).
    CaCannotSignCrls = (409, "ca_cannot_sign_crls"),
    /// The body exceeds `server.body_limit_bytes`.
    PayloadTooLarge = (413, "payload_too_large"),
    /// The body's content type is not one this route takes.
    UnsupportedMediaType = (415, "unsupported_media_type"),
    /// A well-formed request that cannot be carried out (same code as the 400, another status).
    UnprocessableRequest = (422, "invalid_request"),
    /// The CSR's key type or size is not accepted.
    UnsupportedKey = (422, "unsupported_key"),
    /// The subject has no CN, or more than one.
    MissingCommonName = (422, "missing_common_name"),
    /// The CN is not a valid AWS IoT thing name.
    InvalidThingName = (422, "invalid_thing_name"),
    /// The subject has no C although the policy requires one, or more than one.
    MissingCountry = (422, "missing_country"),
    /// C is not an assigned ISO 3166-1 alpha-2 code.
    InvalidCountry = (422, "invalid_country"),
    /// An attribute is outside the policy, repeated, or part of a multi-valued RDN.
    SubjectAttributeNotAllowed = (422, "subject_attribute_not_allowed"),
    /// An attribute value has the wrong string type, is empty, too long or has a control character.
    InvalidSubjectAttribute = (422, "invalid_subject_attribute"),
    /// The subject lacks an attribute the policy requires.
    MissingSubjectAttribute = (422, "missing_subject_attribute"),
    /// This station already used this `Idempotency-Key` with a different CSR.
    IdempotencyKeyReused = (422, "idempotency_key_reused"),
    /// EST simplereenroll: the CSR's subject differs from the renewed certificate's.
    RenewalSubjectMismatch = (422, "renewal_subject_mismatch"),
    /// The token name is not 1 to 64 characters of `a-zA-Z0-9._-`.
    InvalidTokenName = (422, "invalid_token_name"),
    /// The CA certificate or key would be refused.
    CaRejected = (422, "ca_rejected"),
    /// The CSR subject is outside the issuing CA's name constraints.
    NameConstraintsViolation = (422, "name_constraints_violation"),
    /// A preflight check failed; nothing was sent to AWS.
    PreflightFailed = (422, "preflight_failed"),
    /// The JITP template, role ARN or template name is refused.
    InvalidTemplate = (422, "invalid_template"),
    /// A certificate provider's name, Lambda function ARN or operations break AWS's rules.
    InvalidCertificateProvider = (422, "invalid_certificate_provider"),
    /// The revocation reason is not one we accept.
    InvalidRevocationReason = (422, "invalid_revocation_reason"),
    /// A bulk revocation filter is empty or has a malformed criterion.
    InvalidRevocationFilter = (422, "invalid_revocation_filter"),
    /// A bulk revocation filter lists more serials or thing names than one job takes.
    RevocationListTooLong = (422, "revocation_list_too_long"),
    /// AWS IoT rejected a certificate.
    AwsCertificateValidation = (422, "aws_certificate_validation"),
    /// AWS IoT rejected the request.
    AwsInvalidRequest = (422, "aws_invalid_request"),
    /// The station sends faster than its rate limit.
    RateLimited = (429, "rate_limited"),
    /// An unexpected failure; the cause is logged.
    InternalError = (500, "internal_error"),
    /// factory-ca's AWS credentials may not do this.
    AwsAccessDenied = (502, "aws_access_denied"),
    /// AWS IoT throttled, failed or timed out.
    AwsUnavailable = (502, "aws_unavailable"),
    /// The database failed; nothing was issued.
    StoreUnavailable = (503, "store_unavailable"),
    /// The issuing CA cannot sign now.
    CaUnavailable = (503, "ca_unavailable"),
    /// The CA's key is in a token (HSM) that failed to sign; nothing was recorded.
    SignerUnavailable = (503, "signer_unavailable"),
    /// The route calls AWS IoT and `aws.enabled` is false.
    AwsNotConfigured = (503, "aws_not_configured"),
    /// The request ran longer than `server.request_timeout_secs`.
    RequestTimeout = (503, "request_timeout"),
    /// Too many requests in flight; shed at once.
    Overloaded = (503, "overloaded"),
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.status_u16()).expect("every listed status is a valid status")
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_pairs_are_unique() {
        let mut pairs = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert!(pairs.insert((s, code.status_u16())), "{s} listed twice");
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }
}

//! Revocation: `POST /v1/admin/certificates/{serial}/revoke` (admin, audited) and the CRLs at
//! `GET /v1/cas/{id}/crl` (public, like the CA certificate itself).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::certificates::{self, CertificateView};
use crate::app::AppState;
use crate::ca::{self, authority::RevocationReason};
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{self, AdminCaller, ApiPath, ApiQuery, ViewerCaller};
use crate::services::revocation::{self, AUDIT_ACTION, clip};
use crate::store::{Store, StoreError};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// An RFC 5280 CRLReason in snake_case; absent or null means `unspecified`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "key_compromise", pattern = "^(unspecified|key_compromise|ca_compromise|affiliation_changed|superseded|cessation_of_operation|privilege_withdrawn|aa_compromise)$")]
    reason: Option<String>,
}

/// `POST /v1/admin/certificates/{serial}/revoke`: revokes an active certificate and answers with
/// its ledger row, as `GET /v1/certificates/{serial}` shows it. Every attempt by an admin is
/// audited, refused ones included.
#[utoipa::path(
    post,
    path = "/v1/admin/certificates/{serial}/revoke",
    tag = "revocation",
    operation_id = "revoke_certificate",
    params(("serial" = String, Path,
        description = "40 hex characters (not case-sensitive)")),
    request_body(content = Option<RevokeRequest>,
        description = "`{\"reason\": ...}`; an empty body, `{}` or a null reason mean \
            `unspecified`"),
    responses((status = 200,
        description = "Revoked: the ledger row, with `aws_revocation_pending` true until AWS IoT \
            has the certificate as REVOKED",
        body = CertificateView)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn revoke_certificate(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(serial): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CertificateView>, ApiError> {
    let serial = serial.to_ascii_lowercase();
    let audit = |success: bool, detail: String| {
        let (store, admin, serial) = (&state.store, &admin, &serial);
        async move { append_audit(store, admin, serial, success, &detail).await }
    };

    let reason = match requested_reason(&headers, body) {
        Ok(reason) => reason,
        Err(e) => {
            audit(false, format!("refused: {}", e.code.as_str())).await?;
            return Err(e);
        }
    };
    let serial =
        revocation::revoke_certificate(&state.store, &serial, reason, admin.actor()).await?;
    tracing::info!(%serial, reason = reason.name(), admin = %admin.principal.name, "certificate revoked");
    // Tell AWS IoT now when it is configured; a failure leaves the revocation pending for the
    // background retry, and the answer shows `aws_revocation_pending`.
    if state.iot.is_some()
        && let Err(e) = state
            .provisioning()
            .push_revocations(None, Some(&serial), 1)
            .await
    {
        tracing::warn!(%serial, error = %e, "revocation push to AWS IoT failed; will retry");
    }
    // The committed row, read back through the same handler as GET /v1/certificates/{serial},
    // so both answer with the same JSON.
    certificates::get_certificate(State(state), ViewerCaller(admin.principal), ApiPath(serial))
        .await
}

/// The reason of a revocation request: the body is empty, `{}`, or `{"reason": "..."}`.
fn requested_reason(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<RevocationReason, ApiError> {
    let body = body.map_err(|_| extract::payload_too_large())?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RevocationReason::Unspecified);
    }
    if !is_json(headers) {
        return Err(extract::unsupported_media_type("application/json"));
    }
    let Json(request) =
        Json::<RevokeRequest>::from_bytes(&body).map_err(extract::json_rejection)?;
    let Some(name) = request.reason else {
        return Ok(RevocationReason::Unspecified);
    };
    RevocationReason::from_name(&name).ok_or_else(|| {
        let names: Vec<_> = RevocationReason::ALL.iter().map(|r| r.name()).collect();
        ApiError::new(
            ErrorCode::InvalidRevocationReason,
            format!(
                "reason {:?} is not one of {} (RFC 5280 section 5.3.1 CRLReason in snake_case; \
                 certificate_hold and remove_from_crl are not supported: a revocation is final)",
                clip(&name),
                names.join(", ")
            ),
        )
    })
}

/// Like axum's `Json`: `application/json` or any `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let mime = mime.trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn append_audit(
    store: &Store,
    admin: &AdminCaller,
    serial: &str,
    success: bool,
    detail: &str,
) -> Result<(), StoreError> {
    admin
        .actor()
        .record(
            store,
            AUDIT_ACTION,
            Some(&clip(serial)),
            success,
            Some(detail),
        )
        .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CrlParams {
    /// `der` (the default) or `pem`.
    format: Option<String>,
}

/// `GET /v1/cas/{id}/crl`: a CRL signed now by CA `id`, listing every certificate of that CA
/// the ledger has revoked. DER as `application/pkix-crl` (RFC 2585 section 4.2), or PEM with
/// `?format=pem`. No authentication: relying parties fetch CRLs without tokens.
#[utoipa::path(
    get,
    path = "/v1/cas/{id}/crl",
    tag = "revocation",
    operation_id = "get_crl",
    params(("id" = String, Path, description = "A CA id"), CrlParams),
    responses((status = 200, description = "The CRL, signed now", content(
        (crate::http::openapi::schemas::Binary = "application/pkix-crl"),
        (String = "application/x-pem-file"),
    ))),
    security(())
)]
pub async fn crl(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<CrlParams>,
) -> Result<Response, ApiError> {
    let pem = match params.format.as_deref() {
        None | Some("der") => false,
        Some("pem") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "format must be der or pem",
            ));
        }
    };
    let issuing = state.issuance.issuing_ca();
    let ca = if issuing.id() == id {
        issuing
    } else {
        Arc::new(state.ca_admin().load_by_id(&id).await?)
    };
    let revoked = state.store.revoked_entries(ca.id()).await?;
    let now = OffsetDateTime::now_utc();
    // A key in a token or key service signs with a round trip: off the reactor.
    let signed = if ca.signs_remotely() {
        let signer = Arc::clone(&ca);
        tokio::task::spawn_blocking(move || signer.crl(&revoked, now))
            .await
            .unwrap_or_else(|e| Err(ca::CaError::Crypto(format!("the signing task failed: {e}"))))
    } else {
        ca.crl(&revoked, now)
    };
    let der = signed.map_err(|e| match e {
        ca::CaError::SignerUnavailable(m) => {
            ApiError::new(ErrorCode::SignerUnavailable, format!("CA {}: {m}", ca.id()))
        }
        e => ApiError::internal(format!("CA {}: {e}", ca.id())),
    })?;
    let (content_type, body) = if pem {
        (
            "application/x-pem-file",
            ca::to_pem("X509 CRL", &der).into_bytes(),
        )
    } else {
        ("application/pkix-crl", der)
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn an_empty_body_or_object_means_unspecified() {
        for body in ["", " \n", "{}", r#"{"reason": null}"#] {
            let reason =
                requested_reason(&json_headers("application/json"), Ok(Bytes::from(body))).unwrap();
            assert_eq!(reason, RevocationReason::Unspecified, "{body:?}");
        }
        // No Content-Type is fine when there is no body.
        let reason = requested_reason(&HeaderMap::new(), Ok(Bytes::new())).unwrap();
        assert_eq!(reason, RevocationReason::Unspecified);
    }

    #[test]
    fn a_body_must_be_json_with_a_known_reason() {
        let ok = requested_reason(
            &json_headers("application/json; charset=utf-8"),
            Ok(Bytes::from(r#"{"reason": "cessation_of_operation"}"#)),
        )
        .unwrap();
        assert_eq!(ok, RevocationReason::CessationOfOperation);

        let cases = [
            (
                "text/plain",
                r#"{"reason": "superseded"}"#,
                "unsupported_media_type",
            ),
            (
                "application/json",
                r#"{"reason": "certificate_hold"}"#,
                "invalid_revocation_reason",
            ),
            (
                "application/json",
                r#"{"reason": "remove_from_crl"}"#,
                "invalid_revocation_reason",
            ),
            ("application/json", r#"{"reason": 1}"#, "invalid_request"),
            (
                "application/json",
                r#"{"why": "superseded"}"#,
                "invalid_request",
            ),
            ("application/json", "{", "invalid_request"),
        ];
        for (content_type, body, code) in cases {
            let err =
                requested_reason(&json_headers(content_type), Ok(Bytes::from(body))).unwrap_err();
            assert_eq!(err.code.as_str(), code, "{content_type} {body}");
        }
    }
}

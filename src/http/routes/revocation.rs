//! Revocation: `POST /v1/admin/certificates/{serial}/revoke` (admin, audited) and the stored
//! CRLs at `GET /v1/cas/{id}/crl` and `GET /v1/cas/{id}/delta-crl` (public, like the CA
//! certificate itself).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::certificates::{self, CertificateView};
use crate::app::AppState;
use crate::ca::{self, authority::RevocationReason};
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{self, AdminCaller, ApiPath, ApiQuery, ViewerCaller};
use crate::http::route;
use crate::services::crl::CrlKind;
use crate::services::revocation::{self, AUDIT_ACTION, clip};
use crate::store::{Store, StoreError};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "revocation";

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
#[route(
    post,
    path = "/v1/admin/certificates/{serial}/revoke",
    params(("serial" = String, Path,
        description = "40 hex characters (not case-sensitive)")),
    request_body(content = Option<RevokeRequest>,
        description = "`{\"reason\": ...}`; an empty body, `{}` or a null reason mean \
            `unspecified`"),
    responses((status = 200,
        description = "Revoked: the ledger row, with `aws_revocation_pending` true until AWS IoT \
            has the certificate as REVOKED",
        body = CertificateView))
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
    state.crls.revocations_changed();
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
    match request.reason {
        None => Ok(RevocationReason::Unspecified),
        Some(name) => parse_reason(&name),
    }
}

/// A revocation reason by its snake_case name; any other name is a 422 that lists them.
pub(super) fn parse_reason(name: &str) -> Result<RevocationReason, ApiError> {
    RevocationReason::from_name(name).ok_or_else(|| {
        let names: Vec<_> = RevocationReason::ALL.iter().map(|r| r.name()).collect();
        ApiError::new(
            ErrorCode::InvalidRevocationReason,
            format!(
                "reason {:?} is not one of {} (RFC 5280 section 5.3.1 CRLReason in snake_case; \
                 certificate_hold and remove_from_crl are not supported: a revocation is final)",
                clip(name),
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

/// `GET /v1/cas/{id}/crl`: the CRL of CA `id`, listing every certificate of that CA the ledger
/// has revoked. DER as `application/pkix-crl` (RFC 2585 section 4.2), or PEM with
/// `?format=pem`. No authentication: relying parties fetch CRLs without tokens.
///
/// Served from storage: the CRL is signed when revocations change or its nextUpdate nears, not
/// per request. `ETag` names the CRL number and format, so `If-None-Match` answers 304 until a
/// newer CRL exists; `Cache-Control` lets caches keep it (never past its nextUpdate).
#[route(
    get,
    path = "/v1/cas/{id}/crl",
    operation_id = "get_crl",
    params(
        ("id" = String, Path, description = "A CA id"),
        CrlParams,
        ("If-None-Match" = Option<String>, Header,
            description = "The `ETag` of a CRL already held: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "The current CRL", content(
            (crate::http::openapi::schemas::Binary = "application/pkix-crl"),
            (String = "application/x-pem-file"),
        ), headers(
            ("ETag" = String, description = "`\"crl-<number>-<format>\"`"),
            ("Cache-Control" = String, description = "`public, max-age=<seconds>`"),
            ("Last-Modified" = String, description = "The CRL's thisUpdate"),
        )),
        (status = 304, description = "The CRL named by `If-None-Match` is still the current one"),
    ),
    security(())
)]
pub async fn crl(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<CrlParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    respond_crl(&state, &headers, CrlKind::Complete, &id, &params).await
}

/// `GET /v1/cas/{id}/delta-crl`: the delta CRL of CA `id` (RFC 5280 section 5.2.4), listing the
/// certificates revoked since the complete CRL it names as its base (deltaCRLIndicator). A
/// client holding a complete CRL with that number or a larger one adds the delta to it instead
/// of fetching the complete CRL again. Formats, caching and `If-None-Match` as for the complete
/// CRL. No authentication.
#[route(
    get,
    path = "/v1/cas/{id}/delta-crl",
    operation_id = "get_delta_crl",
    params(
        ("id" = String, Path, description = "A CA id"),
        CrlParams,
        ("If-None-Match" = Option<String>, Header,
            description = "The `ETag` of a delta CRL already held: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "The current delta CRL", content(
            (crate::http::openapi::schemas::Binary = "application/pkix-crl"),
            (String = "application/x-pem-file"),
        ), headers(
            ("ETag" = String, description = "`\"delta-<number>-<format>\"`"),
            ("Cache-Control" = String, description = "`public, max-age=<seconds>`"),
            ("Last-Modified" = String, description = "The delta CRL's thisUpdate"),
        )),
        (status = 304, description = "The delta CRL named by `If-None-Match` is still current"),
    ),
    security(())
)]
pub async fn delta_crl(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<CrlParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    respond_crl(&state, &headers, CrlKind::Delta, &id, &params).await
}

impl CrlParams {
    /// Whether PEM was asked for.
    fn pem(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("der") => Ok(false),
            Some("pem") => Ok(true),
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "format must be der or pem",
            )),
        }
    }
}

/// The current CRL of `kind` of CA `id` as the answer: its validators and cache headers, and
/// 304 when `If-None-Match` names it.
async fn respond_crl(
    state: &AppState,
    headers: &HeaderMap,
    kind: CrlKind,
    id: &str,
    params: &CrlParams,
) -> Result<Response, ApiError> {
    let pem = params.pem()?;
    let now = OffsetDateTime::now_utc();
    let crl = state
        .crls
        .current(kind, &state.store, &state.crl_cas(), id, now)
        .await?;
    let etag = format!(
        "\"{}-{}-{}\"",
        kind.etag_prefix(),
        crl.number,
        if pem { "pem" } else { "der" }
    );
    let left = (crl.next_update.get() - now).whole_seconds().max(0);
    let max_age = left.min(state.settings.revocation.crl_cache_max_age_secs.as_secs() as i64);
    let mut response_headers = HeaderMap::new();
    let mut set = |name, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    };
    set(header::ETAG, etag.clone());
    set(header::CACHE_CONTROL, format!("public, max-age={max_age}"));
    set(header::LAST_MODIFIED, http_date(crl.this_update.get()));
    set(header::EXPIRES, http_date(crl.next_update.get()));
    if if_none_match(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let (content_type, body) = if pem {
        (
            "application/x-pem-file",
            ca::to_pem("X509 CRL", &crl.der).into_bytes(),
        )
    } else {
        ("application/pkix-crl", crl.der)
    };
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok((response_headers, body).into_response())
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak validators compare by their opaque
/// part (RFC 9110 section 13.1.2: If-None-Match uses the weak comparison).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// An IMF-fixdate (RFC 9110 section 5.6.7), as `Last-Modified` and `Expires` carry.
fn http_date(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
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

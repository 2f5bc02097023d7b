//! `/.well-known/est/...`: enrollment over secure transport (RFC 7030) beside the JSON API, on
//! the same issuance pipeline (policy, ledger, thing claim, idempotency, rate limits, metrics).
//! HTTPS only. Thin: authenticate, decode the EST wire format ([`crate::http::est_wire`]), issue,
//! encode. Errors are `text/plain` with the JSON API's stable codes.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::est_wire::{self as est, PKCS7_CERTS_ONLY, PKCS10};
use crate::http::extract::{
    RequestId, certificate_station_name, payload_too_large, unsupported_media_type,
};
use crate::http::tls::{ClientIdentity, OverTls};
use crate::services::issuance::{Channel, IssuanceRequest};
use crate::services::tokens::{Principal, Role};

/// RFC 7030 section 3.3: EST runs over TLS only. The same answer as plain HTTP on the HTTPS
/// port gets, when the service itself serves plain HTTP.
fn require_tls(tls: Option<Extension<OverTls>>) -> Result<(), ApiError> {
    match tls {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorCode::HttpsRequired,
            "EST is served over HTTPS only (RFC 7030 section 3.3): configure [server.tls] and \
             use https://",
        )),
    }
}

/// The issuing CA's certificates
///
/// The issuing CA certificate and the chain above it up to the root, as a certs-only CMS
/// SignedData, base64 (RFC 7030 section 4.1.3). HTTPS only; no credentials.
#[utoipa::path(
    get,
    path = "/.well-known/est/cacerts",
    tag = "est",
    operation_id = "est_cacerts",
    responses(
        (status = 200,
         description = "Certs-only CMS SignedData (DER, base64 with \
            `Content-Transfer-Encoding: base64`)",
         body = String, content_type = "application/pkcs7-mime"),
    ),
    security(())
)]
pub async fn cacerts(State(state): State<AppState>, tls: Option<Extension<OverTls>>) -> Response {
    let answer = || -> Result<Response, ApiError> {
        require_tls(tls)?;
        let ca = state.issuance.issuing_ca();
        let above = ::pem::parse_many(ca.chain_pem())
            .map_err(|e| ApiError::internal(format!("the issuing CA's stored chain: {e}")))?;
        let mut certificates = vec![ca.certificate_der()];
        certificates.extend(above.iter().map(|block| block.contents()));
        let der = est::certs_only(&certificates)
            .map_err(|e| ApiError::internal(format!("cacerts CMS encoding: {e}")))?;
        Ok(est::base64_response(PKCS7_CERTS_ONLY, &der))
    };
    answer().unwrap_or_else(est::error_response)
}

/// The attributes a CSR must have
///
/// RFC 7030 CsrAttrs (section 4.5.2), base64 DER: the OIDs of the subject attributes the
/// policy requires (CN, which is the thing name; C when required; the attributes named in
/// `policy.required_subject_fields`). 204 when the policy requires none. HTTPS only; no
/// credentials.
#[utoipa::path(
    get,
    path = "/.well-known/est/csrattrs",
    tag = "est",
    operation_id = "est_csrattrs",
    responses(
        (status = 200, description = "CsrAttrs, DER, base64", body = String,
         content_type = "application/csrattrs"),
        (status = 204, description = "The policy requires no attribute"),
    ),
    security(())
)]
pub async fn csrattrs(State(state): State<AppState>, tls: Option<Extension<OverTls>>) -> Response {
    let answer = || -> Result<Response, ApiError> {
        require_tls(tls)?;
        match est::csr_attrs(state.issuance.policy())
            .map_err(|e| ApiError::internal(format!("csrattrs encoding: {e}")))?
        {
            Some(der) => Ok(est::base64_response(est::CSRATTRS, &der)),
            None => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    };
    answer().unwrap_or_else(est::error_response)
}

/// Enroll a device
///
/// The body is a PKCS#10 CSR, DER, base64 (`application/pkcs10`). Authenticated as a station:
/// the station client certificate of `[server.tls]`, or HTTP Basic whose password is a station
/// token (the user name is not checked), or a station bearer token. The same policy, thing
/// claim, `Idempotency-Key`, rate limit and ledger as `POST /v1/certificates`; the ledger row's
/// `channel` is `est`. The answer is the certificate as a certs-only CMS SignedData, base64.
/// Errors are `text/plain` (`<code>: <reason>`) with the code also in `X-Error-Code`.
#[utoipa::path(
    post,
    path = "/.well-known/est/simpleenroll",
    tag = "est",
    operation_id = "est_simpleenroll",
    request_body(description = "PKCS#10, DER, base64",
        content((String = "application/pkcs10"))),
    responses(
        (status = 200,
         description = "The device certificate: certs-only CMS SignedData (DER, base64 with \
            `Content-Transfer-Encoding: base64`)",
         body = String, content_type = "application/pkcs7-mime; smime-type=certs-only"),
    ),
    security(("station_basic" = ["station"]), ("station_certificate" = ["station"]))
)]
pub async fn simpleenroll(
    State(state): State<AppState>,
    tls: Option<Extension<OverTls>>,
    identity: Option<Extension<ClientIdentity>>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = require_tls(tls) {
        return est::error_response(e);
    }
    let station = match station(&state, &headers, identity.map(|Extension(i)| i)).await {
        Ok(station) => station,
        Err(e) => return est::error_response(e),
    };
    let result = enroll(&state, &station, &request_id, &headers, body).await;
    // Refusals (4xx) are counted for the dashboards like the JSON API's.
    if let Err(e) = &result
        && e.status().is_client_error()
    {
        state.rejections.record(
            Some(&station.name),
            e.code.as_str(),
            state.issuance.issuing_ca().id(),
            time::OffsetDateTime::now_utc(),
        );
    }
    result.unwrap_or_else(est::error_response)
}

async fn enroll(
    state: &AppState,
    station: &Principal,
    request_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if let Err(wait) = state.station_limiter.check(&station.name) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "this station sends more than server.station_rate_per_sec ({}/s); slow down \
                 and retry after the Retry-After delay",
                state.settings.server.station_rate_per_sec
            ),
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64));
    }
    if est::media_type(headers) != PKCS10 {
        return Err(unsupported_media_type(
            "application/pkcs10 (the DER CSR, base64-encoded)",
        ));
    }
    let body = body.map_err(|_| payload_too_large())?;
    let csr = est::csr_der(&body)?;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let issued = state
        .issuance
        .issue(IssuanceRequest {
            csr: &csr,
            station: &station.name,
            idempotency_key,
            request_id: Some(request_id),
            channel: Channel::Est,
        })
        .await?;
    let der = est::certs_only(&[&issued.record.certificate_der])
        .map_err(|e| ApiError::internal(format!("simpleenroll CMS encoding: {e}")))?;
    let mut response = est::base64_response(PKCS7_CERTS_ONLY, &der);
    if issued.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The station of an EST request. With an Authorization header: `Basic` (the password is a
/// station token; RFC 7030 section 3.2.3) or `Bearer`, and only a station token passes (viewer
/// and admin tokens are refused: EST enrolls devices for stations, nothing else). Without one:
/// the connection's verified station client certificate.
async fn station(
    state: &AppState,
    headers: &HeaderMap,
    identity: Option<ClientIdentity>,
) -> Result<Principal, ApiError> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (authorizations.next(), authorizations.next());
    if second.is_some() {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "send exactly one Authorization header",
        ));
    }
    let Some(value) = first else {
        return match identity {
            Some(ClientIdentity::Station { common_name }) => Ok(Principal {
                name: certificate_station_name(&common_name),
                role: Role::Station,
            }),
            Some(ClientIdentity::Unusable { reason }) => Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("{reason}; or send a station token as the HTTP Basic password"),
            )),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "authenticate as a station: a station client certificate, or HTTP Basic with a \
                 station token as the password (curl -u <station>:<token>)",
            )),
        };
    };
    let value = value.to_str().unwrap_or("");
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let token = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the Basic credentials are not base64 of <user>:<password>",
                )
            })?;
        match decoded.split_once(':') {
            Some((_, password)) => password.to_owned(),
            None => {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "the Basic credentials are not <user>:<password>",
                ));
            }
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().to_owned()
    } else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "use HTTP Basic with a station token as the password, or 'Bearer <token>'",
        ));
    };
    let principal = state
        .tokens
        .authenticate(&state.store, &token)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the token (the HTTP Basic password) is unknown or revoked; use a live station \
                 token",
            )
        })?;
    if principal.role != Role::Station {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "EST enrollment takes a station token; this token's role may not enroll",
        ));
    }
    Ok(principal)
}

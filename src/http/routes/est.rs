//! `/.well-known/est/...`: enrollment over secure transport (RFC 7030) beside the JSON API, on
//! the same issuance pipeline (policy, ledger, thing claim, idempotency, rate limits, metrics).
//! HTTPS only. Thin: authenticate, decode the EST wire format ([`crate::http::est_wire`]), issue,
//! encode. Errors are `text/plain` with the JSON API's stable codes.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use std::sync::Arc;

use crate::app::AppState;
use crate::ca::CertificateAuthority;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::est_wire::{self as est, PKCS7_CERTS_ONLY, PKCS10};
use crate::http::extract::{
    ApiPath, RequestId, certificate_station_name, payload_too_large, unsupported_media_type,
};
use crate::http::route;
use crate::http::routes::certificates::{count_refusal, enroll_for_station, issue_for_station};
use crate::http::tls::{ClientIdentity, OverTls};
use crate::services::audit::Actor;
use crate::services::issuance::{Channel, Issued};
use crate::services::tokens::{Principal, Role};
use crate::store::{CertificateRecord, LedgerStatus, Timestamp};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "est";

/// What an EST POST brings: whether it came over TLS, the TLS client certificate's identity,
/// the request id, the headers and the body (its rejection kept, to answer it in EST's terms).
pub struct EstPost {
    tls: Option<Extension<OverTls>>,
    identity: Option<ClientIdentity>,
    request_id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
}

impl<S: Send + Sync> FromRequest<S> for EstPost {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let RequestId(request_id) = RequestId::from_request_parts(&mut parts, state).await?;
        let tls = parts.extensions.get::<OverTls>().copied().map(Extension);
        let identity = parts.extensions.get::<ClientIdentity>().cloned();
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await;
        Ok(EstPost {
            tls,
            identity,
            request_id,
            headers,
            body,
        })
    }
}

/// A labelled route's answer: `answer` with the label, or the path's refusal in EST's terms.
async fn with_label<F: std::future::Future<Output = Response>>(
    label: Result<ApiPath<String>, ApiError>,
    answer: impl FnOnce(String) -> F,
) -> Response {
    match label {
        Ok(ApiPath(label)) => answer(label).await,
        Err(e) => est::error_response(e),
    }
}

/// The first checks of every EST route: over TLS (RFC 7030 section 3.3: EST runs over TLS
/// only; the same answer as plain HTTP on the HTTPS port gets, when the service itself serves
/// plain HTTP), then the CA of `label` ([`label_ca`]).
fn est_ca(
    state: &AppState,
    tls: Option<Extension<OverTls>>,
    label: Option<&str>,
) -> Result<Option<Arc<CertificateAuthority>>, ApiError> {
    if tls.is_none() {
        return Err(ApiError::new(
            ErrorCode::HttpsRequired,
            "EST is served over HTTPS only (RFC 7030 section 3.3): configure [server.tls] and \
             use https://",
        ));
    }
    label_ca(state, label)
}

/// The issuing CA's certificates
///
/// The issuing CA certificate and the chain above it up to the root, as a certs-only CMS
/// SignedData, base64 (RFC 7030 section 4.1.3). HTTPS only; no credentials.
#[route(
    get,
    path = "/.well-known/est/cacerts",
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
    cacerts_of(&state, tls, None).unwrap_or_else(est::error_response)
}

/// The certificates of a label's CA
///
/// As `GET /.well-known/est/cacerts`, for the CA that `[est.labels]` names `label`. 404
/// `est_label_not_found` for a label that is not configured.
#[route(
    like = cacerts,
    path = "/.well-known/est/{label}/cacerts",
    operation_id = "est_cacerts_labelled",
    params(("label" = String, Path, description = "A label of `[est.labels]`"))
)]
pub async fn cacerts_labelled(
    State(state): State<AppState>,
    tls: Option<Extension<OverTls>>,
    label: Result<ApiPath<String>, ApiError>,
) -> Response {
    label
        .and_then(|ApiPath(label)| cacerts_of(&state, tls, Some(&label)))
        .unwrap_or_else(est::error_response)
}

fn cacerts_of(
    state: &AppState,
    tls: Option<Extension<OverTls>>,
    label: Option<&str>,
) -> Result<Response, ApiError> {
    let ca = est_ca(state, tls, label)?.unwrap_or_else(|| state.issuance.issuing_ca());
    let above = ::pem::parse_many(ca.chain_pem())
        .map_err(|e| ApiError::internal(format!("the CA's stored chain: {e}")))?;
    let mut certificates = vec![ca.certificate_der()];
    certificates.extend(above.iter().map(|block| block.contents()));
    let der = est::certs_only(&certificates)
        .map_err(|e| ApiError::internal(format!("cacerts CMS encoding: {e}")))?;
    Ok(est::base64_response(PKCS7_CERTS_ONLY, &der))
}

/// The CA of `label` (`None`: no label, the issuing CA), or 404 `est_label_not_found`.
fn label_ca(
    state: &AppState,
    label: Option<&str>,
) -> Result<Option<Arc<CertificateAuthority>>, ApiError> {
    let Some(label) = label else {
        return Ok(None);
    };
    match state.est_labels.get(label) {
        Some(ca) => Ok(Some(Arc::clone(ca))),
        None => {
            let known: Vec<&str> = state.est_labels.keys().map(String::as_str).collect();
            Err(ApiError::new(
                ErrorCode::EstLabelNotFound,
                if known.is_empty() {
                    "no EST label is configured ([est.labels]); use /.well-known/est/<operation> \
                     without a label"
                        .to_owned()
                } else {
                    format!(
                        "no EST label {:?} ([est.labels]); configured: {}",
                        label.chars().take(64).collect::<String>(),
                        known.join(", ")
                    )
                },
            ))
        }
    }
}

/// The attributes a CSR must have
///
/// RFC 7030 CsrAttrs (section 4.5.2), base64 DER: the OIDs of the subject attributes the
/// policy requires (CN, which is the thing name; C when required; the attributes named in
/// `policy.required_subject_fields`). 204 when the policy requires none. HTTPS only; no
/// credentials.
#[route(
    get,
    path = "/.well-known/est/csrattrs",
    operation_id = "est_csrattrs",
    responses(
        (status = 200, description = "CsrAttrs, DER, base64", body = String,
         content_type = "application/csrattrs"),
        (status = 204, description = "The policy requires no attribute"),
    ),
    security(())
)]
pub async fn csrattrs(State(state): State<AppState>, tls: Option<Extension<OverTls>>) -> Response {
    csrattrs_of(&state, tls, None).unwrap_or_else(est::error_response)
}

/// The attributes a CSR must have, under a label
///
/// As `GET /.well-known/est/csrattrs` (the policy is the same for every CA); 404
/// `est_label_not_found` for a label that is not configured.
#[route(
    like = csrattrs,
    path = "/.well-known/est/{label}/csrattrs",
    operation_id = "est_csrattrs_labelled",
    params(("label" = String, Path, description = "A label of `[est.labels]`"))
)]
pub async fn csrattrs_labelled(
    State(state): State<AppState>,
    tls: Option<Extension<OverTls>>,
    label: Result<ApiPath<String>, ApiError>,
) -> Response {
    label
        .and_then(|ApiPath(label)| csrattrs_of(&state, tls, Some(&label)))
        .unwrap_or_else(est::error_response)
}

fn csrattrs_of(
    state: &AppState,
    tls: Option<Extension<OverTls>>,
    label: Option<&str>,
) -> Result<Response, ApiError> {
    est_ca(state, tls, label)?;
    match est::csr_attrs(state.issuance.policy())
        .map_err(|e| ApiError::internal(format!("csrattrs encoding: {e}")))?
    {
        Some(der) => Ok(est::base64_response(est::CSRATTRS, &der)),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Enroll a device
///
/// The body is a PKCS#10 CSR, DER, base64 (`application/pkcs10`). Authenticated as a station:
/// the station client certificate of `[server.tls]`, or HTTP Basic whose password is a station
/// token (the user name is not checked), or a station bearer token. The same policy, thing
/// claim, `Idempotency-Key`, rate limit and ledger as `POST /v1/certificates`; the ledger row's
/// `channel` is `est`. The answer is the certificate as a certs-only CMS SignedData, base64.
/// Errors are `text/plain` (`<code>: <reason>`) with the code also in `X-Error-Code`.
#[route(
    post,
    path = "/.well-known/est/simpleenroll",
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
pub async fn simpleenroll(State(state): State<AppState>, post: EstPost) -> Response {
    enroll_as_station(&state, None, post).await
}

/// Enroll a device with a label's CA
///
/// As `POST /.well-known/est/simpleenroll`, signed by the CA that `[est.labels]` names
/// `label`. 404 `est_label_not_found` for a label that is not configured.
#[route(
    like = simpleenroll,
    path = "/.well-known/est/{label}/simpleenroll",
    operation_id = "est_simpleenroll_labelled",
    params(("label" = String, Path, description = "A label of `[est.labels]`"))
)]
pub async fn simpleenroll_labelled(
    State(state): State<AppState>,
    label: Result<ApiPath<String>, ApiError>,
    post: EstPost,
) -> Response {
    with_label(label, |label| async move {
        enroll_as_station(&state, Some(&label), post).await
    })
    .await
}

async fn enroll_as_station(state: &AppState, label: Option<&str>, post: EstPost) -> Response {
    let EstPost {
        tls,
        identity,
        request_id,
        headers,
        body,
    } = post;
    let ca = match est_ca(state, tls, label) {
        Ok(ca) => ca,
        Err(e) => return est::error_response(e),
    };
    let station = match station(state, &headers, identity).await {
        Ok(station) => station,
        Err(e) => return est::error_response(e),
    };
    let result = enroll_for_station(
        state,
        &station.name,
        &headers,
        &request_id,
        Channel::Est,
        ca.as_ref(),
        || pkcs10_csr(&headers, body),
    )
    .await
    .and_then(|issued| issued_response(&issued, "simpleenroll"));
    count_refusal(state, Some(&station.name), &result);
    result.unwrap_or_else(est::error_response)
}

/// The CSR of an enrollment or a renewal: `application/pkcs10`, DER, base64 (RFC 7030 section
/// 4.2.1).
fn pkcs10_csr(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<u8>, ApiError> {
    if est::media_type(headers) != PKCS10 {
        return Err(unsupported_media_type(
            "application/pkcs10 (the DER CSR, base64-encoded)",
        ));
    }
    let body = body.map_err(|_| payload_too_large())?;
    est::csr_der(&body)
}

/// The answer of an enrollment or a renewal: the new certificate as a certs-only CMS
/// SignedData, base64, with `Idempotent-Replayed: true` when an `Idempotency-Key` replayed an
/// earlier issuance. `operation` names the route in the log of a CMS encoding failure.
fn issued_response(issued: &Issued, operation: &str) -> Result<Response, ApiError> {
    let der = est::certs_only(&[&issued.record.certificate_der])
        .map_err(|e| ApiError::internal(format!("{operation} CMS encoding: {e}")))?;
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
            Some(ClientIdentity::Device { .. }) => Err(device_certificate_not_allowed()),
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

/// Renew a device's certificate
///
/// RFC 7030 section 4.2.2. The device presents its current certificate as the TLS client
/// certificate (`curl --cert dev.pem --key dev.key`); the body is a PKCS#10 CSR, DER, base64
/// (`application/pkcs10`), with exactly the subject of that certificate (the key may be new or
/// the same). Allowed when the certificate was issued by one of factory-ca's CAs, is in the
/// ledger, unexpired, and neither revoked nor renewed before. The new certificate (channel
/// `est`, station `device:<thing name>`) takes over the thing claim; the old one becomes
/// `superseded` in the same transaction (it is not revoked, and nothing is sent to AWS IoT: the
/// new certificate registers by JITP on its first connection). Answered like `simpleenroll`.
#[route(
    post,
    path = "/.well-known/est/simplereenroll",
    operation_id = "est_simplereenroll",
    request_body(description = "PKCS#10, DER, base64",
        content((String = "application/pkcs10"))),
    responses(
        (status = 200,
         description = "The new certificate: certs-only CMS SignedData (DER, base64 with \
            `Content-Transfer-Encoding: base64`)",
         body = String, content_type = "application/pkcs7-mime; smime-type=certs-only"),
    ),
    security(("device_certificate" = []))
)]
pub async fn simplereenroll(State(state): State<AppState>, post: EstPost) -> Response {
    reenroll_answer(&state, None, post).await
}

/// Renew a device's certificate with a label's CA
///
/// As `POST /.well-known/est/simplereenroll`, the new certificate signed by the CA that
/// `[est.labels]` names `label`. 404 `est_label_not_found` for a label that is not configured.
#[route(
    like = simplereenroll,
    path = "/.well-known/est/{label}/simplereenroll",
    operation_id = "est_simplereenroll_labelled",
    params(("label" = String, Path, description = "A label of `[est.labels]`"))
)]
pub async fn simplereenroll_labelled(
    State(state): State<AppState>,
    label: Result<ApiPath<String>, ApiError>,
    post: EstPost,
) -> Response {
    with_label(label, |label| async move {
        reenroll_answer(&state, Some(&label), post).await
    })
    .await
}

async fn reenroll_answer(state: &AppState, label: Option<&str>, post: EstPost) -> Response {
    let request_id = post.request_id.clone();
    let request_id = request_id.as_str();
    let mut device = None;
    let result = reenroll(state, label, post, &mut device).await;
    let outcome = match &result {
        Ok(_) => "renewed",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!("factory_ca_est_reenrollments_total", "outcome" => outcome).increment(1);
    if let Some((name, serial)) = &device {
        let (success, detail) = match &result {
            Ok((_, new_serial)) => (true, format!("superseded by {new_serial}")),
            Err(e) => (false, format!("{}: {}", e.code.as_str(), e.message)),
        };
        let actor = Actor {
            name,
            request_id: Some(request_id),
        };
        if let Err(e) = actor
            .record(
                &state.store,
                "certificate.reenroll",
                Some(serial),
                success,
                Some(&detail),
            )
            .await
        {
            tracing::warn!(error = %e, "the audit record of a renewal was not written");
        }
        count_refusal(state, Some(name), &result);
    }
    match result {
        Ok((response, _)) => response,
        Err(e) => est::error_response(e),
    }
}

/// The checks of RFC 7030 section 4.2.2 and factory-ca's ledger, then the issuance. `device`
/// receives `(device:<thing name>, serial)` of the presented certificate once it is known (for
/// the audit record).
async fn reenroll(
    state: &AppState,
    label: Option<&str>,
    post: EstPost,
    device: &mut Option<(String, String)>,
) -> Result<(Response, String), ApiError> {
    let EstPost {
        tls,
        identity,
        request_id,
        headers,
        body,
    } = post;
    let (request_id, headers) = (request_id.as_str(), &headers);
    let ca = est_ca(state, tls, label)?;
    let der = match identity {
        Some(ClientIdentity::Device { certificate_der }) => certificate_der,
        Some(ClientIdentity::Station { .. }) => {
            return Err(ApiError::new(
                ErrorCode::DeviceCertificateRequired,
                "simplereenroll renews the certificate presented as the TLS client certificate, \
                 and this is a station certificate; present the device's own certificate and \
                 key (curl --cert dev.pem --key dev.key)",
            ));
        }
        Some(ClientIdentity::Unusable { .. }) | None => {
            return Err(ApiError::new(
                ErrorCode::DeviceCertificateRequired,
                "simplereenroll needs the device's current certificate as the TLS client \
                 certificate (curl --cert dev.pem --key dev.key), issued by this service",
            ));
        }
    };
    let record = current_certificate(state, &der).await?;
    *device = Some((
        format!("device:{}", record.thing_name),
        record.serial.clone(),
    ));
    let name = format!("device:{}", record.thing_name);
    if let Err(wait) = state.station_limiter.check(&name) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "this device renews more often than server.station_rate_per_sec allows; retry after \
             the Retry-After delay",
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let csr = pkcs10_csr(headers, body)?;
    let issued = issue_for_station(
        state,
        &name,
        &csr,
        headers,
        request_id,
        Channel::Est,
        ca.as_ref(),
        Some(&record),
    )
    .await?;
    if !issued.replayed {
        tracing::info!(
            old_serial = %record.serial,
            new_serial = %issued.record.serial,
            thing_name = %record.thing_name,
            "certificate renewed (EST simplereenroll); the old one is superseded"
        );
    }
    let response = issued_response(&issued, "simplereenroll")?;
    Ok((response, issued.record.serial))
}

/// The ledger row of a device certificate (verified by the TLS handshake to chain to one of our
/// CAs), if it may be renewed: recorded (the same DER), unexpired, not revoked, not renewed.
async fn current_certificate(state: &AppState, der: &[u8]) -> Result<CertificateRecord, ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorCode::CertificateUnknown,
            "the client certificate chains to this service's CA but is not in its ledger; only \
             certificates this service issued can be renewed",
        )
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| unknown())?;
    let serial = hex::encode(cert.raw_serial());
    let record = state
        .store
        .get_certificate(&serial)
        .await?
        .filter(|r| r.certificate_der == der)
        .ok_or_else(unknown)?;
    match record.status {
        LedgerStatus::Revoked => {
            return Err(ApiError::new(
                ErrorCode::CertificateRevoked,
                format!(
                    "certificate {serial} is revoked; a revoked certificate cannot be renewed \
                     (enroll the device again through a station)"
                ),
            ));
        }
        LedgerStatus::Superseded => {
            return Err(ApiError::new(
                ErrorCode::CertificateSuperseded,
                format!(
                    "certificate {serial} was renewed already (by {}); renew with the newest \
                     certificate",
                    record
                        .superseded_by
                        .as_deref()
                        .unwrap_or("another certificate")
                ),
            ));
        }
        LedgerStatus::Active => {}
    }
    if record.not_after <= Timestamp::now() {
        return Err(ApiError::new(
            ErrorCode::CertificateExpired,
            format!(
                "certificate {serial} expired; an expired certificate cannot be renewed (enroll \
                 the device again through a station)"
            ),
        ));
    }
    Ok(record)
}

fn device_certificate_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::DeviceCertificateNotAllowed,
        "the TLS client certificate is a device certificate issued by this service; device \
         certificates authenticate only for EST simplereenroll (and may read cacerts and \
         csrattrs). Connect without it (or with a station certificate) for this route",
    )
}

/// Whether a device certificate may reach `path`: EST `simplereenroll`, `cacerts` and
/// `csrattrs`, with or without a label.
fn device_may_use(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/.well-known/est/") else {
        return false;
    };
    let operation = match rest.split_once('/') {
        None => rest,
        Some((label, operation)) if !label.is_empty() && !operation.contains('/') => operation,
        Some(_) => return false,
    };
    matches!(operation, "simplereenroll" | "cacerts" | "csrattrs")
}

/// The router's device gate (run by `crate::http::edge` for every request): a request on a
/// connection whose client certificate is a device certificate gets 403
/// `device_certificate_not_allowed` unless it is for a route a device may use (see
/// [`device_may_use`]), whatever else it carries (a token, a session cookie). A device never
/// acts as a station, a viewer or an admin. EST paths answer in EST's `text/plain` form.
/// `None` lets the request through.
pub(crate) fn device_certificate_refusal(request: &axum::extract::Request) -> Option<Response> {
    let is_device = matches!(
        request.extensions().get::<ClientIdentity>(),
        Some(ClientIdentity::Device { .. })
    );
    if !is_device || device_may_use(request.uri().path()) {
        return None;
    }
    let refusal = device_certificate_not_allowed();
    Some(if request.uri().path().starts_with("/.well-known/est/") {
        est::error_response(refusal)
    } else {
        refusal.into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::device_may_use;

    #[test]
    fn devices_reach_only_renewal_and_the_public_est_routes() {
        for allowed in [
            "/.well-known/est/simplereenroll",
            "/.well-known/est/cacerts",
            "/.well-known/est/csrattrs",
            "/.well-known/est/line3/simplereenroll",
            "/.well-known/est/line3/cacerts",
        ] {
            assert!(device_may_use(allowed), "{allowed}");
        }
        for refused in [
            "/.well-known/est/simpleenroll",
            "/.well-known/est/line3/simpleenroll",
            "/.well-known/est//simplereenroll",
            "/.well-known/est/a/b/simplereenroll",
            "/v1/certificates",
            "/v1/admin/tokens",
            "/healthz",
            "/",
            "/.well-known/est/simplereenroll/x",
        ] {
            assert!(!device_may_use(refused), "{refused}");
        }
    }
}

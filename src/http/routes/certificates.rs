//! `POST /v1/certificates`: a factory station sends a CSR and gets the device certificate and
//! the chain JITP needs. Thin: decode the body, call the issuance pipeline, shape the answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Caller, RequestId, payload_too_large, unsupported_media_type};
use super::rfc3339_string;
use crate::app::AppState;
use crate::auth::Role;
use crate::issuance::{IssuanceRequest, Issued};

pub const PEM_CHAIN: &str = "application/pem-certificate-chain";
const PKCS10: &str = "application/pkcs10";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsrBody {
    /// The PKCS#10 CSR as PEM (`-----BEGIN CERTIFICATE REQUEST-----`).
    csr: String,
}

/// The 201 body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedResponse {
    pub serial: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub certificate_pem: String,
    /// Device certificate then CA certificate: what the device presents for JITP.
    pub certificate_chain_pem: String,
    pub ca_certificate_pem: String,
    /// Lowercase hex SHA-256 of the certificate DER: the id AWS IoT will give it.
    pub aws_certificate_id: String,
    pub issuing_ca: String,
}

/// Sign a device CSR
///
/// Checks the CSR against the policy, signs it with the issuing CA, records it in the ledger
/// (committed before the answer is sent) and returns the certificate with the chain the device
/// presents for JITP.
#[utoipa::path(
    post,
    path = "/v1/certificates",
    tag = "stations",
    operation_id = "sign_certificate",
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "1-255 visible ASCII characters. The same key, station and CSR return \
            the same certificate (with `Idempotent-Replayed: true`); the same key with another \
            CSR gets 422 `idempotency_key_reused`."),
        ("Accept" = Option<String>, Header,
         description = "`application/pem-certificate-chain` for the PEM chain alone instead of \
            JSON"),
    ),
    request_body(
        description = "The CSR: JSON `{\"csr\": \"<PEM>\"}`, or the raw CSR (PEM or DER) as \
            `application/pkcs10`",
        content(
            (CsrBody = "application/json"),
            (super::openapi::schemas::Binary = "application/pkcs10"),
        )
    ),
    responses(
        (status = 201,
         description = "Signed and recorded. With `Accept: application/pem-certificate-chain`, \
            the body is the device certificate then the CA certificate, as PEM.",
         headers(
            ("Location" = String, description = "`/v1/certificates/<serial>`"),
            ("Idempotent-Replayed" = String,
             description = "`true` when an `Idempotency-Key` replayed an earlier answer"),
         ),
         content(
            (IssuedResponse = "application/json"),
            (String = "application/pem-certificate-chain"),
         )),
    ),
    security(("bearer_token" = ["station", "admin"]))
)]
pub async fn sign(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let station = caller.as_ref().ok().map(|c| c.0.name.clone());
    let result = sign_checked(&state, caller, &request_id, &headers, body).await;
    // Refusals (4xx) are counted for the dashboards; 5xx are failures, not refusals.
    if let Err(e) = &result
        && e.status.is_client_error()
    {
        state.rejections.record(
            station.as_deref(),
            e.code,
            state.issuance.issuing_ca().id(),
            time::OffsetDateTime::now_utc(),
        );
    }
    result
}

async fn sign_checked(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    request_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = caller?;
    let station = caller.require(&[Role::Station])?;
    if let Err(wait) = state
        .station_limiter
        .check(&station.name, std::time::Instant::now())
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this station sends more than server.station_rate_per_sec ({}/s); slow down \
                 and retry after the Retry-After delay",
                state.settings.server.station_rate_per_sec
            ),
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let body = body.map_err(|_| payload_too_large())?;
    let csr = csr_from_body(headers, &body)?;
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
        })
        .await?;
    Ok(respond(headers, issued))
}

/// JSON `{"csr": "<PEM>"}`, or the raw CSR (PEM or DER) as `application/pkcs10`.
fn csr_from_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => {
            let parsed: CsrBody = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("the body must be a JSON object {{\"csr\": \"<PEM>\"}}: {e}"),
                )
            })?;
            Ok(parsed.csr.into_bytes())
        }
        PKCS10 => Ok(body.to_vec()),
        _ => Err(unsupported_media_type(
            "application/json ({\"csr\": \"<PEM>\"}) or application/pkcs10 (PEM or DER)",
        )),
    }
}

fn respond(headers: &HeaderMap, issued: Issued) -> Response {
    let location = HeaderValue::from_str(&format!("/v1/certificates/{}", issued.record.serial))
        .expect("a hex serial is a valid header value");
    let mut response = if accepts_pem_chain(headers) {
        (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CHAIN))],
            issued.chain_pem(),
        )
            .into_response()
    } else {
        let chain = issued.chain_pem();
        let r = issued.record;
        let body = IssuedResponse {
            serial: r.serial,
            thing_name: r.thing_name,
            country: r.country,
            subject: r.subject,
            not_before: rfc3339_string(r.not_before),
            not_after: rfc3339_string(r.not_after),
            certificate_pem: issued.certificate_pem,
            certificate_chain_pem: chain,
            ca_certificate_pem: issued.ca_certificate_pem,
            aws_certificate_id: r.aws_certificate_id,
            issuing_ca: r.ca_id,
        };
        (StatusCode::CREATED, axum::Json(body)).into_response()
    };
    response.headers_mut().insert(header::LOCATION, location);
    if issued.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn accepts_pem_chain(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| item.split(';').next().unwrap_or("").trim() == PEM_CHAIN)
}

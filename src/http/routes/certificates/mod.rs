//! `/v1/certificates`: a factory station sends a CSR and gets the device certificate and the
//! chain JITP needs (`POST`); viewers read the ledger (list, one row, the streamed CSV export).
//! Thin: decode, call the issuance pipeline or the store, shape the answer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::AppState;
use crate::aws::AwsCertificateStatus;
use crate::ca::{self, CertificateAuthority, KeyAlgorithm};
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{
    ApiPath, ApiQuery, Caller, RequestId, StationCaller, ViewerCaller, parse_optional_time,
    payload_too_large, unsupported_media_type,
};
use crate::http::{page, route};
use crate::services::issuance::{IssuanceRequest, Issued};
use crate::store::aws::CertificateAwsTarget;
use crate::store::{
    AwsStatusFilter, CertificateFilter, CertificateRecord, Channel, LedgerStatus, TextValue,
    Timestamp,
};

pub mod export;

pub use export::{CSV_COLUMNS, csv_row};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "ledger";

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
#[route(
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
            (crate::http::openapi::schemas::Binary = "application/pkcs10"),
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
    count_refusal(&state, station.as_deref(), &result);
    result
}

/// Counts a refused request (4xx) of `station` for the dashboards; 5xx are failures, not
/// refusals. Shared with EST enrollment and renewal.
pub(super) fn count_refusal<T>(
    state: &AppState,
    station: Option<&str>,
    result: &Result<T, ApiError>,
) {
    if let Err(e) = result
        && e.status().is_client_error()
    {
        state.rejections.record(
            station,
            e.code.as_str(),
            state.issuance.issuing_ca().id(),
            time::OffsetDateTime::now_utc(),
        );
    }
}

async fn sign_checked(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    request_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let StationCaller(station) = StationCaller::allows(caller?.0)?;
    let issued = enroll_for_station(
        state,
        &station.name,
        headers,
        request_id,
        Channel::Api,
        None,
        || {
            let body = body.map_err(|_| payload_too_large())?;
            csr_from_body(headers, &body)
        },
    )
    .await?;
    Ok(respond(headers, issued))
}

/// A new certificate (not a renewal) for `station`: its rate limit checked before the body is
/// read, then the CSR taken from the body by `csr`, then issued by `ca` or the issuing CA.
/// `POST /v1/certificates` and EST simpleenroll.
pub(super) async fn enroll_for_station(
    state: &AppState,
    station: &str,
    headers: &HeaderMap,
    request_id: &str,
    channel: Channel,
    ca: Option<&Arc<CertificateAuthority>>,
    csr: impl FnOnce() -> Result<Vec<u8>, ApiError>,
) -> Result<Issued, ApiError> {
    station_rate_limit(state, station)?;
    let csr = csr()?;
    issue_for_station(state, station, &csr, headers, request_id, channel, ca, None).await
}

/// 429 `rate_limited`, with Retry-After, when `station` signs faster than its share
/// (`server.station_rate_per_sec`); checked before the body is read. EST enrollment counts
/// against the same share.
fn station_rate_limit(state: &AppState, station: &str) -> Result<(), ApiError> {
    state.station_limiter.check(station).map_err(|wait| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "this station sends more than server.station_rate_per_sec ({}/s); slow down \
                 and retry after the Retry-After delay",
                state.settings.server.station_rate_per_sec
            ),
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64)
    })
}

/// Issues `csr` for `station` through the one pipeline, with the request's `Idempotency-Key`
/// (a value that is not text is passed on as NUL, which the pipeline refuses as invalid), by
/// `ca` or the issuing CA, as a renewal of `renews` when set. `POST /v1/certificates`, EST
/// simpleenroll and EST simplereenroll (whose station is `device:<thing name>`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn issue_for_station(
    state: &AppState,
    station: &str,
    csr: &[u8],
    headers: &HeaderMap,
    request_id: &str,
    channel: Channel,
    ca: Option<&Arc<CertificateAuthority>>,
    renews: Option<&CertificateRecord>,
) -> Result<Issued, ApiError> {
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let issued = state
        .issuance
        .issue(IssuanceRequest {
            csr,
            station,
            idempotency_key,
            request_id: Some(request_id),
            channel,
            ca,
            renews,
        })
        .await?;
    Ok(issued)
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
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the body must be a JSON object {{\"csr\": \"<PEM>\"}}; {}",
                        crate::http::messages::plain_serde_json(&e)
                    ),
                )
            })?;
            Ok(parsed.csr.into_bytes())
        }
        PKCS10 if looks_like_json(body) => Err(ApiError::new(
            ErrorCode::InvalidCsr,
            "the body is JSON but was sent as application/pkcs10: send {\"csr\": \"<PEM>\"} \
             with Content-Type: application/json, or the PEM or DER CSR itself as \
             application/pkcs10",
        )),
        PKCS10 => Ok(body.to_vec()),
        _ => Err(unsupported_media_type(
            "application/json ({\"csr\": \"<PEM>\"}) or application/pkcs10 (PEM or DER)",
        )),
    }
}

/// A body whose first visible character opens a JSON object: never a PEM or DER CSR (PEM
/// starts with `-`, DER with the SEQUENCE tag 0x30).
fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
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
        (
            StatusCode::CREATED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            issued_json(&issued),
        )
            .into_response()
    };
    response.headers_mut().insert(header::LOCATION, location);
    if issued.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The 201 body: byte for byte what serializing an [`IssuedResponse`] gives, written into one
/// buffer. The device certificate's PEM is made once, already escaped for JSON, and used for
/// both fields that hold it; the CA's PEMs come escaped from the issuance service, which makes
/// them once per CA. (Building the struct cost a PEM encoding, a chain concatenation, four
/// copies and the escaping of ~3 KB of PEM per certificate.)
fn issued_json(issued: &Issued) -> Vec<u8> {
    let r = &issued.record;
    let ca = &issued.ca;
    let certificate = ca::pem_with_line_ending("CERTIFICATE", &r.certificate_der, "\\n");
    let mut out = Vec::with_capacity(
        400 + r.subject.len()
            + r.thing_name.len()
            + 2 * certificate.len()
            + 2 * ca.certificate_pem_json.len()
            + ca.intermediates_pem_json.len(),
    );
    let string = |out: &mut Vec<u8>, value: &str| {
        serde_json::to_writer(out, value).expect("writing JSON to a Vec cannot fail")
    };
    out.extend_from_slice(b"{\"serial\":");
    string(&mut out, &r.serial);
    out.extend_from_slice(b",\"thing_name\":");
    string(&mut out, &r.thing_name);
    out.extend_from_slice(b",\"country\":");
    match &r.country {
        Some(country) => string(&mut out, country),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"subject\":");
    string(&mut out, &r.subject);
    out.extend_from_slice(b",\"not_before\":");
    string(&mut out, &r.not_before.rfc3339());
    out.extend_from_slice(b",\"not_after\":");
    string(&mut out, &r.not_after.rfc3339());
    out.extend_from_slice(b",\"certificate_pem\":\"");
    out.extend_from_slice(certificate.as_bytes());
    out.extend_from_slice(b"\",\"certificate_chain_pem\":\"");
    out.extend_from_slice(certificate.as_bytes());
    out.extend_from_slice(ca.certificate_pem_json.as_bytes());
    out.extend_from_slice(ca.intermediates_pem_json.as_bytes());
    out.extend_from_slice(b"\",\"ca_certificate_pem\":\"");
    out.extend_from_slice(ca.certificate_pem_json.as_bytes());
    out.extend_from_slice(b"\",\"aws_certificate_id\":");
    string(&mut out, &r.aws_certificate_id);
    out.extend_from_slice(b",\"issuing_ca\":");
    string(&mut out, &r.ca_id);
    out.push(b'}');
    out
}

fn accepts_pem_chain(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| item.split(';').next().unwrap_or("").trim() == PEM_CHAIN)
}

/// A ledger row as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateView {
    pub serial: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    pub spki_sha256: String,
    pub aws_certificate_id: String,
    pub issuing_ca: String,
    pub not_before: String,
    pub not_after: String,
    pub issued_at: String,
    pub station: String,
    pub request_id: Option<String>,
    pub status: LedgerStatus,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
    /// A revocation AWS IoT has not been told of yet (retried in the background).
    pub aws_revocation_pending: bool,
    /// The status AWS IoT reported at the last sync; null when AWS has not seen the
    /// certificate (the device never connected) or no sync ran. With several registration
    /// targets, a summary of `aws_targets`: ACTIVE when any target reports ACTIVE, REVOKED
    /// only when every target that has seen it reports REVOKED.
    pub aws_status: Option<AwsCertificateStatus>,
    /// When AWS first saw the certificate (the earliest over the targets).
    pub aws_first_seen_at: Option<String>,
    /// The certificate in each registration target that has seen it or that its CA is
    /// registered in, by target name.
    pub aws_targets: Vec<CertificateTargetView>,
    /// The interface the certificate was requested through: `api` or `est`.
    pub channel: Channel,
    /// When its device renewed it (EST simplereenroll; status `superseded`, or `revoked`
    /// later), and the serial of the renewal; null otherwise.
    pub superseded_at: Option<String>,
    pub superseded_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

/// A ledger row in one AWS registration target.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateTargetView {
    /// The target (`default`: the `[aws]` section).
    pub target: String,
    /// What this target reported at its last sync, or REVOKED once told of the revocation;
    /// null when it has not seen the certificate.
    pub aws_status: Option<AwsCertificateStatus>,
    pub aws_first_seen_at: Option<String>,
    /// The revocation has not been pushed to this target yet.
    pub aws_revocation_pending: bool,
}

impl CertificateView {
    pub fn new(
        r: CertificateRecord,
        with_pem: bool,
        aws_targets: Vec<CertificateAwsTarget>,
    ) -> Self {
        CertificateView {
            aws_targets: aws_targets
                .into_iter()
                .map(|t| CertificateTargetView {
                    target: t.target,
                    aws_status: t.aws_status,
                    aws_first_seen_at: t.aws_first_seen_at.map(Timestamp::rfc3339),
                    aws_revocation_pending: t.revocation_pending,
                })
                .collect(),
            certificate_pem: with_pem.then(|| ca::to_pem("CERTIFICATE", &r.certificate_der)),
            serial: r.serial,
            thing_name: r.thing_name,
            country: r.country,
            subject: r.subject,
            key_algorithm: r.key_algorithm,
            spki_sha256: r.spki_sha256,
            aws_certificate_id: r.aws_certificate_id,
            issuing_ca: r.ca_id,
            not_before: r.not_before.rfc3339(),
            not_after: r.not_after.rfc3339(),
            issued_at: r.issued_at.rfc3339(),
            station: r.station,
            request_id: r.request_id,
            status: r.status,
            revoked_at: r.revoked_at.map(Timestamp::rfc3339),
            revocation_reason: r.revocation_reason.map(|reason| reason.name().to_owned()),
            aws_revocation_pending: r.aws_revocation_pending,
            aws_status: r.aws_status,
            aws_first_seen_at: r.aws_first_seen_at.map(Timestamp::rfc3339),
            channel: r.channel,
            superseded_at: r.superseded_at.map(Timestamp::rfc3339),
            superseded_by: r.superseded_by,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Exactly this thing name.
    thing_name: Option<String>,
    /// Exactly this country code.
    country: Option<String>,
    /// Exactly this station: a token name, or `cert:<CN>` for a station client certificate.
    station: Option<String>,
    /// `active`, `revoked` or `superseded` (renewed by its device, still valid).
    status: Option<String>,
    /// RFC 3339; inclusive.
    issued_after: Option<String>,
    /// RFC 3339; exclusive.
    issued_before: Option<String>,
    /// The AWS status from the last sync (`ACTIVE`, `INACTIVE`, `REVOKED`,
    /// `PENDING_TRANSFER`, `REGISTER_INACTIVE`, `PENDING_ACTIVATION`), or `never_seen`: in the
    /// target `aws_target` when given, else in any registration target (`never_seen`: in
    /// none).
    aws_status: Option<String>,
    /// A registration target: `aws_status` asks about this target only. Needs `aws_status`.
    aws_target: Option<String>,
    /// 1 to 1000, default 100 (export: every matching row).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Thing names starting with this.
    q: Option<String>,
    /// `desc` (newest first, the default) or `asc`; `issued_at_desc`/`-issued_at` and
    /// `issued_at_asc`/`issued_at` mean the same.
    sort: Option<String>,
    /// Export only: `true` starts the file with a UTF-8 byte order mark, so that Excel reads
    /// non-ASCII subjects correctly. Default `false`.
    bom: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificatePage {
    pub items: Vec<CertificateView>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List ledger rows
///
/// Newest first (or oldest first with `sort=asc`), filtered, one page at a time. Unknown
/// parameters are refused.
#[route(
    get,
    path = "/v1/certificates",
    params(ListParams),
    responses((status = 200, description = "One page of ledger rows", body = CertificatePage))
)]
pub async fn list_certificates(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<CertificatePage>, ApiError> {
    if params.bom.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "bom applies only to /v1/certificates/export.csv",
        ));
    }
    let limit = page::limit(params.limit)?;
    let filter = certificate_filter(params, &state)?;
    let mut rows = state.reads.list_certificates(&filter, limit + 1).await?;
    let next_cursor =
        page::next_cursor(&mut rows, limit, |r| encode_cursor(r.issued_at, &r.serial));
    let mut targets = state.reads.certificate_aws_targets(&rows).await?;
    Ok(Json(CertificatePage {
        items: rows
            .into_iter()
            .map(|r| {
                let t = targets.remove(&r.serial).unwrap_or_default();
                CertificateView::new(r, false, t)
            })
            .collect(),
        next_cursor,
    }))
}

/// The ledger filter of the list and export endpoints, validated.
fn certificate_filter(params: ListParams, state: &AppState) -> Result<CertificateFilter, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|status| {
            // Any case: the API shows `active`, AWS statuses are upper case, people type both.
            LedgerStatus::from_name(&status.to_ascii_lowercase()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    "status must be active, revoked or superseded (any case)",
                )
            })
        })
        .transpose()?;
    let aws_status = params
        .aws_status
        .as_deref()
        .map(|aws_status| {
            AwsStatusFilter::parse(&aws_status.to_ascii_uppercase())
                .or_else(|| AwsStatusFilter::parse(&aws_status.to_ascii_lowercase()))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!(
                            "aws_status must be one of {} (any case)",
                            AwsStatusFilter::names().join(", ")
                        ),
                    )
                })
        })
        .transpose()?;
    if let Some(target) = &params.aws_target {
        if aws_status.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "aws_target applies with aws_status (the status to ask that target about)",
            ));
        }
        if !state.aws_targets.iter().any(|t| &t.name == target) {
            let configured: Vec<&str> = state.aws_targets.iter().map(|t| t.name.as_str()).collect();
            return Err(ApiError::new(
                ErrorCode::UnknownAwsTarget,
                if configured.is_empty() {
                    format!("no AWS target {target:?}: AWS IoT is not configured")
                } else {
                    format!(
                        "no AWS target {target:?}; configured: {}",
                        configured.join(", ")
                    )
                },
            ));
        }
    }
    if let Some(q) = &params.q
        && !(1..=128).contains(&q.len())
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "q (a thing name prefix) must be 1 to 128 characters",
        ));
    }
    let ascending = match params.sort.as_deref() {
        None | Some("desc" | "issued_at_desc" | "-issued_at") => false,
        Some("asc" | "issued_at_asc" | "issued_at") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "sort must be desc (newest first) or asc (oldest first)",
            ));
        }
    };
    Ok(CertificateFilter {
        thing_name: params.thing_name,
        thing_name_prefix: params.q,
        country: params.country,
        station: params.station,
        status,
        issued_after: parse_optional_time("issued_after", params.issued_after.as_deref())?,
        issued_before: parse_optional_time("issued_before", params.issued_before.as_deref())?,
        aws_status,
        aws_target: params.aws_target,
        ascending,
        before: params.cursor.as_deref().map(decode_cursor).transpose()?,
    })
}

/// One ledger row, with `certificate_pem`
#[route(
    get,
    path = "/v1/certificates/{serial}",
    params(("serial" = String, Path,
        description = "40 hex characters (not case-sensitive)")),
    responses((status = 200, description = "The ledger row", body = CertificateView))
)]
pub async fn get_certificate(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<CertificateView>, ApiError> {
    let serial = serial.to_ascii_lowercase();
    let not_found = || {
        ApiError::new(
            ErrorCode::CertificateNotFound,
            format!("no certificate with serial {serial:?} in the ledger"),
        )
    };
    if serial.len() != 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let record = state
        .store
        .get_certificate(&serial)
        .await?
        .ok_or_else(not_found)?;
    let targets = state
        .store
        .certificate_aws_targets(std::slice::from_ref(&record))
        .await?
        .remove(&record.serial)
        .unwrap_or_default();
    Ok(Json(CertificateView::new(record, true, targets)))
}

fn encode_cursor(issued_at: Timestamp, serial: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{serial}", issued_at.rfc3339()))
}

fn decode_cursor(cursor: &str) -> Result<(Timestamp, String), ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidQuery,
            "cursor is not one this API returned",
        )
    };
    // A cursor is what `encode_cursor` wrote: a UTC time in range and a serial (40 lowercase
    // hex digits). Anything else is refused, not passed on to the store.
    if cursor.len() > 128 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, serial) = text.split_once('|').ok_or_else(invalid)?;
    if !at.ends_with('Z')
        || serial.len() != 40
        || !serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid());
    }
    let at = OffsetDateTime::parse(at, &Rfc3339)
        .ok()
        .and_then(Timestamp::checked)
        .ok_or_else(invalid)?;
    Ok((at, serial.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::services::issuance::CaPems;

    fn issued(subject: &str, country: Option<&str>, intermediates: &str) -> Issued {
        let ca_subject = crate::ca::CaSubject {
            common_name: "Test CA".into(),
            country: None,
            state: None,
            locality: None,
            organization: None,
            organizational_unit: None,
        };
        let (ca, _key) = crate::ca::CertificateAuthority::generate(
            crate::ca::CaAlgorithm::EcdsaP256,
            &ca_subject,
            time::Duration::days(10),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let der: Vec<u8> = (0..437u32).map(|i| (i * 13) as u8).collect();
        let new = crate::store::NewIssuance {
            certificate: crate::ca::IssuedCertificate {
                serial: "0123456789abcdef0123456789abcdef01234567".into(),
                thing_name: "dev-1".into(),
                country: country.map(str::to_owned),
                subject: subject.into(),
                key_algorithm: KeyAlgorithm::EcdsaP256,
                spki_sha256: "00".repeat(32),
                aws_certificate_id: "ab".repeat(32),
                certificate_der: der,
                not_before: now,
                not_after: now,
            },
            ca_id: ca.id().to_owned(),
            station: "line-1".into(),
            request_id: None,
            channel: Channel::Api,
            issued_at: Timestamp::new(now),
            idempotency: None,
            reject_duplicate_thing: false,
        };
        Issued {
            record: new.record(),
            ca: Arc::new(CaPems::new(
                ca.certificate_pem().to_owned(),
                intermediates.to_owned(),
            )),
            replayed: false,
        }
    }

    #[test]
    fn the_issued_body_is_byte_for_byte_the_serialized_response() {
        let intermediate = crate::ca::to_pem("CERTIFICATE", &[1, 2, 3, 250]);
        for (subject, country, intermediates) in [
            ("C=JP, CN=dev-1", Some("JP"), ""),
            ("CN=dev-1", None, intermediate.as_str()),
            (
                "CN=quote\" back\\slash \u{1} \u{e9}\u{1F600} </script>",
                Some("DE"),
                "",
            ),
        ] {
            let issued = issued(subject, country, intermediates);
            let r = issued.record.clone();
            let expected = serde_json::to_vec(&IssuedResponse {
                serial: r.serial,
                thing_name: r.thing_name,
                country: r.country,
                subject: r.subject,
                not_before: r.not_before.rfc3339(),
                not_after: r.not_after.rfc3339(),
                certificate_pem: issued.certificate_pem(),
                certificate_chain_pem: issued.chain_pem(),
                ca_certificate_pem: issued.ca.certificate_pem.clone(),
                aws_certificate_id: r.aws_certificate_id,
                issuing_ca: r.ca_id,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(issued_json(&issued)).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{subject}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let at = Timestamp::new(time::macros::datetime!(2026-11-28 10:00:00.123456 UTC));
        let serial = "0123456789abcdef0123456789abcdef01234567";
        let (back, decoded) = decode_cursor(&encode_cursor(at, serial)).unwrap();
        assert_eq!((back, decoded.as_str()), (at, serial));
    }

    #[test]
    fn forged_cursors_are_refused() {
        let serial = "0123456789abcdef0123456789abcdef01234567";
        for text in [
            format!("9999-12-31T23:59:59-23:59|{serial}"),
            format!("0000-01-01T00:00:00+23:59|{serial}"),
            format!("2026-11-28T10:00:00+01:00|{serial}"),
            "2026-11-28T10:00:00Z|ab".to_owned(),
            format!("2026-11-28T10:00:00Z|{}", serial.to_uppercase()),
            format!("2026-11-28T10:00:00Z|{serial}\0"),
            "no separator".to_owned(),
        ] {
            assert!(
                decode_cursor(&URL_SAFE_NO_PAD.encode(&text)).is_err(),
                "{text}"
            );
        }
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&"A".repeat(4096)).is_err());
    }
}

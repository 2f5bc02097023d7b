//! Read endpoints: the issuance ledger (viewer or admin), the issuing CA, health.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::rfc3339_string;
use crate::app::AppState;
use crate::auth::Role;
use crate::ca;
use crate::store::{CertificateFilter, CertificateRecord, Timestamp};

/// A ledger row as the API shows it.
#[derive(Serialize)]
pub struct CertificateView {
    pub serial: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: String,
    pub spki_sha256: String,
    pub aws_certificate_id: String,
    pub issuing_ca: String,
    pub not_before: String,
    pub not_after: String,
    pub issued_at: String,
    pub station: String,
    pub request_id: Option<String>,
    pub status: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
    /// A revocation AWS IoT has not been told of yet (retried in the background).
    pub aws_revocation_pending: bool,
    /// The status AWS IoT reported at the last sync; null when AWS has not seen the
    /// certificate (the device never connected) or no sync ran.
    pub aws_status: Option<String>,
    pub aws_first_seen_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

impl CertificateView {
    fn new(r: CertificateRecord, with_pem: bool) -> Self {
        CertificateView {
            certificate_pem: with_pem.then(|| ca::to_pem("CERTIFICATE", &r.certificate_der)),
            serial: r.serial,
            thing_name: r.thing_name,
            country: r.country,
            subject: r.subject,
            key_algorithm: r.key_algorithm,
            spki_sha256: r.spki_sha256,
            aws_certificate_id: r.aws_certificate_id,
            issuing_ca: r.ca_id,
            not_before: rfc3339_string(r.not_before),
            not_after: rfc3339_string(r.not_after),
            issued_at: rfc3339_string(r.issued_at),
            station: r.station,
            request_id: r.request_id,
            status: r.status,
            revoked_at: r.revoked_at.map(rfc3339_string),
            revocation_reason: r.revocation_reason,
            aws_revocation_pending: r.aws_revocation_pending,
            aws_status: r.aws_status,
            aws_first_seen_at: r.aws_first_seen_at.map(rfc3339_string),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    thing_name: Option<String>,
    country: Option<String>,
    station: Option<String>,
    status: Option<String>,
    issued_after: Option<String>,
    issued_before: Option<String>,
    aws_status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct CertificatePage {
    pub items: Vec<CertificateView>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

pub const MAX_PAGE: u32 = 1000;
/// AWS IoT certificate statuses, and `never_seen` for certificates AWS has not listed.
const AWS_STATUSES: [&str; 7] = [
    "ACTIVE",
    "INACTIVE",
    "REVOKED",
    "PENDING_TRANSFER",
    "REGISTER_INACTIVE",
    "PENDING_ACTIVATION",
    "never_seen",
];
const DEFAULT_PAGE: u32 = 100;

pub async fn list_certificates(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<CertificatePage>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    if let Some(status) = &params.status
        && !matches!(status.as_str(), "active" | "revoked")
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "status must be active or revoked",
        ));
    }
    if let Some(aws_status) = &params.aws_status
        && !AWS_STATUSES.contains(&aws_status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("aws_status must be one of {}", AWS_STATUSES.join(", ")),
        ));
    }
    let filter = CertificateFilter {
        thing_name: params.thing_name,
        country: params.country,
        station: params.station,
        status: params.status,
        issued_after: params
            .issued_after
            .as_deref()
            .map(|t| parse_time("issued_after", t))
            .transpose()?,
        issued_before: params
            .issued_before
            .as_deref()
            .map(|t| parse_time("issued_before", t))
            .transpose()?,
        aws_status: params.aws_status,
        before: params.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    // One row more than asked tells whether another page exists.
    let mut rows = state.store.list_certificates(&filter, limit + 1).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_cursor(r.issued_at, &r.serial))
    } else {
        None
    };
    Ok(Json(CertificatePage {
        items: rows
            .into_iter()
            .map(|r| CertificateView::new(r, false))
            .collect(),
        next_cursor,
    }))
}

pub async fn get_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<CertificateView>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let serial = serial.to_ascii_lowercase();
    let not_found = || {
        ApiError::not_found(
            "certificate_not_found",
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
    Ok(Json(CertificateView::new(record, true)))
}

#[derive(Serialize)]
pub struct CaView {
    pub id: String,
    pub subject: String,
    pub key_algorithm: String,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the CA certificate DER: the id AWS IoT gives the CA once registered.
    pub aws_certificate_id: String,
    pub certificate_pem: String,
}

/// `GET /v1/ca`: the issuing CA, for any authenticated caller.
pub async fn issuing_ca(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CaView>, ApiError> {
    caller.require(&[Role::Station, Role::Viewer])?;
    let ca = state.issuance.issuing_ca();
    Ok(Json(CaView {
        id: ca.id().to_owned(),
        subject: ca.subject().to_owned(),
        key_algorithm: ca.key_algorithm().to_owned(),
        not_before: rfc3339_string(Timestamp::new(ca.not_before())),
        not_after: rfc3339_string(Timestamp::new(ca.not_after())),
        aws_certificate_id: ca.aws_certificate_id(),
        certificate_pem: ca.certificate_pem().to_owned(),
    }))
}

/// `GET /v1/ca.pem`: the issuing CA certificate, no authentication (it is public).
pub async fn issuing_ca_pem(State(state): State<AppState>) -> Response {
    let ca = state.issuance.issuing_ca();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        )],
        ca.certificate_pem().to_owned(),
    )
        .into_response()
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the issuing CA can sign now.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.ping().await.is_ok();
    let ca = state.issuance.issuing_ca();
    let ca_ok = OffsetDateTime::now_utc() < ca.not_after();
    let status = if store_ok && ca_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "store": if store_ok { "ok" } else { "unavailable" },
        "issuing_ca": if ca_ok { "ok" } else { "expired" },
    });
    (status, Json(body)).into_response()
}

pub(crate) fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(Timestamp::new)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z"),
            )
        })
}

fn encode_cursor(issued_at: Timestamp, serial: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{serial}", rfc3339_string(issued_at)))
}

fn decode_cursor(cursor: &str) -> Result<(Timestamp, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid_query", "cursor is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, serial) = text.split_once('|').ok_or_else(invalid)?;
    let at = OffsetDateTime::parse(at, &Rfc3339).map_err(|_| invalid())?;
    Ok((Timestamp::new(at), serial.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let at = Timestamp::new(time::macros::datetime!(2026-11-28 10:00:00.123456 UTC));
        let (back, serial) = decode_cursor(&encode_cursor(at, "ab")).unwrap();
        assert_eq!((back, serial.as_str()), (at, "ab"));
    }
}

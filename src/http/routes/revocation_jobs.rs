//! Bulk revocation: `POST /v1/admin/revocations` (a dry run, or a job) and
//! `GET /v1/admin/revocations/{id}` (its progress and result). Admin only. The job itself runs
//! in the service's upkeep job (`services::bulk_revocation`); its completion is audited once, as
//! `certificate.bulk_revoke` with its count.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::revocation::parse_reason;
use crate::app::AppState;
use crate::ca::RevocationReason;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{AdminCaller, ApiJson, ApiPath};
use crate::http::route;
use crate::store::bulk_revocation::{RevocationCandidate, RevocationFilter, RevocationJob};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "revocation";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRevocationRequest {
    /// Which active certificates: every criterion given must match (at least one is needed).
    filter: RevocationFilter,
    /// An RFC 5280 CRLReason in snake_case; absent or null means `unspecified`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "key_compromise")]
    reason: Option<String>,
    /// Only count and list what would be revoked; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// One certificate a dry run would revoke.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CandidateView {
    serial: String,
    thing_name: String,
    issuing_ca: String,
    station: String,
    /// RFC 3339.
    issued_at: String,
}

/// What a dry run found: nothing was changed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DryRunView {
    /// Always `true`.
    dry_run: bool,
    reason: &'static str,
    filter: RevocationFilter,
    /// Active certificates the filter matches now.
    matched: i64,
    /// The first of them, oldest issuance first (at most 20).
    first: Vec<CandidateView>,
}

/// A bulk revocation job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RevocationJobView {
    /// `rev-` and 32 hex characters.
    id: String,
    /// `running` or `succeeded`.
    status: &'static str,
    reason: &'static str,
    filter: RevocationFilter,
    /// Active certificates the filter matched when the job was created; the job revokes
    /// these (certificates issued later are left alone).
    matched: i64,
    /// Revoked by this job so far. Less than `matched` at the end when some were revoked by
    /// other means meanwhile.
    revoked: i64,
    /// The admin token that submitted the job.
    actor: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339: the last batch committed.
    updated_at: String,
    /// RFC 3339, or null while running.
    finished_at: Option<String>,
}

impl From<RevocationJob> for RevocationJobView {
    fn from(job: RevocationJob) -> Self {
        RevocationJobView {
            status: if job.is_finished() {
                "succeeded"
            } else {
                "running"
            },
            reason: job.reason.name(),
            created_at: job.created_at.rfc3339(),
            updated_at: job.updated_at.rfc3339(),
            finished_at: job.finished_at.map(|t| t.rfc3339()),
            id: job.id,
            filter: job.filter,
            matched: job.matched,
            revoked: job.revoked,
            actor: job.actor,
        }
    }
}

impl From<RevocationCandidate> for CandidateView {
    fn from(c: RevocationCandidate) -> Self {
        CandidateView {
            serial: c.serial,
            thing_name: c.thing_name,
            issuing_ca: c.ca_id,
            station: c.station,
            issued_at: c.issued_at.rfc3339(),
        }
    }
}

/// Revoke certificates in bulk, or count them (dry run)
///
/// With `"dry_run": true`, answers 200 with how many active certificates the filter matches
/// and the first ones, and changes nothing. Otherwise creates a job and answers 202 with it
/// (`Location` names it); the job revokes the matching certificates in batches, survives
/// restarts, and tells AWS IoT through the revocation push. A retried request with the same
/// `Idempotency-Key` answers 200 with the job it created.
#[route(
    post,
    path = "/v1/admin/revocations",
    operation_id = "create_bulk_revocation",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters: a retry with the same key and body \
            answers with the job the first request created")),
    request_body = BulkRevocationRequest,
    responses(
        (status = 200, description = "A dry run's count, or the job an Idempotency-Key \
            created earlier", body = DryRunView),
        (status = 202, description = "The job, created and running", body = RevocationJobView,
            headers(("Location" = String, description = "`/v1/admin/revocations/{id}`"))),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    admin: AdminCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BulkRevocationRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if crate::services::issuance::valid_idempotency_key(key) => Some(key),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            }
        },
    };
    let reason = match body.reason.as_deref() {
        None => RevocationReason::Unspecified,
        Some(name) => parse_reason(name)?,
    };
    let bulk = &state.bulk_revocations;
    let filter = bulk.validate(&state.store, body.filter).await?;
    if body.dry_run {
        let found = bulk.dry_run(&state.store, &filter).await?;
        return Ok(Json(DryRunView {
            dry_run: true,
            reason: reason.name(),
            filter,
            matched: found.matched,
            first: found.first.into_iter().map(Into::into).collect(),
        })
        .into_response());
    }
    let (job, created) = bulk
        .submit(
            &state.store,
            &filter,
            reason,
            admin.actor(),
            idempotency_key,
        )
        .await?;
    let location = format!("/v1/admin/revocations/{}", job.id);
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(RevocationJobView::from(job))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// A bulk revocation job: its progress, and its result once `status` is `succeeded`
#[route(
    get,
    path = "/v1/admin/revocations/{id}",
    operation_id = "get_bulk_revocation",
    params(("id" = String, Path, description = "The job id from the POST")),
    responses((status = 200, description = "The job", body = RevocationJobView))
)]
pub async fn get(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RevocationJobView>, ApiError> {
    let job = state.bulk_revocations.job(&state.store, &id).await?;
    Ok(Json(job.into()))
}

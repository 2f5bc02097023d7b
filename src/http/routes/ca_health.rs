//! `GET /v1/admin/health`: the health of every CA, and of each in AWS IoT (admin). Thin: the
//! checks are [`crate::provisioning::Provisioning::health`].

use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminCaller, ViewerCaller};
use crate::http::route;
use crate::provisioning::HealthReport;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "cas";

/// The health of every CA, and of each in AWS IoT
///
/// Per CA: days until its certificate expires (`ca.expiry_warn_days`) and its key strength;
/// per CA and AWS target, asked now: AWS's status and auto-registration beside what factory-ca
/// set, device certificates revoked in the ledger but ACTIVE in AWS at the last sync, and
/// revocations not yet pushed. Each finding has a stable code, a severity and the fix. An AWS
/// failure is a finding (`aws_check_failed`), not an error. Refreshes the metrics gauges.
#[route(
    get,
    path = "/v1/admin/health",
    responses((status = 200, description = "Each CA, its AWS targets and its findings",
        body = HealthReport))
)]
pub async fn ca_health(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<HealthReport>, ApiError> {
    let report = state.health().await?;
    report.record_gauges();
    Ok(Json(report))
}

/// The health of every CA, as the dashboard shows it
///
/// The report of `GET /v1/admin/health` for viewers (the dashboard's session): the last one
/// made (by an admin's request, the background check every 5 minutes, or this route) when it
/// is under a minute old, else a new one. `checked_at` says when the checks ran. Viewers thus
/// cause at most one round of AWS calls a minute.
#[route(
    get,
    path = "/v1/ca/health",
    tag = "ledger",
    responses((status = 200, description = "Each CA, its AWS targets and its findings",
        body = HealthReport))
)]
pub async fn ca_health_for_viewers(
    State(state): State<AppState>,
    _viewer: ViewerCaller,
) -> Result<Json<HealthReport>, ApiError> {
    let report = state.recent_health(crate::app::HEALTH_MAX_AGE).await?;
    report.record_gauges();
    Ok(Json(report))
}

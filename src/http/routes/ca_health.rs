//! `GET /v1/admin/health`: the health of every CA, and of each in AWS IoT (admin). Thin: the
//! checks are [`crate::provisioning::Provisioning::health`].

use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::AdminCaller;
use crate::provisioning::HealthReport;

/// The health of every CA, and of each in AWS IoT
///
/// Per CA: days until its certificate expires (`ca.expiry_warn_days`) and its key strength;
/// per CA and AWS target, asked now: AWS's status and auto-registration beside what factory-ca
/// set, device certificates revoked in the ledger but ACTIVE in AWS at the last sync, and
/// revocations not yet pushed. Each finding has a stable code, a severity and the fix. An AWS
/// failure is a finding (`aws_check_failed`), not an error. Refreshes the metrics gauges.
#[utoipa::path(
    get,
    path = "/v1/admin/health",
    tag = "cas",
    operation_id = "ca_health",
    responses((status = 200, description = "Each CA, its AWS targets and its findings",
        body = HealthReport)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn ca_health(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<HealthReport>, ApiError> {
    let report = state.health().await?;
    report.record_gauges();
    Ok(Json(report))
}

//! `GET /v1/admin/audit`: the audit log, newest first (admin).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::ApiQuery;
use crate::http::extract::{AdminCaller, parse_optional_time};
use crate::http::{page, route};
use crate::store::{AuditFilter, AuditRecord};

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "tokens";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Exactly this actor (a token name, `cli`, `system:first-start`, `system:sync`).
    actor: Option<String>,
    /// Exactly this action, e.g. `token.create`, `ca.aws.register`, `certificate.revoke`.
    action: Option<String>,
    /// Exactly this target.
    target: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// RFC 3339; inclusive.
    since: Option<String>,
    /// RFC 3339; exclusive.
    until: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<i64>,
}

/// The audit log, newest first
#[route(
    get,
    path = "/v1/admin/audit",
    params(AuditParams),
    responses((status = 200, description = "One page of audit records", body = AuditPage))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page::limit(params.limit)?;
    // Any case, as every status the API reads.
    let outcome = params.outcome.map(|o| o.to_ascii_lowercase());
    if let Some(outcome) = &outcome
        && !matches!(outcome.as_str(), "success" | "failure")
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "outcome must be success or failure (any case)",
        ));
    }
    let filter = AuditFilter {
        since: parse_optional_time("since", params.since.as_deref())?,
        until: parse_optional_time("until", params.until.as_deref())?,
        actor: params.actor,
        action: params.action,
        target: params.target,
        outcome,
        before_id: params.cursor,
    };
    let mut items = state.reads.list_audit(&filter, limit + 1).await?;
    let next_cursor = page::next_cursor(&mut items, limit, |r| r.id);
    Ok(Json(AuditPage { items, next_cursor }))
}

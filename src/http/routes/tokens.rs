//! Admin endpoints: API tokens and the audit log. Every change is audited (in
//! [`crate::auth`]), under the admin token's name and the request id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller, RequestId};
use super::reads::parse_time;
use super::rfc3339_string;
use crate::app::AppState;
use crate::auth::{self, Role, TokenError};
use crate::store::{AuditFilter, AuditRecord, Timestamp};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 characters of `a-zA-Z0-9._-`, unique among live tokens.
    name: String,
    #[schema(value_type = super::openapi::schemas::Role)]
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    name: String,
    #[schema(value_type = super::openapi::schemas::Role)]
    role: Role,
    /// The secret, shown this once; only its SHA-256 is stored.
    token: String,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    name: String,
    /// `station`, `viewer` or `admin`.
    role: String,
    created_at: String,
    revoked_at: Option<String>,
    /// `active` or `revoked`.
    status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    items: Vec<TokenView>,
}

/// Create an API token
///
/// The secret is in the answer once; only its SHA-256 is stored. Audited as `token.create`.
#[utoipa::path(
    post,
    path = "/v1/admin/tokens",
    tag = "tokens",
    operation_id = "create_token",
    request_body = NewToken,
    responses((status = 201, description = "Created; `token` is shown this once",
        body = CreatedToken)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    let created_at = Timestamp::now();
    match auth::create_token(
        &state.store,
        &body.name,
        body.role,
        &admin.name,
        Some(&request_id),
    )
    .await
    {
        Ok(secret) => Ok((
            StatusCode::CREATED,
            Json(CreatedToken {
                name: body.name,
                role: body.role,
                token: secret.expose().to_owned(),
                created_at: rfc3339_string(created_at),
            }),
        )
            .into_response()),
        Err(e @ TokenError::InvalidName) => {
            Err(ApiError::unprocessable("invalid_token_name", e.to_string()))
        }
        Err(e @ TokenError::NameTaken(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "token_name_taken",
            e.to_string(),
        )),
        Err(TokenError::Store(e)) => Err(e.into()),
    }
}

/// List tokens (never their secrets)
#[utoipa::path(
    get,
    path = "/v1/admin/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    responses((status = 200, description = "Every token, live and revoked", body = TokenList)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    caller.require(&[Role::Admin])?;
    let items = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(|t| TokenView {
            status: if t.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            name: t.name,
            role: t.role,
            created_at: rfc3339_string(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339_string),
        })
        .collect();
    Ok(Json(TokenList { items }))
}

/// Revoke the live token with this name
///
/// Audited as `token.revoke`.
#[utoipa::path(
    delete,
    path = "/v1/admin/tokens/{name}",
    tag = "tokens",
    operation_id = "revoke_token",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked")),
    security(("bearer_token" = ["admin"]))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let admin = caller.require(&[Role::Admin])?;
    if state
        .tokens
        .revoke(&state.store, &name, &admin.name, Some(&request_id))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "token_not_found",
            format!("no live token named {name:?}"),
        ))
    }
}

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
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "tokens",
    operation_id = "list_audit",
    params(AuditParams),
    responses((status = 200, description = "One page of audit records", body = AuditPage)),
    security(("bearer_token" = ["admin"]))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    if let Some(outcome) = &params.outcome
        && !matches!(outcome.as_str(), "success" | "failure")
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "outcome must be success or failure",
        ));
    }
    let filter = AuditFilter {
        since: params
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        actor: params.actor,
        action: params.action,
        target: params.target,
        outcome: params.outcome,
        before_id: params.cursor,
    };
    let mut items = state.store.list_audit(&filter, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(AuditPage { items, next_cursor }))
}

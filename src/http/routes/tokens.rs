//! `/v1/admin/tokens`: create, list and revoke API tokens (admin). Every change is audited (in
//! [`crate::services::tokens`]) under the admin token's name and the request id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{AdminCaller, ApiJson, ApiPath};
use crate::http::route;
use crate::services::tokens::{self, Role, TokenError};
use crate::store::Timestamp;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "tokens";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 characters of `a-zA-Z0-9._-`, unique among live tokens.
    name: String,
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    name: String,
    role: Role,
    /// The secret, shown this once; only its SHA-256 is stored.
    token: String,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    name: String,
    role: Role,
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
#[route(
    post,
    path = "/v1/admin/tokens",
    request_body = NewToken,
    responses((status = 201, description = "Created; `token` is shown this once",
        body = CreatedToken))
)]
pub async fn create_token(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let created_at = Timestamp::now();
    match tokens::create_token(
        &state.store,
        &body.name,
        body.role,
        &admin.principal.name,
        Some(&admin.request_id),
    )
    .await
    {
        Ok(secret) => Ok((
            StatusCode::CREATED,
            Json(CreatedToken {
                name: body.name,
                role: body.role,
                token: secret.expose().to_owned(),
                created_at: created_at.rfc3339(),
            }),
        )
            .into_response()),
        Err(e @ TokenError::InvalidName) => {
            Err(ApiError::new(ErrorCode::InvalidTokenName, e.to_string()))
        }
        Err(e @ TokenError::NameTaken(_)) => {
            Err(ApiError::new(ErrorCode::TokenNameTaken, e.to_string()))
        }
        Err(TokenError::Store(e)) => Err(e.into()),
    }
}

/// List tokens (never their secrets)
#[route(
    get,
    path = "/v1/admin/tokens",
    responses((status = 200, description = "Every token, live and revoked", body = TokenList))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<TokenList>, ApiError> {
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
            created_at: t.created_at.rfc3339(),
            revoked_at: t.revoked_at.map(Timestamp::rfc3339),
        })
        .collect();
    Ok(Json(TokenList { items }))
}

/// Revoke the live token with this name
///
/// Audited as `token.revoke`.
#[route(
    delete,
    path = "/v1/admin/tokens/{name}",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .tokens
        .revoke(
            &state.store,
            &name,
            &admin.principal.name,
            Some(&admin.request_id),
        )
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::TokenNotFound,
            format!("no live token named {name:?}"),
        ))
    }
}

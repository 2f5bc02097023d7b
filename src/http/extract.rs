//! Request plumbing shared by the handlers: the authenticated caller, the request id, and JSON
//! and query extractors whose rejections use the API's error shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::error_code::ErrorCode;
use crate::app::AppState;
use crate::services::ca_admin::Actor;
use crate::services::tokens::{Principal, Role};
use crate::store::Timestamp;

/// The caller, authenticated by bearer token (or, without an Authorization header, by a
/// verified station client certificate, as role station named by its CN: see [`crate::http::tls`];
/// else by the dashboard's session cookie: see [`super::dashboard`]). Rejects with 401 when the
/// token is missing, unknown or revoked.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            // mTLS: the connection's verified station certificate (a token, when sent, wins).
            match parts.extensions.get::<crate::http::tls::ClientIdentity>() {
                Some(crate::http::tls::ClientIdentity::Station { common_name }) => {
                    return Ok(Caller(Principal {
                        name: common_name.clone(),
                        role: Role::Station,
                    }));
                }
                Some(crate::http::tls::ClientIdentity::Unusable { reason }) => {
                    return Err(ApiError::new(
                        ErrorCode::Unauthorized,
                        format!(
                            "{reason}; or send an API token as 'Authorization: Bearer <token>'"
                        ),
                    ));
                }
                None => {}
            }
            // The dashboard's session cookie: GET/HEAD only, always as a viewer.
            let session =
                super::routes::dashboard::session_principal(&parts.method, &parts.headers, state)
                    .await;
            return match session {
                Ok(principal) => Ok(Caller(principal)),
                Err(e) if e.code == ErrorCode::Unauthorized => {
                    Err(super::messages::without_header(&parts.headers))
                }
                Err(e) => Err(e),
            };
        };
        let token = super::messages::bearer_token(header)?;
        match state.tokens.authenticate(&state.store, token).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(super::messages::rejected_token(token)),
        }
    }
}

/// A caller allowed by the route's roles: each route names one of these types instead of
/// checking roles in its body, so the role check happens before the body is read (a viewer gets
/// 403, not a 400 about the body). Admin passes every check.
macro_rules! role_extractor {
    ($(#[$meta:meta])* $name:ident, [$($role:expr),+], $needed:literal) => {
        $(#[$meta])*
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                let Caller(principal) = Caller::from_request_parts(parts, state).await?;
                Self::allows(principal)
            }
        }

        impl $name {
            /// 403 unless `principal` has one of this caller's roles.
            pub fn allows(principal: Principal) -> Result<Self, ApiError> {
                if principal.role == Role::Admin || [$($role),+].contains(&principal.role) {
                    Ok($name(principal))
                } else {
                    Err(ApiError::forbidden($needed))
                }
            }
        }
    };
}

role_extractor!(
    /// A station (or an admin): may sign.
    StationCaller,
    [Role::Station],
    "station"
);
role_extractor!(
    /// A viewer (or an admin, or the dashboard's session): may read the ledger.
    ViewerCaller,
    [Role::Viewer],
    "viewer"
);
role_extractor!(
    /// Any authenticated caller.
    AnyCaller,
    [Role::Station, Role::Viewer],
    "station or viewer"
);

/// An admin, with the request id: everything an admin route needs to act and to audit.
pub struct AdminCaller {
    pub principal: Principal,
    pub request_id: String,
}

impl AdminCaller {
    /// Who the audit records name for this request's actions.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            name: &self.principal.name,
            request_id: Some(&self.request_id),
        }
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        if principal.role != Role::Admin {
            return Err(ApiError::forbidden("admin"));
        }
        let Ok(RequestId(request_id)) = RequestId::from_request_parts(parts, state).await;
        Ok(AdminCaller {
            principal,
            request_id,
        })
    }
}

/// The request id: the client's `x-request-id` when it is short visible ASCII, else a new
/// UUID. Set by [`request_id_middleware`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string())))
    }
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request this task serves (set by [`request_id_middleware`]).
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being served, when called within [`request_id_middleware`]: error
/// bodies carry it.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Assigns the request id, records it on the request span, and echoes it in the response.
pub async fn request_id_middleware(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tracing::Span::current().record("request_id", id.as_str());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = CURRENT_REQUEST_ID
        .scope(id.clone(), next.run(request))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `Json<T>` whose rejections are API errors (400 invalid_request, 415, 413).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type("application/json"),
        JsonRejection::BytesRejection(_) => payload_too_large(),
        other => ApiError::new(
            ErrorCode::InvalidRequest,
            super::messages::plain_json_error(&other.body_text()),
        ),
    }
}

pub fn unsupported_media_type(expected: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("send the body as {expected}"),
    )
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "the request body is larger than this service accepts (server.body_limit_bytes)",
    )
}

/// `Query<T>` whose rejection is 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, rejection.body_text())
}

/// An RFC 3339 query parameter named `name`.
pub fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(Timestamp::new)
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z"),
            )
        })
}

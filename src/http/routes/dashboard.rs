//! The built-in dashboard: its page and assets (embedded in the binary, no CDN, no build step)
//! and the session routes that sign a browser in with a viewer token.
//!
//! Signing in makes a server-side session ([`crate::services::sessions`]); the cookie holds its
//! random id, never the token, `HttpOnly; Secure; SameSite=Strict`, so scripts cannot read it
//! and other sites cannot send it. It authenticates only GET and HEAD requests, and always as a
//! `viewer` (see [`session_principal`]): the cookie cannot change anything, so a forged
//! cross-site request gains nothing. The session is looked up on every request, so signing out,
//! revoking the token or the expiry ends it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{ApiJson, PeerAddr, ServerRequestId};
use crate::http::route;
use crate::services::audit::Actor;
use crate::services::sessions;
use crate::services::sign_in::SignInGuard;
use crate::services::tokens::{self, Principal, Role};
use crate::store::Timestamp;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "dashboard";

const INDEX_HTML: &str = include_str!("../../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../../assets/dashboard/app.css");
const FAVICON_SVG: &str = include_str!("../../../assets/dashboard/favicon.svg");

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "fca_session";
/// A dashboard session lasts a shift: 8 hours (the cookie's Max-Age; the server's expiry is
/// [`sessions::SESSION_LIFETIME`]).
pub const SESSION_MAX_AGE_SECS: u32 = 8 * 60 * 60;

/// Scripts, styles and data from this origin only; no inline script or style, no framing, no
/// plug-ins, forms post only here. `data:` images are allowed for the favicon and charts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `GET /`: the dashboard page. It shows a sign-in form until there is a session.
#[route(get, path = "/", operation_id = "dashboard_page",
    security(()), responses(
    (status = 200, description = "The dashboard page (no token: it signs in itself)",
     body = String, content_type = "text/html")
))]
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8", "no-store")
}

/// `GET /dashboard/app.js`.
#[route(get, path = "/dashboard/app.js",
    operation_id = "dashboard_script", security(()), responses(
    (status = 200, description = "The dashboard's script", body = String,
     content_type = "text/javascript")
))]
pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", "no-cache")
}

/// `GET /dashboard/app.css`.
#[route(get, path = "/dashboard/app.css",
    operation_id = "dashboard_stylesheet", security(()), responses(
    (status = 200, description = "The dashboard's style sheet", body = String,
     content_type = "text/css")
))]
pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", "no-cache")
}

/// `GET /dashboard/favicon.svg`.
#[route(get, path = "/dashboard/favicon.svg",
    operation_id = "dashboard_icon", security(()), responses(
    (status = 200, description = "The dashboard's icon", body = String,
     content_type = "image/svg+xml")
))]
pub async fn favicon() -> Response {
    asset(FAVICON_SVG, "image/svg+xml", "no-cache")
}

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    insert_security_headers(headers);
    response
}

/// The security headers of every dashboard response.
fn insert_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// The body of `POST /v1/session`. No `Debug`: it holds a secret.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// A viewer or admin token, `fca_...`.
    token: String,
}

/// Who is signed in to the dashboard.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The token's name.
    name: String,
    /// Always `viewer`: only viewer tokens sign in, and the dashboard is read-only.
    role: &'static str,
}

/// `POST /v1/session`: signs the browser in with a viewer token (204 and the session cookie,
/// which holds a new session id, not the token). Station and admin tokens get 403, unknown or
/// revoked tokens 401, too many attempts 429. Audited as `session.create` under the token's
/// name, never with the token; failures at most once a minute per token name.
#[route(post, path = "/v1/session", operation_id = "create_session",
    request_body = SignIn, security(()), responses(
    (status = 204, description = "Signed in; `Set-Cookie: fca_session=<session id>; HttpOnly; \
     Secure; SameSite=Strict; Path=/; Max-Age=28800`"),
    (status = 400, description = "invalid_request: the body is not `{\"token\": \"...\"}`"),
    (status = 401, description = "unauthorized: unknown or revoked token"),
    (status = 403, description = "forbidden: a station or admin token"),
    (status = 415, description = "unsupported_media_type: the body is not JSON"),
    (status = 429, description = "rate_limited: too many sign-ins from this address or with \
     this token; see Retry-After"),
))]
pub async fn sign_in(
    State(state): State<AppState>,
    ServerRequestId(request_id): ServerRequestId,
    PeerAddr(source): PeerAddr,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let token = body.token.trim();
    let token_hash = tokens::token_hash(token);
    let now = std::time::Instant::now();
    if let Err(wait) = state.sign_in.check(source, &token_hash, now) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many sign-ins from this address or with this token (at most {} failures \
                 a token and {} an address a minute); retry after the Retry-After delay",
                SignInGuard::FAILURES_PER_TOKEN,
                SignInGuard::FAILURES_PER_SOURCE
            ),
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64));
    }
    let Some(principal) = tokens::authenticate(&state.store, token).await? else {
        // Not audited: there is no actor, and anyone could fill the log.
        state.sign_in.failed(source, &token_hash, now);
        tracing::info!("dashboard sign-in refused: unknown or revoked token");
        return Err(ApiError::unauthorized_because(
            "this token is unknown or has been revoked",
        ));
    };
    // Only viewer tokens: an admin token's session would be an admin credential in a browser
    // profile, and a station has nothing to read.
    let refused = principal.role != Role::Viewer;
    let detail = match principal.role {
        Role::Station => "station tokens cannot sign in to the dashboard",
        Role::Viewer => "role=viewer",
        Role::Admin => "admin tokens cannot sign in to the dashboard; use a viewer token",
    };
    let actor = Actor {
        name: &principal.name,
        request_id: Some(&request_id),
    };
    if refused {
        state.sign_in.failed(source, &token_hash, now);
        // One failure record per actor and minute; the next says how many it stands for.
        if let Some(collapsed) = state.sign_in.audit_failure(&principal.name, now) {
            let detail = match collapsed {
                0 => detail.to_owned(),
                n => format!("{detail}; {n} more refusals since the previous record"),
            };
            actor
                .record(&state.store, "session.create", None, false, Some(&detail))
                .await?;
        }
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this is {} token; sign in to the dashboard with a viewer token (station and \
                 admin tokens do not belong in a browser)",
                if principal.role == Role::Admin {
                    "an admin"
                } else {
                    "a station"
                }
            ),
        ));
    }
    state.sign_in.succeeded(&token_hash, now);
    let Some(session) = sessions::start(&state.store, token, Timestamp::now()).await? else {
        // Revoked between the lookup and now.
        return Err(ApiError::unauthorized());
    };
    actor
        .record(&state.store, "session.create", None, true, Some(detail))
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/; \
         Max-Age={SESSION_MAX_AGE_SECS}",
        session.expose()
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::internal("session cookie is not a valid header value"))?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /v1/session`: signs out: deletes the session on the server (a copy of the cookie
/// stops working too) and clears the cookie. Always 204; audited as `session.delete` when the
/// session was live.
#[route(delete, path = "/v1/session",
    operation_id = "delete_session", security(()), responses(
    (status = 204, description = "Signed out; the session is deleted and the cookie cleared")
))]
pub async fn sign_out(
    State(state): State<AppState>,
    ServerRequestId(request_id): ServerRequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session) = session_token(&headers)
        && let Some(principal) = sessions::end(&state.store, session, Timestamp::now()).await?
    {
        Actor {
            name: &principal.name,
            request_id: Some(&request_id),
        }
        .record(&state.store, "session.delete", None, true, None)
        .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "fca_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(response)
}

/// `GET /v1/session`: who is signed in to the dashboard (always as a viewer); 401 without a
/// live session. Only the cookie counts here, not an Authorization header.
#[route(get, path = "/v1/session", operation_id = "get_session",
    security(("session_cookie" = ["viewer"])), responses(
    (status = 200, description = "The session", body = SessionView),
    (status = 401, description = "unauthorized: no session, or its token was revoked"),
))]
pub async fn session_info(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let principal = session_principal(&method, &headers, &state).await?;
    Ok(Json(SessionView {
        name: principal.name,
        role: Role::Viewer.as_str(),
    }))
}

/// The caller named by the session cookie, for a request without an Authorization header.
/// Only GET and HEAD requests are authenticated this way, only a live session of a live viewer
/// token counts, and the role is always `viewer`.
pub async fn session_principal(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Principal, ApiError> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::unauthorized());
    }
    let session = session_token(headers).ok_or_else(ApiError::unauthorized)?;
    sessions::principal(&state.store, session, Timestamp::now())
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The value of the one `fca_session` cookie (RFC 6265 section 4.2.1 `cookie-string`s, in
/// one or more Cookie headers). `None` when there is none, when there are several (another
/// path or a sibling domain set one too: ambiguous), or when the value cannot be a session id.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if &pair[..eq] != SESSION_COOKIE.as_bytes() {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(&pair[eq + 1..]);
        }
    }
    let value = found?;
    if sessions::has_session_shape(value) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "fcs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn cookies(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let line = format!("theme=dark; fca_session={TOKEN};other=1");
        assert_eq!(session_token(&cookies(&[line.as_bytes()])), Some(TOKEN));
        let split = cookies(&[b"a=1", format!("fca_session={TOKEN}").as_bytes()]);
        assert_eq!(session_token(&split), Some(TOKEN));
    }

    #[test]
    fn other_sites_cookies_with_non_ascii_bytes_do_not_hide_the_session() {
        let line = [b"x=\xc3\xa9; fca_session=".as_slice(), TOKEN.as_bytes()].concat();
        assert_eq!(session_token(&cookies(&[&line])), Some(TOKEN));
    }

    #[test]
    fn refuses_missing_ambiguous_and_malformed_session_cookies() {
        assert_eq!(session_token(&HeaderMap::new()), None);
        assert_eq!(session_token(&cookies(&[b"fca_sessionx=1; a=b"])), None);
        let twice = format!("fca_session={TOKEN}; fca_session={TOKEN}");
        assert_eq!(session_token(&cookies(&[twice.as_bytes()])), None);
        let quoted = format!("fca_session=\"{TOKEN}\"");
        assert_eq!(session_token(&cookies(&[quoted.as_bytes()])), None);
        assert_eq!(session_token(&cookies(&[b"fca_session="])), None);
        let long = format!("fca_session={TOKEN}A");
        assert_eq!(session_token(&cookies(&[long.as_bytes()])), None);
        let bad_char = format!("fca_session={}.", &TOKEN[..46]);
        assert_eq!(session_token(&cookies(&[bad_char.as_bytes()])), None);
    }

    #[test]
    fn the_policy_forbids_inline_script_framing_and_foreign_origins() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn assets_do_not_load_anything_from_elsewhere_or_use_inner_html() {
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") || text.contains("http://www.w3.org/2000/svg"));
            assert!(!text.contains("https://"));
        }
        assert!(!APP_JS.contains("innerHTML"));
        assert!(!APP_JS.contains("outerHTML"));
        assert!(!APP_JS.contains("insertAdjacentHTML"));
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
    }
}

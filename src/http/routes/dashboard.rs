//! The built-in dashboard: its page and assets (embedded in the binary, no CDN, no build step)
//! and the session routes that sign a browser in with a viewer token held in a cookie.
//!
//! The cookie is the token itself, `HttpOnly; Secure; SameSite=Strict`, so scripts cannot read
//! it and other sites cannot send it. It authenticates only GET and HEAD requests, and always
//! as a `viewer` (see [`session_principal`]): the cookie cannot change anything, so a forged
//! cross-site request gains nothing, and an admin token signed into the dashboard is only a
//! viewer there. The token is looked up on every request, so revoking it ends the session.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::error_code::ErrorCode;
use crate::http::extract::{ApiJson, RequestId};
use crate::services::audit::Actor;
use crate::services::tokens::{self, Principal, Role};

const INDEX_HTML: &str = include_str!("../../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../../assets/dashboard/app.css");
const FAVICON_SVG: &str = include_str!("../../../assets/dashboard/favicon.svg");

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "fca_session";
/// A dashboard session lasts a shift: 8 hours.
pub const SESSION_MAX_AGE_SECS: u32 = 8 * 60 * 60;

/// Scripts, styles and data from this origin only; no inline script or style, no framing, no
/// plug-ins, forms post only here. `data:` images are allowed for the favicon and charts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `GET /`: the dashboard page. It shows a sign-in form until there is a session.
#[utoipa::path(get, path = "/", tag = "dashboard", operation_id = "dashboard_page",
    security(()), responses(
    (status = 200, description = "The dashboard page (no token: it signs in itself)",
     body = String, content_type = "text/html")
))]
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8", "no-store")
}

/// `GET /dashboard/app.js`.
#[utoipa::path(get, path = "/dashboard/app.js", tag = "dashboard",
    operation_id = "dashboard_script", security(()), responses(
    (status = 200, description = "The dashboard's script", body = String,
     content_type = "text/javascript")
))]
pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", "no-cache")
}

/// `GET /dashboard/app.css`.
#[utoipa::path(get, path = "/dashboard/app.css", tag = "dashboard",
    operation_id = "dashboard_stylesheet", security(()), responses(
    (status = 200, description = "The dashboard's style sheet", body = String,
     content_type = "text/css")
))]
pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", "no-cache")
}

/// `GET /dashboard/favicon.svg`.
#[utoipa::path(get, path = "/dashboard/favicon.svg", tag = "dashboard",
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

/// `POST /v1/session`: signs the browser in with a viewer token (204 and the session cookie).
/// Station and admin tokens get 403, unknown or revoked tokens 401. Audited as
/// `session.create` under the token's name, never with the token.
#[utoipa::path(post, path = "/v1/session", tag = "dashboard", operation_id = "create_session",
    request_body = SignIn, security(()), responses(
    (status = 204, description = "Signed in; `Set-Cookie: fca_session=...; HttpOnly; Secure; \
     SameSite=Strict; Path=/; Max-Age=28800`"),
    (status = 400, description = "invalid_request: the body is not `{\"token\": \"...\"}`"),
    (status = 401, description = "unauthorized: unknown or revoked token"),
    (status = 403, description = "forbidden: a station or admin token"),
    (status = 415, description = "unsupported_media_type: the body is not JSON"),
))]
pub async fn sign_in(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let token = body.token.trim();
    let Some(principal) = tokens::authenticate(&state.store, token).await? else {
        // Not audited: there is no actor, and anyone could fill the log.
        tracing::info!("dashboard sign-in refused: unknown or revoked token");
        return Err(ApiError::unauthorized_because(
            "this token is unknown or has been revoked",
        ));
    };
    // Only viewer tokens: the cookie holds the token itself, and an admin token kept in a
    // browser profile would be an admin credential there.
    let refused = principal.role != Role::Viewer;
    let detail = match principal.role {
        Role::Station => "station tokens cannot sign in to the dashboard",
        Role::Viewer => "role=viewer",
        Role::Admin => "admin tokens cannot sign in to the dashboard; use a viewer token",
    };
    Actor {
        name: &principal.name,
        request_id: Some(&request_id),
    }
    .record(&state.store, "session.create", None, !refused, Some(detail))
    .await?;
    if refused {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this is {} token; sign in to the dashboard with a viewer token (the browser \
                 keeps it in a cookie; station and admin tokens do not belong there)",
                if principal.role == Role::Admin {
                    "an admin"
                } else {
                    "a station"
                }
            ),
        ));
    }
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; \
         Max-Age={SESSION_MAX_AGE_SECS}"
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::internal("session cookie is not a valid header value"))?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /v1/session`: signs out (clears the cookie). Always 204; audited as
/// `session.delete` when the cookie held a live token.
#[utoipa::path(delete, path = "/v1/session", tag = "dashboard",
    operation_id = "delete_session", security(()), responses(
    (status = 204, description = "Signed out; the cookie is cleared")
))]
pub async fn sign_out(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers)
        && let Some(principal) = tokens::authenticate(&state.store, token).await?
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
#[utoipa::path(get, path = "/v1/session", tag = "dashboard", operation_id = "get_session",
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
/// Only GET and HEAD requests are authenticated this way, a station token in the cookie is
/// refused (the cookie is for people, and a station has no viewer rights), and the role is
/// always `viewer`.
pub async fn session_principal(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Principal, ApiError> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::unauthorized());
    }
    let token = session_token(headers).ok_or_else(ApiError::unauthorized)?;
    match tokens::authenticate(&state.store, token).await? {
        Some(principal) if principal.role == Role::Viewer => Ok(principal),
        _ => Err(ApiError::unauthorized()),
    }
}

/// The value of the one `fca_session` cookie (RFC 6265 section 4.2.1 `cookie-string`s, in
/// one or more Cookie headers). `None` when there is none, when there are several (another
/// path or a sibling domain set one too: ambiguous), or when the value cannot be a token.
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
    let token_shaped = value.len() == 47
        && value.starts_with(b"fca_")
        && value[4..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if token_shaped {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "fca_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

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

//! Request plumbing shared by the handlers: the authenticated caller, the request id, and JSON
//! and query extractors whose rejections use the API's error shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
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
        let mut authorizations = parts.headers.get_all(header::AUTHORIZATION).iter();
        let first = authorizations.next();
        if authorizations.next().is_some() {
            // "First wins" would let a proxy and the service disagree on who is calling.
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "send exactly one Authorization header ('Authorization: Bearer <token>')",
            ));
        }
        let Some(header) = first else {
            // mTLS: the connection's verified station certificate (a token, when sent, wins).
            match parts.extensions.get::<crate::http::tls::ClientIdentity>() {
                Some(crate::http::tls::ClientIdentity::Station { common_name }) => {
                    return Ok(Caller(Principal {
                        name: certificate_station_name(common_name),
                        role: Role::Station,
                    }));
                }
                Some(crate::http::tls::ClientIdentity::Device { .. }) => {
                    // The router refuses these before any route (`est::device_certificate_refusal`).
                    return Err(ApiError::new(
                        ErrorCode::DeviceCertificateNotAllowed,
                        "a device certificate authenticates only for EST simplereenroll",
                    ));
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
            /// Whether this caller's roles include `role`.
            pub fn admits(role: Role) -> bool {
                role == Role::Admin || [$($role),+].contains(&role)
            }

            /// 403 unless `principal` has one of this caller's roles.
            pub fn allows(principal: Principal) -> Result<Self, ApiError> {
                if Self::admits(principal.role) {
                    Ok($name(principal))
                } else {
                    Err(ApiError::forbidden($needed))
                }
            }
        }
    };
}

/// What a station named by its client certificate's CN is called: `cert:<CN>`. Token names
/// cannot hold `:`, so a certificate with `CN=bootstrap-admin` is station
/// `cert:bootstrap-admin`, never the token `bootstrap-admin`: the two kinds of names are
/// separate namespaces in the ledger, in `Idempotency-Key` scopes and in the rate limits.
pub fn certificate_station_name(common_name: &str) -> String {
    format!("{CERTIFICATE_STATION_PREFIX}{common_name}")
}

/// The prefix of station names that come from client certificates.
pub const CERTIFICATE_STATION_PREFIX: &str = "cert:";

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
    /// The service's own id of this request ([`ServerRequestId`]): what the audit records.
    pub request_id: String,
}

impl AdminCaller {
    /// Whether `role` is admin's.
    pub fn admits(role: Role) -> bool {
        role == Role::Admin
    }

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
        if !Self::admits(principal.role) {
            return Err(ApiError::forbidden("admin"));
        }
        let Ok(ServerRequestId(request_id)) =
            ServerRequestId::from_request_parts(parts, state).await;
        Ok(AdminCaller {
            principal,
            request_id,
        })
    }
}

/// An id that [`assign_request_id`] puts in the request's extensions (a new UUID for a
/// request that did not pass through it).
macro_rules! request_id_extractor {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name(pub String);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = std::convert::Infallible;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
                Ok(parts
                    .extensions
                    .get::<$name>()
                    .cloned()
                    .unwrap_or_else(|| $name(uuid::Uuid::new_v4().to_string())))
            }
        }
    };
}

request_id_extractor!(
    /// The request id: the client's `x-request-id` when [`is_safe_request_id`], else a new
    /// UUID. Set by [`assign_request_id`].
    RequestId
);
request_id_extractor!(
    /// The service's own id of the request: a UUID it generated, whatever the client sent. The
    /// audit log records this one, never a client-chosen id; the request's log lines carry it
    /// as `server_request_id` when the client chose the `request_id`.
    ServerRequestId
);

/// The address of the peer, when the server knows it (always, over plain HTTP and HTTPS;
/// not for requests handed to the router in process).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request this task serves (set by [`with_request_id`]).
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being served, when called within [`with_request_id`]: error
/// bodies carry it.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Whether a client's `x-request-id` is kept: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`,
/// starting with a letter or digit. The id is stored in ledger rows and exported as CSV, so it
/// must never be something a spreadsheet evaluates (`=HYPERLINK(...)`, `@SUM(...)`, `-2+3`),
/// and it appears in logs, so no spaces, quotes or control characters either.
pub fn is_safe_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Assigns the request's ids ([`RequestId`], [`ServerRequestId`]) as extensions, records them on
/// the request span, and returns the id to echo in the response. Called by the router's edge
/// layer (`crate::http::edge`) for every request, before anything else looks at it.
pub(crate) fn assign_request_id(request: &mut Request) -> String {
    // A version-4 UUID from the thread's generator: `Uuid::new_v4` asks the kernel for its 16
    // bytes, a system call per request.
    let server_id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string();
    let client_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_safe_request_id(v))
        .map(str::to_owned);
    let span = tracing::Span::current();
    if client_id.is_some() {
        span.record("server_request_id", server_id.as_str());
    }
    let id = client_id.unwrap_or_else(|| server_id.clone());
    span.record("request_id", id.as_str());
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(ServerRequestId(server_id));
    id
}

/// Runs `serve` with `id` as the [`current_request_id`] (error bodies carry it).
pub(crate) async fn with_request_id<F: std::future::Future>(id: String, serve: F) -> F::Output {
    CURRENT_REQUEST_ID.scope(id, serve).await
}

/// Echoes the request id in the response's `x-request-id`.
pub(crate) fn echo_request_id(response: &mut Response, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
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

/// Whether `text` holds a control character: C0 (NUL to US), DEL or C1. No path segment or
/// query value of this API may hold one (PostgreSQL refuses NUL outright), so they are
/// refused by the extractors, before any handler or the database sees them.
pub fn has_control_character(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Percent-decodes `raw` (and `+` as a space when `plus_is_space`), lossily as UTF-8.
fn percent_decode(raw: &str, plus_is_space: bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Path<T>` whose rejections are API errors, and which refuses a path holding a control
/// character (`/v1/cas/%00/crl`) with 404 before the handler runs.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if has_control_character(&percent_decode(parts.uri.path(), false)) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such resource: path segments must not contain control characters",
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no such resource: {}", rejection.body_text()),
            )),
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
        for pair in parts.uri.query().unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (percent_decode(name, true), percent_decode(value, true));
            if has_control_character(&name) || has_control_character(&value) {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!(
                        "query parameter {:?} must not contain control characters (NUL, \
                         line breaks, tabs, ...)",
                        name.chars().filter(|c| !c.is_control()).collect::<String>()
                    ),
                ));
            }
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, rejection.body_text())
}

/// An optional RFC 3339 query parameter: `None` when it is absent, else as [`parse_time`].
pub fn parse_optional_time(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value.map(|value| parse_time(name, value)).transpose()
}

/// An RFC 3339 query parameter named `name`, between years 1 and 9999 once converted to UTC
/// (the range is checked after the conversion: `9999-12-31T23:59:59-23:59` is in year 10000).
pub fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    let parsed = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z"),
        )
    })?;
    Timestamp::checked(parsed).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("{name} must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_extractors_admit_exactly_the_roles_their_routes_document() {
        // `#[route]` states a handler's roles from its extractor's name (macros/src/lib.rs);
        // here each extractor's runtime check is held to that statement.
        use factory_ca_macros::documented_roles;
        for role in [Role::Station, Role::Viewer, Role::Admin] {
            let name = &role.as_str();
            let cases = [
                (
                    AdminCaller::admits(role),
                    documented_roles!(AdminCaller).contains(name),
                ),
                (
                    ViewerCaller::admits(role),
                    documented_roles!(ViewerCaller).contains(name),
                ),
                (
                    StationCaller::admits(role),
                    documented_roles!(StationCaller).contains(name),
                ),
                (
                    AnyCaller::admits(role),
                    documented_roles!(AnyCaller).contains(name),
                ),
            ];
            for (n, (admitted, documented)) in cases.into_iter().enumerate() {
                assert_eq!(admitted, documented, "extractor {n}, role {name}");
            }
        }
    }

    #[test]
    fn client_request_ids_are_kept_only_in_a_safe_alphabet() {
        for kept in [
            "line-7-req-42",
            "0b6f3c1e-8d2a-4b8e-9f0e-3c2d1a0b9e8f",
            "a",
            "x.y_z:1",
        ] {
            assert!(is_safe_request_id(kept), "{kept}");
        }
        let long = "a".repeat(129);
        for refused in [
            "",
            "=HYPERLINK(\"http://evil.example\")",
            "-2+3",
            "+1",
            "@SUM(A1)",
            "a b",
            "a,b",
            "a\"b",
            "cmd|' /C calc'!A0",
            long.as_str(),
        ] {
            assert!(!is_safe_request_id(refused), "{refused}");
        }
    }

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(percent_decode("a%00b", false), "a\0b");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%e2%80%a8", false), "\u{2028}");
        assert!(has_control_character(&percent_decode("%c2%85", false)));
        assert!(has_control_character(&percent_decode("%7F", false)));
        assert!(!has_control_character(&percent_decode("line-1%20x", false)));
    }

    /// Every Rust file under src/http/routes, in its folders too.
    fn route_sources() -> Vec<std::path::PathBuf> {
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/http/routes"
        ))];
        let mut files = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "the route files are found: {files:?}");
        files
    }

    #[test]
    fn handlers_are_declared_with_route_so_their_roles_come_from_their_extractor() {
        // A bare `#[utoipa::path]` would let the documented roles and the extractor differ.
        let mut files = route_sources();
        files.push(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.rs").into());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                assert!(
                    !line.trim_start().starts_with("#[utoipa::path"),
                    "{}:{}: declare the handler with #[route(...)]",
                    path.display(),
                    n + 1
                );
            }
        }
    }

    #[test]
    fn handlers_take_paths_and_queries_only_through_the_checking_extractors() {
        for path in route_sources() {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") || line.starts_with("params(") {
                    continue;
                }
                for bare in ["extract::Path", "extract::Query", ": Path<", ": Query<"] {
                    assert!(
                        !line.contains(bare),
                        "{}:{}: use ApiPath/ApiQuery, which refuse control characters: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

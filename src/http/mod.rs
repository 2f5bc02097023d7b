//! The HTTP API: thin handlers per audience, the router and its layers.

pub mod error;
pub mod error_code;
pub mod est_wire;
pub mod extract;
pub(crate) mod messages;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod tls;

/// `#[route(...)]` over a handler: its OpenAPI operation, with the roles taken from its role
/// extractor and the tag from its module's `TAG` (see `macros/src/lib.rs`).
pub use factory_ca_macros::route;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use error::ApiError;
use error_code::ErrorCode;
use routes::{
    audit, aws, ca, ca_health, cas, certificate_provider, certificates, dashboard, est, health,
    ledger, metrics, revocation, revocation_jobs, stats, tokens,
};

/// Every route of the API, each with its OpenAPI operation: this is the route table and the
/// source of `/openapi.json` at once, so the two cannot drift apart. Register a route here, and
/// only as `.routes(routes!(handler, ...))` with handlers of one path that carry
/// `#[route(...)]` (which writes their `#[utoipa::path]`). A route added with `.route(...)`, `.nest(...)` or `.merge(...)` of a plain
/// `Router` would be served without being documented; `tests/routes/openapi.rs` refuses that form.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(certificates::sign, certificates::list_certificates))
        .routes(routes!(certificates::export_certificates_csv))
        .routes(routes!(stats::stats))
        .routes(routes!(metrics::metrics))
        .routes(routes!(certificates::get_certificate))
        .routes(routes!(ca::issuing_ca))
        .routes(routes!(ca::issuing_ca_pem))
        .routes(routes!(ledger::audit_key_pem))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(cas::list, cas::create))
        .routes(routes!(cas::import))
        .routes(routes!(cas::get))
        .routes(routes!(cas::activate))
        .routes(routes!(aws::issuing_ca_drift))
        .routes(routes!(aws::aws_state, aws::change_status, aws::deregister))
        .routes(routes!(aws::preflight))
        .routes(routes!(aws::register))
        .routes(routes!(aws::attach_template))
        .routes(routes!(aws::preview))
        .routes(routes!(aws::sync))
        .routes(routes!(ca_health::ca_health))
        .routes(routes!(ca_health::ca_health_for_viewers))
        .routes(routes!(certificate_provider::create))
        .routes(routes!(
            certificate_provider::describe,
            certificate_provider::delete
        ))
        .routes(routes!(aws::registration_config))
        .routes(routes!(revocation::revoke_certificate))
        .routes(routes!(revocation::crl))
        .routes(routes!(revocation::delta_crl))
        .routes(routes!(revocation_jobs::create))
        .routes(routes!(revocation_jobs::get))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(est::cacerts))
        .routes(routes!(est::simpleenroll))
        .routes(routes!(est::simplereenroll))
        .routes(routes!(est::csrattrs))
        .routes(routes!(est::cacerts_labelled))
        .routes(routes!(est::simpleenroll_labelled))
        .routes(routes!(est::simplereenroll_labelled))
        .routes(routes!(est::csrattrs_labelled))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::app_js))
        .routes(routes!(dashboard::app_css))
        .routes(routes!(dashboard::favicon))
        .routes(routes!(
            dashboard::sign_in,
            dashboard::sign_out,
            dashboard::session_info
        ))
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.server.body_limit_bytes;
    let timeout = state.settings.server.request_timeout_secs;
    let in_flight = Arc::new(Semaphore::new(
        state.settings.server.max_concurrent_requests,
    ));
    let store_health = state.store_health.clone();
    let https = state.settings.server.tls.enabled();
    let (routes, _openapi) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(est::device_certificate_gate))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            request_deadline(timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            fail_fast(store_health.clone(), request, next)
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            shed_load(in_flight.clone(), request, next)
        }))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(extract::request_id_middleware))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = tracing::field::Empty,
                    server_request_id = tracing::field::Empty,
                )
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(axum::middleware::from_fn(no_sniff))
        .layer(axum::middleware::from_fn(move |request, next| {
            strict_transport_security(https, request, next)
        }))
}

/// `Strict-Transport-Security` on every response when the service serves HTTPS itself: a
/// browser that reached the dashboard over HTTPS never falls back to plain HTTP for this host
/// (and a station library that honours it neither). One year; subdomains are not included,
/// they may be other services.
async fn strict_transport_security(
    https: bool,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// `X-Content-Type-Options: nosniff` on every response: a browser must not guess that a JSON
/// body holding attacker-chosen thing names is HTML or script.
async fn no_sniff(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Answers 503 `request_timeout` when a request runs past `server.request_timeout_secs`. The
/// handler's future is dropped, which rolls back an uncommitted ledger transaction.
async fn request_deadline(
    timeout: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::new(
            ErrorCode::RequestTimeout,
            "the request took longer than this service allows; retry (with the same \
             Idempotency-Key)",
        )),
    }
}

/// Load shedding: at most `server.max_concurrent_requests` requests are served at once; the
/// rest get 503 `overloaded` with Retry-After at once instead of waiting in an unbounded
/// queue. Health checks are exempt so that an overloaded replica is not also declared dead.
async fn shed_load(
    in_flight: Arc<Semaphore>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    match in_flight.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => axum::response::IntoResponse::into_response(
            ApiError::new(
                ErrorCode::Overloaded,
                "the service is at its concurrency limit (server.max_concurrent_requests); retry shortly",
            )
            .with_retry_after(1),
        ),
    }
}

/// While the background probe finds the database unreachable, API requests (which all read or
/// write the store, but for the CA certificate) get 503 `store_unavailable` with Retry-After at once instead of each
/// waiting for the pool's connect timeout. A request that fails on the store wakes the probe.
async fn fail_fast(
    health: Arc<crate::services::store_health::StoreHealth>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    // The CA certificate is served from memory.
    let needs_store = path.starts_with("/v1/") && path != "/v1/ca.pem";
    if needs_store && !health.is_reachable() {
        return axum::response::IntoResponse::into_response(
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the certificate ledger is unreachable; nothing was issued, retry after the \
                 Retry-After delay",
            )
            .with_retry_after(1),
        );
    }
    let response = next.run(request).await;
    if response.extensions().get::<error::StoreFailed>().is_some() {
        health.suspect();
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route; the routes are listed at /openapi.json and in docs/api.md",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not support this method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tokio::sync::{Notify, oneshot};
    use tower::ServiceExt;

    #[tokio::test]
    async fn hsts_is_sent_only_when_the_service_serves_https() {
        for https in [true, false] {
            let router = Router::new()
                .route("/", get(|| async { "ok" }))
                .fallback(not_found)
                .layer(axum::middleware::from_fn(move |request, next| {
                    strict_transport_security(https, request, next)
                }));
            for path in ["/", "/nope"] {
                let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let hsts = response.headers().get(header::STRICT_TRANSPORT_SECURITY);
                if https {
                    assert_eq!(hsts.unwrap(), "max-age=31536000", "{path}");
                } else {
                    assert!(hsts.is_none(), "{path}");
                }
            }
        }
    }

    #[tokio::test]
    async fn sheds_requests_beyond_the_concurrency_limit_but_not_health_checks() {
        let release = Arc::new(Notify::new());
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let in_flight = Arc::new(Semaphore::new(1));
        let router = Router::new()
            .route(
                "/slow",
                get({
                    let release = release.clone();
                    move || async move {
                        if let Some(tx) = entered_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(move |request, next| {
                shed_load(in_flight.clone(), request, next)
            }));
        let request = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();

        let first = tokio::spawn(router.clone().oneshot(request("/slow")));
        entered_rx.await.unwrap();
        let shed = router.clone().oneshot(request("/slow")).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(shed.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("\"code\":\"overloaded\""));
        let health = router.clone().oneshot(request("/healthz")).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let after = router.oneshot(request("/healthz")).await.unwrap();
        assert_eq!(after.status(), StatusCode::OK);
    }
}

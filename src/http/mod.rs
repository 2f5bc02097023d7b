//! The HTTP API: thin handlers per audience, the router and its layers.

pub mod error;
pub mod error_code;
pub mod est_wire;
pub mod extract;
pub(crate) mod messages;
pub mod openapi;
pub mod page;
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
        .routes(routes!(certificates::export::export_certificates_csv))
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
        .routes(routes!(aws::sync, aws::sync_progress))
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
    let edge_state = Arc::new(Edge {
        https: state.settings.server.tls.enabled(),
        timeout: state.settings.server.request_timeout_secs,
        in_flight: Arc::new(Semaphore::new(
            state.settings.server.max_concurrent_requests,
        )),
        store_health: Some(state.store_health.clone()),
        request_metrics: routes::metrics::RequestMetrics::default(),
    });
    let (routes, _openapi) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(edge_state, edge))
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
}

/// What the edge layer needs, made once per router.
struct Edge {
    /// Whether the service serves HTTPS itself (`Strict-Transport-Security`).
    https: bool,
    /// `server.request_timeout_secs`.
    timeout: Duration,
    /// `server.max_concurrent_requests` permits.
    in_flight: Arc<Semaphore>,
    /// The background probe's view of the database; `None` in tests of the other steps.
    store_health: Option<Arc<crate::services::store_health::StoreHealth>>,
    /// The request metrics' handles.
    request_metrics: routes::metrics::RequestMetrics,
}

/// Everything the service does around every request, in one layer inside the request's trace
/// span, in this order:
///
/// 1. request ids: assigned, recorded on the span, in scope for error bodies, echoed in the
///    response ([`extract::assign_request_id`]);
/// 2. metrics: the request counted and timed under its route template, whatever answers it;
/// 3. load shedding ([`overloaded`]); 4. fail fast while the store is unreachable ([`fail_fast`]);
/// 5. a panic in a handler becomes a 500 `internal_error`;
/// 6. the deadline `server.request_timeout_secs` ([`request_timeout`]);
/// 7. the device-certificate gate ([`routes::est::device_certificate_refusal`]);
///
/// and on the way out `X-Content-Type-Options: nosniff` and, over HTTPS,
/// `Strict-Transport-Security`.
///
/// These were seven `from_fn` layers (and tower-http's `CatchPanicLayer`); each cloned the
/// service below it, boxed a future and, for the panic guard, re-boxed the body, per request
/// (docs/benchmarks.md, "What each change bought").
async fn edge(
    axum::extract::State(edge): axum::extract::State<Arc<Edge>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = extract::assign_request_id(&mut request);
    let mut response = extract::with_request_id(id.clone(), async {
        let timer = routes::metrics::RequestTimer::start(&request);
        let response = edge.admitted(request, next).await;
        timer.finish(&response, &edge.request_metrics);
        response
    })
    .await;
    extract::echo_request_id(&mut response, &id);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    if edge.https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

impl Edge {
    /// Steps 3 to 7 of [`edge`].
    async fn admitted(
        &self,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        // Load shedding (see [`overloaded`]); the permit is held until the response is made.
        let _permit = if matches!(request.uri().path(), "/healthz" | "/readyz") {
            None
        } else {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return overloaded(),
            }
        };
        if let Some(health) = &self.store_health
            && let Some(refusal) = fail_fast(health, request.uri().path())
        {
            return refusal;
        }
        let timeout = self.timeout;
        let guarded = std::panic::AssertUnwindSafe(async move {
            if let Some(refusal) = routes::est::device_certificate_refusal(&request) {
                return refusal;
            }
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => request_timeout(),
            }
        });
        let response = match futures_util::FutureExt::catch_unwind(guarded).await {
            Ok(response) => response,
            Err(_) => {
                axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
            }
        };
        if let Some(health) = &self.store_health
            && response.extensions().get::<error::StoreFailed>().is_some()
        {
            health.suspect();
        }
        response
    }
}

/// The answer to a request that ran past `server.request_timeout_secs`: 503
/// `request_timeout`. The handler's future is dropped, which rolls back an uncommitted ledger
/// transaction.
fn request_timeout() -> axum::response::Response {
    axum::response::IntoResponse::into_response(ApiError::new(
        ErrorCode::RequestTimeout,
        "the request took longer than this service allows; retry (with the same \
         Idempotency-Key)",
    ))
}

/// Load shedding: at most `server.max_concurrent_requests` requests are served at once; the
/// rest get this 503 `overloaded` with Retry-After at once instead of waiting in an unbounded
/// queue. Health checks are exempt so that an overloaded replica is not also declared dead.
fn overloaded() -> axum::response::Response {
    axum::response::IntoResponse::into_response(
        ApiError::new(
            ErrorCode::Overloaded,
            "the service is at its concurrency limit (server.max_concurrent_requests); retry shortly",
        )
        .with_retry_after(1),
    )
}

/// While the background probe finds the database unreachable, API requests (which all read or
/// write the store, but for the CA certificate) get 503 `store_unavailable` with Retry-After at
/// once instead of each waiting for the pool's connect timeout. A request that fails on the
/// store wakes the probe ([`Edge::admitted`]).
fn fail_fast(
    health: &crate::services::store_health::StoreHealth,
    path: &str,
) -> Option<axum::response::Response> {
    // The CA certificate is served from memory.
    let needs_store = path.starts_with("/v1/") && path != "/v1/ca.pem";
    if needs_store && !health.is_reachable() {
        return Some(axum::response::IntoResponse::into_response(
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the certificate ledger is unreachable; nothing was issued, retry after the \
                 Retry-After delay",
            )
            .with_retry_after(1),
        ));
    }
    None
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

    /// The edge layer with no store probe: `permits` concurrent requests, `timeout` each.
    fn with_edge(router: Router, https: bool, permits: usize, timeout: Duration) -> Router {
        let edge_state = Arc::new(Edge {
            https,
            timeout,
            in_flight: Arc::new(Semaphore::new(permits)),
            store_health: None,
            request_metrics: routes::metrics::RequestMetrics::default(),
        });
        router.layer(axum::middleware::from_fn_with_state(edge_state, edge))
    }

    async fn body_text(response: axum::response::Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn hsts_is_sent_only_when_the_service_serves_https() {
        for https in [true, false] {
            let router = Router::new()
                .route("/", get(|| async { "ok" }))
                .fallback(not_found);
            let router = with_edge(router, https, 8, Duration::from_secs(5));
            for path in ["/", "/nope"] {
                let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let hsts = response.headers().get(header::STRICT_TRANSPORT_SECURITY);
                if https {
                    assert_eq!(hsts.unwrap(), "max-age=31536000", "{path}");
                } else {
                    assert!(hsts.is_none(), "{path}");
                }
                assert_eq!(
                    response.headers()[header::X_CONTENT_TYPE_OPTIONS],
                    "nosniff"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_request_id() {
        let router = Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        );
        let router = with_edge(router, false, 8, Duration::from_secs(5));
        let request = axum::http::Request::get("/boom")
            .header(extract::REQUEST_ID_HEADER, "line-7.req-1")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[extract::REQUEST_ID_HEADER],
            "line-7.req-1"
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        let body = body_text(response).await;
        assert!(body.contains("\"code\":\"internal_error\""), "{body}");
        assert!(body.contains("line-7.req-1"), "{body}");
    }

    #[tokio::test]
    async fn a_request_past_the_deadline_answers_503_request_timeout() {
        let router = Router::new().route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let router = with_edge(router, false, 8, Duration::from_millis(50));
        let request = axum::http::Request::get("/stuck")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        // A service-made id (a UUID) when the client sent none.
        let id = response.headers()[extract::REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 36, "{id}");
        let body = body_text(response).await;
        assert!(body.contains("\"code\":\"request_timeout\""), "{body}");
    }

    #[tokio::test]
    async fn sheds_requests_beyond_the_concurrency_limit_but_not_health_checks() {
        let release = Arc::new(Notify::new());
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
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
            .route("/healthz", get(|| async { "ok" }));
        let router = with_edge(router, false, 1, Duration::from_secs(30));
        let request = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();

        let first = tokio::spawn(router.clone().oneshot(request("/slow")));
        entered_rx.await.unwrap();
        let shed = router.clone().oneshot(request("/slow")).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        assert!(body_text(shed).await.contains("\"code\":\"overloaded\""));
        let health = router.clone().oneshot(request("/healthz")).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let after = router.oneshot(request("/healthz")).await.unwrap();
        assert_eq!(after.status(), StatusCode::OK);
    }
}

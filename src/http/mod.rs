//! The HTTP API: thin handlers per audience, the router and its layers.

pub mod admin;
pub mod cas;
pub mod error;
pub mod extract;
pub mod reads;
pub mod revocation;
pub mod stations;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::routing::{delete, get, post};
use time::format_description::well_known::Rfc3339;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::store::Timestamp;
use error::ApiError;

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.server.body_limit_bytes;
    let timeout = Duration::from_secs(state.settings.server.request_timeout_secs);
    Router::new()
        .route(
            "/v1/certificates",
            post(stations::sign).get(reads::list_certificates),
        )
        .route("/v1/certificates/{serial}", get(reads::get_certificate))
        .route("/v1/ca", get(reads::issuing_ca))
        .route("/v1/ca.pem", get(reads::issuing_ca_pem))
        .route(
            "/v1/admin/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/v1/admin/tokens/{name}", delete(admin::revoke_token))
        .route("/v1/admin/audit", get(admin::list_audit))
        .route("/v1/admin/cas", get(cas::list).post(cas::create))
        .route("/v1/admin/cas/import", post(cas::import))
        .route("/v1/admin/cas/{id}", get(cas::get))
        .route("/v1/admin/cas/{id}/activate", post(cas::activate))
        .route(
            "/v1/admin/cas/{id}/aws",
            get(cas::aws_state)
                .patch(cas::change_status)
                .delete(cas::deregister),
        )
        .route("/v1/admin/cas/{id}/aws/preflight", get(cas::preflight))
        .route("/v1/admin/cas/{id}/aws/register", post(cas::register))
        .route(
            "/v1/admin/cas/{id}/aws/template",
            axum::routing::put(cas::attach_template),
        )
        .route(
            "/v1/admin/cas/{id}/aws/template/preview",
            post(cas::preview),
        )
        .route("/v1/admin/cas/{id}/aws/sync", post(cas::sync))
        .route(
            "/v1/admin/cas/{id}/aws/registration-config",
            get(cas::registration_config),
        )
        .route(
            "/v1/admin/certificates/{serial}/revoke",
            post(revocation::revoke_certificate),
        )
        .route("/v1/cas/{id}/crl", get(revocation::crl))
        .route("/healthz", get(reads::healthz))
        .route("/readyz", get(reads::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            request_deadline(timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(axum::middleware::from_fn(extract::request_id_middleware))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = tracing::field::Empty,
                )
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
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
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took longer than this service allows; retry (with the same \
             Idempotency-Key)",
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see the README for the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not support this method",
    )
}

/// RFC 3339 text of a ledger time.
pub fn rfc3339_string(t: Timestamp) -> String {
    t.get()
        .format(&Rfc3339)
        .expect("ledger times format as RFC 3339")
}

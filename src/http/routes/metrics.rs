//! `GET /metrics` (Prometheus text format) and the timer that counts every HTTP request by
//! method, route template and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::route;
use crate::telemetry::SeriesCache;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "operations";

/// `GET /metrics`: the service's metrics in the Prometheus text format. No token: scrapers
/// rarely carry one, and the series hold counts, latencies and CA ids, never thing names,
/// stations or secrets. Set `metrics.listen` to serve it on an internal address instead.
#[route(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 404, description = "Metrics are off (`metrics.enabled`) or served on \
            `metrics.listen` instead"),
    ),
    security(())
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let settings = &state.settings.metrics;
    if !settings.enabled || settings.listen.is_some() {
        return crate::http::error::ApiError::new(
            crate::http::error_code::ErrorCode::NotFound,
            "metrics are not served here (metrics.enabled, metrics.listen)",
        )
        .into_response();
    }
    render(&state)
}

/// The router of `metrics.listen`: `/metrics` and nothing else.
pub fn separate_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { render(&state) }),
        )
        .with_state(state)
}

/// The text exposition, with the pool gauges read now.
pub fn render(state: &AppState) -> Response {
    let (size, idle) = state.store.pool_usage();
    metrics::gauge!("factory_ca_db_pool_connections", "state" => "in_use")
        .set((size as usize).saturating_sub(idle) as f64);
    metrics::gauge!("factory_ca_db_pool_connections", "state" => "idle").set(idle as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

/// Counts one HTTP request and its latency under its route template (`/v1/certificates/{serial}`,
/// not the serial: label values stay few), or `unmatched` for the fallback. Started by the
/// router's edge layer (`crate::http::edge`) before load shedding, finished with the response.
pub(crate) struct RequestTimer {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
}

/// The handles of the request metrics, by route template, method and status, registered once
/// each (see [`SeriesCache`]). One per router.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    durations: SeriesCache<&'static str, metrics::Histogram>,
    requests: SeriesCache<(&'static str, StatusCode), metrics::Counter>,
}

impl RequestTimer {
    pub(crate) fn start(request: &Request) -> RequestTimer {
        let started = Instant::now();
        // Extension methods would let a client mint label values: they count as `other`.
        let method: &'static str = match request.method().as_str() {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        RequestTimer {
            started,
            method,
            // A shared string: cloning it copies no text.
            route: request.extensions().get::<MatchedPath>().cloned(),
        }
    }

    pub(crate) fn finish(self, response: &Response, metrics: &RequestMetrics) {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let method = self.method;
        let status = response.status();
        metrics
            .durations
            .get(route, method, || {
                metrics::histogram!(
                    "factory_ca_http_request_duration_seconds",
                    "method" => method,
                    "route" => route.to_owned(),
                )
            })
            .record(self.started.elapsed().as_secs_f64());
        metrics
            .requests
            .get(route, (method, status), || {
                metrics::counter!(
                    "factory_ca_http_requests_total",
                    "method" => method,
                    "route" => route.to_owned(),
                    "status" => status.as_str().to_owned(),
                )
            })
            .increment(1);
    }
}

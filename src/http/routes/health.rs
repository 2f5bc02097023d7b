//! `/healthz` (the process is alive) and `/readyz` (it can issue now).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::http::route;

/// The OpenAPI tag of this module's routes (`#[route]` uses it when none is named).
const TAG: &str = "operations";

/// The longest `/readyz` waits for the pool: below Kubernetes' default probe timeout (1 s).
const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(700);

/// `GET /healthz`: the process is alive.
#[route(
    get,
    path = "/healthz",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Object)),
    security(())
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the issuing CA can sign now.
#[route(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\", \"store\": \"ok\", \
            \"issuing_ca\": \"ok\"}`", body = Object),
        (status = 503, description = "Not ready: `status` is `not_ready`, `store` is `ok` or \
            `unavailable`, `issuing_ca` is `ok` or `expired`", body = Object),
    ),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // Within a second in every state: the probe's verdict when it found the database
    // unreachable, else one round trip through the pool, bounded.
    let store_ok = state.store_health.is_reachable()
        && matches!(
            tokio::time::timeout(READY_PING_TIMEOUT, state.store.ping()).await,
            Ok(Ok(()))
        );
    if !store_ok {
        state.store_health.suspect();
    }
    let ca = state.issuance.issuing_ca();
    let ca_ok = OffsetDateTime::now_utc() < ca.not_after();
    let status = if store_ok && ca_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "store": if store_ok { "ok" } else { "unavailable" },
        "issuing_ca": if ca_ok { "ok" } else { "expired" },
    });
    (status, Json(body)).into_response()
}

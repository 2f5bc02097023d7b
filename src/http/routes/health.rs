//! `/healthz` (the process is alive) and `/readyz` (it can issue now).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::app::AppState;

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Object)),
    security(())
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the issuing CA can sign now.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\", \"store\": \"ok\", \
            \"issuing_ca\": \"ok\"}`", body = Object),
        (status = 503, description = "Not ready: `status` is `not_ready`, `store` is `ok` or \
            `unavailable`, `issuing_ca` is `ok` or `expired`", body = Object),
    ),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.ping().await.is_ok();
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

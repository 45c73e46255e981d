//! `/healthz`, `/readyz`, `/metrics`.

use crate::metrics;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

#[utoipa::path(operation_id = "health_healthz", get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(operation_id = "health_readyz", get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Postgres and NATS reachable"), (status = 503, description = "A dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let postgres = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let nats = state
        .nats
        .as_ref()
        .is_some_and(|n| n.connection_state() == async_nats::connection::State::Connected);
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "postgres": if postgres { "up" } else { "down" },
            "nats": if nats { "up" } else { "down" },
        })),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = metrics::render(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

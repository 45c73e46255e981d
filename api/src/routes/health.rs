//! `/healthz`, `/readyz`, `/metrics`.

use crate::error::{ApiError, Problem};
use crate::metrics::{self, ScrapeRefusal};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use commands::errors::ErrorCode;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`
    status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`
    status: &'static str,
    /// `up` or `down`
    postgres: &'static str,
    /// `up` or `down`
    nats: &'static str,
}

#[utoipa::path(operation_id = "health_healthz", get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> impl IntoResponse {
    Json(Health { status: "ok" })
}

#[utoipa::path(operation_id = "health_readyz", get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Postgres and NATS reachable", body = Readiness), (status = 503, description = "A dependency is down", body = Readiness)))]
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
        Json(Readiness {
            status: if status == StatusCode::OK {
                "ready"
            } else {
                "not_ready"
            },
            postgres: if postgres { "up" } else { "down" },
            nats: if nats { "up" } else { "down" },
        }),
    )
}

#[utoipa::path(operation_id = "health_metrics", get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format, for `Authorization: Bearer <MCPLATFORM_METRICS_TOKEN>`. A scrape runs no query; the event store and projection gauges are read every few seconds, and `mcplatform_db_gauges_read_ok` and `mcplatform_db_gauges_read_age_seconds` say how fresh they are", content_type = "text/plain", body = String),
        (status = 401, description = "The metrics token is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No metrics token is set: metrics are served only on `MCPLATFORM_METRICS_BIND`, or not at all", body = Problem, content_type = "application/problem+json")))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Some(token) = &state.config.metrics_token else {
        return Err(ApiError::route_not_found());
    };
    match token.admits(&headers) {
        Ok(()) => Ok(metrics::exposition()),
        Err(ScrapeRefusal::Missing) => Err(ApiError::new(
            ErrorCode::MissingToken,
            "send the metrics token as `Authorization: Bearer <token>`",
        )),
        Err(ScrapeRefusal::Invalid) => Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the metrics token is not valid",
        )),
    }
}

//! The REST edge: `/api/v1` for the dashboard and analysts, plus health and metrics.

pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod routes;
pub mod state;

use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
pub use state::{ApiConfig, AppState};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    use routes::*;
    let api = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/orgs", get(orgs::list).post(orgs::create))
        .route("/orgs/{org}", get(orgs::get))
        .route(
            "/orgs/{org}/members",
            get(orgs::members).post(orgs::add_member),
        )
        .route(
            "/orgs/{org}/members/{member}",
            patch(orgs::change_role).delete(orgs::remove_member),
        )
        .route(
            "/orgs/{org}/servers",
            get(servers::list).post(servers::create),
        )
        .route(
            "/orgs/{org}/servers/{server}",
            get(servers::get)
                .patch(servers::update)
                .delete(servers::archive),
        )
        .route("/orgs/{org}/tickets", get(tickets::list))
        .route("/orgs/{org}/tickets/{ticket}", get(tickets::get))
        .route(
            "/orgs/{org}/tickets/{ticket}/status",
            post(tickets::change_status),
        )
        .route(
            "/orgs/{org}/tickets/{ticket}/comments",
            post(tickets::comment),
        )
        .route("/orgs/{org}/tickets/{ticket}/assign", post(tickets::assign))
        .route("/orgs/{org}/users", get(end_users::list))
        .route("/orgs/{org}/users/{user}", get(end_users::get))
        .route("/orgs/{org}/sessions", get(sessions::list))
        .route("/orgs/{org}/sessions/{session}", get(sessions::get))
        .route("/orgs/{org}/tool-calls", get(tool_calls::list))
        .route("/orgs/{org}/analytics/tools", get(tool_calls::tools))
        .route(
            "/orgs/{org}/walkthroughs",
            get(walkthroughs::list).post(walkthroughs::create),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}",
            get(walkthroughs::get).patch(walkthroughs::update),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/publish",
            post(walkthroughs::publish),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/unpublish",
            post(walkthroughs::unpublish),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/archive",
            post(walkthroughs::archive),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/steps",
            get(walkthroughs::steps).post(walkthroughs::add_step),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}",
            patch(walkthroughs::edit_step).delete(walkthroughs::remove_step),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}/move",
            post(walkthroughs::move_step),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/versions",
            get(walkthroughs::versions),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/analytics",
            get(walkthrough_analytics::analytics),
        )
        .route(
            "/orgs/{org}/walkthroughs/{walkthrough}/sankey",
            get(walkthrough_analytics::sankey),
        )
        .route(
            "/orgs/{org}/servers/{server}/walkthroughs",
            get(walkthroughs::server_list).post(walkthroughs::assign),
        )
        .route(
            "/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}",
            patch(walkthroughs::update_assignment).delete(walkthroughs::unassign),
        )
        .route("/orgs/{org}/dashboard", get(dashboard::overview))
        .route("/orgs/{org}/audit", get(dashboard::audit_log))
        .route("/orgs/{org}/events", get(events::page))
        .route("/orgs/{org}/events/stream", get(events::stream));

    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "route_not_found",
        detail: "no such route".to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A span per request (method, path, request id; actor and org once known) and response
/// metrics. A request without `x-request-id` gets one, and every response echoes it.
async fn observe(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = axum::http::HeaderValue::from_str(&request_id).ok();
    if let Some(value) = &header {
        request.headers_mut().insert("x-request-id", value.clone());
    }
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        actor = tracing::field::Empty,
        org = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status().as_u16();
    metrics::record_response(status);
    if let Some(value) = header {
        response.headers_mut().insert("x-request-id", value);
    }
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "response"
        );
    });
    response
}

//! The REST edge: `/api/v1` for the dashboard and analysts, plus health and metrics.

pub mod auth;
pub mod error;
pub mod extract;
pub mod filters;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod params;
pub mod routes;
pub mod state;

use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
pub use state::{ApiConfig, AppState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route, declared once: each `routes!` entry adds its handlers to the router and their
/// `#[utoipa::path]` (path, method, parameters, answers) to the OpenAPI document, so neither can
/// list a route the other lacks. The path a handler is served at is the one its annotation says.
pub fn routes() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(problems::index))
        .routes(routes!(problems::describe))
        .routes(routes!(openapi::serve))
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(orgs::list, orgs::create))
        .routes(routes!(orgs::get))
        .routes(routes!(orgs::members, orgs::add_member))
        .routes(routes!(orgs::change_role, orgs::remove_member))
        .routes(routes!(servers::list, servers::create))
        .routes(routes!(servers::get, servers::update, servers::archive))
        .routes(routes!(tickets::list))
        .routes(routes!(tickets::get))
        .routes(routes!(tickets::change_status))
        .routes(routes!(tickets::comment))
        .routes(routes!(tickets::assign))
        .routes(routes!(end_users::list))
        .routes(routes!(end_users::get))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::get))
        .routes(routes!(tool_calls::list))
        .routes(routes!(tool_calls::tools))
        .routes(routes!(walkthroughs::list, walkthroughs::create))
        .routes(routes!(walkthroughs::get, walkthroughs::update))
        .routes(routes!(walkthroughs::publish))
        .routes(routes!(walkthroughs::unpublish))
        .routes(routes!(walkthroughs::archive))
        .routes(routes!(walkthroughs::steps, walkthroughs::add_step))
        .routes(routes!(walkthroughs::edit_step, walkthroughs::remove_step))
        .routes(routes!(walkthroughs::move_step))
        .routes(routes!(walkthroughs::versions))
        .routes(routes!(walkthrough_analytics::analytics))
        .routes(routes!(walkthrough_analytics::sankey))
        .routes(routes!(walkthroughs::server_list, walkthroughs::assign))
        .routes(routes!(
            walkthroughs::update_assignment,
            walkthroughs::unassign
        ))
        .routes(routes!(dashboard::overview))
        .routes(routes!(dashboard::audit_log))
        .routes(routes!(events::page))
        .routes(routes!(events::stream))
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
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

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
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
pub use state::{ApiConfig, AppState};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

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

/// Request ids, request spans and HTTP metrics around every route of `app` (this router merged
/// with the MCP edge's), so both edges get them alike:
///
/// - a request without a usable `x-request-id` (1 to 128 visible ASCII characters) gets a UUID,
///   and every response echoes the request's id (tower-http's request-id layers);
/// - a span per request with method, path, route template and request id, and the `actor` and
///   `org` fields handlers record once they know them (tower-http's `TraceLayer`; failures are
///   not logged here: an internal error is logged once, where it is answered);
/// - latency by method, route template and status class, and responses by status class
///   ([`metrics::record_response`]).
pub fn instrument(app: Router) -> Router {
    // `layer` wraps what is there: the last layer added runs first.
    app.layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    |response: &Response, latency: std::time::Duration, span: &tracing::Span| {
                        tracing::debug!(
                            parent: span,
                            status = response.status().as_u16(),
                            elapsed_ms = latency.as_secs_f64() * 1000.0,
                            "response"
                        );
                    },
                )
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
}

/// A client's `x-request-id` is kept when it is 1 to 128 visible ASCII characters; any other is
/// dropped here, so the request gets a fresh one.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable =
        |v: &axum::http::HeaderValue| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok();
    if request
        .headers()
        .get(X_REQUEST_ID)
        .is_some_and(|v| !usable(v))
    {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

const X_REQUEST_ID: &str = "x-request-id";

fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route,
        request_id,
        actor = tracing::field::Empty,
        org = tracing::field::Empty,
    )
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics::record_response(
        &method,
        route.as_ref().map(MatchedPath::as_str),
        response.status(),
        started.elapsed(),
    );
    response
}

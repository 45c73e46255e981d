//! The REST edge: `/api/v1` for the dashboard and analysts, plus health and metrics.

pub mod auth;
pub mod error;
pub mod extract;
pub mod filters;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod params;
pub mod refusals;
pub mod routes;
pub mod state;

use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
pub use state::{ApiConfig, AppState};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// utoipa-axum's `routes!`, plus the error answers of what each handler extracts
/// ([`refusals::document`]): a route's documented refusals follow from its arguments.
macro_rules! route {
    ($($module:ident :: $handler:ident),+ $(,)?) => {{
        let (schemas, mut paths, router) = routes!($($module::$handler),+);
        $(utoipa_axum::paste! {
            refusals::document::<$module::[<__path_ $handler>], _, _>(
                &mut paths,
                &$module::$handler,
            );
        })+
        (schemas, paths, router)
    }};
}

/// Every route, declared once: each `route!` entry adds its handlers to the router and their
/// `#[utoipa::path]` (path, method, parameters, answers) to the OpenAPI document, so neither can
/// list a route the other lacks. The path a handler is served at is the one its annotation says.
pub fn routes() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(route!(health::healthz))
        .routes(route!(health::readyz))
        .routes(route!(health::metrics))
        .routes(route!(problems::index))
        .routes(route!(problems::describe))
        .routes(route!(openapi::serve))
        .routes(route!(auth::signup))
        .routes(route!(auth::login))
        .routes(route!(auth::refresh))
        .routes(route!(auth::logout))
        .routes(route!(auth::me))
        .routes(route!(orgs::list, orgs::create))
        .routes(route!(orgs::get))
        .routes(route!(orgs::members, orgs::add_member))
        .routes(route!(orgs::change_role, orgs::remove_member))
        .routes(route!(invitations::accept))
        .routes(route!(servers::list, servers::create))
        .routes(route!(servers::get, servers::update, servers::archive))
        .routes(route!(tickets::list))
        .routes(route!(tickets::get))
        .routes(route!(tickets::change_status))
        .routes(route!(tickets::comment))
        .routes(route!(tickets::assign))
        .routes(route!(end_users::list))
        .routes(route!(end_users::get))
        .routes(route!(sessions::list))
        .routes(route!(sessions::get))
        .routes(route!(tool_calls::list))
        .routes(route!(tool_calls::tools))
        .routes(route!(walkthroughs::list, walkthroughs::create))
        .routes(route!(walkthroughs::get, walkthroughs::update))
        .routes(route!(walkthroughs::publish))
        .routes(route!(walkthroughs::unpublish))
        .routes(route!(walkthroughs::archive))
        .routes(route!(walkthroughs::steps, walkthroughs::add_step))
        .routes(route!(walkthroughs::edit_step, walkthroughs::remove_step))
        .routes(route!(walkthroughs::move_step))
        .routes(route!(walkthroughs::versions))
        .routes(route!(walkthrough_analytics::analytics))
        .routes(route!(walkthrough_analytics::sankey))
        .routes(route!(walkthroughs::server_list, walkthroughs::assign))
        .routes(route!(
            walkthroughs::update_assignment,
            walkthroughs::unassign
        ))
        .routes(route!(dashboard::overview))
        .routes(route!(dashboard::audit_log))
        .routes(route!(events::page))
        .routes(route!(events::stream))
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Request ids, request spans and HTTP metrics around every route of `app` (this router merged
/// with the MCP edge's), so both edges get them alike:
///
/// - a request without a usable `x-request-id` ([`usable_request_id`]) gets a UUID,
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

/// A client's `x-request-id` is kept when it is usable ([`usable_request_id`]); any other is
/// dropped here, so the request gets a fresh one.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get(X_REQUEST_ID)
        .is_some_and(|v| usable_request_id(v).is_none())
    {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

/// A request id as the client sent it, when it is 1 to 128 visible ASCII characters (0x21 to
/// 0x7E: no space or tab, which `HeaderValue::to_str` lets through, so an id is one token in a
/// log line).
pub(crate) fn usable_request_id(value: &axum::http::HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let usable =
        (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    usable.then(|| value.to_str().ok()).flatten()
}

pub(crate) const X_REQUEST_ID: &str = "x-request-id";

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
        path = %loggable_path(request.uri().path()),
        route,
        request_id,
        actor = tracing::field::Empty,
        org = tracing::field::Empty,
    )
}

/// A request's path as logged: an invitation's token (a secret in its path) is left out.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const INVITATIONS: &str = "/api/v1/invitations/";
    match path.strip_prefix(INVITATIONS) {
        Some(rest) => {
            let after = rest.find('/').map_or("", |i| &rest[i..]);
            format!("{INVITATIONS}{{token}}{after}").into()
        }
        None => path.into(),
    }
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

#[cfg(test)]
mod tests {
    use super::{loggable_path, usable_request_id};
    use axum::http::HeaderValue;

    #[test]
    fn an_invitation_token_in_a_path_is_never_logged() {
        assert_eq!(
            loggable_path("/api/v1/invitations/mcpi_s3cr3t/accept"),
            "/api/v1/invitations/{token}/accept"
        );
        assert_eq!(
            loggable_path("/api/v1/invitations/mcpi_s3cr3t"),
            "/api/v1/invitations/{token}"
        );
        assert_eq!(loggable_path("/api/v1/orgs/acme"), "/api/v1/orgs/acme");
    }

    #[test]
    fn a_request_id_is_one_to_128_visible_ascii_characters() {
        let usable = |bytes: &[u8]| {
            usable_request_id(&HeaderValue::from_bytes(bytes).unwrap()).map(str::to_owned)
        };
        assert_eq!(usable(b"req-1").as_deref(), Some("req-1"));
        assert_eq!(
            usable("x".repeat(128).as_bytes()).map(|id| id.len()),
            Some(128)
        );
        for refused in [&b""[..], b"req 1", b"req\t1", b"caf\xc3\xa9", &[b'x'; 129]] {
            assert_eq!(
                usable(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}

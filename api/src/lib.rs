//! The REST edge: `/api/v1` for the dashboard and analysts, plus health and metrics.

pub mod auth;
pub mod error;
pub mod extract;
pub mod filters;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod params;
pub mod refusals;
pub mod routes;
pub mod state;

use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::Router;
pub use state::{ApiConfig, AppState};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
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
        .routes(route!(tracking_secrets::list, tracking_secrets::create))
        .routes(route!(tracking_secrets::revoke))
        .routes(route!(tickets::list))
        .routes(route!(tickets::get))
        .routes(route!(tickets::change_status))
        .routes(route!(tickets::comment))
        .routes(route!(tickets::assign))
        .routes(route!(end_users::list))
        .routes(route!(end_users::get))
        .routes(route!(end_users::unmerge))
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
///   and every response echoes the request's id;
/// - a span per request with method, path, route template and request id, and the `actor` and
///   `org` fields handlers record once they know them (failures are not logged here: an
///   internal error is logged once, where it is answered);
/// - latency by method, route template and status class, and responses by status class
///   ([`metrics::record_response`]).
///
/// All three in one layer ([`Observe`]): every MCP call passes here, and each layer `Router::layer`
/// adds costs a boxed clone of the route and a boxed future per request.
pub fn instrument(app: Router) -> Router {
    app.layer(ObserveLayer)
}

/// The layer of [`instrument`].
#[derive(Clone, Copy)]
struct ObserveLayer;

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

/// See [`instrument`].
#[derive(Clone)]
struct Observe<S> {
    inner: S,
}

impl<S> tower_service::Service<Request> for Observe<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = match request.headers().get(X_REQUEST_ID) {
            Some(id) if usable_request_id(id).is_some() => Some(id.clone()),
            _ => {
                let mut buffer = uuid::Uuid::encode_buffer();
                let fresh = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
                let id = HeaderValue::from_str(fresh).ok();
                match &id {
                    Some(id) => request.headers_mut().insert(X_REQUEST_ID, id.clone()),
                    None => request.headers_mut().remove(X_REQUEST_ID),
                };
                id
            }
        };
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = request_span(&request);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Observed {
            inner,
            span,
            started,
            method,
            route,
            request_id,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer on its way, in its span; see [`instrument`].
    struct Observed<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        started: Instant,
        method: axum::http::Method,
        route: Option<MatchedPath>,
        request_id: Option<HeaderValue>,
    }
}

impl<F, E> Future for Observed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        if let Some(id) = this.request_id.take() {
            if !response.headers().contains_key(X_REQUEST_ID) {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
        }
        let elapsed = this.started.elapsed();
        metrics::record_response(
            this.method,
            this.route.as_ref().map(MatchedPath::as_str),
            response.status(),
            elapsed,
        );
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "response"
        );
        Poll::Ready(Ok(response))
    }
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

#[cfg(test)]
mod tests {
    use super::{instrument, loggable_path, usable_request_id, X_REQUEST_ID};
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::HeaderValue;
    use axum::routing::get;
    use axum::Router;
    use tower_service::Service;

    /// What the handler saw as the request id, and what the response echoed.
    async fn ids(app: &mut Router, path: &str, sent: Option<&str>) -> (String, String) {
        let mut request = Request::builder().uri(path);
        if let Some(id) = sent {
            request = request.header(X_REQUEST_ID, id);
        }
        let request = request.body(Body::empty()).unwrap_or_default();
        let Ok(response) = app.call(request).await;
        let echoed = response.headers().get(X_REQUEST_ID).cloned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        let text = |v: Option<HeaderValue>| {
            v.and_then(|v| v.to_str().ok().map(str::to_owned))
                .unwrap_or_default()
        };
        (String::from_utf8_lossy(&body).into_owned(), text(echoed))
    }

    #[tokio::test]
    async fn the_observe_layer_keeps_or_makes_the_request_id_and_echoes_it() {
        let seen = |request: Request| async move {
            request
                .headers()
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let own = || async { ([(X_REQUEST_ID, "the-handler's")], "") };
        let mut app = instrument(
            Router::new()
                .route("/seen", get(seen))
                .route("/own", get(own)),
        );
        assert_eq!(
            ids(&mut app, "/seen", Some("req-1")).await,
            ("req-1".to_owned(), "req-1".to_owned())
        );
        for sent in [None, Some("req 1"), Some(&*"x".repeat(129))] {
            let (seen, echoed) = ids(&mut app, "/seen", sent).await;
            assert!(uuid::Uuid::parse_str(&seen).is_ok(), "{sent:?}: {seen}");
            assert_eq!(seen, echoed);
        }
        // No route: still an id.
        let (_, echoed) = ids(&mut app, "/nowhere", None).await;
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        // A response that names its own id keeps it.
        assert_eq!(
            ids(&mut app, "/own", Some("req-2")).await.1,
            "the-handler's"
        );
    }

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

//! The MCP edge: every org's hosted servers over Streamable HTTP.
//!
//! Our middleware decides *who* a request is for — the server (Host header or `/s/{slug}`), the
//! end user (`/t/{tracking_id}`), whether the server's auth mode lets them in, and whether a
//! session they name is a live session of that server. rmcp's Streamable HTTP service then
//! speaks the protocol (both eras), and [`handler::McpHandler`] answers it for that tenant.

mod coalesce;
pub mod handler;
pub mod identity;
pub mod recording;
pub mod sessions;
pub mod tenant;
pub mod tools;

use crate::handler::McpHandler;
use crate::identity::{Caller, Identities};
use crate::sessions::{EventSourcedSessionStore, RequestScope, Sessions, SCOPE};
use crate::tenant::{host_name, is_platform_host, slug_from_host, Tenant, TenantCache};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use commands::EventStore;
use domain::end_user::TrackingId;
use domain::values::AuthMode;
use domain::{Actor, EventMetadata};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest JSON-RPC body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Servers answer at `{slug}.{base_domain}`.
    pub base_domain: String,
    /// Further host names this deployment answers to (besides the base domain, its subdomains
    /// and loopback).
    pub extra_hosts: Vec<String>,
    /// Browser origins allowed besides the request's own host (for example a web-based MCP
    /// inspector). Requests without `Origin` (IDE agents, CLIs) are not affected.
    pub allowed_origins: Vec<String>,
    /// Key (at least 32 bytes, derived from the platform secret) that seals the
    /// `requestState` of multi-round requests, so any instance can open it.
    pub request_state_key: Vec<u8>,
}

/// What the handler and the tools share.
pub struct Core {
    pub store: EventStore,
    pub config: McpConfig,
    pub tenants: TenantCache,
    pub identities: Identities,
    pub sessions: Arc<Sessions>,
    pub request_states: rmcp::model::RequestStateCodec,
}

pub struct McpEdge {
    core: Arc<Core>,
    service: StreamableHttpService<McpHandler, LocalSessionManager>,
    local_sessions: Arc<LocalSessionManager>,
    shutdown: CancellationToken,
}

impl McpEdge {
    pub fn new(store: EventStore, config: McpConfig) -> Arc<Self> {
        let sessions = Arc::new(Sessions::new(store.clone()));
        let request_states =
            rmcp::model::RequestStateCodec::new_unchecked(config.request_state_key.clone());
        let core = Arc::new(Core {
            request_states,
            store: store.clone(),
            config,
            tenants: TenantCache::default(),
            identities: Identities::default(),
            sessions: sessions.clone(),
        });
        let shutdown = CancellationToken::new();
        // A finished call's SSE stream is kept only briefly for a client to resume it (rmcp's
        // default keeps every one for a minute, which at thousands of calls per second is a
        // lot of memory to hold and sweep).
        let mut local_sessions = LocalSessionManager::default();
        local_sessions.session_config.completed_cache_ttl = std::time::Duration::from_secs(5);
        let local_sessions = Arc::new(local_sessions);
        // Hosts are checked by our middleware (rmcp's list cannot express "any subdomain of
        // the base domain"); Origin too, since the allowed origin depends on the request.
        let mut config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_json_response(true)
            .with_max_request_body_bytes(MAX_BODY_BYTES)
            .with_cancellation_token(shutdown.clone());
        config.session_store = Some(Arc::new(EventSourcedSessionStore { store, sessions }));
        let handler_core = core.clone();
        let service = StreamableHttpService::new(
            move || {
                Ok(McpHandler {
                    core: handler_core.clone(),
                })
            },
            local_sessions.clone(),
            config,
        );
        Arc::new(Self {
            core,
            service,
            local_sessions,
            shutdown,
        })
    }

    /// Ends open streams so a graceful shutdown does not wait on them.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

pub fn router(edge: Arc<McpEdge>) -> Router {
    Router::new()
        .route("/mcp", any(by_host))
        .route("/t/{tracking_id}/mcp", any(by_host_tracked))
        .route("/s/{slug}/mcp", any(by_path))
        .route("/s/{slug}/t/{tracking_id}/mcp", any(by_path_tracked))
        .with_state(edge)
}

async fn by_host(State(edge): State<Arc<McpEdge>>, request: Request) -> Response {
    edge.serve(None, None, request).await
}

async fn by_host_tracked(
    State(edge): State<Arc<McpEdge>>,
    Path(tracking_id): Path<String>,
    request: Request,
) -> Response {
    edge.serve(None, Some(tracking_id), request).await
}

async fn by_path(
    State(edge): State<Arc<McpEdge>>,
    Path(slug): Path<String>,
    request: Request,
) -> Response {
    edge.serve(Some(slug), None, request).await
}

async fn by_path_tracked(
    State(edge): State<Arc<McpEdge>>,
    Path((slug, tracking_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    edge.serve(Some(slug), Some(tracking_id), request).await
}

/// An HTTP error with a JSON-RPC error body, so MCP clients can show the message.
fn refuse(status: StatusCode, code: i32, message: impl Into<String>) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message.into() },
    });
    (status, axum::Json(body)).into_response()
}

const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;
const INTERNAL_ERROR: i32 = -32603;

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "MCP edge could not reach the store");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        INTERNAL_ERROR,
        "temporarily unavailable, please retry",
    )
}

/// Whether an `Origin` may talk to `host`: its own host, or one the operator allowed.
fn origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    let origin = origin.trim();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    host_name(authority) == host
}

/// The protocol era a request declares: 2026-era requests carry no session.
fn is_stateless_era(request: &Request) -> bool {
    request
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28")
}

impl McpEdge {
    async fn serve(
        &self,
        slug_in_path: Option<String>,
        tracking_id: Option<String>,
        mut request: Request,
    ) -> Response {
        let config = &self.core.config;
        // Refuse a declared oversize body before reading any of it.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        let host_header = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = host_name(&host_header);
        if !is_platform_host(&host, &config.base_domain, &config.extra_hosts) {
            return refuse(
                StatusCode::FORBIDDEN,
                INVALID_REQUEST,
                format!("Forbidden: {host:?} is not a host of this platform"),
            );
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !origin_allowed(origin, &host, &config.allowed_origins) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    INVALID_REQUEST,
                    format!("Forbidden: requests from origin {origin:?} are not allowed"),
                );
            }
        }

        let slug = match slug_in_path
            .as_deref()
            .or_else(|| slug_from_host(&host, &config.base_domain))
        {
            Some(slug) => slug.to_ascii_lowercase(),
            None => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    INVALID_REQUEST,
                    format!(
                        "no MCP server at {host}: connect to {{slug}}.{}/mcp or /s/{{slug}}/mcp",
                        config.base_domain
                    ),
                )
            }
        };
        let tenant = match self.core.tenants.resolve(&self.core.store, &slug).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    INVALID_REQUEST,
                    format!("no MCP server named {slug:?} (it may have been archived)"),
                )
            }
            Err(e) => return unavailable(e),
        };

        let tracking_id = match tracking_id.as_deref().map(TrackingId::parse) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    INVALID_REQUEST,
                    "a tracking id is 1 to 128 letters, digits, '-', '_' or '.'",
                )
            }
        };
        match tenant.auth_mode {
            AuthMode::Oauth => {
                let mut response = refuse(
                    StatusCode::UNAUTHORIZED,
                    INVALID_REQUEST,
                    format!(
                        "{} requires signing in through its OAuth provider, which mcplatform \
                         does not offer yet; ask the server's owner to switch its auth mode \
                         to tracking or none",
                        tenant.name
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            AuthMode::Tracking if tracking_id.is_none() => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    INVALID_REQUEST,
                    format!(
                    "{} identifies its users by tracking id: connect to .../t/{{tracking_id}}/mcp \
                         with the id the product gave you",
                    tenant.name
                ),
                )
            }
            _ => {}
        }

        let metadata = self.metadata(&request, &tenant);
        let mut caller = Caller {
            end_user_id: None,
            tracking_id,
        };
        if let (Some(tracking_id), &Method::POST) = (&caller.tracking_id, request.method()) {
            match self
                .core
                .identities
                .end_user(
                    &self.core.store,
                    tenant.org_id,
                    tenant.server_id,
                    tracking_id,
                    &metadata,
                )
                .await
            {
                Ok(id) => caller.end_user_id = Some(id),
                Err(e) => return unavailable(e),
            }
        }
        let metadata = match caller.end_user_id {
            Some(id) => EventMetadata {
                actor: Actor::EndUser { id },
                ..metadata
            },
            None => metadata,
        };

        // A session must be a live session of this very server, whichever instance holds it.
        let session_id = request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(session_id) = session_id
            .as_deref()
            .filter(|_| !is_stateless_era(&request))
        {
            match self
                .core
                .sessions
                .is_live_on(session_id, tenant.server_id)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // Ended elsewhere (or never ours): drop any copy held here.
                    let id = session_id.to_owned().into();
                    if self.local_sessions.has_session(&id).await.unwrap_or(false) {
                        let _ = self.local_sessions.close_session(&id).await;
                    }
                    return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
                }
                Err(e) => return unavailable(e),
            }
        }

        let is_post = request.method() == Method::POST;
        let sent_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        let metadata = Arc::new(metadata);
        let scope = Arc::new(RequestScope {
            tenant: tenant.clone(),
            caller: caller.clone(),
            metadata: (*metadata).clone(),
            store_failed: AtomicBool::new(false),
        });
        let extensions = request.extensions_mut();
        extensions.insert::<Arc<Tenant>>(tenant);
        extensions.insert(caller);
        extensions.insert(metadata);
        let response = SCOPE
            .scope(scope.clone(), self.service.handle(request))
            .await;
        if scope.store_failed.load(Ordering::SeqCst) {
            // The session could not be stored (or its end recorded): no other instance could
            // continue it, so it is not handed out.
            if let Some(id) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                let _ = self
                    .local_sessions
                    .close_session(&id.to_owned().into())
                    .await;
            }
            return unavailable("session store write failed");
        }
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE && sent_json {
            // rmcp answers a JSON body it cannot parse with 415; JSON-RPC calls that a parse
            // error, which is the client's mistake: 400 with code -32700.
            return refuse(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "Parse error: the body is not a JSON-RPC message",
            );
        }
        let (parts, body) = response.into_parts();
        let mut body = coalesce::Coalesce::new(body);
        let streamed = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if is_post && streamed {
            let first = coalesce::read_to_first_message(&mut body).await;
            return Response::from_parts(parts, Body::new(coalesce::Prefixed::new(first, body)));
        }
        Response::from_parts(parts, Body::new(body))
    }

    fn metadata(&self, request: &Request, tenant: &Tenant) -> EventMetadata {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect::<String>())
        };
        EventMetadata {
            request_id: header("x-request-id"),
            client_ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: header("user-agent"),
            ..EventMetadata::by(Actor::Anonymous)
        }
        .for_org(tenant.org_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_host_or_listed_origins_pass() {
        let allowed = vec!["http://localhost:6274".to_owned()];
        assert!(origin_allowed(
            "http://acme.localhost:8080",
            "acme.localhost",
            &[]
        ));
        assert!(origin_allowed(
            "http://localhost:6274",
            "acme.localhost",
            &allowed
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            "acme.localhost",
            &allowed
        ));
        assert!(!origin_allowed("null", "acme.localhost", &allowed));
    }
}

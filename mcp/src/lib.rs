//! The MCP edge: every org's hosted servers over Streamable HTTP.
//!
//! Our middleware decides *who* a request is for — the server (Host header or `/s/{slug}`), the
//! end user (`/t/{tracking_id}`), whether the server's auth mode lets them in, and whether a
//! session they name is a live session of that server. rmcp's Streamable HTTP service then
//! speaks the protocol (both eras), and [`handler::McpHandler`] answers it for that tenant.

mod coalesce;
mod edge;
pub mod handler;
pub mod identity;
pub mod metrics;
pub mod oauth;
pub mod recording;
pub mod sessions;
pub mod tenant;
pub mod tools;

use crate::handler::McpHandler;
use crate::identity::Identities;
use crate::sessions::{EventSourcedSessionStore, Sessions};
use crate::tenant::TenantCache;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use domain::server::Server;
use eventstore::EventStore;
use percent_encoding::percent_decode_str;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
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
    /// The platform limits and this process's rate budgets, shared with the REST edge.
    pub guard: Arc<commands::limits::Guard>,
    /// Opens the servers' tracking secrets (sealed with a key derived from the platform
    /// secret), to verify signed tracking ids.
    pub tracking_seal: commands::tracking::TrackingSeal,
    /// Key (derived from the platform secret) that refresh-token rotations derive new pairs
    /// with, so every instance derives the same.
    pub oauth_rotation_key: Vec<u8>,
    /// The one guard of every outbound fetch (client metadata documents, identity providers).
    pub outbound: commands::outbound::Outbound,
    /// Opens identity providers' client secrets (`commands::services::identity_providers`).
    pub provider_seal: commands::sealing::Seal,
    /// Seals the tokens identity providers issue for end users.
    pub provider_token_seal: commands::sealing::Seal,
    /// Key (derived from the platform secret) of the sign-in flows' derived values, consent
    /// cookies and CSRF tokens, so every instance agrees.
    pub sign_in_key: Vec<u8>,
}

/// What the hosted servers' authorization servers share.
pub struct OauthCore {
    /// Access tokens' validations, briefly cached.
    pub tokens: oauth::bearer::AccessTokens,
    pub rotation: commands::services::oauth::RotationKey,
    /// Client id metadata documents, cached as HTTP caching says.
    pub documents: oauth::cimd::Documents,
    /// End users signing in through the customers' identity providers.
    pub sign_ins: commands::services::sign_in::SignIns,
    /// Refused requests, recorded (throttled).
    pub refusals: commands::services::oauth::Refusals,
}

/// What the handler and the tools share.
pub struct Core {
    pub store: EventStore,
    pub config: McpConfig,
    pub tenants: TenantCache,
    pub identities: Identities,
    pub sessions: Arc<Sessions>,
    pub request_states: rmcp::model::RequestStateCodec,
    pub walkthroughs: tools::walkthroughs::Catalog,
    /// End users' walkthrough runs as last read or committed here (see `RunCache`).
    pub runs: Arc<commands::services::walkthrough_progress::RunCache>,
    pub oauth: OauthCore,
}

pub struct McpEdge {
    core: Arc<Core>,
    metrics: metrics::McpMetrics,
    service: StreamableHttpService<McpHandler, LocalSessionManager>,
    local_sessions: Arc<LocalSessionManager>,
    /// Request ids in flight in the sessions served here (see [`sessions::InFlight`]).
    in_flight: Arc<sessions::InFlight>,
    shutdown: CancellationToken,
}

impl McpEdge {
    pub fn new(store: EventStore, config: McpConfig) -> Arc<Self> {
        let sessions = Arc::new(Sessions::new(store.clone()));
        let tenants = TenantCache::new(config.tracking_seal.clone());
        // A server changed through this process (by the REST edge beside us) is looked up
        // again at once; other processes' changes reach us within the cache's TTL.
        let invalidated = tenants.clone();
        store.on_commit_of::<Server>(move || invalidated.invalidate_all());
        // A grant revoked or rotated through this process is looked up again at once; other
        // processes' revocations reach us within the token cache's TTL (1 s).
        let tokens = oauth::bearer::AccessTokens::default();
        let rotation =
            commands::services::oauth::RotationKey::new(config.oauth_rotation_key.clone());
        // Only a change to a live family matters (a rotation, a revocation); a code or a first
        // pair issued cannot have been cached yet.
        let invalidated = tokens.clone();
        store.on_events_of::<domain::oauth::OauthGrant>(move |grant_id, event_type| {
            if matches!(
                event_type,
                "OauthTokensRefreshed" | "OauthGrantRevoked" | "OauthReuseDetected"
            ) {
                if let Ok(grant_id) = uuid::Uuid::parse_str(grant_id) {
                    invalidated.grant_changed(grant_id);
                }
            }
        });
        let request_states =
            rmcp::model::RequestStateCodec::new_unchecked(config.request_state_key.clone());
        let sign_ins = commands::services::sign_in::SignIns::new(
            commands::services::sign_in::SignInKey::new(config.sign_in_key.clone()),
            config.provider_seal.clone(),
            config.provider_token_seal.clone(),
            config.outbound.clone(),
        );
        let core = Arc::new(Core {
            request_states,
            store,
            tenants,
            identities: Identities::default(),
            sessions: sessions.clone(),
            walkthroughs: Default::default(),
            runs: Default::default(),
            config,
            oauth: OauthCore {
                tokens,
                rotation,
                documents: Default::default(),
                sign_ins,
                refusals: Default::default(),
            },
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
        config.session_store = Some(Arc::new(EventSourcedSessionStore { core: core.clone() }));
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
            metrics: metrics::McpMetrics::default(),
            service,
            local_sessions,
            in_flight: Default::default(),
            shutdown,
        })
    }

    /// Ends open streams so a graceful shutdown does not wait on them.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

pub fn router(edge: Arc<McpEdge>) -> Router {
    const PRM: &str = "/.well-known/oauth-protected-resource";
    const ASM: &str = "/.well-known/oauth-authorization-server";
    const OIDC: &str = "/.well-known/openid-configuration";
    Router::new()
        .route("/mcp", any(by_host))
        .route("/t/{tracking_id}/mcp", any(by_host_tracked))
        .route("/s/{slug}/mcp", any(by_path))
        .route("/s/{slug}/t/{tracking_id}/mcp", any(by_path_tracked))
        // Protected resource metadata: RFC 9728 inserts the well-known segment before the
        // resource's path; the bare form answers for the host form's `/mcp`.
        .route(PRM, get(oauth_routes::prm_host))
        .route(&format!("{PRM}/mcp"), get(oauth_routes::prm_host))
        .route(
            &format!("{PRM}/t/{{tracking_id}}/mcp"),
            get(oauth_routes::prm_host_tracked),
        )
        .route(
            &format!("{PRM}/s/{{slug}}/mcp"),
            get(oauth_routes::prm_path),
        )
        .route(
            &format!("{PRM}/s/{{slug}}/t/{{tracking_id}}/mcp"),
            get(oauth_routes::prm_path_tracked),
        )
        // Authorization server metadata, where RFC 8414 and OpenID discovery put it for an
        // issuer without a path (host form) and with one (`/s/{slug}`), and both of OpenID's
        // placements of a path.
        .route(ASM, get(oauth_routes::asm_host))
        .route(OIDC, get(oauth_routes::asm_host))
        .route(&format!("{ASM}/s/{{slug}}"), get(oauth_routes::asm_path))
        .route(&format!("{OIDC}/s/{{slug}}"), get(oauth_routes::asm_path))
        .route(&format!("/s/{{slug}}{OIDC}"), get(oauth_routes::asm_path))
        .route(&format!("/s/{{slug}}{ASM}"), get(oauth_routes::asm_path))
        .route("/oauth/{endpoint}", any(oauth_routes::endpoint_host))
        .route(
            "/s/{slug}/oauth/{endpoint}",
            any(oauth_routes::endpoint_path),
        )
        .with_state(edge)
}

/// The authorization servers' routes, in both URL forms.
mod oauth_routes {
    use super::*;
    use crate::oauth::{authorize, discovery, endpoints};
    use axum::extract::Path;
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;

    /// (Only the request's head is held across the look-up: its body is not `Sync`.)
    async fn site(
        edge: &McpEdge,
        slug: Option<&str>,
        head: (axum::http::HeaderMap, axum::http::Uri),
    ) -> Result<oauth::Site, Response> {
        edge.site(slug, &head.0, &head.1).await
    }

    fn head(request: &Request) -> (axum::http::HeaderMap, axum::http::Uri) {
        (request.headers().clone(), request.uri().clone())
    }

    pub async fn prm_host(State(edge): State<Arc<McpEdge>>, request: Request) -> Response {
        match site(&edge, None, head(&request)).await {
            Ok(site) => discovery::protected_resource(&site, None),
            Err(refused) => refused,
        }
    }

    pub async fn prm_host_tracked(
        State(edge): State<Arc<McpEdge>>,
        Path(tracking_id): Path<String>,
        request: Request,
    ) -> Response {
        match site(&edge, None, head(&request)).await {
            Ok(site) => discovery::protected_resource(&site, Some(&tracking_id)),
            Err(refused) => refused,
        }
    }

    pub async fn prm_path(
        State(edge): State<Arc<McpEdge>>,
        Path(slug): Path<String>,
        request: Request,
    ) -> Response {
        match site(&edge, Some(&slug), head(&request)).await {
            Ok(site) => discovery::protected_resource(&site, None),
            Err(refused) => refused,
        }
    }

    pub async fn prm_path_tracked(
        State(edge): State<Arc<McpEdge>>,
        Path((slug, tracking_id)): Path<(String, String)>,
        request: Request,
    ) -> Response {
        match site(&edge, Some(&slug), head(&request)).await {
            Ok(site) => discovery::protected_resource(&site, Some(&tracking_id)),
            Err(refused) => refused,
        }
    }

    pub async fn asm_host(State(edge): State<Arc<McpEdge>>, request: Request) -> Response {
        match site(&edge, None, head(&request)).await {
            Ok(site) => discovery::authorization_server(&site),
            Err(refused) => refused,
        }
    }

    pub async fn asm_path(
        State(edge): State<Arc<McpEdge>>,
        Path(slug): Path<String>,
        request: Request,
    ) -> Response {
        match site(&edge, Some(&slug), head(&request)).await {
            Ok(site) => discovery::authorization_server(&site),
            Err(refused) => refused,
        }
    }

    pub async fn endpoint_host(
        State(edge): State<Arc<McpEdge>>,
        Path(endpoint_name): Path<String>,
        request: Request,
    ) -> Response {
        endpoint(&edge, None, &endpoint_name, request).await
    }

    pub async fn endpoint_path(
        State(edge): State<Arc<McpEdge>>,
        Path((slug, endpoint_name)): Path<(String, String)>,
        request: Request,
    ) -> Response {
        endpoint(&edge, Some(&slug), &endpoint_name, request).await
    }

    async fn endpoint(
        edge: &McpEdge,
        slug: Option<&str>,
        name: &str,
        request: Request,
    ) -> Response {
        let head = head(&request);
        let site = match site(edge, slug, head).await {
            Ok(site) => site,
            Err(refused) => return refused,
        };
        let method = request.method().clone();
        match (name, method) {
            ("register", Method::POST) => endpoints::register(edge, site, request).await,
            ("token", Method::POST) => endpoints::token(edge, site, request).await,
            ("revoke", Method::POST) => endpoints::revoke(edge, site, request).await,
            ("userinfo", Method::GET | Method::POST) => {
                endpoints::userinfo(edge, site, request).await
            }
            ("authorize", Method::GET) => authorize::authorize_get(edge, site, request).await,
            ("authorize", Method::POST) => authorize::authorize_post(edge, site, request).await,
            ("callback", Method::GET) => authorize::callback(edge, site, request).await,
            ("register" | "token" | "revoke" | "userinfo" | "authorize" | "callback", _) => {
                let allow = match name {
                    "userinfo" | "authorize" => "GET, POST",
                    "callback" => "GET",
                    _ => "POST",
                };
                (
                    [(axum::http::header::ALLOW, allow)],
                    StatusCode::METHOD_NOT_ALLOWED,
                )
                    .into_response()
            }
            _ => oauth::oauth_error(commands::errors::OauthFailure::new(
                commands::errors::OauthErrorCode::InvalidRequest,
                format!("no OAuth endpoint named {name:?}"),
            ))
            .into_response(),
        }
    }
}

/// The path's parameters as the router decoded them, in order. A segment that is not UTF-8
/// once percent-decoded (which the router refuses in plain text) is read lossily instead: it
/// names no server and is no tracking id, so the edge refuses it like any other, with a
/// JSON-RPC error (404 for the server, 400 for the tracking id).
fn params(path: Result<RawPathParams, RawPathParamsRejection>, request: &Request) -> Vec<String> {
    match path {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            route
                .split('/')
                .zip(request.uri().path().split('/'))
                .filter(|(pattern, _)| pattern.starts_with('{'))
                .map(|(_, raw)| percent_decode_str(raw).decode_utf8_lossy().into_owned())
                .collect()
        }
    }
}

async fn by_host(State(edge): State<Arc<McpEdge>>, request: Request) -> Response {
    edge.serve(None, None, request).await
}

async fn by_host_tracked(
    State(edge): State<Arc<McpEdge>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
) -> Response {
    let tracking_id = params(path, &request)
        .into_iter()
        .next()
        .unwrap_or_default();
    edge.serve(None, Some(tracking_id), request).await
}

async fn by_path(
    State(edge): State<Arc<McpEdge>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
) -> Response {
    // (A slug is always there; were it not, an empty one names no server.)
    let slug = params(path, &request)
        .into_iter()
        .next()
        .unwrap_or_default();
    edge.serve(Some(slug), None, request).await
}

async fn by_path_tracked(
    State(edge): State<Arc<McpEdge>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
) -> Response {
    let mut params = params(path, &request).into_iter();
    let (slug, tracking_id) = (params.next(), params.next());
    edge.serve(
        Some(slug.unwrap_or_default()),
        Some(tracking_id.unwrap_or_default()),
        request,
    )
    .await
}

//! One MCP request through the edge: admit it (size, host, origin, server, tracking id, auth
//! mode, session), then hand it to rmcp with its scope attached, then shape the answer. Every
//! refusal is an HTTP status with a JSON-RPC error body a client can show. The end user a
//! tracking id names is resolved only once rmcp has accepted the request (see `RequestScope`).

use crate::coalesce;
use crate::oauth::bearer;
use crate::sessions::{InFlightId, RequestScope, SessionCheck, SCOPE};
use crate::tenant::{host_name, is_platform_host, slug_from_host, Tenant};
use crate::{McpEdge, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commands::errors::ErrorCode;
use commands::tracking::{self, Presented};
use domain::end_user::TrackingId;
use domain::limit::{LimitKind, Refusal};
use domain::values::AuthMode;
use domain::{Actor, EventMetadata};
use rmcp::transport::streamable_http_server::session::SessionManager;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use uuid::Uuid;

const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;
const INTERNAL_ERROR: i32 = -32603;

/// A request the edge turned away, as the response to send (boxed: responses are large).
type Refused = Box<Response>;

/// An HTTP error with a JSON-RPC error body, so MCP clients can show the message.
fn refuse(status: StatusCode, code: i32, message: impl Into<String>) -> Refused {
    refuse_request(status, code, Value::Null, message)
}

/// An HTTP error with a JSON-RPC error body answering the request with this id.
fn refuse_request(status: StatusCode, code: i32, id: Value, message: impl Into<String>) -> Refused {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message.into() },
    });
    Box::new((status, axum::Json(body)).into_response())
}

fn too_large() -> Refused {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        INVALID_REQUEST,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// What a client is told of a server the edge does not know (or no longer: archived, or its
/// slug since given to another).
pub(crate) fn unknown_server(slug: &str) -> String {
    format!("no MCP server named {slug:?} (it may have been archived)")
}

fn unknown_server_refused(slug: &str) -> Refused {
    refuse(StatusCode::NOT_FOUND, INVALID_REQUEST, unknown_server(slug))
}

fn unavailable(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "MCP edge could not reach the store");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        INTERNAL_ERROR,
        "temporarily unavailable, please retry",
    )
}

/// Whether a response already speaks JSON-RPC (a JSON body or an event stream).
fn is_json_or_stream(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json") || v.starts_with(b"text/event-stream")
    })
}

/// A web origin: scheme, host and port, compared whole (RFC 6454); a port left out is the
/// scheme's default, so `https://a.example` and `https://a.example:443` are one origin.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WebOrigin {
    scheme: String,
    host: String,
    port: u16,
}

impl WebOrigin {
    /// An `Origin` header or an allowed origin: `scheme://host[:port]` (a final `/` allowed).
    /// `None` for anything else: `null`, a path, or no port and a scheme without a default.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (scheme, authority) = value.trim().split_once("://")?;
        Self::of(scheme, authority.strip_suffix('/').unwrap_or(authority))
    }

    /// The origin of `scheme` and an authority (`host[:port]`, as a `Host` header has it).
    pub(crate) fn of(scheme: &str, authority: &str) -> Option<Self> {
        let scheme = scheme.to_ascii_lowercase();
        let authority = authority.trim();
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        // What follows the host (after the `]` of an IPv6 literal): nothing or `:port`.
        let after_host = match authority.strip_prefix('[') {
            Some(rest) => rest.split_once(']')?.1,
            None => authority.rsplit_once(':').map_or("", |(_, port)| port),
        };
        let after_host = after_host.strip_prefix(':').unwrap_or(after_host);
        let port = match after_host {
            "" => match scheme.as_str() {
                "http" => 80,
                "https" => 443,
                _ => return None,
            },
            port => port.parse().ok()?,
        };
        Some(Self {
            host: host_name(authority),
            scheme,
            port,
        })
    }
}

/// Whether a browser page of `origin` may talk to this server: its origin is the server's own
/// (`own`: the scheme and `Host` the request came with) or one the operator allowed, scheme,
/// host and port alike.
pub(crate) fn origin_allowed(origin: &str, own: Option<&WebOrigin>, allowed: &[String]) -> bool {
    if allowed
        .iter()
        .any(|a| a.trim().eq_ignore_ascii_case(origin.trim()))
    {
        return true;
    }
    let Some(origin) = WebOrigin::parse(origin) else {
        return false;
    };
    own == Some(&origin)
        || allowed
            .iter()
            .filter_map(|a| WebOrigin::parse(a))
            .any(|a| a == origin)
}

/// The scheme a request came in with: what a TLS-terminating proxy says (`X-Forwarded-Proto`),
/// else the request's own (plain HTTP unless its URI names one). A browser page cannot set
/// that header on a cross-origin request without a preflight, which this edge never grants.
fn request_scheme(request: &Request) -> String {
    let forwarded = header_str(request, "x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v == "http" || v == "https");
    forwarded
        .or_else(|| request.uri().scheme_str().map(str::to_ascii_lowercase))
        .unwrap_or_else(|| "http".to_owned())
}

/// The protocol era a request declares: 2026-era requests carry no session.
fn is_stateless_era(request: &Request) -> bool {
    declares_stateless_era(request.headers())
}

/// Whether these request headers declare the 2026-era (stateless) protocol.
pub(crate) fn declares_stateless_era(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28")
}

fn header_str(request: &Request, name: impl header::AsHeaderName) -> Option<&str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Bodies up to this size are read (and dropped) before a 413, so the client, still sending,
/// gets the answer instead of a reset connection; larger ones are refused at once.
const DRAIN_LIMIT: usize = 4 * MAX_BODY_BYTES;

/// The declared length of an oversize body, if the request declares one.
fn oversize(request: &Request) -> Option<usize> {
    header_str(request, header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > MAX_BODY_BYTES)
}

/// The tracking id a request presents, as its server takes it: the bare id of a signed one
/// (`{id}.{signature}`), and, on a server that requires signatures, a refusal for an id
/// without a valid one.
fn parse_tracking_id(tenant: &Tenant, raw: Option<&str>) -> Result<Option<TrackingId>, Refused> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let signed_form = "sign tracking ids as {id}.{signature}, the signature being base64url \
                       (no padding) of HMAC-SHA256(tracking secret, id)";
    match tracking::check(raw, tenant.require_signed_tracking, &tenant.tracking_keys) {
        Presented::Id(id) => Ok(Some(id)),
        Presented::Malformed => Err(refuse(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "a tracking id is 1 to 128 letters, digits, '-', '_' or '.'",
        )),
        Presented::Unsigned => Err(refuse(
            StatusCode::FORBIDDEN,
            INVALID_REQUEST,
            format!(
                "{} requires signed tracking ids and this one is not signed: {signed_form}",
                tenant.name
            ),
        )),
        Presented::BadSignature => Err(refuse(
            StatusCode::FORBIDDEN,
            INVALID_REQUEST,
            format!(
                "{} requires signed tracking ids and this one's signature is not valid under \
                 any of its active tracking secrets: {signed_form}",
                tenant.name
            ),
        )),
    }
}

/// The server's auth mode against what the request brings (`oauth` is checked by
/// [`McpEdge::check_bearer`]).
fn check_auth_mode(tenant: &Tenant, has_tracking_id: bool) -> Result<(), Refused> {
    match tenant.auth_mode {
        AuthMode::Tracking if !has_tracking_id => Err(refuse(
            StatusCode::FORBIDDEN,
            INVALID_REQUEST,
            format!(
                "{} identifies its users by tracking id: connect to .../t/{{tracking_id}}/mcp \
                 with the id the product gave you",
                tenant.name
            ),
        )),
        _ => Ok(()),
    }
}

/// What a request to a server in `oauth` mode presents, read before anything is awaited (a
/// request is not `Sync`).
struct Bearer {
    token: Option<String>,
    in_query: bool,
    /// Where the protected resource metadata of the endpoint the request names is.
    resource_metadata: String,
}

impl Bearer {
    fn of(request: &Request) -> Self {
        let host_header = header_str(request, header::HOST)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Self {
            token: bearer::bearer(request).map(str::to_owned),
            in_query: bearer::token_in_query(request),
            resource_metadata: format!(
                "{}://{}/.well-known/oauth-protected-resource{}",
                request_scheme(request),
                host_header.trim(),
                request.uri().path()
            ),
        }
    }
}

/// Who and where a request comes from, for its events; the actor is set once known.
fn request_metadata(request: &Request, tenant: &Tenant) -> EventMetadata {
    EventMetadata {
        request_id: header_str(request, "x-request-id").map(|v| v.chars().take(256).collect()),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: header_str(request, "user-agent").map(|v| v.chars().take(256).collect()),
        ..EventMetadata::by(Actor::Anonymous)
    }
    .for_org(tenant.org_id)
}

impl McpEdge {
    pub(crate) async fn serve(
        &self,
        slug_in_path: Option<String>,
        tracking_id: Option<String>,
        request: Request,
    ) -> Response {
        let started = Instant::now();
        if let Some(declared) = oversize(&request) {
            if declared <= DRAIN_LIMIT {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT).await;
            }
            return *too_large();
        }
        match self.admit(slug_in_path, tracking_id, request).await {
            Ok((request, scope, in_flight)) => {
                let response = self.forward(request, scope.clone()).await;
                if let Some(method) = scope.method.get() {
                    self.metrics.record(*method, started.elapsed());
                }
                match in_flight {
                    // The request's id is free again once its answer is sent, or the client
                    // went away (hyper drops the body then).
                    Some(id) => response.map(|body| Body::new(Holding { body, _held: id })),
                    None => response,
                }
            }
            Err(refused) => *refused,
        }
    }

    /// Every check before the protocol; on success the request carries its scope (tenant,
    /// tracking id, event metadata), which the session store sees too. The end user is not
    /// looked up here: a request the protocol then refuses must not create one (see
    /// [`RequestScope::identified`]). A request in a session holds its JSON-RPC id until
    /// answered (see [`crate::sessions::InFlight`]).
    async fn admit(
        &self,
        slug_in_path: Option<String>,
        tracking_id: Option<String>,
        mut request: Request,
    ) -> Result<(Request, Arc<RequestScope>, Option<InFlightId>), Refused> {
        let host = self.check_host_and_origin(&request)?;
        let tenant = self.tenant(slug_in_path.as_deref(), &host).await?;
        let tracking_id = parse_tracking_id(&tenant, tracking_id.as_deref())?;
        // (Nothing borrowed from the request is held across an await: its body is not `Sync`.)
        let metadata = request_metadata(&request, &tenant);
        let signed_in = if tenant.auth_mode == AuthMode::Oauth {
            let presented = Bearer::of(&request);
            Some(self.check_bearer(presented, &tenant, &metadata).await?)
        } else {
            check_auth_mode(&tenant, tracking_id.is_some())?;
            None
        };
        if let Some(tracking_id) = &tracking_id {
            self.check_new_end_user(&tenant, tracking_id, &metadata)
                .await?;
        }
        let mut in_flight = None;
        if is_stateless_era(&request) {
            // The 2026-07-28 revision has no sessions: a session id such a request names is
            // dropped before rmcp sees it, so the request can neither enter nor change any
            // session (rmcp serves an `initialize` in the session it names, whatever the
            // header says), nor is it recorded under one.
            request.headers_mut().remove("mcp-session-id");
        } else if let Some(session_id) = header_str(&request, "mcp-session-id").map(str::to_owned) {
            let tracking_id = tracking_id.as_ref().map(|t| t.as_str());
            self.check_session(&session_id, &tenant, tracking_id, signed_in)
                .await?;
            if request.method() == Method::POST {
                let claimed;
                (request, claimed) = self.claim_request_id(&session_id, request).await?;
                in_flight = claimed;
            }
        }
        let mut scope = RequestScope::new(&self.core.store, tenant, tracking_id, metadata);
        scope.signed_in = signed_in;
        let scope = Arc::new(scope);
        request.extensions_mut().insert(scope.clone());
        Ok((request, scope, in_flight))
    }

    /// A server in `oauth` mode admits only a bearer token of ours, in the `Authorization`
    /// header, live, issued for this server and org, with the `mcp` scope: the end user it
    /// signed in. Anything else is answered with the challenge clients discover the
    /// authorization server from.
    async fn check_bearer(
        &self,
        presented: Bearer,
        tenant: &Tenant,
        metadata: &EventMetadata,
    ) -> Result<Uuid, Refused> {
        let refused = |r| Box::new(bearer::refused(r, &presented.resource_metadata));
        // A token refused for what it is (forged, expired, revoked, another server's, in the
        // URL) is recorded; a missing one is how every client starts, and is not.
        let record = |reason: &'static str, error: &'static str| {
            self.core.oauth.refusals.record(
                &self.core.store,
                metadata,
                tenant.org_id,
                domain::oauth::OauthRefusal {
                    server_id: tenant.server_id,
                    endpoint: "mcp".to_owned(),
                    error: error.to_owned(),
                    reason: reason.to_owned(),
                    client_id: None,
                },
            )
        };
        if presented.in_query {
            record("an access token in the query string", "invalid_request").await;
            return Err(refused(bearer::Refusal::InQuery));
        }
        let Some(token) = &presented.token else {
            return Err(refused(bearer::Refusal::Missing));
        };
        let grant = match self
            .core
            .oauth
            .tokens
            .resolve(&self.core.store, token)
            .await
        {
            Ok(Some(grant)) => grant,
            Ok(None) => {
                record("a token that is not ours, or revoked", "invalid_token").await;
                return Err(refused(bearer::Refusal::Invalid));
            }
            Err(e) => return Err(unavailable(e)),
        };
        if let Err(refusal) = bearer::admits(&grant, tenant) {
            let reason = match refusal {
                bearer::Refusal::InsufficientScope => "a token without the mcp scope",
                _ if grant.server_id != tenant.server_id => "a token of another server",
                _ => "an expired token",
            };
            let error = match refusal {
                bearer::Refusal::InsufficientScope => "insufficient_scope",
                _ => "invalid_token",
            };
            record(reason, error).await;
            return Err(refused(refusal));
        }
        Ok(grant.end_user_id)
    }

    /// A JSON-RPC request in a session claims its id until it is answered; one that reuses an
    /// id still in flight is refused at once, before rmcp (which would leave requests sharing
    /// an id unanswered, though each of them ran). The body is read here, and handed on.
    async fn claim_request_id(
        &self,
        session_id: &str,
        request: Request,
    ) -> Result<(Request, Option<InFlightId>), Refused> {
        /// Just enough of a JSON-RPC message to tell a request and its id.
        #[derive(serde::Deserialize)]
        struct Probe {
            method: Option<serde::de::IgnoredAny>,
            id: Option<Value>,
        }
        let (parts, body) = request.into_parts();
        let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let e = e.into_inner();
                return Err(if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        INVALID_REQUEST,
                        "the request body could not be read",
                    )
                });
            }
        };
        let claimed = match serde_json::from_slice::<Probe>(&bytes) {
            Ok(Probe {
                method: Some(_),
                id: Some(id),
            }) => match self.in_flight.claim(session_id, &id) {
                Some(claimed) => Some(claimed),
                None => {
                    return Err(refuse_request(
                        StatusCode::BAD_REQUEST,
                        INVALID_REQUEST,
                        id,
                        "Invalid Request: request id already in flight in this session; a \
                         request id must not be reused within a session",
                    ))
                }
            },
            // Notifications, responses, and what is not JSON-RPC at all: rmcp answers those.
            _ => None,
        };
        Ok((Request::from_parts(parts, Body::from(bytes)), claimed))
    }

    /// Only our hosts (DNS-rebinding protection), and browsers only from the server's own
    /// origin or an allowed one. Returns the normalized host.
    fn check_host_and_origin(&self, request: &Request) -> Result<String, Refused> {
        let config = &self.core.config;
        let host_header = header_str(request, header::HOST)
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = host_name(&host_header);
        let own = WebOrigin::of(&request_scheme(request), &host_header);
        if !is_platform_host(&host, &config.base_domain, &config.extra_hosts) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                INVALID_REQUEST,
                format!("Forbidden: {host:?} is not a host of this platform"),
            ));
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !origin_allowed(origin, own.as_ref(), &config.allowed_origins) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    INVALID_REQUEST,
                    format!("Forbidden: requests from origin {origin:?} are not allowed"),
                ));
            }
        }
        Ok(host)
    }

    /// The active server the path or the host names.
    async fn tenant(&self, slug_in_path: Option<&str>, host: &str) -> Result<Arc<Tenant>, Refused> {
        let base = &self.core.config.base_domain;
        let Some(slug) = slug_in_path.or_else(|| slug_from_host(host, base)) else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                INVALID_REQUEST,
                format!(
                    "no MCP server at {host}: connect to {{slug}}.{base}/mcp or /s/{{slug}}/mcp"
                ),
            ));
        };
        let slug = slug.to_ascii_lowercase();
        match self.core.tenants.resolve(&self.core.store, &slug).await {
            Ok(Some(tenant)) => Ok(tenant),
            Ok(None) => Err(unknown_server_refused(&slug)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A tracking id this org has not seen would bring a new end user into being: the
    /// platform limits on new end users per client address and per server are checked here,
    /// before anything is written (a request they refuse creates nobody). A request with a new
    /// tracking id that the protocol then refuses still counts against them.
    async fn check_new_end_user(
        &self,
        tenant: &Tenant,
        tracking_id: &TrackingId,
        metadata: &EventMetadata,
    ) -> Result<(), Refused> {
        let guard = &self.core.config.guard;
        let limits = &guard.limits;
        if limits.new_end_users_per_server_per_hour == 0
            && limits.new_end_users_per_address_per_hour == 0
        {
            return Ok(());
        }
        match self
            .core
            .identities
            .known(&self.core.store, tenant.org_id, tracking_id)
            .await
        {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let address = metadata.client_ip.as_deref();
        let Err(refused) = guard.new_end_user(tenant.server_id, address) else {
            return Ok(());
        };
        let retry = refused.retry_after_secs;
        let (key, whose) = match refused.limit {
            LimitKind::NewEndUsersPerAddress => (
                address.unwrap_or_default().to_owned(),
                "this address brings",
            ),
            _ => (tenant.server_id.to_string(), "this server sees"),
        };
        let refusal = Refusal {
            limit: refused.limit,
            allowed: refused.allowed,
            org_id: Some(tenant.org_id),
            server_id: Some(tenant.server_id),
            end_user_id: None,
            user_id: None,
            retry_after_secs: Some(retry),
        };
        guard
            .record(&self.core.store, refusal, &key, metadata)
            .await;
        let mut refused_response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            INVALID_REQUEST,
            format!(
                "too many new end users: {whose} at most {} new tracking ids an hour; retry in \
                 {retry} s ({})",
                refused.allowed,
                ErrorCode::LimitReached.as_str()
            ),
        );
        refused_response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        Err(refused_response)
    }

    /// A session named by a 2025-era request must be a live session of this very server and
    /// end user (the tracking id it was started with), whichever instance holds it.
    async fn check_session(
        &self,
        session_id: &str,
        tenant: &Tenant,
        tracking_id: Option<&str>,
        signed_in: Option<Uuid>,
    ) -> Result<(), Refused> {
        let not_found = || {
            refuse(
                StatusCode::NOT_FOUND,
                INVALID_REQUEST,
                "Session not found: it has ended, or it was started on another server or for \
                 another end user; initialize a new session",
            )
        };
        match self
            .core
            .sessions
            .check(session_id, tenant.server_id, tracking_id, signed_in)
            .await
        {
            Ok(SessionCheck::Live) => Ok(()),
            Ok(SessionCheck::NotYours) => Err(not_found()),
            Ok(SessionCheck::Gone) => {
                // Ended elsewhere: drop any copy held here.
                let id = session_id.to_owned().into();
                if self.local_sessions.has_session(&id).await.unwrap_or(false) {
                    let _ = self.local_sessions.close_session(&id).await;
                }
                Err(not_found())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// rmcp speaks the protocol; we fix up what it answers.
    async fn forward(&self, request: Request, scope: Arc<RequestScope>) -> Response {
        let is_post = request.method() == Method::POST;
        let is_delete = request.method() == Method::DELETE;
        let sent_json = header_str(&request, header::CONTENT_TYPE).is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
        let response = SCOPE
            .scope(scope.clone(), self.service.handle(request))
            .await;
        if scope.tenant_moved() {
            // The cached server is stale: its slug names another server now, or none. Nothing
            // was filed; the request is answered as the next look-up will answer it.
            self.core.tenants.forget(&scope.tenant.slug).await;
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
            return *unknown_server_refused(&scope.tenant.slug);
        }
        if let Some(message) = scope.limited.get() {
            // The end user has as many open sessions as they may: this one is not handed out.
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
            return *refuse(
                StatusCode::TOO_MANY_REQUESTS,
                INVALID_REQUEST,
                message.clone(),
            );
        }
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
            return *unavailable("session store write failed");
        }
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE && sent_json {
            // rmcp answers a JSON body it cannot parse with 415; JSON-RPC calls that a parse
            // error, which is the client's mistake: 400 with code -32700.
            return *refuse(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "Parse error: the body is not a JSON-RPC message",
            );
        }
        if response.status().is_client_error() && !is_json_or_stream(response.headers()) {
            // rmcp answers transport mistakes (a missing Accept, a wrong content type, a
            // request without a session) in plain text; clients read a JSON-RPC error. A 405
            // keeps rmcp's `Allow` (what this era of the protocol takes).
            let status = response.status();
            let allow = response.headers().get(header::ALLOW).cloned();
            let text = axum::body::to_bytes(Body::new(response.into_body()), 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .unwrap_or_default();
            let message = if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("Bad Request")
                    .to_owned()
            } else {
                text
            };
            let mut refused = refuse(status, INVALID_REQUEST, message);
            if let Some(allow) = allow {
                refused.headers_mut().insert(header::ALLOW, allow);
            }
            return *refused;
        }
        if is_delete && response.status() == StatusCode::ACCEPTED {
            // A session ended: rmcp says 202, which the official Python SDK logs as "Session
            // termination failed" (it takes only 200 and 204). The specification names no code,
            // and every client we know accepts 204.
            return StatusCode::NO_CONTENT.into_response();
        }
        let (parts, body) = response.into_parts();
        let mut body = coalesce::Coalesce::new(body);
        let streamed = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if is_post && streamed {
            // Headers and the answer in one write.
            let first = coalesce::read_to_first_message(&mut body).await;
            return Response::from_parts(parts, Body::new(coalesce::Prefixed::new(first, body)));
        }
        Response::from_parts(parts, Body::new(body))
    }
}

/// A response body that holds something (a request id in flight) until it is dropped: sent
/// to its end, or abandoned by a client that went away.
struct Holding<T> {
    body: Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_host_or_listed_origins_pass() {
        let allowed = vec!["http://localhost:6274".to_owned()];
        let own = WebOrigin::of("http", "acme.localhost:8080");
        let own = own.as_ref();
        assert!(origin_allowed("http://acme.localhost:8080", own, &[]));
        assert!(origin_allowed("HTTP://Acme.Localhost:8080", own, &[]));
        assert!(origin_allowed("http://localhost:6274", own, &allowed));
        assert!(!origin_allowed("https://evil.example", own, &allowed));
        assert!(!origin_allowed("null", own, &allowed));
    }

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        let allowed = vec![
            "http://localhost:6274".to_owned(),
            "https://app.example/".to_owned(),
        ];
        let own = WebOrigin::of("http", "acme.localhost:8080");
        let own = own.as_ref();
        // Same host, another scheme or port: another origin.
        assert!(!origin_allowed("https://acme.localhost:8080", own, &[]));
        assert!(!origin_allowed("http://acme.localhost:1234", own, &[]));
        assert!(!origin_allowed("http://acme.localhost", own, &[]));
        assert!(!origin_allowed("https://localhost:6274", own, &allowed));
        assert!(!origin_allowed("http://localhost:6275", own, &allowed));
        assert!(!origin_allowed("http://app.example", own, &allowed));
        // Default ports are the same origin written either way.
        assert!(origin_allowed("https://app.example:443", own, &allowed));
        assert!(origin_allowed("https://app.example", own, &allowed));
        let tls = WebOrigin::of("https", "acme.example.com");
        assert!(origin_allowed(
            "https://acme.example.com",
            tls.as_ref(),
            &[]
        ));
        assert!(origin_allowed(
            "https://acme.example.com:443",
            tls.as_ref(),
            &[]
        ));
        assert!(!origin_allowed(
            "http://acme.example.com",
            tls.as_ref(),
            &[]
        ));
        let ipv6 = WebOrigin::of("http", "[::1]:8080");
        assert!(origin_allowed("http://[::1]:8080", ipv6.as_ref(), &[]));
        assert!(!origin_allowed("http://[::1]:8081", ipv6.as_ref(), &[]));
        // Not an origin at all.
        for bad in [
            "http://a.example/path",
            "http://u@a.example",
            "acme.localhost:8080",
            "http://",
        ] {
            assert!(!origin_allowed(bad, own, &[]), "{bad}");
        }
    }

    #[test]
    fn only_2026_requests_are_stateless() {
        let request = |version: &str| {
            Request::builder()
                .header("mcp-protocol-version", version)
                .body(Body::empty())
                .unwrap_or_default()
        };
        assert!(is_stateless_era(&request("2026-07-28")));
        assert!(!is_stateless_era(&request("2025-11-25")));
    }
}

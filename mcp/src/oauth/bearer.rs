//! Bearer tokens at the MCP endpoint (RFC 6750, MCP authorization "access token usage"): only in
//! the `Authorization` header, only ours, only for the server and org they were issued for, and
//! only with the scope an MCP request needs.
//!
//! A token's validation is cached per instance for at most [`TOKEN_TTL`] from when its look-up
//! began, so the hot path costs a hash and a map read. A revocation committed through this
//! process empties the cache at once; one committed through another instance is honoured here
//! within [`TOKEN_TTL`] (1 s), the same rule and bound as server configuration changes (see
//! `docs/design.md`).

use crate::tenant::Tenant;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use commands::services::oauth::{self, AccessGrant, SCOPE_MCP};
use eventstore::{EventStore, StoreError};
use moka::future::Cache;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a validated (or refused) token is trusted without asking the store again.
pub const TOKEN_TTL: Duration = Duration::from_secs(1);

const MAX_CACHED: u64 = 100_000;

#[derive(Clone)]
struct Cached {
    grant: Option<Arc<AccessGrant>>,
    read_at: Instant,
}

/// Access token (by hash) → the grant it is live in, briefly cached. Clones share the cache.
///
/// A grant that changes through this process (rotated, revoked) is noted with when; a cached
/// validation of that grant read before the change is not used again. So a revocation here is
/// honoured at once, and issuing tokens (every sign-in, every refresh) does not empty the
/// cache of everyone else's tokens, which it did when any grant's commit cleared it all.
#[derive(Clone)]
pub struct AccessTokens {
    entries: Cache<String, Cached>,
    /// Grants changed here within the TTL, and when.
    changed: moka::sync::Cache<Uuid, Instant>,
}

impl Default for AccessTokens {
    fn default() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(TOKEN_TTL)
                .build(),
            changed: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(TOKEN_TTL)
                .build(),
        }
    }
}

impl AccessTokens {
    /// The grant a token is live in, if any (neither checked for server nor scope here).
    pub async fn resolve(
        &self,
        store: &EventStore,
        token: &str,
    ) -> Result<Option<Arc<AccessGrant>>, Arc<StoreError>> {
        let key = oauth::token_hash(token);
        for _ in 0..2 {
            let cached = self
                .entries
                .try_get_with_by_ref(&key, async {
                    let read_at = Instant::now();
                    let grant = oauth::access_grant(store, token).await?;
                    Ok::<_, StoreError>(Cached {
                        grant: grant.map(Arc::new),
                        read_at,
                    })
                })
                .await?;
            let changed_since = cached.grant.as_ref().is_some_and(|grant| {
                self.changed
                    .get(&grant.grant_id)
                    .is_some_and(|at| at >= cached.read_at)
            });
            if cached.read_at.elapsed() < TOKEN_TTL && !changed_since {
                return Ok(cached.grant);
            }
            self.entries.invalidate(&key).await;
        }
        Ok(oauth::access_grant(store, token).await?.map(Arc::new))
    }

    /// A grant changed through this process (a rotation, a revocation): validations of its
    /// tokens read before now, including look-ups under way, are not used again.
    pub fn grant_changed(&self, grant_id: Uuid) {
        self.changed.insert(grant_id, Instant::now());
    }
}

/// Why a request's bearer token does not admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not ours, forged, expired, revoked, or another server's or org's.
    Invalid,
    /// Valid, without the scope an MCP request needs (step-up).
    InsufficientScope,
    /// A token in the query string (RFC 6750 §2.3 is not allowed by MCP authorization).
    InQuery,
}

/// The bearer token of a request, from its `Authorization` header.
pub fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether the query string carries a token (`access_token`, RFC 6750 §2.3).
pub fn token_in_query(request: &Request) -> bool {
    request.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

/// Whether a live grant admits a request to this server now.
pub fn admits(grant: &AccessGrant, tenant: &Tenant) -> Result<(), Refusal> {
    if grant.server_id != tenant.server_id
        || grant.org_id != tenant.org_id
        || Utc::now() >= grant.expires_at
    {
        return Err(Refusal::Invalid);
    }
    if !grant.scopes.iter().any(|s| s == SCOPE_MCP) {
        return Err(Refusal::InsufficientScope);
    }
    Ok(())
}

/// The answer to a refused request: 401 (or 403 for a missing scope, 400 for a token in the
/// query) with the challenge MCP clients start discovery from (RFC 9728 §5.1, RFC 6750 §3).
pub fn refused(refusal: Refusal, resource_metadata: &str) -> Response {
    let (status, error, message) = match refusal {
        Refusal::Missing => (
            StatusCode::UNAUTHORIZED,
            None,
            "this server requires signing in (OAuth): authorize with its authorization server",
        ),
        Refusal::Invalid => (
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            "the access token is not valid for this server (expired, revoked, or issued for \
             another)",
        ),
        Refusal::InsufficientScope => (
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token lacks the scope this request needs",
        ),
        Refusal::InQuery => (
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "access tokens are accepted only in the Authorization header, never in the URL",
        ),
    };
    let mut challenge =
        format!("Bearer resource_metadata=\"{resource_metadata}\", scope=\"{SCOPE_MCP}\"");
    if let Some(error) = error {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{message}\""
        ));
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32600, "message": message },
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(auth: Option<&str>, uri: &str) -> Request {
        let mut builder = Request::builder().uri(uri);
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Body::empty()).unwrap_or_default()
    }

    #[test]
    fn only_the_header_carries_a_token() {
        assert_eq!(
            bearer(&request(Some("Bearer mcp_at_x"), "/mcp")),
            Some("mcp_at_x")
        );
        assert_eq!(
            bearer(&request(Some("bearer  mcp_at_x "), "/mcp")),
            Some("mcp_at_x")
        );
        assert_eq!(bearer(&request(Some("Basic abc"), "/mcp")), None);
        assert_eq!(bearer(&request(None, "/mcp")), None);
        assert!(token_in_query(&request(None, "/mcp?access_token=mcp_at_x")));
        assert!(!token_in_query(&request(None, "/mcp?x=1")));
    }

    #[test]
    fn refusals_carry_the_challenge() {
        let rm = "http://127.0.0.1/.well-known/oauth-protected-resource/s/a/mcp";
        let r = refused(Refusal::Missing, rm);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer resource_metadata=\""));
        assert!(challenge.contains("scope=\"mcp\""));
        let r = refused(Refusal::InsufficientScope, rm);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default()
            .contains("error=\"insufficient_scope\""));
    }
}

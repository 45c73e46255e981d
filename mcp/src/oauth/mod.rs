//! Each hosted server in `oauth` mode is an OAuth 2.1 protected resource with an authorization
//! server of its own (MCP authorization, revisions 2025-11-25 and 2026-07-28).
//!
//! A server answers at two forms of URL, and so does its authorization server, whose issuer is
//! exact per server and per form:
//!
//! - host form: MCP at `{scheme}://{slug}.{base}/mcp`, issuer `{scheme}://{slug}.{base}`;
//! - path form: MCP at `{scheme}://{base}/s/{slug}/mcp`, issuer `{scheme}://{base}/s/{slug}`.
//!
//! The protected resource metadata (RFC 9728) sits at `/.well-known/oauth-protected-resource`
//! followed by the MCP endpoint's path, and names that endpoint as the `resource`; the
//! authorization server's metadata (RFC 8414) at each place a client looks for it. Tokens are
//! bound to the server (any of its URL forms names it) and to its org.

pub mod authorize;
pub mod bearer;
pub mod cimd;
pub mod discovery;
pub mod endpoints;
pub mod pages;
pub mod redirects;

use crate::tenant::{host_name, is_platform_host, slug_from_host, Tenant};
use crate::McpEdge;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use commands::errors::{OauthErrorCode, OauthFailure};
use domain::values::AuthMode;
use std::sync::Arc;

/// One hosted server's authorization server as a request reached it: the server, and the
/// origin and path prefix its URLs are built from.
#[derive(Debug, Clone)]
pub struct Site {
    pub tenant: Arc<Tenant>,
    /// `{scheme}://{host[:port]}` as the client reached us.
    pub origin: String,
    /// `""` (host form) or `/s/{slug}` (path form).
    pub prefix: String,
}

impl Site {
    /// The issuer: exact per server and form (RFC 8414 §2).
    pub fn issuer(&self) -> String {
        format!("{}{}", self.origin, self.prefix)
    }

    /// One of the authorization server's endpoints (`authorize`, `token`, ...).
    pub fn endpoint(&self, name: &str) -> String {
        format!("{}{}/oauth/{name}", self.origin, self.prefix)
    }

    /// The MCP endpoint (with a tracking id's segment or not): the resource (RFC 8707), with
    /// no trailing slash.
    pub fn resource(&self, tracking: Option<&str>) -> String {
        match tracking {
            Some(t) => format!("{}{}/t/{t}/mcp", self.origin, self.prefix),
            None => format!("{}{}/mcp", self.origin, self.prefix),
        }
    }

    /// Where the protected resource metadata of that MCP endpoint is (RFC 9728 §3.1).
    pub fn resource_metadata(&self, tracking: Option<&str>) -> String {
        let path = match tracking {
            Some(t) => format!("{}/t/{t}/mcp", self.prefix),
            None => format!("{}/mcp", self.prefix),
        };
        format!("{}/.well-known/oauth-protected-resource{path}", self.origin)
    }

    /// Whether `resource` (RFC 8707) names this server: one of its MCP URLs, with or without a
    /// tracking id, in the host form (`{slug}.{base}`) or the path form on one of our hosts,
    /// with the scheme and port the client reached us on. Compared without case in the scheme
    /// and host, exactly in the path. A URL on any other host is another resource, however its
    /// path reads: a token for it would be a token a foreign server could replay here.
    pub fn names_this_server(
        &self,
        resource: &str,
        base_domain: &str,
        extra_hosts: &[String],
    ) -> bool {
        let Ok(url) = url::Url::parse(resource) else {
            return false;
        };
        if url.fragment().is_some() || url.query().is_some() {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let Ok(own) = url::Url::parse(&self.origin) else {
            return false;
        };
        if own.scheme() != url.scheme()
            || own.port_or_known_default() != url.port_or_known_default()
        {
            return false;
        }
        let host = host_name(host);
        let slug = &self.tenant.slug;
        let path = url.path();
        let mcp_path = |rest: &str| {
            rest == "/mcp"
                || rest.strip_prefix("/t/").is_some_and(|t| {
                    t.strip_suffix("/mcp")
                        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
                })
        };
        match slug_from_host(&host, base_domain) {
            Some(named) => named == slug.as_str() && mcp_path(path),
            None => {
                is_platform_host(&host, base_domain, extra_hosts)
                    && path
                        .strip_prefix("/s/")
                        .and_then(|rest| rest.strip_prefix(slug.as_str()))
                        .is_some_and(mcp_path)
            }
        }
    }
}

/// The scheme a request came in with (see `edge::request_scheme`).
fn scheme(headers: &HeaderMap, request_scheme: Option<&str>) -> String {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v == "http" || v == "https")
        .or_else(|| request_scheme.map(str::to_ascii_lowercase))
        .unwrap_or_else(|| "http".to_owned())
}

/// An OAuth error answer: `{"error", "error_description"}` with its status (RFC 6749 §5.2).
pub fn oauth_error(failure: OauthFailure) -> Response {
    let status = StatusCode::from_u16(failure.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        axum::Json(serde_json::json!({
            "error": failure.code.as_str(),
            "error_description": failure.description,
        })),
    )
        .into_response();
    no_store(&mut response);
    if failure.code == OauthErrorCode::InvalidClient {
        // RFC 6749 §5.2: a 401 names the scheme the client may authenticate with.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    response
}

/// `Cache-Control: no-store` (RFC 6749 §5.1) and `Pragma: no-cache`.
pub fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
        .headers_mut()
        .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
}

fn not_found(message: impl Into<String>) -> Response {
    let mut response = oauth_error(OauthFailure::new(
        OauthErrorCode::InvalidRequest,
        message.into(),
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

impl McpEdge {
    /// Records a refused OAuth request of this site (throttled; see `oauth::Refusals`).
    pub(crate) async fn record_refusal(
        &self,
        site: &Site,
        metadata: &domain::EventMetadata,
        endpoint: &str,
        error: &str,
        reason: &str,
        client_id: Option<&str>,
    ) {
        self.core
            .oauth
            .refusals
            .record(
                &self.core.store,
                metadata,
                site.tenant.org_id,
                domain::oauth::OauthRefusal {
                    server_id: site.tenant.server_id,
                    endpoint: endpoint.to_owned(),
                    error: error.to_owned(),
                    reason: reason.to_owned(),
                    client_id: client_id.map(str::to_owned),
                },
            )
            .await;
    }

    /// The authorization server a request is for: our host, an active server in `oauth` mode
    /// named by the path (`/s/{slug}`) or the host.
    pub(crate) async fn site(
        &self,
        slug_in_path: Option<&str>,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Site, Response> {
        let config = &self.core.config;
        let host_header = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let scheme = scheme(headers, uri.scheme_str());
        let host = host_name(&host_header);
        if !is_platform_host(&host, &config.base_domain, &config.extra_hosts) {
            return Err(not_found(format!(
                "{host:?} is not a host of this platform"
            )));
        }
        let Some(slug) = slug_in_path.or_else(|| slug_from_host(&host, &config.base_domain)) else {
            return Err(not_found("no MCP server here"));
        };
        let slug = slug.to_ascii_lowercase();
        let tenant = match self.core.tenants.resolve(&self.core.store, &slug).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Err(not_found(crate::edge::unknown_server(&slug))),
            Err(e) => {
                tracing::error!(error = %e, "OAuth endpoint could not reach the store");
                return Err(oauth_error(OauthFailure::unavailable()));
            }
        };
        if tenant.auth_mode != AuthMode::Oauth {
            return Err(not_found(format!(
                "{} does not sign its users in (its auth mode is {})",
                tenant.name,
                tenant.auth_mode.as_str()
            )));
        }
        let origin = format!("{scheme}://{}", host_header.trim().to_ascii_lowercase());
        Ok(Site {
            tenant,
            origin,
            prefix: slug_in_path
                .map(|s| format!("/s/{}", s.to_ascii_lowercase()))
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(prefix: &str, origin: &str) -> Site {
        Site {
            tenant: Arc::new(Tenant {
                server_id: uuid::Uuid::nil(),
                org_id: uuid::Uuid::nil(),
                slug: "acme".into(),
                name: "Acme".into(),
                auth_mode: AuthMode::Oauth,
                support_tool: false,
                walkthrough_tools: false,
                conformance_fixtures: false,
                require_signed_tracking: false,
                tracking_keys: vec![],
                identity_provider_id: None,
            }),
            origin: origin.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn urls_are_exact_per_form() {
        let path = site("/s/acme", "http://127.0.0.1:8080");
        assert_eq!(path.issuer(), "http://127.0.0.1:8080/s/acme");
        assert_eq!(path.resource(None), "http://127.0.0.1:8080/s/acme/mcp");
        assert_eq!(
            path.resource_metadata(Some("u1")),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/s/acme/t/u1/mcp"
        );
        let host = site("", "https://acme.mcp.example.com");
        assert_eq!(host.issuer(), "https://acme.mcp.example.com");
        assert_eq!(
            host.endpoint("token"),
            "https://acme.mcp.example.com/oauth/token"
        );
    }

    #[test]
    fn a_resource_names_this_server_in_either_form() {
        let s = site("/s/acme", "http://127.0.0.1:8080");
        let base = "localhost";
        let s = |resource: &str| s.names_this_server(resource, base, &[]);
        assert!(s("http://127.0.0.1:8080/s/acme/mcp"));
        // Another host with our path is another resource; so is another port.
        assert!(!s("http://evil.example:8080/s/acme/mcp"));
        assert!(!s("http://127.0.0.1:9090/s/acme/mcp"));
        assert!(!s("http://acme.localhost:9090/mcp"));
        assert!(s("http://acme.localhost:8080/mcp"));
        assert!(s("http://127.0.0.1:8080/s/acme/t/u1/mcp"));
        assert!(!s("http://127.0.0.1:8080/s/acme/mcp/"));
        assert!(!s("http://127.0.0.1:8080/s/other/mcp"));
        assert!(!s("http://127.0.0.1:8080/s/acmex/mcp"));
        assert!(!s("http://other.localhost:8080/mcp"));
        assert!(!s("https://127.0.0.1:8080/s/acme/mcp"));
        assert!(!s("http://127.0.0.1:8080/s/acme/mcp#x"));
        assert!(!s("not a url"));
    }
}

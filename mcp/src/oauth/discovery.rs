//! Discovery: the protected resource metadata (RFC 9728) of each MCP endpoint, and the
//! authorization server's metadata (RFC 8414, and the OpenID Connect discovery document clients
//! also try) at every place MCP clients look for it.

use super::Site;
use axum::response::{IntoResponse, Response};
use commands::services::oauth::{SCOPES_SUPPORTED, SCOPE_MCP};
use serde_json::json;

/// RFC 9728 §2: what protects this MCP endpoint, and who issues its tokens.
pub fn protected_resource(site: &Site, tracking: Option<&str>) -> Response {
    axum::Json(json!({
        "resource": site.resource(tracking),
        "authorization_servers": [site.issuer()],
        "scopes_supported": [SCOPE_MCP],
        "bearer_methods_supported": ["header"],
        "resource_name": site.tenant.name,
    }))
    .into_response()
}

/// RFC 8414 §2 (also answered at the OpenID discovery paths: the same document, which is all
/// an MCP client reads there; it claims nothing of OpenID Connect, since we issue no ID
/// tokens).
pub fn authorization_server(site: &Site) -> Response {
    axum::Json(json!({
        "issuer": site.issuer(),
        "authorization_endpoint": site.endpoint("authorize"),
        "token_endpoint": site.endpoint("token"),
        "registration_endpoint": site.endpoint("register"),
        "revocation_endpoint": site.endpoint("revoke"),
        "userinfo_endpoint": site.endpoint("userinfo"),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

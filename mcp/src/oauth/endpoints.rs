//! The authorization server's endpoints that speak to clients directly: registration (RFC 7591),
//! token (RFC 6749 §3.2, OAuth 2.1), revocation (RFC 7009) and userinfo. Every refusal is an
//! RFC 6749 error object; every token answer is `Cache-Control: no-store`.

use super::{bearer, cimd, no_store, oauth_error, redirects, Site};
use crate::McpEdge;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use commands::errors::{OauthErrorCode, OauthFailure};
use commands::services::oauth::{self, IssuedTokens, Registration};
use commands::services::sign_in::ProviderStanding;
use domain::end_user::EndUser;
use domain::{Actor, EventMetadata};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use uuid::Uuid;

/// Largest registration or form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Who and where an OAuth request comes from, for its events.
pub(crate) fn metadata(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    site: &Site,
) -> EventMetadata {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    EventMetadata {
        request_id: header("x-request-id"),
        client_ip: peer.map(|p| p.ip().to_string()),
        user_agent: header("user-agent"),
        ..EventMetadata::by(Actor::Anonymous)
    }
    .for_org(site.tenant.org_id)
}

pub(crate) fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

pub(crate) async fn body(request: Request) -> Result<(HeaderMap, Bytes), OauthFailure> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            OauthFailure::new(
                OauthErrorCode::InvalidRequest,
                "the body could not be read or is too large",
            )
        })?;
    Ok((parts.headers, bytes))
}

/// An `application/x-www-form-urlencoded` body; a parameter given twice is refused (RFC 6749
/// §3.2).
fn form(headers: &HeaderMap, bytes: &[u8]) -> Result<HashMap<String, String>, OauthFailure> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OauthFailure::new(
            OauthErrorCode::InvalidRequest,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    super::authorize::parameters(bytes)
        .map_err(|message| OauthFailure::new(OauthErrorCode::InvalidRequest, message))
}

/// The client a token or revocation request authenticates as: a public client names itself
/// with `client_id` (in the body, or as HTTP Basic's user name).
fn client_id(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    if let Some(id) = params.get("client_id").filter(|id| !id.is_empty()) {
        return Some(id.clone());
    }
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, _) = decoded.split_once(':')?;
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?;
    (!id.is_empty()).then(|| id.into_owned())
}

fn invalid_client() -> OauthFailure {
    OauthFailure::new(
        OauthErrorCode::InvalidClient,
        "unknown client: register again (dynamic client registration) or use a client id \
         metadata document",
    )
}

/// A client as this server knows it.
pub(crate) struct KnownClient {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
}

/// The client, known to this server: a DCR registration that has not expired, or a client id
/// metadata document (fetched or cached; its first acceptance here is recorded).
pub(crate) async fn known_client(
    edge: &McpEdge,
    site: &Site,
    client_id: &str,
    metadata: &EventMetadata,
) -> Result<KnownClient, OauthFailure> {
    let store = &edge.core.store;
    if cimd::is_document_id(client_id) {
        let (document, fetched) = edge
            .core
            .oauth
            .documents
            .resolve(&edge.core.config.outbound, client_id)
            .await?;
        if fetched {
            oauth::cimd_client_seen(
                store,
                metadata,
                site.tenant.org_id,
                site.tenant.server_id,
                client_id,
                Registration {
                    client_name: document.client_name.clone(),
                    client_uri: None,
                    redirect_uris: document.redirect_uris.clone(),
                    refused_redirect_uris: document.refused_redirect_uris.clone(),
                },
                Utc::now(),
            )
            .await?;
        }
        return Ok(KnownClient {
            client_name: document.client_name.clone(),
            redirect_uris: document.redirect_uris.clone(),
        });
    }
    match oauth::dcr_client(store, site.tenant.server_id, client_id, Utc::now()).await? {
        Some(client) => Ok(KnownClient {
            client_name: client.client_name,
            redirect_uris: client.redirect_uris,
        }),
        None => Err(invalid_client()),
    }
}

#[derive(Deserialize)]
struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Vec<serde_json::Value>,
    client_name: Option<String>,
    client_uri: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
}

/// `POST …/oauth/register` (RFC 7591 §3).
pub async fn register(edge: &McpEdge, site: Site, request: Request) -> Response {
    let peer = peer(&request);
    let address = peer.map(|p| p.ip().to_string());
    if let Err(refused) = edge
        .core
        .config
        .guard
        .client_registration(address.as_deref())
    {
        let event_metadata = metadata(request.headers(), peer, &site);
        let refusal = domain::limit::Refusal {
            limit: refused.limit,
            allowed: refused.allowed,
            org_id: Some(site.tenant.org_id),
            server_id: Some(site.tenant.server_id),
            end_user_id: None,
            user_id: None,
            retry_after_secs: Some(refused.retry_after_secs),
        };
        edge.core
            .config
            .guard
            .record(
                &edge.core.store,
                refusal,
                address.as_deref().unwrap_or_default(),
                &event_metadata,
            )
            .await;
        let mut response = oauth_error(OauthFailure::new(
            OauthErrorCode::TemporarilyUnavailable,
            "too many client registrations from this address: reuse a registration, or use a \
             client id metadata document",
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(value) = refused.retry_after_secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let result = async {
        let (headers, bytes) = body(request).await?;
        let metadata = metadata(&headers, peer, &site);
        let asked: RegistrationRequest = serde_json::from_slice(&bytes).map_err(|e| {
            OauthFailure::new(
                OauthErrorCode::InvalidClientMetadata,
                format!("the registration is not valid client metadata: {e}"),
            )
        })?;
        if let Some(types) = &asked.grant_types {
            if !types.iter().any(|t| t == "authorization_code") {
                return Err(OauthFailure::new(
                    OauthErrorCode::InvalidClientMetadata,
                    "this server grants authorization_code (with refresh_token) only",
                ));
            }
        }
        if let Some(types) = &asked.response_types {
            if !types.iter().any(|t| t == "code") {
                return Err(OauthFailure::new(
                    OauthErrorCode::InvalidClientMetadata,
                    "this server answers the response type code only",
                ));
            }
        }
        let mut accepted = vec![];
        let mut refused = vec![];
        for uri in &asked.redirect_uris {
            match uri.as_str() {
                Some(uri) if redirects::judge(uri).is_ok() && uri.len() <= 2048 => {
                    accepted.push(uri.to_owned())
                }
                Some(uri) => refused.push(uri.chars().take(2048).collect()),
                None => refused.push(uri.to_string().chars().take(2048).collect()),
            }
        }
        let client_name = asked.client_name.map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        });
        let client_uri = asked
            .client_uri
            .filter(|u| u.starts_with("https://") && u.len() <= 2048);
        let now = Utc::now();
        let client_id = oauth::register_client(
            &edge.core.store,
            &metadata,
            site.tenant.org_id,
            site.tenant.server_id,
            Registration {
                client_name: client_name.clone(),
                client_uri: client_uri.clone(),
                redirect_uris: accepted.clone(),
                refused_redirect_uris: refused,
            },
            now,
        )
        .await?;
        let _ = asked.token_endpoint_auth_method;
        Ok(json!({
            "client_id": client_id.to_string(),
            "client_id_issued_at": now.timestamp(),
            "client_name": client_name,
            "client_uri": client_uri,
            "redirect_uris": accepted,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            // What a request may be granted: the asked scopes this server knows (RFC 7591
            // §3.2.1 answers the registration as it stands).
            "scope": registered_scope(asked.scope.as_deref()),
        }))
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            no_store(&mut response);
            response
        }
        Err(failure) => oauth_error(failure),
    }
}

/// The scopes a registration asked for that this server knows, `mcp` when none.
fn registered_scope(asked: Option<&str>) -> String {
    let known: Vec<&str> = asked
        .unwrap_or_default()
        .split(' ')
        .filter(|s| oauth::SCOPES_SUPPORTED.contains(s))
        .collect();
    if known.is_empty() {
        oauth::SCOPE_MCP.to_owned()
    } else {
        known.join(" ")
    }
}

fn token_answer(tokens: IssuedTokens) -> Response {
    let mut response = axum::Json(json!({
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token,
        "scope": tokens.scopes.join(" "),
    }))
    .into_response();
    no_store(&mut response);
    response
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OauthFailure> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            OauthFailure::new(
                OauthErrorCode::InvalidRequest,
                format!("{name} is required"),
            )
        })
}

/// `POST …/oauth/token`: `authorization_code` and `refresh_token`.
pub async fn token(edge: &McpEdge, site: Site, request: Request) -> Response {
    let peer = peer(&request);
    let seen = metadata(request.headers(), peer, &site);
    let mut named_client = None;
    let result = async {
        let (headers, bytes) = body(request).await?;
        let params = form(&headers, &bytes)?;
        let metadata = seen.clone();
        named_client = client_id(&headers, &params);
        let grant_type = required(&params, "grant_type")?;
        let client_id = client_id(&headers, &params).ok_or_else(invalid_client)?;
        if let Some(resource) = params.get("resource") {
            if !site.names_this_server(
                resource,
                &edge.core.config.base_domain,
                &edge.core.config.extra_hosts,
            ) {
                return Err(OauthFailure::new(
                    OauthErrorCode::InvalidTarget,
                    "the resource does not name this server",
                ));
            }
        }
        let store = &edge.core.store;
        let server_id = site.tenant.server_id;
        match grant_type {
            "authorization_code" => {
                known_client(edge, &site, &client_id, &metadata).await?;
                let code = required(&params, "code")?;
                let redirect_uri = required(&params, "redirect_uri")?;
                let verifier = required(&params, "code_verifier")?;
                oauth::redeem_code(
                    store,
                    &metadata,
                    server_id,
                    code,
                    &client_id,
                    redirect_uri,
                    verifier,
                    Utc::now(),
                )
                .await
            }
            "refresh_token" => {
                known_client(edge, &site, &client_id, &metadata).await?;
                let token = required(&params, "refresh_token")?;
                let issued = oauth::refresh(
                    store,
                    &edge.core.oauth.rotation,
                    &metadata,
                    server_id,
                    token,
                    &client_id,
                    Utc::now(),
                )
                .await?;
                provider_still_signs_in(edge, &site, &metadata, &issued).await?;
                Ok(issued)
            }
            other => Err(OauthFailure::new(
                OauthErrorCode::UnsupportedGrantType,
                format!("the grant type {other:?} is not supported: use authorization_code or refresh_token"),
            )),
        }
    }
    .await;
    match result {
        Ok(tokens) => token_answer(tokens),
        Err(failure) => {
            if failure.code != OauthErrorCode::TemporarilyUnavailable {
                edge.record_refusal(
                    &site,
                    &seen,
                    "token",
                    failure.code.as_str(),
                    &failure.description,
                    named_client.as_deref(),
                )
                .await;
            }
            oauth_error(failure)
        }
    }
}

/// Our refresh goes only as far as the end user's sign-in at their provider: their provider
/// tokens are refreshed when expired, and a provider that refuses (the end user was disabled
/// or signed out there) ends our grant too.
async fn provider_still_signs_in(
    edge: &McpEdge,
    site: &Site,
    metadata: &EventMetadata,
    issued: &IssuedTokens,
) -> Result<(), OauthFailure> {
    let Some(provider_id) = site.tenant.identity_provider_id else {
        return Ok(());
    };
    let store = &edge.core.store;
    let (grant, _) = store
        .load::<domain::oauth::OauthGrant>(&issued.grant_id.to_string())
        .await?;
    let Some(end_user_id) = grant.end_user_id else {
        return Ok(());
    };
    let standing = edge
        .core
        .oauth
        .sign_ins
        .refresh_provider_tokens(
            store,
            domain::values::OrgId(site.tenant.org_id),
            provider_id,
            end_user_id,
            Utc::now(),
        )
        .await;
    if let ProviderStanding::Refused(why) = standing {
        tracing::info!(%why, "the identity provider refused to refresh: the grant ends");
        oauth::revoke_grant(
            store,
            metadata,
            issued.grant_id,
            domain::oauth::GrantRevokeReason::ProviderRefused,
        )
        .await?;
        return Err(OauthFailure::new(
            OauthErrorCode::InvalidGrant,
            "the identity provider no longer signs this end user in: sign in again",
        ));
    }
    Ok(())
}

/// `POST …/oauth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(edge: &McpEdge, site: Site, request: Request) -> Response {
    let peer = peer(&request);
    let seen = metadata(request.headers(), peer, &site);
    let result = async {
        let (headers, bytes) = body(request).await?;
        let params = form(&headers, &bytes)?;
        let metadata = seen.clone();
        let client_id = client_id(&headers, &params).ok_or_else(invalid_client)?;
        known_client(edge, &site, &client_id, &metadata).await?;
        let token = required(&params, "token")?;
        oauth::revoke(
            &edge.core.store,
            &metadata,
            site.tenant.server_id,
            token,
            &client_id,
        )
        .await
    }
    .await;
    match result {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(failure) => {
            if failure.code != OauthErrorCode::TemporarilyUnavailable {
                edge.record_refusal(
                    &site,
                    &seen,
                    "revoke",
                    failure.code.as_str(),
                    &failure.description,
                    None,
                )
                .await;
            }
            oauth_error(failure)
        }
    }
}

/// `GET|POST …/oauth/userinfo`: who the access token's end user is, to the client (never the
/// provider's tokens).
pub async fn userinfo(edge: &McpEdge, site: Site, request: Request) -> Response {
    let rm = site.resource_metadata(None);
    if bearer::token_in_query(&request) {
        return bearer::refused(bearer::Refusal::InQuery, &rm);
    }
    let Some(token) = bearer::bearer(&request) else {
        return bearer::refused(bearer::Refusal::Missing, &rm);
    };
    let grant = match edge
        .core
        .oauth
        .tokens
        .resolve(&edge.core.store, token)
        .await
    {
        Ok(Some(grant)) => grant,
        Ok(None) => return bearer::refused(bearer::Refusal::Invalid, &rm),
        Err(e) => {
            tracing::error!(error = %e, "userinfo could not reach the store");
            return oauth_error(OauthFailure::unavailable());
        }
    };
    if let Err(refusal) = bearer::admits(&grant, &site.tenant) {
        return bearer::refused(refusal, &rm);
    }
    let end_user = edge
        .core
        .store
        .load::<EndUser>(&grant.end_user_id.to_string())
        .await;
    // The email only to a client the end user allowed to see it.
    let email_allowed = grant.scopes.iter().any(|s| s == "email");
    let email = match end_user {
        Ok((user, _)) => user
            .emails
            .first()
            .filter(|_| email_allowed)
            .map(|e| e.as_str().to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "userinfo could not reach the store");
            return oauth_error(OauthFailure::unavailable());
        }
    };
    let mut response = axum::Json(json!({
        "sub": grant.end_user_id.to_string(),
        "email": email,
    }))
    .into_response();
    no_store(&mut response);
    response
}

/// A client id that is our DCR registration's (a UUID).
pub fn is_dcr_id(client_id: &str) -> bool {
    Uuid::parse_str(client_id).is_ok()
}

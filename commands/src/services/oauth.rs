//! The hosted servers' authorization servers: clients registered by DCR, codes, and the token
//! families (grants) our tokens belong to.
//!
//! Our tokens are 256 random bits (`mcp_ac_…` codes, `mcp_at_…` access tokens, `mcp_rt_…`
//! refresh tokens); only their sha256 hashes are stored, in events and in the write-side key
//! index, which maps a hash to its grant strongly consistently. A rotation derives the new pair
//! from the presented refresh token with an HMAC keyed by the platform secret, so the same
//! rotated-away token presented again within the reuse window yields the very same pair
//! without any token being stored (see `docs/design.md`).

use crate::errors::{OauthErrorCode, OauthFailure};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use chrono::{DateTime, Utc};
use domain::oauth::{
    GrantRevokeReason, OauthClient, OauthClientCommand, OauthClientError, OauthGrant,
    OauthGrantCommand, OauthGrantEvent, RefreshStanding, TokenHashes, ACCESS_TOKEN_TTL, CODE_TTL,
    REFRESH_REUSE_WINDOW, REFRESH_TOKEN_TTL,
};
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{EventStore, ExecuteError, StoreError};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

pub const CODE_PREFIX: &str = "mcp_ac_";
pub const ACCESS_PREFIX: &str = "mcp_at_";
pub const REFRESH_PREFIX: &str = "mcp_rt_";

/// The scope every MCP request needs.
pub const SCOPE_MCP: &str = "mcp";
/// Every scope a hosted server's authorization server knows: `mcp` for the server's tools,
/// `email` for the end user's email at `/oauth/userinfo`, `offline_access` (granted, with no
/// effect: every grant has a refresh token). No `openid`: we issue no ID tokens.
pub const SCOPES_SUPPORTED: &[&str] = &[SCOPE_MCP, "email", "offline_access"];

/// How long a DCR registration that was never used to sign anyone in stays valid: clients that
/// register on every connection leave registrations that expire on their own.
pub const UNUSED_CLIENT_TTL: chrono::Duration = chrono::Duration::days(1);

/// A fresh random token with its prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token: sha256, hex.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// PKCE S256: base64url(sha256(verifier)) equals the challenge (RFC 7636 §4.6).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    valid_verifier && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// The key rotations derive new pairs with (HKDF of the platform secret, by the caller).
#[derive(Clone)]
pub struct RotationKey(Vec<u8>);

impl RotationKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    fn derive(&self, prefix: &str, refresh_token: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(prefix.as_bytes());
        mac.update(refresh_token.as_bytes());
        format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The pair a refresh token rotates into: the same every time it is presented.
    fn rotated_pair(&self, refresh_token: &str) -> (String, String) {
        (
            self.derive(ACCESS_PREFIX, refresh_token),
            self.derive(REFRESH_PREFIX, refresh_token),
        )
    }
}

impl fmt::Debug for RotationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotationKey(..)")
    }
}

/// Tokens as the token endpoint answers them.
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scopes: Vec<String>,
    pub grant_id: Uuid,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

fn hashes(access: &str, refresh: &str, now: DateTime<Utc>) -> TokenHashes {
    TokenHashes {
        access_hash: token_hash(access),
        access_expires_at: now + ACCESS_TOKEN_TTL,
        refresh_hash: token_hash(refresh),
        refresh_expires_at: now + REFRESH_TOKEN_TTL,
    }
}

/// What a registration asks for, already judged: the redirect URIs that stand and those
/// refused.
#[derive(Debug, Clone)]
pub struct Registration {
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub refused_redirect_uris: Vec<String>,
}

/// Registers a client with a server (RFC 7591): its id.
pub async fn register_client(
    store: &EventStore,
    metadata: &EventMetadata,
    org_id: Uuid,
    server_id: Uuid,
    registration: Registration,
    now: DateTime<Utc>,
) -> Result<Uuid, OauthFailure> {
    let client_id = Uuid::new_v4();
    store
        .run::<OauthClient>(&client_id.to_string(), metadata, |_| {
            OauthClientCommand::Register {
                org_id,
                server_id,
                via: domain::oauth::RegisteredVia::Dcr,
                client_name: registration.client_name.clone(),
                client_uri: registration.client_uri.clone(),
                redirect_uris: registration.redirect_uris.clone(),
                refused_redirect_uris: registration.refused_redirect_uris.clone(),
                now,
            }
        })
        .await
        .map_err(|e| match e {
            ExecuteError::Domain(OauthClientError::NoRedirectUri) => OauthFailure::new(
                OauthErrorCode::InvalidRedirectUri,
                "none of the redirect URIs is acceptable: use https, or http on a loopback \
                 address, or a private-use scheme for native apps",
            ),
            ExecuteError::Store(e) => e.into(),
            _ => OauthFailure::unavailable(),
        })?;
    Ok(client_id)
}

/// Records that a client id metadata document was first accepted for this server
/// (`OauthClientRegistered` via `cimd`, once per server and URL).
pub async fn cimd_client_seen(
    store: &EventStore,
    metadata: &EventMetadata,
    org_id: Uuid,
    server_id: Uuid,
    url: &str,
    registration: Registration,
    now: DateTime<Utc>,
) -> Result<(), OauthFailure> {
    let stream = format!("{server_id}/cimd/{}", token_hash(url));
    let outcome = store
        .run::<OauthClient>(&stream, metadata, |_| OauthClientCommand::Register {
            org_id,
            server_id,
            via: domain::oauth::RegisteredVia::Cimd,
            client_name: registration.client_name.clone(),
            client_uri: Some(url.to_owned()),
            redirect_uris: registration.redirect_uris.clone(),
            refused_redirect_uris: registration.refused_redirect_uris.clone(),
            now,
        })
        .await;
    match outcome {
        Ok(_) | Err(ExecuteError::Domain(OauthClientError::AlreadyRegistered)) => Ok(()),
        Err(ExecuteError::Domain(OauthClientError::NoRedirectUri)) => Err(OauthFailure::new(
            OauthErrorCode::InvalidClient,
            "none of the client metadata document's redirect URIs is acceptable",
        )),
        Err(ExecuteError::Store(e)) => Err(e.into()),
        Err(_) => Err(OauthFailure::unavailable()),
    }
}

/// A DCR client of this server, if it exists and has not expired unused.
pub async fn dcr_client(
    store: &EventStore,
    server_id: Uuid,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<OauthClient>, StoreError> {
    let Ok(id) = Uuid::parse_str(client_id) else {
        return Ok(None);
    };
    let (client, _) = store.load::<OauthClient>(&id.to_string()).await?;
    if client.server_id != Some(server_id) {
        return Ok(None);
    }
    let expired = client.last_used_at.is_none()
        && client
            .registered_at
            .is_none_or(|at| now - at > UNUSED_CLIENT_TTL);
    Ok((!expired).then_some(client))
}

/// Records that a DCR client signed someone in (once): its registration no longer expires.
pub async fn client_used(
    store: &EventStore,
    metadata: &EventMetadata,
    client_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), OauthFailure> {
    store
        .run::<OauthClient>(&client_id.to_string(), metadata, |_| {
            OauthClientCommand::MarkUsed { now }
        })
        .await
        .map_err(|e| match e {
            ExecuteError::Store(e) => e.into(),
            _ => OauthFailure::unavailable(),
        })?;
    Ok(())
}

/// What a code is issued for.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub client_id: String,
    pub end_user_id: Uuid,
    pub scopes: Vec<String>,
    pub resource: String,
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// A new grant with its single-use code: the code, to send to the client.
pub async fn issue_code(
    store: &EventStore,
    metadata: &EventMetadata,
    request: CodeRequest,
    now: DateTime<Utc>,
) -> Result<(Uuid, String), OauthFailure> {
    let grant_id = Uuid::new_v4();
    let code = new_token(CODE_PREFIX);
    let code_hash = token_hash(&code);
    store
        .execute::<OauthGrant, _, _>(
            &grant_id.to_string(),
            metadata,
            |grant| {
                grant.handle(OauthGrantCommand::IssueCode {
                    org_id: request.org_id,
                    server_id: request.server_id,
                    client_id: request.client_id.clone(),
                    end_user_id: request.end_user_id,
                    scopes: request.scopes.clone(),
                    resource: request.resource.clone(),
                    redirect_uri: request.redirect_uri.clone(),
                    code_challenge: request.code_challenge.clone(),
                    code_hash: code_hash.clone(),
                    expires_at: now + CODE_TTL,
                })
            },
            |_, _, uow| {
                uow.claim(KeyKind::OauthCode, code_hash.clone(), grant_id);
            },
        )
        .await?;
    Ok((grant_id, code))
}

/// The `authorization_code` grant: the code redeemed once, with its PKCE verifier, by the client
/// and redirect URI it was issued to, on the server it was issued for. A second redemption
/// revokes everything the code issued.
#[allow(clippy::too_many_arguments)]
pub async fn redeem_code(
    store: &EventStore,
    metadata: &EventMetadata,
    server_id: Uuid,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
    code_verifier: &str,
    now: DateTime<Utc>,
) -> Result<IssuedTokens, OauthFailure> {
    let invalid = || OauthFailure::new(OauthErrorCode::InvalidGrant, "the code is not valid");
    let code_hash = token_hash(code);
    let Some(grant_id) = index::owner_of(store.pool(), KeyKind::OauthCode, &code_hash).await?
    else {
        return Err(invalid());
    };
    let access = new_token(ACCESS_PREFIX);
    let refresh = new_token(REFRESH_PREFIX);
    let tokens = hashes(&access, &refresh, now);
    let executed = store
        .execute::<OauthGrant, _, _>(
            &grant_id.to_string(),
            &metadata.clone(),
            |grant| {
                if grant.server_id != Some(server_id) {
                    return Err(domain::oauth::OauthGrantError::InvalidCode);
                }
                grant.handle(OauthGrantCommand::RedeemCode {
                    client_id: client_id.to_owned(),
                    redirect_uri: redirect_uri.to_owned(),
                    verifier_ok: pkce_matches(code_verifier, &grant.code_challenge),
                    tokens: tokens.clone(),
                    now,
                })
            },
            |grant, events, uow| {
                for event in events {
                    match event {
                        OauthGrantEvent::OauthTokensIssued { tokens } => {
                            uow.claim(
                                KeyKind::OauthAccessToken,
                                tokens.access_hash.clone(),
                                grant_id,
                            );
                            uow.claim(
                                KeyKind::OauthRefreshToken,
                                tokens.refresh_hash.clone(),
                                grant_id,
                            );
                        }
                        OauthGrantEvent::OauthGrantRevoked { .. } => {
                            release_live(grant, uow, grant_id);
                        }
                        _ => {}
                    }
                }
            },
        )
        .await?;
    let (grant, _) = store.load::<OauthGrant>(&grant_id.to_string()).await?;
    if executed
        .events
        .iter()
        .any(|e| matches!(e, OauthGrantEvent::OauthGrantRevoked { .. }))
    {
        return Err(OauthFailure::new(
            OauthErrorCode::InvalidGrant,
            "the code was already used; every token it issued is revoked",
        ));
    }
    Ok(IssuedTokens {
        access_token: access,
        refresh_token: refresh,
        expires_in: ACCESS_TOKEN_TTL.num_seconds(),
        scopes: grant.scopes,
        grant_id,
    })
}

/// A revoked family's live access token leaves the index at once.
fn release_live(grant: &OauthGrant, uow: &mut eventstore::UnitOfWork, grant_id: Uuid) {
    if let Some(tokens) = &grant.tokens {
        uow.release(
            KeyKind::OauthAccessToken,
            tokens.access_hash.clone(),
            grant_id,
        );
    }
}

/// The `refresh_token` grant: rotation. The rotated-away token presented again within
/// [`REFRESH_REUSE_WINDOW`] answers the same new pair; any other reuse revokes the family.
pub async fn refresh(
    store: &EventStore,
    key: &RotationKey,
    metadata: &EventMetadata,
    server_id: Uuid,
    refresh_token: &str,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<IssuedTokens, OauthFailure> {
    let invalid = || {
        OauthFailure::new(
            OauthErrorCode::InvalidGrant,
            "the refresh token is not valid",
        )
    };
    let presented = token_hash(refresh_token);
    let Some(grant_id) =
        index::owner_of(store.pool(), KeyKind::OauthRefreshToken, &presented).await?
    else {
        return Err(invalid());
    };
    let (access, new_refresh) = key.rotated_pair(refresh_token);
    let tokens = hashes(&access, &new_refresh, now);
    let mut standing = RefreshStanding::Unknown;
    let mut scopes = vec![];
    let executed = store
        .execute::<OauthGrant, _, _>(
            &grant_id.to_string(),
            metadata,
            |grant| {
                if grant.server_id != Some(server_id) {
                    return Err(domain::oauth::OauthGrantError::InvalidRefresh);
                }
                standing = grant.refresh_standing(&presented, now, REFRESH_REUSE_WINDOW);
                scopes.clone_from(&grant.scopes);
                if standing == RefreshStanding::JustRotated {
                    // The same pair again, provided the family has not moved on since.
                    let next = grant.tokens.as_ref().map(|t| t.refresh_hash.as_str());
                    if next != Some(tokens.refresh_hash.as_str()) {
                        standing = RefreshStanding::Reused;
                        return Ok(vec![
                            OauthGrantEvent::OauthReuseDetected {
                                what: GrantRevokeReason::RefreshReused,
                            },
                            OauthGrantEvent::OauthGrantRevoked {
                                reason: GrantRevokeReason::RefreshReused,
                            },
                        ]);
                    }
                }
                grant.handle(OauthGrantCommand::Refresh {
                    presented_hash: presented.clone(),
                    client_id: client_id.to_owned(),
                    tokens: tokens.clone(),
                    now,
                    reuse_window: REFRESH_REUSE_WINDOW,
                })
            },
            |grant, events, uow| {
                for event in events {
                    match event {
                        OauthGrantEvent::OauthTokensRefreshed { tokens, .. } => {
                            release_live(grant, uow, grant_id);
                            uow.claim(
                                KeyKind::OauthAccessToken,
                                tokens.access_hash.clone(),
                                grant_id,
                            );
                            uow.claim(
                                KeyKind::OauthRefreshToken,
                                tokens.refresh_hash.clone(),
                                grant_id,
                            );
                        }
                        OauthGrantEvent::OauthGrantRevoked { .. } => {
                            release_live(grant, uow, grant_id)
                        }
                        _ => {}
                    }
                }
            },
        )
        .await?;
    if executed
        .events
        .iter()
        .any(|e| matches!(e, OauthGrantEvent::OauthGrantRevoked { .. }))
    {
        return Err(OauthFailure::new(
            OauthErrorCode::InvalidGrant,
            "the refresh token was already used; the whole token family is revoked",
        ));
    }
    Ok(IssuedTokens {
        access_token: access,
        refresh_token: new_refresh,
        expires_in: ACCESS_TOKEN_TTL.num_seconds(),
        scopes,
        grant_id,
    })
}

/// RFC 7009: revokes the family of a token of ours (access or refresh) presented by its client.
/// An unknown token, or another client's, changes nothing and is not an error (§2.2).
pub async fn revoke(
    store: &EventStore,
    metadata: &EventMetadata,
    server_id: Uuid,
    token: &str,
    client_id: &str,
) -> Result<(), OauthFailure> {
    let hash = token_hash(token);
    let grant_id = match index::owner_of(store.pool(), KeyKind::OauthRefreshToken, &hash).await? {
        Some(id) => Some(id),
        None => index::owner_of(store.pool(), KeyKind::OauthAccessToken, &hash).await?,
    };
    let Some(grant_id) = grant_id else {
        return Ok(());
    };
    store
        .execute::<OauthGrant, _, _>(
            &grant_id.to_string(),
            metadata,
            |grant| {
                if grant.server_id != Some(server_id) {
                    // Another server's token is no token of this authorization server (RFC
                    // 7009: 200).
                    return Ok(vec![]);
                }
                if grant.client_id != client_id {
                    // RFC 7009 §2.1: a token issued to another client is refused, and the
                    // client told.
                    return Err(domain::oauth::OauthGrantError::OtherClient);
                }
                grant.handle(OauthGrantCommand::Revoke {
                    reason: GrantRevokeReason::Revoked,
                })
            },
            |grant, events, uow| {
                if !events.is_empty() {
                    release_live(grant, uow, grant_id);
                }
            },
        )
        .await?;
    Ok(())
}

/// Revokes a grant (its whole token family), whoever holds its tokens: when the end user's
/// identity provider no longer signs them in.
pub async fn revoke_grant(
    store: &EventStore,
    metadata: &EventMetadata,
    grant_id: Uuid,
    reason: GrantRevokeReason,
) -> Result<(), OauthFailure> {
    store
        .execute::<OauthGrant, _, _>(
            &grant_id.to_string(),
            metadata,
            |grant| grant.handle(OauthGrantCommand::Revoke { reason }),
            |grant, events, uow| {
                if !events.is_empty() {
                    release_live(grant, uow, grant_id);
                }
            },
        )
        .await?;
    Ok(())
}

/// What a valid access token of ours grants.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessGrant {
    pub grant_id: Uuid,
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub client_id: String,
    pub end_user_id: Uuid,
    pub scopes: Vec<String>,
    pub resource: String,
    pub expires_at: DateTime<Utc>,
}

/// The grant a presented access token is live in, if any (the caller checks the server, the
/// scopes and the expiry, which it may cache).
pub async fn access_grant(
    store: &EventStore,
    access_token: &str,
) -> Result<Option<AccessGrant>, StoreError> {
    if !access_token.starts_with(ACCESS_PREFIX) {
        return Ok(None);
    }
    let hash = token_hash(access_token);
    let Some(grant_id) = index::owner_of(store.pool(), KeyKind::OauthAccessToken, &hash).await?
    else {
        return Ok(None);
    };
    let (grant, _) = store.load::<OauthGrant>(&grant_id.to_string()).await?;
    let (Some(org_id), Some(server_id), Some(end_user_id), Some(tokens)) = (
        grant.org_id,
        grant.server_id,
        grant.end_user_id,
        &grant.tokens,
    ) else {
        return Ok(None);
    };
    if grant.revoked.is_some() || tokens.access_hash != hash {
        return Ok(None);
    }
    Ok(Some(AccessGrant {
        grant_id,
        org_id,
        server_id,
        client_id: grant.client_id.clone(),
        end_user_id,
        scopes: grant.scopes.clone(),
        resource: grant.resource.clone(),
        expires_at: tokens.access_expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_s256_of_a_well_formed_verifier() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(verifier, verifier));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn a_refresh_token_always_rotates_into_the_same_pair() {
        let key = RotationKey::new(vec![7; 32]);
        let (a1, r1) = key.rotated_pair("mcp_rt_x");
        let (a2, r2) = key.rotated_pair("mcp_rt_x");
        assert_eq!((&a1, &r1), (&a2, &r2));
        assert!(a1.starts_with(ACCESS_PREFIX) && r1.starts_with(REFRESH_PREFIX));
        assert_ne!(key.rotated_pair("mcp_rt_y").1, r1);
        assert_ne!(RotationKey::new(vec![8; 32]).rotated_pair("mcp_rt_x").1, r1);
        assert_eq!(token_hash("abc").len(), 64);
    }
}

/// Records refusals (`OauthRequestRefused`), at most one a minute per server, endpoint,
/// client and reason: the first of a flood is what a security team needs, not the flood.
#[derive(Clone)]
pub struct Refusals {
    recent: moka::sync::Cache<String, ()>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            recent: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
        }
    }
}

impl fmt::Debug for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusals").finish_non_exhaustive()
    }
}

impl Refusals {
    /// Records a refusal unless the same was recorded within the minute. Never fails the
    /// request: a refusal that cannot be recorded is logged.
    pub async fn record(
        &self,
        store: &EventStore,
        metadata: &EventMetadata,
        org_id: Uuid,
        refusal: domain::oauth::OauthRefusal,
    ) {
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            refusal.server_id,
            refusal.endpoint,
            refusal.client_id.as_deref().unwrap_or(""),
            refusal.reason
        );
        tracing::info!(
            endpoint = %refusal.endpoint,
            error = %refusal.error,
            reason = %refusal.reason,
            "OAuth request refused"
        );
        if self.recent.contains_key(&key) {
            return;
        }
        self.recent.insert(key, ());
        let mut refusal = refusal;
        refusal.reason = refusal.reason.chars().take(300).collect();
        refusal.client_id = refusal.client_id.map(|c| c.chars().take(300).collect());
        let metadata = metadata.clone().for_org(org_id);
        let id = Uuid::now_v7().to_string();
        if let Err(e) = store
            .run::<domain::oauth::OauthRefusalRecord>(&id, &metadata, |_| refusal.clone())
            .await
        {
            tracing::warn!(error = %e, "recording an OAuth refusal failed");
        }
    }
}

//! The authorization server each hosted server has (MCP authorization): the clients that
//! registered with it, and grants, one per authorization, from its start to the token family it
//! issued.
//!
//! Only hashes of our codes and tokens appear here (sha256, hex), never a token itself. A grant
//! is a rotating family (OAuth 2.0 Security BCP): the current access and refresh tokens, and the
//! refresh token rotated away last, which may be presented again within a short window (two
//! copies of one client refreshing at once) and then yields the same new pair. Any other reuse
//! of a rotated token, or a second redemption of the code, revokes the whole family.

use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisteredVia {
    /// Dynamic client registration (RFC 7591).
    Dcr,
    /// A client id metadata document, fetched from the client id's URL.
    Cimd,
}

/// A client known to one hosted server: registered by DCR (its id a UUID), or first seen through
/// its client id metadata document (the stream `{server id}/cimd/{sha256 of the URL}`; the
/// document itself is fetched and cached, never stored).
#[derive(Debug, Default, Clone)]
pub struct OauthClient {
    pub org_id: Option<Uuid>,
    pub server_id: Option<Uuid>,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub registered_at: Option<DateTime<Utc>>,
    /// When the client was last given a code (an unused registration expires).
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum OauthClientCommand {
    Register {
        org_id: Uuid,
        server_id: Uuid,
        via: RegisteredVia,
        client_name: Option<String>,
        client_uri: Option<String>,
        redirect_uris: Vec<String>,
        refused_redirect_uris: Vec<String>,
        now: DateTime<Utc>,
    },
    /// The client signed someone in: from now on its registration does not expire unused.
    MarkUsed { now: DateTime<Utc> },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum OauthClientEvent {
    OauthClientRegistered {
        org_id: Uuid,
        server_id: Uuid,
        via: RegisteredVia,
        client_name: Option<String>,
        client_uri: Option<String>,
        redirect_uris: Vec<String>,
        /// Redirect URIs the registration asked for and policy refused (the others stand).
        refused_redirect_uris: Vec<String>,
        #[serde(with = "crate::time::rfc3339")]
        registered_at: DateTime<Utc>,
    },
    OauthClientFirstUsed {
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
}

impl DomainEvent for OauthClientEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OauthClientError {
    #[error("the client is registered already")]
    AlreadyRegistered,
    #[error("none of the redirect URIs is acceptable")]
    NoRedirectUri,
}

impl Aggregate for OauthClient {
    const TYPE: &'static str = "oauth_client";
    type Command = OauthClientCommand;
    type Event = OauthClientEvent;
    type Error = OauthClientError;

    fn handle(&self, command: OauthClientCommand) -> Result<Vec<OauthClientEvent>, Self::Error> {
        match command {
            OauthClientCommand::Register {
                org_id,
                server_id,
                via,
                client_name,
                client_uri,
                redirect_uris,
                refused_redirect_uris,
                now,
            } => {
                if self.server_id.is_some() {
                    return Err(OauthClientError::AlreadyRegistered);
                }
                if redirect_uris.is_empty() {
                    return Err(OauthClientError::NoRedirectUri);
                }
                Ok(vec![OauthClientEvent::OauthClientRegistered {
                    org_id,
                    server_id,
                    via,
                    client_name,
                    client_uri,
                    redirect_uris,
                    refused_redirect_uris,
                    registered_at: now,
                }])
            }
            OauthClientCommand::MarkUsed { now } => {
                if self.server_id.is_none() || self.last_used_at.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![OauthClientEvent::OauthClientFirstUsed { at: now }])
            }
        }
    }

    fn apply(&mut self, event: &OauthClientEvent) {
        match event {
            OauthClientEvent::OauthClientRegistered {
                org_id,
                server_id,
                client_name,
                redirect_uris,
                registered_at,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.server_id = Some(*server_id);
                self.client_name.clone_from(client_name);
                self.redirect_uris.clone_from(redirect_uris);
                self.registered_at = Some(*registered_at);
            }
            OauthClientEvent::OauthClientFirstUsed { at } => self.last_used_at = Some(*at),
        }
    }
}

/// Why a grant's tokens stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantRevokeReason {
    /// The client (RFC 7009) or the end user revoked it.
    Revoked,
    /// The code was presented a second time: whatever it issued may be in the wrong hands.
    CodeReplayed,
    /// A rotated refresh token was presented outside the reuse window.
    RefreshReused,
    /// The end user's identity provider refused to refresh its own tokens: they are no longer
    /// signed in there (disabled, signed out, access withdrawn).
    ProviderRefused,
}

/// A token pair as hashes, with the access token's and the refresh token's ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHashes {
    pub access_hash: String,
    #[serde(with = "crate::time::rfc3339")]
    pub access_expires_at: DateTime<Utc>,
    pub refresh_hash: String,
    #[serde(with = "crate::time::rfc3339")]
    pub refresh_expires_at: DateTime<Utc>,
}

/// One authorization of one client for one end user on one server, and its token family.
#[derive(Debug, Default, Clone)]
pub struct OauthGrant {
    pub org_id: Option<Uuid>,
    pub server_id: Option<Uuid>,
    pub client_id: String,
    pub end_user_id: Option<Uuid>,
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the tokens are for: the server's canonical URL.
    pub resource: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub code_hash: Option<String>,
    pub code_expires_at: Option<DateTime<Utc>>,
    pub code_redeemed: bool,
    pub tokens: Option<TokenHashes>,
    /// The refresh token rotated away last, and when.
    pub previous_refresh: Option<(String, DateTime<Utc>)>,
    /// Every refresh token rotated away before that.
    pub retired_refresh: Vec<String>,
    pub revoked: Option<GrantRevokeReason>,
}

/// What a presented refresh token is to its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStanding {
    /// The current one: rotate.
    Current,
    /// The one rotated away last, within the reuse window: answer with the current pair again.
    JustRotated,
    /// An older one, or the last one outside the window: reuse.
    Reused,
    /// Not of this family.
    Unknown,
}

#[derive(Debug, Clone)]
pub enum OauthGrantCommand {
    /// The end user signed in and consented: the code the client will redeem.
    IssueCode {
        org_id: Uuid,
        server_id: Uuid,
        client_id: String,
        end_user_id: Uuid,
        scopes: Vec<String>,
        resource: String,
        redirect_uri: String,
        code_challenge: String,
        code_hash: String,
        expires_at: DateTime<Utc>,
    },
    /// The code presented at the token endpoint, its PKCE verifier checked by the caller
    /// (`verifier_ok`), with the client and redirect URI it came with.
    RedeemCode {
        client_id: String,
        redirect_uri: String,
        verifier_ok: bool,
        tokens: TokenHashes,
        now: DateTime<Utc>,
    },
    Refresh {
        presented_hash: String,
        client_id: String,
        tokens: TokenHashes,
        now: DateTime<Utc>,
        reuse_window: Duration,
    },
    Revoke {
        reason: GrantRevokeReason,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum OauthGrantEvent {
    OauthCodeIssued {
        org_id: Uuid,
        server_id: Uuid,
        client_id: String,
        end_user_id: Uuid,
        scopes: Vec<String>,
        resource: String,
        redirect_uri: String,
        code_challenge: String,
        code_hash: String,
        #[serde(with = "crate::time::rfc3339")]
        expires_at: DateTime<Utc>,
    },
    OauthTokensIssued {
        tokens: TokenHashes,
    },
    OauthTokensRefreshed {
        tokens: TokenHashes,
        #[serde(with = "crate::time::rfc3339")]
        rotated_at: DateTime<Utc>,
    },
    /// A refresh token used again (`reused_refresh`) or the code redeemed again: the family is
    /// revoked in the same commit.
    OauthReuseDetected {
        what: GrantRevokeReason,
    },
    OauthGrantRevoked {
        reason: GrantRevokeReason,
    },
}

impl DomainEvent for OauthGrantEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OauthGrantError {
    #[error("the grant exists already")]
    AlreadyIssued,
    #[error("the code is not valid, expired, or was issued to another client")]
    InvalidCode,
    #[error("the PKCE code verifier does not match the code challenge")]
    WrongVerifier,
    #[error("the redirect URI differs from the one the code was issued for")]
    RedirectMismatch,
    #[error("the refresh token is not valid, expired or revoked")]
    InvalidRefresh,
    #[error("the grant has been revoked")]
    Revoked,
    #[error("the token was not issued to this client")]
    OtherClient,
}

impl OauthGrant {
    /// What a presented refresh token (its hash) is to this family at `now`.
    pub fn refresh_standing(
        &self,
        presented: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> RefreshStanding {
        let Some(tokens) = &self.tokens else {
            return RefreshStanding::Unknown;
        };
        if tokens.refresh_hash == presented {
            return RefreshStanding::Current;
        }
        if let Some((previous, rotated_at)) = &self.previous_refresh {
            if previous == presented {
                return if now - *rotated_at <= window {
                    RefreshStanding::JustRotated
                } else {
                    RefreshStanding::Reused
                };
            }
        }
        if self.retired_refresh.iter().any(|h| h == presented) {
            return RefreshStanding::Reused;
        }
        RefreshStanding::Unknown
    }
}

impl Aggregate for OauthGrant {
    const TYPE: &'static str = "oauth_grant";
    type Command = OauthGrantCommand;
    type Event = OauthGrantEvent;
    type Error = OauthGrantError;

    fn handle(&self, command: OauthGrantCommand) -> Result<Vec<OauthGrantEvent>, Self::Error> {
        match command {
            OauthGrantCommand::IssueCode {
                org_id,
                server_id,
                client_id,
                end_user_id,
                scopes,
                resource,
                redirect_uri,
                code_challenge,
                code_hash,
                expires_at,
            } => {
                if self.server_id.is_some() {
                    return Err(OauthGrantError::AlreadyIssued);
                }
                Ok(vec![OauthGrantEvent::OauthCodeIssued {
                    org_id,
                    server_id,
                    client_id,
                    end_user_id,
                    scopes,
                    resource,
                    redirect_uri,
                    code_challenge,
                    code_hash,
                    expires_at,
                }])
            }
            OauthGrantCommand::RedeemCode {
                client_id,
                redirect_uri,
                verifier_ok,
                tokens,
                now,
            } => {
                if self.server_id.is_none() || client_id != self.client_id {
                    return Err(OauthGrantError::InvalidCode);
                }
                if self.code_redeemed {
                    // A replayed code: whatever it issued is revoked (RFC 6749 §4.1.2).
                    if self.revoked.is_some() {
                        return Err(OauthGrantError::InvalidCode);
                    }
                    return Ok(vec![
                        OauthGrantEvent::OauthReuseDetected {
                            what: GrantRevokeReason::CodeReplayed,
                        },
                        OauthGrantEvent::OauthGrantRevoked {
                            reason: GrantRevokeReason::CodeReplayed,
                        },
                    ]);
                }
                if self.revoked.is_some() || self.code_expires_at.is_none_or(|at| now >= at) {
                    return Err(OauthGrantError::InvalidCode);
                }
                if redirect_uri != self.redirect_uri {
                    return Err(OauthGrantError::RedirectMismatch);
                }
                if !verifier_ok {
                    return Err(OauthGrantError::WrongVerifier);
                }
                Ok(vec![OauthGrantEvent::OauthTokensIssued { tokens }])
            }
            OauthGrantCommand::Refresh {
                presented_hash,
                client_id,
                tokens,
                now,
                reuse_window,
            } => {
                if self.revoked.is_some() {
                    return Err(OauthGrantError::Revoked);
                }
                if client_id != self.client_id {
                    return Err(OauthGrantError::InvalidRefresh);
                }
                match self.refresh_standing(&presented_hash, now, reuse_window) {
                    RefreshStanding::Current => {
                        if self
                            .tokens
                            .as_ref()
                            .is_some_and(|t| now >= t.refresh_expires_at)
                        {
                            return Err(OauthGrantError::InvalidRefresh);
                        }
                        Ok(vec![OauthGrantEvent::OauthTokensRefreshed {
                            tokens,
                            rotated_at: now,
                        }])
                    }
                    // The same new pair is answered again; nothing changes.
                    RefreshStanding::JustRotated => Ok(vec![]),
                    RefreshStanding::Reused => Ok(vec![
                        OauthGrantEvent::OauthReuseDetected {
                            what: GrantRevokeReason::RefreshReused,
                        },
                        OauthGrantEvent::OauthGrantRevoked {
                            reason: GrantRevokeReason::RefreshReused,
                        },
                    ]),
                    RefreshStanding::Unknown => Err(OauthGrantError::InvalidRefresh),
                }
            }
            OauthGrantCommand::Revoke { reason } => {
                if self.server_id.is_none() {
                    return Err(OauthGrantError::InvalidRefresh);
                }
                if self.revoked.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![OauthGrantEvent::OauthGrantRevoked { reason }])
            }
        }
    }

    fn apply(&mut self, event: &OauthGrantEvent) {
        match event {
            OauthGrantEvent::OauthCodeIssued {
                org_id,
                server_id,
                client_id,
                end_user_id,
                scopes,
                resource,
                redirect_uri,
                code_challenge,
                code_hash,
                expires_at,
            } => {
                self.org_id = Some(*org_id);
                self.server_id = Some(*server_id);
                self.client_id.clone_from(client_id);
                self.end_user_id = Some(*end_user_id);
                self.scopes.clone_from(scopes);
                self.resource.clone_from(resource);
                self.redirect_uri.clone_from(redirect_uri);
                self.code_challenge.clone_from(code_challenge);
                self.code_hash = Some(code_hash.clone());
                self.code_expires_at = Some(*expires_at);
            }
            OauthGrantEvent::OauthTokensIssued { tokens } => {
                self.code_redeemed = true;
                self.tokens = Some(tokens.clone());
            }
            OauthGrantEvent::OauthTokensRefreshed { tokens, rotated_at } => {
                if let Some(old) = self.tokens.replace(tokens.clone()) {
                    if let Some((older, _)) = self
                        .previous_refresh
                        .replace((old.refresh_hash, *rotated_at))
                    {
                        self.retired_refresh.push(older);
                    }
                }
            }
            OauthGrantEvent::OauthReuseDetected { what } => {
                if *what == GrantRevokeReason::CodeReplayed {
                    self.code_redeemed = true;
                }
            }
            OauthGrantEvent::OauthGrantRevoked { reason } => self.revoked = Some(*reason),
        }
    }
}

/// A request to a server's authorization server, or a bearer token at its MCP endpoint,
/// refused: what a security team looks for (forged or replayed codes and tokens, PKCE and
/// redirect mismatches, foreign resources, consent posted without its CSRF token, unknown
/// callback states). Each is a one-event stream, recorded at most once a minute per server,
/// client and reason by the caller, so a flood of bad requests cannot flood the log. Never
/// carries a code or token.
#[derive(Debug, Default, Clone)]
pub struct OauthRefusalRecord {
    pub recorded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OauthRefusal {
    pub server_id: Uuid,
    /// `authorize`, `consent`, `callback`, `token`, `revoke`, `register` or `mcp`.
    pub endpoint: String,
    /// The OAuth error answered (RFC 6749 / 6750 name), or `page` when a page was shown.
    pub error: String,
    /// Why, in words (no token, no code).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum OauthRefusalEvent {
    OauthRequestRefused(OauthRefusal),
}

impl DomainEvent for OauthRefusalEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

impl Aggregate for OauthRefusalRecord {
    const TYPE: &'static str = "oauth_refusal";
    type Command = OauthRefusal;
    type Event = OauthRefusalEvent;
    type Error = std::convert::Infallible;

    fn handle(&self, refusal: OauthRefusal) -> Result<Vec<OauthRefusalEvent>, Self::Error> {
        Ok(vec![OauthRefusalEvent::OauthRequestRefused(refusal)])
    }

    fn apply(&mut self, _: &OauthRefusalEvent) {
        self.recorded = true;
    }
}

/// How long an access token of ours lives.
pub const ACCESS_TOKEN_TTL: Duration = Duration::hours(1);
/// How long a refresh token of ours lives unused.
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
/// How long an authorization code may wait to be redeemed.
pub const CODE_TTL: Duration = Duration::minutes(2);
/// How long after a rotation the rotated-away refresh token still yields the new pair.
pub const REFRESH_REUSE_WINDOW: Duration = Duration::seconds(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn pair(n: u32, issued: i64) -> TokenHashes {
        TokenHashes {
            access_hash: format!("a{n}"),
            access_expires_at: at(issued) + ACCESS_TOKEN_TTL,
            refresh_hash: format!("r{n}"),
            refresh_expires_at: at(issued) + REFRESH_TOKEN_TTL,
        }
    }

    fn code_issued() -> OauthGrantEvent {
        OauthGrantEvent::OauthCodeIssued {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            client_id: "c".into(),
            end_user_id: Uuid::nil(),
            scopes: vec!["mcp".into()],
            resource: "https://acme.example/mcp".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "ch".into(),
            code_hash: "code".into(),
            expires_at: at(120),
        }
    }

    fn redeem(verifier_ok: bool, redirect: &str, now: i64) -> OauthGrantCommand {
        OauthGrantCommand::RedeemCode {
            client_id: "c".into(),
            redirect_uri: redirect.into(),
            verifier_ok,
            tokens: pair(1, now),
            now: at(now),
        }
    }

    fn refresh(presented: &str, n: u32, now: i64) -> OauthGrantCommand {
        OauthGrantCommand::Refresh {
            presented_hash: presented.into(),
            client_id: "c".into(),
            tokens: pair(n, now),
            now: at(now),
            reuse_window: REFRESH_REUSE_WINDOW,
        }
    }

    #[test]
    fn a_code_is_redeemed_once_with_its_verifier_and_redirect() {
        let given = [code_issued()];
        assert_eq!(
            given_when::<OauthGrant>(&given, redeem(false, "http://127.0.0.1/cb", 1)).err(),
            Some(OauthGrantError::WrongVerifier)
        );
        assert_eq!(
            given_when::<OauthGrant>(&given, redeem(true, "http://127.0.0.1/cb/", 1)).err(),
            Some(OauthGrantError::RedirectMismatch)
        );
        assert_eq!(
            given_when::<OauthGrant>(&given, redeem(true, "http://127.0.0.1/cb", 121)).err(),
            Some(OauthGrantError::InvalidCode)
        );
        assert!(matches!(
            given_when::<OauthGrant>(&given, redeem(true, "http://127.0.0.1/cb", 1)).as_deref(),
            Ok([OauthGrantEvent::OauthTokensIssued { .. }])
        ));
    }

    #[test]
    fn a_replayed_code_revokes_what_it_issued() {
        let given = [
            code_issued(),
            OauthGrantEvent::OauthTokensIssued { tokens: pair(1, 1) },
        ];
        assert!(matches!(
            given_when::<OauthGrant>(&given, redeem(true, "http://127.0.0.1/cb", 2)).as_deref(),
            Ok([
                OauthGrantEvent::OauthReuseDetected { .. },
                OauthGrantEvent::OauthGrantRevoked {
                    reason: GrantRevokeReason::CodeReplayed
                }
            ])
        ));
    }

    #[test]
    fn refresh_rotates_and_reuse_outside_the_window_revokes() {
        let mut given = vec![
            code_issued(),
            OauthGrantEvent::OauthTokensIssued { tokens: pair(1, 1) },
        ];
        assert!(matches!(
            given_when::<OauthGrant>(&given, refresh("r1", 2, 10)).as_deref(),
            Ok([OauthGrantEvent::OauthTokensRefreshed { .. }])
        ));
        given.push(OauthGrantEvent::OauthTokensRefreshed {
            tokens: pair(2, 10),
            rotated_at: at(10),
        });
        // Within the window: nothing new, the caller answers the same pair.
        assert_eq!(
            given_when::<OauthGrant>(&given, refresh("r1", 3, 20)),
            Ok(vec![])
        );
        // Outside it: the family is revoked.
        assert!(matches!(
            given_when::<OauthGrant>(&given, refresh("r1", 3, 100)).as_deref(),
            Ok([
                OauthGrantEvent::OauthReuseDetected { .. },
                OauthGrantEvent::OauthGrantRevoked {
                    reason: GrantRevokeReason::RefreshReused
                }
            ])
        ));
        assert_eq!(
            given_when::<OauthGrant>(&given, refresh("nope", 3, 20)).err(),
            Some(OauthGrantError::InvalidRefresh)
        );
        given.push(OauthGrantEvent::OauthGrantRevoked {
            reason: GrantRevokeReason::Revoked,
        });
        assert_eq!(
            given_when::<OauthGrant>(&given, refresh("r2", 3, 20)).err(),
            Some(OauthGrantError::Revoked)
        );
    }
}

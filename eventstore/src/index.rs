//! The write-side index (`unique_keys`, `pending_invitations`, `user_credentials`,
//! `tracking_secrets`): natural
//! keys claimed by the stream that owns them, written in the same transaction as the events
//! (see [`crate::UnitOfWork`]), so these look-ups are strongly consistent. Commands use them to
//! find the stream an email, a slug or a tracking id belongs to.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The kinds of unique key. Each is stored by [`KeyKind::as_str`], which must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// An account's email, platform-wide.
    UserEmail,
    /// An organization's slug, platform-wide.
    OrgSlug,
    /// A hosted server's slug, platform-wide (it is a subdomain).
    ServerSlug,
    /// `{org id}/{tracking id}` → the end user: tracking ids are unique per org, not
    /// platform-wide.
    EndUserTracking,
    /// `{org id}/{provider id}/{subject}` → the end user who signed in as that subject of one of
    /// the org's identity providers (per org: a person is never matched across orgs).
    EndUserSubject,
    /// `{org id}/{email}` → the end user whose verified email it is, in that org.
    EndUserEmail,
    /// `{org id}/{end user id}` → the walkthrough the end user selected last (a pointer,
    /// claimed again on every new selection).
    WalkthroughSelected,
    /// The sha256 hash of a pending invitation's token → the org that sent it (released when
    /// the invitation is accepted, revoked or replaced). The token itself is never stored.
    InvitationToken,
    /// An identity provider's id → its org, held while it exists: a server binding to it
    /// requires this owner, so a provider deleted (or of another org) is never bound.
    IdentityProvider,
    /// The sha256 hash of an authorization code of ours → its grant (kept after redemption, so
    /// a replayed code finds the grant it must revoke).
    OauthCode,
    /// The sha256 hash of a live access token of ours → its grant (released at rotation).
    OauthAccessToken,
    /// The sha256 hash of a refresh token of ours → its grant (kept when rotated away, so a
    /// reused one finds its family).
    OauthRefreshToken,
}

impl KeyKind {
    pub const ALL: [KeyKind; 12] = [
        KeyKind::UserEmail,
        KeyKind::OrgSlug,
        KeyKind::ServerSlug,
        KeyKind::EndUserTracking,
        KeyKind::EndUserSubject,
        KeyKind::EndUserEmail,
        KeyKind::WalkthroughSelected,
        KeyKind::InvitationToken,
        KeyKind::IdentityProvider,
        KeyKind::OauthCode,
        KeyKind::OauthAccessToken,
        KeyKind::OauthRefreshToken,
    ];

    /// The stored name (`unique_keys.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyKind::UserEmail => "user_email",
            KeyKind::OrgSlug => "org_slug",
            KeyKind::ServerSlug => "server_slug",
            KeyKind::EndUserTracking => "end_user_tracking",
            KeyKind::EndUserSubject => "end_user_subject",
            KeyKind::EndUserEmail => "end_user_email",
            KeyKind::WalkthroughSelected => "walkthrough_selected",
            KeyKind::InvitationToken => "invitation_token",
            KeyKind::IdentityProvider => "identity_provider",
            KeyKind::OauthCode => "oauth_code",
            KeyKind::OauthAccessToken => "oauth_access_token",
            KeyKind::OauthRefreshToken => "oauth_refresh_token",
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server's sealed tracking secrets, by id (sealed by `commands::tracking`).
pub async fn sealed_tracking_secrets(
    pool: &PgPool,
    server_id: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT secret_id, sealed FROM tracking_secrets WHERE server_id = $1")
            .bind(server_id)
            .fetch_all(pool)
            .await?,
    )
}

/// An identity provider's sealed client secret, if it belongs to `org_id` (sealed by
/// `commands::services::identity_providers`).
pub async fn sealed_provider_secret(
    pool: &PgPool,
    org_id: Uuid,
    provider_id: Uuid,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT sealed FROM identity_provider_secrets WHERE provider_id = $1 AND org_id = $2",
    )
    .bind(provider_id)
    .bind(org_id)
    .fetch_optional(pool)
    .await?)
}

/// Keeps an end user's sealed provider tokens (sealed by `commands::services::sign_in`),
/// replacing what was there.
pub async fn put_provider_tokens(
    pool: &PgPool,
    org_id: Uuid,
    provider_id: Uuid,
    end_user_id: Uuid,
    sealed: &[u8],
    access_expires_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO provider_tokens (org_id, provider_id, end_user_id, sealed, access_expires_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id, provider_id, end_user_id) DO UPDATE \
         SET sealed = EXCLUDED.sealed, access_expires_at = EXCLUDED.access_expires_at, \
             updated_at = now()",
    )
    .bind(org_id)
    .bind(provider_id)
    .bind(end_user_id)
    .bind(sealed)
    .bind(access_expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// An end user's sealed provider tokens of `org_id`, with when the access token expires.
pub async fn provider_tokens(
    pool: &PgPool,
    org_id: Uuid,
    provider_id: Uuid,
    end_user_id: Uuid,
) -> Result<Option<(Vec<u8>, Option<DateTime<Utc>>)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT sealed, access_expires_at FROM provider_tokens \
         WHERE org_id = $1 AND provider_id = $2 AND end_user_id = $3",
    )
    .bind(org_id)
    .bind(provider_id)
    .bind(end_user_id)
    .fetch_optional(pool)
    .await?)
}

/// The ids of every stream of one aggregate type of an org, from the event log itself
/// (strongly consistent, unlike a read model): for a command that decides about all of an
/// org's servers. Meant for types with few events per stream (servers, providers).
pub async fn aggregate_ids_of_org(
    pool: &PgPool,
    org_id: Uuid,
    aggregate_type: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE org_id = $1 AND aggregate_type = $2",
    )
    .bind(org_id)
    .bind(aggregate_type)
    .fetch_all(pool)
    .await?)
}

/// The owner of a unique key, if claimed.
pub async fn owner_of(pool: &PgPool, kind: KeyKind, key: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT owner_id FROM unique_keys WHERE kind = $1 AND key = $2")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

/// Orgs with a pending invitation of an email (an index only: an invitation is accepted with
/// its token, see [`KeyKind::InvitationToken`]).
pub async fn orgs_inviting(pool: &PgPool, email: &str) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT org_id FROM pending_invitations WHERE email = $1 ORDER BY org_id",
    )
    .bind(email)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_key_kinds_are_distinct() {
        let mut names: Vec<&str> = KeyKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KeyKind::ALL.len());
    }
}

//! Look-ups in the write-side key index (`unique_keys`, `pending_invitations`). Commands use
//! them to find the stream a natural key (email, slug) belongs to; they are strongly consistent
//! because they are written in the same transaction as the events.

use crate::store::StoreError;
use sqlx::PgPool;
use uuid::Uuid;

/// Kinds of unique key.
pub const EMAIL: &str = "user_email";
pub const ORG_SLUG: &str = "org_slug";
pub const SERVER_SLUG: &str = "server_slug";
/// `{org id}/{tracking id}`: tracking ids are unique per org, not platform-wide.
pub const END_USER_TRACKING: &str = "end_user_tracking";
/// `{org id}/{end user id}` → the walkthrough the end user selected last (a pointer, re-claimed
/// on every new selection).
pub const WALKTHROUGH_SELECTED: &str = "walkthrough_selected";

/// The owner of a unique key, if claimed.
pub async fn owner_of(pool: &PgPool, kind: &str, key: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT owner_id FROM unique_keys WHERE kind = $1 AND key = $2")
            .bind(kind)
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

/// Orgs that invited an email which has no account yet.
pub async fn orgs_inviting(pool: &PgPool, email: &str) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT org_id FROM pending_invitations WHERE email = $1 ORDER BY org_id",
    )
    .bind(email)
    .fetch_all(pool)
    .await?)
}

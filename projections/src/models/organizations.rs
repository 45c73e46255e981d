//! Organizations, members (and pending invitations), and platform users' names.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::organization::{Organization, OrganizationEvent};
use domain::user::{User, UserEvent};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub struct OrganizationsProjection;

impl Projection for OrganizationsProjection {
    fn name(&self) -> &'static str {
        "organizations"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[Organization::TYPE, User::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_platform_users", "rm_orgs", "rm_org_members"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let users = t.name("rm_platform_users");
            let orgs = t.name("rm_orgs");
            let members = t.name("rm_org_members");
            for event in events {
                let at = event.recorded_at;
                if event.aggregate_type == "user" {
                    let UserEvent::UserSignedUp { email, name, .. } = event.decode()?;
                    let id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                    sqlx::query(&format!(
                        "INSERT INTO {users} (user_id, email, name, signed_up_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                    ))
                    .bind(id)
                    .bind(email.as_str())
                    .bind(name.as_str())
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                    continue;
                }
                let org_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                match event.decode::<OrganizationEvent>()? {
                    OrganizationEvent::OrganizationCreated {
                        name,
                        slug,
                        owner_id,
                        owner_email,
                    } => {
                        sqlx::query(&format!(
                            "INSERT INTO {orgs} (org_id, name, slug, created_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                        ))
                        .bind(org_id)
                        .bind(name.as_str())
                        .bind(slug.as_str())
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        upsert_member(
                            conn,
                            &members,
                            org_id,
                            owner_email.as_str(),
                            Some(owner_id),
                            "owner",
                            "active",
                            at,
                        )
                        .await?;
                    }
                    OrganizationEvent::MemberAdded {
                        user_id,
                        email,
                        role,
                    }
                    | OrganizationEvent::InvitationAccepted {
                        user_id,
                        email,
                        role,
                    } => {
                        upsert_member(
                            conn,
                            &members,
                            org_id,
                            email.as_str(),
                            Some(user_id),
                            role.as_str(),
                            "active",
                            at,
                        )
                        .await?;
                    }
                    OrganizationEvent::MemberInvited { email, role, .. } => {
                        upsert_member(
                            conn,
                            &members,
                            org_id,
                            email.as_str(),
                            None,
                            role.as_str(),
                            "invited",
                            at,
                        )
                        .await?;
                    }
                    OrganizationEvent::InvitationRevoked { email } => {
                        sqlx::query(&format!(
                            "DELETE FROM {members} WHERE org_id = $1 AND email = $2 AND status = 'invited'"
                        ))
                        .bind(org_id)
                        .bind(email.as_str())
                        .execute(&mut *conn)
                        .await?;
                    }
                    OrganizationEvent::MemberRoleChanged { user_id, role, .. } => {
                        sqlx::query(&format!(
                            "UPDATE {members} SET role = $3 WHERE org_id = $1 AND user_id = $2"
                        ))
                        .bind(org_id)
                        .bind(user_id)
                        .bind(role.as_str())
                        .execute(&mut *conn)
                        .await?;
                    }
                    OrganizationEvent::MemberRemoved { user_id, .. } => {
                        sqlx::query(&format!(
                            "DELETE FROM {members} WHERE org_id = $1 AND user_id = $2"
                        ))
                        .bind(org_id)
                        .bind(user_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn upsert_member(
    conn: &mut PgConnection,
    table: &str,
    org_id: Uuid,
    email: &str,
    user_id: Option<Uuid>,
    role: &str,
    status: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (org_id, email, user_id, role, status, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, email) DO UPDATE SET \
         user_id = EXCLUDED.user_id, role = EXCLUDED.role, status = EXCLUDED.status, \
         joined_at = EXCLUDED.joined_at"
    ))
    .bind(org_id)
    .bind(email)
    .bind(user_id)
    .bind(role)
    .bind(status)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OrgRow {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// The caller's role in it.
    pub role: String,
}

/// A member (`status` `active`) or an invitation (`invited`). Each has the time of its own
/// kind: a member when they joined, an invitation when it was sent.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MemberRow {
    /// `null` for an invitation.
    pub user_id: Option<Uuid>,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    /// `active` or `invited`.
    pub status: String,
    /// A member's only: when they joined (or accepted the invitation).
    #[serde(
        with = "domain::time::rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub joined_at: Option<DateTime<Utc>>,
    /// An invitation's only: when it was sent.
    #[serde(
        with = "domain::time::rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub invited_at: Option<DateTime<Utc>>,
}

/// The columns of a [`MemberRow`]. The table keeps one time per row, `joined_at`, which for an
/// invitation is when it was sent.
const MEMBER_COLUMNS: &str = "m.user_id, m.email, u.name, m.role, m.status, \
    CASE WHEN m.status = 'invited' THEN NULL ELSE m.joined_at END AS joined_at, \
    CASE WHEN m.status = 'invited' THEN m.joined_at END AS invited_at";

/// Resolves `{org}` (id or slug) for a user: the org and the user's role, or `None` when the
/// org does not exist or the user is not a member (both look the same to the caller).
pub async fn membership(
    pool: &PgPool,
    user_id: Uuid,
    org_ref: &str,
) -> Result<Option<(OrgId, String)>, sqlx::Error> {
    // An id when it parses as one, otherwise a slug (slugs are never UUID-shaped).
    let by_id: Option<Uuid> = org_ref.parse().ok();
    let by_slug = by_id.is_none().then_some(org_ref);
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT o.org_id, m.role FROM rm_orgs o \
         JOIN rm_org_members m ON m.org_id = o.org_id AND m.user_id = $1 AND m.status = 'active' \
         WHERE (o.org_id = $2 OR o.slug = $3)",
    )
    .bind(user_id)
    .bind(by_id)
    .bind(by_slug)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, role)| (OrgId(id), role)))
}

/// The orgs a user belongs to.
pub async fn orgs_of(pool: &PgPool, user_id: Uuid) -> Result<Vec<OrgRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.org_id AS id, o.name, o.slug, o.created_at, m.role FROM rm_orgs o \
         JOIN rm_org_members m ON m.org_id = o.org_id \
         WHERE m.user_id = $1 AND m.status = 'active' ORDER BY o.created_at, o.org_id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// One org, as seen by a member.
pub async fn org(pool: &PgPool, org: OrgId, user_id: Uuid) -> Result<Option<OrgRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.org_id AS id, o.name, o.slug, o.created_at, m.role FROM rm_orgs o \
         JOIN rm_org_members m ON m.org_id = o.org_id AND m.user_id = $2 \
         WHERE o.org_id = $1",
    )
    .bind(org.0)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// Members and pending invitations of an org.
pub async fn members(pool: &PgPool, org: OrgId) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MEMBER_COLUMNS} \
         FROM rm_org_members m LEFT JOIN rm_platform_users u ON u.user_id = m.user_id \
         WHERE m.org_id = $1 ORDER BY m.joined_at, m.email"
    ))
    .bind(org.0)
    .fetch_all(pool)
    .await
}

/// One member (or invitation) of an org, by user id or email.
pub async fn member(
    pool: &PgPool,
    org: OrgId,
    member_ref: &str,
) -> Result<Option<MemberRow>, sqlx::Error> {
    let by_id: Option<Uuid> = member_ref.parse().ok();
    sqlx::query_as(&format!(
        "SELECT {MEMBER_COLUMNS} \
         FROM rm_org_members m LEFT JOIN rm_platform_users u ON u.user_id = m.user_id \
         WHERE m.org_id = $1 AND (m.user_id = $2 OR m.email = lower($3)) LIMIT 1"
    ))
    .bind(org.0)
    .bind(by_id)
    .bind(member_ref)
    .fetch_optional(pool)
    .await
}

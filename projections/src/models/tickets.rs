//! Support tickets and their activity timeline.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::ticket::{Ticket, TicketEvent};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub struct TicketsProjection;

impl Projection for TicketsProjection {
    fn name(&self) -> &'static str {
        "tickets"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[Ticket::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_tickets", "rm_ticket_activity"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let tickets = t.name("rm_tickets");
            let activity = t.name("rm_ticket_activity");
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                let ticket_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                let at = event.recorded_at;
                let actor = event.typed_metadata().actor;
                let (kind, detail) = match event.decode::<TicketEvent>()? {
                    TicketEvent::TicketOpened {
                        server_id,
                        end_user_id,
                        title,
                        description,
                        email,
                        context,
                        ..
                    } => {
                        sqlx::query(&format!(
                            "INSERT INTO {tickets} (org_id, ticket_id, server_id, end_user_id, title, \
                             description, email, context, status, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'new', $9, $9) ON CONFLICT DO NOTHING"
                        ))
                        .bind(org_id)
                        .bind(ticket_id)
                        .bind(server_id)
                        .bind(end_user_id)
                        .bind(&title)
                        .bind(&description)
                        .bind(&email)
                        .bind(&context)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        ("opened", json!({ "title": title, "server_id": server_id }))
                    }
                    TicketEvent::TicketStatusChanged { from, to, .. } => {
                        sqlx::query(&format!(
                            "UPDATE {tickets} SET status = $3, updated_at = $4 \
                             WHERE org_id = $1 AND ticket_id = $2"
                        ))
                        .bind(org_id)
                        .bind(ticket_id)
                        .bind(to.as_str())
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        ("status_changed", json!({ "from": from, "to": to }))
                    }
                    TicketEvent::TicketCommented { body, .. } => {
                        sqlx::query(&format!(
                            "UPDATE {tickets} SET comments = comments + 1, updated_at = $3 \
                             WHERE org_id = $1 AND ticket_id = $2"
                        ))
                        .bind(org_id)
                        .bind(ticket_id)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        ("commented", json!({ "body": body }))
                    }
                    TicketEvent::TicketAssigned { member_id, .. } => {
                        set_assignee(conn, &tickets, org_id, ticket_id, Some(member_id), at)
                            .await?;
                        ("assigned", json!({ "member_id": member_id }))
                    }
                    TicketEvent::TicketUnassigned { .. } => {
                        set_assignee(conn, &tickets, org_id, ticket_id, None, at).await?;
                        ("unassigned", json!({}))
                    }
                };
                sqlx::query(&format!(
                    "INSERT INTO {activity} (org_id, ticket_id, event_id, transaction_id, \
                     global_position, occurred_at, kind, actor_kind, actor_id, detail) \
                     VALUES ($1, $2, $3, $4::text::xid8, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
                ))
                .bind(org_id)
                .bind(ticket_id)
                .bind(event.event_id)
                .bind(event.cursor.transaction_id.to_string())
                .bind(event.cursor.global_position)
                .bind(at)
                .bind(kind)
                .bind(actor.kind())
                .bind(actor.id())
                .bind(detail)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TicketRow {
    pub id: Uuid,
    pub server_id: Uuid,
    pub end_user_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub email: Option<String>,
    pub context: Option<String>,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub comments: i64,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "ticket_id AS id, server_id, end_user_id, title, description, email, \
    context, status, assignee_id, comments, created_at, updated_at";

#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<String>,
    pub server_id: Option<Uuid>,
    pub end_user_id: Option<Uuid>,
}

/// An org's tickets, newest first.
pub async fn list(
    pool: &PgPool,
    org: OrgId,
    filter: &TicketFilter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_tickets WHERE org_id = $1 \
         AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR server_id = $3) \
         AND ($4::uuid IS NULL OR {person}) \
         AND ($5::timestamptz IS NULL OR (created_at, ticket_id) < ($5, $6)) \
         ORDER BY created_at DESC, ticket_id DESC LIMIT $7",
        person = super::people::of_person(4)
    ))
    .bind(org.0)
    .bind(&filter.status)
    .bind(filter.server_id)
    .bind(filter.end_user_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    org: OrgId,
    ticket_id: Uuid,
) -> Result<Option<TicketRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_tickets WHERE org_id = $1 AND ticket_id = $2"
    ))
    .bind(org.0)
    .bind(ticket_id)
    .fetch_optional(pool)
    .await
}

/// A ticket's assignee, `None` for nobody.
async fn set_assignee(
    conn: &mut PgConnection,
    tickets: &str,
    org_id: Uuid,
    ticket_id: Uuid,
    assignee: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {tickets} SET assignee_id = $3, updated_at = $4 \
         WHERE org_id = $1 AND ticket_id = $2"
    ))
    .bind(org_id)
    .bind(ticket_id)
    .bind(assignee)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The org's tickets whose ids lie in `range` (see `domain::ticket::reference_range`), at most
/// five: a reference names one, or the caller is shown a few of those it could mean.
pub async fn ids_in_range(
    pool: &PgPool,
    org: OrgId,
    range: (Uuid, Uuid),
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT ticket_id FROM rm_tickets WHERE org_id = $1 AND ticket_id BETWEEN $2 AND $3 \
         ORDER BY ticket_id LIMIT 5",
    )
    .bind(org.0)
    .bind(range.0)
    .bind(range.1)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActivityRow {
    #[serde(with = "domain::time::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// A ticket's timeline, oldest first.
pub async fn activity(
    pool: &PgPool,
    org: OrgId,
    ticket_id: Uuid,
) -> Result<Vec<ActivityRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT occurred_at, kind, actor_kind, actor_id, detail FROM rm_ticket_activity \
         WHERE org_id = $1 AND ticket_id = $2 ORDER BY transaction_id, global_position",
    )
    .bind(org.0)
    .bind(ticket_id)
    .fetch_all(pool)
    .await
}

pub async fn count_open(pool: &PgPool, org: OrgId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM rm_tickets WHERE org_id = $1 AND status NOT IN ('resolved', 'closed')",
    )
    .bind(org.0)
    .fetch_one(pool)
    .await
}

//! The audit log: who did what, when, from where, for every event of an org.

use crate::projection::{Projection, ProjectionError, Tables};
use chrono::{DateTime, Utc};
use domain::values::OrgId;
use eventstore::{Cursor, StoredEvent};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

pub struct AuditProjection;

/// Aggregates whose events stay out of the audit log: end users' own activity on the MCP edge,
/// which has its own views (end users, sessions, tool calls).
const NOT_AUDITED: &[&str] = eventstore::nats::ACTIVITY_AGGREGATES;

impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_audit_log"]
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        !NOT_AUDITED.contains(&aggregate_type)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            // End users' own activity (tool calls, protocol sessions) has its own views; the
            // audit log is what people and the platform did to the org.
            let rows: Vec<&StoredEvent> = events
                .iter()
                .filter(|e| e.org_id.is_some() && !NOT_AUDITED.contains(&e.aggregate_type.as_str()))
                .collect();
            if rows.is_empty() {
                return Ok(());
            }
            let n = rows.len();
            let mut org_ids = Vec::with_capacity(n);
            let mut txs = Vec::with_capacity(n);
            let mut positions = Vec::with_capacity(n);
            let mut event_ids = Vec::with_capacity(n);
            let mut occurred = Vec::with_capacity(n);
            let mut actor_kinds = Vec::with_capacity(n);
            let mut actor_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
            let mut actions = Vec::with_capacity(n);
            let mut target_types = Vec::with_capacity(n);
            let mut target_ids = Vec::with_capacity(n);
            let mut summaries = Vec::with_capacity(n);
            let mut request_ids: Vec<Option<String>> = Vec::with_capacity(n);
            let mut client_ips: Vec<Option<String>> = Vec::with_capacity(n);
            for e in rows {
                let meta = e.typed_metadata();
                org_ids.push(e.org_id.unwrap_or_default());
                txs.push(e.cursor.transaction_id.to_string());
                positions.push(e.cursor.global_position);
                event_ids.push(e.event_id);
                occurred.push(e.recorded_at);
                actor_kinds.push(meta.actor.kind());
                actor_ids.push(meta.actor.id());
                actions.push(e.event_type.as_str());
                target_types.push(e.aggregate_type.as_str());
                target_ids.push(e.aggregate_id.as_str());
                summaries.push(describe(&e.event_type, &e.payload_value()));
                request_ids.push(meta.request_id);
                client_ips.push(meta.client_ip);
            }
            let table = t.name("rm_audit_log");
            sqlx::query(&format!(
                "INSERT INTO {table} (org_id, transaction_id, global_position, event_id, \
                 occurred_at, actor_kind, actor_id, action, target_type, target_id, summary, \
                 request_id, client_ip) \
                 SELECT o, t::xid8, p, e, at, ak, ai, a, tt, ti, s, r, ip FROM UNNEST( \
                 $1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::timestamptz[], $6::text[], \
                 $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
                 $13::text[]) AS u(o, t, p, e, at, ak, ai, a, tt, ti, s, r, ip) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(&org_ids)
            .bind(&txs)
            .bind(&positions)
            .bind(&event_ids)
            .bind(&occurred)
            .bind(&actor_kinds)
            .bind(&actor_ids)
            .bind(&actions)
            .bind(&target_types)
            .bind(&target_ids)
            .bind(&summaries)
            .bind(&request_ids)
            .bind(&client_ips)
            .execute(conn)
            .await?;
            Ok(())
        })
    }
}

/// A one-line human summary of an event for the audit log.
pub fn describe(event_type: &str, payload: &Value) -> String {
    let s = |key: &str| payload.get(key).and_then(Value::as_str).unwrap_or("?");
    let n = |key: &str| payload.get(key).and_then(Value::as_i64).unwrap_or_default();
    let step_title = || {
        payload
            .get("step")
            .and_then(|step| step.get("title"))
            .and_then(Value::as_str)
            .unwrap_or("?")
    };
    match event_type {
        "OrganizationCreated" => format!("created organization {} ({})", s("name"), s("slug")),
        "MemberAdded" => format!("added {} as {}", s("email"), s("role")),
        "MemberInvited" => format!("invited {} as {}", s("email"), s("role")),
        "InvitationAccepted" => format!("{} accepted the invitation as {}", s("email"), s("role")),
        "InvitationRevoked" => format!("revoked the invitation of {}", s("email")),
        "MemberRoleChanged" => {
            format!("changed {} from {} to {}", s("email"), s("from"), s("role"))
        }
        "MemberRemoved" => format!("removed {}", s("email")),
        "ServerCreated" => format!("created server {} ({})", s("name"), s("slug")),
        "ServerUpdated" => format!("updated server {} ({})", s("name"), s("slug")),
        "ServerArchived" => format!("archived server {}", s("slug")),
        "WalkthroughCreated" => format!("created walkthrough \"{}\"", s("title")),
        "WalkthroughDetailsChanged" => format!("renamed the walkthrough \"{}\"", s("title")),
        "StepAdded" => format!("added step \"{}\"", step_title()),
        "StepEdited" => format!("edited step \"{}\"", step_title()),
        "StepRemoved" => "removed a step".to_owned(),
        "StepMoved" => "moved a step".to_owned(),
        "WalkthroughPublished" => {
            format!("published version {} of \"{}\"", n("version"), s("title"))
        }
        "WalkthroughUnpublished" => format!("unpublished version {}", n("version")),
        "WalkthroughRepublished" => format!("published version {} again", n("version")),
        "WalkthroughArchived" => "archived the walkthrough".to_owned(),
        "WalkthroughAssigned" => format!("put the walkthrough on server {}", s("server_id")),
        "WalkthroughAssignmentChanged" => format!(
            "changed the walkthrough's place on server {} (order {}, {})",
            s("server_id"),
            n("display_order"),
            if payload.get("enabled") == Some(&Value::Bool(true)) {
                "enabled"
            } else {
                "disabled"
            }
        ),
        "WalkthroughUnassigned" => format!("took the walkthrough off server {}", s("server_id")),
        "TicketOpened" => format!("opened ticket \"{}\"", s("title")),
        "TicketStatusChanged" => format!("moved the ticket from {} to {}", s("from"), s("to")),
        "TicketCommented" => "commented on the ticket".to_owned(),
        "TicketAssigned" => format!("assigned the ticket to {}", s("member_id")),
        "TicketUnassigned" => "took the ticket off its assignee".to_owned(),
        other => other.to_owned(),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Pass it as `before` for the entries before this one.
    #[schema(value_type = String)]
    pub cursor: Cursor,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActor,
    pub action: String,
    pub target: AuditTarget,
    pub summary: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditActor {
    pub kind: String,
    pub id: Option<Uuid>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// Newest first, `limit` entries older than `before`.
pub async fn page(
    pool: &PgPool,
    org: OrgId,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let before = before.unwrap_or(Cursor::new(i64::MAX, i64::MAX));
    let rows = sqlx::query(
        "SELECT a.transaction_id::text::bigint AS tx, a.global_position, a.event_id, a.occurred_at, \
         a.actor_kind, a.actor_id, u.email AS actor_email, a.action, a.target_type, a.target_id, \
         a.summary, a.request_id, a.client_ip \
         FROM rm_audit_log a LEFT JOIN rm_platform_users u ON u.user_id = a.actor_id \
         WHERE a.org_id = $1 AND (a.transaction_id, a.global_position) < ($2::text::xid8, $3) \
         ORDER BY a.transaction_id DESC, a.global_position DESC LIMIT $4",
    )
    .bind(org.0)
    .bind(before.transaction_id.to_string())
    .bind(before.global_position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                cursor: Cursor::new(r.try_get("tx")?, r.try_get("global_position")?),
                event_id: r.try_get("event_id")?,
                occurred_at: r.try_get("occurred_at")?,
                actor: AuditActor {
                    kind: r.try_get("actor_kind")?,
                    id: r.try_get("actor_id")?,
                    email: r.try_get("actor_email")?,
                },
                action: r.try_get("action")?,
                target: AuditTarget {
                    kind: r.try_get("target_type")?,
                    id: r.try_get("target_id")?,
                },
                summary: r.try_get("summary")?,
                request_id: r.try_get("request_id")?,
                client_ip: r.try_get("client_ip")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::describe;
    use domain::metadata::Actor;
    use domain::ticket::{TicketEvent, TicketStatus};
    use domain::walkthrough::{StepContent, WalkthroughEvent};
    use domain::DomainEvent;
    use serde::Serialize;
    use serde_json::Value;
    use uuid::Uuid;

    /// The summary of an event as the store holds it: its fields, without the variant tag.
    fn summary<E: Serialize + DomainEvent>(event: E) -> String {
        let tagged = serde_json::to_value(&event).unwrap();
        let payload = match tagged {
            Value::Object(map) => map.into_iter().next().map(|(_, v)| v).unwrap(),
            unit => unit,
        };
        describe(event.event_type(), &payload)
    }

    #[test]
    fn walkthrough_and_ticket_events_read_as_sentences() {
        let step = StepContent {
            title: "Install".into(),
            content: String::new(),
            agent_instructions: None,
            operations: Vec::new(),
        };
        assert_eq!(
            summary(WalkthroughEvent::StepAdded {
                step_id: Uuid::nil(),
                after_step_id: None,
                step,
            }),
            "added step \"Install\""
        );
        assert_eq!(
            summary(WalkthroughEvent::WalkthroughPublished {
                version: 2,
                title: "Quickstart".into(),
                description: None,
                steps: Vec::new(),
            }),
            "published version 2 of \"Quickstart\""
        );
        assert_eq!(
            summary(WalkthroughEvent::WalkthroughRepublished { version: 2 }),
            "published version 2 again"
        );
        assert_eq!(
            summary(WalkthroughEvent::WalkthroughArchived),
            "archived the walkthrough"
        );
        assert_eq!(
            summary(TicketEvent::TicketStatusChanged {
                from: TicketStatus::New,
                to: TicketStatus::InProgress,
                by: Actor::System,
            }),
            "moved the ticket from new to in_progress"
        );
        assert_eq!(
            summary(TicketEvent::TicketUnassigned { by: Actor::System }),
            "took the ticket off its assignee"
        );
    }
}

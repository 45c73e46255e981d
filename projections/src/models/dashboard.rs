//! The dashboard overview: per-org counters, kept as a rollup so reading it is one row.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::organization::{Organization, OrganizationEvent};
use domain::server::{Server, ServerEvent};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use uuid::Uuid;

pub struct DashboardProjection;

#[derive(Default)]
struct Delta {
    servers_active: i64,
    servers_archived: i64,
    members: i64,
    invitations_pending: i64,
    events_total: i64,
    last_event_at: Option<DateTime<Utc>>,
}

impl Projection for DashboardProjection {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    /// End users' activity is counted by its own read models (end users, sessions, tool
    /// calls); `events` counts what happened to the org itself.
    fn reads(&self) -> Reads {
        Reads::AllBut(eventstore::nats::ACTIVITY_AGGREGATES)
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_dashboard"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            // Fold the batch in memory, then one upsert per org.
            let mut deltas: BTreeMap<Uuid, Delta> = BTreeMap::new();
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                let d = deltas.entry(org_id).or_default();
                d.events_total += 1;
                d.last_event_at = d.last_event_at.max(Some(event.recorded_at));
                if event.aggregate_type == Organization::TYPE {
                    match event.decode::<OrganizationEvent>()? {
                        OrganizationEvent::OrganizationCreated { .. }
                        | OrganizationEvent::MemberAdded { .. } => d.members += 1,
                        OrganizationEvent::InvitationAccepted { .. } => {
                            d.members += 1;
                            d.invitations_pending -= 1;
                        }
                        OrganizationEvent::MemberInvited { .. } => d.invitations_pending += 1,
                        OrganizationEvent::InvitationRevoked { .. } => d.invitations_pending -= 1,
                        OrganizationEvent::MemberRemoved { .. } => d.members -= 1,
                        OrganizationEvent::MemberRoleChanged { .. } => {}
                    }
                } else if event.aggregate_type == Server::TYPE {
                    match event.decode::<ServerEvent>()? {
                        ServerEvent::ServerCreated { .. } => d.servers_active += 1,
                        ServerEvent::ServerArchived { .. } => {
                            d.servers_active -= 1;
                            d.servers_archived += 1;
                        }
                        ServerEvent::ServerUpdated { .. }
                        | ServerEvent::TrackingSecretCreated { .. }
                        | ServerEvent::TrackingSecretRevoked { .. } => {}
                    }
                }
            }
            let table = t.name("rm_dashboard");
            for (org_id, d) in deltas {
                sqlx::query(&format!(
                    "INSERT INTO {table} AS d (org_id, servers_active, servers_archived, members, \
                     invitations_pending, events_total, last_event_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id) DO UPDATE SET \
                     servers_active = d.servers_active + EXCLUDED.servers_active, \
                     servers_archived = d.servers_archived + EXCLUDED.servers_archived, \
                     members = d.members + EXCLUDED.members, \
                     invitations_pending = d.invitations_pending + EXCLUDED.invitations_pending, \
                     events_total = d.events_total + EXCLUDED.events_total, \
                     last_event_at = GREATEST(d.last_event_at, EXCLUDED.last_event_at)"
                ))
                .bind(org_id)
                .bind(d.servers_active)
                .bind(d.servers_archived)
                .bind(d.members)
                .bind(d.invitations_pending)
                .bind(d.events_total)
                .bind(d.last_event_at)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct Counters {
    pub servers_active: i64,
    pub servers_archived: i64,
    pub members: i64,
    pub invitations_pending: i64,
    pub events_total: i64,
    #[serde(with = "domain::time::rfc3339_option")]
    pub last_event_at: Option<DateTime<Utc>>,
}

pub async fn counters(pool: &PgPool, org: OrgId) -> Result<Counters, sqlx::Error> {
    let row: Option<Counters> = sqlx::query_as(
        "SELECT servers_active, servers_archived, members, invitations_pending, events_total, \
         last_event_at FROM rm_dashboard WHERE org_id = $1",
    )
    .bind(org.0)
    .fetch_optional(pool)
    .await?;
    Ok(row.unwrap_or_default())
}

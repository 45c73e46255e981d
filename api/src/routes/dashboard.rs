//! `/api/v1/orgs/{org}/dashboard` and `/api/v1/orgs/{org}/audit`.

use crate::error::{ApiError, ErrorCode};
use crate::extract::{Membership, NoQuery, QueryParams};
use crate::paging::Page;
use crate::params::OrgPath;
use crate::state::{AppState, ServerUrls};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::values::Role;
use eventstore::Cursor;
use projections::models::audit::AuditEntry;
use projections::models::{
    audit, dashboard, organizations, people, servers, tickets, usage, walkthrough_analytics,
    walkthrough_progress,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the dashboard's front page shows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    org: DashboardOrg,
    /// The caller's role.
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    role: Role,
    /// The active servers.
    servers: Vec<DashboardServer>,
    counters: Counters,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DashboardOrg {
    id: Uuid,
    name: String,
    slug: String,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DashboardServer {
    id: Uuid,
    name: String,
    slug: String,
    auth_mode: String,
    urls: ServerUrls,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Active servers.
    servers: i64,
    servers_archived: i64,
    members: i64,
    invitations_pending: i64,
    /// Events in the org's log.
    events: i64,
    #[serde(with = "domain::time::rfc3339_option")]
    last_activity_at: Option<DateTime<Utc>>,
    /// People: end users merged by identity stitching count once.
    end_users: i64,
    /// People who signed in with one of the org's identity providers.
    end_users_identified: i64,
    /// People known only by tracking ids (and emails they typed).
    end_users_anonymous: i64,
    /// End users' sign-ins in the last 24 hours, counted by the hour.
    sign_ins_24h: i64,
    /// End users' sign-ins in the last 7 days, counted by the hour.
    sign_ins_7d: i64,
    sessions: i64,
    /// Tool calls in the last 24 hours, counted by the hour.
    tool_calls_24h: i64,
    /// Tool calls in the last 7 days, counted by the hour.
    tool_calls_7d: i64,
    open_tickets: i64,
    /// End users' walkthrough runs under way.
    walkthroughs_active: i64,
    /// Walkthrough runs ever completed (still counted after their end user starts over).
    walkthroughs_completed: i64,
}

#[utoipa::path(operation_id = "dashboard_overview", get, path = "/api/v1/orgs/{org}/dashboard", tag = "dashboard", params(OrgPath), security(("bearer" = [])),
    responses((status = 200, description = "Overview and counters", body = Dashboard)))]
pub async fn overview(
    State(state): State<AppState>,
    Membership { user, org, role }: Membership,
    _: NoQuery,
) -> Result<Json<Dashboard>, ApiError> {
    let org_row = organizations::org(&state.pool, org, user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::OrgNotFound))?;
    let counters = dashboard::counters(&state.pool, org).await?;
    let now = chrono::Utc::now();
    let people_counts = people::counts(&state.pool, org).await?;
    let sign_ins_24h =
        people::sign_ins_since(&state.pool, org, now - chrono::Duration::hours(24)).await?;
    let sign_ins_7d =
        people::sign_ins_since(&state.pool, org, now - chrono::Duration::days(7)).await?;
    let sessions = usage::count_sessions(&state.pool, org).await?;
    let calls_24h = usage::calls_since(&state.pool, org, now - chrono::Duration::hours(24)).await?;
    let calls_7d = usage::calls_since(&state.pool, org, now - chrono::Duration::days(7)).await?;
    let open_tickets = tickets::count_open(&state.pool, org).await?;
    let walkthroughs_active = walkthrough_progress::active_runs(&state.pool, org).await?;
    let walkthroughs_completed = walkthrough_analytics::completed_runs(&state.pool, org).await?;
    let server_rows = servers::list(&state.pool, org, false).await?;
    let servers = server_rows
        .into_iter()
        .map(|s| DashboardServer {
            urls: state.server_urls(&s.slug),
            id: s.id,
            name: s.name,
            slug: s.slug,
            auth_mode: s.auth_mode,
        })
        .collect();
    Ok(Json(Dashboard {
        org: DashboardOrg {
            id: org_row.id,
            name: org_row.name,
            slug: org_row.slug,
            created_at: org_row.created_at,
        },
        role,
        servers,
        counters: Counters {
            servers: counters.servers_active,
            servers_archived: counters.servers_archived,
            members: counters.members,
            invitations_pending: counters.invitations_pending,
            events: counters.events_total,
            last_activity_at: counters.last_event_at,
            end_users: people_counts.people,
            end_users_identified: people_counts.identified,
            end_users_anonymous: people_counts.people - people_counts.identified,
            sign_ins_24h,
            sign_ins_7d,
            sessions,
            tool_calls_24h: calls_24h,
            tool_calls_7d: calls_7d,
            open_tickets,
            walkthroughs_active,
            walkthroughs_completed,
        },
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page (an entry's `cursor`).
    #[serde(default)]
    before: Option<String>,
    /// Entries per page, 1 to 500; default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(operation_id = "dashboard_audit_log", get, path = "/api/v1/orgs/{org}/audit", tag = "dashboard", params(OrgPath, AuditQuery), security(("bearer" = [])),
    responses((status = 200, description = "Audit entries, newest first, and the next cursor", body = Page<AuditEntry>)))]
pub async fn audit_log(
    State(state): State<AppState>,
    Membership { org, role, .. }: Membership,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let before = q
        .before
        .as_deref()
        .map(|c| c.parse::<Cursor>())
        .transpose()?;
    let limit = crate::paging::limit(q.limit)?;
    let rows = audit::page(&state.pool, org, before, limit.rows()).await?;
    let (mut items, more) = crate::paging::split(rows, limit);
    // Where an entry came from is personal data: owners and admins only (null for members).
    if !role.sees_client_details() {
        for entry in &mut items {
            entry.client_ip = None;
        }
    }
    let next_cursor = more
        .then(|| items.last().map(|e| e.cursor.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

//! `/api/v1/orgs/{org}/dashboard` and `/api/v1/orgs/{org}/audit`.

use crate::error::ApiError;
use crate::extract::{AuthUser, NoQuery, QueryParams};
use crate::openapi::Problem;
use crate::routes::orgs::resolve;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use eventstore::Cursor;
use projections::models::{
    audit, dashboard, organizations, servers, tickets, usage, walkthrough_analytics,
    walkthrough_progress,
};
use serde::Deserialize;
use serde_json::json;

#[utoipa::path(operation_id = "dashboard_overview", get, path = "/api/v1/orgs/{org}/dashboard", tag = "dashboard", params(("org" = String, Path, description = "Org id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "Overview and counters"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path(org_ref): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, role) = resolve(&state, &user, &org_ref).await?;
    let org_row = organizations::org(&state.pool, org, user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let counters = dashboard::counters(&state.pool, org).await?;
    let now = chrono::Utc::now();
    let end_users = usage::count_end_users(&state.pool, org).await?;
    let sessions = usage::count_sessions(&state.pool, org).await?;
    let calls_24h = usage::calls_since(&state.pool, org, now - chrono::Duration::hours(24)).await?;
    let calls_7d = usage::calls_since(&state.pool, org, now - chrono::Duration::days(7)).await?;
    let open_tickets = tickets::count_open(&state.pool, org).await?;
    let walkthroughs_active = walkthrough_progress::active_runs(&state.pool, org).await?;
    let walkthroughs_completed = walkthrough_analytics::completed_runs(&state.pool, org).await?;
    let server_rows = servers::list(&state.pool, org, false).await?;
    let servers: Vec<_> = server_rows
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "name": s.name, "slug": s.slug, "auth_mode": s.auth_mode,
                "urls": state.server_urls(&s.slug),
            })
        })
        .collect();
    Ok(Json(json!({
        "org": { "id": org_row.id, "name": org_row.name, "slug": org_row.slug, "created_at": org_row.created_at },
        "role": role.as_str(),
        "servers": servers,
        "counters": {
            "servers": counters.servers_active,
            "servers_archived": counters.servers_archived,
            "members": counters.members,
            "invitations_pending": counters.invitations_pending,
            "events": counters.events_total,
            "last_activity_at": counters.last_event_at,
            "end_users": end_users,
            "sessions": sessions,
            // Hour-granular windows (from the hourly rollup).
            "tool_calls_24h": calls_24h,
            "tool_calls_7d": calls_7d,
            "open_tickets": open_tickets,
            // End users' walkthrough runs: under way now, and completed ever (a completed run
            // still counts after its end user starts over).
            "walkthroughs_active": walkthroughs_active,
            "walkthroughs_completed": walkthroughs_completed,
        },
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(operation_id = "dashboard_audit_log", get, path = "/api/v1/orgs/{org}/audit", tag = "dashboard", params(("org" = String, Path, description = "Org id or slug"), ("before" = Option<String>, Query, description = "Cursor of the last entry seen"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")), security(("bearer" = [])),
    responses((status = 200, description = "Audit entries, newest first, and the next cursor"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn audit_log(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let before = q
        .before
        .as_deref()
        .map(|c| c.parse::<Cursor>())
        .transpose()
        .map_err(|e| ApiError::BadRequest {
            code: "invalid_cursor",
            detail: e.to_string(),
        })?;
    let limit = crate::paging::limit(q.limit)?;
    let rows = audit::page(&state.pool, org, before, limit.rows()).await?;
    let (items, more) = crate::paging::split(rows, limit);
    let next_cursor = more
        .then(|| items.last().map(|e| e.cursor.to_string()))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

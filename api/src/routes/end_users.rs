//! `/api/v1/orgs/{org}/users`: the end users of an org's servers.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{Membership, NoQuery, Path};
use crate::paging::{NoFilters, Page, PageQuery, Paged};
use crate::params::{EndUserPath, OrgPath};
use crate::routes::tickets::TicketItem;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use commands::services::end_users;
use domain::end_user::TrackingId;
use domain::values::OrgId;
use projections::models::tickets::{self as rm_tickets, TicketFilter};
use projections::models::usage::{self as rm, EndUserRow, SessionFilter, SessionRow};
use projections::models::walkthrough_progress::{self, ProgressRow};
use serde::Serialize;
use uuid::Uuid;

/// An end user with their recent sessions, tickets and walkthroughs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndUserDetail {
    #[serde(flatten)]
    row: EndUserRow,
    /// The 20 most recent, newest first.
    recent_sessions: Vec<SessionRow>,
    /// The 50 most recent, newest first.
    tickets: Vec<TicketItem>,
    walkthroughs: Vec<ProgressRow>,
}

#[utoipa::path(operation_id = "end_users_list", get, path = "/api/v1/orgs/{org}/users", tag = "end users",
    params(OrgPath, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "End users, most recently seen first", body = Page<EndUserRow>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged { limit, before, .. }: Paged<NoFilters>,
) -> Result<Json<Page<EndUserRow>>, ApiError> {
    let rows = rm::end_users(&state.pool, org, before, limit.rows()).await?;
    Ok(Json(Page::of(rows, limit, |r| {
        (r.last_seen_at, r.id.to_string())
    })))
}

#[utoipa::path(operation_id = "end_users_get", get, path = "/api/v1/orgs/{org}/users/{user}", tag = "end users",
    params(EndUserPath), security(("bearer" = [])),
    responses((status = 200, description = "The end user with recent sessions and tickets", body = EndUserDetail), (status = 404, description = "No such end user in this org", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(EndUserPath { user, .. }): Path<EndUserPath>,
) -> Result<Json<EndUserDetail>, ApiError> {
    let row = end_user(&state, org, &user)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::EndUserNotFound))?;
    let id = row.id;
    let sessions = rm::sessions(
        &state.pool,
        org,
        &SessionFilter {
            end_user_id: Some(id),
            ..Default::default()
        },
        None,
        20,
    )
    .await?;
    let tickets = rm_tickets::list(
        &state.pool,
        org,
        &TicketFilter {
            end_user_id: Some(id),
            ..Default::default()
        },
        None,
        50,
    )
    .await?;
    let tickets = tickets.into_iter().map(TicketItem::from).collect();
    let walkthroughs = walkthrough_progress::of_end_user(&state.pool, org, id).await?;
    Ok(Json(EndUserDetail {
        row,
        recent_sessions: sessions,
        tickets,
        walkthroughs,
    }))
}

/// An end user named in a path or a filter: by id, or by a tracking id the org's servers have
/// seen (the support team knows those). Tracking ids are often UUIDs themselves, so an id that
/// names no end user of the org is tried as a tracking id too.
async fn end_user(state: &AppState, org: OrgId, raw: &str) -> Result<Option<EndUserRow>, ApiError> {
    let raw = raw.trim();
    if let Ok(id) = raw.parse::<Uuid>() {
        if let Some(row) = rm::end_user(&state.pool, org, id).await? {
            return Ok(Some(row));
        }
    }
    let Some(tracking_id) = TrackingId::parse(raw) else {
        return Ok(None);
    };
    match end_users::find(&state.pool, org, &tracking_id).await? {
        Some(id) => Ok(rm::end_user(&state.pool, org, id).await?),
        None => Ok(None),
    }
}

/// An `end_user` filter of a list (an end user id or tracking id): `Some(None)` when absent,
/// `Some(Some(id))` for an end user of the org, `None` when it names nobody (the list is then
/// empty).
pub async fn end_user_filter(
    state: &AppState,
    org: OrgId,
    raw: Option<&str>,
) -> Result<Option<Option<Uuid>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Some(None));
    };
    Ok(end_user(state, org, raw).await?.map(|row| Some(row.id)))
}

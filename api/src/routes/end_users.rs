//! `/api/v1/orgs/{org}/users`: the end users of an org's servers.

use crate::error::ApiError;
use crate::extract::{AuthUser, NoQuery, QueryParams};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::orgs::resolve;
use crate::routes::tickets::TicketItem;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use commands::services::end_users;
use domain::end_user::TrackingId;
use domain::values::OrgId;
use projections::models::tickets::{self as rm_tickets, TicketFilter};
use projections::models::usage::{self as rm, SessionFilter};
use projections::models::walkthrough_progress;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(operation_id = "end_users_list", get, path = "/api/v1/orgs/{org}/users", tag = "end users",
    params(("org" = String, Path, description = "Org id or slug"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "End users, most recently seen first"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let limit = paging::limit(q.limit)?;
    let before = paging::decode(q.cursor.as_deref(), |id| id.parse::<Uuid>().ok())?;
    let rows = rm::end_users(&state.pool, org, before, limit.rows()).await?;
    Ok(paging::page(rows, limit, |r| {
        (r.last_seen, r.id.to_string())
    }))
}

#[utoipa::path(operation_id = "end_users_get", get, path = "/api/v1/orgs/{org}/users/{user}", tag = "end users",
    params(("org" = String, Path, description = "Org id or slug"), ("user" = String, Path, description = "End user id, or a tracking id the org's servers have seen")), security(("bearer" = [])),
    responses((status = 200, description = "The end user with recent sessions and tickets"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such end user in this org", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, user_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = end_user(&state, org, &user_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("end user"))?;
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
    let tickets: Vec<TicketItem> = tickets.into_iter().map(TicketItem::from).collect();
    let walkthroughs = walkthrough_progress::of_end_user(&state.pool, org, id).await?;
    let mut value = json!(row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("recent_sessions".to_owned(), json!(sessions));
        obj.insert("tickets".to_owned(), json!(tickets));
        obj.insert("walkthroughs".to_owned(), json!(walkthroughs));
    }
    Ok(Json(value))
}

/// An end user named in a path or a filter: by id, or by a tracking id the org's servers have
/// seen (the support team knows those). Tracking ids are often UUIDs themselves, so an id that
/// names no end user of the org is tried as a tracking id too.
async fn end_user(
    state: &AppState,
    org: OrgId,
    raw: &str,
) -> Result<Option<rm::EndUserRow>, ApiError> {
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

//! `/api/v1/orgs/{org}/users`: the end users of an org's servers.

use crate::error::ApiError;
use crate::extract::{AuthUser, QueryParams};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::orgs::resolve;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
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
    let rows = rm::end_users(&state.pool, org, before, limit).await?;
    Ok(paging::page(rows, limit, |r| {
        (r.last_seen, r.id.to_string())
    }))
}

#[utoipa::path(operation_id = "end_users_get", get, path = "/api/v1/orgs/{org}/users/{user}", tag = "end users",
    params(("org" = String, Path, description = "Org id or slug"), ("user" = Uuid, Path, description = "End user id")), security(("bearer" = [])),
    responses((status = 200, description = "The end user with recent sessions and tickets"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such end user in this org", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path((org_ref, user_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id: Uuid = user_ref
        .parse()
        .map_err(|_| ApiError::not_found("end user"))?;
    let row = rm::end_user(&state.pool, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("end user"))?;
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
    let walkthroughs = walkthrough_progress::of_end_user(&state.pool, org, id).await?;
    let mut value = json!(row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("recent_sessions".to_owned(), json!(sessions));
        obj.insert("tickets".to_owned(), json!(tickets));
        obj.insert("walkthroughs".to_owned(), json!(walkthroughs));
    }
    Ok(Json(value))
}

//! `/api/v1/orgs/{org}/sessions`: end users' sessions of both protocol eras.

use crate::error::ApiError;
use crate::extract::{AuthUser, NoQuery, QueryParams};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::end_users::end_user_filter;
use crate::routes::orgs::resolve;
use crate::routes::servers::server_id_filter;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use projections::models::usage::{self as rm, SessionFilter, ToolCallFilter};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    end_user: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(operation_id = "sessions_list", get, path = "/api/v1/orgs/{org}/sessions", tag = "sessions",
    params(("org" = String, Path, description = "Org id or slug"), ("server" = Option<String>, Query, description = "Server id or slug"), ("end_user" = Option<String>, Query, description = "End user id or tracking id"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "Sessions, newest first: `protocol` ones (Mcp-Session-Id) and `grouped` ones (2026-era calls grouped per end user and client, 30 minutes of inactivity apart)"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let limit = paging::limit(q.limit)?;
    let before = paging::decode(q.cursor.as_deref(), |id| Some(id.to_owned()))?;
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let filter = SessionFilter {
        server_id,
        end_user_id,
    };
    let rows = rm::sessions(&state.pool, org, &filter, before, limit.rows()).await?;
    Ok(paging::page(rows, limit, |r| (r.started_at, r.id.clone())))
}

#[utoipa::path(operation_id = "sessions_get", get, path = "/api/v1/orgs/{org}/sessions/{session}", tag = "sessions",
    params(("org" = String, Path, description = "Org id or slug"), ("session" = String, Path, description = "Session id")), security(("bearer" = [])),
    responses((status = 200, description = "The session with its tool calls (oldest first, up to 500)"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such session in this org", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, session_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    if !crate::error::plausible_ref(&session_ref) {
        return Err(ApiError::not_found("session"));
    }
    let row = rm::session(&state.pool, org, &session_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let mut calls = rm::tool_calls(
        &state.pool,
        org,
        &ToolCallFilter {
            session_id: Some(session_ref),
            ..Default::default()
        },
        None,
        paging::MAX_LIMIT,
    )
    .await?;
    calls.reverse();
    let mut value = json!(row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("calls".to_owned(), json!(calls));
    }
    Ok(Json(value))
}

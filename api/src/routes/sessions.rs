//! `/api/v1/orgs/{org}/sessions`: end users' sessions of both protocol eras.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{Membership, NoQuery, Path};
use crate::paging::{self, Page, PageQuery, Paged};
use crate::params::{OrgPath, SessionPath};
use crate::routes::end_users::end_user_filter;
use crate::routes::servers::server_id_filter;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use projections::models::usage::{
    self as rm, SessionFilter, SessionRow, ToolCallFilter, ToolCallRow,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Server id or slug.
    #[serde(default)]
    server: Option<String>,
    /// End user id or tracking id.
    #[serde(default)]
    end_user: Option<String>,
}

/// A session with its tool calls.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionDetail {
    #[serde(flatten)]
    row: SessionRow,
    /// Oldest first, up to 500.
    calls: Vec<ToolCallRow>,
}

#[utoipa::path(operation_id = "sessions_list", get, path = "/api/v1/orgs/{org}/sessions", tag = "sessions",
    params(OrgPath, ListQuery, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Sessions, newest first: `protocol` ones (Mcp-Session-Id) and `grouped` ones (2026-era calls grouped per end user and client, 30 minutes of inactivity apart)", body = Page<SessionRow>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged {
        filter: q,
        limit,
        before,
    }: Paged<ListQuery, String>,
) -> Result<Json<Page<SessionRow>>, ApiError> {
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let filter = SessionFilter {
        server_id,
        end_user_id,
    };
    let rows = rm::sessions(&state.pool, org, &filter, before, limit.rows()).await?;
    Ok(Json(Page::of(rows, limit, |r| {
        (r.started_at, r.id.clone())
    })))
}

#[utoipa::path(operation_id = "sessions_get", get, path = "/api/v1/orgs/{org}/sessions/{session}", tag = "sessions",
    params(SessionPath), security(("bearer" = [])),
    responses((status = 200, description = "The session with its tool calls (oldest first, up to 500)", body = SessionDetail), (status = 404, description = "No such session in this org", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(SessionPath {
        session: session_ref,
        ..
    }): Path<SessionPath>,
) -> Result<Json<SessionDetail>, ApiError> {
    if !crate::error::plausible_ref(&session_ref) {
        return Err(ApiError::not_found(ErrorCode::SessionNotFound));
    }
    let row = rm::session(&state.pool, org, &session_ref)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::SessionNotFound))?;
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
    Ok(Json(SessionDetail { row, calls }))
}

//! `/api/v1/orgs/{org}/tool-calls` and `/api/v1/orgs/{org}/analytics/tools`.

use crate::error::ApiError;
use crate::extract::{AuthUser, QueryParams};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::end_users::end_user_filter;
use crate::routes::orgs::resolve;
use crate::routes::servers::server_id_filter;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use projections::models::usage::{self as rm, ToolCallFilter};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    end_user: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    #[serde(default)]
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(operation_id = "tool_calls_list", get, path = "/api/v1/orgs/{org}/tool-calls", tag = "tool calls",
    params(("org" = String, Path, description = "Org id or slug"), ("server" = Option<String>, Query, description = "Server id or slug"), ("tool" = Option<String>, Query, description = "Tool name"), ("end_user" = Option<String>, Query, description = "End user id or tracking id"), ("outcome" = Option<String>, Query, description = "ok or error"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "Tool calls, newest first, arguments redacted and capped"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid filter", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let limit = paging::limit(q.limit)?;
    let before = paging::decode(q.cursor.as_deref(), |id| id.parse::<Uuid>().ok())?;
    if let Some(outcome) = &q.outcome {
        if !matches!(outcome.as_str(), "ok" | "error") {
            return Err(ApiError::field("outcome", "must be ok or error"));
        }
    }
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let filter = ToolCallFilter {
        server_id,
        tool: q.tool,
        end_user_id,
        session_id: None,
        outcome: q.outcome,
        from: q.from,
        to: q.to,
    };
    let rows = rm::tool_calls(&state.pool, org, &filter, before, limit.rows()).await?;
    Ok(paging::page(rows, limit, |r| {
        (r.called_at, r.id.to_string())
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    #[serde(default)]
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    server: Option<String>,
}

/// Most buckets one request may ask for, so a minute-by-minute year cannot be requested.
const MAX_BUCKETS: i64 = 10_000;

#[utoipa::path(operation_id = "analytics_tools", get, path = "/api/v1/orgs/{org}/analytics/tools", tag = "tool calls",
    params(("org" = String, Path, description = "Org id or slug"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive; default 24 hours before `to`"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive; default now"), ("bucket" = Option<String>, Query, description = "minute, hour (default) or day"), ("server" = Option<String>, Query, description = "Server id or slug")),
    security(("bearer" = [])),
    responses((status = 200, description = "Per tool and bucket: calls, errors, error rate, p50/p95/p99 duration in ms"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid range or bucket", body = Problem)))]
pub async fn tools(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let bucket = q.bucket.as_deref().unwrap_or("hour");
    let width = match bucket {
        "minute" => Duration::minutes(1),
        "hour" => Duration::hours(1),
        "day" => Duration::days(1),
        _ => return Err(ApiError::field("bucket", "must be minute, hour or day")),
    };
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if (to - from).num_seconds() / width.num_seconds().max(1) > MAX_BUCKETS {
        return Err(ApiError::field(
            "bucket",
            format!("the range spans more than {MAX_BUCKETS} {bucket}s; use a wider bucket"),
        ));
    }
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(Json(
            json!({ "from": from, "to": to, "bucket": bucket, "items": [] }),
        ));
    };
    let rows = rm::tool_analytics(&state.pool, org, from, to, bucket, server_id).await?;
    Ok(Json(
        json!({ "from": from, "to": to, "bucket": bucket, "items": rows }),
    ))
}

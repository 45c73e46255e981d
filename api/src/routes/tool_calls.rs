//! `/api/v1/orgs/{org}/tool-calls` and `/api/v1/orgs/{org}/analytics/tools`.

use crate::error::{ApiError, Problem};
use crate::extract::{Membership, QueryParams};
use crate::filters::{optional_one_of, time_bound, Bucket, OneOf};
use crate::paging::{Page, PageQuery, Paged};
use crate::params::OrgPath;
use crate::routes::end_users::end_user_filter;
use crate::routes::servers::server_id_filter;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use domain::time::Bound;
use domain::tool_call::Outcome;
use projections::models::usage::{self as rm, ToolBucket, ToolCallFilter, ToolCallRow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Server id or slug.
    #[serde(default)]
    server: Option<String>,
    /// Tool name.
    #[serde(default)]
    tool: Option<String>,
    /// End user id or tracking id.
    #[serde(default)]
    end_user: Option<String>,
    /// Only calls with this outcome.
    #[serde(default, deserialize_with = "optional_one_of")]
    #[param(value_type = Option<crate::filters::OutcomeSchema>, inline)]
    outcome: Option<Outcome>,
    /// Calls from this time on: a date (`YYYY-MM-DD`, from the start of that UTC day) or an
    /// RFC 3339 time (included).
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    from: Option<Bound>,
    /// Calls up to this time: a date (`YYYY-MM-DD`) includes that whole UTC day; an RFC 3339
    /// time is excluded.
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    to: Option<Bound>,
}

#[utoipa::path(operation_id = "tool_calls_list", get, path = "/api/v1/orgs/{org}/tool-calls", tag = "tool calls",
    params(OrgPath, ListQuery, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Tool calls, newest first, arguments redacted and capped", body = Page<ToolCallRow>), (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged {
        filter: q,
        limit,
        before,
    }: Paged<ListQuery>,
) -> Result<Json<Page<ToolCallRow>>, ApiError> {
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let filter = ToolCallFilter {
        server_id,
        tool: q.tool,
        end_user_id,
        session_id: None,
        outcome: q.outcome.map(|o| o.name().to_owned()),
        from: q.from.map(Bound::start),
        to: q.to.map(Bound::end),
    };
    let rows = rm::tool_calls(&state.pool, org, &filter, before, limit.rows()).await?;
    Ok(Json(Page::of(rows, limit, |r| {
        (r.called_at, r.id.to_string())
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// From this time on: a date (`YYYY-MM-DD`, from the start of that UTC day) or an RFC 3339
    /// time (included); default 24 hours before `to`.
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    from: Option<Bound>,
    /// Up to this time: a date (`YYYY-MM-DD`) includes that whole UTC day; an RFC 3339 time is
    /// excluded; default now.
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    to: Option<Bound>,
    /// The width of a bucket; default hour.
    #[serde(default, deserialize_with = "optional_one_of")]
    #[param(value_type = Option<crate::filters::BucketSchema>, inline)]
    bucket: Option<Bucket>,
    /// Server id or slug.
    #[serde(default)]
    server: Option<String>,
}

/// Per tool and bucket: calls, errors, error rate and duration percentiles.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolAnalytics {
    /// The range's first instant (included): `from` as asked, or its default.
    #[serde(with = "domain::time::rfc3339")]
    from: DateTime<Utc>,
    /// The instant the range ends before: `to` as asked (a date: the start of the next day), or
    /// its default.
    #[serde(with = "domain::time::rfc3339")]
    to: DateTime<Utc>,
    #[schema(value_type = crate::filters::BucketSchema, inline)]
    bucket: Bucket,
    items: Vec<ToolBucket>,
}

/// Most buckets one request may ask for, so a minute-by-minute year cannot be requested.
const MAX_BUCKETS: i64 = 10_000;

#[utoipa::path(operation_id = "analytics_tools", get, path = "/api/v1/orgs/{org}/analytics/tools", tag = "tool calls",
    params(OrgPath, AnalyticsQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Per tool and bucket: calls, errors, error rate (to 4 decimals), p50/p95/p99 duration in milliseconds (to the microsecond)", body = ToolAnalytics), (status = 422, description = "Invalid range or bucket", body = Problem, content_type = "application/problem+json")))]
pub async fn tools(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<ToolAnalytics>, ApiError> {
    let bucket = q.bucket.unwrap_or_default();
    let width = bucket.width();
    // Now at the precision it is shown at: the echoed range is the range used.
    let to =
        q.to.map_or_else(|| domain::time::micros(Utc::now()), Bound::end);
    let from = q.from.map_or(to - Duration::hours(24), Bound::start);
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if (to - from).num_seconds() / width.num_seconds().max(1) > MAX_BUCKETS {
        return Err(ApiError::field(
            "bucket",
            format!(
                "the range spans more than {MAX_BUCKETS} {}s; use a wider bucket",
                bucket.name()
            ),
        ));
    }
    let items = match server_id_filter(&state, org, q.server.as_deref()).await? {
        Some(server_id) => {
            rm::tool_analytics(&state.pool, org, from, to, bucket.name(), server_id).await?
        }
        None => Vec::new(),
    };
    Ok(Json(ToolAnalytics {
        from,
        to,
        bucket,
        items,
    }))
}

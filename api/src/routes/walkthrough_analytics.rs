//! `/api/v1/orgs/{org}/walkthroughs/{id}/analytics` and `.../sankey`: the funnel and the flows
//! of a walkthrough over a window of UTC days, read from the `walkthrough_analytics` rollups.

use crate::error::ApiError;
use crate::extract::{AuthUser, QueryParams};
use crate::openapi::Problem;
use crate::routes::orgs::resolve;
use crate::routes::servers;
use crate::routes::walkthroughs::fetch;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use domain::values::OrgId;
use projections::models::walkthrough_analytics::{
    self as analytics, Window, COMPLETED, RESTARTED, START,
};
use projections::models::walkthroughs as rm;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Longest analytics window, in days.
const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    version: Option<i32>,
}

fn parse_day(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .or_else(|_| {
            chrono::DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc).date_naive())
        })
        .map_err(|_| ApiError::field(field, "must be a date (YYYY-MM-DD) or an RFC 3339 time"))
}

/// The query's window: the last 30 days by default, at most a year; an unknown server 404.
async fn window(state: &AppState, org: OrgId, q: &WindowQuery) -> Result<Window, ApiError> {
    let today = Utc::now().date_naive();
    let to =
        q.to.as_deref()
            .map(|t| parse_day("to", t))
            .transpose()?
            .unwrap_or(today);
    let from = q
        .from
        .as_deref()
        .map(|f| parse_day("from", f))
        .transpose()?
        .unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(ApiError::field("from", "must not be after to"));
    }
    if (to - from).num_days() >= MAX_WINDOW_DAYS {
        return Err(ApiError::field(
            "from",
            format!("the window may span at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    if let Some(v) = q.version {
        if v < 1 {
            return Err(ApiError::field("version", "must be 1 or more"));
        }
    }
    let server_id = match q.server.as_deref() {
        Some(server_ref) => Some(servers::fetch(state, org, server_ref).await?.id),
        None => None,
    };
    Ok(Window {
        from,
        to,
        server_id,
        version: q.version,
    })
}

/// Step titles by id: the draft's, then each version's, newest first (a step removed later
/// keeps its last title).
fn step_titles(row: &rm::WalkthroughRow, versions: &[rm::VersionRow]) -> HashMap<Uuid, String> {
    let mut titles: HashMap<Uuid, String> = row
        .steps
        .0
        .iter()
        .map(|s| (s.id, s.content.title.clone()))
        .collect();
    for version in versions {
        for step in &version.steps.0 {
            titles
                .entry(step.id)
                .or_insert_with(|| step.content.title.clone());
        }
    }
    titles
}

fn rate(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    }
}

#[utoipa::path(operation_id = "walkthroughs_analytics", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/analytics", tag = "walkthroughs",
    params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id"), ("from" = Option<String>, Query, description = "First UTC day (YYYY-MM-DD); default 29 days before `to`"), ("to" = Option<String>, Query, description = "Last UTC day; default today"), ("server" = Option<String>, Query, description = "Only this server (id or slug)"), ("version" = Option<i32>, Query, description = "Only runs on this version")),
    security(("bearer" = [])),
    responses((status = 200, description = "Starts, completions, completion rate, per-step funnel with median time, daily series"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn analytics(
    State(state): State<AppState>,
    user: AuthUser,
    Path((org_ref, id)): Path<(String, String)>,
    QueryParams(q): QueryParams<WindowQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = fetch(&state, org, &id).await?;
    let id = row.id;
    let w = window(&state, org, &q).await?;
    let (funnel, versions) = tokio::try_join!(
        async {
            analytics::funnel(&state.pool, org, id, &w)
                .await
                .map_err(ApiError::from)
        },
        async {
            rm::versions(&state.pool, org, id)
                .await
                .map_err(ApiError::from)
        },
    )?;
    let analytics::Funnel {
        days,
        steps,
        medians,
    } = funnel;
    let titles = step_titles(&row, &versions);
    let starts: i64 = days.iter().map(|d| d.starts).sum();
    let restarts: i64 = days.iter().map(|d| d.restarts).sum();
    let completions: i64 = days.iter().map(|d| d.completions).sum();
    let step_items: Vec<Value> = steps
        .iter()
        .map(|s| {
            let dropped = (s.reached - s.completed - s.restarted).max(0);
            json!({
                "step_id": s.step_id,
                "position": s.step_index + 1,
                "title": titles.get(&s.step_id),
                "reached": s.reached,
                "completed": s.completed,
                "restarted": s.restarted,
                "dropped": dropped,
                "completion_rate": rate(s.completed, s.reached),
                "median_seconds_on_step": medians.get(&s.step_id).map(|ms| (ms / 10.0).round() / 100.0),
            })
        })
        .collect();
    // Every day of the window, zeros included, so charts need no gap filling.
    let by_day: BTreeMap<NaiveDate, &analytics::DayRow> = days.iter().map(|d| (d.day, d)).collect();
    let mut series = Vec::new();
    let mut day = w.from;
    while day <= w.to {
        let row = by_day.get(&day);
        series.push(json!({
            "day": day,
            "starts": row.map_or(0, |r| r.starts),
            "restarts": row.map_or(0, |r| r.restarts),
            "completions": row.map_or(0, |r| r.completions),
        }));
        day += Duration::days(1);
    }
    Ok(Json(json!({
        "walkthrough_id": id,
        "from": w.from,
        "to": w.to,
        "server_id": w.server_id,
        "version": w.version,
        "starts": starts,
        "restarts": restarts,
        "completions": completions,
        "completion_rate": rate(completions, starts),
        "steps": step_items,
        "daily": series,
    })))
}

#[utoipa::path(operation_id = "walkthroughs_sankey", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/sankey", tag = "walkthroughs",
    params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id"), ("from" = Option<String>, Query, description = "First UTC day (YYYY-MM-DD); default 29 days before `to`"), ("to" = Option<String>, Query, description = "Last UTC day; default today"), ("server" = Option<String>, Query, description = "Only this server (id or slug)"), ("version" = Option<i32>, Query, description = "Only runs on this version")),
    security(("bearer" = [])),
    responses((status = 200, description = "`{nodes, links}`: start, steps, completed, restarted and dropped nodes; links with counts"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn sankey(
    State(state): State<AppState>,
    user: AuthUser,
    Path((org_ref, id)): Path<(String, String)>,
    QueryParams(q): QueryParams<WindowQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = fetch(&state, org, &id).await?;
    let id = row.id;
    let w = window(&state, org, &q).await?;
    let (flows, versions) = tokio::try_join!(
        async {
            analytics::flows(&state.pool, org, id, &w)
                .await
                .map_err(ApiError::from)
        },
        async {
            rm::versions(&state.pool, org, id)
                .await
                .map_err(ApiError::from)
        },
    )?;
    let titles = step_titles(&row, &versions);
    Ok(Json(sankey_graph(id, &flows.links, &flows.steps, &titles)))
}

/// Nodes: `start`, each step (in position order), `completed`, `restarted`, `dropped`. Links
/// come from the transition rollup; each step's drop-off is what reached it and neither
/// completed it nor restarted from it.
fn sankey_graph(
    id: Uuid,
    links: &[analytics::LinkRow],
    steps: &[analytics::StepTotals],
    titles: &HashMap<Uuid, String>,
) -> Value {
    const DROPPED: &str = "dropped";
    let mut nodes = vec![json!({ "id": START, "kind": "start", "label": "Start" })];
    for s in steps {
        nodes.push(json!({
            "id": s.step_id.to_string(),
            "kind": "step",
            "position": s.step_index + 1,
            "label": titles.get(&s.step_id).cloned().unwrap_or_else(|| format!("Step {}", s.step_index + 1)),
        }));
    }
    nodes.push(json!({ "id": COMPLETED, "kind": "completed", "label": "Completed" }));
    nodes.push(json!({ "id": RESTARTED, "kind": "restarted", "label": "Restarted" }));
    nodes.push(json!({ "id": DROPPED, "kind": "dropped", "label": "Dropped off" }));
    let mut out: Vec<Value> = links
        .iter()
        .filter(|l| l.n > 0)
        .map(|l| json!({ "source": l.from_node, "target": l.to_node, "value": l.n }))
        .collect();
    for s in steps {
        let dropped = s.reached - s.completed - s.restarted;
        if dropped > 0 {
            out.push(
                json!({ "source": s.step_id.to_string(), "target": DROPPED, "value": dropped }),
            );
        }
    }
    json!({ "walkthrough_id": id, "nodes": nodes, "links": out })
}

//! `/api/v1/orgs/{org}/walkthroughs/{id}/analytics` and `.../sankey`: the funnel and the flows
//! of a walkthrough over a window of UTC days, read from the `walkthrough_analytics` rollups,
//! with the steps, their order and titles from the published versions.

use crate::error::{ApiError, Problem};
use crate::extract::{Membership, Path, QueryParams};
use crate::filters::time_bound;
use crate::params::WalkthroughPath;
use crate::routes::servers;
use crate::routes::walkthroughs::fetch;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use domain::time::Bound;
use domain::values::OrgId;
use projections::models::walkthrough_analytics::{
    self as analytics, Window, COMPLETED, RESTARTED, START,
};
use projections::models::walkthroughs as rm;
use projections::rounding::{self, rate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Longest analytics window, in days.
const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// First UTC day, included: a date (`YYYY-MM-DD`) or an RFC 3339 time (its UTC day);
    /// default 29 days before `to`.
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    from: Option<Bound>,
    /// Last UTC day, included: a date (`YYYY-MM-DD`) or an RFC 3339 time (its UTC day);
    /// default today.
    #[serde(default, deserialize_with = "time_bound")]
    #[param(value_type = Option<crate::filters::TimeBoundSchema>, inline)]
    to: Option<Bound>,
    /// Only this server (id or slug).
    #[serde(default)]
    server: Option<String>,
    /// Only runs on this version.
    #[serde(default)]
    version: Option<i32>,
}

/// A walkthrough's funnel over a window of UTC days.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WalkthroughAnalytics {
    walkthrough_id: Uuid,
    #[serde(flatten)]
    window: WindowView,
    starts: i64,
    restarts: i64,
    completions: i64,
    /// Completions per start, 0 to 1, to 4 decimals.
    completion_rate: f64,
    /// The steps of the version shown, in order, then steps only earlier versions had.
    steps: Vec<FunnelStepView>,
    /// Every day of the window, zeros included.
    daily: Vec<DayView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FunnelStepView {
    step_id: Uuid,
    /// Its place in the version shown; `null` for a step only earlier versions had.
    position: Option<usize>,
    title: Option<String>,
    reached: i64,
    completed: i64,
    restarted: i64,
    dropped: i64,
    /// Completions per run that reached it, 0 to 1, to 4 decimals.
    completion_rate: f64,
    /// Median time on the step in milliseconds (from a histogram: within 5%); `null` when
    /// nobody completed it.
    median_time_on_step_ms: Option<f64>,
}

/// The filters a walkthrough's analytics and sankey were computed for, as used: the window's
/// first and last UTC day (both included), and the server and version, if any.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// The first day of the window.
    from: NaiveDate,
    /// The last day of the window.
    to: NaiveDate,
    /// The server `server=` named (its id); `null` for every server.
    server_id: Option<Uuid>,
    /// `null` for every version.
    version: Option<i32>,
}

impl From<&Window> for WindowView {
    fn from(w: &Window) -> Self {
        Self {
            from: w.from,
            to: w.to,
            server_id: w.server_id,
            version: w.version,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DayView {
    day: NaiveDate,
    starts: i64,
    restarts: i64,
    completions: i64,
}

/// A walkthrough's flows as a sankey graph.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sankey {
    walkthrough_id: Uuid,
    #[serde(flatten)]
    window: WindowView,
    nodes: Vec<SankeyNode>,
    links: Vec<SankeyLink>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SankeyNode {
    /// A step id, or `start`, `completed`, `restarted`, `dropped`.
    id: String,
    /// `start`, `step`, `completed`, `restarted` or `dropped`.
    kind: &'static str,
    /// For a step: its place in the version shown (`null` for a step only earlier versions
    /// had). Absent on the other nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<usize>)]
    position: Option<Option<usize>>,
    label: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SankeyLink {
    /// A node id.
    source: String,
    /// A node id.
    target: String,
    value: i64,
}

/// The query's window: the last 30 days by default, at most a year; an unknown server 404.
async fn window(state: &AppState, org: OrgId, q: &WindowQuery) -> Result<Window, ApiError> {
    let today = Utc::now().date_naive();
    let to = q.to.map_or(today, Bound::day);
    let from = q.from.map_or(to - Duration::days(29), Bound::day);
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

/// What the analytics and the sankey both start from: the org, the walkthrough, the window,
/// and the walkthrough's versions (newest first). A `version=` the walkthrough never had is
/// refused here, before any rollup is read.
struct Scope {
    org: OrgId,
    row: rm::WalkthroughRow,
    window: Window,
    versions: Vec<rm::VersionRow>,
}

async fn scope(state: &AppState, org: OrgId, id: &str, q: &WindowQuery) -> Result<Scope, ApiError> {
    let row = fetch(state, org, id).await?;
    let window = window(state, org, q).await?;
    let versions = rm::versions(&state.pool, org, row.id).await?;
    shown_version(&versions, window.version)?;
    Ok(Scope {
        org,
        row,
        window,
        versions,
    })
}

/// The version whose steps are shown: `version=`'s (422 if the walkthrough never had it), else
/// the newest, if any was published.
fn shown_version(
    versions: &[rm::VersionRow],
    version: Option<i32>,
) -> Result<Option<&rm::VersionRow>, ApiError> {
    match version {
        Some(v) => versions
            .iter()
            .find(|row| row.version == v)
            .map(Some)
            .ok_or_else(|| {
                ApiError::field("version", format!("the walkthrough has no version {v}"))
            }),
        None => Ok(versions.first()),
    }
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

/// A step as the funnel and the sankey list it: its place in the version shown (`None` for a
/// step only earlier versions had) and its totals, zeros where nobody reached it.
#[derive(Debug, PartialEq)]
struct FunnelStep {
    position: Option<usize>,
    totals: analytics::StepTotals,
}

/// Every step of the version shown, in its order, zeros included (a step nobody reached is
/// where the funnel ends): with `version=`, that version; otherwise the newest, then the steps
/// only earlier versions had (runs pinned to those versions still reach them), by the furthest
/// position they held. `versions` is newest first, as `rm::versions` reads them.
fn funnel_steps(
    versions: &[rm::VersionRow],
    version: Option<i32>,
    totals: Vec<analytics::StepTotals>,
) -> Result<Vec<FunnelStep>, ApiError> {
    let shown = shown_version(versions, version)?;
    let mut reached: HashMap<Uuid, analytics::StepTotals> =
        totals.into_iter().map(|t| (t.step_id, t)).collect();
    let mut steps: Vec<FunnelStep> = shown
        .map_or(&[][..], |row| &row.steps.0[..])
        .iter()
        .enumerate()
        .map(|(index, step)| FunnelStep {
            position: Some(index + 1),
            totals: reached.remove(&step.id).unwrap_or(analytics::StepTotals {
                step_id: step.id,
                step_index: i32::try_from(index).unwrap_or(i32::MAX),
                reached: 0,
                completed: 0,
                restarted: 0,
            }),
        })
        .collect();
    let mut earlier: Vec<analytics::StepTotals> = reached.into_values().collect();
    earlier.sort_by_key(|t| (t.step_index, t.step_id));
    steps.extend(earlier.into_iter().map(|totals| FunnelStep {
        position: None,
        totals,
    }));
    Ok(steps)
}

#[utoipa::path(operation_id = "walkthroughs_analytics", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/analytics", tag = "walkthroughs",
    params(WalkthroughPath, WindowQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "The window and filters (`from`, `to`, `server_id`, `version`); starts, completions, completion rate, per-step funnel with median time on each step (ms), daily series", body = WalkthroughAnalytics), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn analytics(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
    QueryParams(q): QueryParams<WindowQuery>,
) -> Result<Json<WalkthroughAnalytics>, ApiError> {
    let Scope {
        org,
        row,
        window: w,
        versions,
    } = scope(&state, org, &walkthrough, &q).await?;
    let id = row.id;
    let funnel = analytics::funnel(&state.pool, org, id, &w).await?;
    let analytics::Funnel {
        days,
        steps,
        medians,
    } = funnel;
    let titles = step_titles(&row, &versions);
    let steps = funnel_steps(&versions, w.version, steps)?;
    let starts: i64 = days.iter().map(|d| d.starts).sum();
    let restarts: i64 = days.iter().map(|d| d.restarts).sum();
    let completions: i64 = days.iter().map(|d| d.completions).sum();
    let step_items = steps
        .iter()
        .map(
            |FunnelStep {
                 position,
                 totals: s,
             }| FunnelStepView {
                step_id: s.step_id,
                position: *position,
                title: titles.get(&s.step_id).cloned(),
                reached: s.reached,
                completed: s.completed,
                restarted: s.restarted,
                dropped: (s.reached - s.completed - s.restarted).max(0),
                completion_rate: rate(s.completed, s.reached),
                median_time_on_step_ms: medians.get(&s.step_id).copied().map(rounding::millis),
            },
        )
        .collect();
    // Every day of the window, zeros included, so charts need no gap filling.
    let by_day: BTreeMap<NaiveDate, &analytics::DayRow> = days.iter().map(|d| (d.day, d)).collect();
    let mut series = Vec::new();
    let mut day = w.from;
    while day <= w.to {
        let row = by_day.get(&day);
        series.push(DayView {
            day,
            starts: row.map_or(0, |r| r.starts),
            restarts: row.map_or(0, |r| r.restarts),
            completions: row.map_or(0, |r| r.completions),
        });
        day += Duration::days(1);
    }
    Ok(Json(WalkthroughAnalytics {
        walkthrough_id: id,
        window: WindowView::from(&w),
        starts,
        restarts,
        completions,
        completion_rate: rate(completions, starts),
        steps: step_items,
        daily: series,
    }))
}

#[utoipa::path(operation_id = "walkthroughs_sankey", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/sankey", tag = "walkthroughs",
    params(WalkthroughPath, WindowQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "`{nodes, links}`: start, steps, completed, restarted and dropped nodes; links with counts; and the window and filters it covers (`from`, `to`, `server_id`, `version`), as the analytics give them", body = Sankey), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn sankey(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
    QueryParams(q): QueryParams<WindowQuery>,
) -> Result<Json<Sankey>, ApiError> {
    let Scope {
        org,
        row,
        window: w,
        versions,
    } = scope(&state, org, &walkthrough, &q).await?;
    let id = row.id;
    let flows = analytics::flows(&state.pool, org, id, &w).await?;
    let titles = step_titles(&row, &versions);
    let steps = funnel_steps(&versions, w.version, flows.steps)?;
    Ok(Json(sankey_graph(id, &w, &flows.links, &steps, &titles)))
}

/// Nodes: `start`, each step (as [`funnel_steps`] lists them), `completed`, `restarted`,
/// `dropped`. Links come from the transition rollup; each step's drop-off is what reached it
/// and neither completed it nor restarted from it.
fn sankey_graph(
    id: Uuid,
    window: &Window,
    links: &[analytics::LinkRow],
    steps: &[FunnelStep],
    titles: &HashMap<Uuid, String>,
) -> Sankey {
    const DROPPED: &str = "dropped";
    let node = |id: &str, kind: &'static str, label: &str| SankeyNode {
        id: id.to_owned(),
        kind,
        position: None,
        label: label.to_owned(),
    };
    let mut nodes = vec![node(START, "start", "Start")];
    for FunnelStep {
        position,
        totals: s,
    } in steps
    {
        nodes.push(SankeyNode {
            id: s.step_id.to_string(),
            kind: "step",
            position: Some(*position),
            label: titles
                .get(&s.step_id)
                .cloned()
                .unwrap_or_else(|| format!("Step {}", s.step_index + 1)),
        });
    }
    nodes.push(node(COMPLETED, "completed", "Completed"));
    nodes.push(node(RESTARTED, "restarted", "Restarted"));
    nodes.push(node(DROPPED, "dropped", "Dropped off"));
    let mut out: Vec<SankeyLink> = links
        .iter()
        .filter(|l| l.n > 0)
        .map(|l| SankeyLink {
            source: l.from_node.clone(),
            target: l.to_node.clone(),
            value: l.n,
        })
        .collect();
    for FunnelStep { totals: s, .. } in steps {
        let dropped = s.reached - s.completed - s.restarted;
        if dropped > 0 {
            out.push(SankeyLink {
                source: s.step_id.to_string(),
                target: DROPPED.to_owned(),
                value: dropped,
            });
        }
    }
    Sankey {
        walkthrough_id: id,
        window: WindowView::from(window),
        nodes,
        links: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::walkthrough::{Step, StepContent};
    use sqlx::types::Json;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn version(number: i32, steps: &[u128]) -> rm::VersionRow {
        rm::VersionRow {
            version: number,
            title: "Tour".into(),
            description: None,
            steps: Json(
                steps
                    .iter()
                    .map(|&n| Step {
                        id: id(n),
                        content: StepContent {
                            title: format!("Step {n}"),
                            content: String::new(),
                            agent_instructions: None,
                            operations: Vec::new(),
                        },
                    })
                    .collect(),
            ),
            published_at: Utc::now(),
            published_by: None,
        }
    }

    fn totals(step: u128, step_index: i32, reached: i64) -> analytics::StepTotals {
        analytics::StepTotals {
            step_id: id(step),
            step_index,
            reached,
            completed: 0,
            restarted: 0,
        }
    }

    fn listed(steps: &[FunnelStep]) -> Vec<(u128, Option<usize>, i64)> {
        steps
            .iter()
            .map(|s| (s.totals.step_id.as_u128(), s.position, s.totals.reached))
            .collect()
    }

    #[test]
    fn every_step_of_the_version_shown_is_listed_in_its_order_with_zeros() {
        // Version 1: A B C; version 2 dropped B and added D: A C D. Nobody reached D yet.
        let versions = [version(2, &[1, 3, 4]), version(1, &[1, 2, 3])];
        let reached = || vec![totals(1, 0, 9), totals(2, 1, 5), totals(3, 2, 4)];

        let newest = funnel_steps(&versions, None, reached()).unwrap();
        assert_eq!(
            listed(&newest),
            vec![
                (1, Some(1), 9),
                (3, Some(2), 4),
                (4, Some(3), 0),
                (2, None, 5)
            ]
        );
        let first = funnel_steps(&versions, Some(1), reached()).unwrap();
        assert_eq!(
            listed(&first),
            vec![(1, Some(1), 9), (2, Some(2), 5), (3, Some(3), 4)]
        );
        let none_yet = funnel_steps(&versions, Some(2), Vec::new()).unwrap();
        assert_eq!(
            listed(&none_yet),
            vec![(1, Some(1), 0), (3, Some(2), 0), (4, Some(3), 0)]
        );
        assert!(funnel_steps(&versions, Some(3), Vec::new()).is_err());
        assert!(funnel_steps(&[], None, Vec::new()).unwrap().is_empty());
    }
}

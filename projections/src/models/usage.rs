//! What end users do on an org's servers: end users, sessions (both protocol eras), tool calls
//! and hourly usage. One projection, because its tables are updated together by the same
//! events (a tool call touches its session, its end user and the hourly rollup), and batched,
//! because tool calls arrive by the thousand per second.
//!
//! 2026-era clients have no protocol session, so their calls are grouped: per server, end user
//! (or tracking id, or anonymous) and client, a new session starts after 30 minutes without a
//! call. The grouped session's id derives from its first call's event id, so a rebuild yields
//! the same ids.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use crate::rounding;
use chrono::{DateTime, Duration, DurationRound, SubsecRound, Utc};
use domain::end_user::{EndUser, EndUserEvent};
use domain::mcp_session::{McpSession, McpSessionEvent};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Inactivity after which a 2026-era client's next call starts a new session.
pub const GROUPED_SESSION_GAP_MINUTES: i64 = 30;

pub struct UsageProjection;

/// A row of the hourly rollup: org, hour, server, tool.
type HourKey = (Uuid, DateTime<Utc>, Uuid, String);

#[derive(Default)]
struct SessionDelta {
    org_id: Uuid,
    calls: i64,
    errors: i64,
    last_seen: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct EndUserDelta {
    calls: i64,
    sessions: i64,
    last_seen: Option<DateTime<Utc>>,
}

/// A grouped session being extended within this batch.
#[derive(Clone)]
struct OpenGroup {
    session_id: String,
    last_seen: DateTime<Utc>,
}

/// A new grouped session to insert.
struct NewGroup {
    org_id: Uuid,
    session_id: String,
    key: String,
    record: ToolCallRecord,
    at: DateTime<Utc>,
}

fn group_key(record: &ToolCallRecord) -> String {
    let who = match (&record.end_user_id, &record.tracking_id) {
        (Some(id), _) => format!("user:{id}"),
        (None, Some(t)) => format!("tracking:{t}"),
        (None, None) => "anonymous".to_owned(),
    };
    format!(
        "{}/{who}/{}",
        record.server_id,
        record.client_name.as_deref().unwrap_or("unknown client")
    )
}

impl Projection for UsageProjection {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[EndUser::TYPE, McpSession::TYPE, ToolCall::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_end_users",
            "rm_sessions",
            "rm_tool_calls",
            "rm_usage_hourly",
            "rm_people",
            "rm_end_user_identities",
            "rm_sign_ins_hourly",
        ]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let t_names = super::people::Names::of(t);
            let end_users = t.name("rm_end_users");
            let sessions = t.name("rm_sessions");
            let tool_calls = t.name("rm_tool_calls");
            let hourly = t.name("rm_usage_hourly");

            let mut calls: Vec<(Uuid, Uuid, DateTime<Utc>, ToolCallRecord)> = Vec::new();
            let mut session_deltas: HashMap<String, SessionDelta> = HashMap::new();
            let mut user_deltas: HashMap<(Uuid, Uuid), EndUserDelta> = HashMap::new();
            let mut hourly_deltas: BTreeMap<HourKey, (i64, i64)> = BTreeMap::new();
            let mut groups: HashMap<String, Option<OpenGroup>> = HashMap::new();
            let mut new_groups: Vec<NewGroup> = Vec::new();

            // Identity and protocol-session events are rare: applied in order, one by one.
            // Tool calls are folded and written in bulk after the loop; rows they update were
            // created by events earlier in the stream, so applying them last keeps the order.
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                let at = event.recorded_at;
                match event.aggregate_type.as_str() {
                    t if t == EndUser::TYPE => {
                        let end_user_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                        let event = event.decode::<EndUserEvent>()?;
                        super::people::apply(conn, &t_names, org_id, end_user_id, at, &event)
                            .await?;
                    }
                    t if t == McpSession::TYPE => match event.decode::<McpSessionEvent>()? {
                        McpSessionEvent::McpSessionStarted(start) => {
                            let inserted = sqlx::query(&format!(
                                "INSERT INTO {sessions} (org_id, session_id, server_id, end_user_id, \
                                 tracking_id, era, protocol_version, client_name, client_version, \
                                 started_at, last_seen) \
                                 VALUES ($1, $2, $3, $4, $5, 'protocol', $6, $7, $8, $9, $9) \
                                 ON CONFLICT DO NOTHING"
                            ))
                            .bind(org_id)
                            .bind(&event.aggregate_id)
                            .bind(start.server_id)
                            .bind(start.end_user_id)
                            .bind(&start.tracking_id)
                            .bind(&start.protocol_version)
                            .bind(&start.client_name)
                            .bind(&start.client_version)
                            .bind(at)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                            if let (Some(user), 1) = (start.end_user_id, inserted) {
                                let d = user_deltas.entry((org_id, user)).or_default();
                                d.sessions += 1;
                                d.last_seen = d.last_seen.max(Some(at));
                            }
                        }
                        McpSessionEvent::McpSessionEnded { .. } => {
                            sqlx::query(&format!(
                                "UPDATE {sessions} SET ended_at = $3 \
                                 WHERE org_id = $1 AND session_id = $2"
                            ))
                            .bind(org_id)
                            .bind(&event.aggregate_id)
                            .bind(at)
                            .execute(&mut *conn)
                            .await?;
                        }
                    },
                    t if t == ToolCall::TYPE => {
                        let ToolCallEvent::ToolCalled(record) = event.decode::<ToolCallEvent>()?;
                        let failed = record.outcome == Outcome::Error;
                        let session_id = match &record.session_id {
                            Some(id) => id.clone(),
                            None => {
                                let key = group_key(&record);
                                if !groups.contains_key(&key) {
                                    let open: Option<(String, DateTime<Utc>)> =
                                        sqlx::query_as(&format!(
                                            "SELECT session_id, last_seen FROM {sessions} \
                                             WHERE group_key = $1 ORDER BY started_at DESC LIMIT 1"
                                        ))
                                        .bind(&key)
                                        .fetch_optional(&mut *conn)
                                        .await?;
                                    groups.insert(
                                        key.clone(),
                                        open.map(|(session_id, last_seen)| OpenGroup {
                                            session_id,
                                            last_seen,
                                        }),
                                    );
                                }
                                let gap = Duration::minutes(GROUPED_SESSION_GAP_MINUTES);
                                let current = groups.get(&key).cloned().flatten();
                                match current {
                                    Some(open) if at - open.last_seen <= gap => {
                                        groups.insert(
                                            key,
                                            Some(OpenGroup {
                                                session_id: open.session_id.clone(),
                                                last_seen: at.max(open.last_seen),
                                            }),
                                        );
                                        open.session_id
                                    }
                                    _ => {
                                        let session_id = format!("grouped-{}", event.event_id);
                                        new_groups.push(NewGroup {
                                            org_id,
                                            session_id: session_id.clone(),
                                            key: key.clone(),
                                            record: record.clone(),
                                            at,
                                        });
                                        if let Some(user) = record.end_user_id {
                                            user_deltas
                                                .entry((org_id, user))
                                                .or_default()
                                                .sessions += 1;
                                        }
                                        groups.insert(
                                            key,
                                            Some(OpenGroup {
                                                session_id: session_id.clone(),
                                                last_seen: at,
                                            }),
                                        );
                                        session_id
                                    }
                                }
                            }
                        };
                        let s = session_deltas.entry(session_id.clone()).or_default();
                        s.org_id = org_id;
                        s.calls += 1;
                        s.errors += i64::from(failed);
                        s.last_seen = s.last_seen.max(Some(at));
                        if let Some(user) = record.end_user_id {
                            let d = user_deltas.entry((org_id, user)).or_default();
                            d.calls += 1;
                            d.last_seen = d.last_seen.max(Some(at));
                        }
                        let hour = at.duration_trunc(Duration::hours(1)).unwrap_or(at);
                        let h = hourly_deltas
                            .entry((org_id, hour, record.server_id, record.tool.clone()))
                            .or_default();
                        h.0 += 1;
                        h.1 += i64::from(failed);
                        let call_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                        let mut record = record;
                        record.session_id = Some(session_id);
                        calls.push((org_id, call_id, at, record));
                    }
                    _ => {}
                }
            }

            for g in &new_groups {
                sqlx::query(&format!(
                    "INSERT INTO {sessions} (org_id, session_id, server_id, end_user_id, tracking_id, \
                     era, protocol_version, client_name, client_version, started_at, last_seen, \
                     group_key) VALUES ($1, $2, $3, $4, $5, 'grouped', NULL, $6, $7, $8, $8, $9) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(g.org_id)
                .bind(&g.session_id)
                .bind(g.record.server_id)
                .bind(g.record.end_user_id)
                .bind(&g.record.tracking_id)
                .bind(&g.record.client_name)
                .bind(&g.record.client_version)
                .bind(g.at)
                .bind(&g.key)
                .execute(&mut *conn)
                .await?;
            }

            if !calls.is_empty() {
                insert_calls(conn, &tool_calls, &calls).await?;
            }
            // One statement per table, whatever the batch holds (UPDATE ... FROM UNNEST).
            if !session_deltas.is_empty() {
                let mut orgs = Vec::new();
                let mut ids = Vec::new();
                let mut calls_n = Vec::new();
                let mut errors_n = Vec::new();
                let mut seen: Vec<Option<DateTime<Utc>>> = Vec::new();
                for (session_id, d) in &session_deltas {
                    orgs.push(d.org_id);
                    ids.push(session_id.as_str());
                    calls_n.push(d.calls);
                    errors_n.push(d.errors);
                    seen.push(d.last_seen);
                }
                sqlx::query(&format!(
                    "UPDATE {sessions} AS s SET tool_calls = s.tool_calls + u.calls, \
                     errors = s.errors + u.errors, last_seen = GREATEST(s.last_seen, u.seen) \
                     FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], \
                     $5::timestamptz[]) AS u(org_id, session_id, calls, errors, seen) \
                     WHERE s.org_id = u.org_id AND s.session_id = u.session_id"
                ))
                .bind(&orgs)
                .bind(&ids)
                .bind(&calls_n)
                .bind(&errors_n)
                .bind(&seen)
                .execute(&mut *conn)
                .await?;
            }
            if !user_deltas.is_empty() {
                let mut orgs = Vec::new();
                let mut ids = Vec::new();
                let mut calls_n = Vec::new();
                let mut sessions_n = Vec::new();
                let mut seen: Vec<Option<DateTime<Utc>>> = Vec::new();
                for ((org_id, user), d) in &user_deltas {
                    orgs.push(*org_id);
                    ids.push(*user);
                    calls_n.push(d.calls);
                    sessions_n.push(d.sessions);
                    // In whole seconds: `last_seen` is in an index (the recent end users
                    // list), so every change of it is an update that cannot be heap-only
                    // (a new row version and two index entries). Per batch, every active end
                    // user's would change; per second, few do, and the count alone is updated
                    // in place. (A maximum either way, so any batching gives the same value.)
                    seen.push(d.last_seen.map(|at| at.trunc_subsecs(0)));
                }
                sqlx::query(&format!(
                    "UPDATE {end_users} AS e SET tool_calls = e.tool_calls + u.calls, \
                     sessions = e.sessions + u.sessions, \
                     last_seen = GREATEST(e.last_seen, COALESCE(u.seen, e.last_seen)) \
                     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], \
                     $5::timestamptz[]) AS u(org_id, end_user_id, calls, sessions, seen) \
                     WHERE e.org_id = u.org_id AND e.end_user_id = u.end_user_id"
                ))
                .bind(&orgs)
                .bind(&ids)
                .bind(&calls_n)
                .bind(&sessions_n)
                .bind(&seen)
                .execute(&mut *conn)
                .await?;
                // The people these end users belong to (after merges), in one statement too.
                let people = &t_names.people;
                sqlx::query(&format!(
                    "UPDATE {people} AS p SET tool_calls = p.tool_calls + d.calls, \
                     sessions = p.sessions + d.sessions, \
                     last_seen = GREATEST(p.last_seen, COALESCE(d.seen, p.last_seen)) \
                     FROM (SELECT e.org_id, e.person_id, sum(u.calls) AS calls, \
                     sum(u.sessions) AS sessions, max(u.seen) AS seen \
                     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], \
                     $5::timestamptz[]) AS u(org_id, end_user_id, calls, sessions, seen) \
                     JOIN {end_users} e ON e.org_id = u.org_id AND e.end_user_id = u.end_user_id \
                     GROUP BY e.org_id, e.person_id) AS d \
                     WHERE p.org_id = d.org_id AND p.person_id = d.person_id"
                ))
                .bind(&orgs)
                .bind(&ids)
                .bind(&calls_n)
                .bind(&sessions_n)
                .bind(&seen)
                .execute(&mut *conn)
                .await?;
            }
            if !hourly_deltas.is_empty() {
                let mut orgs = Vec::new();
                let mut hours = Vec::new();
                let mut servers = Vec::new();
                let mut tools = Vec::new();
                let mut calls_n = Vec::new();
                let mut errors_n = Vec::new();
                for ((org_id, hour, server_id, tool), (n, errors)) in &hourly_deltas {
                    orgs.push(*org_id);
                    hours.push(*hour);
                    servers.push(*server_id);
                    tools.push(tool.as_str());
                    calls_n.push(*n);
                    errors_n.push(*errors);
                }
                // The keys are distinct (a BTreeMap's), as ON CONFLICT needs.
                sqlx::query(&format!(
                    "INSERT INTO {hourly} AS h (org_id, hour, server_id, tool, calls, errors) \
                     SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], \
                     $5::bigint[], $6::bigint[]) \
                     ON CONFLICT (org_id, hour, server_id, tool) \
                     DO UPDATE SET calls = h.calls + EXCLUDED.calls, errors = h.errors + EXCLUDED.errors"
                ))
                .bind(&orgs)
                .bind(&hours)
                .bind(&servers)
                .bind(&tools)
                .bind(&calls_n)
                .bind(&errors_n)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    }
}

async fn insert_calls(
    conn: &mut PgConnection,
    table: &str,
    calls: &[(Uuid, Uuid, DateTime<Utc>, ToolCallRecord)],
) -> Result<(), sqlx::Error> {
    let n = calls.len();
    let mut orgs = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    let mut sessions: Vec<Option<String>> = Vec::with_capacity(n);
    let mut users: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut trackings: Vec<Option<String>> = Vec::with_capacity(n);
    let mut tools = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut durations_us = Vec::with_capacity(n);
    let mut client_names: Vec<Option<String>> = Vec::with_capacity(n);
    let mut client_versions: Vec<Option<String>> = Vec::with_capacity(n);
    let mut arguments = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for (org_id, call_id, at, r) in calls {
        orgs.push(*org_id);
        ids.push(*call_id);
        servers.push(r.server_id);
        sessions.push(r.session_id.clone());
        users.push(r.end_user_id);
        trackings.push(r.tracking_id.clone());
        tools.push(r.tool.clone());
        outcomes.push(match r.outcome {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        });
        errors.push(r.error.clone());
        durations.push(i64::try_from(r.duration_ms).unwrap_or(i64::MAX));
        durations_us.push(i64::try_from(r.duration_micros()).unwrap_or(i64::MAX));
        client_names.push(r.client_name.clone());
        client_versions.push(r.client_version.clone());
        arguments.push(r.arguments.clone());
        times.push(*at);
    }
    sqlx::query(&format!(
        "INSERT INTO {table} (org_id, call_id, server_id, session_id, end_user_id, tracking_id, \
         tool, outcome, error, duration_ms, client_name, client_version, arguments, called_at, \
         duration_us) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[], \
         $13::jsonb[], $14::timestamptz[], $15::bigint[]) ON CONFLICT DO NOTHING"
    ))
    .bind(&orgs)
    .bind(&ids)
    .bind(&servers)
    .bind(&sessions)
    .bind(&users)
    .bind(&trackings)
    .bind(&tools)
    .bind(&outcomes)
    .bind(&errors)
    .bind(&durations)
    .bind(&client_names)
    .bind(&client_versions)
    .bind(&arguments)
    .bind(&times)
    .bind(&durations_us)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- Queries (every one takes the org) ----

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EndUserRow {
    pub id: Uuid,
    #[serde(with = "domain::time::rfc3339")]
    pub first_seen_at: DateTime<Utc>,
    /// To the second (it moves with every call).
    #[serde(with = "domain::time::rfc3339")]
    pub last_seen_at: DateTime<Utc>,
    pub tracking_ids: Vec<String>,
    pub emails: Vec<String>,
    pub sessions: i64,
    pub tool_calls: i64,
}

const END_USER_COLUMNS: &str = "end_user_id AS id, first_seen AS first_seen_at, \
    last_seen AS last_seen_at, tracking_ids, emails, sessions, tool_calls";

/// An org's end users, most recently seen first; `before` is the last row of the previous page.
pub async fn end_users(
    pool: &PgPool,
    org: OrgId,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<EndUserRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    sqlx::query_as(&format!(
        "SELECT {END_USER_COLUMNS} FROM rm_end_users WHERE org_id = $1 \
         AND ($2::timestamptz IS NULL OR (last_seen, end_user_id) < ($2, $3)) \
         ORDER BY last_seen DESC, end_user_id DESC LIMIT $4"
    ))
    .bind(org.0)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn end_user(
    pool: &PgPool,
    org: OrgId,
    end_user_id: Uuid,
) -> Result<Option<EndUserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {END_USER_COLUMNS} FROM rm_end_users WHERE org_id = $1 AND end_user_id = $2"
    ))
    .bind(org.0)
    .bind(end_user_id)
    .fetch_optional(pool)
    .await
}

pub async fn count_end_users(pool: &PgPool, org: OrgId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM rm_end_users WHERE org_id = $1")
        .bind(org.0)
        .fetch_one(pool)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SessionRow {
    pub id: String,
    pub server_id: Uuid,
    pub end_user_id: Option<Uuid>,
    pub tracking_id: Option<String>,
    /// `protocol` (an `Mcp-Session-Id` session) or `grouped` (2026-era calls grouped by end
    /// user and client with a 30-minute inactivity window).
    pub era: String,
    pub protocol_version: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    #[serde(with = "domain::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub last_seen_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339_option")]
    pub ended_at: Option<DateTime<Utc>>,
    pub tool_calls: i64,
    pub errors: i64,
}

const SESSION_COLUMNS: &str = "session_id AS id, server_id, end_user_id, tracking_id, era, \
    protocol_version, client_name, client_version, started_at, last_seen AS last_seen_at, ended_at, \
    tool_calls, errors";

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub server_id: Option<Uuid>,
    /// An end user: the sessions of the person it belongs to.
    pub end_user_id: Option<Uuid>,
}

/// An org's sessions, newest first.
pub async fn sessions(
    pool: &PgPool,
    org: OrgId,
    filter: &SessionFilter,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM rm_sessions WHERE org_id = $1 \
         AND ($2::uuid IS NULL OR server_id = $2) AND ($3::uuid IS NULL OR {person}) \
         AND ($4::timestamptz IS NULL OR (started_at, session_id) < ($4, $5)) \
         ORDER BY started_at DESC, session_id DESC LIMIT $6",
        person = super::people::of_person(3)
    ))
    .bind(org.0)
    .bind(filter.server_id)
    .bind(filter.end_user_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn session(
    pool: &PgPool,
    org: OrgId,
    session_id: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM rm_sessions WHERE org_id = $1 AND session_id = $2"
    ))
    .bind(org.0)
    .bind(session_id)
    .fetch_optional(pool)
    .await
}

/// An end user's protocol sessions that have not ended and saw activity within `idle`
/// (migration 0014 indexes them), for the platform limit on open sessions.
pub async fn open_sessions_of(
    pool: &PgPool,
    org: OrgId,
    end_user_id: Uuid,
    idle: std::time::Duration,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM rm_sessions WHERE org_id = $1 AND end_user_id = $2 \
         AND era = 'protocol' AND ended_at IS NULL \
         AND last_seen > now() - make_interval(secs => $3)",
    )
    .bind(org.0)
    .bind(end_user_id)
    .bind(idle.as_secs_f64())
    .fetch_one(pool)
    .await
}

pub async fn count_sessions(pool: &PgPool, org: OrgId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM rm_sessions WHERE org_id = $1")
        .bind(org.0)
        .fetch_one(pool)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ToolCallRow {
    pub id: Uuid,
    pub server_id: Uuid,
    pub session_id: Option<String>,
    pub end_user_id: Option<Uuid>,
    pub tracking_id: Option<String>,
    pub tool: String,
    pub outcome: String,
    pub error: Option<String>,
    /// Milliseconds, to the microsecond (`0.412`); whole milliseconds for calls recorded before
    /// microseconds were kept.
    pub duration_ms: f64,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    /// Redacted and capped.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    #[serde(with = "domain::time::rfc3339")]
    pub called_at: DateTime<Utc>,
}

/// A call's duration is its microseconds (`duration_ms` x 1000 for a call recorded before they
/// were kept) over a thousand: a division of whole numbers, correctly rounded, so the double
/// prints as the decimal (see `crate::rounding`).
const CALL_COLUMNS: &str = "call_id AS id, server_id, session_id, end_user_id, tracking_id, tool, \
    outcome, error, COALESCE(duration_us, duration_ms * 1000)::float8 / 1000 AS duration_ms, \
    client_name, client_version, arguments, called_at";

#[derive(Debug, Clone, Default)]
pub struct ToolCallFilter {
    pub server_id: Option<Uuid>,
    pub tool: Option<String>,
    /// An end user: the calls of the person it belongs to.
    pub end_user_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// An org's tool calls, newest first.
pub async fn tool_calls(
    pool: &PgPool,
    org: OrgId,
    filter: &ToolCallFilter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ToolCallRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM rm_tool_calls WHERE org_id = $1 \
         AND ($2::uuid IS NULL OR server_id = $2) AND ($3::text IS NULL OR tool = $3) \
         AND ($4::uuid IS NULL OR {person}) AND ($5::text IS NULL OR session_id = $5) \
         AND ($6::text IS NULL OR outcome = $6) \
         AND ($7::timestamptz IS NULL OR called_at >= $7) AND ($8::timestamptz IS NULL OR called_at < $8) \
         AND ($9::timestamptz IS NULL OR (called_at, call_id) < ($9, $10)) \
         ORDER BY called_at DESC, call_id DESC LIMIT $11",
        person = super::people::of_person(4)
    ))
    .bind(org.0)
    .bind(filter.server_id)
    .bind(&filter.tool)
    .bind(filter.end_user_id)
    .bind(&filter.session_id)
    .bind(&filter.outcome)
    .bind(filter.from)
    .bind(filter.to)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Tool calls of the org since `since` (from the hourly rollup, so hour-granular).
pub async fn calls_since(
    pool: &PgPool,
    org: OrgId,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let since = since.duration_trunc(Duration::hours(1)).unwrap_or(since);
    sqlx::query_scalar(
        "SELECT COALESCE(sum(calls), 0)::bigint FROM rm_usage_hourly WHERE org_id = $1 AND hour >= $2",
    )
    .bind(org.0)
    .bind(since)
    .fetch_one(pool)
    .await
}

/// One tool over one bucket.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ToolBucket {
    pub tool: String,
    /// The bucket's first instant (its label).
    #[serde(with = "domain::time::rfc3339")]
    pub bucket: DateTime<Utc>,
    pub calls: i64,
    pub errors: i64,
    /// Errors per call, 0 to 1, to 4 decimals.
    pub error_rate: f64,
    /// Median duration in milliseconds, to the microsecond.
    pub p50_ms: f64,
    /// 95th percentile duration in milliseconds, to the microsecond.
    pub p95_ms: f64,
    /// 99th percentile duration in milliseconds, to the microsecond.
    pub p99_ms: f64,
}

#[derive(sqlx::FromRow)]
struct ToolBucketRow {
    tool: String,
    bucket: DateTime<Utc>,
    calls: i64,
    errors: i64,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
}

/// Per tool and time bucket (`minute`, `hour` or `day`): calls, errors, error rate and duration
/// percentiles, over `[from, to)`.
pub async fn tool_analytics(
    pool: &PgPool,
    org: OrgId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &str,
    server_id: Option<Uuid>,
) -> Result<Vec<ToolBucket>, sqlx::Error> {
    let rows: Vec<ToolBucketRow> = sqlx::query_as(
        "SELECT tool, date_trunc($4, called_at) AS bucket, count(*) AS calls, \
         count(*) FILTER (WHERE outcome = 'error') AS errors, \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY COALESCE(duration_us, duration_ms * 1000)) AS p50_us, \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY COALESCE(duration_us, duration_ms * 1000)) AS p95_us, \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY COALESCE(duration_us, duration_ms * 1000)) AS p99_us \
         FROM rm_tool_calls WHERE org_id = $1 AND called_at >= $2 AND called_at < $3 \
         AND ($5::uuid IS NULL OR server_id = $5) \
         GROUP BY tool, bucket ORDER BY bucket, tool",
    )
    .bind(org.0)
    .bind(from)
    .bind(to)
    .bind(bucket)
    .bind(server_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ToolBucket {
            error_rate: rounding::rate(r.errors, r.calls),
            p50_ms: rounding::millis_from_micros(r.p50_us),
            p95_ms: rounding::millis_from_micros(r.p95_us),
            p99_ms: rounding::millis_from_micros(r.p99_us),
            tool: r.tool,
            bucket: r.bucket,
            calls: r.calls,
            errors: r.errors,
        })
        .collect())
}

//! usage: end users, sessions of both protocol eras, tool calls and the hourly rollup.

use crate::given::*;
use chrono::Duration;
use domain::end_user::{EndUser, EndUserEvent, TrackingId};
use domain::mcp_session::{EndReason, McpSession, McpSessionEvent, SessionStart};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::values::OrgId;
use projections::models::usage::{self, SessionFilter, ToolCallFilter};
use uuid::Uuid;

struct Tenant {
    org: OrgId,
    server: Uuid,
}

async fn tenant(given: &mut Given) -> Tenant {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    Tenant { org, server }
}

fn call(
    server: Uuid,
    session: Option<&str>,
    user: Option<Uuid>,
    tool: &str,
    ok: bool,
) -> ToolCallRecord {
    ToolCallRecord {
        server_id: server,
        session_id: session.map(str::to_owned),
        end_user_id: user,
        tracking_id: user.map(|_| "tracked-1".to_owned()),
        tool: tool.to_owned(),
        outcome: if ok { Outcome::Ok } else { Outcome::Error },
        error: (!ok).then(|| "it failed".to_owned()),
        duration_ms: 12,
        duration_us: None,
        client_name: Some("claude".into()),
        client_version: Some("1.0".into()),
        arguments: serde_json::json!({ "q": "guide" }),
    }
}

async fn record(given: &mut Given, org: OrgId, record: ToolCallRecord) {
    let who = record.end_user_id.unwrap_or_else(Uuid::new_v4);
    given
        .append::<ToolCall>(
            Uuid::now_v7(),
            &end_user(who, org.0),
            &[ToolCallEvent::ToolCalled(record)],
        )
        .await;
}

async fn identified(given: &mut Given, t: &Tenant, tracking: &str) -> Uuid {
    let id = Uuid::new_v4();
    given
        .append::<EndUser>(
            id,
            &end_user(id, t.org.0),
            &[EndUserEvent::EndUserIdentified {
                org_id: t.org.0,
                server_id: t.server,
                tracking_id: TrackingId::parse(tracking).unwrap(),
            }],
        )
        .await;
    id
}

#[tokio::test]
async fn a_protocol_session_counts_its_calls_and_errors_and_ends() {
    let mut given = Given::new().await;
    let t = tenant(&mut given).await;
    let user = identified(&mut given, &t, "tracked-1").await;
    given
        .append::<EndUser>(
            user,
            &end_user(user, t.org.0),
            &[EndUserEvent::EndUserEmailRecorded {
                email: email("walker@example.com"),
                verified: false,
                source: domain::end_user::EmailSource::GetSupport,
            }],
        )
        .await;
    given
        .append::<McpSession>(
            "sess-1",
            &end_user(user, t.org.0),
            &[McpSessionEvent::McpSessionStarted(SessionStart {
                org_id: t.org.0,
                server_id: t.server,
                end_user_id: Some(user),
                tracking_id: Some("tracked-1".into()),
                signed_in: None,
                protocol_version: "2025-11-25".into(),
                client_name: Some("claude".into()),
                client_version: Some("1.0".into()),
                initialize_params: serde_json::json!({}),
            })],
        )
        .await;
    record(
        &mut given,
        t.org,
        call(t.server, Some("sess-1"), Some(user), "search", true),
    )
    .await;
    record(
        &mut given,
        t.org,
        call(t.server, Some("sess-1"), Some(user), "search", false),
    )
    .await;
    given.project().await;
    given
        .append::<McpSession>(
            "sess-1",
            &end_user(user, t.org.0),
            &[McpSessionEvent::McpSessionEnded {
                reason: EndReason::ClientClosed,
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();

    let session = usage::session(pool, t.org, "sess-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.era.as_str(), session.protocol_version.as_deref()),
        ("protocol", Some("2025-11-25"))
    );
    assert_eq!((session.tool_calls, session.errors), (2, 1));
    assert_eq!(session.end_user_id, Some(user));
    assert!(session.ended_at.is_some());

    let row = usage::end_user(pool, t.org, user).await.unwrap().unwrap();
    assert_eq!(row.tracking_ids, ["tracked-1"]);
    assert_eq!(row.emails, ["walker@example.com"]);
    assert_eq!((row.sessions, row.tool_calls), (1, 2));
    assert_eq!(usage::count_end_users(pool, t.org).await.unwrap(), 1);

    let failed = ToolCallFilter {
        outcome: Some("error".into()),
        ..ToolCallFilter::default()
    };
    let calls = usage::tool_calls(pool, t.org, &failed, None, 10)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].tool.as_str(),
            calls[0].error.as_deref(),
            calls[0].session_id.as_deref()
        ),
        ("search", Some("it failed"), Some("sess-1"))
    );
    assert_eq!(calls[0].arguments, serde_json::json!({ "q": "guide" }));
    assert_eq!(
        usage::calls_since(pool, t.org, now() - Duration::hours(1))
            .await
            .unwrap(),
        2,
        "the hourly rollup"
    );
}

#[tokio::test]
async fn calls_without_a_session_group_by_end_user_and_client() {
    let mut given = Given::new().await;
    let t = tenant(&mut given).await;
    let user = identified(&mut given, &t, "tracked-1").await;
    record(
        &mut given,
        t.org,
        call(t.server, None, Some(user), "search", true),
    )
    .await;
    given.project().await;
    // A later batch continues the same grouped session; an anonymous caller gets its own.
    record(
        &mut given,
        t.org,
        call(t.server, None, Some(user), "fetch", true),
    )
    .await;
    record(
        &mut given,
        t.org,
        call(t.server, None, None, "search", true),
    )
    .await;
    given.project().await;
    let pool = given.pool();

    let sessions = usage::sessions(pool, t.org, &SessionFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .all(|s| s.era == "grouped" && s.protocol_version.is_none()));
    let mine = sessions
        .iter()
        .find(|s| s.end_user_id == Some(user))
        .unwrap();
    assert_eq!(mine.tool_calls, 2);
    assert!(mine.id.starts_with("grouped-"));
    assert_eq!(mine.client_name.as_deref(), Some("claude"));

    let by_user = ToolCallFilter {
        end_user_id: Some(user),
        ..ToolCallFilter::default()
    };
    let calls = usage::tool_calls(pool, t.org, &by_user, None, 10)
        .await
        .unwrap();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c.session_id.as_deref() == Some(mine.id.as_str())),
        "each call names the grouped session it went into"
    );
    let row = usage::end_user(pool, t.org, user).await.unwrap().unwrap();
    assert_eq!((row.sessions, row.tool_calls), (1, 2));
    assert_eq!(usage::count_sessions(pool, t.org).await.unwrap(), 2);

    let analytics = usage::tool_analytics(
        pool,
        t.org,
        now() - Duration::hours(1),
        now() + Duration::hours(1),
        "hour",
        Some(t.server),
    )
    .await
    .unwrap();
    // Summed over buckets: a run that crosses the hour has two.
    let mut per_tool = std::collections::BTreeMap::new();
    for b in &analytics {
        let t = per_tool.entry(b.tool.as_str()).or_insert((0, 0));
        *t = (t.0 + b.calls, t.1 + b.errors);
        assert_eq!(b.p50_ms, 12.0);
    }
    assert_eq!(
        per_tool.into_iter().collect::<Vec<_>>(),
        [("fetch", (1, 0)), ("search", (2, 0))]
    );
}

/// A call's duration is kept to the microsecond and shown in milliseconds with its decimals; a
/// call recorded before microseconds were kept reads as its whole milliseconds. Percentiles
/// and error rates come rounded (3 and 4 decimals).
#[tokio::test]
async fn durations_are_milliseconds_to_the_microsecond_and_figures_are_rounded() {
    let mut given = Given::new().await;
    let t = tenant(&mut given).await;
    let timed = |us: Option<u64>, ms: u64, ok: bool| ToolCallRecord {
        duration_ms: ms,
        duration_us: us,
        ..call(t.server, None, None, "lookup", ok)
    };
    record(&mut given, t.org, timed(Some(412), 0, true)).await;
    record(&mut given, t.org, timed(Some(1_500), 1, false)).await;
    // Recorded before microseconds were kept: whole milliseconds only.
    record(&mut given, t.org, timed(None, 3, true)).await;
    given.project().await;

    let calls = usage::tool_calls(given.pool(), t.org, &ToolCallFilter::default(), None, 10)
        .await
        .unwrap();
    let mut durations: Vec<f64> = calls.iter().map(|c| c.duration_ms).collect();
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations, [0.412, 1.5, 3.0]);
    let shown = serde_json::to_value(&calls).unwrap();
    let mut written: Vec<String> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["duration_ms"].to_string())
        .collect();
    written.sort();
    assert_eq!(written, ["0.412", "1.5", "3.0"]);

    let now = chrono::Utc::now();
    let analytics = usage::tool_analytics(
        given.pool(),
        t.org,
        now - Duration::hours(1),
        now + Duration::hours(1),
        "day",
        None,
    )
    .await
    .unwrap();
    assert_eq!(analytics.len(), 1, "{analytics:?}");
    let b = &analytics[0];
    assert_eq!((b.calls, b.errors, b.error_rate), (3, 1, 0.3333));
    // Interpolated between 1500 and 3000 us: 2850 and 2970.
    assert_eq!((b.p50_ms, b.p95_ms, b.p99_ms), (1.5, 2.85, 2.97));
}

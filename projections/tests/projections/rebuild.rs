//! Rebuilds: every projection rebuilt from the event store equals the one built live, event
//! batch by event batch.

use crate::given::*;
use crate::walkthrough_progress::walkthrough;
use crate::walkthroughs::step;
use domain::end_user::{EndUser, EndUserEvent, TrackingId};
use domain::organization::OrganizationEvent;
use domain::ticket::{Ticket, TicketEvent};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::walkthrough::{Walkthrough, WalkthroughEvent};
use domain::walkthrough_progress::{LeftRun, ProgressEvent};
use projections::{rebuild, registry};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Every table of every projection, each as its rows in a stable order.
async fn dump(pool: &PgPool) -> Value {
    let mut out = serde_json::Map::new();
    for projection in registry::all() {
        for table in projection.tables() {
            let rows: Vec<Value> = sqlx::query_scalar(&format!(
                "SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text"
            ))
            .fetch_all(pool)
            .await
            .unwrap();
            out.insert((*table).to_owned(), Value::Array(rows));
        }
    }
    Value::Object(out)
}

#[tokio::test]
async fn every_projection_rebuilt_from_the_store_equals_the_live_one() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let owner = given.user("second@acme.dev").await;
    given
        .org_events(
            run.org,
            owner,
            &[OrganizationEvent::MemberInvited {
                email: email("later@acme.dev"),
                role: role("member"),
                token_hash: None,
                expires_at: None,
            }],
        )
        .await;
    given.project().await;
    given
        .append::<Walkthrough>(
            run.wt,
            &by(owner, run.org.0),
            &[
                WalkthroughEvent::WalkthroughPublished {
                    version: 1,
                    title: "Quickstart".into(),
                    description: None,
                    steps: vec![step(run.steps[0], "One"), step(run.steps[1], "Two")],
                },
                WalkthroughEvent::WalkthroughAssigned {
                    server_id: run.server,
                    display_order: 0,
                    enabled: true,
                },
            ],
        )
        .await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    given
        .append::<EndUser>(
            a,
            &end_user(a, run.org.0),
            &[EndUserEvent::EndUserIdentified {
                org_id: run.org.0,
                server_id: run.server,
                tracking_id: TrackingId::parse("walker-a").unwrap(),
            }],
        )
        .await;
    given.project().await;
    let t0 = now();
    for (user, events) in [
        (
            a,
            vec![run.started(a, t0, None), run.completed_step(a, 0, 200, t0)],
        ),
        (b, vec![run.started(b, t0, None)]),
        (
            a,
            vec![run.completed_step(a, 1, 300, t0), run.completed(a, t0)],
        ),
        (
            b,
            vec![run.started(
                b,
                t0,
                Some(LeftRun {
                    version: 1,
                    step_id: Some(run.steps[0]),
                }),
            )],
        ),
    ] {
        run.walk(&mut given, user, &events).await;
        given.project().await;
    }
    for n in 0..3 {
        given
            .append::<ToolCall>(
                Uuid::now_v7(),
                &end_user(a, run.org.0),
                &[ToolCallEvent::ToolCalled(ToolCallRecord {
                    server_id: run.server,
                    session_id: None,
                    end_user_id: Some(a),
                    tracking_id: None,
                    tool: format!("tool-{}", n % 2),
                    outcome: if n == 0 { Outcome::Error } else { Outcome::Ok },
                    error: None,
                    duration_ms: n,
                    duration_us: None,
                    client_name: None,
                    client_version: None,
                    arguments: serde_json::json!({ "n": n }),
                })],
            )
            .await;
        given.project().await;
    }
    given
        .append::<Ticket>(
            Uuid::new_v4(),
            &end_user(a, run.org.0),
            &[TicketEvent::TicketOpened {
                org_id: run.org.0,
                server_id: run.server,
                end_user_id: Some(a),
                title: "Help".into(),
                description: "Please".into(),
                email: None,
                context: None,
            }],
        )
        .await;
    given.project().await;
    // Identity stitching: a sign-in, a merge that carries a run over, and one undone.
    let signed = Uuid::new_v4();
    given
        .append::<EndUser>(
            signed,
            &end_user(signed, run.org.0),
            &[EndUserEvent::EndUserSignedIn {
                org_id: run.org.0,
                server_id: run.server,
                provider_id: Uuid::new_v4(),
                subject: "sub-1".into(),
                email: Some(email("walker@acme.dev")),
                email_verified: true,
                name: Some("Walker".into()),
                email_keyed: true,
            }],
        )
        .await;
    given.project().await;
    crate::people::merge(&mut given, run.org, signed, a, "walker-a").await;
    run.walk(
        &mut given,
        signed,
        &[ProgressEvent::ProgressCarriedOver {
            org_id: run.org.0,
            walkthrough_id: run.wt,
            end_user_id: signed,
            from_end_user_id: a,
            server_id: run.server,
            version: 1,
            steps: run.steps.to_vec(),
            current: 2,
            started_at: t0,
            shown_at: t0,
            completed_at: Some(t0),
        }],
    )
    .await;
    given.project().await;
    let c = Uuid::new_v4();
    given
        .append::<EndUser>(
            c,
            &end_user(c, run.org.0),
            &[EndUserEvent::EndUserIdentified {
                org_id: run.org.0,
                server_id: run.server,
                tracking_id: TrackingId::parse("walker-c").unwrap(),
            }],
        )
        .await;
    crate::people::merge(&mut given, run.org, signed, c, "walker-c").await;
    crate::people::unmerge(&mut given, run.org, signed, c, "walker-c").await;
    given.project().await;

    let live = dump(given.pool()).await;
    for (table, rows) in live.as_object().unwrap() {
        assert!(
            !rows.as_array().unwrap().is_empty(),
            "{table} is empty: the history should reach every table"
        );
    }
    for projection in registry::all() {
        rebuild::rebuild(given.pool(), projection, |_| {})
            .await
            .unwrap();
    }
    assert_eq!(
        dump(given.pool()).await,
        live,
        "rebuilt tables differ from the live ones"
    );
}

/// A projection is behind only by events it reads: the dashboard and the audit log, caught up,
/// are not behind because of end users' activity after their checkpoint, which the usage
/// projection is.
#[tokio::test]
async fn status_counts_only_the_events_a_projection_reads() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given.server(org, owner, "guide").await;
    given.project().await;
    let caller = Uuid::new_v4();
    given
        .append::<EndUser>(
            caller,
            &end_user(caller, org.0),
            &[EndUserEvent::EndUserIdentified {
                org_id: org.0,
                server_id: Uuid::new_v4(),
                tracking_id: TrackingId::parse("caller").unwrap(),
            }],
        )
        .await;
    let behind = |name: &'static str| {
        let pool = given.pool().clone();
        async move {
            let projection = registry::by_name(name).unwrap();
            rebuild::status(&pool, projection.as_ref())
                .await
                .unwrap()
                .events_behind
        }
    };
    assert_eq!(behind("usage").await, 1, "usage reads end users");
    assert_eq!(behind("dashboard").await, 0);
    assert_eq!(behind("audit_log").await, 0);
    assert_eq!(behind("servers").await, 0);
}

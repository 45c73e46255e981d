//! audit_log: who did what to an org, newest first.

use crate::given::*;
use domain::metadata::Actor;
use domain::organization::OrganizationEvent;
use domain::ticket::{Ticket, TicketEvent, TicketStatus};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::EventMetadata;
use projections::models::audit;
use uuid::Uuid;

#[tokio::test]
async fn the_log_names_actor_action_target_and_summary_newest_first() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let mut meta = by(owner, org.0);
    meta.request_id = Some("req-1".into());
    meta.client_ip = Some("127.0.0.9".into());
    given
        .append::<domain::organization::Organization>(
            org.0,
            &meta,
            &[OrganizationEvent::MemberInvited {
                email: email("new@acme.dev"),
                role: role("admin"),
                token_hash: None,
                expires_at: None,
            }],
        )
        .await;
    let server = given.server(org, owner, "guide").await;
    given.project().await;

    let page = audit::page(given.pool(), org, None, 10).await.unwrap();
    let seen: Vec<_> = page
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.target.kind.as_str(),
                e.summary.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "ServerCreated",
                "mcp_server",
                "created server guide (guide)"
            ),
            (
                "MemberInvited",
                "organization",
                "invited new@acme.dev as admin"
            ),
            (
                "OrganizationCreated",
                "organization",
                "created organization acme (acme)"
            ),
        ]
    );
    assert_eq!(page[0].target.id, server.to_string());
    let invited = &page[1];
    assert_eq!(
        (
            invited.actor.kind.as_str(),
            invited.actor.id,
            invited.actor.email.as_deref()
        ),
        ("platform_user", Some(owner), Some("owner@acme.dev"))
    );
    assert_eq!(invited.request_id.as_deref(), Some("req-1"));
    assert_eq!(invited.client_ip.as_deref(), Some("127.0.0.9"));

    // Paging: entries older than the cursor of the first page's last row.
    let older = audit::page(given.pool(), org, Some(page[1].cursor), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].action, "OrganizationCreated");
}

#[tokio::test]
async fn platform_facts_and_end_users_tool_calls_stay_out_and_tickets_read_as_sentences() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let caller = Uuid::new_v4();
    given
        .append::<ToolCall>(
            Uuid::now_v7(),
            &end_user(caller, org.0),
            &[ToolCallEvent::ToolCalled(ToolCallRecord {
                server_id: server,
                session_id: None,
                end_user_id: Some(caller),
                tracking_id: None,
                tool: "search".into(),
                outcome: Outcome::Ok,
                error: None,
                duration_ms: 1,
                duration_us: None,
                client_name: None,
                client_version: None,
                arguments: serde_json::json!({}),
            })],
        )
        .await;
    let ticket = Uuid::new_v4();
    given
        .append::<Ticket>(
            ticket,
            &end_user(caller, org.0),
            &[TicketEvent::TicketOpened {
                org_id: org.0,
                server_id: server,
                end_user_id: Some(caller),
                title: "It broke".into(),
                description: "Badly".into(),
                email: None,
                context: None,
            }],
        )
        .await;
    given
        .append::<Ticket>(
            ticket,
            &EventMetadata::system().for_org(org.0),
            &[TicketEvent::TicketStatusChanged {
                from: TicketStatus::New,
                to: TicketStatus::InProgress,
                by: Actor::System,
            }],
        )
        .await;
    given.project().await;

    let page = audit::page(given.pool(), org, None, 50).await.unwrap();
    let actions: Vec<_> = page.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "TicketStatusChanged",
            "TicketOpened",
            "ServerCreated",
            "OrganizationCreated"
        ],
        "no UserSignedUp (no org), no ToolCalled (end users' activity)"
    );
    assert!(
        page[0].summary.contains("from new to in_progress"),
        "{}",
        page[0].summary
    );
    assert_eq!(page[0].actor.kind, "system");
    assert!(page[1].summary.contains("It broke"), "{}", page[1].summary);
    assert_eq!(
        (page[1].actor.kind.as_str(), page[1].actor.id),
        ("end_user", Some(caller))
    );
    assert_eq!(
        page[1].actor.email, None,
        "end users are not platform users"
    );
}

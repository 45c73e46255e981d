//! dashboard: an org's counters.

use crate::given::*;
use domain::organization::OrganizationEvent;
use domain::server::{Server, ServerEvent};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::values::Slug;
use projections::models::dashboard;
use uuid::Uuid;

#[tokio::test]
async fn counters_follow_members_invitations_and_servers() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given
        .org_events(
            org,
            owner,
            &[
                OrganizationEvent::MemberAdded {
                    user_id: member,
                    email: email("member@acme.dev"),
                    role: role("member"),
                },
                OrganizationEvent::MemberInvited {
                    email: email("a@acme.dev"),
                    role: role("member"),
                    token_hash: None,
                    expires_at: None,
                },
                OrganizationEvent::MemberInvited {
                    email: email("b@acme.dev"),
                    role: role("member"),
                    token_hash: None,
                    expires_at: None,
                },
            ],
        )
        .await;
    let docs = given.server(org, owner, "guide").await;
    given.server(org, owner, "helpdesk").await;
    given.project().await;
    let counters = dashboard::counters(given.pool(), org).await.unwrap();
    assert_eq!(
        (
            counters.members,
            counters.invitations_pending,
            counters.servers_active,
            counters.servers_archived,
            counters.events_total
        ),
        (2, 2, 2, 0, 6)
    );

    let a = given.user("a@acme.dev").await;
    given
        .org_events(
            org,
            owner,
            &[
                OrganizationEvent::InvitationAccepted {
                    user_id: a,
                    email: email("a@acme.dev"),
                    role: role("member"),
                },
                OrganizationEvent::InvitationRevoked {
                    email: email("b@acme.dev"),
                },
                OrganizationEvent::MemberRemoved {
                    user_id: member,
                    email: email("member@acme.dev"),
                },
            ],
        )
        .await;
    given
        .append::<Server>(
            docs,
            &by(owner, org.0),
            &[ServerEvent::ServerArchived {
                slug: Slug::parse("guide").unwrap(),
            }],
        )
        .await;
    given.project().await;
    let counters = dashboard::counters(given.pool(), org).await.unwrap();
    assert_eq!(
        (
            counters.members,
            counters.invitations_pending,
            counters.servers_active,
            counters.servers_archived,
            counters.events_total
        ),
        (2, 0, 1, 1, 10)
    );
    assert!(counters.last_event_at.is_some());
}

#[tokio::test]
async fn end_users_activity_is_not_counted_as_org_events_and_an_unknown_org_reads_zero() {
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
                end_user_id: None,
                tracking_id: None,
                tool: "search".into(),
                outcome: Outcome::Ok,
                error: None,
                duration_ms: 3,
                duration_us: None,
                client_name: None,
                client_version: None,
                arguments: serde_json::json!({}),
            })],
        )
        .await;
    given.project().await;
    let counters = dashboard::counters(given.pool(), org).await.unwrap();
    assert_eq!(
        counters.events_total, 2,
        "the org and its server, not the call"
    );
    let nobody = dashboard::counters(given.pool(), domain::values::OrgId(Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!((nobody.members, nobody.events_total), (0, 0));
}

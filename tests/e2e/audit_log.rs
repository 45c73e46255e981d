//! The audit log names what it mentions (servers, walkthroughs, tickets, members) as they were
//! named when it happened, in its sentences and as fields.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// The org's audit entries, newest first, once `action` is among them.
async fn audit_once(app: &TestApp, user: &User, org: &str, action: &str) -> Vec<Value> {
    eventually(action, Duration::from_secs(10), || async {
        let (status, page) = app
            .get(&format!("/api/v1/orgs/{org}/audit?limit=500"), &user.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array()?.clone();
        items.iter().any(|e| e["action"] == action).then_some(items)
    })
    .await
}

fn entry<'a>(entries: &'a [Value], action: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {entries:#?}"))
}

#[tokio::test]
async fn a_rename_leaves_older_entries_named_as_they_were() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let bob = app.signup("bob@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.add_member(&owner, &org, &bob, "member").await;
    let server = app.create_server(&owner, &org, "acme-docs").await;
    let server_id = server["id"].as_str().unwrap().to_owned();

    // A walkthrough on the server, and a ticket opened there and assigned to Bob.
    let orgs = format!("/api/v1/orgs/{org}");
    let (status, wt) = app
        .post(
            &format!("{orgs}/walkthroughs"),
            &owner.token,
            json!({ "title": "Quickstart" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wt}");
    let wt = wt["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("{orgs}/walkthroughs/{wt}/steps"),
            &owner.token,
            json!({ "title": "Install", "content": "cargo install" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            &format!("{orgs}/walkthroughs/{wt}/publish"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("{orgs}/servers/acme-docs/walkthroughs"),
            &owner.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut reporter = Mcp::new(app.url("/s/acme-docs/t/reporter-1/mcp"));
    reporter.initialize("reporter").await;
    let reply = reporter
        .call_tool(
            "get_support",
            json!({ "title": "Login fails", "description": "details" }),
        )
        .await;
    let ticket = reply.result()["structuredContent"]["ticket_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .to_owned();
    let reference = format!("TCK-{}", ticket.replace('-', "")[..8].to_ascii_uppercase());
    eventually("the ticket", Duration::from_secs(10), || async {
        let (status, _) = app
            .get(&format!("{orgs}/tickets/{ticket}"), &owner.token)
            .await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let (status, body) = app
        .post(
            &format!("{orgs}/tickets/{ticket}/assign"),
            &owner.token,
            json!({ "member": bob.email }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = audit_once(&app, &owner, &org, "TicketAssigned").await;

    // Then the server and the walkthrough are renamed.
    let (status, body) = app
        .patch(
            &format!("{orgs}/servers/{server_id}"),
            &owner.token,
            json!({ "name": "Handbook" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .patch(
            &format!("{orgs}/walkthroughs/{wt}"),
            &owner.token,
            json!({ "title": "First steps" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = audit_once(&app, &owner, &org, "WalkthroughDetailsChanged").await;

    // The older entries read as they did before the renames.
    for action in ["WalkthroughAssigned", "TicketOpened", "TicketAssigned"] {
        assert_eq!(entry(&after, action), entry(&before, action), "{action}");
    }
    let assigned = entry(&after, "WalkthroughAssigned");
    assert_eq!(
        assigned["summary"],
        "put the walkthrough \"Quickstart\" on server acme-docs"
    );
    assert_eq!(
        assigned["target"],
        json!({ "type": "walkthrough", "id": wt, "name": "Quickstart" })
    );
    assert_eq!(
        assigned["related"],
        json!({ "type": "mcp_server", "id": server_id, "name": "acme-docs" })
    );
    let opened = entry(&after, "TicketOpened");
    assert_eq!(
        opened["summary"],
        format!("opened ticket {reference} \"Login fails\" on server acme-docs")
    );
    assert_eq!(
        opened["target"],
        json!({ "type": "ticket", "id": ticket, "name": reference })
    );
    assert_eq!(opened["related"]["name"], "acme-docs");
    let to_bob = entry(&after, "TicketAssigned");
    assert_eq!(
        to_bob["summary"],
        format!("assigned ticket {reference} to bob@acme.dev")
    );
    assert_eq!(
        to_bob["related"],
        json!({ "type": "user", "id": bob.id, "name": "bob@acme.dev" })
    );
    assert_eq!(
        entry(&after, "InvitationAccepted")["related"],
        json!({ "type": "user", "id": bob.id, "name": "bob@acme.dev" })
    );
    assert_eq!(
        entry(&after, "OrganizationCreated")["target"]["name"],
        "acme"
    );

    // The renames name the new and the old.
    let renamed = entry(&after, "ServerUpdated");
    assert_eq!(
        renamed["summary"],
        "updated server Handbook (acme-docs), renamed from acme-docs"
    );
    assert_eq!(renamed["target"]["name"], "Handbook");
    let retitled = entry(&after, "WalkthroughDetailsChanged");
    assert_eq!(
        retitled["summary"],
        "renamed the walkthrough \"Quickstart\" to \"First steps\""
    );
    assert_eq!(retitled["target"]["name"], "First steps");
    assert_eq!(retitled["related"], Value::Null);

    // A rebuild replays the events in order: every entry reads as it did.
    let out = app.env.cli(&["projections", "rebuild", "audit_log"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rebuilt = audit_once(&app, &owner, &org, "WalkthroughDetailsChanged").await;
    assert_eq!(rebuilt, after);
}

#[tokio::test]
async fn entries_written_before_names_were_kept_are_named_after_an_upgrade() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let server = app.create_server(&owner, &org, "acme-docs").await;
    let (status, body) = app
        .delete(
            &format!(
                "/api/v1/orgs/{org}/servers/{}",
                server["id"].as_str().unwrap()
            ),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let named = audit_once(&app, &owner, &org, "ServerArchived").await;

    // The database as the version before left it: entries without names, no lookup table
    // rows; then what migration 0011 does to the checkpoint.
    let TestApp {
        mut proc,
        env,
        http,
    } = app;
    proc.kill();
    let pool = env.pool().await;
    for statement in [
        "UPDATE rm_audit_log SET target_name = NULL, related_type = NULL, related_id = NULL, \
         related_name = NULL",
        "UPDATE rm_audit_log SET summary = 'archived server acme-docs' \
         WHERE action = 'ServerArchived'",
        "TRUNCATE rm_audit_names",
        "UPDATE projection_checkpoints SET transaction_id = '0', global_position = 0 \
         WHERE name = 'audit_log'",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let app = TestApp {
        proc: env.start(&["up"]),
        env,
        http,
    };
    let replayed = eventually("older entries named", Duration::from_secs(20), || async {
        let entries = audit_once(&app, &owner, &org, "ServerArchived").await;
        (entries == named).then_some(entries)
    })
    .await;
    assert_eq!(
        entry(&replayed, "ServerArchived")["summary"],
        "archived server acme-docs (acme-docs)"
    );
}

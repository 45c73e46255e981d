//! An org's dashboard counters and its audit log, through the REST API.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// All of an org's events through the JSON pages (limit 1000).
async fn all_events(app: &TestApp, user: &User, org: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/events?limit=1000"),
            &user.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    items(&body).clone()
}

/// Alice's org with Bob as member and Carol invited as admin, a server renamed (with a
/// client-chosen request id) and archived, and one kept.
struct Acme {
    app: TestApp,
    alice: User,
    bob: User,
    org: String,
    /// Carol's invitation token.
    carol_token: String,
    server_id: String,
    kept: Value,
}

async fn acme_with_history() -> Acme {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org, &bob, "member").await;
    let carol_invited = app.invite(&alice, &org, "carol@example.com", "admin").await;
    let carol_token = carol_invited["invitation_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let server = app.create_server(&alice, &org, "docs-acme").await;
    let server_id = server["id"].as_str().expect("id").to_owned();
    let kept = app.create_server(&alice, &org, "kept").await;
    // A request id the client chose ends up in the audit log.
    let resp = app
        .http
        .patch(app.url(&format!("/api/v1/orgs/{org}/servers/{server_id}")))
        .bearer_auth(&alice.token)
        .header("x-request-id", "req-e2e-audit-42")
        .json(&json!({ "name": "Docs renamed" }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = app
        .delete(
            &format!("/api/v1/orgs/{org}/servers/{server_id}"),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    Acme {
        app,
        alice,
        bob,
        org,
        carol_token,
        server_id,
        kept,
    }
}

/// The dashboard: the org, the caller's role, live servers and the counters.
async fn dashboard(fx: &Acme) {
    let Acme {
        app,
        alice,
        bob,
        kept,
        ..
    } = fx;
    let org = fx.org.clone();
    // Dashboard.
    expect_counters(
        app,
        alice,
        &org,
        json!({ "servers": 1, "servers_archived": 1, "members": 2, "invitations_pending": 1 }),
    )
    .await;
    let (status, dash) = app.get("/api/v1/orgs/acme/dashboard", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{dash}");
    assert_eq!(dash["org"]["id"], org.as_str());
    assert_eq!(dash["org"]["slug"], "acme");
    assert_eq!(dash["org"]["name"], "acme");
    assert!(dash["org"]["created_at"].is_string());
    assert_eq!(dash["role"], "owner");
    let dash_servers = dash["servers"].as_array().expect("servers");
    assert_eq!(dash_servers.len(), 1, "{dash}");
    assert_eq!(dash_servers[0]["id"], kept["id"]);
    let c = &dash["counters"];
    let events_now = all_events(app, alice, &org).await.len() as i64;
    // OrganizationCreated, MemberInvited and InvitationAccepted (Bob), MemberInvited (Carol),
    // 2x ServerCreated, ServerUpdated, ServerArchived.
    assert_eq!(events_now, 8);
    assert_eq!(c["events"], events_now, "{c}");
    assert!(c["last_activity_at"].is_string(), "{c}");
    for key in [
        "end_users",
        "sessions",
        "tool_calls_24h",
        "tool_calls_7d",
        "open_tickets",
    ] {
        assert_eq!(c[key], 0, "{key}: {c}");
    }
    let (status, dash_bob) = app
        .get(&format!("/api/v1/orgs/{org}/dashboard"), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dash_bob["role"], "member");
    assert_eq!(dash_bob["counters"]["servers"], 1);
}

/// Carol accepts by signing up with her invitation's token; the audit log then names who did
/// what, on what, from where, newest first, exactly the org's events, paged backwards.
async fn invitation_accepted_and_audit(fx: &Acme) {
    let Acme {
        app, alice, bob, ..
    } = fx;
    let org = fx.org.clone();
    let server_id = fx.server_id.clone();
    // Carol accepts by signing up with the token: the pending invitation becomes a member.
    let carol = signup_with_invitation(app, "carol@example.com", &fx.carol_token).await;
    let carol_id = carol["user"]["id"].as_str().expect("id").to_owned();
    expect_counters(
        app,
        alice,
        &org,
        json!({ "members": 3, "invitations_pending": 0, "events": 9 }),
    )
    .await;

    // Audit log: newest first, with who, what, on what, from where.
    let audit_path = format!("/api/v1/orgs/{org}/audit");
    let entries = {
        let mut entries = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let (status, page) = app.get(&audit_path, &alice.token).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            entries = items(&page).clone();
            if entries.len() == 9 && entries.iter().all(|e| e["actor"]["email"].is_string()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        entries
    };
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "InvitationAccepted",
            "ServerArchived",
            "ServerUpdated",
            "ServerCreated",
            "ServerCreated",
            "MemberInvited",
            "InvitationAccepted",
            "MemberInvited",
            "OrganizationCreated",
        ],
        "{entries:?}"
    );
    for e in &entries {
        assert!(e["cursor"].is_string() && e["event_id"].is_string(), "{e}");
        assert!(e["occurred_at"].is_string(), "{e}");
        assert_eq!(e["actor"]["kind"], "platform_user", "{e}");
        assert!(e["summary"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert!(
            e["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{e}"
        );
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
    }
    let accepted = &entries[0];
    assert_eq!(accepted["actor"]["id"], carol_id.as_str());
    assert_eq!(accepted["actor"]["email"], "carol@example.com");
    assert_eq!(accepted["target"]["type"], "organization");
    assert_eq!(accepted["target"]["id"], org.as_str());
    // Bob accepted his invitation himself; Alice did everything else.
    let bob_accepted = &entries[6];
    assert_eq!(
        bob_accepted["actor"]["id"],
        bob.id.as_str(),
        "{bob_accepted}"
    );
    for (i, e) in entries.iter().enumerate().skip(1).filter(|(i, _)| *i != 6) {
        assert_eq!(e["actor"]["id"], alice.id.as_str(), "{i}: {e}");
        assert_eq!(e["actor"]["email"], "alice@example.com", "{i}: {e}");
    }
    let updated = &entries[2];
    assert_eq!(updated["target"]["type"], "mcp_server");
    assert_eq!(updated["target"]["id"], server_id.as_str());
    assert_eq!(updated["request_id"], "req-e2e-audit-42");
    assert!(
        updated["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Docs renamed")),
        "{updated}"
    );
    assert!(
        entries[5]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("carol@example.com")),
        "{}",
        entries[5]
    );
    // The audit entries are exactly the org's events.
    let mut audit_ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let events = all_events(app, alice, &org).await;
    let mut event_ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    audit_ids.sort_unstable();
    event_ids.sort_unstable();
    assert_eq!(audit_ids, event_ids);

    // Paging backwards with `before`.
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..20 {
        let path = match &before {
            Some(c) => format!("{audit_path}?limit=3&before={c}"),
            None => format!("{audit_path}?limit=3"),
        };
        let (status, page) = app.get(&path, &alice.token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(items(&page).len() <= 3);
        paged.extend(items(&page).iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, entries);

    let got = app
        .get(&format!("{audit_path}?before=garbage"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_cursor");
    for limit in ["0", "-1", "100000"] {
        let got = app
            .get(&format!("{audit_path}?limit={limit}"), &alice.token)
            .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_limit");
    }
}

#[tokio::test]
async fn the_dashboard_counts_an_orgs_servers_members_and_events() {
    let fx = acme_with_history().await;
    dashboard(&fx).await;
}

#[tokio::test]
async fn the_audit_log_names_who_did_what_newest_first_and_pages_backwards() {
    let fx = acme_with_history().await;
    invitation_accepted_and_audit(&fx).await;
}

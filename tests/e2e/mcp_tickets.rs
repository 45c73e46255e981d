//! Tickets from `get_support` through their whole lifecycle over REST, and the isolation of
//! every MCP-derived object (tickets, end users, sessions, tool calls, MCP sessions) between
//! orgs and servers.

use crate::helpers::*;
use crate::mcp_raw::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Opens a ticket through the server's `get_support` tool; returns the ticket id.
async fn open_ticket(app: &TestApp, server: &str, title: &str) -> String {
    let mut client = Mcp::new(app.url(&format!("/s/{server}/t/reporter-1/mcp")));
    client.initialize("reporter").await;
    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": title, "description": "details", "email": "r@example.com",
                     "context": "v1.2.3" }),
        )
        .await;
    let result = reply.result();
    assert_eq!(result["isError"], false, "{}", reply.text);
    result["structuredContent"]["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn ticket(app: &TestApp, user: &User, org: &str, id: &str) -> Value {
    eventually("ticket projected", Duration::from_secs(10), || async {
        let (status, body) = app
            .get(&format!("/api/v1/orgs/{org}/tickets/{id}"), &user.token)
            .await;
        (status == StatusCode::OK).then_some(body)
    })
    .await
}

async fn set_status(
    app: &TestApp,
    user: &User,
    org: &str,
    id: &str,
    to: &str,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/orgs/{org}/tickets/{id}/status"),
        &user.token,
        json!({ "status": to }),
    )
    .await
}

#[tokio::test]
async fn tickets_follow_one_lifecycle_and_illegal_moves_name_the_allowed_ones() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let member = app.signup("agent@acme.test").await;
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &owner.token,
            json!({ "email": member.email, "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let id = open_ticket(&app, "acme-docs", "Cannot log in").await;
    let opened = ticket(&app, &owner, &org, &id).await;
    assert_eq!(opened["status"], "new");
    assert_eq!(opened["email"], "r@example.com");
    assert_eq!(opened["context"], "v1.2.3");
    assert!(opened["end_user_id"].is_string());
    assert_eq!(opened["allowed_transitions"], json!(["in_progress"]));
    assert!(opened["reference"].as_str().unwrap().starts_with("TCK-"));

    // Every illegal move from `new` is 409 naming what is allowed.
    for to in ["awaiting_customer", "resolved", "closed"] {
        let (status, body) = set_status(&app, &member, &org, &id, to).await;
        assert_eq!(status, StatusCode::CONFLICT, "new -> {to}: {body}");
        assert_eq!(body["code"], "illegal_transition");
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("allowed: in_progress"));
    }
    // The legal path, with a reopen: new → in_progress → awaiting_customer → in_progress →
    // resolved → in_progress (reopen) → resolved → closed.
    for to in [
        "in_progress",
        "awaiting_customer",
        "in_progress",
        "resolved",
        "in_progress",
        "resolved",
        "closed",
    ] {
        let (status, body) = set_status(&app, &member, &org, &id, to).await;
        assert_eq!(status, StatusCode::OK, "-> {to}: {body}");
        assert_eq!(body["status"], to);
    }
    let (status, body) = set_status(&app, &owner, &org, &id, "in_progress").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["detail"].as_str().unwrap().contains("closed"),
        "{body}"
    );
    let (status, body) = set_status(&app, &owner, &org, &id, "frozen").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Comments and assignment (by email and by id; only members).
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/comments"),
            &member.token,
            json!({ "body": "Reset your token and retry." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, empty) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/comments"),
            &member.token,
            json!({ "body": "   " }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{empty}");
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/assign"),
            &owner.token,
            json!({ "member": member.email }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignee_id"], member.id.as_str());
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/assign"),
            &owner.token,
            json!({ "member": owner.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outsider = app.signup("outsider@else.test").await;
    for who in [
        outsider.email.as_str(),
        outsider.id.as_str(),
        "nobody@x.test",
    ] {
        let (status, body) = app
            .post(
                &format!("/api/v1/orgs/{org}/tickets/{id}/assign"),
                &owner.token,
                json!({ "member": who }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{who}: {body}");
    }
    // `null` takes the ticket off its assignee; leaving `member` out is a mistake.
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/assign"),
            &owner.token,
            json!({ "member": null }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignee_id"], Value::Null, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{id}/assign"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "member", "{body}");

    // The timeline has it all, in order.
    let detail = ticket(&app, &owner, &org, &id).await;
    let kinds: Vec<&str> = detail["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"opened"));
    assert_eq!(kinds.iter().filter(|k| **k == "status_changed").count(), 7);
    assert!(kinds.contains(&"commented") && kinds.contains(&"assigned"));
    assert_eq!(kinds.last(), Some(&"unassigned"));
    assert_eq!(detail["comments"], 1);

    // Filters and pages.
    let second = open_ticket(&app, "acme-docs", "Another one").await;
    ticket(&app, &owner, &org, &second).await;
    let (_, closed) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?status=closed"),
            &owner.token,
        )
        .await;
    assert_eq!(closed["items"].as_array().unwrap().len(), 1);
    let (_, page1) = app
        .get(&format!("/api/v1/orgs/{org}/tickets?limit=1"), &owner.token)
        .await;
    assert_eq!(page1["items"][0]["id"], second.as_str());
    let quoted = page1["items"][0]["reference"].as_str().unwrap().to_owned();
    assert_eq!(quoted, format!("TCK-{}", second[..8].to_ascii_uppercase()));
    // The reference the end user quotes finds the ticket, in either case, for reads and writes.
    for form in [
        quoted.clone(),
        quoted.to_ascii_lowercase(),
        format!("%20{quoted}%09"),
    ] {
        let (status, by_reference) = app
            .get(&format!("/api/v1/orgs/{org}/tickets/{form}"), &owner.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{form}: {by_reference}");
        assert_eq!(by_reference["id"], second.as_str());
    }
    let (status, commented) = app
        .post(
            &format!("/api/v1/orgs/{org}/tickets/{quoted}/comments"),
            &owner.token,
            json!({ "body": "Found by its reference" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{commented}");
    assert_eq!(commented["id"], second.as_str());
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?limit=1&cursor={cursor}"),
            &owner.token,
        )
        .await;
    assert_eq!(page2["items"][0]["id"], id.as_str());
    assert_eq!(
        page2["next_cursor"],
        Value::Null,
        "the last page, though full, says no page follows"
    );
    let (_, by_server) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?server=acme-docs"),
            &owner.token,
        )
        .await;
    assert_eq!(by_server["items"].as_array().unwrap().len(), 2);
    let (status, bad) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?cursor=zzz"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    // A reference that two tickets share (one in 4 billion; made here in the read model
    // directly) is refused with both ids, not answered with either.
    let pool = app.env.pool().await;
    for twin in [
        "abcdef01-0000-4000-8000-000000000001",
        "abcdef01-ffff-4000-8000-000000000002",
    ] {
        sqlx::query(
            "INSERT INTO rm_tickets (org_id, ticket_id, server_id, title, description, status, \
             created_at, updated_at) \
             SELECT $1::uuid, $2::uuid, server_id, 'Twin', 'Twin', 'new', now(), now() \
             FROM rm_tickets WHERE org_id = $1::uuid LIMIT 1",
        )
        .bind(&org)
        .bind(twin)
        .execute(&pool)
        .await
        .unwrap();
    }
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets/TCK-ABCDEF01"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ambiguous_reference");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("abcdef01-0000-4000-8000-000000000001")
            && detail.contains("abcdef01-ffff-4000-8000-000000000002"),
        "{body}"
    );
    sqlx::query("DELETE FROM rm_tickets WHERE title = 'Twin'")
        .execute(&pool)
        .await
        .unwrap();

    // A malformed query parameter is named.
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?limit=many"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`limit`"),
        "{body}"
    );
    for unknown in ["not-a-uuid", "TCK-", "TCK-ZZZZZZZZ", "TCK-00000000X"] {
        let (status, body) = app
            .get(
                &format!("/api/v1/orgs/{org}/tickets/{unknown}"),
                &owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}: {body}");
        assert_eq!(body["code"], "ticket_not_found");
    }

    // Analytics over the calls that opened them (the tool-call read model catches up on its
    // own; the ticket reads above waited only for the tickets one).
    let support: Vec<Value> = eventually(
        "both calls in analytics",
        Duration::from_secs(10),
        || async {
            let (status, analytics) = app
                .get(
                    &format!("/api/v1/orgs/{org}/analytics/tools?bucket=minute"),
                    &owner.token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{analytics}");
            let rows: Vec<Value> = analytics["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["tool"] == "get_support")
                .cloned()
                .collect();
            let calls: i64 = rows.iter().map(|r| r["calls"].as_i64().unwrap()).sum();
            (calls == 2).then_some(rows)
        },
    )
    .await;
    assert!(support[0]["p99_ms"].is_number() && support[0]["error_rate"] == 0.0);
    let (status, _) = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=week"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=hour&from=2020-01-01"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`from`"),
        "{body}"
    );
    let (status, _) = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=minute&from=2020-01-01T00:00:00Z"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn mcp_objects_of_one_org_are_invisible_to_another_and_sessions_stay_on_their_server() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org_a = app.create_org(&alice, "org-a").await;
    let org_b = app.create_org(&bob, "org-b").await;
    app.create_server(&alice, &org_a, "server-a").await;
    app.create_server(&alice, &org_a, "server-a2").await;
    app.create_server(&bob, &org_b, "server-b").await;

    let ticket_id = open_ticket(&app, "server-a", "Alice's customer").await;
    ticket(&app, &alice, &org_a, &ticket_id).await;
    let mut a_client = Mcp::new(app.url("/s/server-a/mcp"));
    a_client.initialize("a-client").await;
    let a_session = a_client.session_id.clone().unwrap();

    // Server A's session on server A2 (same org) and on server B: unknown there.
    for other in ["server-a2", "server-b"] {
        let mut thief = Mcp::new(app.url(&format!("/s/{other}/mcp")));
        thief.session_id = Some(a_session.clone());
        let reply = thief.call("tools/list", json!({})).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{other}: {}",
            reply.text
        );
    }
    // …and it still works where it belongs.
    assert_eq!(a_client.tool_names().await, vec!["get_support"]);

    let (_, users_a) = eventually("alice's end user", Duration::from_secs(10), || async {
        let (s, body) = app
            .get(&format!("/api/v1/orgs/{org_a}/users"), &alice.token)
            .await;
        (s == StatusCode::OK && !body["items"].as_array().unwrap().is_empty()).then_some((s, body))
    })
    .await;
    let end_user = users_a["items"][0]["id"].as_str().unwrap().to_owned();

    // In Alice's org the end user is also found by the tracking id the support team knows.
    let (status, by_tracking) = app
        .get(
            &format!("/api/v1/orgs/{org_a}/users/reporter-1"),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_tracking}");
    assert_eq!(by_tracking["id"], end_user.as_str());
    assert_eq!(
        by_tracking["tickets"][0]["reference"],
        format!("TCK-{}", ticket_id[..8].to_ascii_uppercase()),
        "{by_tracking}"
    );
    // (Tool calls and sessions have a read model of their own, which may still be catching up.)
    for (query, expected) in [
        ("/tickets?end_user=reporter-1", 1),
        ("/tickets?end_user=nobody-here", 0),
        ("/tool-calls?end_user=reporter-1&tool=get_support", 1),
        ("/sessions?end_user=reporter-1", 1),
    ] {
        eventually(query, Duration::from_secs(10), || async {
            let (status, body) = app
                .get(&format!("/api/v1/orgs/{org_a}{query}"), &alice.token)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            (body["items"].as_array().unwrap().len() == expected).then_some(())
        })
        .await;
    }
    for unknown in ["nobody-here", "not%20a%20tracking%20id"] {
        let (status, _) = app
            .get(
                &format!("/api/v1/orgs/{org_a}/users/{unknown}"),
                &alice.token,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    }

    // Alice's objects through Bob's org: not found, and Bob's lists are empty.
    let quoted = format!("TCK-{}", ticket_id[..8].to_ascii_uppercase());
    for (path, code) in [
        (format!("/tickets/{ticket_id}"), "ticket_not_found"),
        (format!("/tickets/{quoted}"), "ticket_not_found"),
        (format!("/users/{end_user}"), "end_user_not_found"),
        ("/users/reporter-1".to_owned(), "end_user_not_found"),
        (format!("/sessions/{a_session}"), "session_not_found"),
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/orgs/{org_b}{path}"), &bob.token)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["code"], code);
    }
    for (path, body) in [
        (
            format!("/tickets/{ticket_id}/status"),
            json!({ "status": "in_progress" }),
        ),
        (
            format!("/tickets/{ticket_id}/comments"),
            json!({ "body": "x" }),
        ),
        (
            format!("/tickets/{ticket_id}/assign"),
            json!({ "member": bob.email }),
        ),
    ] {
        let (status, got) = app
            .post(&format!("/api/v1/orgs/{org_b}{path}"), &bob.token, body)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {got}");
    }
    for list in [
        "/tickets",
        "/users",
        "/sessions",
        "/tool-calls",
        "/analytics/tools",
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/orgs/{org_b}{list}"), &bob.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(body["items"], json!([]), "{list}: {body}");
    }
    // Filtering Bob's org by Alice's server or end user finds nothing either.
    for query in [
        "/tickets?server=server-a".to_owned(),
        format!("/tickets?end_user={end_user}"),
        "/tool-calls?server=server-a".to_owned(),
        format!("/sessions?end_user={end_user}"),
        "/tickets?end_user=reporter-1".to_owned(),
        "/tool-calls?end_user=reporter-1".to_owned(),
    ] {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org_b}{query}"), &bob.token)
            .await;
        assert_eq!(body["items"], json!([]), "{query}");
    }
    let (_, dash) = app
        .get(&format!("/api/v1/orgs/{org_b}/dashboard"), &bob.token)
        .await;
    assert_eq!(dash["counters"]["open_tickets"], 0);
    assert_eq!(dash["counters"]["end_users"], 0);

    // Alice's ticket is untouched.
    let still = ticket(&app, &alice, &org_a, &ticket_id).await;
    assert_eq!(still["status"], "new");
    assert_eq!(still["comments"], 0);
}

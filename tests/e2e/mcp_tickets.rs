//! Tickets from `get_support` through their whole lifecycle over REST: statuses, comments,
//! assignment, the timeline, filters, references and the tool analytics of the calls.

use crate::helpers::*;
use crate::mcp_raw::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Opens a ticket through the server's `get_support` tool; returns the ticket id.
pub async fn open_ticket(app: &TestApp, server: &str, title: &str) -> String {
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

pub async fn ticket(app: &TestApp, user: &User, org: &str, id: &str) -> Value {
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

/// An org with a server and a member (the agent), and one ticket its end user opened over MCP,
/// checked as opened.
struct Desk {
    app: TestApp,
    owner: User,
    org: String,
    member: User,
    id: String,
}

async fn desk_with_a_ticket() -> Desk {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let member = app.signup("agent@acme.test").await;
    app.add_member(&owner, &org, &member, "member").await;

    let id = open_ticket(&app, "acme-docs", "Cannot log in").await;
    let opened = ticket(&app, &owner, &org, &id).await;
    assert_eq!(opened["status"], "new");
    assert_eq!(opened["email"], "r@example.com");
    assert_eq!(opened["context"], "v1.2.3");
    assert!(opened["end_user_id"].is_string());
    assert_eq!(opened["allowed_transitions"], json!(["in_progress"]));
    assert!(opened["reference"].as_str().unwrap().starts_with("TCK-"));

    Desk {
        app,
        owner,
        org,
        member,
        id,
    }
}

/// Every illegal move from `new` is refused naming what is allowed; the legal path, with a
/// reopen, ends closed.
async fn lifecycle(fx: &Desk) {
    let Desk {
        app, owner, member, ..
    } = fx;
    let org = fx.org.clone();
    let id = fx.id.clone();
    // Every illegal move from `new` is 409 naming what is allowed.
    for to in ["awaiting_customer", "resolved", "closed"] {
        let (status, body) = set_status(app, member, &org, &id, to).await;
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
        let (status, body) = set_status(app, member, &org, &id, to).await;
        assert_eq!(status, StatusCode::OK, "-> {to}: {body}");
        assert_eq!(body["status"], to);
    }
    let (status, body) = set_status(app, owner, &org, &id, "in_progress").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["detail"].as_str().unwrap().contains("closed"),
        "{body}"
    );
    let (status, body) = set_status(app, owner, &org, &id, "frozen").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

/// Comments, and assignment by email or id to members only; `null` unassigns.
async fn comments_and_assignment(fx: &Desk) {
    let Desk {
        app, owner, member, ..
    } = fx;
    let org = fx.org.clone();
    let id = fx.id.clone();
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
}

/// The timeline has it all, in order.
async fn timeline(fx: &Desk) {
    let Desk { app, owner, .. } = fx;
    let org = fx.org.clone();
    let id = fx.id.clone();
    // The timeline has it all, in order.
    let detail = ticket(app, owner, &org, &id).await;
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
}

/// Filters, pages, and the reference the end user quotes (an ambiguous one is refused).
async fn filters_pages_and_references(fx: &Desk) {
    let Desk { app, owner, .. } = fx;
    let org = fx.org.clone();
    let id = fx.id.clone();
    // Filters and pages.
    let second = open_ticket(app, "acme-docs", "Another one").await;
    ticket(app, owner, &org, &second).await;
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
}

/// A malformed query parameter or ticket reference is named or not found.
async fn malformed_queries(fx: &Desk) {
    let Desk { app, owner, .. } = fx;
    let org = fx.org.clone();
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
}

/// Tool analytics count the calls that opened the two tickets; bad buckets and times are
/// refused.
async fn analytics(fx: &Desk) {
    let Desk { app, owner, .. } = fx;
    let org = fx.org.clone();
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
    // A date is a bound like a time (here a range too long for hourly buckets); anything
    // else is refused naming the bound.
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=hour&from=2020-01-01"),
            &owner.token,
        )
        .await;
    assert_invalid_field(&got, "bucket");
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=hour&from=2020-01"),
            &owner.token,
        )
        .await;
    assert_invalid_field(&got, "from");
    let (status, _) = app
        .get(
            &format!("/api/v1/orgs/{org}/analytics/tools?bucket=minute&from=2020-01-01T00:00:00Z"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_ticket_opened_over_mcp_is_new_and_keeps_what_the_end_user_gave() {
    desk_with_a_ticket().await;
}

#[tokio::test]
async fn tickets_follow_one_lifecycle_and_illegal_moves_name_the_allowed_ones() {
    let fx = desk_with_a_ticket().await;
    lifecycle(&fx).await;
}

#[tokio::test]
async fn tickets_are_commented_and_assigned_only_to_members() {
    let fx = desk_with_a_ticket().await;
    lifecycle(&fx).await;
    comments_and_assignment(&fx).await;
}

#[tokio::test]
async fn a_tickets_timeline_lists_everything_in_order() {
    let fx = desk_with_a_ticket().await;
    lifecycle(&fx).await;
    comments_and_assignment(&fx).await;
    timeline(&fx).await;
}

#[tokio::test]
async fn tickets_filter_page_and_are_found_by_the_reference_end_users_quote() {
    let fx = desk_with_a_ticket().await;
    lifecycle(&fx).await;
    comments_and_assignment(&fx).await;
    filters_pages_and_references(&fx).await;
}

#[tokio::test]
async fn malformed_ticket_queries_are_named() {
    let fx = desk_with_a_ticket().await;
    malformed_queries(&fx).await;
}

#[tokio::test]
async fn tool_analytics_count_the_calls_that_opened_tickets() {
    let fx = desk_with_a_ticket().await;
    lifecycle(&fx).await;
    comments_and_assignment(&fx).await;
    filters_pages_and_references(&fx).await;
    analytics(&fx).await;
}

//! Identity stitching over HTTP: the users list and detail show every identity with its source,
//! `?identified=` splits anonymous from signed-in people, the dashboard counts them and
//! sign-ins, and the unmerge route is for owners and admins of the org only. (Sign-in and the
//! merges themselves are driven by the authorization server; the command tier tests them,
//! `commands/tests/commands/end_users.rs`.)

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// An end user first seen through a tracking id, with a ticket giving their email.
async fn visit(app: &TestApp, server: &str, tracking: &str, email: Option<&str>) {
    let mut client = Mcp::new(app.url(&format!("/s/{server}/t/{tracking}/mcp")));
    client.initialize("stitching-client").await;
    let mut args = json!({ "title": "Stuck", "description": "details" });
    if let Some(email) = email {
        args["email"] = json!(email);
    }
    let reply = client.call_tool("get_support", args).await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);
}

async fn users(app: &TestApp, user: &User, org: &str, query: &str, n: usize) -> Value {
    eventually(query, Duration::from_secs(10), || async {
        let (status, body) = app
            .get(&format!("/api/v1/orgs/{org}/users{query}"), &user.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        (items(&body).len() == n && items(&body).iter().all(|u| u["tool_calls"] == 1))
            .then_some(body)
    })
    .await
}

#[tokio::test]
async fn people_show_every_identity_with_its_source_and_split_by_sign_in() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    app.create_server(&alice, &org, "guide").await;
    visit(&app, "guide", "visitor-1", Some("one@example.com")).await;
    visit(&app, "guide", "visitor-2", None).await;

    let all = users(&app, &alice, &org, "", 2).await;
    let one = items(&all)
        .iter()
        .find(|u| u["tracking_ids"] == json!(["visitor-1"]))
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(one["status"], "anonymous");
    assert_eq!(one["emails"], json!(["one@example.com"]));
    assert_eq!(one["merged"], json!([]));
    assert!(one["first_seen_at"].is_string() && one["last_seen_at"].is_string());
    let identities = one["identities"].as_array().unwrap();
    let shape: Vec<(&str, &str, &str, bool)> = identities
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap(),
                i["source"].as_str().unwrap(),
                i["verified"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("tracking_id", "visitor-1", "tracking_id", false),
            ("email", "one@example.com", "get_support", false),
        ]
    );
    for i in identities {
        assert_eq!(i["end_user_id"], one["id"]);
        assert!(i["first_seen_at"].is_string(), "{i}");
    }

    // Nobody signed in: all anonymous.
    let (_, identified) = app
        .get(
            &format!("/api/v1/orgs/{org}/users?identified=true"),
            &alice.token,
        )
        .await;
    assert_eq!(identified["items"], json!([]), "{identified}");
    users(&app, &alice, &org, "?identified=false", 2).await;
    let bad = app
        .get(
            &format!("/api/v1/orgs/{org}/users?identified=maybe"),
            &alice.token,
        )
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "invalid_query");

    // The detail, by id or by tracking id, is the same person.
    let id = one["id"].as_str().unwrap();
    for path in [id, "visitor-1"] {
        let detail = eventually(path, Duration::from_secs(10), || async {
            let (status, detail) = app
                .get(&format!("/api/v1/orgs/{org}/users/{path}"), &alice.token)
                .await;
            assert_eq!(status, StatusCode::OK, "{detail}");
            (items_of(&detail["tickets"]).len() == 1).then_some(detail)
        })
        .await;
        assert_eq!(detail["id"], id);
        assert_eq!(detail["identities"], one["identities"]);
    }

    expect_counters(
        &app,
        &alice,
        &org,
        json!({
            "end_users": 2,
            "end_users_identified": 0,
            "end_users_anonymous": 2,
            "sign_ins_24h": 0,
            "sign_ins_7d": 0,
        }),
    )
    .await;
}

fn items_of(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}"))
}

#[tokio::test]
async fn unmerging_is_for_owners_and_admins_of_the_org_and_refuses_what_was_never_merged() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let mallory = app.signup("mallory@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let other = app.create_org(&bob, "beta").await;
    app.add_member(&alice, &org, &mallory, "member").await;
    app.create_server(&alice, &org, "guide").await;
    app.create_server(&bob, &other, "elsewhere").await;
    visit(&app, "guide", "visitor-1", None).await;
    visit(&app, "guide", "visitor-2", None).await;
    visit(&app, "elsewhere", "visitor-1", None).await;
    let list = users(&app, &alice, &org, "", 2).await;
    let (a, b) = (
        items(&list)[0]["id"].as_str().unwrap().to_owned(),
        items(&list)[1]["id"].as_str().unwrap().to_owned(),
    );
    let theirs = users(&app, &bob, &other, "", 1).await;
    let foreign = items(&theirs)[0]["id"].as_str().unwrap().to_owned();
    let unmerge = |org: &str, user: &str| format!("/api/v1/orgs/{org}/users/{user}/unmerge");

    // A member may not; the answer says nothing about the end users.
    let got = app
        .post(&unmerge(&org, &a), &mallory.token, json!({ "merged": b }))
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    // Not merged into that person.
    let got = app
        .post(&unmerge(&org, &a), &alice.token, json!({ "merged": b }))
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "not_merged");
    // Another org's end user, named either way, is not found here.
    let got = app
        .post(
            &unmerge(&org, &foreign),
            &alice.token,
            json!({ "merged": a }),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "end_user_not_found");
    let got = app
        .post(
            &unmerge(&org, &a),
            &alice.token,
            json!({ "merged": foreign }),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "end_user_not_found");
    // A stranger to the org gets the org's 404, as on every org route.
    let got = app
        .post(&unmerge(&org, &a), &bob.token, json!({ "merged": b }))
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    // A body without `merged` is refused before anything is looked up.
    let got = app.post(&unmerge(&org, &a), &alice.token, json!({})).await;
    assert!(
        got.0.is_client_error() && got.0 != StatusCode::NOT_FOUND,
        "{got:?}"
    );
    // Nothing was written: both are still people of their own.
    users(&app, &alice, &org, "?identified=false", 2).await;
    let pool = app.env.pool().await;
    let unmerges: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('EndUserUnmerged', 'EndUserRestored')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unmerges, 0);
}

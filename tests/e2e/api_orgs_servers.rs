//! Organizations, members (and invitations), hosted servers, the dashboard, the audit log and
//! the org's event stream (cursor pages, NDJSON, SSE), through the REST API.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Asserts a problem+json body with the given status and code.
#[track_caller]
fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "expected {status} {code}, got {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

/// Asserts a 422 whose `errors` name `field`.
#[track_caller]
fn assert_invalid_field(got: &(StatusCode, Value), field: &str) {
    assert_problem(got, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let errors = got.1["errors"].as_array().expect("errors array");
    assert!(
        errors.iter().any(|e| e["field"] == field),
        "expected an error on `{field}`: {}",
        got.1
    );
}

#[track_caller]
fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().expect("items array")
}

/// `"{tx}-{pos}"` as a comparable pair.
fn cursor(c: &Value) -> (i64, i64) {
    let s = c.as_str().expect("cursor string");
    let (tx, pos) = s.split_once('-').expect("tx-pos");
    (tx.parse().expect("tx"), pos.parse().expect("pos"))
}

/// Signs up with the full response (for `joined_orgs`).
async fn signup_full(app: &TestApp, email: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({ "email": email, "password": PASSWORD, "name": "Someone" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn member<'a>(list: &'a Value, email: &str) -> Option<&'a Value> {
    items(list).iter().find(|m| m["email"] == email)
}

async fn counters(app: &TestApp, user: &User, org: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/orgs/{org}/dashboard"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["counters"].clone()
}

/// Waits until the dashboard counters match `expected` (a subset of fields).
async fn expect_counters(app: &TestApp, user: &User, org: &str, expected: Value) {
    let expected = expected.as_object().expect("object").clone();
    let mut last = Value::Null;
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            last = counters(app, user, org).await;
            if expected.iter().all(|(k, v)| &last[k] == v) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        ok.is_ok(),
        "dashboard counters: expected {expected:?}, got {last}"
    );
}

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

#[tokio::test]
async fn orgs_are_created_listed_and_fetched_by_id_or_slug() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;

    let (status, org) = app
        .post(
            "/api/v1/orgs",
            &alice.token,
            json!({ "name": "Acme Inc.", "slug": "acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    assert_eq!(org["name"], "Acme Inc.");
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["role"], "owner");
    let org_id = org["id"].as_str().expect("id").to_owned();

    // Slugs are unique platform-wide, whoever asks.
    for user in [&alice, &bob] {
        let got = app
            .post(
                "/api/v1/orgs",
                &user.token,
                json!({ "name": "Other", "slug": "acme" }),
            )
            .await;
        assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    }
    // Invalid and reserved slugs, and a bad name.
    let long = "a".repeat(64);
    for slug in [
        "Bad_Slug", "-x", "x-", "www", "api", "admin", "", "UPPER", "a.b", "a b", &long,
    ] {
        let got = app
            .post(
                "/api/v1/orgs",
                &alice.token,
                json!({ "name": "Bad", "slug": slug }),
            )
            .await;
        assert_invalid_field(&got, "slug");
    }
    let got = app
        .post(
            "/api/v1/orgs",
            &alice.token,
            json!({ "name": "", "slug": "fine" }),
        )
        .await;
    assert_invalid_field(&got, "name");
    let got = app
        .post("/api/v1/orgs", &alice.token, json!({ "name": "No slug" }))
        .await;
    assert_invalid_field(&got, "slug");

    // Lists and fetches.
    let second = app.create_org(&alice, "acme-labs").await;
    let (status, list) = app.get("/api/v1/orgs", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = items(&list);
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list
        .iter()
        .find(|o| o["id"] == org_id.as_str())
        .expect("acme listed");
    assert_eq!(first["slug"], "acme");
    assert_eq!(first["name"], "Acme Inc.");
    assert_eq!(first["role"], "owner");
    assert!(first["created_at"].is_string());
    assert!(list.iter().any(|o| o["id"] == second.as_str()));

    for org_ref in [org_id.as_str(), "acme"] {
        let (status, got) = app
            .get(&format!("/api/v1/orgs/{org_ref}"), &alice.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["id"], org_id.as_str());
        assert_eq!(got["slug"], "acme");
        assert_eq!(got["name"], "Acme Inc.");
        assert_eq!(got["role"], "owner");
        assert!(got["created_at"].is_string());
    }
    let (status, me) = app.get("/api/v1/me", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["orgs"].as_array().map(Vec::len), Some(2), "{me}");

    // Bob sees none of them.
    let (status, list) = app.get("/api/v1/orgs", &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&list).is_empty(), "{list}");
    for org_ref in [
        org_id.as_str(),
        "acme",
        "no-such-org",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let got = app
            .get(&format!("/api/v1/orgs/{org_ref}"), &bob.token)
            .await;
        assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    }
}

#[tokio::test]
async fn members_invitations_roles_and_the_last_owner() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");

    let (status, list) = app.get(&members_path, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(items(&list).len(), 1);
    let owner = member(&list, "alice@example.com").expect("alice");
    assert_eq!(owner["user_id"], alice.id.as_str());
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["status"], "active");
    assert_eq!(owner["name"], "alice");
    assert!(owner["joined_at"].is_string());

    // Adding a signed-up user: an active member straight away.
    let (status, added) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "Bob@Example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["user_id"], bob.id.as_str());
    assert_eq!(added["email"], "bob@example.com");
    assert_eq!(added["role"], "admin");
    assert_eq!(added["status"], "active");
    let got = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "bob@example.com", "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "already_member");
    let (status, org_for_bob) = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(org_for_bob["role"], "admin");

    // Inviting an email without an account.
    let (status, invited) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "carol@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");
    assert_eq!(invited["status"], "invited");
    assert_eq!(invited["role"], "member");
    assert!(invited["user_id"].is_null(), "{invited}");
    let got = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "carol@example.com", "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "already_invited");

    // Validation.
    for role in ["superuser", "", "Owner"] {
        let got = app
            .post(
                &members_path,
                &alice.token,
                json!({ "email": "x@example.com", "role": role }),
            )
            .await;
        assert_invalid_field(&got, "role");
    }
    let got = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "not-an-email", "role": "member" }),
        )
        .await;
    assert_invalid_field(&got, "email");
    let got = app
        .patch(
            &member_path(&bob.id),
            &alice.token,
            json!({ "role": "god" }),
        )
        .await;
    assert_invalid_field(&got, "role");

    let (_, list) = app.get(&members_path, &alice.token).await;
    assert_eq!(items(&list).len(), 3, "{list}");
    assert_eq!(
        member(&list, "carol@example.com").expect("carol")["status"],
        "invited"
    );
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 2, "invitations_pending": 1 }),
    )
    .await;

    // Carol signs up: she joins with the invited role.
    let carol_signup = signup_full(&app, "carol@example.com").await;
    assert_eq!(carol_signup["joined_orgs"], json!([org]), "{carol_signup}");
    let carol = User {
        id: carol_signup["user"]["id"].as_str().expect("id").to_owned(),
        email: "carol@example.com".to_owned(),
        token: carol_signup["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
        refresh_token: String::new(),
    };
    // (Polled: that this is readable at once, under concurrent writes, is the subject of
    // `new_members_can_use_the_org_right_after_joining_under_concurrent_writes`.)
    let carol_org = eventually("carol's membership", Duration::from_secs(5), || async {
        let (status, body) = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(carol_org["role"], "member");
    let (_, list) = app.get(&members_path, &carol.token).await;
    let c = member(&list, "carol@example.com").expect("carol");
    assert_eq!(c["status"], "active");
    assert_eq!(c["user_id"], carol.id.as_str());
    assert_eq!(c["role"], "member");
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 3, "invitations_pending": 0 }),
    )
    .await;

    // A member cannot manage members.
    let got = app
        .post(
            &members_path,
            &carol.token,
            json!({ "email": "dave@example.com", "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&bob.id),
            &carol.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&carol.id),
            &carol.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&member_path(&bob.id), &carol.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");

    // An admin manages members, but not owners.
    let got = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "dave@example.com", "role": "owner" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&alice.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&member_path(&alice.id), &bob.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&carol.id),
            &bob.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let (status, changed) = app
        .patch(
            &member_path("Carol@example.com"),
            &bob.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "admin");
    assert_eq!(changed["user_id"], carol.id.as_str());
    let (status, changed) = app
        .patch(
            &member_path(&carol.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "member");
    let (_, carol_org) = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
    assert_eq!(carol_org["role"], "member");

    // The last owner can be neither demoted nor removed, by anyone.
    let got = app
        .patch(
            &member_path(&alice.id),
            &alice.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let got = app.delete(&member_path(&alice.id), &alice.token).await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let got = app
        .delete(&member_path("alice@example.com"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");

    // With a second owner, the first may step down.
    let (status, changed) = app
        .patch(
            &member_path(&bob.id),
            &alice.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "owner");
    let (status, changed) = app
        .patch(
            &member_path(&alice.id),
            &alice.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "admin");
    let got = app
        .patch(
            &member_path(&bob.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let (_, org_for_alice) = app.get(&format!("/api/v1/orgs/{org}"), &alice.token).await;
    assert_eq!(org_for_alice["role"], "admin");

    // Revoking an invitation: the invitee signs up later and joins nothing.
    let (status, _) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "erin@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    expect_counters(&app, &bob, &org, json!({ "invitations_pending": 1 })).await;
    let (status, _) = app
        .delete(&member_path("erin@example.com"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.get(&members_path, &bob.token).await;
    assert!(member(&list, "erin@example.com").is_none(), "{list}");
    expect_counters(&app, &bob, &org, json!({ "invitations_pending": 0 })).await;
    let erin = signup_full(&app, "erin@example.com").await;
    assert_eq!(erin["joined_orgs"], json!([]), "{erin}");
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}"),
            erin["access_token"].as_str().expect("token"),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");

    // Unknown members.
    let got = app
        .delete(&member_path("nobody@example.com"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "member_not_found");
    let got = app
        .patch(
            &member_path("00000000-0000-0000-0000-000000000000"),
            &alice.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "member_not_found");

    // Removing a member (by id) and a member leaving (by email): both lose access.
    let (status, _) = app.delete(&member_path(&carol.id), &bob.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let got = app.get(&members_path, &carol.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (status, _) = app
        .delete(&member_path("alice@example.com"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.get(&format!("/api/v1/orgs/{org}"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (status, list) = app.get("/api/v1/orgs", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&list).is_empty(), "{list}");

    let (_, list) = app.get(&members_path, &bob.token).await;
    let emails: Vec<&str> = items(&list)
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    assert_eq!(emails, ["bob@example.com"], "{list}");
    expect_counters(
        &app,
        &bob,
        &org,
        json!({ "members": 1, "invitations_pending": 0 }),
    )
    .await;
    // A removed member can be added again.
    let (status, again) = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "carol@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["status"], "active");
}

/// Opens a transaction with an xid on the cluster and commits it after `hold`, like a
/// concurrent writer of another request (transaction ids are cluster-wide).
async fn concurrent_writer(pool: &sqlx::PgPool, hold: Duration) -> tokio::task::JoinHandle<()> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("assign an xid");
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        tx.commit().await.expect("commit");
    })
}

/// Read-your-writes while another transaction is in flight: a write waits until the read
/// models include its own commit, so the next request sees it. Adding a member does; a signup
/// that accepts an invitation must as well.
#[tokio::test]
async fn new_members_can_use_the_org_right_after_joining_under_concurrent_writes() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");
    let pool = app.env.pool().await;

    // Control: adding an existing user.
    let writer = concurrent_writer(&pool, Duration::from_millis(1000)).await;
    let (status, added) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": bob.email, "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let got = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    writer.await.expect("writer");
    assert_eq!(got.0, StatusCode::OK, "added member: {}", got.1);

    // An invitation accepted by signing up.
    let (status, _) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "carol@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let writer = concurrent_writer(&pool, Duration::from_millis(1000)).await;
    let carol = signup_full(&app, "carol@example.com").await;
    assert_eq!(carol["joined_orgs"], json!([org]));
    let token = carol["access_token"].as_str().expect("token");
    let got = app.get(&format!("/api/v1/orgs/{org}"), token).await;
    writer.await.expect("writer");
    assert_eq!(
        got.0,
        StatusCode::OK,
        "the org was not readable right after the signup that joined it: {}",
        got.1
    );
    assert_eq!(got.1["role"], "admin");
}

#[tokio::test]
async fn servers_crud_archive_and_slug_reuse() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let carol = app.signup("carol@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let bob_org = app.create_org(&bob, "bobco").await;
    let servers = format!("/api/v1/orgs/{org}/servers");
    let server_path = |s: &str| format!("/api/v1/orgs/{org}/servers/{s}");

    // Defaults.
    let (status, docs) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs", "slug": "docs-acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{docs}");
    let docs_id = docs["id"].as_str().expect("id").to_owned();
    assert_eq!(docs["org_id"], org.as_str());
    assert_eq!(docs["name"], "Docs");
    assert_eq!(docs["slug"], "docs-acme");
    assert_eq!(docs["auth_mode"], "none");
    assert_eq!(docs["support_tool"], true);
    assert_eq!(docs["walkthrough_tools"], true);
    assert_eq!(docs["status"], "active");
    assert!(docs["created_at"].is_string() && docs["updated_at"].is_string());
    let urls = &docs["urls"];
    let mcp = urls["mcp"].as_str().expect("mcp url");
    assert!(
        mcp.contains("://docs-acme.") && mcp.ends_with("/mcp"),
        "{urls}"
    );
    let tracking = urls["mcp_with_tracking"].as_str().expect("tracking url");
    assert!(
        tracking.contains("://docs-acme.") && tracking.ends_with("/t/{tracking_id}/mcp"),
        "{urls}"
    );
    let path_url = urls["mcp_path"].as_str().expect("path url");
    assert!(path_url.ends_with("/s/docs-acme/mcp"), "{urls}");

    // Explicit options.
    let (status, api) = app
        .post(
            &servers,
            &alice.token,
            json!({
                "name": "API helper", "slug": "api-helper", "auth_mode": "tracking",
                "support_tool": false, "walkthrough_tools": false,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{api}");
    assert_eq!(api["auth_mode"], "tracking");
    assert_eq!(api["support_tool"], false);
    assert_eq!(api["walkthrough_tools"], false);
    let (status, oauth) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "OAuth", "slug": "oauth-one", "auth_mode": "oauth" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{oauth}");
    assert_eq!(oauth["auth_mode"], "oauth");

    // Slugs: unique across orgs, DNS labels, not reserved.
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Again", "slug": "docs-acme" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    let got = app
        .post(
            &format!("/api/v1/orgs/{bob_org}/servers"),
            &bob.token,
            json!({ "name": "Mine", "slug": "docs-acme" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    for slug in ["api", "www", "admin", "Bad_Slug", "-x", ""] {
        let got = app
            .post(
                &servers,
                &alice.token,
                json!({ "name": "Bad", "slug": slug }),
            )
            .await;
        assert_invalid_field(&got, "slug");
    }
    for mode in ["magic", "None", ""] {
        let got = app
            .post(
                &servers,
                &alice.token,
                json!({ "name": "Bad", "slug": "bad-mode", "auth_mode": mode }),
            )
            .await;
        assert_invalid_field(&got, "auth_mode");
    }
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Bad", "slug": "bad-type", "support_tool": "yes" }),
        )
        .await;
    assert_invalid_field(&got, "support_tool");
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Bad", "slug": "bad-field", "color": "red" }),
        )
        .await;
    assert_invalid_field(&got, "color");

    // List and get (by id and by slug).
    let (status, list) = app.get(&servers, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let slugs: Vec<&str> = items(&list)
        .iter()
        .filter_map(|s| s["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["docs-acme", "api-helper", "oauth-one"], "{list}");
    assert!(items(&list).iter().all(|s| s["urls"]["mcp"].is_string()));
    for server_ref in [docs_id.as_str(), "docs-acme"] {
        let (status, got) = app.get(&server_path(server_ref), &alice.token).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got, docs);
    }
    let got = app.get(&server_path("nope"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");
    let got = app
        .get(
            &server_path("00000000-0000-0000-0000-000000000000"),
            &alice.token,
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");

    // Partial updates.
    let (status, updated) = app
        .patch(
            &server_path("docs-acme"),
            &alice.token,
            json!({ "name": "Docs 2" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], docs_id.as_str());
    assert_eq!(updated["name"], "Docs 2");
    assert_eq!(updated["slug"], "docs-acme");
    assert_eq!(updated["auth_mode"], "none");
    assert_eq!(updated["support_tool"], true);
    let (status, updated) = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "auth_mode": "oauth", "walkthrough_tools": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Docs 2");
    assert_eq!(updated["auth_mode"], "oauth");
    assert_eq!(updated["walkthrough_tools"], false);
    assert_eq!(updated["support_tool"], true);
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "auth_mode": "magic" }),
        )
        .await;
    assert_invalid_field(&got, "auth_mode");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "www" }),
        )
        .await;
    assert_invalid_field(&got, "slug");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "owner": "me" }),
        )
        .await;
    assert_invalid_field(&got, "owner");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "api-helper" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    let got = app
        .patch(&server_path("nope"), &alice.token, json!({ "name": "x" }))
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");

    // Renaming the slug moves the server and frees the old slug.
    let (status, renamed) = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "docs-new" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["slug"], "docs-new");
    assert!(renamed["urls"]["mcp"]
        .as_str()
        .is_some_and(|u| u.contains("://docs-new.")));
    let (status, got) = app.get(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], docs_id.as_str());
    let got = app.get(&server_path("docs-acme"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{bob_org}/servers"),
            &bob.token,
            json!({ "name": "Bob docs", "slug": "docs-acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the old slug is free again");

    // Members read servers but cannot change them.
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &alice.token,
            json!({ "email": carol.email, "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, list) = app.get(&servers, &carol.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&list).len(), 3);
    let (status, _) = app.get(&server_path(&docs_id), &carol.token).await;
    assert_eq!(status, StatusCode::OK);
    let got = app
        .post(
            &servers,
            &carol.token,
            json!({ "name": "Mine", "slug": "carols" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &server_path(&docs_id),
            &carol.token,
            json!({ "name": "Carol's" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&server_path(&docs_id), &carol.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let (_, still) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(still["name"], "Docs 2");
    assert_eq!(still["status"], "active");
    // "carols" was never claimed.
    let (status, _) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Carols", "slug": "carols" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "servers": 4, "servers_archived": 0 }),
    )
    .await;

    // Archive.
    let (status, archived) = app.delete(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(archived["id"], docs_id.as_str());
    assert_eq!(archived["status"], "archived");
    let (_, list) = app.get(&servers, &alice.token).await;
    assert!(
        items(&list).iter().all(|s| s["id"] != docs_id.as_str()),
        "{list}"
    );
    assert_eq!(items(&list).len(), 3);
    let (status, list) = app
        .get(&format!("{servers}?include_archived=true"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(items(&list).len(), 4);
    let listed = items(&list)
        .iter()
        .find(|s| s["id"] == docs_id.as_str())
        .expect("archived listed");
    assert_eq!(listed["status"], "archived");
    let (status, got) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "archived");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "name": "Back" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "server_archived");
    let got = app.delete(&server_path(&docs_id), &alice.token).await;
    assert_problem(&got, StatusCode::CONFLICT, "server_archived");
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "servers": 3, "servers_archived": 1 }),
    )
    .await;

    // The archived slug is free: a new server takes it, and the slug now names the new one.
    let (status, reborn) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs again", "slug": "docs-new" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reborn}");
    assert_ne!(reborn["id"], docs_id.as_str());
    let (status, got) = app.get(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], reborn["id"]);
    assert_eq!(got["status"], "active");
    let (status, got) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "archived");
    let (status, updated) = app
        .patch(
            &server_path("docs-new"),
            &alice.token,
            json!({ "name": "Docs 3" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], reborn["id"]);
    let (_, list) = app
        .get(&format!("{servers}?include_archived=true"), &alice.token)
        .await;
    assert_eq!(items(&list).len(), 5);
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "servers": 4, "servers_archived": 1 }),
    )
    .await;
}

#[tokio::test]
async fn dashboard_counters_and_audit_log() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");

    let (status, _) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": bob.email, "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "carol@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
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

    // Dashboard.
    expect_counters(
        &app,
        &alice,
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
    let events_now = all_events(&app, &alice, &org).await.len() as i64;
    // OrganizationCreated, MemberAdded, MemberInvited, 2x ServerCreated, ServerUpdated,
    // ServerArchived.
    assert_eq!(events_now, 7);
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

    // Carol accepts by signing up: the pending invitation becomes a member.
    let carol = signup_full(&app, "carol@example.com").await;
    let carol_id = carol["user"]["id"].as_str().expect("id").to_owned();
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 3, "invitations_pending": 0, "events": 8 }),
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
            if entries.len() == 8 && entries.iter().all(|e| e["actor"]["email"].is_string()) {
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
            "MemberAdded",
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
    for e in &entries[1..] {
        assert_eq!(e["actor"]["id"], alice.id.as_str(), "{e}");
        assert_eq!(e["actor"]["email"], "alice@example.com", "{e}");
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
    let events = all_events(&app, &alice, &org).await;
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
async fn events_pages_ndjson_type_filter_and_cursor_paging() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let other = app.create_org(&bob, "other").await;
    app.create_server(&bob, &other, "other-docs").await;
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &alice.token,
            json!({ "email": bob.email, "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut server_ids = Vec::new();
    for slug in ["one", "two", "three"] {
        let s = app.create_server(&alice, &org, slug).await;
        server_ids.push(s["id"].as_str().expect("id").to_owned());
    }
    let (status, _) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/one"),
            &bob.token,
            json!({ "auth_mode": "tracking" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .delete(&format!("/api/v1/orgs/{org}/servers/two"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.create_server(&bob, &other, "other-more").await;

    let events_path = format!("/api/v1/orgs/{org}/events");
    let (status, page) = app.get(&events_path, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let all = items(&page).clone();
    let types: Vec<&str> = all
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "OrganizationCreated",
            "MemberAdded",
            "ServerCreated",
            "ServerCreated",
            "ServerCreated",
            "ServerUpdated",
            "ServerArchived",
        ],
        "{page}"
    );
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_cursor"], all.last().expect("events")["cursor"]);
    for e in &all {
        assert_eq!(e["org_id"], org.as_str(), "{e}");
        assert!(e["event_id"].is_string() && e["cursor"].is_string(), "{e}");
        assert!(e["payload"].is_object(), "{e}");
        assert!(e["metadata"].is_object(), "{e}");
        assert!(e["recorded_at"].is_string(), "{e}");
    }
    let cursors: Vec<(i64, i64)> = all.iter().map(|e| cursor(&e["cursor"])).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursors increase: {cursors:?}"
    );
    assert_eq!(all[2]["aggregate_id"], server_ids[0].as_str());
    assert_eq!(all[2]["payload"]["slug"], "one");
    // Bob's own org's events are in his org's page only.
    let (_, bobs) = app
        .get(&format!("/api/v1/orgs/{other}/events"), &bob.token)
        .await;
    assert_eq!(items(&bobs).len(), 3, "{bobs}");
    assert!(items(&bobs).iter().all(|e| e["org_id"] == other.as_str()));

    // Paging one at a time sees every event once, in order.
    let mut paged = Vec::new();
    let mut after = String::new();
    for _ in 0..50 {
        let (status, page) = app
            .get(
                &format!("{events_path}?limit=1&after={after}"),
                &alice.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = items(&page);
        if got.is_empty() {
            assert_eq!(page["has_more"], false);
            assert_eq!(
                page["next_cursor"],
                after.as_str(),
                "an empty page keeps the cursor"
            );
            break;
        }
        assert_eq!(got.len(), 1);
        assert_eq!(page["has_more"], true);
        assert_eq!(page["next_cursor"], got[0]["cursor"]);
        paged.push(got[0].clone());
        after = page["next_cursor"].as_str().expect("cursor").to_owned();
    }
    assert_eq!(paged, all);
    // Pages of 3 too.
    let (_, p1) = app
        .get(&format!("{events_path}?limit=3"), &alice.token)
        .await;
    assert_eq!(items(&p1)[..], all[..3]);
    assert_eq!(p1["has_more"], true);
    let (_, p2) = app
        .get(
            &format!(
                "{events_path}?limit=3&after={}",
                p1["next_cursor"].as_str().expect("cursor")
            ),
            &alice.token,
        )
        .await;
    assert_eq!(items(&p2)[..], all[3..6]);

    // Type filters, repeated or comma-separated.
    let (status, created) = app
        .get(&format!("{events_path}?type=ServerCreated"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = items(&created)
        .iter()
        .filter_map(|e| e["aggregate_id"].as_str())
        .collect();
    assert_eq!(ids, server_ids);
    assert!(items(&created)
        .iter()
        .all(|e| e["event_type"] == "ServerCreated"));
    for query in [
        "type=ServerArchived,MemberAdded",
        "type=ServerArchived&type=MemberAdded",
        "type=ServerArchived,%20MemberAdded",
    ] {
        let (status, filtered) = app
            .get(&format!("{events_path}?{query}"), &alice.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{filtered}");
        let types: Vec<&str> = items(&filtered)
            .iter()
            .filter_map(|e| e["event_type"].as_str())
            .collect();
        assert_eq!(types, ["MemberAdded", "ServerArchived"], "{query}");
    }
    let (_, none) = app
        .get(&format!("{events_path}?type=NoSuchEvent"), &alice.token)
        .await;
    assert!(items(&none).is_empty());
    let (_, after_first) = app
        .get(
            &format!(
                "{events_path}?type=ServerCreated&limit=1&after={}",
                items(&created)[0]["cursor"].as_str().expect("cursor")
            ),
            &alice.token,
        )
        .await;
    assert_eq!(items(&after_first).len(), 1);
    assert_eq!(
        items(&after_first)[0]["aggregate_id"],
        server_ids[1].as_str()
    );

    // NDJSON: the same events, one per line.
    let resp = app
        .http
        .get(app.url(&events_path))
        .bearer_auth(&alice.token)
        .header(ACCEPT, "application/x-ndjson")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("application/x-ndjson"));
    let next = resp.headers()["x-next-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        next,
        all.last().expect("events")["cursor"].as_str().expect("c")
    );
    let text = resp.text().await.expect("body");
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines, all);
    let resp = app
        .http
        .get(app.url(&format!(
            "{events_path}?limit=2&after={}",
            paged[1]["cursor"].as_str().expect("c")
        )))
        .bearer_auth(&alice.token)
        .header(ACCEPT, "application/x-ndjson")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-next-cursor"].to_str().expect("ascii"),
        all[3]["cursor"].as_str().expect("c")
    );
    let lines: Vec<Value> = resp
        .text()
        .await
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines[..], all[2..4]);

    // Bad cursors and limits.
    for bad in ["garbage", "1", "-1-2", "a-b", "1-x"] {
        let got = app
            .get(&format!("{events_path}?after={bad}"), &alice.token)
            .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_cursor");
    }
    for limit in ["0", "1001", "-5", "abc", ""] {
        let got = app
            .get(&format!("{events_path}?limit={limit}"), &alice.token)
            .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_limit");
    }
    let (status, max) = app
        .get(&format!("{events_path}?limit=1000"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&max).len(), all.len());
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads an SSE response until `done` holds for the events read so far, or the timeout passes.
async fn read_sse(
    resp: &mut reqwest::Response,
    timeout: Duration,
    done: impl Fn(&[Sse]) -> bool,
) -> Vec<Sse> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = String::new();
    let mut events = Vec::new();
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out; SSE so far: {events:?} + {buffer:?}"))
            .expect("read stream")
            .expect("stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        let normalized = buffer.replace("\r\n", "\n");
        buffer = normalized;
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() && data.is_empty() {
                continue; // keep-alive comment
            }
            events.push(Sse {
                id,
                event,
                data: serde_json::from_str(&data).expect("data is JSON"),
            });
        }
    }
    events
}

async fn open_stream(
    app: &TestApp,
    user: &User,
    path: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = app.http.get(app.url(path)).bearer_auth(&user.token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.expect("open stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/event-stream"));
    resp
}

#[tokio::test]
async fn events_stream_tails_live_and_replays_from_a_cursor() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let other = app.create_org(&bob, "other").await;
    let early = app.create_server(&alice, &org, "early").await;
    let stream_path = format!("/api/v1/orgs/{org}/events/stream");

    // Live: starts at the head, so only what happens after connecting arrives.
    let mut live = open_stream(&app, &alice, &stream_path, None).await;
    let bobs = app.create_server(&bob, &other, "bobs").await;
    let fresh = app.create_server(&alice, &org, "fresh").await;
    let fresh_id = fresh["id"].as_str().expect("id").to_owned();
    let got = read_sse(&mut live, Duration::from_secs(15), |events| {
        events
            .iter()
            .any(|e| e.event == "ServerCreated" && e.data["aggregate_id"] == fresh_id.as_str())
    })
    .await;
    assert_eq!(got.len(), 1, "only the new event: {got:?}");
    let created = &got[0];
    assert_eq!(created.data["event_type"], "ServerCreated");
    assert_eq!(created.data["org_id"], org.as_str());
    assert_eq!(created.data["payload"]["slug"], "fresh");
    assert_eq!(created.id, created.data["cursor"].as_str().expect("cursor"));
    assert!(got
        .iter()
        .all(|e| e.data["aggregate_id"] != early["id"] && e.data["aggregate_id"] != bobs["id"]));
    // And it keeps tailing.
    let (status, _) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/fresh"),
            &alice.token,
            json!({ "name": "Fresh 2" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let more = read_sse(&mut live, Duration::from_secs(15), |events| {
        events.iter().any(|e| e.event == "ServerUpdated")
    })
    .await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert!(cursor(&json!(more[0].id)) > cursor(&json!(created.id)));
    drop(live);

    // Replay from the start with ?after.
    let (_, page) = app
        .get(&format!("/api/v1/orgs/{org}/events"), &alice.token)
        .await;
    let all = items(&page).clone();
    assert_eq!(all.len(), 4, "{page}");
    let mut replay = open_stream(&app, &alice, &format!("{stream_path}?after=0-0"), None).await;
    let got = read_sse(&mut replay, Duration::from_secs(15), |e| {
        e.len() >= all.len()
    })
    .await;
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    let expected: Vec<&str> = all.iter().filter_map(|e| e["cursor"].as_str()).collect();
    assert_eq!(ids, expected);
    let types: Vec<&str> = got.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        [
            "OrganizationCreated",
            "ServerCreated",
            "ServerCreated",
            "ServerUpdated"
        ]
    );
    assert_eq!(got[0].data, all[0]);
    drop(replay);

    // Resume with Last-Event-ID: exactly after that event, with a type filter too.
    let first = all[0]["cursor"].as_str().expect("cursor");
    let mut resumed = open_stream(&app, &alice, &stream_path, Some(first)).await;
    let got = read_sse(&mut resumed, Duration::from_secs(15), |e| e.len() >= 3).await;
    assert_eq!(got[0].id, all[1]["cursor"].as_str().expect("cursor"));
    assert_eq!(got[2].id, all[3]["cursor"].as_str().expect("cursor"));
    drop(resumed);
    let mut filtered = open_stream(
        &app,
        &alice,
        &format!("{stream_path}?after=0-0&type=ServerUpdated"),
        None,
    )
    .await;
    let got = read_sse(&mut filtered, Duration::from_secs(15), |e| !e.is_empty()).await;
    assert_eq!(got[0].event, "ServerUpdated");
    assert_eq!(got[0].id, all[3]["cursor"].as_str().expect("cursor"));
    drop(filtered);

    let got = app
        .get(&format!("{stream_path}?after=garbage"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_cursor");
    let got = app.call(Method::GET, &stream_path, None, None).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "missing_token");

    // Bob's own stream from the start never shows Alice's events.
    let mut bob_stream = open_stream(
        &app,
        &bob,
        &format!("/api/v1/orgs/{other}/events/stream?after=0-0"),
        None,
    )
    .await;
    let got = read_sse(&mut bob_stream, Duration::from_secs(15), |e| e.len() >= 2).await;
    let seen: HashSet<&str> = got
        .iter()
        .filter_map(|e| e.data["org_id"].as_str())
        .collect();
    assert_eq!(seen, HashSet::from([other.as_str()]));
}

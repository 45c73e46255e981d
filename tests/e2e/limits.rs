//! Platform limits (issue 22, finding 7), each set low through the environment of the test's
//! server: past a limit the answer is a clear refusal (429, or an `isError` tool result with
//! `retryAfter`), nothing is created, and the refusal is recorded as a `LimitRefused` event.

use crate::helpers::*;
use crate::mcp_raw::*;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn app_with(vars: &[(&str, &str)]) -> TestApp {
    let env = TestEnv::new();
    let proc = env.start_with(&["up"], vars);
    TestApp {
        proc,
        env,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

/// The `LimitRefused` events recorded, as payloads with their org.
async fn refusals(app: &TestApp) -> Vec<(Option<uuid::Uuid>, Value)> {
    let pool = app.env.pool().await;
    let rows: Vec<(Option<uuid::Uuid>, Value)> = sqlx::query_as(
        "SELECT org_id, payload FROM events WHERE event_type = 'LimitRefused' \
         ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("refusals");
    pool.close().await;
    rows
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let pool = app.env.pool().await;
    let n = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// An MCP connection coming from `address` (any 127.0.0.0/8 address is loopback).
fn mcp_from(url: String, address: &str) -> Mcp {
    let mut mcp = Mcp::new(url);
    mcp.http = reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().expect("address"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    mcp
}

async fn initialize_raw(mcp: &Mcp) -> Reply {
    mcp.call(
        "initialize",
        json!({
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "limits", "version": "1.0" },
        }),
    )
    .await
}

#[tokio::test]
async fn orgs_per_account_are_limited() {
    let app = app_with(&[("MCPLATFORM_LIMIT_ORGS_PER_ACCOUNT", "2")]);
    let owner = app.signup("owner@example.com").await;
    app.create_org(&owner, "one").await;
    app.create_org(&owner, "two").await;
    let got = app
        .post(
            "/api/v1/orgs",
            &owner.token,
            json!({ "name": "three", "slug": "three" }),
        )
        .await;
    assert_problem(&got, StatusCode::TOO_MANY_REQUESTS, "limit_reached");
    assert!(
        got.1["detail"]
            .as_str()
            .unwrap()
            .contains("orgs_per_account"),
        "{}",
        got.1
    );
    let (_, orgs) = app.get("/api/v1/orgs", &owner.token).await;
    assert_eq!(items(&orgs).len(), 2, "nothing created: {orgs}");
    // Someone else still creates orgs.
    let other = app.signup("other@example.com").await;
    app.create_org(&other, "three").await;

    let recorded = refusals(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (org, payload) = &recorded[0];
    assert_eq!(*org, None);
    assert_eq!(payload["limit"], "orgs_per_account");
    assert_eq!(payload["allowed"], 2);
    assert_eq!(payload["user_id"], owner.id.as_str());
}

#[tokio::test]
async fn tickets_per_end_user_are_limited_with_retry_after() {
    let app = app_with(&[("MCPLATFORM_LIMIT_TICKETS_PER_END_USER_PER_DAY", "2")]);
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let mut mcp = Mcp::new(app.url("/s/acme-docs/t/reporter-1/mcp"));
    mcp.initialize("reporter").await;
    let ask = |n: usize| json!({ "title": format!("problem {n}"), "description": "details" });
    for n in 0..2 {
        let reply = mcp.call_tool("get_support", ask(n)).await;
        assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    }
    for n in 2..4 {
        let reply = mcp.call_tool("get_support", ask(n)).await;
        let result = reply.result();
        assert_eq!(result["isError"], true, "{}", reply.text);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.ends_with("(limit_reached)"), "{text}");
        assert!(text.contains("retry in"), "{text}");
        let retry = result["structuredContent"]["retryAfter"].as_u64().unwrap();
        assert!(retry > 60, "a day's budget refills slowly: {retry}");
        assert_eq!(result["structuredContent"]["limit"], "tickets_per_end_user");
    }
    // Another end user of the same server still opens tickets.
    let mut other = Mcp::new(app.url("/s/acme-docs/t/reporter-2/mcp"));
    other.initialize("reporter").await;
    let reply = other.call_tool("get_support", ask(9)).await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    let opened = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'TicketOpened'",
    )
    .await;
    assert_eq!(opened, 3, "refused calls opened no ticket");
    let recorded = refusals(&app).await;
    assert_eq!(
        recorded.len(),
        1,
        "one event per key a minute: {recorded:?}"
    );
    let (org_id, payload) = &recorded[0];
    assert_eq!(org_id.map(|o| o.to_string()), Some(org.clone()));
    assert_eq!(payload["limit"], "tickets_per_end_user");
    assert!(payload["end_user_id"].is_string(), "{payload}");
    assert!(payload["retry_after_secs"].as_u64().unwrap() > 60);
    // The org sees its refusals in its events: the log is read in committed order, so an
    // event shows once every transaction begun before it has ended (on a busy database
    // server, a moment after it is stored).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, events) = app
            .get(
                &format!("/api/v1/orgs/{org}/events?type=LimitRefused"),
                &owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        if !items(&events).is_empty() || std::time::Instant::now() > deadline {
            assert_eq!(items(&events).len(), 1, "{events}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn new_end_users_per_address_are_refused_before_anyone_is_created() {
    let app = app_with(&[("MCPLATFORM_LIMIT_NEW_END_USERS_PER_ADDRESS_PER_HOUR", "2")]);
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let url = |t: &str| app.url(&format!("/s/acme-docs/t/{t}/mcp"));
    for t in ["user-a", "user-b"] {
        mcp_from(url(t), "127.0.0.21").initialize("c").await;
    }
    let refused = initialize_raw(&mcp_from(url("user-c"), "127.0.0.21")).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("limit_reached"), "{}", refused.text);
    assert!(refused.session_id.is_none());
    // A known tracking id from that address still gets in; a new one from elsewhere too.
    mcp_from(url("user-a"), "127.0.0.21").initialize("c").await;
    mcp_from(url("user-c"), "127.0.0.22").initialize("c").await;

    let identified = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'EndUserIdentified'",
    )
    .await;
    assert_eq!(identified, 3, "the refused request created nobody");
    let recorded = refusals(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1["limit"], "new_end_users_per_address");
    assert!(recorded[0].1["server_id"].is_string());
}

#[tokio::test]
async fn new_end_users_per_server_are_limited_with_retry_after() {
    let app = app_with(&[("MCPLATFORM_LIMIT_NEW_END_USERS_PER_SERVER_PER_HOUR", "2")]);
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    app.create_server(&owner, &org, "acme-api").await;
    let url = |s: &str, t: &str| app.url(&format!("/s/{s}/t/{t}/mcp"));
    for t in ["user-a", "user-b"] {
        Mcp::new(url("acme-docs", t)).initialize("c").await;
    }
    let resp = Mcp::new(url("acme-docs", "user-c"));
    let req = resp
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .body(
            json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": {},
                "clientInfo": { "name": "c", "version": "1" } } })
            .to_string(),
        );
    let answer = req.send().await.expect("request");
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = answer.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 60, "Retry-After {retry}");
    // The other server has its own budget.
    Mcp::new(url("acme-api", "user-c")).initialize("c").await;

    let recorded = refusals(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1["limit"], "new_end_users_per_server");
    assert_eq!(recorded[0].0.map(|o| o.to_string()), Some(org));
}

#[tokio::test]
async fn open_sessions_per_end_user_are_limited() {
    let app = app_with(&[("MCPLATFORM_LIMIT_SESSIONS_PER_END_USER", "2")]);
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let url = app.url("/s/acme-docs/t/busy-user/mcp");
    let mut first = Mcp::new(url.clone());
    first.initialize("c").await;
    Mcp::new(url.clone()).initialize("c").await;
    // The count is read from the sessions read model: wait until it shows both.
    let pool = app.env.pool().await;
    eventually("both sessions projected", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM rm_sessions WHERE tracking_id = 'busy-user' AND era = 'protocol'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (n == 2).then_some(())
        }
    })
    .await;
    let refused = initialize_raw(&Mcp::new(url.clone())).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("limit_reached"), "{}", refused.text);
    assert!(refused.session_id.is_none(), "no session handed out");
    // Another end user is not affected.
    Mcp::new(app.url("/s/acme-docs/t/calm-user/mcp"))
        .initialize("c")
        .await;
    // Ending a session frees a place.
    let ended = first.delete_session().await;
    assert!(ended.status.is_success(), "{}", ended.text);
    eventually("the end projected", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM rm_sessions WHERE tracking_id = 'busy-user' \
                 AND ended_at IS NULL",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
    Mcp::new(url).initialize("c").await;

    let started = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'McpSessionStarted'",
    )
    .await;
    assert_eq!(started, 4, "the refused initialize stored no session");
    let recorded = refusals(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1["limit"], "sessions_per_end_user");
    assert!(recorded[0].1["end_user_id"].is_string());
}

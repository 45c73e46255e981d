//! Live event streams are fed by one hub per instance, not one database poller each: they are
//! capped per user, per org and per instance (429 `too_many_streams`), idle ones cost the
//! database nothing, and events still arrive live, in order, resumable and filtered.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::api_events::{open_stream, read_sse};
use crate::helpers::*;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::time::Duration;

/// `mcplatform up` with extra environment (the caps), and a client without a total timeout:
/// streams stay open longer than any request.
fn spawn_with(vars: &[(&str, &str)]) -> TestApp {
    let env = TestEnv::new();
    let proc = env.start_with(&["up"], vars);
    TestApp {
        proc,
        env,
        http: Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    }
}

fn stream_path(org: &str) -> String {
    format!("/api/v1/orgs/{org}/events/stream")
}

/// Opens a stream and returns the response whatever its status.
async fn try_stream(app: &TestApp, user: &User, org: &str) -> reqwest::Response {
    app.http
        .get(app.url(&stream_path(org)))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("open stream")
}

/// The answer at a cap: 429 problem+json `too_many_streams` with Retry-After.
async fn assert_refused(resp: reqwest::Response, says: &str) {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        resp.headers().contains_key(RETRY_AFTER),
        "{:?}",
        resp.headers()
    );
    assert_eq!(
        resp.headers()[CONTENT_TYPE],
        "application/problem+json",
        "{:?}",
        resp.headers()
    );
    let body: serde_json::Value = resp.json().await.expect("problem body");
    assert_eq!(body["code"], "too_many_streams", "{body}");
    assert_eq!(body["status"], 429, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains(says),
        "{body}"
    );
}

async fn add_member(app: &TestApp, owner: &User, org: &str, member: &User) {
    app.add_member(owner, org, member, "member").await;
    // The member sees the org once the read model has them (a busy machine may take longer
    // than the write waits).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app
        .get(&format!("/api/v1/orgs/{org}"), &member.token)
        .await
        .0
        != StatusCode::OK
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member never saw the org"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_21st_stream_of_a_user_is_refused_and_a_freed_slot_is_reused() {
    let app = spawn_with(&[]);
    let alice = app.signup("alice@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let mut open = Vec::new();
    for _ in 0..20 {
        let resp = try_stream(&app, &alice, &org).await;
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    assert_refused(try_stream(&app, &alice, &org).await, "this user").await;
    // Another user of the same org is not held back by Alice's streams.
    let bob = app.signup("bob@example.com").await;
    add_member(&app, &alice, &org, &bob).await;
    let bobs = try_stream(&app, &bob, &org).await;
    assert_eq!(bobs.status(), StatusCode::OK);

    // Closing one frees its slot (once the server sees the connection gone).
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reopened = loop {
        let resp = try_stream(&app, &alice, &org).await;
        if resp.status() == StatusCode::OK {
            break resp;
        }
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    open.push(reopened);
    assert_refused(try_stream(&app, &alice, &org).await, "this user").await;
    // The reopened stream is live.
    let mut last = open.pop().unwrap();
    app.create_server(&alice, &org, "after").await;
    let got = read_sse(&mut last, Duration::from_secs(15), |e| {
        e.iter().any(|e| e.event == "ServerCreated")
    })
    .await;
    assert_eq!(got.last().unwrap().data["payload"]["slug"], "after");
}

#[tokio::test]
async fn streams_are_capped_per_org_and_per_instance() {
    let app = spawn_with(&[
        ("MCPLATFORM_STREAMS_PER_USER", "2"),
        ("MCPLATFORM_STREAMS_PER_ORG", "3"),
        ("MCPLATFORM_STREAMS_PER_INSTANCE", "4"),
    ]);
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let acme = app.create_org(&alice, "acme").await;
    let bobs_org = app.create_org(&bob, "bobs").await;
    add_member(&app, &alice, &acme, &bob).await;
    let mut open = Vec::new();
    for user in [&alice, &alice, &bob] {
        let resp = try_stream(&app, user, &acme).await;
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    // Bob has one stream of his two, but Acme has its three.
    assert_refused(try_stream(&app, &bob, &acme).await, "this organization").await;
    // His own org has room, and the instance one more.
    let resp = try_stream(&app, &bob, &bobs_org).await;
    assert_eq!(resp.status(), StatusCode::OK);
    open.push(resp);
    let carol = app.signup("carol@example.com").await;
    let carols = app.create_org(&carol, "carols").await;
    assert_refused(
        try_stream(&app, &carol, &carols).await,
        "this server instance",
    )
    .await;
}

/// The test database's committed transactions so far, as Postgres's statistics have them.
async fn xact_commit(admin: &sqlx::PgPool, db: &str) -> i64 {
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(admin)
        .await
        .expect("pg_stat_database")
}

/// Committed transactions of the test database over `window` (statistics are flushed by each
/// backend about once a second, so the window is several seconds).
async fn transactions_over(admin: &sqlx::PgPool, db: &str, window: Duration) -> i64 {
    let before = xact_commit(admin, db).await;
    tokio::time::sleep(window).await;
    xact_commit(admin, db).await - before
}

#[tokio::test]
async fn fifty_idle_streams_cost_the_database_nothing_and_still_get_events() {
    let app = spawn_with(&[("MCPLATFORM_STREAMS_PER_USER", "50")]);
    let alice = app.signup("alice@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url("postgres"))
        .await
        .expect("admin pool");
    let db = app.env.db_name.clone();
    let window = Duration::from_secs(6);
    // What the idle server itself costs (relay, projectors, metrics).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = transactions_over(&admin, &db, window).await;

    let mut streams = Vec::new();
    for _ in 0..50 {
        streams.push(open_stream(&app, &alice, &stream_path(&org), None).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_streams = transactions_over(&admin, &db, window).await;
    // One database poller per stream cost 50 streams hundreds of transactions in this window.
    assert!(
        with_streams <= idle + 25,
        "50 idle streams cost {with_streams} transactions in {window:?}; the idle server {idle}"
    );

    // And every stream still gets what happens, live.
    app.create_server(&alice, &org, "news").await;
    for stream in &mut streams {
        let got = read_sse(stream, Duration::from_secs(15), |e| {
            e.iter().any(|e| e.event == "ServerCreated")
        })
        .await;
        assert_eq!(got.last().unwrap().data["payload"]["slug"], "news");
    }
}

#[tokio::test]
async fn busy_streams_get_every_event_in_order_resume_exactly_and_filter() {
    let app = spawn_with(&[]);
    let alice = app.signup("alice@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let path = stream_path(&org);
    let mut live = open_stream(&app, &alice, &path, None).await;
    let mut filtered = open_stream(&app, &alice, &format!("{path}?type=ServerUpdated"), None).await;
    // Writes from several clients at once, so they commit in batches: servers created, then
    // each renamed.
    let n = 15;
    let slugs: Vec<String> = (0..n).map(|i| format!("busy-{i}")).collect();
    futures::future::join_all(
        slugs
            .iter()
            .map(|slug| app.create_server(&alice, &org, slug)),
    )
    .await;
    let renames = (0..n).map(|i| {
        let (app, alice, org) = (&app, &alice, &org);
        async move {
            let (status, body) = app
                .patch(
                    &format!("/api/v1/orgs/{org}/servers/busy-{i}"),
                    &alice.token,
                    json!({ "name": format!("Busy {i}") }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    });
    futures::future::join_all(renames).await;
    let total = 2 * n;
    let got = read_sse(&mut live, Duration::from_secs(20), |e| e.len() >= total).await;
    assert_eq!(got.len(), total, "{got:?}");
    let cursors: Vec<(i64, i64)> = got.iter().map(|e| cursor(&e.id)).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {cursors:?}"
    );
    // The log says the same.
    let (_, page) = app
        .get(
            &format!("/api/v1/orgs/{org}/events?after={}&limit=1000", got[0].id),
            &alice.token,
        )
        .await;
    let logged: Vec<&str> = items(&page)
        .iter()
        .filter_map(|e| e["cursor"].as_str())
        .collect();
    let streamed: Vec<&str> = got[1..].iter().map(|e| e.id.as_str()).collect();
    assert_eq!(streamed, logged);

    let only_updates = read_sse(&mut filtered, Duration::from_secs(20), |e| e.len() >= n).await;
    assert!(only_updates.iter().all(|e| e.event == "ServerUpdated"));
    let ids: Vec<&str> = only_updates.iter().map(|e| e.id.as_str()).collect();
    let updates: Vec<&str> = got
        .iter()
        .filter(|e| e.event == "ServerUpdated")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, updates);

    // Resume with Last-Event-ID from the middle: exactly what came after, then live again.
    let middle = &got[10].id;
    let mut resumed = open_stream(&app, &alice, &path, Some(middle)).await;
    let backlog = read_sse(&mut resumed, Duration::from_secs(20), |e| {
        e.len() >= total - 11
    })
    .await;
    let ids: Vec<&str> = backlog.iter().map(|e| e.id.as_str()).collect();
    let expected: Vec<&str> = got[11..].iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, expected);
    app.create_server(&alice, &org, "later").await;
    let more = read_sse(&mut resumed, Duration::from_secs(20), |e| !e.is_empty()).await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].data["payload"]["slug"], "later");
    let more_live = read_sse(&mut live, Duration::from_secs(20), |e| !e.is_empty()).await;
    assert_eq!(more_live[0].id, more[0].id);
}

fn cursor(s: &str) -> (i64, i64) {
    let (tx, pos) = s.split_once('-').expect("tx-pos");
    (tx.parse().expect("tx"), pos.parse().expect("pos"))
}

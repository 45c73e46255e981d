//! Tenant isolation: a user who is not a member of an org gets the same 404 `org_not_found` on
//! every `/orgs/{org}/...` route (reads and writes, by id and by slug) as for an org that does
//! not exist, changes nothing, and never sees another org's objects or events through their own
//! org's routes; the objects MCP calls create (tickets, end users, sessions, tool calls, MCP
//! sessions) stay in their org and on their server.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use crate::mcp_tickets::{open_ticket, ticket};
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// One request of the table: method, path under `/api/v1/orgs/{org}`, optional body, and
/// optional Accept header.
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    accept: Option<&'static str>,
}

fn route(method: Method, path: impl Into<String>, body: Option<Value>) -> Route {
    Route {
        method,
        path: path.into(),
        body,
        accept: None,
    }
}

/// An id for routes that name an object; membership is checked before any object is looked up.
const SOME_ID: &str = "3f2b4c1e-0000-4000-8000-000000000001";

/// Every route under `/orgs/{org}`, aimed at objects of the victim's org.
fn org_routes(victim: &User, server_id: &str, server_slug: &str) -> Vec<Route> {
    use Method as M;
    let mut routes = vec![
        route(M::GET, "", None),
        route(M::GET, "/members", None),
        route(
            M::POST,
            "/members",
            Some(json!({ "email": "intruder@example.com", "role": "owner" })),
        ),
        route(
            M::POST,
            "/members",
            Some(json!({ "email": "intruder@example.com", "role": "member" })),
        ),
        route(
            M::PATCH,
            format!("/members/{}", victim.id),
            Some(json!({ "role": "member" })),
        ),
        route(
            M::PATCH,
            format!("/members/{}", victim.email),
            Some(json!({ "role": "member" })),
        ),
        route(M::DELETE, format!("/members/{}", victim.id), None),
        route(M::DELETE, format!("/members/{}", victim.email), None),
        route(M::DELETE, "/members/pending@example.com", None),
        route(M::GET, "/servers", None),
        route(M::GET, "/servers?include_archived=true", None),
        route(
            M::POST,
            "/servers",
            Some(json!({ "name": "Stolen", "slug": "stolen" })),
        ),
        route(M::GET, format!("/servers/{server_id}"), None),
        route(M::GET, format!("/servers/{server_slug}"), None),
        route(
            M::PATCH,
            format!("/servers/{server_id}"),
            Some(json!({ "name": "Pwned" })),
        ),
        route(
            M::PATCH,
            format!("/servers/{server_slug}"),
            Some(json!({ "slug": "pwned" })),
        ),
        route(M::DELETE, format!("/servers/{server_id}"), None),
        route(M::DELETE, format!("/servers/{server_slug}"), None),
        route(M::GET, "/dashboard", None),
        route(M::GET, "/audit", None),
        route(M::GET, "/audit?limit=1", None),
        route(M::GET, "/events", None),
        route(M::GET, "/events?after=0-0&limit=1000", None),
        route(M::GET, "/events?type=ServerCreated", None),
        route(M::GET, "/events/stream", None),
        route(M::GET, "/events/stream?after=0-0", None),
        route(M::GET, "/tickets", None),
        route(M::GET, "/tickets?status=new&limit=5", None),
        route(M::GET, format!("/tickets/{SOME_ID}"), None),
        route(
            M::POST,
            format!("/tickets/{SOME_ID}/status"),
            Some(json!({ "status": "in_progress" })),
        ),
        route(
            M::POST,
            format!("/tickets/{SOME_ID}/comments"),
            Some(json!({ "body": "hi" })),
        ),
        route(
            M::POST,
            format!("/tickets/{SOME_ID}/assign"),
            Some(json!({ "member": victim.email })),
        ),
        route(M::GET, "/users", None),
        route(M::GET, format!("/users/{SOME_ID}"), None),
        route(
            M::POST,
            format!("/users/{SOME_ID}/unmerge"),
            Some(json!({ "merged": SOME_ID })),
        ),
        route(M::GET, "/sessions", None),
        route(M::GET, format!("/sessions/{SOME_ID}"), None),
        route(M::GET, "/tool-calls", None),
        route(M::GET, "/tool-calls?outcome=error&tool=get_support", None),
        route(M::GET, "/analytics/tools", None),
        route(M::GET, "/analytics/tools?bucket=minute", None),
        route(M::GET, "/walkthroughs", None),
        route(M::POST, "/walkthroughs", Some(json!({ "title": "t" }))),
        route(M::GET, format!("/walkthroughs/{SOME_ID}"), None),
        route(
            M::PATCH,
            format!("/walkthroughs/{SOME_ID}"),
            Some(json!({ "title": "t" })),
        ),
        route(M::POST, format!("/walkthroughs/{SOME_ID}/publish"), None),
        route(M::POST, format!("/walkthroughs/{SOME_ID}/unpublish"), None),
        route(M::POST, format!("/walkthroughs/{SOME_ID}/archive"), None),
        route(M::GET, format!("/walkthroughs/{SOME_ID}/steps"), None),
        route(
            M::POST,
            format!("/walkthroughs/{SOME_ID}/steps"),
            Some(json!({ "title": "t", "content": "c" })),
        ),
        route(
            M::PATCH,
            format!("/walkthroughs/{SOME_ID}/steps/{SOME_ID}"),
            Some(json!({ "title": "t" })),
        ),
        route(
            M::DELETE,
            format!("/walkthroughs/{SOME_ID}/steps/{SOME_ID}"),
            None,
        ),
        route(
            M::POST,
            format!("/walkthroughs/{SOME_ID}/steps/{SOME_ID}/move"),
            Some(json!({ "after_step_id": null })),
        ),
        route(M::GET, format!("/walkthroughs/{SOME_ID}/versions"), None),
        route(M::GET, format!("/walkthroughs/{SOME_ID}/analytics"), None),
        route(
            M::GET,
            format!("/walkthroughs/{SOME_ID}/sankey?server={server_slug}"),
            None,
        ),
        route(M::GET, format!("/servers/{server_id}/walkthroughs"), None),
        route(
            M::POST,
            format!("/servers/{server_slug}/walkthroughs"),
            Some(json!({ "walkthrough_id": SOME_ID })),
        ),
        route(
            M::PATCH,
            format!("/servers/{server_id}/walkthroughs/{SOME_ID}"),
            Some(json!({ "enabled": false })),
        ),
        route(
            M::DELETE,
            format!("/servers/{server_id}/walkthroughs/{SOME_ID}"),
            None,
        ),
    ];
    routes.push(Route {
        accept: Some("application/x-ndjson"),
        ..route(M::GET, "/events", None)
    });
    routes.push(Route {
        accept: Some("text/event-stream"),
        ..route(M::GET, "/events/stream", None)
    });
    routes
}

/// Sends one route of the table for `org_ref`; returns status and body (stream or not).
async fn send(app: &TestApp, token: &str, org_ref: &str, r: &Route) -> (StatusCode, Value) {
    let url = app.url(&format!("/api/v1/orgs/{org_ref}{}", r.path));
    let mut req = app.http.request(r.method.clone(), url).bearer_auth(token);
    if let Some(body) = &r.body {
        req = req.json(body);
    }
    if let Some(accept) = r.accept {
        req = req.header(ACCEPT, accept);
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("no answer within 10 s")
        .expect("request");
    let status = resp.status();
    if status == StatusCode::OK {
        // A stream that was (wrongly) opened: do not wait for its end.
        return (status, Value::Null);
    }
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("body within 10 s")
        .unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn org_event_ids(pool: &sqlx::PgPool, org: &str) -> Vec<String> {
    let org: uuid::Uuid = org.parse().expect("org uuid");
    sqlx::query_scalar(
        "SELECT event_id::text FROM events WHERE org_id = $1 ORDER BY global_position",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("org events")
}

#[tokio::test]
async fn another_orgs_routes_are_404_org_not_found_for_non_members() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org_a = app.create_org(&alice, "org-a").await;
    let org_b = app.create_org(&bob, "org-b").await;
    let server_a = app.create_server(&alice, &org_a, "server-a").await;
    let server_a_id = server_a["id"].as_str().expect("id").to_owned();
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org_a}/members"),
            &alice.token,
            json!({ "email": "pending@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let server_b = app.create_server(&bob, &org_b, "server-b").await;
    let server_b_id = server_b["id"].as_str().expect("id").to_owned();

    let pool = app.env.pool().await;
    let events_before = org_event_ids(&pool, &org_a).await;
    let (_, dash_before) = app
        .get(&format!("/api/v1/orgs/{org_a}/dashboard"), &alice.token)
        .await;

    // The reference answers: an org that does not exist, by id and by slug.
    let routes = org_routes(&alice, &server_a_id, "server-a");
    let mut checked = 0;
    for r in &routes {
        let (status, missing) = send(&app, &bob.token, "no-such-org", r).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{} {} on a missing org: {missing}",
            r.method,
            r.path
        );
        assert_eq!(missing["code"], "org_not_found", "{missing}");
        let (status, missing_id) =
            send(&app, &bob.token, "00000000-0000-4000-8000-000000000000", r).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing_id}");

        // Bob addressing Alice's org, by id and by slug: indistinguishable from missing.
        for org_ref in [org_a.as_str(), "org-a"] {
            let (status, body) = send(&app, &bob.token, org_ref, r).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "bob: {} /orgs/{org_ref}{} answered {status}: {body}",
                r.method,
                r.path
            );
            assert_eq!(
                body["code"], "org_not_found",
                "{} {}: {body}",
                r.method, r.path
            );
            assert_eq!(
                body, missing,
                "{} {}: no detail may differ",
                r.method, r.path
            );
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * 2);

    // Nothing changed in Alice's org.
    assert_eq!(org_event_ids(&pool, &org_a).await, events_before);
    let (_, dash_after) = app
        .get(&format!("/api/v1/orgs/{org_a}/dashboard"), &alice.token)
        .await;
    assert_eq!(dash_after["counters"], dash_before["counters"]);
    let (status, still) = app
        .get(
            &format!("/api/v1/orgs/{org_a}/servers/{server_a_id}"),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still, server_a);
    let (_, members) = app
        .get(&format!("/api/v1/orgs/{org_a}/members"), &alice.token)
        .await;
    let emails: HashSet<&str> = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    assert_eq!(
        emails,
        HashSet::from(["alice@example.com", "pending@example.com"])
    );
    let (status, orgs) = app.get("/api/v1/orgs", &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = orgs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids, [org_b.as_str()]);
    // "stolen" was never claimed: Alice can use it.
    app.create_server(&alice, &org_a, "stolen").await;

    // The same table in the other direction, and for a user with no org at all.
    let carol = app.signup("carol@example.com").await;
    let routes_b = org_routes(&bob, &server_b_id, "server-b");
    for user in [&alice, &carol] {
        for r in &routes_b {
            for org_ref in [org_b.as_str(), "org-b"] {
                let (status, body) = send(&app, &user.token, org_ref, r).await;
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{}: {} /orgs/{org_ref}{}: {body}",
                    user.email,
                    r.method,
                    r.path
                );
                assert_eq!(body["code"], "org_not_found", "{body}");
            }
        }
    }
}

/// Alice's org with a server (changed once) and Bob's org with one of its own.
struct TwoOrgs {
    app: TestApp,
    alice: User,
    bob: User,
    org_a: String,
    org_b: String,
    server_a_id: String,
}

async fn two_orgs() -> TwoOrgs {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org_a = app.create_org(&alice, "org-a").await;
    let org_b = app.create_org(&bob, "org-b").await;
    let server_a = app.create_server(&alice, &org_a, "server-a").await;
    let server_a_id = server_a["id"].as_str().expect("id").to_owned();
    let (status, _) = app
        .patch(
            &format!("/api/v1/orgs/{org_a}/servers/server-a"),
            &alice.token,
            json!({ "auth_mode": "tracking" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.create_server(&bob, &org_b, "server-b").await;

    TwoOrgs {
        app,
        alice,
        bob,
        org_a,
        org_b,
        server_a_id,
    }
}

/// Alice's server, and Alice as a member, through Bob's org: not found, whatever the method or
/// reference.
async fn not_found_through_the_other_org(fx: &TwoOrgs) {
    let TwoOrgs {
        app, alice, bob, ..
    } = fx;
    let org_a = fx.org_a.clone();
    let org_b = fx.org_b.clone();
    let server_a_id = fx.server_a_id.clone();
    // Alice's server through Bob's org: not found, whatever the method or reference.
    let server_refs = [server_a_id.as_str(), "server-a"];
    for org_ref in [org_b.as_str(), "org-b"] {
        for server_ref in server_refs {
            let path = format!("/api/v1/orgs/{org_ref}/servers/{server_ref}");
            let table: [(Method, Option<Value>); 4] = [
                (Method::GET, None),
                (Method::PATCH, Some(json!({ "name": "Pwned" }))),
                (Method::PATCH, Some(json!({ "slug": "server-a-pwned" }))),
                (Method::DELETE, None),
            ];
            for (method, body) in table {
                let (status, got) = app
                    .call(method.clone(), &path, Some(&bob.token), body)
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {got}");
                assert_eq!(got["code"], "server_not_found", "{method} {path}: {got}");
            }
        }
        // Alice as a member of Bob's org: not found either.
        for (method, body) in [
            (Method::PATCH, Some(json!({ "role": "member" }))),
            (Method::DELETE, None),
        ] {
            for who in [alice.id.as_str(), alice.email.as_str()] {
                let path = format!("/api/v1/orgs/{org_ref}/members/{who}");
                let (status, got) = app
                    .call(method.clone(), &path, Some(&bob.token), body.clone())
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {got}");
                assert_eq!(got["code"], "member_not_found", "{method} {path}: {got}");
            }
        }
    }
    let (status, got) = app
        .get(
            &format!("/api/v1/orgs/{org_a}/servers/{server_a_id}"),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["name"], "server-a");
    assert_eq!(got["status"], "active");
}

/// Bob's lists, dashboard, audit and events (pages, one by one, NDJSON) hold nothing of Alice's.
async fn lists_hold_nothing_of_the_other(fx: &TwoOrgs) {
    let TwoOrgs { app, bob, .. } = fx;
    let org_a = fx.org_a.clone();
    let org_b = fx.org_b.clone();
    // Bob's lists, dashboard, audit and events hold nothing of Alice's.
    let pool = app.env.pool().await;
    let a_events: HashSet<String> = org_event_ids(&pool, &org_a).await.into_iter().collect();
    assert_eq!(a_events.len(), 3, "created org, server, updated server");
    let b_events: HashSet<String> = org_event_ids(&pool, &org_b).await.into_iter().collect();
    assert_eq!(b_events.len(), 2);
    for org_ref in [org_b.as_str(), "org-b"] {
        let (status, servers) = app
            .get(
                &format!("/api/v1/orgs/{org_ref}/servers?include_archived=true"),
                &bob.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let slugs: Vec<&str> = servers["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|s| s["slug"].as_str())
            .collect();
        assert_eq!(slugs, ["server-b"]);

        let (status, members) = app
            .get(&format!("/api/v1/orgs/{org_ref}/members"), &bob.token)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            members["items"].as_array().map(Vec::len),
            Some(1),
            "{members}"
        );

        let (status, dash) = app
            .get(&format!("/api/v1/orgs/{org_ref}/dashboard"), &bob.token)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(dash["org"]["id"], org_b.as_str());
        assert_eq!(dash["counters"]["servers"], 1);
        assert_eq!(dash["counters"]["members"], 1);
        assert_eq!(dash["counters"]["events"], 2);
        let dash_servers = dash["servers"].as_array().expect("servers");
        assert_eq!(dash_servers.len(), 1);
        assert_eq!(dash_servers[0]["slug"], "server-b");

        let (status, audit) = app
            .get(
                &format!("/api/v1/orgs/{org_ref}/audit?limit=500"),
                &bob.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let audit_ids: HashSet<String> = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            audit_ids, b_events,
            "Bob's audit is exactly Bob's org's events"
        );

        for query in [
            "",
            "?limit=1000",
            "?type=ServerCreated,ServerUpdated,OrganizationCreated",
        ] {
            let (status, page) = app
                .get(&format!("/api/v1/orgs/{org_ref}/events{query}"), &bob.token)
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["items"].as_array().expect("items");
            assert!(
                items.iter().all(|e| e["org_id"] == org_b.as_str()),
                "{page}"
            );
            let ids: HashSet<String> = items
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect();
            assert!(ids.is_disjoint(&a_events), "{query}: {page}");
            assert_eq!(ids, b_events, "{query}");
        }
        // Paging one by one from the start, too.
        let mut after = "0-0".to_owned();
        let mut seen = HashSet::new();
        loop {
            let (status, page) = app
                .get(
                    &format!("/api/v1/orgs/{org_ref}/events?limit=1&after={after}"),
                    &bob.token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["items"].as_array().expect("items");
            let Some(e) = items.first() else { break };
            assert!(seen.insert(e["event_id"].as_str().expect("id").to_owned()));
            after = page["next_cursor"].as_str().expect("cursor").to_owned();
        }
        assert_eq!(seen, b_events);

        let resp = app
            .http
            .get(app.url(&format!("/api/v1/orgs/{org_ref}/events")))
            .bearer_auth(&bob.token)
            .header(ACCEPT, "application/x-ndjson")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.expect("body");
        let ids: HashSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids, b_events);
    }
}

/// Bob's live stream, replayed from the start and then tailing while Alice works, carries only his
/// events.
async fn live_stream_holds_nothing_of_the_other(fx: &TwoOrgs) {
    let TwoOrgs {
        app, alice, bob, ..
    } = fx;
    let org_a = fx.org_a.clone();
    let org_b = fx.org_b.clone();
    let server_a_id = fx.server_a_id.clone();
    let pool = app.env.pool().await;
    // Bob's live stream, replayed from the start and then tailing while Alice works.
    let mut resp = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org_b}/events/stream?after=0-0")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    app.create_server(alice, &org_a, "server-a2").await;
    let marker = app.create_server(bob, &org_b, "server-b2").await;
    let marker_id = marker["id"].as_str().expect("id").to_owned();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !text.contains(&marker_id) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("Bob's stream delivers his own new server")
            .expect("read")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let a_events: Vec<String> = org_event_ids(&pool, &org_a).await;
    assert_eq!(a_events.len(), 4);
    for id in &a_events {
        assert!(
            !text.contains(id.as_str()),
            "Alice's event {id} in Bob's stream"
        );
    }
    assert!(!text.contains(&org_a), "Alice's org id in Bob's stream");
    assert!(!text.contains(&server_a_id));
    assert_eq!(text.matches("event: ").count(), 3, "{text}");
}

#[tokio::test]
async fn another_orgs_server_and_members_are_not_found_through_ones_own_org() {
    let fx = two_orgs().await;
    not_found_through_the_other_org(&fx).await;
}

#[tokio::test]
async fn ones_lists_dashboard_audit_and_events_hold_nothing_of_another_org() {
    let fx = two_orgs().await;
    lists_hold_nothing_of_the_other(&fx).await;
}

#[tokio::test]
async fn ones_live_stream_carries_nothing_of_another_org() {
    let fx = two_orgs().await;
    live_stream_holds_nothing_of_the_other(&fx).await;
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

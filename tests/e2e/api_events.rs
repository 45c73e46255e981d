//! An org's event stream through the REST API: cursor pages, NDJSON, the type filter, and the
//! live SSE stream (which ends with access).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// `"{tx}-{pos}"` as a comparable pair.
fn cursor(c: &Value) -> (i64, i64) {
    let s = c.as_str().expect("cursor string");
    let (tx, pos) = s.split_once('-').expect("tx-pos");
    (tx.parse().expect("tx"), pos.parse().expect("pos"))
}

/// Alice's org with Bob as admin, three servers (one updated, one archived), and Bob's own org
/// with two servers; the first page of Alice's org's events, checked.
struct History {
    app: TestApp,
    alice: User,
    org: String,
    server_ids: Vec<String>,
    all: Vec<Value>,
}

async fn some_org_history() -> History {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let other = app.create_org(&bob, "other").await;
    app.create_server(&bob, &other, "other-docs").await;
    app.add_member(&alice, &org, &bob, "admin").await;
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
            "MemberInvited",
            "InvitationAccepted",
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
    assert_eq!(all[3]["aggregate_id"], server_ids[0].as_str());
    assert_eq!(all[3]["payload"]["slug"], "one");
    // Bob's own org's events are in his org's page only.
    let (_, bobs) = app
        .get(&format!("/api/v1/orgs/{other}/events"), &bob.token)
        .await;
    assert_eq!(items(&bobs).len(), 3, "{bobs}");
    assert!(items(&bobs).iter().all(|e| e["org_id"] == other.as_str()));

    History {
        app,
        alice,
        org,
        server_ids,
        all,
    }
}

/// Paging one at a time sees every event once, in order; pages of 3 too.
async fn pages(fx: &History) {
    let History {
        app, alice, all, ..
    } = fx;
    let org = fx.org.clone();
    let events_path = format!("/api/v1/orgs/{org}/events");
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
    assert_eq!(&paged, all);
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
}

/// Type filters, repeated or comma-separated.
async fn type_filters(fx: &History) {
    let History {
        app,
        alice,
        server_ids,
        ..
    } = fx;
    let org = fx.org.clone();
    let events_path = format!("/api/v1/orgs/{org}/events");
    // Type filters, repeated or comma-separated.
    let (status, created) = app
        .get(&format!("{events_path}?type=ServerCreated"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = items(&created)
        .iter()
        .filter_map(|e| e["aggregate_id"].as_str())
        .collect();
    assert_eq!(&ids, server_ids);
    assert!(items(&created)
        .iter()
        .all(|e| e["event_type"] == "ServerCreated"));
    for query in [
        "type=ServerArchived,InvitationAccepted",
        "type=ServerArchived&type=InvitationAccepted",
        "type=ServerArchived,%20InvitationAccepted",
    ] {
        let (status, filtered) = app
            .get(&format!("{events_path}?{query}"), &alice.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{filtered}");
        let types: Vec<&str> = items(&filtered)
            .iter()
            .filter_map(|e| e["event_type"].as_str())
            .collect();
        assert_eq!(types, ["InvitationAccepted", "ServerArchived"], "{query}");
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
}

/// NDJSON: the same events, one per line, with the next cursor in a header.
async fn ndjson(fx: &History) {
    let History {
        app, alice, all, ..
    } = fx;
    let org = fx.org.clone();
    let events_path = format!("/api/v1/orgs/{org}/events");
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
    assert_eq!(&lines, all);
    let resp = app
        .http
        .get(app.url(&format!(
            "{events_path}?limit=2&after={}",
            all[1]["cursor"].as_str().expect("c")
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

    // `q=0` says "not this": JSON, as for a client that does not name NDJSON.
    let resp = app
        .http
        .get(app.url(&events_path))
        .bearer_auth(&alice.token)
        .header(ACCEPT, "application/x-ndjson;q=0, application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("application/json"));
    let page: Value = resp.json().await.expect("a JSON page");
    assert_eq!(&items(&page)[..], &all[..]);
}

/// Bad cursors and limits are refused.
async fn bad_cursors_and_limits(fx: &History) {
    let History {
        app, alice, all, ..
    } = fx;
    let org = fx.org.clone();
    let events_path = format!("/api/v1/orgs/{org}/events");
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

#[tokio::test]
async fn an_orgs_events_page_holds_only_its_own_in_cursor_order() {
    some_org_history().await;
}

#[tokio::test]
async fn events_page_one_or_three_at_a_time_and_see_each_once() {
    let fx = some_org_history().await;
    pages(&fx).await;
}

#[tokio::test]
async fn events_filter_by_type_repeated_or_comma_separated() {
    let fx = some_org_history().await;
    type_filters(&fx).await;
}

#[tokio::test]
async fn events_come_as_ndjson_with_the_next_cursor() {
    let fx = some_org_history().await;
    ndjson(&fx).await;
}

#[tokio::test]
async fn bad_event_cursors_and_limits_are_refused() {
    let fx = some_org_history().await;
    bad_cursors_and_limits(&fx).await;
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// Reads an SSE response until `done` holds for the events read so far, or the timeout passes.
pub(crate) async fn read_sse(
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

pub(crate) async fn open_stream(
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

#[tokio::test]
async fn the_live_stream_ends_when_the_member_is_removed() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let member = app.signup("member@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.add_member(&owner, &org, &member, "member").await;
    let mut stream = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/events/stream")))
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, _) = app
        .delete(
            &format!("/api/v1/orgs/{org}/members/{}", member.id),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Events keep happening in the org; the removed member's stream must end.
    app.create_server(&owner, &org, "after-removal").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    })
    .await;
    let seen = ended.expect("the stream of a removed member ended");
    assert!(
        !seen.contains("after-removal"),
        "a removed member saw a later event: {seen}"
    );
}

/// Where events came from (client ip, user agent) is personal data: the owner and an admin of
/// the org see it in events (pages, NDJSON, the live stream) and audit entries; a member of the
/// same org sees the same events and entries without it.
#[tokio::test]
async fn only_owners_and_admins_see_client_ips_and_user_agents() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let admin = app.signup("admin@acme.dev").await;
    let member = app.signup("member@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    for (user, role) in [(&admin, "admin"), (&member, "member")] {
        app.add_member(&owner, &org, user, role).await;
    }
    // A change made from a browser, and an end user's tool call.
    let created = app
        .http
        .post(app.url(&format!("/api/v1/orgs/{org}/servers")))
        .bearer_auth(&owner.token)
        .header("user-agent", "e2e-browser/1.0")
        .json(&json!({ "name": "Docs", "slug": "acme-docs" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let reply = crate::mcp_raw::Mcp::new(app.url("/s/acme-docs/t/ada/mcp"))
        .modern()
        .call_tool("get_support", json!({"title": "t", "description": "d"}))
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    let has = |events: &[Value], key: &str| events.iter().any(|e| !e["metadata"][key].is_null());
    let page = |user: &User| {
        let path = format!("/api/v1/orgs/{org}/events?limit=1000");
        let token = user.token.clone();
        let app = &app;
        async move {
            let (status, body) = app.get(&path, &token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            items(&body).clone()
        }
    };
    let seen_by_owner = eventually("the tool call stored", Duration::from_secs(10), || async {
        let events = page(&owner).await;
        events
            .iter()
            .any(|e| e["aggregate_type"] == "tool_call")
            .then_some(events)
    })
    .await;
    let ids =
        |events: &[Value]| -> Vec<Value> { events.iter().map(|e| e["event_id"].clone()).collect() };
    for user in [&owner, &admin] {
        let events = page(user).await;
        assert!(has(&events, "client_ip"), "{}: {events:?}", user.email);
        assert!(
            events
                .iter()
                .any(|e| e["metadata"]["user_agent"] == "e2e-browser/1.0"),
            "{}: {events:?}",
            user.email
        );
        assert!(
            events
                .iter()
                .any(|e| e["aggregate_type"] == "tool_call"
                    && e["metadata"]["client_ip"] == "127.0.0.1"),
            "an end user's ip: {events:?}"
        );
    }
    let member_events = page(&member).await;
    assert_eq!(ids(&member_events), ids(&seen_by_owner), "the same events");
    assert!(!has(&member_events, "client_ip"), "{member_events:?}");
    assert!(!has(&member_events, "user_agent"), "{member_events:?}");
    assert!(
        member_events
            .iter()
            .all(|e| e["metadata"]["actor"].is_object()),
        "the rest of the metadata is kept"
    );

    // NDJSON pages.
    let ndjson = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/events?limit=1000")))
        .bearer_auth(&member.token)
        .header(ACCEPT, "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ndjson.lines().count(), seen_by_owner.len());
    assert!(
        !ndjson.contains("client_ip") && !ndjson.contains("user_agent"),
        "{ndjson}"
    );

    // The live stream, from the start.
    let stream_path = format!("/api/v1/orgs/{org}/events/stream?after=0-0");
    let mut stream = open_stream(&app, &member, &stream_path, None).await;
    let streamed = read_sse(&mut stream, Duration::from_secs(15), |e| {
        e.len() >= seen_by_owner.len()
    })
    .await;
    let streamed: Vec<Value> = streamed.into_iter().map(|e| e.data).collect();
    assert!(!has(&streamed, "client_ip") && !has(&streamed, "user_agent"));
    let mut stream = open_stream(&app, &admin, &stream_path, None).await;
    let streamed = read_sse(&mut stream, Duration::from_secs(15), |e| {
        e.len() >= seen_by_owner.len()
    })
    .await;
    let streamed: Vec<Value> = streamed.into_iter().map(|e| e.data).collect();
    assert!(has(&streamed, "client_ip") && has(&streamed, "user_agent"));

    // The audit log: `client_ip` null for the member.
    let audit = |user: &User| {
        let path = format!("/api/v1/orgs/{org}/audit?limit=500");
        let token = user.token.clone();
        let app = &app;
        async move {
            let (status, body) = app.get(&path, &token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            items(&body).clone()
        }
    };
    let owners = eventually(
        "the ticket in the audit log",
        Duration::from_secs(10),
        || async {
            let entries = audit(&owner).await;
            entries
                .iter()
                .any(|e| e["target"]["type"] == "ticket")
                .then_some(entries)
        },
    )
    .await;
    assert!(
        owners.iter().any(|e| e["client_ip"] == "127.0.0.1"),
        "{owners:?}"
    );
    let admins = audit(&admin).await;
    assert!(
        admins.iter().any(|e| e["client_ip"] == "127.0.0.1"),
        "{admins:?}"
    );
    let members = audit(&member).await;
    assert_eq!(members.len(), owners.len());
    assert!(
        members
            .iter()
            .all(|e| e["client_ip"].is_null() && e.get("client_ip").is_some()),
        "{members:?}"
    );
}

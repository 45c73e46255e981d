//! The MCP edge over HTTP, both protocol eras: tenant resolution by Host and by path, tracking
//! ids and auth modes, sessions that any instance continues, tool lists that follow the
//! server's configuration, every call recorded, and the protocol's answer to every bad input.

use crate::helpers::*;
use crate::mcp_raw::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// An owner, their org and one server (`acme-docs`, auth mode `none`).
pub async fn tenant(app: &TestApp) -> (User, String) {
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    (owner, org)
}

pub fn host_of(app: &TestApp) -> String {
    app.proc.base().trim_start_matches("http://").to_owned()
}

async fn calls(app: &TestApp, owner: &User, org: &str, n: usize) -> Vec<Value> {
    eventually("tool calls projected", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
}

#[tokio::test]
async fn a_2025_client_initializes_by_host_or_path_and_its_calls_are_recorded() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;

    // By Host: `acme-docs.localhost` names the server.
    let mut by_host =
        Mcp::new(app.url("/mcp")).with_host(format!("acme-docs.localhost:{}", port(&app)));
    let init = by_host.initialize("host-client").await;
    let result = init.result();
    assert_eq!(result["protocolVersion"], LEGACY);
    assert_eq!(result["serverInfo"]["name"], "acme-docs");
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(by_host.tool_names().await, vec!["get_support"]);
    let ping = by_host.call("ping", json!({})).await;
    assert_eq!(ping.result(), json!({}));

    // By path, on any platform host.
    let mut by_path = Mcp::new(app.url("/s/acme-docs/mcp"));
    by_path.initialize("path-client").await;
    let opened = by_path
        .call_tool(
            "get_support",
            json!({ "title": "Webhooks fail", "description": "401 on every delivery",
                     "api_key": "sk-live-123" }),
        )
        .await;
    // An unknown argument is the caller's mistake: a tool error the model can read.
    assert_eq!(opened.result()["isError"], true, "{}", opened.text);
    let opened = by_path
        .call_tool(
            "get_support",
            json!({ "title": "Webhooks fail", "description": "401 on every delivery" }),
        )
        .await;
    let result = opened.result();
    assert_eq!(result["isError"], false, "{}", opened.text);
    let reference = result["structuredContent"]["reference"].as_str().unwrap();
    assert!(reference.starts_with("TCK-"));
    assert!(result["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains(reference));

    // Every call is recorded, failures included, with secret-looking values redacted.
    let recorded = calls(&app, &owner, &org, 2).await;
    let failed = recorded
        .iter()
        .find(|c| c["outcome"] == "error")
        .expect("the failed call is recorded");
    assert_eq!(failed["tool"], "get_support");
    assert_eq!(failed["arguments"]["api_key"], "[redacted]");
    assert!(failed["error"].as_str().unwrap().contains("api_key"));
    assert!(recorded
        .iter()
        .all(|c| c["session_id"].as_str().is_some() && c["client_name"].is_string()));
    // Tool-call ids are time-ordered (UUIDv7), so new calls append to the indexes keyed by them.
    assert!(
        recorded.iter().all(|c| c["id"]
            .as_str()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .is_some_and(|id| id.get_version_num() == 7)),
        "{recorded:?}"
    );

    // Sessions view: both protocol sessions, with their calls.
    let (_, sessions) = app
        .get(&format!("/api/v1/orgs/{org}/sessions"), &owner.token)
        .await;
    let items = sessions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{sessions}");
    assert!(items.iter().all(|s| s["era"] == "protocol"));
    let path_session = by_path.session_id.clone().unwrap();
    let (status, detail) = app
        .get(
            &format!("/api/v1/orgs/{org}/sessions/{path_session}"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["calls"].as_array().unwrap().len(), 2);
    assert_eq!(detail["client_name"], "path-client");

    // The dashboard counts MCP activity.
    let counters = eventually(
        "dashboard counts calls",
        Duration::from_secs(10),
        || async {
            let (_, body) = app
                .get(&format!("/api/v1/orgs/{org}/dashboard"), &owner.token)
                .await;
            let c = body["counters"].clone();
            (c["tool_calls_24h"] == 2).then_some(c)
        },
    )
    .await;
    assert_eq!(counters["sessions"], 2);
    assert_eq!(counters["tool_calls_7d"], 2);
    assert_eq!(counters["open_tickets"], 1);
}

fn port(app: &TestApp) -> String {
    host_of(app).rsplit(':').next().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_end_on_delete_and_unknown_ones_are_404() {
    let app = spawn_app().await;
    tenant(&app).await;
    let mut client = Mcp::new(app.url("/s/acme-docs/mcp"));
    client.initialize("closer").await;
    // 204, not rmcp's 202: the official Python SDK logs any other code as a failed termination.
    assert_eq!(client.delete_session().await.status, StatusCode::NO_CONTENT);
    let after = client.call("ping", json!({})).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.text);

    let mut stranger = Mcp::new(app.url("/s/acme-docs/mcp"));
    stranger.session_id = Some("00000000-0000-4000-8000-000000000000".to_owned());
    let reply = stranger.call("tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    stranger.session_id = Some("not even a uuid \u{7f}".replace('\u{7f}', ""));
    assert_eq!(
        stranger.call("tools/list", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
}

/// A session belongs to the end user its URL named: the same session id under another tracking
/// id (or none) would file that caller's calls in someone else's session. It is answered as an
/// unknown session, as JSON-RPC, and stays usable by its owner.
#[tokio::test]
async fn a_session_is_served_only_to_the_end_user_it_was_started_for() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let mut ada = Mcp::new(app.url("/s/acme-docs/t/ada/mcp"));
    ada.initialize("ada-ide").await;
    for other in ["/s/acme-docs/t/mallory/mcp", "/s/acme-docs/mcp"] {
        let mut mallory = Mcp::new(app.url(other));
        mallory.session_id = ada.session_id.clone();
        let reply = mallory
            .call_tool("get_support", json!({ "title": "t", "description": "d" }))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{other}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), Some(-32600), "{}", reply.text);
        assert!(reply.text.contains("Session not found"), "{}", reply.text);
    }
    let reply = ada
        .call_tool(
            "get_support",
            json!({ "title": "mine", "description": "d" }),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    let recorded = calls(&app, &owner, &org, 1).await;
    assert_eq!(recorded[0]["tracking_id"], "ada", "{recorded:?}");
}

/// Issue 22, finding 3: a session id is honoured only on the server and for the end user it was
/// started for, whatever the protocol header says; a 2026-era request ignores session ids
/// altogether. Another server's `initialize` sent with a live session's id (and a 2026 header)
/// neither enters that session nor renames the client its later calls are recorded under.
#[tokio::test]
async fn a_session_cannot_be_entered_from_another_server_or_end_user_in_either_era() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    app.create_server(&owner, &org, "acme-blog").await;
    let mut ada = Mcp::new(app.url("/s/acme-docs/t/ada/mcp"));
    ada.initialize("ada-ide").await;
    let session = ada.session_id.clone().unwrap();

    // The attack: A's live session id, a 2026 header and an `initialize`, on server B, on
    // another end user of A, on no end user of A, and even on A itself for A's end user.
    for path in [
        "/s/acme-blog/mcp",
        "/s/acme-blog/t/ada/mcp",
        "/s/acme-docs/t/mallory/mcp",
        "/s/acme-docs/mcp",
        "/s/acme-docs/t/ada/mcp",
    ] {
        let mut intruder = Mcp::new(app.url(path)).modern();
        intruder.session_id = Some(session.clone());
        let reply = intruder
            .post_raw(
                json!({
                    "jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {
                        "protocolVersion": MODERN, "capabilities": {},
                        "clientInfo": { "name": "intruder", "version": "6.6.6" },
                    },
                })
                .to_string(),
            )
            .await;
        assert!(!reply.status.is_server_error(), "{path}: {}", reply.text);
        assert_ne!(
            reply.session_id.as_deref(),
            Some(session.as_str()),
            "{path}"
        );
        // A 2026 tool call naming the session is not recorded in it either.
        let call = intruder
            .call_tool(
                "get_support",
                json!({ "title": "stateless", "description": "d" }),
            )
            .await;
        assert!(!call.status.is_server_error(), "{path}: {}", call.text);
    }

    // 2025-era requests naming A's session elsewhere: unknown session (404), as JSON-RPC.
    for path in [
        "/s/acme-blog/mcp",
        "/s/acme-blog/t/ada/mcp",
        "/s/acme-docs/t/mallory/mcp",
        "/s/acme-docs/mcp",
    ] {
        let mut other = Mcp::new(app.url(path));
        other.version = "2025-06-18";
        other.session_id = Some(session.clone());
        let reply = other.call("tools/list", json!({})).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), Some(-32600), "{path}: {}", reply.text);
        assert!(reply.text.contains("Session not found"), "{}", reply.text);
    }

    // A's session is untouched: its next call is recorded under its own client name.
    let reply = ada
        .call_tool(
            "get_support",
            json!({ "title": "mine", "description": "d" }),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    let in_session = eventually("A's call projected", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let mine: Vec<Value> = items
            .into_iter()
            .filter(|c| c["session_id"] == session.as_str())
            .collect();
        (!mine.is_empty()).then_some(mine)
    })
    .await;
    assert_eq!(in_session.len(), 1, "{in_session:?}");
    assert_eq!(in_session[0]["client_name"], "ada-ide", "{in_session:?}");
    assert_eq!(in_session[0]["tracking_id"], "ada", "{in_session:?}");
    let (_, detail) = app
        .get(
            &format!("/api/v1/orgs/{org}/sessions/{session}"),
            &owner.token,
        )
        .await;
    assert_eq!(detail["client_name"], "ada-ide", "{detail}");
}

/// Issue 22, finding 10: requests of a session that reuse a JSON-RPC id still in flight are
/// refused at once (-32600), and only the first one runs; the session stays usable.
#[tokio::test]
async fn requests_reusing_an_id_in_flight_are_refused_at_once_and_never_run() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let mut client = Mcp::new(app.url("/s/acme-docs/mcp"));
    client.initialize("reuser").await;
    // Three connections ready, so the three requests arrive together.
    let _ = tokio::join!(
        client.call("ping", json!({})),
        client.call("ping", json!({})),
        client.call("ping", json!({}))
    );
    let body = json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": { "name": "get_support",
                    "arguments": { "title": "same id", "description": "d" } },
    })
    .to_string();
    let started = std::time::Instant::now();
    let (a, b, c) = tokio::join!(
        client.post_raw(body.clone()),
        client.post_raw(body.clone()),
        client.post_raw(body.clone())
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let replies = [a, b, c];
    let answered: Vec<_> = replies
        .iter()
        .filter(|r| r.message()["result"].is_object())
        .collect();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.error_code() == Some(-32600))
        .collect();
    assert_eq!(
        answered.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(
        answered[0].result()["isError"],
        false,
        "{}",
        answered[0].text
    );
    assert_eq!(refused.len(), 2);
    for r in &refused {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.message()["id"], 42, "{}", r.text);
        assert!(r.text.contains("already in flight"), "{}", r.text);
    }

    // Only the first one ran: one ticket, one recorded call.
    let called = eventually("the call recorded", Duration::from_secs(10), || async {
        let called = events_of(&app, &owner, &org, "ToolCalled").await;
        (!called.is_empty()).then_some(called)
    })
    .await;
    assert_eq!(called.len(), 1, "{called:?}");
    assert_eq!(events_of(&app, &owner, &org, "TicketOpened").await.len(), 1);
    // The session goes on, and an answered request's id is free again.
    assert_eq!(client.call("ping", json!({})).await.result(), json!({}));
    let again = client.post_raw(body).await;
    assert_eq!(again.result()["isError"], false, "{}", again.text);
}

#[tokio::test]
async fn a_session_started_on_one_instance_continues_on_another() {
    let app = spawn_app().await;
    // A second `serve` process on the same database: no shared memory with the first.
    let second = app.env.start(&["serve"]);
    let (owner, org) = tenant(&app).await;

    let mut client = Mcp::new(app.url("/s/acme-docs/mcp"));
    client.initialize("traveller").await;
    let session = client.session_id.clone().unwrap();

    // Same session id, other process: it restores the session from the event store.
    let mut elsewhere = Mcp::new(format!("{}/s/acme-docs/mcp", second.base()));
    elsewhere.session_id = Some(session.clone());
    assert_eq!(elsewhere.tool_names().await, vec!["get_support"]);
    let reply = elsewhere
        .call_tool(
            "get_support",
            json!({ "title": "From the other instance", "description": "d" }),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    // Ending it on the second instance ends it on the first.
    assert_eq!(
        elsewhere.delete_session().await.status,
        StatusCode::NO_CONTENT
    );
    let reply = eventually(
        "session ended everywhere",
        Duration::from_secs(5),
        || async {
            let r = client.call("ping", json!({})).await;
            (r.status == StatusCode::NOT_FOUND).then_some(r)
        },
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let recorded = calls(&app, &owner, &org, 1).await;
    assert_eq!(recorded[0]["session_id"], session.as_str());
    let (_, detail) = app
        .get(
            &format!("/api/v1/orgs/{org}/sessions/{session}"),
            &owner.token,
        )
        .await;
    assert!(detail["ended_at"].is_string() || detail["ended_at"].is_null());
}

#[tokio::test]
async fn a_2026_client_discovers_and_calls_statelessly_and_its_calls_group_into_sessions() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let client = Mcp::new(app.url("/s/acme-docs/mcp")).modern();
    let discovered = client.call("server/discover", json!({})).await;
    assert_eq!(discovered.status, StatusCode::OK, "{}", discovered.text);
    let result = discovered.result();
    assert!(result["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == MODERN));
    assert_eq!(result["cacheScope"], "private");
    assert!(discovered.session_id.is_none());

    let listed = client.call("tools/list", json!({})).await;
    assert_eq!(listed.result()["cacheScope"], "private");
    for i in 0..3 {
        let reply = client
            .call_tool(
                "get_support",
                json!({ "title": format!("stateless {i}"), "description": "d" }),
            )
            .await;
        assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    }
    // Without the per-request metadata a 2026 request is refused.
    let bare = client
        .post_raw(json!({"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}).to_string())
        .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.text);

    // Three stateless calls of one client, close together: one grouped session.
    let sessions = eventually("grouped session", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/sessions"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        (items.first().is_some_and(|s| s["tool_calls"] == 3)).then_some(items)
    })
    .await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["era"], "grouped");
    assert_eq!(sessions[0]["client_name"], "e2e-raw");
}

#[tokio::test]
async fn tracking_ids_identify_end_users_and_auth_modes_are_enforced() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let (status, _) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
            json!({ "auth_mode": "tracking" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let refused = eventually("tracking mode in force", Duration::from_secs(5), || async {
        let anonymous = Mcp::new(app.url("/s/acme-docs/mcp"));
        let r = anonymous
            .call(
                "initialize",
                json!({ "protocolVersion": LEGACY, "capabilities": {},
                        "clientInfo": { "name": "anon", "version": "1" } }),
            )
            .await;
        (r.status == StatusCode::FORBIDDEN).then_some(r)
    })
    .await;
    assert!(refused.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tracking id"));

    // First call with a new tracking id: a new end user; later calls are attributed to it.
    let host = format!("acme-docs.localhost:{}", port(&app));
    for _ in 0..2 {
        let mut tracked = Mcp::new(app.url("/t/user-42/mcp")).with_host(host.clone());
        tracked.initialize("tracked").await;
        let reply = tracked
            .call_tool(
                "get_support",
                json!({ "title": "Help", "description": "please", "email": "Dev@Example.com" }),
            )
            .await;
        assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    }
    let users = eventually("end user projected", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/users"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        (items.first().is_some_and(|u| u["tool_calls"] == 2)).then_some(items)
    })
    .await;
    assert_eq!(users.len(), 1, "one end user for one tracking id");
    assert_eq!(users[0]["tracking_ids"], json!(["user-42"]));
    assert_eq!(users[0]["emails"], json!(["dev@example.com"]));
    assert_eq!(users[0]["sessions"], 2);
    let user_id = users[0]["id"].as_str().unwrap();
    // The tickets read model catches up on its own.
    let detail = eventually("the user's tickets", Duration::from_secs(10), || async {
        let (status, detail) = app
            .get(&format!("/api/v1/orgs/{org}/users/{user_id}"), &owner.token)
            .await;
        assert_eq!(status, StatusCode::OK);
        (detail["tickets"].as_array().map(Vec::len) == Some(2)).then_some(detail)
    })
    .await;
    assert_eq!(detail["recent_sessions"].as_array().unwrap().len(), 2);

    // A malformed tracking id is a clear 400.
    let bad = Mcp::new(app.url("/s/acme-docs/t/not%20ok/mcp"))
        .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);

    // OAuth mode without a token: a clear 401, not a hang or a 500.
    let provider_id = app.create_oauth2_provider(&owner, &org).await;
    let (status, body) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
            json!({ "auth_mode": "oauth", "identity_provider_id": provider_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let oauth = eventually("oauth mode in force", Duration::from_secs(5), || async {
        let r = Mcp::new(app.url("/s/acme-docs/t/user-42/mcp"))
            .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
            .await;
        (r.status == StatusCode::UNAUTHORIZED).then_some(r)
    })
    .await;
    assert!(oauth.text.contains("OAuth"));
}

#[tokio::test]
async fn the_tool_list_follows_the_server_configuration() {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let mut client = Mcp::new(app.url("/s/acme-docs/mcp"));
    client.initialize("config-watcher").await;
    assert_eq!(client.tool_names().await, vec!["get_support"]);

    app.patch(
        &format!("/api/v1/orgs/{org}/servers/acme-docs"),
        &owner.token,
        json!({ "support_tool": false, "conformance_fixtures": true }),
    )
    .await;
    // Even the open session sees the change (within the tenant cache's second).
    let names = eventually("new tool list", Duration::from_secs(5), || async {
        let names = client.tool_names().await;
        (!names.contains(&"get_support".to_owned())).then_some(names)
    })
    .await;
    assert!(names.contains(&"test_simple_text".to_owned()), "{names:?}");
    let gone = client
        .call_tool("get_support", json!({ "title": "t", "description": "d" }))
        .await;
    assert_eq!(gone.error_code(), Some(-32602), "{}", gone.text);
}

/// A tenant's server and a 2025-era client that initialized a session on it.
struct Hostile {
    app: TestApp,
    owner: User,
    org: String,
    client: Mcp,
}

async fn an_initialized_client() -> Hostile {
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let mut client = Mcp::new(app.url("/s/acme-docs/mcp"));
    client.initialize("hostile").await;

    Hostile {
        app,
        owner,
        org,
        client,
    }
}

/// Unparsable or non-JSON-RPC bodies, batches, unknown methods, params a method cannot take, and
/// prompts (not served here).
async fn json_rpc_mistakes(fx: &Hostile) {
    let Hostile { client, .. } = fx;
    let parse = client.post_raw("{not json").await;
    assert_eq!(parse.status, StatusCode::BAD_REQUEST, "{}", parse.text);
    assert_eq!(parse.error_code(), Some(-32700));

    let not_rpc = client.post_raw(r#"{"hello":"world"}"#).await;
    assert_eq!(not_rpc.status.as_u16() / 100, 4, "{}", not_rpc.text);

    // 2025-11-25 has no JSON-RPC batches.
    let batch = client
        .post_raw(
            json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}])
                .to_string(),
        )
        .await;
    assert_eq!(batch.status.as_u16() / 100, 4, "{}", batch.text);

    let unknown_method = client.call("tools/frobnicate", json!({})).await;
    assert_eq!(
        unknown_method.error_code(),
        Some(-32601),
        "{}",
        unknown_method.text
    );

    assert!(
        unknown_method
            .text
            .contains("Method not found: tools/frobnicate"),
        "{}",
        unknown_method.text
    );

    // A method we serve with params it cannot take: invalid params, saying what is wrong.
    for (params, says) in [
        (json!({ "arguments": {} }), "missing field `name`"),
        (json!({ "name": 5 }), "invalid type: integer `5`"),
        (
            json!({ "name": "get_support", "arguments": [1, 2] }),
            "invalid type",
        ),
    ] {
        let bad = client.call("tools/call", params.clone()).await;
        assert_eq!(bad.error_code(), Some(-32602), "{params}: {}", bad.text);
        assert!(bad.text.contains(says), "{params}: {}", bad.text);
    }
    let no_params = client
        .post_raw(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call"}"#)
        .await;
    assert_eq!(no_params.error_code(), Some(-32602), "{}", no_params.text);
    // Prompts are not served here (no conformance fixtures): unknown, whatever the params.
    for params in [json!({ "name": "p" }), json!({ "nome": 5 })] {
        let prompts = client.call("prompts/get", params.clone()).await;
        assert_eq!(
            prompts.error_code(),
            Some(-32601),
            "{params}: {}",
            prompts.text
        );
    }
}

/// Unknown tools, wrong or missing arguments, and an oversized body.
async fn tool_call_mistakes(fx: &Hostile) {
    let Hostile { client, .. } = fx;
    let unknown_tool = client.call_tool("no_such_tool", json!({})).await;
    assert_eq!(
        unknown_tool.error_code(),
        Some(-32602),
        "{}",
        unknown_tool.text
    );

    let wrong_types = client
        .call_tool("get_support", json!({ "title": 42, "description": ["x"] }))
        .await;
    assert_eq!(wrong_types.result()["isError"], true);
    let missing = client.call_tool("get_support", json!({})).await;
    assert_eq!(missing.result()["isError"], true);
    let bad_email = client
        .call_tool(
            "get_support",
            json!({ "title": "t", "description": "d", "email": "nope" }),
        )
        .await;
    assert_eq!(bad_email.result()["isError"], true);

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"get_support","arguments":{{"title":"t","description":"{}"}}}}}}"#,
        "x".repeat(1024 * 1024 + 1024)
    );
    assert_eq!(
        client.post_raw(huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// An unknown protocol version, a wrong Accept or content type: JSON-RPC errors clients can show.
async fn transport_mistakes(fx: &Hostile) {
    let Hostile { client, .. } = fx;
    let bad_version = client
        .send(
            client
                .request(Method::POST)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "1999-01-01")
                .body(json!({"jsonrpc":"2.0","id":6,"method":"ping"}).to_string()),
        )
        .await;
    assert_eq!(bad_version.status, StatusCode::BAD_REQUEST);

    let wrong_accept = client
        .send(
            client
                .http
                .post(&client.url)
                .header("accept", "text/html")
                .header("content-type", "application/json")
                .body(json!({"jsonrpc":"2.0","id":7,"method":"ping"}).to_string()),
        )
        .await;
    assert_eq!(wrong_accept.status, StatusCode::NOT_ACCEPTABLE);
    // Transport mistakes answer with a JSON-RPC error clients can show, not plain text.
    assert_eq!(
        wrong_accept.error_code(),
        Some(-32600),
        "{}",
        wrong_accept.text
    );
    assert!(
        wrong_accept.text.contains("Accept"),
        "{}",
        wrong_accept.text
    );
    assert_eq!(
        bad_version.error_code(),
        Some(-32600),
        "{}",
        bad_version.text
    );
    let plain = client
        .send(
            client
                .request(Method::POST)
                .header("content-type", "text/plain")
                .body(json!({"jsonrpc":"2.0","id":8,"method":"ping"}).to_string()),
        )
        .await;
    assert_eq!(
        plain.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        plain.text
    );
    assert_eq!(plain.error_code(), Some(-32600), "{}", plain.text);

    // Methods the transport does not take: 405, naming those it does.
    for method in [Method::PUT, Method::PATCH, Method::OPTIONS] {
        let response = client
            .request(method.clone())
            .header("mcp-protocol-version", LEGACY)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some("GET, POST, DELETE"),
            "{method}"
        );
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], -32600, "{method}: {body}");
    }
    // A 2026-era DELETE: there are no sessions to end in that era.
    let response = client
        .request(Method::DELETE)
        .header("mcp-protocol-version", MODERN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );

    // Path segments that are not UTF-8 once decoded: refused as JSON-RPC like any other unknown
    // server (404) or bad tracking id (400), not as the router's plain text.
    let ping = json!({"jsonrpc":"2.0","id":10,"method":"ping"}).to_string();
    let app = &fx.app;
    for (path, status) in [
        ("/s/%FF/mcp", StatusCode::NOT_FOUND),
        ("/s/%FF/t/someone/mcp", StatusCode::NOT_FOUND),
        ("/s/%FF/t/%FF/mcp", StatusCode::NOT_FOUND),
        ("/s/acme-docs/t/%FF/mcp", StatusCode::BAD_REQUEST),
    ] {
        let reply = Mcp::new(app.url(path)).post_raw(ping.clone()).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        assert_eq!(reply.error_code(), Some(-32600), "{path}: {}", reply.text);
    }
    let by_host = Mcp::new(app.url("/t/%FF/mcp"))
        .with_host(format!("acme-docs.localhost:{}", port(app)))
        .post_raw(ping.clone())
        .await;
    assert_eq!(by_host.status, StatusCode::BAD_REQUEST, "{}", by_host.text);
    assert!(by_host.text.contains("tracking id"), "{}", by_host.text);
}

/// Hosts and origins: no such server, not our host, a foreign page, and the same origin.
async fn hosts_and_origins(fx: &Hostile) {
    let Hostile { app, client, .. } = fx;
    // Hosts and origins: no such server, not our host, a foreign page.
    let nobody = Mcp::new(app.url("/mcp"))
        .with_host(format!("nobody.localhost:{}", port(app)))
        .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    let bare_host = Mcp::new(app.url("/mcp"))
        .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .await;
    assert_eq!(bare_host.status, StatusCode::NOT_FOUND);
    assert!(bare_host.text.contains("/s/{slug}/mcp"));
    let rebinding = Mcp::new(app.url("/s/acme-docs/mcp"))
        .with_host("evil.example")
        .post_raw(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .await;
    assert_eq!(rebinding.status, StatusCode::FORBIDDEN);
    let foreign = client
        .send(
            client
                .request(Method::POST)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", LEGACY)
                .header("origin", "https://evil.example")
                .body(json!({"jsonrpc":"2.0","id":8,"method":"ping"}).to_string()),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let same_origin = client
        .send(
            client
                .request(Method::POST)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", LEGACY)
                .header("origin", format!("http://{}", host_of(app)))
                .body(json!({"jsonrpc":"2.0","id":9,"method":"ping"}).to_string()),
        )
        .await;
    assert_eq!(same_origin.status, StatusCode::OK, "{}", same_origin.text);
    // The same host under another scheme or port is another origin.
    let port: u16 = port(app).parse().unwrap();
    for origin in [
        format!("https://{}", host_of(app)),
        format!("http://127.0.0.1:{}", port + 1),
        "http://127.0.0.1".to_owned(),
    ] {
        let foreign = client
            .send(
                client
                    .request(Method::POST)
                    .header("content-type", "application/json")
                    .header("mcp-protocol-version", LEGACY)
                    .header("origin", &origin)
                    .body(json!({"jsonrpc":"2.0","id":10,"method":"ping"}).to_string()),
            )
            .await;
        assert_eq!(
            foreign.status,
            StatusCode::FORBIDDEN,
            "{origin}: {}",
            foreign.text
        );
        assert_eq!(foreign.error_code(), Some(-32600), "{}", foreign.text);
    }
}

/// An archived server answers no more, its open sessions end with it, and the process stays
/// healthy.
async fn archived_server(fx: &Hostile) {
    let Hostile {
        app, owner, client, ..
    } = fx;
    let org = fx.org.clone();
    // An archived server answers no more, and its open sessions end with it.
    let (status, _) = app
        .delete(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
        )
        .await;
    assert_eq!(status.as_u16() / 100, 2);
    let archived = eventually("archived server gone", Duration::from_secs(5), || async {
        let r = client.call("ping", json!({})).await;
        (r.status == StatusCode::NOT_FOUND).then_some(r)
    })
    .await;
    assert!(archived.text.contains("archived"), "{}", archived.text);

    // The process is still healthy after all of that.
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn json_rpc_mistakes_get_json_rpc_errors() {
    let fx = an_initialized_client().await;
    json_rpc_mistakes(&fx).await;
}

#[tokio::test]
async fn tool_call_mistakes_get_tool_errors_never_a_500() {
    let fx = an_initialized_client().await;
    tool_call_mistakes(&fx).await;
}

#[tokio::test]
async fn transport_mistakes_get_json_rpc_errors_not_plain_text() {
    let fx = an_initialized_client().await;
    transport_mistakes(&fx).await;
}

#[tokio::test]
async fn unknown_hosts_and_foreign_origins_are_refused() {
    let fx = an_initialized_client().await;
    hosts_and_origins(&fx).await;
}

#[tokio::test]
async fn an_archived_server_answers_no_more_and_the_process_stays_healthy() {
    let fx = an_initialized_client().await;
    archived_server(&fx).await;
}

/// Events of one type in an org, read from the event store (no projection in between).
async fn events_of(app: &TestApp, owner: &User, org: &str, event_type: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/events?type={event_type}"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// A session's end is recorded as its end user's doing when the URL names one, whether the
/// instance that ends it knows them (cached) or looks them up (another instance).
#[tokio::test]
async fn a_session_ended_by_its_end_user_names_them_on_any_instance() {
    let app = spawn_app().await;
    let second = app.env.start(&["serve"]);
    let (owner, org) = tenant(&app).await;
    let path = "/s/acme-docs/t/closer/mcp";
    let mut here = Mcp::new(app.url(path));
    here.initialize("closer").await;
    let mut there = Mcp::new(app.url(path));
    there.initialize("closer").await;
    let mut elsewhere = Mcp::new(format!("{}{path}", second.base()));
    elsewhere.session_id = there.session_id.clone();

    assert_eq!(here.delete_session().await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        elsewhere.delete_session().await.status,
        StatusCode::NO_CONTENT
    );
    let ended = eventually("both ends readable", Duration::from_secs(10), || async {
        let ended = events_of(&app, &owner, &org, "McpSessionEnded").await;
        (ended.len() == 2).then_some(ended)
    })
    .await;
    let identified = events_of(&app, &owner, &org, "EndUserIdentified").await;
    assert_eq!(identified.len(), 1, "{identified:?}");
    let closer = json!({ "kind": "end_user", "id": identified[0]["aggregate_id"] });
    for end in &ended {
        assert_eq!(end["metadata"]["actor"], closer, "{end}");
    }
}

/// A server answers the moment it is created, even on an instance that was just asked for its
/// slug in vain (an unknown slug is not cached), and a change made through an instance is seen
/// by that instance's next request.
#[tokio::test]
async fn a_new_server_answers_at_once_and_a_change_is_seen_at_once_where_it_was_made() {
    let app = spawn_app().await;
    let second = app.env.start(&["serve"]);
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    let on_second = Mcp::new(format!("{}/s/brand-new/mcp", second.base())).modern();
    let before = on_second.call("tools/list", json!({})).await;
    assert_eq!(before.status, StatusCode::NOT_FOUND, "{}", before.text);
    app.create_server(&owner, &org, "brand-new").await;
    let after = on_second.call("tools/list", json!({})).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);

    let here = Mcp::new(app.url("/s/brand-new/mcp")).modern();
    assert_eq!(here.tool_names().await, vec!["get_support"]);
    let (status, body) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/brand-new"),
            &owner.token,
            json!({ "auth_mode": "tracking" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refused = here.call("tools/list", json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
}

/// One org and its owner.
struct Org {
    owner: User,
    id: String,
}

impl Org {
    async fn new(app: &TestApp, email: &str, slug: &str) -> Self {
        let owner = app.signup(email).await;
        let id = app.create_org(&owner, slug).await;
        Self { owner, id }
    }
}

/// A slug of org A's server, served once by `cache` (another instance, which so caches it, with
/// `tracking_id` as an end user of A), then archived and given to a new server of org B through
/// `app`; returned (with B's server id) while `cache` still takes it for A's archived server
/// (within its tenant TTL of a second). A machine too slow to get there in time gets another
/// slug.
async fn slug_moved_behind_a_cache(
    app: &TestApp,
    cache: &Proc,
    (a, b): (&Org, &Org),
    prefix: &str,
    tracking_id: &str,
) -> (String, String) {
    for attempt in 0..5 {
        let slug = format!("{prefix}-{attempt}");
        app.create_server(&a.owner, &a.id, &slug).await;
        let warmed = std::time::Instant::now();
        let warm = Mcp::new(format!("{}/s/{slug}/t/{tracking_id}/mcp", cache.base())).modern();
        assert_eq!(warm.tool_names().await, vec!["get_support"]);
        let (status, body) = app
            .delete(
                &format!("/api/v1/orgs/{}/servers/{slug}", a.id),
                &a.owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let created = app.create_server(&b.owner, &b.id, &slug).await;
        if warmed.elapsed() < Duration::from_millis(700) {
            return (slug, created["id"].as_str().unwrap().to_owned());
        }
    }
    panic!("could not move a slug within the tenant cache's second");
}

/// A slug archived by one org and taken by another, while an instance still has the old server
/// cached: whatever that instance would write for the request (an end user, a ticket with an
/// email, a session, a call's record) is refused, never filed under the old org; the request
/// is answered as for an archived server, and the next one reaches the new server.
#[tokio::test]
async fn a_slug_taken_over_by_another_org_never_files_anything_under_the_old_one() {
    let app = spawn_app().await;
    let second = app.env.start(&["serve"]);
    let a = Org::new(&app, "a@old.test", "old-org").await;
    let b = Org::new(&app, "b@new.test", "new-org").await;
    let on_second = |slug: &str, tracking_id: &str| {
        Mcp::new(format!("{}/s/{slug}/t/{tracking_id}/mcp", second.base()))
    };
    let ticket = json!({ "title": "Help", "description": "d", "email": "b1@new.test" });

    // A new end user of B opening a ticket: identification, ticket and record.
    let (slug, b_server) = slug_moved_behind_a_cache(&app, &second, (&a, &b), "one", "a-1").await;
    let reply = on_second(&slug, "b-1")
        .modern()
        .call_tool("get_support", ticket.clone())
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(reply.error_code(), Some(-32600), "{}", reply.text);
    assert!(reply.text.contains("archived"), "{}", reply.text);
    // The stale entry was dropped: the same call now reaches B's server.
    let reply = on_second(&slug, "b-1")
        .modern()
        .call_tool("get_support", ticket.clone())
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    // A session started by an end user that instance knows in A: only the session's start.
    let (slug, _) = slug_moved_behind_a_cache(&app, &second, (&a, &b), "two", "known-2").await;
    let reply = on_second(&slug, "known-2")
        .call(
            "initialize",
            json!({ "protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": { "name": "stale", "version": "1" } }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.session_id.is_none(), "{:?}", reply.session_id);

    // A call of an unknown tool by an end user that instance knows in A: only the record.
    let (slug, _) = slug_moved_behind_a_cache(&app, &second, (&a, &b), "three", "known-3").await;
    let reply = on_second(&slug, "known-3")
        .modern()
        .call_tool("no_such_tool", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);

    // Once A's last end user is readable, so is anything committed before it: none of the
    // refused requests left a trace in A.
    let a_users = eventually(
        "A's end users readable",
        Duration::from_secs(10),
        || async {
            let users = events_of(&app, &a.owner, &a.id, "EndUserIdentified").await;
            (users.len() >= 3).then_some(users)
        },
    )
    .await;
    let tracked: Vec<&Value> = a_users
        .iter()
        .map(|e| &e["payload"]["tracking_id"])
        .collect();
    assert_eq!(tracked, ["a-1", "known-2", "known-3"], "{a_users:?}");
    for event_type in ["TicketOpened", "ToolCalled", "McpSessionStarted"] {
        let filed = events_of(&app, &a.owner, &a.id, event_type).await;
        assert!(filed.is_empty(), "{event_type} filed under A: {filed:?}");
    }
    // B's ticket is B's.
    let opened = eventually("B's ticket readable", Duration::from_secs(10), || async {
        let opened = events_of(&app, &b.owner, &b.id, "TicketOpened").await;
        (!opened.is_empty()).then_some(opened)
    })
    .await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["payload"]["server_id"], b_server.as_str());
    assert_eq!(opened[0]["payload"]["email"], "b1@new.test");
}

//! A request the MCP edge or the protocol refuses creates nothing: the end user a tracking id
//! names comes into being with their first accepted request, so the dashboard never counts
//! people who never made a call.

use crate::helpers::*;
use crate::mcp_raw::{Mcp, LEGACY};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

struct Tenant {
    app: TestApp,
    owner: User,
    org: String,
}

async fn tenant() -> Tenant {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    Tenant { app, owner, org }
}

impl Tenant {
    fn mcp(&self, tracking_id: &str) -> Mcp {
        Mcp::new(self.app.url(&format!("/s/acme-docs/t/{tracking_id}/mcp")))
    }

    /// Every `EndUserIdentified` event of the org (read from the event store, not a read
    /// model, so nothing here waits on a projector).
    async fn identified(&self) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(
                &format!("/api/v1/orgs/{}/events?type=EndUserIdentified", self.org),
                &self.owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    async fn users(&self) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(
                &format!("/api/v1/orgs/{}/users", self.org),
                &self.owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// After the refusals, one accepted request from `tracking_id`: exactly that end user
    /// exists (in the event log and, once projected, in the users list). The list is read
    /// after it shows the accepted one, so an end user a refusal had created before it would
    /// be there too.
    async fn only_end_user_is(&self, tracking_id: &str) {
        // The events page shows a commit once no older transaction is still running (its
        // cursor never skips a late commit), which may be a moment after the call answered.
        let events = eventually(
            "the accepted end user's EndUserIdentified readable",
            Duration::from_secs(10),
            || async {
                let events = self.identified().await;
                (!events.is_empty()).then_some(events)
            },
        )
        .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0]["payload"]["tracking_id"], tracking_id,
            "{events:?}"
        );
        let users = eventually(
            "the accepted end user listed",
            Duration::from_secs(10),
            || async {
                let users = self.users().await;
                (!users.is_empty()).then_some(users)
            },
        )
        .await;
        assert_eq!(users.len(), 1, "{users:?}");
        assert_eq!(users[0]["tracking_ids"], json!([tracking_id]), "{users:?}");
    }
}

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "refused", "version": "1.0" },
        },
    })
    .to_string()
}

#[tokio::test]
async fn refused_requests_create_no_end_user_and_the_first_accepted_one_does() {
    let t = tenant().await;

    // 406: a client that does not accept both JSON and an event stream.
    let mcp = t.mcp("new-406");
    let reply = mcp
        .send(
            mcp.http
                .post(&mcp.url)
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .body(initialize_body()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE, "{}", reply.text);

    // 415: a body that is not JSON by its content type.
    let mcp = t.mcp("new-415");
    let reply = mcp
        .send(
            mcp.request(reqwest::Method::POST)
                .header("content-type", "text/plain")
                .body(initialize_body()),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        reply.text
    );

    // 400: JSON that does not parse.
    let reply = t
        .mcp("new-400-json")
        .post_raw("{\"jsonrpc\": \"2.0\", ")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.error_code(), Some(-32700), "{}", reply.text);

    // 400: a 2025-era request other than initialize without a session.
    let reply = t.mcp("new-400-session").call("tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);

    // 404: a session that does not exist.
    let mut mcp = t.mcp("new-404");
    mcp.session_id = Some(uuid::Uuid::new_v4().to_string());
    let reply = mcp.call("tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);

    assert!(
        t.identified().await.is_empty(),
        "refusals identified someone"
    );
    assert!(t.users().await.is_empty(), "refusals created end users");

    // The first accepted request (an initialize) brings its end user into being.
    let mut mcp = t.mcp("first-call");
    mcp.initialize("accepted").await;
    t.only_end_user_is("first-call").await;

    // The session it got is theirs: their tool calls are filed under them.
    let reply = mcp
        .call_tool(
            "get_support",
            json!({"title": "Stuck", "description": "on step 2"}),
        )
        .await;
    assert_eq!(
        reply.message()["result"]["isError"],
        false,
        "{}",
        reply.text
    );
    assert_eq!(t.identified().await.len(), 1);
}

#[tokio::test]
async fn a_stateless_request_refused_creates_nothing_and_an_accepted_one_does() {
    let t = tenant().await;

    // 2026 era: a request refused for its Accept header, then one whose body is not JSON-RPC.
    let mcp = t.mcp("modern-user").modern();
    let reply = mcp
        .send(
            mcp.http
                .post(&mcp.url)
                .header("accept", "text/plain")
                .header("content-type", "application/json")
                .header("mcp-protocol-version", mcp.version)
                .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE, "{}", reply.text);
    let reply = mcp.post_raw("[").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(
        t.identified().await.is_empty(),
        "refusals identified someone"
    );

    // Its first accepted request, a tools/list, is the one that makes them known.
    let reply = mcp.call("tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.result()["tools"].is_array(), "{}", reply.text);
    t.only_end_user_is("modern-user").await;
}

/// Methods a server refuses, by the protocol or by its configuration, identify nobody: on a
/// server without the conformance fixtures, prompts, resources, completion and logging are
/// unknown methods; on one with them, an unknown prompt or resource and params a method cannot
/// take are refused too. Each comes with a tracking id never seen before.
#[tokio::test]
async fn methods_the_server_refuses_create_no_end_user() {
    let t = tenant().await;
    let unserved = [
        ("resources/list", json!({})),
        ("resources/templates/list", json!({})),
        ("resources/read", json!({ "uri": "test://static-text" })),
        ("prompts/list", json!({})),
        ("prompts/get", json!({ "name": "test_simple_prompt" })),
        // Params no method takes (the request rmcp cannot read is ours to answer).
        ("prompts/get", json!({ "name": "p", "arguments": 5 })),
        (
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "p" },
                    "argument": { "name": "a", "value": "b" } }),
        ),
        ("logging/setLevel", json!({ "level": "info" })),
    ];
    for (i, (method, params)) in unserved.into_iter().enumerate() {
        let reply = t
            .mcp(&format!("unserved-{i}"))
            .modern()
            .call(method, params)
            .await;
        assert_eq!(reply.error_code(), Some(-32601), "{method}: {}", reply.text);
    }

    // With the fixtures.
    let (status, body) = t
        .app
        .patch(
            &format!("/api/v1/orgs/{}/servers/acme-docs", t.org),
            &t.owner.token,
            json!({ "conformance_fixtures": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let anonymous = Mcp::new(t.app.url("/s/acme-docs/mcp")).modern();
    eventually("the fixtures served", Duration::from_secs(5), || async {
        let listed = anonymous.call("prompts/list", json!({})).await;
        listed.message()["result"]["prompts"]
            .is_array()
            .then_some(())
    })
    .await;
    let refused = [
        ("prompts/get", json!({ "name": "no_such_prompt" }), -32602),
        (
            "prompts/get",
            json!({ "name": "p", "arguments": 5 }),
            -32602,
        ),
        ("resources/read", json!({ "uri": "test://nothing" }), -32602),
    ];
    for (i, (method, params, code)) in refused.into_iter().enumerate() {
        let reply = t
            .mcp(&format!("refused-{i}"))
            .modern()
            .call(method, params)
            .await;
        assert_eq!(reply.error_code(), Some(code), "{method}: {}", reply.text);
    }
    assert!(
        t.identified().await.is_empty(),
        "refused methods identified someone"
    );

    // An accepted one of the same methods is a first request like any other.
    let reply = t
        .mcp("accepted")
        .modern()
        .call("prompts/get", json!({ "name": "test_simple_prompt" }))
        .await;
    assert!(reply.result()["messages"].is_array(), "{}", reply.text);
    t.only_end_user_is("accepted").await;
}

/// A refused request whose body arrives after its headers (as httpx writes it) leaves the
/// connection usable: the body is read before the refusal is answered.
#[tokio::test]
async fn a_refusal_keeps_the_connection_usable_when_the_body_comes_late() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let address = app.proc.base().trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let head = format!(
        "POST /s/nobody-here/mcp HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(body.as_bytes()).await.unwrap();
    async fn read_answer(socket: &mut tokio::net::TcpStream) -> String {
        let mut buffer = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
            .await
            .expect("an answer")
            .expect("read");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }
    let first = read_answer(&mut socket).await;
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    // The same connection serves the next request.
    let next = format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n\r\n");
    socket.write_all(next.as_bytes()).await.unwrap();
    let second = read_answer(&mut socket).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

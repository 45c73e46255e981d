//! Request ids on both edges (kept from the client or made up, echoed, carried into event
//! metadata) and what `/metrics` exposes.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn request_id_of(app: &TestApp, path: &str, sent: Option<&str>) -> String {
    let mut req = app.http.get(app.url(path));
    if let Some(id) = sent {
        req = req.header("x-request-id", id);
    }
    let resp = req.send().await.expect("request");
    resp.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every response echoes a request id")
        .to_owned()
}

async fn events_of_type(app: &TestApp, owner: &User, org: &str, event_type: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            &format!("/api/v1/orgs/{org}/events?type={event_type}"),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn both_edges_keep_or_make_a_request_id_and_events_carry_it() {
    let app = spawn_app().await;
    let made = request_id_of(&app, "/healthz", None).await;
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_eq!(
        request_id_of(&app, "/healthz", Some("req-1")).await,
        "req-1"
    );
    // Too long to keep: replaced.
    let long = "x".repeat(129);
    let replaced = request_id_of(&app, "/healthz", Some(&long)).await;
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    // Visible ASCII only: a space or a tab would split the id in a log line.
    for spaced in ["req 1", "req\t1"] {
        let replaced = request_id_of(&app, "/healthz", Some(spaced)).await;
        assert!(
            uuid::Uuid::parse_str(&replaced).is_ok(),
            "{spaced:?}: {replaced}"
        );
    }
    // A route that does not exist answers with one too.
    assert!(uuid::Uuid::parse_str(&request_id_of(&app, "/nowhere", None).await).is_ok());

    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let mcp = Mcp::new(app.url("/s/acme-docs/t/ada/mcp"));
    let reply = mcp
        .http
        .post(&mcp.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-request-id", "mcp-req-7")
        .body(
            json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": crate::mcp_raw::LEGACY,
                    "capabilities": {},
                    "clientInfo": { "name": "ids", "version": "1.0" },
                },
            })
            .to_string(),
        )
        .send()
        .await
        .expect("initialize");
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["x-request-id"], "mcp-req-7");
    // The MCP edge's refusals carry one as well.
    let refused = app
        .http
        .post(app.url("/s/no-such-server/mcp"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(refused.headers().contains_key("x-request-id"));

    for event_type in ["EndUserIdentified", "McpSessionStarted"] {
        // The events page shows a commit once no older transaction still runs, which may be a
        // moment after the request was answered.
        let events = eventually(
            "the MCP request's events readable",
            Duration::from_secs(10),
            || async {
                let events = events_of_type(&app, &owner, &org, event_type).await;
                (!events.is_empty()).then_some(events)
            },
        )
        .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0]["metadata"]["request_id"], "mcp-req-7",
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn metrics_expose_latency_lag_commit_groups_and_pools() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let mut mcp = Mcp::new(app.url("/s/acme-docs/t/ada/mcp"));
    mcp.initialize("metrics").await;
    let reply = mcp
        .call_tool("get_support", json!({"title": "t", "description": "d"}))
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    eventually("the relay caught up", Duration::from_secs(10), || async {
        let text = app.scrape().await?;
        text.contains("mcplatform_relay_lag_events 0").then_some(())
    })
    .await;
    // The dashboard and the audit log never read end users' activity: it is no lag of theirs.
    // (The exposition checked below is one read after the projections' checkpoints are.)
    let text = eventually(
        "the projections caught up",
        Duration::from_secs(10),
        || async {
            let text = app.scrape().await?;
            [
                "mcplatform_projection_lag_events{projection=\"dashboard\"} 0",
                "mcplatform_projection_lag_events{projection=\"audit_log\"} 0",
                "mcplatform_projection_lag_seconds{projection=\"dashboard\"} 0",
                "mcplatform_projection_lag_events{projection=\"usage\"} 0",
            ]
            .iter()
            .all(|line| text.contains(line))
            .then_some(text)
        },
    )
    .await;
    for expected in [
        "mcplatform_http_responses_total{class=\"2xx\"}",
        "mcplatform_event_store_head_position ",
        "mcplatform_projection_checkpoint_position{projection=\"usage\"}",
        "mcplatform_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/orgs/{org}/servers\",status=\"2xx\"} 1",
        "mcplatform_http_request_duration_seconds_bucket{method=\"POST\",route=\"/s/{slug}/t/{tracking_id}/mcp\",status=\"2xx\",le=\"0.0001\"}",
        "mcplatform_mcp_request_duration_seconds_count{method=\"initialize\"} 1",
        "mcplatform_mcp_request_duration_seconds_count{method=\"tools/call\",tool=\"get_support\"} 1",
        "mcplatform_group_commit_batch_units_count ",
        "mcplatform_group_commit_batch_events_count ",
        "mcplatform_group_commit_duration_seconds_count ",
        "mcplatform_relay_checkpoint_position ",
        "mcplatform_relay_lag_seconds ",
        "mcplatform_projection_lag_events{projection=\"usage\"}",
        "mcplatform_projection_lag_seconds{projection=\"usage\"}",
        "mcplatform_db_pool_connections{pool=\"main\"}",
        "mcplatform_db_pool_idle_connections{pool=\"background\"}",
        "mcplatform_db_pool_in_use_connections{pool=\"main\"}",
        "mcplatform_db_pool_max_connections{pool=\"main\"} 8",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

async fn scrape(app: &TestApp) -> Option<String> {
    app.scrape().await
}

/// The value of an unlabelled gauge in an exposition.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// The database gauges are read in the background, not by a scrape: with Postgres away a
/// scrape still answers, saying the last read failed and how old the values shown are; once
/// it is back, the reads succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_whether_the_database_gauges_are_fresh() {
    let (mut pg, app) = crate::faults::app_behind_postgres_proxy().await;
    const OK: &str = "mcplatform_db_gauges_read_ok";
    const AGE: &str = "mcplatform_db_gauges_read_age_seconds";
    eventually("a successful read", Duration::from_secs(15), || async {
        let text = scrape(&app).await?;
        (gauge(&text, OK) == Some(1.0) && gauge(&text, AGE)? < 60.0).then_some(())
    })
    .await;

    pg.cut().await;
    let text = eventually("the failed read shown", Duration::from_secs(30), || async {
        let text = scrape(&app).await?;
        (gauge(&text, OK) == Some(0.0)).then_some(text)
    })
    .await;
    // The values of the last successful read are still shown, with their age.
    assert!(
        gauge(&text, "mcplatform_relay_lag_events").is_some(),
        "{text}"
    );
    let age = gauge(&text, AGE).unwrap();
    let later = eventually("the age to grow", Duration::from_secs(30), || async {
        let text = scrape(&app).await?;
        let later = gauge(&text, AGE)?;
        (later > age).then_some(later)
    })
    .await;
    assert!(later > age);

    pg.restore().await;
    eventually(
        "reads to succeed again",
        Duration::from_secs(30),
        || async {
            let text = scrape(&app).await?;
            (gauge(&text, OK) == Some(1.0)).then_some(())
        },
    )
    .await;
}

/// A free port on loopback, for an address the binary is told to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `/metrics` on the main address needs the metrics token: without one it is refused, with a
/// wrong one too, and in any case of the `Bearer` scheme it is served.
#[tokio::test]
async fn metrics_on_the_main_address_need_the_token() {
    let app = spawn_app().await;
    let url = app.url("/metrics");
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "missing_token", "{body}");
    let resp = app
        .http
        .get(&url)
        .bearer_auth("e2e-metrics-token-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token", "{body}");
    // The platform's own access tokens are no metrics tokens.
    let owner = app.signup("owner@acme.dev").await;
    let resp = app
        .http
        .get(&url)
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let text = app.scrape().await.unwrap();
    assert!(text.contains("mcplatform_http_responses_total"), "{text}");
    let resp = app
        .http
        .get(&url)
        .header("authorization", format!("bearer {METRICS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// With no token, the main address serves no `/metrics`; `MCPLATFORM_METRICS_BIND` serves it,
/// and only it, without authentication.
#[tokio::test]
async fn metrics_without_a_token_are_only_on_their_own_address() {
    let env = TestEnv::new();
    let metrics_port = free_port();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let proc = env.start_env(
        &["up"],
        &[("MCPLATFORM_METRICS_BIND", &metrics_bind)],
        &["MCPLATFORM_METRICS_TOKEN"],
    );
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/metrics", proc.base()))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = http
        .get(format!("http://{metrics_bind}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.contains("mcplatform_http_responses_total"), "{text}");
    for other in ["/healthz", "/api/v1/orgs"] {
        let resp = http
            .get(format!("http://{metrics_bind}{other}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{other}");
    }

    // Neither configured: no metrics anywhere, and the server runs.
    let env = TestEnv::new();
    let proc = env.start_env(&["up"], &[], &["MCPLATFORM_METRICS_TOKEN"]);
    let resp = http
        .get(format!("{}/metrics", proc.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = http
        .get(format!("{}/healthz", proc.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

//! Real MCP clients that no one here wrote, against real tenants: the official Python SDK
//! (`mcp` 2.x, via tests/clients/python/mcp_client.py) and the official Rust SDK's client
//! (rmcp), in both protocol eras, including a session carried from one `serve` process to
//! another. `scripts/setup-test-clients.sh` installs the Python SDK into `.tools/venv`.

use crate::helpers::*;
use crate::mcp_protocol::tenant;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn python() -> PathBuf {
    let python = std::env::var_os("MCPL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with the MCP SDK at {}: run `bash scripts/setup-test-clients.sh` once \
         (or point MCPL_PYTHON at a python that has `mcp` 2.x)",
        python.display()
    );
    python
}

/// Runs the Python SDK client; returns its JSON report.
pub(crate) fn py_client(args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(repo().join("tests/clients/python/mcp_client.py"))
        .args(args)
        .output()
        .expect("run the Python MCP client");
    assert!(
        output.status.success(),
        "python client {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON report on stdout")
}

#[tokio::test]
async fn the_python_sdk_works_in_both_eras_and_across_instances() {
    let app = spawn_app().await;
    let second = app.env.start(&["serve"]);
    let (owner, org) = tenant(&app).await;
    let url = app.url("/s/acme-docs/t/py-user/mcp");

    // 2025 era: initialize, list, call, and leave the session open.
    let report = py_client(&[
        "--url",
        &url,
        "--era",
        "2025",
        "--list-tools",
        "--call",
        "get_support",
        "--args",
        r#"{"title":"From Python","description":"SDK 2.x","email":"py@example.com"}"#,
    ]);
    assert_eq!(report["protocol_version"], "2025-11-25");
    assert_eq!(report["tools"], json!(["get_support"]));
    assert_eq!(report["server_info"]["name"], "acme-docs");
    let result = &report["results"][0];
    assert_eq!(result["is_error"], false, "{report}");
    assert!(result["text"].as_str().unwrap().contains("TCK-"));
    let session = report["session_id"].as_str().expect("a session").to_owned();

    // The same session, continued by the SDK on the other process, then ended there.
    let second_url = format!("{}/s/acme-docs/t/py-user/mcp", second.base());
    let resumed = py_client(&[
        "--url",
        &second_url,
        "--resume-session",
        &session,
        "--list-tools",
        "--call",
        "get_support",
        "--args",
        r#"{"title":"Still me","description":"on the other instance"}"#,
        "--terminate",
    ]);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["results"][0]["is_error"], false, "{resumed}");
    assert_eq!(
        resumed["terminate_status"].as_u64().map(|s| s / 100),
        Some(2)
    );

    // 2026 era: discover, then stateless calls; an unknown tool is a protocol error.
    let modern = py_client(&[
        "--url",
        &url,
        "--era",
        "2026",
        "--list-tools",
        "--call",
        "get_support",
        "--args",
        r#"{"title":"Stateless","description":"2026-07-28"}"#,
        "--call",
        "no_such_tool",
        "--allow-rpc-errors",
    ]);
    assert_eq!(modern["protocol_version"], "2026-07-28");
    assert!(modern["session_id"].is_null());
    assert_eq!(modern["results"][0]["is_error"], false, "{modern}");
    assert!(modern["results"][1]["rpc_error"].is_object(), "{modern}");

    // All four calls recorded, against one end user, in both kinds of session.
    let calls = eventually("python calls recorded", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 4).then_some(items)
    })
    .await;
    assert_eq!(calls.len(), 4);
    let users: std::collections::HashSet<&str> = calls
        .iter()
        .filter_map(|c| c["end_user_id"].as_str())
        .collect();
    assert_eq!(users.len(), 1, "{calls:?}");
    assert!(calls
        .iter()
        .any(|c| c["client_name"].as_str().is_some_and(|n| n.contains("mcp"))));
    let (_, sessions) = app
        .get(&format!("/api/v1/orgs/{org}/sessions"), &owner.token)
        .await;
    let eras: std::collections::HashSet<&str> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["era"].as_str())
        .collect();
    assert_eq!(eras, ["grouped", "protocol"].into_iter().collect());
}

/// rmcp's client needs a handler; ours has nothing to say back to the server.
#[derive(Clone, Default)]
struct QuietClient;

impl rmcp::ClientHandler for QuietClient {}

async fn rmcp_session(
    url: &str,
    lifecycle: rmcp::service::ClientLifecycleMode,
) -> rmcp::service::RunningService<rmcp::RoleClient, QuietClient> {
    use rmcp::service::ClientServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
    QuietClient
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("rmcp client connects")
}

async fn rmcp_call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, QuietClient>,
    title: &str,
) -> rmcp::model::CallToolResult {
    let arguments = json!({ "title": title, "description": "from rmcp" });
    let params = rmcp::model::CallToolRequestParams::new("get_support")
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    client.call_tool(params).await.expect("tools/call")
}

#[tokio::test]
async fn the_rmcp_client_works_in_both_eras() {
    use rmcp::model::ProtocolVersion;
    use rmcp::service::ClientLifecycleMode;
    let app = spawn_app().await;
    let (owner, org) = tenant(&app).await;
    let url = app.url("/s/acme-docs/t/rust-user/mcp");

    // 2025 era: initialize and a session.
    let legacy = rmcp_session(&url, ClientLifecycleMode::Initialize).await;
    let info = legacy.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("acme-docs")
    );
    let tools = legacy.list_all_tools().await.expect("tools/list");
    assert_eq!(
        tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(),
        ["get_support"]
    );
    let result = rmcp_call(&legacy, "rmcp legacy").await;
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let unknown = legacy
        .call_tool(rmcp::model::CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err(), "unknown tool is a protocol error");
    legacy.cancel().await.expect("close");

    // 2026 era: server/discover and stateless calls.
    let modern = rmcp_session(
        &url,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await;
    let result = rmcp_call(&modern, "rmcp modern").await;
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let tools = modern.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 1);
    modern.cancel().await.expect("close");

    let calls = eventually("rmcp calls recorded", Duration::from_secs(15), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
            .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 3).then_some(items)
    })
    .await;
    assert_eq!(
        calls.iter().filter(|c| c["outcome"] == "error").count(),
        1,
        "the unknown tool is recorded as a failed call"
    );
}

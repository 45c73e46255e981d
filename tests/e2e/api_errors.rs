//! The error table, seen from outside: a problem's `type` resolves to a page about its code, the
//! OpenAPI document carries the catalogue, filters refuse what they always refused, and the MCP
//! edge words a tool error with the code the REST API gives the same failure.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Fetches a page as text: status, content type, body.
async fn page(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, resp.text().await.unwrap())
}

fn assert_refused(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "expected {status} {code}, got {body}");
    assert_eq!(body["code"], code, "{body}");
}

/// A 422 naming one field, with the message it has always had.
fn assert_field(got: &(StatusCode, Value), field: &str, message: &str) {
    assert_refused(got, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(got.1["errors"][0]["field"], field, "{}", got.1);
    assert_eq!(got.1["errors"][0]["message"], message, "{}", got.1);
}

#[tokio::test]
async fn a_problem_type_resolves_to_a_page_describing_its_code() {
    let app = spawn_app().await;
    let user = app.signup("owner@acme.dev").await;

    let (status, problem) = app.get("/api/v1/orgs/nope", &user.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["code"], "org_not_found");
    let kind = problem["type"].as_str().unwrap();
    assert_eq!(kind, "/problems/org_not_found");

    let (status, content_type, html) = page(&app, kind).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        html.contains("org_not_found") && html.contains("HTTP 404"),
        "{html}"
    );
    assert!(
        html.contains("not a member"),
        "the catalogue's sentence: {html}"
    );

    // The index lists every code; an unknown code is not a page.
    let (status, _, index) = page(&app, "/problems").await;
    assert_eq!(status, StatusCode::OK);
    assert!(index.contains("/problems/validation_failed"), "{index}");
    let got = app
        .call(Method::GET, "/problems/no_such_code", None, None)
        .await;
    assert_refused(&got, StatusCode::NOT_FOUND, "route_not_found");

    // They refuse query parameters as every other route does.
    for path in ["/problems?foo=1", "/problems/org_not_found?foo=1"] {
        let got = app.call(Method::GET, path, None, None).await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn the_openapi_document_carries_the_error_catalogue() {
    let app = spawn_app().await;
    let (status, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = doc["components"]["schemas"]["ErrorCode"]["oneOf"]
        .as_array()
        .expect("the catalogue");
    let status_of = |code: &str| {
        entries
            .iter()
            .find(|e| e["enum"][0] == code)
            .unwrap_or_else(|| panic!("{code} missing from the catalogue"))["x-status"]
            .as_u64()
    };
    // Codes clients and the test suite rely on, with their statuses.
    for (code, status) in [
        ("validation_failed", 422),
        ("invalid_query", 400),
        ("invalid_limit", 400),
        ("invalid_cursor", 400),
        ("missing_token", 401),
        ("forbidden", 403),
        ("org_not_found", 404),
        ("route_not_found", 404),
        ("method_not_allowed", 405),
        ("slug_taken", 409),
        ("illegal_transition", 409),
        ("payload_too_large", 413),
        ("unsupported_media_type", 415),
        ("rate_limited", 429),
        ("internal", 500),
        ("unavailable", 503),
    ] {
        assert_eq!(status_of(code), Some(status), "{code}");
    }
    assert!(entries.iter().all(|e| e["description"].is_string()));
    assert_eq!(
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}

#[tokio::test]
async fn filters_refuse_what_they_always_refused() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let get = |path: String| {
        let app = &app;
        let token = owner.token.clone();
        async move { app.get(&path, &token).await }
    };

    assert_field(
        &get(format!("/api/v1/orgs/{org}/tickets?status=bogus")).await,
        "status",
        "must be one of new, in_progress, awaiting_customer, resolved, closed",
    );
    assert_field(
        &get(format!("/api/v1/orgs/{org}/tool-calls?outcome=maybe")).await,
        "outcome",
        "must be ok or error",
    );
    assert_field(
        &get(format!("/api/v1/orgs/{org}/analytics/tools?bucket=week")).await,
        "bucket",
        "must be minute, hour or day",
    );
    // A range bound that is neither a date nor a time: 422 naming it, as the walkthrough
    // analytics always answered (tool calls answered 400 `invalid_query` before the forms of a
    // range were made one).
    assert_field(
        &get(format!("/api/v1/orgs/{org}/tool-calls?from=yesterday")).await,
        "from",
        "must be a date (YYYY-MM-DD) or an RFC 3339 time",
    );
    assert_field(
        &get(format!("/api/v1/orgs/{org}/walkthroughs?status=gone")).await,
        "status",
        "must be one of draft, published, unpublished, archived",
    );
    let got = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &owner.token,
            json!({ "email": "x@example.com", "role": "superuser" }),
        )
        .await;
    assert_field(&got, "role", "must be one of: owner, admin, member");

    // Every accepted value is accepted.
    for path in [
        "tickets?status=awaiting_customer",
        "tool-calls?outcome=error",
        "analytics/tools?bucket=day",
        "walkthroughs?status=archived",
    ] {
        let (status, body) = get(format!("/api/v1/orgs/{org}/{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, body) = get(format!("/api/v1/orgs/{org}/analytics/tools?bucket=day")).await;
    assert_eq!(
        (status, body["bucket"].as_str()),
        (StatusCode::OK, Some("day"))
    );

    // A value of the wrong type, an unknown parameter, a bad page: 400, as before.
    for (path, code) in [
        ("tickets?limit=abc", "invalid_query"),
        ("tickets?foo=1", "invalid_query"),
        ("tickets?status=new&status=closed", "invalid_query"),
        ("sessions?limit=0", "invalid_limit"),
        ("users?cursor=garbage", "invalid_cursor"),
    ] {
        let got = get(format!("/api/v1/orgs/{org}/{path}")).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, code);
    }

    // Whoever is not a member learns nothing, whatever the query.
    let stranger = app.signup("stranger@else.dev").await;
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}/tickets?status=new"),
            &stranger.token,
        )
        .await;
    assert_refused(&got, StatusCode::NOT_FOUND, "org_not_found");
}

#[tokio::test]
async fn a_tool_error_carries_the_code_the_rest_api_gives_the_same_failure() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-help").await;

    let mut client = Mcp::new(app.url("/s/acme-help/t/u1/mcp"));
    client.initialize("errors").await;
    let long_title = "t".repeat(201);
    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": long_title, "description": "d" }),
        )
        .await;
    let result = reply.result();
    assert_eq!(result["isError"], true, "{}", reply.text);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        text, "title must be between 1 and 200 characters (validation_failed)",
        "the detail and code of the REST API's 422"
    );

    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": "t", "description": "d", "priority": "high" }),
        )
        .await;
    let text = reply.result()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.ends_with("(validation_failed)"), "{text}");
    assert!(text.contains("unknown argument `priority`"), "{text}");
}

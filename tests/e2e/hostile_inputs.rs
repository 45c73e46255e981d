//! Inputs found by fuzzing the OpenAPI document (schemathesis): values Postgres cannot store or
//! compare, such as NUL bytes, are a 4xx and never a 500 or an endless retry.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn nul_bytes_and_control_characters_are_client_errors() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;

    // In path segments: not found.
    let (status, body) = app.get("/api/v1/orgs/ac%00me", &owner.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app
        .get(&format!("/api/v1/orgs/{org}/servers/x%00y"), &owner.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "server_not_found");
    let (status, _) = app
        .delete(&format!("/api/v1/orgs/{org}/members/a%00b"), &owner.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // In filters: a clear 400 naming the parameter, for pages and for the live stream, before
    // any route reads its query.
    for path in [
        format!("/api/v1/orgs/{org}/events?type=Server%00Created"),
        format!("/api/v1/orgs/{org}/events/stream?type=Server%00Created"),
        format!("/api/v1/orgs/{org}/tool-calls?tool=get%00support"),
    ] {
        let (status, body) = app.get(&path, &owner.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], "invalid_query");
        assert!(body["detail"].as_str().unwrap_or_default().contains("NUL"));
    }
    // Routes refuse query parameters they do not take, rather than ignore them.
    for path in [
        format!("/api/v1/orgs/{org}/dashboard?foo=1"),
        format!("/api/v1/orgs/{org}/members?limit=10"),
        format!("/api/v1/orgs/{org}/servers?foo=1"),
        format!("/api/v1/orgs/{org}?verbose"),
        // Whatever the name holds: a control character in it is no refusal of a value.
        format!("/api/v1/orgs/{org}/tickets?%1Ebogus=1"),
        format!("/api/v1/orgs/{org}/tool-calls?%1E=1"),
    ] {
        let (status, body) = app.get(&path, &owner.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], "invalid_query", "{path}: {body}");
    }
    let path = format!("/api/v1/orgs/{org}/events?type=drop%20table");
    let (status, body) = app.get(&path, &owner.token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    assert_eq!(body["code"], "invalid_type");

    // In bodies: validation errors, and a failed login with a NUL in the email is still
    // recorded (without the control character) and answered 401.
    let (status, body) = app
        .post(
            "/api/v1/orgs",
            &owner.token,
            json!({"name": "a\u{0}b", "slug": "nul"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A body that is JSON but not an object: serde would read `[]` as a PATCH of nothing.
    app.create_server(&owner, &org, "acme-docs").await;
    for body in [
        json!([]),
        json!(["Renamed"]),
        json!("Renamed"),
        json!(7),
        json!(null),
    ] {
        let (status, got) = app
            .patch(
                &format!("/api/v1/orgs/{org}/servers/acme-docs"),
                &owner.token,
                body.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {got}");
        assert_eq!(got["errors"][0]["field"], "body", "{body}: {got}");
        assert_eq!(got["errors"][0]["message"], "expected a JSON object");
    }

    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "own\u{0}er@acme.dev", "password": "whatever it is"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let pool = app.env.pool().await;
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LoginFailed' AND payload->>'email' = 'owner@acme.dev'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
}

/// A NUL reaching an event would be refused by every read model it is projected into, and a
/// projection cannot get past an event it cannot apply: one anonymous tool call would stop the
/// usage and ticket read models of every org. So the edges refuse it, facts recorded as sent
/// keep it as U+FFFD, and an event stored with one before (inserted here directly) reads as
/// U+FFFD too.
#[tokio::test]
async fn a_nul_in_text_is_refused_at_the_edges_and_never_stalls_a_projection() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;

    // REST bodies: 422 naming the field, at any depth, and nothing stored.
    let walkthroughs = format!("/api/v1/orgs/{org}/walkthroughs");
    let (status, body) = app
        .post(&walkthroughs, &owner.token, json!({ "title": "a\u{0}b" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "title", "{body}");
    let (status, created) = app
        .post(&walkthroughs, &owner.token, json!({ "title": "Tour" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let steps = format!("{walkthroughs}/{}/steps", created["id"].as_str().unwrap());
    let (status, body) = app
        .post(
            &steps,
            &owner.token,
            json!({ "title": "One", "content": "ok", "operations": ["run", "x\u{0}"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "operations[1]", "{body}");
    // An escaped backslash followed by `u0000` is plain text, not a NUL.
    let (status, body) = app
        .post(
            &walkthroughs,
            &owner.token,
            json!({ "title": "C: \\u0000" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["title"], "C: \\u0000");

    // MCP: a client naming itself with a NUL gets its session; a tool argument with one is a
    // tool error naming the field (recorded, with U+FFFD); the next call goes through.
    let mut client = Mcp::new(app.url("/s/acme-docs/t/user-1/mcp"));
    client.initialize("ide\u{0}x").await;
    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": "nul \u{0} here", "description": "d" }),
        )
        .await;
    let result = reply.result();
    assert_eq!(result["isError"], true, "{}", reply.text);
    assert!(
        reply.text.contains("`title` must not contain the NUL"),
        "{}",
        reply.text
    );
    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": "fine", "description": "d" }),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);

    // A ToolCalled event with a NUL in its arguments, as stored before the edges refused them.
    let pool = app.env.pool().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, org_id) \
         SELECT aggregate_type, gen_random_uuid()::text, 1, event_type, event_version, \
                replace(payload::text, '\"fine\"', '\"stored fi\\u0000ne\"')::json, metadata, org_id \
         FROM events WHERE event_type = 'ToolCalled' AND payload::text LIKE '%\"fine\"%'",
    )
    .execute(&pool)
    .await
    .unwrap();

    // Every call is projected, the stored NUL included, and the usage projection keeps going.
    let titles: Vec<Value> =
        eventually("tool calls projected", Duration::from_secs(15), || async {
            let (status, body) = app
                .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let items = body["items"].as_array().cloned().unwrap_or_default();
            (items.len() == 3).then(|| {
                items
                    .iter()
                    .map(|c| c["arguments"]["title"].clone())
                    .collect()
            })
        })
        .await;
    for title in ["nul \u{FFFD} here", "fine", "stored fi\u{FFFD}ne"] {
        assert!(titles.contains(&json!(title)), "{title} in {titles:?}");
    }
    let (status, sessions) = app
        .get(&format!("/api/v1/orgs/{org}/sessions"), &owner.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    assert_eq!(
        sessions["items"][0]["client_name"], "ide\u{FFFD}x",
        "{sessions}"
    );
    let out = app.env.cli(&["projections", "status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(!status.contains("invalid byte sequence"), "{status}");
    assert!(!status.contains("Unicode escape"), "{status}");
}

/// A path segment that is not UTF-8 once decoded (`%FF`) names nothing: on every documented
/// route, each of its parameters in turn, the answer is the 404 problem of what the parameter
/// names (the org's, while the org is asked first), never a 500 or a plain-text 400.
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_names_nothing_on_every_route() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    app.create_org(&owner, "acme").await;
    let (_, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let mut tried = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            for invalid in &params {
                let path: String = template
                    .split('/')
                    .map(|segment| match segment.strip_prefix('{') {
                        Some(_) if segment == format!("{{{invalid}}}") => "%FF",
                        Some(_) if segment == "{org}" => "acme",
                        Some(_) => "x",
                        None => segment,
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                let resp = app
                    .http
                    .request(
                        Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                        app.url(&path),
                    )
                    .bearer_auth(&owner.token)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
                assert_eq!(content_type, "application/problem+json", "{method} {path}");
                let code = body["code"].as_str().unwrap_or_default();
                assert!(code.ends_with("_not_found"), "{method} {path}: {body}");
                tried += 1;
            }
        }
    }
    assert!(tried > 50, "{tried} requests");

    // The resource's own code when the org is there: each route the review named.
    for (method, path, code) in [
        (Method::GET, "/api/v1/orgs/%FF", "org_not_found"),
        (Method::GET, "/api/v1/orgs/%FF/servers/x", "org_not_found"),
        (
            Method::GET,
            "/api/v1/orgs/acme/servers/%FF",
            "server_not_found",
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/tickets/%FF",
            "ticket_not_found",
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/users/%FF",
            "end_user_not_found",
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/sessions/%FF",
            "session_not_found",
        ),
        (
            Method::DELETE,
            "/api/v1/orgs/acme/members/%FF",
            "member_not_found",
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/walkthroughs/%FF/steps",
            "walkthrough_not_found",
        ),
        (Method::GET, "/problems/%FF", "route_not_found"),
    ] {
        let got = app.call(method, path, Some(&owner.token), None).await;
        assert_problem(&got, StatusCode::NOT_FOUND, code);
    }
    // Anonymous: signing in comes first, whatever the path names.
    let got = app
        .call(Method::GET, "/api/v1/orgs/acme/servers/%FF", None, None)
        .await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "missing_token");
}

//! The router and the OpenAPI document are one declaration (`api::routes`): every operation the
//! document lists is served, every route the router had before it is documented, and every
//! success answer has a schema. Also what the document says of itself, and the MCP URLs the API
//! hands out.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// A concrete path for a templated one: `{code}` a real error code, anything else `x`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{code}" => "internal",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_route_is_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();

    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_none() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = app.call(method.clone(), &concrete(path), None, None).await;
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            assert_ne!(
                body["code"], "route_not_found",
                "{method} {path} is documented but not routed"
            );
        }
    }

    // Every route the router served before routes and document became one declaration.
    for (method, path) in [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/auth/signup"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/orgs"),
        ("post", "/api/v1/orgs"),
        ("get", "/api/v1/orgs/{org}"),
        ("get", "/api/v1/orgs/{org}/members"),
        ("post", "/api/v1/orgs/{org}/members"),
        ("patch", "/api/v1/orgs/{org}/members/{member}"),
        ("delete", "/api/v1/orgs/{org}/members/{member}"),
        ("post", "/api/v1/invitations/{token}/accept"),
        ("get", "/api/v1/orgs/{org}/servers"),
        ("post", "/api/v1/orgs/{org}/servers"),
        ("get", "/api/v1/orgs/{org}/servers/{server}"),
        ("patch", "/api/v1/orgs/{org}/servers/{server}"),
        ("delete", "/api/v1/orgs/{org}/servers/{server}"),
        ("get", "/api/v1/orgs/{org}/tickets"),
        ("get", "/api/v1/orgs/{org}/tickets/{ticket}"),
        ("post", "/api/v1/orgs/{org}/tickets/{ticket}/status"),
        ("post", "/api/v1/orgs/{org}/tickets/{ticket}/comments"),
        ("post", "/api/v1/orgs/{org}/tickets/{ticket}/assign"),
        ("get", "/api/v1/orgs/{org}/users"),
        ("get", "/api/v1/orgs/{org}/users/{user}"),
        ("post", "/api/v1/orgs/{org}/users/{user}/unmerge"),
        ("get", "/api/v1/orgs/{org}/sessions"),
        ("get", "/api/v1/orgs/{org}/sessions/{session}"),
        ("get", "/api/v1/orgs/{org}/tool-calls"),
        ("get", "/api/v1/orgs/{org}/analytics/tools"),
        ("get", "/api/v1/orgs/{org}/walkthroughs"),
        ("post", "/api/v1/orgs/{org}/walkthroughs"),
        ("get", "/api/v1/orgs/{org}/walkthroughs/{walkthrough}"),
        ("patch", "/api/v1/orgs/{org}/walkthroughs/{walkthrough}"),
        (
            "post",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/publish",
        ),
        (
            "post",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/unpublish",
        ),
        (
            "post",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/archive",
        ),
        ("get", "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps"),
        (
            "post",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps",
        ),
        (
            "patch",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}",
        ),
        (
            "delete",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}",
        ),
        (
            "post",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}/move",
        ),
        (
            "get",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/versions",
        ),
        (
            "get",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/analytics",
        ),
        (
            "get",
            "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/sankey",
        ),
        ("get", "/api/v1/orgs/{org}/servers/{server}/walkthroughs"),
        ("post", "/api/v1/orgs/{org}/servers/{server}/walkthroughs"),
        (
            "patch",
            "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}",
        ),
        (
            "delete",
            "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}",
        ),
        ("get", "/api/v1/orgs/{org}/dashboard"),
        ("get", "/api/v1/orgs/{org}/audit"),
        ("get", "/api/v1/orgs/{org}/events"),
        ("get", "/api/v1/orgs/{org}/events/stream"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is routed but not documented"
        );
    }
}

#[tokio::test]
async fn every_success_answer_has_a_schema_and_the_document_says_what_the_api_is() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let responses = op["responses"].as_object().unwrap();
            let successes: Vec<_> = responses
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .collect();
            assert!(!successes.is_empty(), "{method} {path}: no success answer");
            for (status, response) in successes {
                if status == "204" {
                    continue;
                }
                let content = response["content"].as_object();
                assert!(
                    content.is_some_and(|c| !c.is_empty()),
                    "{method} {path}: {status} has no content"
                );
                for (media, body) in content.into_iter().flatten() {
                    assert!(
                        body["schema"].is_object(),
                        "{method} {path}: {status} {media} has no schema"
                    );
                }
            }
        }
    }

    let info = &doc["info"];
    assert_eq!(info["license"]["name"], "Apache-2.0");
    assert_eq!(info["license"]["identifier"], "Apache-2.0");
    let description = info["description"].as_str().unwrap();
    for topic in [
        "Bearer",
        "problem",
        "/problems/{code}",
        "next_cursor",
        "limit",
    ] {
        assert!(
            description.contains(topic),
            "the description covers {topic}"
        );
    }
}

#[tokio::test]
async fn a_servers_first_url_is_the_path_form_and_it_works() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;

    // The order is in the text: a parsed object does not keep it.
    let text = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/servers/acme-docs")))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let urls = &text[text.find("\"urls\":{").expect("urls") + "\"urls\":{".len()..];
    let (first, _) = urls.split_once(',').unwrap();
    let (key, url) = first.split_once(':').unwrap();
    assert_eq!(key, "\"mcp_path\"", "{text}");
    let url = url.trim_matches('"');
    assert!(url.ends_with("/s/acme-docs/mcp"), "{url}");

    // A client that resolves only the host it was given reaches the server at that URL.
    let mut client = Mcp::new(url);
    let reply = client.initialize("first-url").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(client
        .tool_names()
        .await
        .contains(&"get_support".to_owned()));
}

/// Checks real answers against the schemas the document gives them, with a JSON Schema
/// 2020-12 validator (formats asserted): a schema a real answer fails is a lie.
struct Schemas {
    doc: Value,
    checked: usize,
}

impl Schemas {
    async fn of(app: &TestApp) -> Self {
        Self {
            doc: document(app).await,
            checked: 0,
        }
    }

    /// Asserts that `body`, answered `status` to `method template`, fits the documented schema.
    #[track_caller]
    fn check(&mut self, method: &str, template: &str, got: &(StatusCode, Value)) {
        let (status, body) = got;
        assert!(status.is_success(), "{method} {template}: {status} {body}");
        let schema = &self.doc["paths"][template][method]["responses"][status.as_str()]["content"]
            ["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template}: no JSON schema documented for {status}"
        );
        // The components travel with the schema, so its `#/components/...` references resolve.
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{method} {template}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the answer does not fit its schema:\n{}\n{body}",
            errors.join("\n")
        );
        self.checked += 1;
    }
}

#[tokio::test]
async fn write_answers_fit_their_documented_schemas() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let member = app.signup("member@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let mut schemas = Schemas::of(&app).await;

    // Servers: create, update, archive.
    let servers = "/api/v1/orgs/{org}/servers";
    let server = "/api/v1/orgs/{org}/servers/{server}";
    let got = app
        .post(
            &format!("/api/v1/orgs/{org}/servers"),
            &owner.token,
            json!({ "name": "Docs", "slug": "acme-docs" }),
        )
        .await;
    schemas.check("post", servers, &got);
    let got = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
            json!({ "name": "Docs 2" }),
        )
        .await;
    schemas.check("patch", server, &got);
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
        )
        .await;
    schemas.check("get", server, &got);

    // Members: invitations (one accepted by its signed-up invitee), a role changed.
    let members = "/api/v1/orgs/{org}/members";
    let mut tokens = Vec::new();
    for email in ["member@acme.dev", "invited@acme.dev"] {
        let got = app
            .post(
                &format!("/api/v1/orgs/{org}/members"),
                &owner.token,
                json!({ "email": email, "role": "member" }),
            )
            .await;
        schemas.check("post", members, &got);
        tokens.push(got.1["invitation_token"].as_str().unwrap().to_owned());
    }
    let got = app.accept(&member, &tokens[0]).await;
    schemas.check("post", "/api/v1/invitations/{token}/accept", &got);
    let got = app
        .patch(
            &format!("/api/v1/orgs/{org}/members/member@acme.dev"),
            &owner.token,
            json!({ "role": "admin" }),
        )
        .await;
    schemas.check("patch", "/api/v1/orgs/{org}/members/{member}", &got);

    // Walkthroughs: one published and put on a server, its assignment changed, read back.
    app.create_server(&owner, &org, "acme-help").await;
    let (status, walkthrough) = app
        .post(
            &format!("/api/v1/orgs/{org}/walkthroughs"),
            &owner.token,
            json!({ "title": "Tour" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{walkthrough}");
    let id = walkthrough["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/walkthroughs/{id}/steps"),
            &owner.token,
            json!({ "title": "One", "content": "Do it" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/walkthroughs/{id}/publish"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = app
        .post(
            &format!("/api/v1/orgs/{org}/servers/acme-help/walkthroughs"),
            &owner.token,
            json!({ "walkthrough_id": id }),
        )
        .await;
    schemas.check(
        "post",
        "/api/v1/orgs/{org}/servers/{server}/walkthroughs",
        &got,
    );
    let got = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/acme-help/walkthroughs/{id}"),
            &owner.token,
            json!({ "enabled": false }),
        )
        .await;
    schemas.check(
        "patch",
        "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}",
        &got,
    );
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}/walkthroughs/{id}"),
            &owner.token,
        )
        .await;
    assert_eq!(
        got.1["servers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        got.1
    );
    schemas.check("get", "/api/v1/orgs/{org}/walkthroughs/{walkthrough}", &got);

    // Tickets: opened by an end user, then moved, commented and assigned.
    let mut client = Mcp::new(app.url("/s/acme-help/t/ada/mcp"));
    client.initialize("schemas").await;
    let reply = client
        .call_tool(
            "get_support",
            json!({ "title": "Help", "description": "Stuck" }),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    let ticket = eventually(
        "the ticket listed",
        std::time::Duration::from_secs(10),
        || async {
            let (_, body) = app
                .get(&format!("/api/v1/orgs/{org}/tickets"), &owner.token)
                .await;
            body["items"][0]["id"].as_str().map(str::to_owned)
        },
    )
    .await;
    let ticket_path = format!("/api/v1/orgs/{org}/tickets/{ticket}");
    let got = app
        .post(
            &format!("{ticket_path}/status"),
            &owner.token,
            json!({ "status": "in_progress" }),
        )
        .await;
    schemas.check("post", "/api/v1/orgs/{org}/tickets/{ticket}/status", &got);
    let got = app
        .post(
            &format!("{ticket_path}/comments"),
            &owner.token,
            json!({ "body": "On it" }),
        )
        .await;
    schemas.check("post", "/api/v1/orgs/{org}/tickets/{ticket}/comments", &got);
    let got = app
        .post(
            &format!("{ticket_path}/assign"),
            &owner.token,
            json!({ "member": member.email }),
        )
        .await;
    schemas.check("post", "/api/v1/orgs/{org}/tickets/{ticket}/assign", &got);

    // And the archive last: the server is read-only after it.
    let got = app
        .delete(
            &format!("/api/v1/orgs/{org}/servers/acme-docs"),
            &owner.token,
        )
        .await;
    schemas.check("delete", server, &got);
    assert_eq!(schemas.checked, 14);
}

/// Every error answer is documented as it is sent, `application/problem+json`, and the errors
/// a route's extractors give are documented on every route that uses them.
#[tokio::test]
async fn every_documented_error_is_problem_json_and_follows_from_what_the_route_reads() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut errors = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                // A dependency down is a readiness answer for load balancers, not a problem.
                if !(status.starts_with('4') || status.starts_with('5')) || path == "/readyz" {
                    continue;
                }
                let content = response["content"].as_object();
                let types: Vec<&String> = content.into_iter().flat_map(|c| c.keys()).collect();
                assert_eq!(
                    types,
                    ["application/problem+json"],
                    "{method} {path}: {status}"
                );
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}: {status}"
                );
                errors += 1;
            }
            let has = |status: &str| responses.contains_key(status);
            if op.get("security").is_some() {
                assert!(has("401"), "{method} {path}: signed in, so 401");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{method} {path}: a JSON body, so {status}");
                }
            }
            if path.contains("{org}") {
                assert!(has("404"), "{method} {path}: an org, so 404");
            }
        }
    }
    assert!(errors > 200, "{errors} error answers");
    // The routes the review found short.
    for (method, path, status) in [
        ("post", "/api/v1/auth/login", "422"),
        ("post", "/api/v1/auth/refresh", "422"),
        ("post", "/api/v1/auth/logout", "422"),
        ("get", "/api/v1/me", "400"),
        ("get", "/api/v1/orgs", "400"),
        ("get", "/api/v1/orgs", "401"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"][status].is_object(),
            "{method} {path}: {status}"
        );
    }
}

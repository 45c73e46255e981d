//! Walkthroughs: authored and published over REST, walked over MCP, and counted exactly in
//! progress, funnel analytics and the sankey graph.

use crate::helpers::*;
use crate::mcp_raw::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const WALK_TOOLS: [&str; 3] = [
    "list_walkthroughs",
    "select_walkthrough",
    "next_walkthrough_step",
];

/// Signs up `owner@{name}.test`, who creates the org `{name}` with the server `{name}-srv`.
async fn org_with_server(app: &TestApp, name: &str) -> (User, String) {
    let owner = app.signup(&format!("owner@{name}.test")).await;
    let org = app.create_org(&owner, name).await;
    app.create_server(&owner, &org, &format!("{name}-srv"))
        .await;
    (owner, org)
}

struct Author<'a> {
    app: &'a TestApp,
    user: &'a User,
    org: String,
}

impl<'a> Author<'a> {
    fn new(app: &'a TestApp, user: &'a User, org: &str) -> Self {
        Author {
            app,
            user,
            org: org.to_owned(),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/orgs/{}{rest}", self.org)
    }

    async fn create(&self, title: &str) -> String {
        let (status, body) = self
            .app
            .post(
                &self.path("/walkthroughs"),
                &self.user.token,
                json!({ "title": title, "description": "Learn the basics" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "draft");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn add_step(&self, wt: &str, title: &str, extra: Value) -> String {
        let mut body = json!({
            "title": title,
            "content": format!("Content of {title}"),
            "agent_instructions": format!("Instructions for {title}"),
            "operations": [format!("do {title}")],
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, step) = self
            .app
            .post(
                &self.path(&format!("/walkthroughs/{wt}/steps")),
                &self.user.token,
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{step}");
        step["id"].as_str().unwrap().to_owned()
    }

    async fn publish(&self, wt: &str) -> Value {
        let (status, body) = self
            .app
            .post(
                &self.path(&format!("/walkthroughs/{wt}/publish")),
                &self.user.token,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn assign(&self, server: &str, wt: &str, order: i32) {
        let (status, body) = self
            .app
            .post(
                &self.path(&format!("/servers/{server}/walkthroughs")),
                &self.user.token,
                json!({ "walkthrough_id": wt, "display_order": order }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A walkthrough with these steps, published and assigned to `server`: its id and the
    /// steps' ids.
    async fn published_on(
        &self,
        server: &str,
        title: &str,
        steps: &[&str],
    ) -> (String, Vec<String>) {
        let wt = self.create(title).await;
        let mut ids = Vec::new();
        for step in steps {
            ids.push(self.add_step(&wt, step, json!({})).await);
        }
        self.publish(&wt).await;
        self.assign(server, &wt, 0).await;
        (wt, ids)
    }

    async fn get(&self, rest: &str) -> (StatusCode, Value) {
        self.app.get(&self.path(rest), &self.user.token).await
    }
}

/// A 2026-era client of one end user (tracking id) on a server.
fn end_user(app: &TestApp, server: &str, tracking_id: &str) -> Mcp {
    Mcp::new(app.url(&format!("/s/{server}/t/{tracking_id}/mcp"))).modern()
}

async fn tool(client: &Mcp, name: &str, arguments: Value) -> Value {
    let reply = client.call_tool(name, arguments).await;
    let result = reply.result();
    assert!(result.is_object(), "{name}: {}", reply.text);
    result
}

async fn select(client: &Mcp, wt: &str, resume: bool) -> Value {
    let r = tool(
        client,
        "select_walkthrough",
        json!({ "walkthrough_id": wt, "resume_if_exists": resume }),
    )
    .await;
    assert_eq!(r["isError"], false, "{r}");
    r
}

async fn next(client: &Mcp, step: Option<&str>) -> Value {
    let args = match step {
        Some(s) => json!({ "current_step_id": s }),
        None => json!({}),
    };
    tool(client, "next_walkthrough_step", args).await
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn step_id(result: &Value) -> String {
    result["structuredContent"]["step"]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn wait_for_tools(client: &Mcp, present: bool) {
    eventually(
        "walkthrough tools listed",
        Duration::from_secs(10),
        || async {
            let names = client.tool_names().await;
            (WALK_TOOLS.iter().all(|t| names.iter().any(|n| n == t)) == present).then_some(())
        },
    )
    .await;
}

/// An org with servers wt-a and wt-b and a draft walkthrough that could be neither published nor
/// assigned empty, then got steps (added last and first, moved, one removed), checked at each step.
struct Draft {
    app: TestApp,
    owner: User,
    org: String,
    wt: String,
    s1: String,
    s15: String,
    s2: String,
}

async fn a_drafted_walkthrough() -> Draft {
    let app = spawn_app().await;
    let owner = app.signup("owner@wt.test").await;
    let org = app.create_org(&owner, "wt-org").await;
    app.create_server(&owner, &org, "wt-a").await;
    app.create_server(&owner, &org, "wt-b").await;
    let a = Author::new(&app, &owner, &org);
    let wt = a.create("Quickstart").await;

    // Publishing nothing, assigning a draft: refused.
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/publish")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_steps"))
    );
    let (status, body) = app
        .post(
            &a.path("/servers/wt-a/walkthroughs"),
            &owner.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_published"))
    );

    // Steps: new ones go last; after_step_id null puts one first; ids survive reordering.
    let s1 = a.add_step(&wt, "Install", json!({})).await;
    let s2 = a.add_step(&wt, "Configure", json!({})).await;
    let s0 = a
        .add_step(&wt, "Welcome", json!({ "after_step_id": null }))
        .await;
    let s15 = a
        .add_step(&wt, "Verify", json!({ "after_step_id": s1 }))
        .await;
    let order = |body: &Value| -> Vec<String> {
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = a.get(&format!("/walkthroughs/{wt}")).await;
    assert_eq!(
        order(&body),
        vec![s0.clone(), s1.clone(), s15.clone(), s2.clone()]
    );
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s0}/move")),
            &owner.token,
            json!({ "after_step_id": s2 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        order(&body),
        vec![s1.clone(), s15.clone(), s2.clone(), s0.clone()]
    );
    let (status, body) = app
        .delete(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s15}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(order(&body), vec![s1.clone(), s2.clone(), s0.clone()]);

    Draft {
        app,
        owner,
        org,
        wt,
        s1,
        s15,
        s2,
    }
}

/// Bad input: moving after itself, unknown anchors and steps, foreign ids, empty titles, a move
/// that forgot where.
async fn bad_step_input(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let s1 = fx.s1.clone();
    let s15 = fx.s15.clone();
    let a = Author::new(app, owner, &org);
    // Bad input: moving after itself, unknown anchors and steps, foreign ids, empty titles.
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s1}/move")),
            &owner.token,
            json!({ "after_step_id": s1 }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s1}/move")),
            &owner.token,
            json!({ "after_step_id": "00000000-0000-0000-0000-000000000001" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A body that forgot where to move the step is refused, not read as "first".
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s1}/move")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "after_step_id", "{body}");
    let (status, body) = app
        .patch(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s15}")),
            &owner.token,
            json!({ "title": "gone" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("step_not_found"))
    );
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/steps")),
            &owner.token,
            json!({ "title": "  ", "content": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "title");
    let (status, _) = a.get("/walkthroughs/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Publish: version 1; publishing again without changes is refused; drafting goes on into version
/// 2.
async fn publish(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let s2 = fx.s2.clone();
    let a = Author::new(app, owner, &org);
    // Publish: version 1; publishing again without changes is refused; drafting goes on.
    let v1 = a.publish(&wt).await;
    assert_eq!(v1["status"], "published");
    assert_eq!(v1["published_version"], 1);
    assert_eq!(v1["unpublished_changes"], false);
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/publish")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("nothing_to_publish"))
    );
    let (status, edited) = app
        .patch(
            &a.path(&format!("/walkthroughs/{wt}/steps/{s2}")),
            &owner.token,
            json!({ "content": "Configure it like this." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["content"], "Configure it like this.");
    assert_eq!(edited["title"], "Configure", "untouched fields are kept");
    let (_, body) = a.get(&format!("/walkthroughs/{wt}")).await;
    assert_eq!(body["unpublished_changes"], true);
    a.publish(&wt).await;
    let (_, versions) = a.get(&format!("/walkthroughs/{wt}/versions")).await;
    let items = versions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], 2);
    assert_eq!(items[0]["steps"][1]["content"], "Configure it like this.");
    assert_eq!(items[1]["steps"][1]["content"], "Content of Configure");
}

/// Assignments: to many servers, updated, removed; twice is a conflict.
async fn assignments(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let a = Author::new(app, owner, &org);
    // Assignments: to many servers, updated, removed; twice is a conflict.
    a.assign("wt-a", &wt, 2).await;
    a.assign("wt-b", &wt, 1).await;
    let (status, body) = app
        .post(
            &a.path("/servers/wt-a/walkthroughs"),
            &owner.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_assigned"))
    );
    let (status, body) = app
        .patch(
            &a.path(&format!("/servers/wt-a/walkthroughs/{wt}")),
            &owner.token,
            json!({ "enabled": false, "display_order": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["enabled"].as_bool(), body["display_order"].as_i64()),
        (Some(false), Some(5))
    );
    let (_, body) = a.get(&format!("/walkthroughs/{wt}")).await;
    assert_eq!(body["servers"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .delete(
            &a.path(&format!("/servers/wt-b/walkthroughs/{wt}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .delete(
            &a.path(&format!("/servers/wt-b/walkthroughs/{wt}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = a.get("/servers/wt-b/walkthroughs").await;
    assert_eq!(listed["items"], json!([]));
}

/// Nothing new goes on an archived server.
async fn archived_server(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let a = Author::new(app, owner, &org);
    // Nothing new goes on an archived server.
    let gone = app.create_server(owner, &org, "wt-gone").await;
    let gone_id = gone["id"].as_str().unwrap().to_owned();
    let (status, _) = app.delete(&a.path("/servers/wt-gone"), &owner.token).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = app
        .post(
            &a.path(&format!("/servers/{gone_id}/walkthroughs")),
            &owner.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("server_archived")),
        "{body}"
    );
}

/// Another org's walkthrough and server are not found; a plain member may not author.
async fn other_org_and_members(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let a = Author::new(app, owner, &org);
    // Another org's walkthrough and server are not found; a plain member may not author.
    let other = app.signup("other@wt.test").await;
    let other_org = app.create_org(&other, "wt-other").await;
    app.create_server(&other, &other_org, "wt-other-srv").await;
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{other_org}/servers/wt-other-srv/walkthroughs"),
            &other.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a foreign walkthrough");
    let (status, _) = app
        .post(
            &a.path("/servers/wt-other-srv/walkthroughs"),
            &owner.token,
            json!({ "walkthrough_id": wt }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a foreign server");
    let (status, _) = app
        .get(
            &format!("/api/v1/orgs/{other_org}/walkthroughs/{wt}"),
            &other.token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.add_member(owner, &a.org, &other, "member").await;
    let (status, _) = app
        .post(
            &a.path("/walkthroughs"),
            &other.token,
            json!({ "title": "Mine" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get(&a.path("/walkthroughs"), &other.token).await;
    assert_eq!(status, StatusCode::OK, "members read");
}

/// Unpublished then published again without edits: the same version; archived is read-only, leaves
/// the default list, and can still be taken off its server.
async fn unpublish_republish_archive(fx: &Draft) {
    let Draft { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let a = Author::new(app, owner, &org);
    // Unpublish and archive: archived is read-only and leaves the default list.
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/unpublish")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("unpublished"))
    );
    // Published again without edits: the same version is shown again, not a copy of it.
    let body = a.publish(&wt).await;
    assert_eq!(
        (body["status"].as_str(), body["published_version"].as_i64()),
        (Some("published"), Some(2)),
        "{body}"
    );
    let (_, versions) = a.get(&format!("/walkthroughs/{wt}/versions")).await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/unpublish")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/archive")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("archived"))
    );
    let (status, body) = app
        .patch(
            &a.path(&format!("/walkthroughs/{wt}")),
            &owner.token,
            json!({ "title": "New" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("walkthrough_archived"))
    );
    let (_, list) = a.get("/walkthroughs").await;
    assert_eq!(list["items"], json!([]));
    let (_, list) = a.get("/walkthroughs?status=archived").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Read-only, but it can still be taken off the server it was on.
    let (status, body) = app
        .delete(
            &a.path(&format!("/servers/wt-a/walkthroughs/{wt}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, listed) = a.get("/servers/wt-a/walkthroughs").await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn a_draft_can_be_neither_published_nor_assigned_and_steps_keep_their_ids() {
    a_drafted_walkthrough().await;
}

#[tokio::test]
async fn bad_step_input_is_refused() {
    let fx = a_drafted_walkthrough().await;
    bad_step_input(&fx).await;
}

#[tokio::test]
async fn publishing_makes_versions_and_drafting_goes_on() {
    let fx = a_drafted_walkthrough().await;
    publish(&fx).await;
}

#[tokio::test]
async fn a_walkthrough_is_assigned_to_many_servers_updated_and_removed() {
    let fx = a_drafted_walkthrough().await;
    publish(&fx).await;
    assignments(&fx).await;
}

#[tokio::test]
async fn nothing_new_goes_on_an_archived_server() {
    let fx = a_drafted_walkthrough().await;
    publish(&fx).await;
    assignments(&fx).await;
    archived_server(&fx).await;
}

#[tokio::test]
async fn another_orgs_walkthroughs_are_not_found_and_members_only_read() {
    let fx = a_drafted_walkthrough().await;
    publish(&fx).await;
    other_org_and_members(&fx).await;
}

#[tokio::test]
async fn a_republished_walkthrough_keeps_its_version_and_an_archived_one_is_read_only() {
    let fx = a_drafted_walkthrough().await;
    publish(&fx).await;
    assignments(&fx).await;
    unpublish_republish_archive(&fx).await;
}

/// A three-step walkthrough published on a server (its tools listed only then, its mistakes
/// explained), and five end users walked over MCP: u1 and u2 finish, u3 stops on step 2, u4 only
/// starts, u5 restarts then finishes.
struct Population {
    app: TestApp,
    owner: User,
    org: String,
    wt: String,
    s1: String,
    s2: String,
    s3: String,
    u1: Mcp,
}

async fn a_population_walked() -> Population {
    let app = spawn_app().await;
    let (owner, org) = org_with_server(&app, "funnel").await;
    let a = Author::new(&app, &owner, &org);

    // No published walkthrough assigned: the tools are not listed.
    let probe = end_user(&app, "funnel-srv", "probe");
    wait_for_tools(&probe, false).await;

    let wt = a.create("Getting started").await;
    let s1 = a.add_step(&wt, "Install", json!({})).await;
    let s2 = a.add_step(&wt, "Configure", json!({})).await;
    let s3 = a.add_step(&wt, "Deploy", json!({})).await;
    a.publish(&wt).await;
    a.assign("funnel-srv", &wt, 0).await;
    wait_for_tools(&probe, true).await;

    // The list shows the walkthrough with the caller's progress.
    let listed = tool(&probe, "list_walkthroughs", json!({})).await;
    assert_eq!(listed["isError"], false);
    let item = &listed["structuredContent"]["walkthroughs"][0];
    assert_eq!(
        (item["id"].as_str(), item["step_count"].as_i64()),
        (Some(wt.as_str()), Some(3))
    );
    assert_eq!(item["progress"]["status"], "not_started");

    // Mistakes are tool errors that say what to do.
    let r = next(&probe, None).await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains("select_walkthrough"), "{r}");
    let r = tool(
        &probe,
        "select_walkthrough",
        json!({ "walkthrough_id": "nope" }),
    )
    .await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains(&wt), "names what is available: {r}");
    let r = tool(&probe, "select_walkthrough", json!({ "walkthrough_id": 5 })).await;
    assert_eq!(r["isError"], true);
    let anonymous = Mcp::new(app.url("/s/funnel-srv/mcp")).modern();
    let r = tool(
        &anonymous,
        "select_walkthrough",
        json!({ "walkthrough_id": wt }),
    )
    .await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains("/t/"), "{r}");

    // u1 finishes naming each step; u2 finishes without naming them.
    let u1 = end_user(&app, "funnel-srv", "u1");
    let first = select(&u1, &wt, true).await;
    assert_eq!(step_id(&first), s1);
    let rendered = text(&first);
    assert!(rendered.contains("<agent_instructions>\nInstructions for Install"));
    assert!(rendered.contains("<user_content>\nContent of Install"));
    assert!(rendered.contains("do Install"));
    assert_eq!(step_id(&next(&u1, Some(&s1)).await), s2);
    assert_eq!(step_id(&next(&u1, Some(&s2)).await), s3);
    let done = next(&u1, Some(&s3)).await;
    assert_eq!(done["isError"], false);
    assert_eq!(done["structuredContent"]["status"], "completed");
    let again = next(&u1, None).await;
    assert_eq!(again["isError"], true, "nothing left to complete");

    let u2 = end_user(&app, "funnel-srv", "u2");
    select(&u2, &wt, true).await;
    for _ in 0..3 {
        assert_eq!(next(&u2, None).await["isError"], false);
    }

    // u3 stops on step 2; a stale step id is refused with the real current step.
    let mut u3 = Mcp::new(app.url("/s/funnel-srv/t/u3/mcp"));
    u3.initialize("funnel-legacy").await;
    select(&u3, &wt, true).await;
    next(&u3, Some(&s1)).await;
    let stale = next(&u3, Some(&s1)).await;
    assert_eq!(stale["isError"], true);
    assert_eq!(step_id(&stale), s2, "{stale}");
    assert!(text(&stale).contains("not the current step"));
    // Progress survives a new session: a fresh client resumes at step 2.
    let u3_again = end_user(&app, "funnel-srv", "u3");
    let resumed = select(&u3_again, &wt, true).await;
    assert_eq!(step_id(&resumed), s2);
    assert!(text(&resumed).contains("Resuming"));

    // u4 only starts; u5 restarts from step 2, then finishes.
    select(&end_user(&app, "funnel-srv", "u4"), &wt, true).await;
    let u5 = end_user(&app, "funnel-srv", "u5");
    select(&u5, &wt, true).await;
    next(&u5, None).await;
    let restarted = select(&u5, &wt, false).await;
    assert_eq!(step_id(&restarted), s1);
    for _ in 0..3 {
        next(&u5, None).await;
    }

    Population {
        app,
        owner,
        org,
        wt,
        s1,
        s2,
        s3,
        u1,
    }
}

/// Analytics: starts 6 (one a restart), completions 3; per step reached, completed, restarted and
/// dropped.
async fn funnel(fx: &Population) {
    let Population { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let s1 = fx.s1.clone();
    let s2 = fx.s2.clone();
    let s3 = fx.s3.clone();
    let a = Author::new(app, owner, &org);
    // Analytics: starts 6 (one a restart), completions 3; per step reached / completed /
    // restarted / dropped.
    let today = chrono::Utc::now().date_naive().to_string();
    let analytics = eventually("analytics", Duration::from_secs(15), || async {
        let (status, body) = a
            .get(&format!(
                "/walkthroughs/{wt}/analytics?from={today}&to={today}"
            ))
            .await;
        // Everything applied: wait for the last step's completions too, not only the totals.
        (status == StatusCode::OK
            && body["completions"] == 3
            && body["starts"] == 6
            && body["steps"][2]["completed"] == 3)
            .then_some(body)
    })
    .await;
    assert_eq!(analytics["restarts"], 1);
    assert_eq!(analytics["completion_rate"], 0.5);
    let steps: Vec<(String, i64, i64, i64, i64)> = analytics["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_owned(),
                s["reached"].as_i64().unwrap(),
                s["completed"].as_i64().unwrap(),
                s["restarted"].as_i64().unwrap(),
                s["dropped"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (s1.clone(), 6, 5, 0, 1),
            (s2.clone(), 5, 3, 1, 1),
            (s3.clone(), 3, 3, 0, 0),
        ]
    );
    assert!(analytics["steps"][0]["median_time_on_step_ms"].is_number());
    assert_eq!(analytics["daily"].as_array().unwrap().len(), 1);
    assert_eq!(analytics["daily"][0]["starts"], 6);
}

/// Sankey: exactly these links.
async fn sankey(fx: &Population) {
    let Population { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let s1 = fx.s1.clone();
    let s2 = fx.s2.clone();
    let s3 = fx.s3.clone();
    let a = Author::new(app, owner, &org);
    let today = chrono::Utc::now().date_naive().to_string();
    // Sankey: exactly these links.
    let (status, sankey) = a
        .get(&format!(
            "/walkthroughs/{wt}/sankey?from={today}&to={today}&server=funnel-srv"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{sankey}");
    let mut links: Vec<(String, String, i64)> = sankey["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["source"].as_str().unwrap().to_owned(),
                l["target"].as_str().unwrap().to_owned(),
                l["value"].as_i64().unwrap(),
            )
        })
        .collect();
    links.sort();
    let mut expected = vec![
        ("start".to_owned(), s1.clone(), 6),
        (s1.clone(), s2.clone(), 5),
        (s2.clone(), s3.clone(), 3),
        (s3.clone(), "completed".to_owned(), 3),
        (s2.clone(), "restarted".to_owned(), 1),
        (s1.clone(), "dropped".to_owned(), 1),
        (s2.clone(), "dropped".to_owned(), 1),
    ];
    expected.sort();
    assert_eq!(links, expected);
    let labels: Vec<&str> = sankey["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["label"].as_str())
        .collect();
    assert!(labels.contains(&"Configure"), "{labels:?}");
}

/// A window without activity, another server, bad windows.
async fn windows(fx: &Population) {
    let Population { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let a = Author::new(app, owner, &org);
    // A window without activity, another server, bad windows.
    let (_, empty) = a
        .get(&format!(
            "/walkthroughs/{wt}/analytics?from=2020-01-01&to=2020-01-31"
        ))
        .await;
    assert_eq!(empty["starts"], 0);
    assert_eq!(empty["daily"].as_array().unwrap().len(), 31);
    let (status, _) = a
        .get(&format!(
            "/walkthroughs/{wt}/analytics?from=2021-02-01&to=2021-01-01"
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = a
        .get(&format!("/walkthroughs/{wt}/sankey?from=yesterday"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = a
        .get(&format!("/walkthroughs/{wt}/sankey?server=no-such-server"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Progress per end user and on the dashboard.
async fn progress(fx: &Population) {
    let Population { app, owner, .. } = fx;
    let org = fx.org.clone();
    let s2 = fx.s2.clone();
    let a = Author::new(app, owner, &org);
    // Progress per end user and on the dashboard.
    let (_, users) = a.get("/users?limit=50").await;
    let u3_id = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["tracking_ids"] == json!(["u3"]))
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .expect("u3 is an end user");
    let detail = eventually("u3 progress", Duration::from_secs(10), || async {
        let (_, body) = a.get(&format!("/users/{u3_id}")).await;
        (body["walkthroughs"]
            .as_array()
            .is_some_and(|w| !w.is_empty()))
        .then_some(body)
    })
    .await;
    let p = &detail["walkthroughs"][0];
    assert_eq!(p["status"], "in_progress");
    assert_eq!(p["steps_completed"], 1);
    assert_eq!(p["current_step_id"], s2);
    assert_eq!(p["title"], "Getting started");
    let (_, dash) = a.get("/dashboard").await;
    assert_eq!(dash["counters"]["walkthroughs_active"], 2, "u3 and u4");
    assert_eq!(dash["counters"]["walkthroughs_completed"], 3);
}

/// Every step completion is an event carrying what analytics need.
async fn events(fx: &Population) {
    let Population { app, owner, .. } = fx;
    let org = fx.org.clone();
    let a = Author::new(app, owner, &org);
    // Every step completion is an event carrying what analytics need.
    let (_, events) = a.get("/events?type=StepCompleted&limit=100").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 11, "u1 3, u2 3, u3 1, u5 1 + 3");
    let payload = &items[0]["payload"];
    for field in [
        "end_user_id",
        "server_id",
        "version",
        "step_id",
        "time_on_step_ms",
    ] {
        assert!(!payload[field].is_null(), "{field} missing: {payload}");
    }
}

/// u1 starts over: one more run under way, and the run u1 completed still counts.
async fn start_over(fx: &Population) {
    let Population { app, owner, u1, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let s1 = fx.s1.clone();
    let a = Author::new(app, owner, &org);
    // u1 starts over: one more run under way, and the run u1 completed still counts.
    let over = select(u1, &wt, false).await;
    assert_eq!(step_id(&over), s1);
    eventually("u1's new run counted", Duration::from_secs(10), || async {
        let (_, dash) = a.get("/dashboard").await;
        (dash["counters"]["walkthroughs_active"] == 3).then_some(())
    })
    .await;
    let (_, dash) = a.get("/dashboard").await;
    assert_eq!(dash["counters"]["walkthroughs_completed"], 3, "{dash}");
}

#[tokio::test]
async fn a_population_walks_a_walkthrough_over_mcp() {
    a_population_walked().await;
}

#[tokio::test]
async fn funnel_analytics_count_a_scripted_population_exactly() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
}

#[tokio::test]
async fn the_sankey_has_exactly_the_populations_links() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
    sankey(&fx).await;
}

#[tokio::test]
async fn analytics_windows_filter_and_bad_ones_are_refused() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
    windows(&fx).await;
}

#[tokio::test]
async fn progress_shows_per_end_user_and_on_the_dashboard() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
    progress(&fx).await;
}

#[tokio::test]
async fn step_completions_are_events_carrying_what_analytics_need() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
    events(&fx).await;
}

#[tokio::test]
async fn starting_over_counts_a_new_run_and_keeps_the_completed_one() {
    let fx = a_population_walked().await;
    funnel(&fx).await;
    start_over(&fx).await;
}

/// Every step of the version shown by an analytics body, in its order: id, position, reached.
fn listed(body: &Value) -> Vec<(String, Value, i64)> {
    body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_owned(),
                s["position"].clone(),
                s["reached"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Version 1 (A, B, C) walked to B by `early`; version 2 drops B and adds D; a newcomer (`late`)
/// gets version 2, `early` finishes version 1 and then starts over on version 2.
struct Versions {
    app: TestApp,
    owner: User,
    org: String,
    wt: String,
    sa: String,
    sb: String,
    sc: String,
    sd: String,
    late: Mcp,
}

async fn two_versions_walked() -> Versions {
    let app = spawn_app().await;
    let (owner, org) = org_with_server(&app, "versions").await;
    let a = Author::new(&app, &owner, &org);
    let (wt, steps) = a
        .published_on("versions-srv", "Tour", &["A", "B", "C"])
        .await;
    let [sa, sb, sc] = [&steps[0], &steps[1], &steps[2]].map(String::clone);
    let early = end_user(&app, "versions-srv", "early");
    wait_for_tools(&early, true).await;
    select(&early, &wt, true).await;
    assert_eq!(step_id(&next(&early, Some(&sa)).await), sb, "early is on B");

    // Version 2 drops B (where `early` stands) and adds D.
    let (status, _) = app
        .delete(
            &a.path(&format!("/walkthroughs/{wt}/steps/{sb}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sd = a.add_step(&wt, "D", json!({})).await;
    assert_eq!(a.publish(&wt).await["published_version"], 2);

    // A newcomer gets version 2 (once the servers' short cache has moved on).
    let late = end_user(&app, "versions-srv", "late");
    eventually("version 2 offered", Duration::from_secs(10), || async {
        let listed = tool(&late, "list_walkthroughs", json!({})).await;
        (listed["structuredContent"]["walkthroughs"][0]["version"] == 2).then_some(())
    })
    .await;
    let started = select(&late, &wt, true).await;
    assert_eq!(started["structuredContent"]["version"], 2);
    assert_eq!(step_id(&started), sa);
    assert_eq!(started["structuredContent"]["progress"]["step_count"], 3);

    // `early` is not stranded: B, then C, from version 1, then done.
    let on_b = select(&early, &wt, true).await;
    assert_eq!(step_id(&on_b), sb);
    assert_eq!(on_b["structuredContent"]["version"], 1);
    assert_eq!(step_id(&next(&early, Some(&sb)).await), sc);
    let done = next(&early, Some(&sc)).await;
    assert_eq!(done["structuredContent"]["status"], "completed");
    assert_eq!(done["structuredContent"]["version"], 1);

    // Starting over takes version 2: A, C, D.
    let over = select(&early, &wt, false).await;
    assert_eq!(over["structuredContent"]["version"], 2);
    assert_eq!(step_id(&next(&early, None).await), sc);
    assert_eq!(step_id(&next(&early, None).await), sd);

    Versions {
        app,
        owner,
        org,
        wt,
        sa,
        sb,
        sc,
        sd,
        late,
    }
}

/// Analytics by version: each version's steps in its order, and without a version the newest's
/// steps then those only older ones had.
async fn analytics_by_version(fx: &Versions) {
    let Versions { app, owner, .. } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let sa = fx.sa.clone();
    let sb = fx.sb.clone();
    let sc = fx.sc.clone();
    let sd = fx.sd.clone();
    let a = Author::new(app, owner, &org);
    // Analytics by version.
    let today = chrono::Utc::now().date_naive().to_string();
    let v1 = eventually("v1 analytics", Duration::from_secs(15), || async {
        let (_, body) = a
            .get(&format!(
                "/walkthroughs/{wt}/analytics?to={today}&version=1"
            ))
            .await;
        (body["completions"] == 1).then_some(body)
    })
    .await;
    assert_eq!(v1["starts"], 1);
    let v2 = eventually("v2 analytics", Duration::from_secs(15), || async {
        let (_, body) = a
            .get(&format!("/walkthroughs/{wt}/analytics?version=2"))
            .await;
        (body["starts"] == 2 && body["steps"][1]["completed"] == 1).then_some(body)
    })
    .await;
    assert_eq!(v2["restarts"], 1);
    assert_eq!(v2["completions"], 0);

    // Every step of the version shown, in its order.
    let steps_of_v2 = listed(&v2);
    assert_eq!(
        steps_of_v2,
        vec![
            (sa.clone(), json!(1), 2),
            (sc.clone(), json!(2), 1),
            (sd.clone(), json!(3), 1),
        ]
    );
    let (_, v1_sankey) = a.get(&format!("/walkthroughs/{wt}/sankey?version=1")).await;
    let step_nodes: Vec<&str> = v1_sankey["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "step")
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(step_nodes, vec![sa.as_str(), sb.as_str(), sc.as_str()]);
    // Without a version: the newest version's steps, then B, which only version 1 had.
    let (_, all) = a.get(&format!("/walkthroughs/{wt}/analytics")).await;
    let order: Vec<(String, Value)> = listed(&all).into_iter().map(|(id, p, _)| (id, p)).collect();
    assert_eq!(
        order,
        vec![
            (sa.clone(), json!(1)),
            (sc.clone(), json!(2)),
            (sd.clone(), json!(3)),
            (sb.clone(), Value::Null),
        ]
    );
    let (status, body) = a
        .get(&format!("/walkthroughs/{wt}/analytics?version=3"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "version", "{body}");
}

/// Unpublished, then published again unchanged: version 2 is offered again (not a copy of it), and
/// `late`'s run on version 2 carries on where it was.
async fn republished_carries_on(fx: &Versions) {
    let Versions {
        app, owner, late, ..
    } = fx;
    let org = fx.org.clone();
    let wt = fx.wt.clone();
    let sa = fx.sa.clone();
    let sc = fx.sc.clone();
    let a = Author::new(app, owner, &org);
    // Unpublished, then published again unchanged: version 2 is offered again (not a copy of
    // it), and `late`'s run on version 2 carries on where it was.
    let (status, _) = app
        .post(
            &a.path(&format!("/walkthroughs/{wt}/unpublish")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a.publish(&wt).await["published_version"], 2);
    eventually(
        "version 2 offered again",
        Duration::from_secs(10),
        || async {
            let listed = tool(late, "list_walkthroughs", json!({})).await;
            (listed["structuredContent"]["walkthroughs"][0]["version"] == 2).then_some(())
        },
    )
    .await;
    let carried_on = next(late, Some(&sa)).await;
    assert_eq!(step_id(&carried_on), sc, "{carried_on}");
    assert_eq!(carried_on["structuredContent"]["version"], 2);
}

/// A walkthrough nobody has started: its steps with zeros, and their nodes in the sankey.
async fn untouched_walkthrough(fx: &Versions) {
    let Versions { app, owner, .. } = fx;
    let org = fx.org.clone();
    let a = Author::new(app, owner, &org);
    // A walkthrough nobody has started: its steps with zeros, and their nodes in the sankey.
    let (untouched, untouched_steps) = a
        .published_on("versions-srv", "Untouched", &["X", "Y"])
        .await;
    let (status, body) = a.get(&format!("/walkthroughs/{untouched}/analytics")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        listed(&body),
        vec![
            (untouched_steps[0].clone(), json!(1), 0),
            (untouched_steps[1].clone(), json!(2), 0),
        ]
    );
    assert_eq!(body["steps"][0]["dropped"], 0);
    let (_, graph) = a.get(&format!("/walkthroughs/{untouched}/sankey")).await;
    let kinds: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "step", "step", "completed", "restarted", "dropped"]
    );
    assert_eq!(graph["links"], json!([]));
}

#[tokio::test]
async fn users_mid_way_keep_their_version_and_the_next_start_takes_the_newest() {
    two_versions_walked().await;
}

#[tokio::test]
async fn analytics_count_each_version_on_its_own_steps() {
    let fx = two_versions_walked().await;
    analytics_by_version(&fx).await;
}

#[tokio::test]
async fn a_republished_version_lets_runs_on_it_carry_on() {
    let fx = two_versions_walked().await;
    republished_carries_on(&fx).await;
}

#[tokio::test]
async fn a_walkthrough_nobody_started_shows_its_steps_with_zeros() {
    let fx = two_versions_walked().await;
    untouched_walkthrough(&fx).await;
}

#[tokio::test]
async fn two_clients_of_one_user_advancing_at_once_neither_skip_nor_double_count() {
    let app = spawn_app().await;
    let (owner, org) = org_with_server(&app, "race").await;
    let a = Author::new(&app, &owner, &org);
    let (wt, steps) = a
        .published_on("race-srv", "Race", &["One", "Two", "Three"])
        .await;
    let [s1, s2, s3] = [&steps[0], &steps[1], &steps[2]].map(String::clone);
    let ide = end_user(&app, "race-srv", "same-user");
    let cli = end_user(&app, "race-srv", "same-user");
    wait_for_tools(&ide, true).await;
    select(&ide, &wt, true).await;

    for _ in 0..4 {
        let (x, y) = tokio::join!(next(&ide, Some(&s1)), next(&cli, Some(&s1)));
        let oks = [&x, &y].iter().filter(|r| r["isError"] == false).count();
        assert!(oks <= 1, "step 1 completed twice: {x} {y}");
        for r in [&x, &y] {
            // Winner or not, both are told the step that is now current.
            assert_eq!(step_id(r), s2, "{r}");
        }
    }
    // Two blind advances at once: each completes the step that was current when it read, so
    // the answers never repeat a step and nothing is completed twice.
    let (p, q) = tokio::join!(next(&ide, None), next(&cli, None));
    let advanced: Vec<String> = [&p, &q]
        .iter()
        .filter(|r| r["isError"] == false)
        .map(|r| step_id(r))
        .collect();
    assert!(!advanced.is_empty(), "{p} {q}");
    if advanced.len() == 2 {
        assert_ne!(advanced[0], advanced[1], "the same step handed out twice");
    }
    let s3_done = advanced.len() as i64 - 1;
    let _ = &s3;

    let today = chrono::Utc::now().date_naive().to_string();
    let analytics = eventually("race analytics", Duration::from_secs(15), || async {
        let (_, body) = a
            .get(&format!("/walkthroughs/{wt}/analytics?to={today}"))
            .await;
        (body["steps"][1]["completed"] == 1 && body["steps"][2]["completed"] == s3_done)
            .then_some(body)
    })
    .await;
    assert_eq!(analytics["steps"][0]["completed"], 1, "step 1 counted once");
    assert_eq!(analytics["steps"][1]["completed"], 1, "step 2 counted once");
    assert_eq!(analytics["steps"][2]["completed"], s3_done);
}

#[tokio::test]
async fn the_official_python_sdk_walks_a_whole_walkthrough() {
    let app = spawn_app().await;
    let (owner, org) = org_with_server(&app, "py-walk").await;
    let a = Author::new(&app, &owner, &org);
    let wt = a.create("SDK tour").await;
    let s1 = a.add_step(&wt, "Install", json!({})).await;
    a.add_step(&wt, "Run", json!({})).await;
    a.publish(&wt).await;
    a.assign("py-walk-srv", &wt, 0).await;
    let url = app.url("/s/py-walk-srv/t/py-walker/mcp");
    wait_for_tools(&end_user(&app, "py-walk-srv", "probe"), true).await;

    let select = json!({ "walkthrough_id": wt }).to_string();
    let first_step = json!({ "current_step_id": s1 }).to_string();
    let report = crate::mcp_clients::py_client(&[
        "--url",
        &url,
        "--era",
        "2025",
        "--list-tools",
        "--call",
        "list_walkthroughs",
        "--call",
        "select_walkthrough",
        "--args",
        &select,
        "--call",
        "next_walkthrough_step",
        "--args",
        &first_step,
        "--call",
        "next_walkthrough_step",
    ]);
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().or_else(|| t.as_str()))
        .collect();
    for t in WALK_TOOLS {
        assert!(tools.contains(&t), "{t} listed: {tools:?}");
    }
    let results = report["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["is_error"] == false), "{report}");
    assert_eq!(results[0]["structured"]["walkthroughs"][0]["id"], wt);
    assert!(results[1]["text"]
        .as_str()
        .unwrap()
        .contains("Content of Install"));
    assert!(results[2]["text"]
        .as_str()
        .unwrap()
        .contains("Content of Run"));
    assert_eq!(results[3]["structured"]["status"], "completed");

    // The 2026 era continues the same user's progress: they are done.
    let report = crate::mcp_clients::py_client(&[
        "--url",
        &url,
        "--era",
        "2026",
        "--call",
        "list_walkthroughs",
    ]);
    assert_eq!(
        report["results"][0]["structured"]["walkthroughs"][0]["progress"]["status"], "completed",
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkers_carry_on_where_they_were_after_postgres_comes_back() {
    // `next_walkthrough_step` reads on connections kept out of the pool; the ones left from
    // before the outage are dead, and must neither fail the walk for good nor lose its place.
    let (mut pg, app) = crate::faults::app_behind_postgres_proxy().await;
    let (owner, org) = org_with_server(&app, "outage").await;
    let a = Author::new(&app, &owner, &org);
    let (wt, steps) = a
        .published_on("outage-srv", "Outage", &["One", "Two", "Three"])
        .await;
    let [s2, s3] = [&steps[1], &steps[2]].map(String::clone);
    let walker = end_user(&app, "outage-srv", "walker");
    wait_for_tools(&walker, true).await;
    select(&walker, &wt, true).await;
    let first = next(&walker, None).await;
    assert_eq!(step_id(&first), s2, "{first}");

    let advance = json!({ "current_step_id": s2 });
    pg.cut().await;
    let during = walker
        .call_tool("next_walkthrough_step", advance.clone())
        .await;
    assert_ne!(
        during.message()["result"]["isError"],
        false,
        "answered without Postgres: {}",
        during.text
    );
    pg.restore().await;

    // The first calls may still meet a dead pooled connection (a 503 the client retries).
    let after = eventually("a step answered again", Duration::from_secs(30), || async {
        let r = walker
            .call_tool("next_walkthrough_step", advance.clone())
            .await
            .message();
        (r["result"]["isError"] == false).then(|| r["result"].clone())
    })
    .await;
    assert_eq!(
        step_id(&after),
        s3,
        "the walk went on from step two: {after}"
    );
    let end = next(&walker, Some(&s3)).await;
    assert_eq!(end["isError"], false, "{end}");
    assert_eq!(end["structuredContent"]["status"], "completed", "{end}");
}

#[tokio::test]
async fn a_run_that_moved_on_elsewhere_is_never_advanced_from_an_instances_memory() {
    // Each instance remembers the runs it served and decides the next completion on that
    // memory; the commit checks the run's version and the end user's selection. Here the end
    // user switches, restarts and advances through a second `serve` process in between.
    let app = spawn_app().await;
    let second = app.env.start(&["serve"]);
    let (owner, org) = org_with_server(&app, "moved").await;
    let a = Author::new(&app, &owner, &org);
    let (wa, sa) = a
        .published_on("moved-srv", "First", &["A1", "A2", "A3"])
        .await;
    let (wb, sb) = a
        .published_on("moved-srv", "Second", &["B1", "B2", "B3"])
        .await;
    let here = end_user(&app, "moved-srv", "mover");
    let there = Mcp::new(format!("{}/s/moved-srv/t/mover/mcp", second.base())).modern();
    wait_for_tools(&here, true).await;
    wait_for_tools(&there, true).await;

    select(&here, &wa, true).await;
    let r = next(&here, None).await;
    assert_eq!(step_id(&r), sa[1], "A1 done here: {r}");

    // Switched to the second walkthrough elsewhere: the next step here is the second's.
    select(&there, &wb, true).await;
    let r = next(&here, None).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(step_id(&r), sb[1], "B1 done, not A2: {r}");

    // Back to the first, resumed elsewhere: A2 was never completed.
    let r = select(&there, &wa, true).await;
    assert_eq!(step_id(&r), sa[1], "{r}");
    // Restarted elsewhere: the next step here completes A1 again, not A2 of the old run.
    select(&there, &wa, false).await;
    let r = next(&here, None).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(step_id(&r), sa[1], "A1 of the new run done: {r}");

    // Advanced elsewhere: here completes the step after it.
    let r = next(&there, None).await;
    assert_eq!(step_id(&r), sa[2], "A2 done there: {r}");
    let r = next(&here, None).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(
        r["structuredContent"]["status"], "completed",
        "A3 done here: {r}"
    );

    // Told a step that is no longer current, this instance answers with the real one.
    select(&there, &wb, true).await;
    let r = next(&here, Some(&sb[0])).await;
    assert_eq!(r["isError"], true, "B1 is done already: {r}");
    assert_eq!(step_id(&r), sb[1], "{r}");
}

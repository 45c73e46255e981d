//! Projections: redelivery changes nothing, rebuilds reproduce the live model exactly.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use serde_json::{json, Value};
use std::time::Duration;

const TABLES: &[(&str, &str)] = &[
    ("rm_platform_users", "user_id"),
    ("rm_orgs", "org_id"),
    ("rm_org_members", "org_id, email"),
    ("rm_servers", "server_id"),
    ("rm_dashboard", "org_id"),
    ("rm_audit_log", "org_id, transaction_id, global_position"),
    ("rm_audit_names", "kind, id"),
    ("rm_end_users", "org_id, end_user_id"),
    ("rm_people", "org_id, person_id"),
    (
        "rm_end_user_identities",
        "org_id, end_user_id, identity_key",
    ),
    ("rm_sign_ins_hourly", "org_id, hour"),
    ("rm_sessions", "org_id, session_id"),
    ("rm_tool_calls", "org_id, call_id"),
    ("rm_usage_hourly", "org_id, hour, server_id, tool"),
    ("rm_tickets", "org_id, ticket_id"),
    ("rm_ticket_activity", "org_id, ticket_id, event_id"),
    ("rm_walkthroughs", "org_id, walkthrough_id"),
    ("rm_walkthrough_versions", "org_id, walkthrough_id, version"),
    (
        "rm_server_walkthroughs",
        "org_id, server_id, walkthrough_id",
    ),
    (
        "rm_walkthrough_progress",
        "org_id, walkthrough_id, end_user_id",
    ),
    (
        "rm_walkthrough_daily",
        "org_id, walkthrough_id, day, server_id, version",
    ),
    (
        "rm_walkthrough_step_daily",
        "org_id, walkthrough_id, day, server_id, version, step_id",
    ),
    (
        "rm_walkthrough_step_times",
        "org_id, walkthrough_id, day, server_id, version, step_id, bucket",
    ),
    (
        "rm_walkthrough_transitions",
        "org_id, walkthrough_id, day, server_id, version, from_node, to_node",
    ),
];

/// Every read-model row, as JSON, in a stable order.
async fn dump(pool: &sqlx::PgPool) -> Value {
    let mut out = serde_json::Map::new();
    for (table, order) in TABLES {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) FROM {table} t ORDER BY {order}"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        out.insert((*table).to_owned(), Value::Array(rows));
    }
    Value::Object(out)
}

/// Builds some history: users, an org with members and invitations, servers changed and
/// archived.
async fn some_history(app: &TestApp) {
    let owner = app.signup("owner@acme.dev").await;
    let admin = app.signup("admin@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let _ = app.create_org(&admin, "other").await;
    app.add_member(&owner, &org, &admin, "admin").await;
    let later = app.invite(&owner, &org, "later@acme.dev", "member").await;
    app.create_server(&owner, &org, "acme-docs").await;
    app.create_server(&owner, &org, "acme-api").await;
    app.patch(
        &format!("/api/v1/orgs/{org}/servers/acme-api"),
        &admin.token,
        json!({"auth_mode": "tracking"}),
    )
    .await;
    app.delete(
        &format!("/api/v1/orgs/{org}/servers/acme-docs"),
        &admin.token,
    )
    .await;
    signup_with_invitation(
        app,
        "later@acme.dev",
        later["invitation_token"].as_str().unwrap(),
    )
    .await;
    app.patch(
        &format!("/api/v1/orgs/{org}/members/later@acme.dev"),
        &owner.token,
        json!({"role": "admin"}),
    )
    .await;

    // End users' activity: sessions of both eras, tool calls (one failing), a ticket worked.
    let mut legacy = Mcp::new(app.url("/s/acme-api/t/user-1/mcp"));
    legacy.initialize("rebuild-legacy").await;
    let opened = legacy
        .call_tool(
            "get_support",
            json!({"title": "Help", "description": "d", "email": "u1@example.com"}),
        )
        .await;
    let ticket = opened.result()["structuredContent"]["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    legacy.call_tool("no_such_tool", json!({})).await;
    legacy.delete_session().await;
    let modern = Mcp::new(app.url("/s/acme-api/t/user-2/mcp")).modern();
    for _ in 0..3 {
        modern
            .call_tool("get_support", json!({"title": "t", "description": "d"}))
            .await;
    }
    app.post(
        &format!("/api/v1/orgs/{org}/tickets/{ticket}/status"),
        &owner.token,
        json!({"status": "in_progress"}),
    )
    .await;
    app.post(
        &format!("/api/v1/orgs/{org}/tickets/{ticket}/comments"),
        &owner.token,
        json!({"body": "On it."}),
    )
    .await;

    // A walkthrough: authored, reordered, published twice, assigned, walked by three users
    // (one finishes, one restarts, one stops).
    let (_, wt) = app
        .post(
            &format!("/api/v1/orgs/{org}/walkthroughs"),
            &owner.token,
            json!({"title": "Tour"}),
        )
        .await;
    let wt = wt["id"].as_str().unwrap().to_owned();
    let mut steps = Vec::new();
    for title in ["One", "Two", "Three"] {
        let (_, step) = app
            .post(
                &format!("/api/v1/orgs/{org}/walkthroughs/{wt}/steps"),
                &owner.token,
                json!({"title": title, "content": "c"}),
            )
            .await;
        steps.push(step["id"].as_str().unwrap().to_owned());
    }
    app.post(
        &format!(
            "/api/v1/orgs/{org}/walkthroughs/{wt}/steps/{}/move",
            steps[2]
        ),
        &owner.token,
        json!({"after_step_id": null}),
    )
    .await;
    app.post(
        &format!("/api/v1/orgs/{org}/walkthroughs/{wt}/publish"),
        &owner.token,
        json!({}),
    )
    .await;
    app.post(
        &format!("/api/v1/orgs/{org}/servers/acme-api/walkthroughs"),
        &owner.token,
        json!({"walkthrough_id": wt}),
    )
    .await;
    for (user, nexts) in [("w-1", 3), ("w-2", 1), ("w-3", 2)] {
        let client = Mcp::new(app.url(&format!("/s/acme-api/t/{user}/mcp"))).modern();
        eventually("walkthrough offered", Duration::from_secs(10), || async {
            let r = client
                .call_tool("select_walkthrough", json!({"walkthrough_id": wt}))
                .await;
            (r.result()["isError"] == false).then_some(())
        })
        .await;
        for _ in 0..nexts {
            client.call_tool("next_walkthrough_step", json!({})).await;
        }
        if user == "w-3" {
            client
                .call_tool(
                    "select_walkthrough",
                    json!({"walkthrough_id": wt, "resume_if_exists": false}),
                )
                .await;
            client.call_tool("next_walkthrough_step", json!({})).await;
        }
    }
    app.patch(
        &format!("/api/v1/orgs/{org}/walkthroughs/{wt}/steps/{}", steps[0]),
        &owner.token,
        json!({"content": "changed"}),
    )
    .await;
    app.post(
        &format!("/api/v1/orgs/{org}/walkthroughs/{wt}/publish"),
        &owner.token,
        json!({}),
    )
    .await;
}

/// Waits until every projection has caught up with the event store head.
async fn settled(app: &TestApp) {
    let env = &app.env;
    eventually(
        "projections to catch up",
        Duration::from_secs(20),
        || async {
            let out = env.cli(&["projections", "status", "--json"]);
            let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
            rows.as_array()?
                .iter()
                .all(|r| r["events_behind"] == 0)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_rebuild_produces_exactly_the_live_read_model() {
    let app = spawn_app().await;
    some_history(&app).await;
    settled(&app).await;
    let pool = app.env.pool().await;
    let live = dump(&pool).await;
    for table in [
        "rm_audit_log",
        "rm_sessions",
        "rm_tool_calls",
        "rm_ticket_activity",
    ] {
        assert!(
            !live[table].as_array().unwrap().is_empty(),
            "{table} is empty"
        );
    }

    let out = app.env.cli(&["projections", "rebuild", "--all"]);
    assert!(
        out.status.success(),
        "rebuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "organizations",
        "servers",
        "dashboard",
        "audit_log",
        "usage",
        "tickets",
    ] {
        assert!(text.contains(&format!("{name}: rebuilt")), "{text}");
    }
    assert_eq!(
        dump(&pool).await,
        live,
        "rebuilt tables differ from the live ones"
    );

    // The running process keeps serving and projecting after the swap.
    let owner = app.signup("new@acme.dev").await;
    let org = app.create_org(&owner, "after-rebuild").await;
    app.create_server(&owner, &org, "after-rebuild-srv").await;
    let (_, dash) = app
        .get(&format!("/api/v1/orgs/{org}/dashboard"), &owner.token)
        .await;
    assert_eq!(dash["counters"]["servers"], 1);
}

#[tokio::test]
async fn redelivered_and_foreign_messages_change_nothing() {
    let app = spawn_app().await;
    some_history(&app).await;
    settled(&app).await;
    let pool = app.env.pool().await;
    let before = dump(&pool).await;

    // Lose every consumer and every stream position: the workers recreate their consumers
    // from the start of the stream and receive every event a second time.
    let js =
        async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    let mut stream = js.get_stream(app.env.stream_name()).await.unwrap();
    sqlx::query("UPDATE projection_checkpoints SET stream_sequence = 0")
        .execute(&pool)
        .await
        .unwrap();
    for name in ["organizations", "servers", "dashboard", "audit_log"] {
        let _ = stream
            .delete_consumer(&format!("{}_{name}", app.env.prefix))
            .await;
    }

    // And a message that claims to come from another event store sharing the server.
    let first = stream.get_raw_message(1).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
    headers.insert("Mcpl-Store-Id", uuid::Uuid::new_v4().to_string().as_str());
    headers.insert("Mcpl-Cursor", "999999999-999999999");
    let ack = js
        .publish_with_headers(first.subject.clone(), headers, first.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!ack.duplicate);
    let last_seq = stream.info().await.unwrap().state.last_sequence as i64;
    eventually(
        "projectors to consume everything again",
        Duration::from_secs(30),
        || async {
            let min: Option<i64> = sqlx::query_scalar(
                "SELECT min(stream_sequence) FROM projection_checkpoints \
             WHERE name IN ('dashboard', 'audit_log', 'organizations')",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (min? >= last_seq).then_some(())
        },
    )
    .await;
    assert_eq!(dump(&pool).await, before, "duplicates changed a read model");

    // The foreign message's far-future cursor did not move any checkpoint: new events still
    // project.
    let owner = app.signup("fresh@acme.dev").await;
    let org = app.create_org(&owner, "fresh").await;
    app.create_server(&owner, &org, "fresh-srv").await;
    let (_, list) = app
        .get(&format!("/api/v1/orgs/{org}/servers"), &owner.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let status = app.env.cli(&["projections", "status", "--json"]);
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert!(row["last_error"].is_null(), "{row}");
        assert_eq!(row["worker_active"], true, "{row}");
    }
}

/// The read models as two runs of the same story can compare them: what differs from run to
/// run (ids, times, cursors, durations, ticket references, the hour a call fell in) left out,
/// rows in a stable order.
async fn comparable(pool: &sqlx::PgPool) -> Value {
    fn volatile(key: &str) -> bool {
        key == "id"
            || key.ends_with("_id")
            || key.ends_with("_at")
            || matches!(
                key,
                "first_seen"
                    | "last_seen"
                    | "transaction_id"
                    | "global_position"
                    | "duration_ms"
                    | "duration_us"
                    | "group_key"
                    | "request_id"
                    | "client_ip"
            )
    }
    fn normalize(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter(|(key, _)| !volatile(key))
                    .map(|(key, value)| (key, normalize(value)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
            Value::String(s) if uuid::Uuid::parse_str(&s).is_ok() => json!("<id>"),
            // `TCK-` and the ticket id's first 8 hex digits.
            Value::String(s) => Value::String(
                s.split("TCK-")
                    .enumerate()
                    .map(|(i, part)| match i {
                        0 => part.to_owned(),
                        _ => format!("TCK-<ref>{}", part.get(8..).unwrap_or("")),
                    })
                    .collect(),
            ),
            other => other,
        }
    }
    let mut out = serde_json::Map::new();
    for (table, _) in TABLES {
        let query = if *table == "rm_usage_hourly" {
            // Per tool, whichever hours the calls fell in.
            "SELECT jsonb_build_object('tool', tool, 'calls', sum(calls), 'errors', sum(errors)) \
             FROM rm_usage_hourly GROUP BY tool"
                .to_owned()
        } else {
            format!("SELECT to_jsonb(t) FROM {table} t")
        };
        let rows: Vec<Value> = sqlx::query_scalar(&query).fetch_all(pool).await.unwrap();
        let mut rows: Vec<String> = rows
            .into_iter()
            .map(|row| normalize(row).to_string())
            .collect();
        rows.sort();
        out.insert((*table).to_owned(), json!(rows));
    }
    Value::Object(out)
}

/// The first part of the story: an org with a server and some end users' calls.
async fn before_the_outage(app: &TestApp) -> (User, String) {
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    app.post(
        &format!("/api/v1/orgs/{org}/members"),
        &owner.token,
        json!({"email": "admin@acme.dev", "role": "admin"}),
    )
    .await;
    let mut legacy = Mcp::new(app.url("/s/acme-docs/t/early/mcp"));
    legacy.initialize("before").await;
    for _ in 0..3 {
        let reply = legacy
            .call_tool("get_support", json!({"title": "t", "description": "d"}))
            .await;
        assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    }
    (owner, org)
}

/// The second part: what happens while `project` is down in one of the two runs. 100 tool
/// calls of ten end users (new and known, both protocol eras; a few open tickets, events of
/// the org itself), and an invitation.
async fn during_the_outage(app: &TestApp, owner: &User, org: &str) {
    app.post(
        &format!("/api/v1/orgs/{org}/members"),
        &owner.token,
        json!({"email": "later@acme.dev", "role": "member"}),
    )
    .await;
    let mut legacy = Mcp::new(app.url("/s/acme-docs/t/early/mcp"));
    legacy.initialize("during").await;
    for n in 0..100 {
        // A server with no walkthrough offers only `get_support` (a tool call and a ticket).
        let reply = if n % 10 == 0 {
            legacy
                .call_tool(
                    "get_support",
                    json!({"title": format!("help {n}"), "description": "d"}),
                )
                .await
        } else {
            Mcp::new(app.url(&format!("/s/acme-docs/t/user-{}/mcp", n % 9)))
                .modern()
                .call_tool("get_support", json!({"title": "t", "description": "d"}))
                .await
        };
        assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    }
}

/// A projector restarted with a backlog catches up from the event store, then goes on from NATS;
/// one that never stopped got everything from NATS. Both must build the same read models: the
/// catch-up applies what the projection reads by the same filter as the live path (it once
/// applied every event, so 100 calls made while `project` was down added about 200 to the
/// dashboard's `events`). And once caught up, `projections status` says so (0 behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_restarted_with_a_backlog_builds_what_one_that_never_stopped_built() {
    let steady = spawn_app().await;
    // The other run in separate processes, so that its projectors can be stopped alone.
    let env = TestEnv::new();
    assert!(env.cli(&["migrate"]).status.success());
    let mut relay = env.start(&["relay"]);
    let mut project = env.start(&["project"]);
    let serve = env.start(&["serve"]);
    let restarted = TestApp {
        proc: serve,
        env,
        http: reqwest::Client::new(),
    };

    let (steady_owner, steady_org) = before_the_outage(&steady).await;
    let (owner, org) = before_the_outage(&restarted).await;
    settled(&restarted).await;
    project.kill();
    during_the_outage(&restarted, &owner, &org).await;
    during_the_outage(&steady, &steady_owner, &steady_org).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e, projection_checkpoints c WHERE c.name = 'dashboard' \
         AND (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)",
    )
    .fetch_one(&restarted.env.pool().await)
    .await
    .unwrap();
    assert!(stored > 200, "a backlog while `project` was down: {stored}");
    let again = restarted.env.start(&["project"]);
    settled(&steady).await;
    settled(&restarted).await;

    let (restarted_pool, steady_pool) = (restarted.env.pool().await, steady.env.pool().await);
    let (after_restart, never_stopped) = (
        comparable(&restarted_pool).await,
        comparable(&steady_pool).await,
    );
    assert!(!after_restart["rm_tool_calls"]
        .as_array()
        .unwrap()
        .is_empty());
    for (table, _) in TABLES {
        assert_eq!(
            after_restart[table], never_stopped[table],
            "{table}: restarted with a backlog (left) and never stopped (right) differ"
        );
    }
    let mut counters = (
        counters(&restarted, &owner, &org).await,
        counters(&steady, &steady_owner, &steady_org).await,
    );
    for c in [&mut counters.0, &mut counters.1] {
        c.as_object_mut().unwrap().remove("last_activity_at");
    }
    assert_eq!(counters.0, counters.1, "dashboard counters");

    // And status says every projection is caught up, in words too.
    let out = restarted.env.cli(&["projections", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), projections::registry::all().len(), "{text}");
    for row in rows {
        let behind = row.split_whitespace().nth(2);
        assert_eq!(behind, Some("0"), "{text}");
    }
    drop(again);
    relay.kill();
}

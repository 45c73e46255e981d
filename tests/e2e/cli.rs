//! The admin CLI: projections list/status, events export/tail, migrate.

use crate::helpers::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn projections_list_and_status_describe_every_projection() {
    let app = spawn_app().await;
    let out = app.env.cli(&["projections", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "organizations",
        "servers",
        "identity_providers",
        "dashboard",
        "audit_log",
        "usage",
        "tickets",
    ] {
        assert!(text.contains(name), "{text}");
    }
    // What each reads, as its worker reads it: the dashboard and the audit log never get end
    // users' activity.
    for name in ["dashboard ", "audit_log "] {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(
            line.contains("all events but end_user, mcp_session, tool_call, walkthrough_progress"),
            "{line}"
        );
    }
    let owner = app.signup("owner@acme.dev").await;
    app.create_org(&owner, "acme").await;
    let rows: Value = eventually(
        "status to show active workers",
        Duration::from_secs(20),
        || async {
            let out = app.env.cli(&["projections", "status", "--json"]);
            let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
            rows.as_array()?
                .iter()
                .all(|r| r["worker_active"] == true && r["events_behind"] == 0)
                .then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.as_array().unwrap().len(), 10);
    for row in rows.as_array().unwrap() {
        // These read only server and MCP streams, and there are none yet.
        let quiet = [
            "servers",
            "identity_providers",
            "usage",
            "tickets",
            "walkthroughs",
            "walkthrough_progress",
            "walkthrough_analytics",
        ];
        if !quiet.contains(&row["projection"].as_str().unwrap()) {
            assert_ne!(row["checkpoint"], "0-0", "{row}");
        }
    }
    let human = app.env.cli(&["projections", "status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("active"));
    let unknown = app.env.cli(&["projections", "rebuild", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown projection"));
}

#[tokio::test]
async fn events_export_writes_ndjson_and_csv_with_filters() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-one").await;
    app.create_server(&owner, &org, "acme-two").await;
    let other = app.signup("other@else.dev").await;
    let other_org = app.create_org(&other, "else").await;
    app.create_server(&other, &other_org, "else-one").await;

    let dir = std::env::temp_dir().join(format!("mcpl-export-{}", app.env.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let ndjson = dir.join("acme.ndjson");
    let out = app.env.cli(&[
        "events",
        "export",
        "--org",
        "acme",
        "--output",
        ndjson.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "org created + 2 servers, nothing of the other org"
    );
    assert!(lines.iter().all(|e| e["org_id"] == org.as_str()));

    let out = app.env.cli(&[
        "events",
        "export",
        "--org",
        &org,
        "--type",
        "ServerCreated",
        "--format",
        "csv",
    ]);
    assert!(out.status.success());
    let csv = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("cursor,event_id,recorded_at"), "{csv}");
    assert_eq!(rows.len(), 3, "header + 2 servers: {csv}");

    let out = app
        .env
        .cli(&["events", "export", "--org", "acme", "--since", "2999-01-01"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let bad = app
        .env
        .cli(&["events", "export", "--org", "acme", "--since", "yesterday"]);
    assert!(!bad.status.success());
    let missing = app.env.cli(&["events", "export", "--org", "no-such-org"]);
    assert!(!missing.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn events_tail_follows_new_events() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let mut tail = app
        .env
        .command()
        .args(["events", "tail", "--org", "acme", "--type", "ServerCreated"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.create_server(&owner, &org, "tailed").await;
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail printed the event");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event_type"], "ServerCreated");
    assert_eq!(event["payload"]["slug"], "tailed");
    let _ = tail.kill();
    let _ = tail.wait();
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let env = TestEnv::new();
    assert!(env.cli(&["migrate"]).status.success());
    let again = env.cli(&["migrate"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("migrations applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_relay_and_project_run_as_separate_processes() {
    let env = TestEnv::new();
    assert!(env.cli(&["migrate"]).status.success());
    let _relay = env.start(&["relay"]);
    let _orgs = env.start(&["project", "--only", "organizations"]);
    let _rest = env.start(&["project"]); // all, including a hot standby for organizations
    let serve = env.start(&["serve"]);
    let app = TestApp {
        proc: serve,
        env,
        http: reqwest::Client::new(),
    };
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let (_, dash) = app
        .get(&format!("/api/v1/orgs/{org}/dashboard"), &owner.token)
        .await;
    assert_eq!(dash["counters"]["servers"], 1, "{dash}");
    let bad = app.env.cli(&["project", "--only", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown projection"));
}

#[tokio::test]
async fn an_unknown_event_type_is_refused_with_the_known_types() {
    let env = TestEnv::new();
    for verb in [
        &["events", "tail", "--type", "Foo"][..],
        &["events", "export", "--org", "acme", "--type", "Foo"][..],
    ] {
        let out = env.cli(verb);
        assert!(!out.status.success(), "{verb:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("'Foo'"), "{stderr}");
        for known in ["OrganizationCreated", "ServerCreated", "TicketOpened"] {
            assert!(stderr.contains(known), "{verb:?}: {stderr}");
        }
    }
}

#[tokio::test]
async fn a_closed_pipe_ends_a_verb_quietly() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    for n in 0..3 {
        app.create_server(&owner, &org, &format!("acme-{n}")).await;
    }
    for verb in [
        &["events", "export", "--org", "acme"][..],
        &["events", "export", "--org", "acme", "--format", "csv"][..],
        &["projections", "list"][..],
        &["projections", "list", "--json"][..],
        &["projections", "status"][..],
        &["projections", "status", "--json"][..],
        &["projections", "rebuild", "servers"][..],
        &["migrate"][..],
    ] {
        // The reader goes away before the verb writes its first line, as `| head -0` would.
        let mut child = app
            .env
            .command()
            .args(verb)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{verb:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{verb:?}: {stderr}");
    }
    // `| head -1`: the reader takes one line, then goes away.
    let mut child = app
        .env
        .command()
        .args(["projections", "status"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_verb_shows_only_the_flags_it_uses() {
    let env = TestEnv::new();
    let help = |verb: &[&str]| {
        let out = env.cli(&[verb, &["--help"]].concat());
        assert!(out.status.success(), "{verb:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let export = help(&["events", "export"]);
    for unused in ["--secret", "--bind", "--nats-url", "--db-pool", "--json"] {
        assert!(!export.contains(unused), "{unused} in {export}");
    }
    assert!(export.contains("--database-url") && export.contains("--format"));
    let list = help(&["projections", "list"]);
    assert!(
        list.contains("--json") && !list.contains("--database-url"),
        "{list}"
    );
    let migrate = help(&["migrate"]);
    assert!(!migrate.contains("--secret") && !migrate.contains("--nats-url"));
    let up = help(&["up"]);
    for used in ["--secret", "--bind", "--nats-url", "--database-url"] {
        assert!(up.contains(used), "{used} missing from {up}");
    }
    assert!(!up.contains("--json"), "{up}");
}

#[tokio::test]
async fn verbs_that_only_read_refuse_a_missing_database_and_do_not_create_it() {
    let env = TestEnv::new();
    for verb in [
        &["events", "export", "--org", "acme"][..],
        &["events", "tail"][..],
        &["projections", "status"][..],
        &["projections", "rebuild", "--all"][..],
    ] {
        let out = env.cli(verb);
        assert!(!out.status.success(), "{verb:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("does not exist") && stderr.contains("mcplatform migrate"),
            "{verb:?}: {stderr}"
        );
    }
    let admin = sqlx::PgPool::connect(&admin_url("postgres")).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&env.db_name)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(!exists, "a read-only verb created the database");
    admin.close().await;

    // A database behind this binary's migrations is refused the same way until migrated.
    assert!(env.cli(&["migrate"]).status.success());
    let pool = env.pool().await;
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let out = env.cli(&["projections", "status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lacks 1 migration"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_asks_the_running_server() {
    let app = spawn_app().await;
    let bind = app.proc.base().trim_start_matches("http://").to_owned();
    let ok = app.env.cli(&["healthcheck", "--bind", &bind]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Nothing listens on the port a closed listener had.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = closed.local_addr().unwrap().to_string();
    drop(closed);
    let down = app.env.cli(&["healthcheck", "--bind", &free]);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("/readyz"));
}

/// End users' activity is not counted as events the dashboard or the audit log lag behind:
/// they never read it, so once caught up they are not behind.
#[tokio::test]
async fn projections_are_not_behind_for_events_they_never_read() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let mut mcp = crate::mcp_raw::Mcp::new(app.url("/s/acme-docs/t/ada/mcp"));
    mcp.initialize("lag").await;
    let reply = mcp
        .call_tool(
            "get_support",
            serde_json::json!({"title": "t", "description": "d"}),
        )
        .await;
    assert_eq!(reply.result()["isError"], false, "{}", reply.text);
    let rows: Value = eventually(
        "every projection caught up",
        Duration::from_secs(20),
        || async {
            let out = app.env.cli(&["projections", "status", "--json"]);
            let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
            rows.as_array()?
                .iter()
                .all(|r| r["events_behind"] == 0)
                .then_some(rows)
        },
    )
    .await;
    let usage = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["projection"] == "usage")
        .unwrap();
    assert_ne!(
        usage["checkpoint"], "0-0",
        "the activity was there: {usage}"
    );
}

/// A password in NATS_URL never reaches the logs, even at debug level where async-nats logs
/// the server of every connection attempt; and a URL with credentials still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_password_never_reaches_the_logs() {
    const PASSWORD: &str = "nats-pass-4f1c";
    let env = TestEnv::new();
    // Nothing listens there: the relay keeps attempting, and logging each attempt.
    let mut relay = env
        .command()
        .env("NATS_URL", format!("nats://app:{PASSWORD}@127.0.0.1:1"))
        .env("RUST_LOG", "debug")
        .arg("relay")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = relay.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut lines, mut attempts) = (Vec::new(), 0);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            attempts += usize::from(line.contains("attempting connection"));
            lines.push(line);
            if attempts >= 2 {
                break;
            }
        }
        lines
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = relay.kill();
    let _ = relay.wait();
    let lines = reader.join().unwrap();
    let log = lines.join("\n");
    assert!(
        log.contains("attempting connection"),
        "async-nats logs its attempts at debug level:\n{log}"
    );
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");

    // Credentials in the URL reach the server as options: the local server takes any.
    let app_env = TestEnv::new();
    let app = app_env.start_with(&["up"], &[("NATS_URL", "nats://app:pw@127.0.0.1:4222")]);
    eventually("NATS up for /readyz", Duration::from_secs(20), || async {
        let resp = reqwest::get(format!("{}/readyz", app.base())).await.ok()?;
        resp.status().is_success().then_some(())
    })
    .await;
}

/// A refused platform secret is not printed back, from a flag or from the environment.
#[tokio::test]
async fn a_refused_secret_is_never_printed() {
    let env = TestEnv::new();
    let from_env = env
        .command()
        .env("MCPLATFORM_SECRET", "shortsecret12")
        .arg("up")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let from_flag = env
        .command()
        .args(["serve", "--secret", "short"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    for (out, secret) in [(from_env, "shortsecret12"), (from_flag, "'short'")] {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("at least 16 characters"), "{stderr}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

/// An error line names each cause once, however its library words its sources.
#[tokio::test]
async fn an_error_names_each_cause_once() {
    let env = TestEnv::new();
    for (url, cause) in [
        (
            "postgres://postgres@127.0.0.1/x?sslmode=bogus",
            "unknown value \"bogus\"",
        ),
        ("postgres://postgres@127.0.0.1:1/x", "Connection refused"),
    ] {
        let out = env
            .command()
            .env("DATABASE_URL", url)
            .arg("migrate")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
        assert!(
            stderr.matches("error with configuration").count() <= 1,
            "{stderr}"
        );
    }
}

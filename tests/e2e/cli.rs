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
        "dashboard",
        "audit_log",
        "usage",
        "tickets",
    ] {
        assert!(text.contains(name), "{text}");
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
    assert_eq!(rows.as_array().unwrap().len(), 9);
    for row in rows.as_array().unwrap() {
        // These read only server and MCP streams, and there are none yet.
        let quiet = [
            "servers",
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

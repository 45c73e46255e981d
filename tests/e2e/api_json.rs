//! JSON is consistent across the API: every instant of a whole scripted session (REST answers,
//! the MCP tool's answer, event pages as JSON, NDJSON and server-sent events, the CLI's CSV and
//! NDJSON exports) is written one way and every field holding one ends in `_at`; date ranges take
//! a date or a time with one meaning and name the field they refuse; the sankey echoes its
//! filters; durations are milliseconds with their decimals.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use reqwest::header::ACCEPT;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// `2026-12-07T15:45:41.123456Z`: RFC 3339, UTC, six fractional digits.
fn is_instant(s: &str) -> bool {
    const PATTERN: &[u8] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    s.len() == PATTERN.len()
        && s.bytes().zip(PATTERN).all(|(b, &p)| match p {
            b'd' => b.is_ascii_digit(),
            p => b == p,
        })
}

/// Anything that starts like a time (`2026-12-07T...`): it must be an instant as above.
fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
}

/// Checks every instant in `value`; returns how many it saw.
#[track_caller]
fn check_times(what: &str, value: &Value) -> usize {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(key, v)| {
                if key.ends_with("_at") {
                    assert!(
                        v.is_null() || v.as_str().is_some_and(is_instant),
                        "{what}: `{key}` is {v}"
                    );
                }
                check_times(&format!("{what}.{key}"), v)
            })
            .sum(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| check_times(&format!("{what}[{i}]"), v))
            .sum(),
        Value::String(s) if looks_like_time(s) => {
            assert!(
                is_instant(s),
                "{what}: {s:?} is not RFC 3339 UTC with microseconds"
            );
            1
        }
        _ => 0,
    }
}

/// A session's answers, kept to be checked together.
#[derive(Default)]
struct Answers(Vec<(String, Value)>);

impl Answers {
    #[track_caller]
    fn keep(&mut self, what: &str, got: (StatusCode, Value)) -> Value {
        assert!(got.0.is_success(), "{what}: {} {}", got.0, got.1);
        self.0.push((what.to_owned(), got.1.clone()));
        got.1
    }
}

async fn tool(client: &Mcp, name: &str, arguments: Value) -> Value {
    let reply = client.call_tool(name, arguments).await;
    let result = reply.result();
    assert_eq!(result["isError"], false, "{name}: {}", reply.text);
    result
}

#[tokio::test]
async fn every_instant_of_a_session_is_rfc3339_utc_with_microseconds_and_named_at() {
    let app = spawn_app().await;
    let mut answers = Answers::default();
    let signed_up = signup_full(&app, "owner@json.test").await;
    answers.0.push(("signup".into(), signed_up.clone()));
    assert!(is_instant(
        signed_up["user"]["created_at"].as_str().unwrap()
    ));
    let owner = User {
        id: signed_up["user"]["id"].as_str().unwrap().to_owned(),
        email: "owner@json.test".into(),
        token: signed_up["access_token"].as_str().unwrap().to_owned(),
        refresh_token: signed_up["refresh_token"].as_str().unwrap().to_owned(),
    };
    let token = owner.token.as_str();
    let colleague = app.signup("colleague@json.test").await;

    // Writes: each create carries its time.
    let created = answers.keep(
        "create org",
        app.post(
            "/api/v1/orgs",
            token,
            json!({ "name": "Json", "slug": "json" }),
        )
        .await,
    );
    assert!(
        is_instant(created["created_at"].as_str().unwrap()),
        "{created}"
    );
    let org = created["id"].as_str().unwrap().to_owned();
    let api = |rest: &str| format!("/api/v1/orgs/{org}{rest}");
    let invited = answers.keep(
        "invite a signed-up user",
        app.post(
            &api("/members"),
            token,
            json!({ "email": colleague.email, "role": "admin" }),
        )
        .await,
    );
    assert!(
        is_instant(invited["invited_at"].as_str().unwrap()),
        "{invited}"
    );
    assert!(
        is_instant(invited["expires_at"].as_str().unwrap()),
        "{invited}"
    );
    let member = answers.keep(
        "accept the invitation",
        app.accept(&colleague, invited["invitation_token"].as_str().unwrap())
            .await,
    );
    assert!(
        is_instant(member["joined_at"].as_str().unwrap()),
        "{member}"
    );
    assert!(member.get("invited_at").is_none(), "{member}");
    let invitation = answers.keep(
        "invite",
        app.post(
            &api("/members"),
            token,
            json!({ "email": "later@json.test" }),
        )
        .await,
    );
    assert!(
        is_instant(invitation["invited_at"].as_str().unwrap()),
        "{invitation}"
    );
    assert!(
        invitation.get("joined_at").is_none(),
        "an invitation has no joined_at"
    );
    let server = answers.keep(
        "create server",
        app.post(
            &api("/servers"),
            token,
            json!({ "name": "Docs", "slug": "json-docs" }),
        )
        .await,
    );
    assert!(
        is_instant(server["created_at"].as_str().unwrap()),
        "{server}"
    );
    let walkthrough = answers.keep(
        "create walkthrough",
        app.post(&api("/walkthroughs"), token, json!({ "title": "Tour" }))
            .await,
    );
    assert!(is_instant(walkthrough["created_at"].as_str().unwrap()));
    let wt = walkthrough["id"].as_str().unwrap().to_owned();
    let mut steps = Vec::new();
    for title in ["Install", "Run"] {
        let step = answers.keep(
            "add step",
            app.post(
                &api(&format!("/walkthroughs/{wt}/steps")),
                token,
                json!({ "title": title, "content": "Do it" }),
            )
            .await,
        );
        assert!(is_instant(step["created_at"].as_str().unwrap()), "{step}");
        steps.push(step["id"].as_str().unwrap().to_owned());
    }
    answers.keep(
        "publish",
        app.post(
            &api(&format!("/walkthroughs/{wt}/publish")),
            token,
            json!({}),
        )
        .await,
    );
    let assigned = answers.keep(
        "assign",
        app.post(
            &api("/servers/json-docs/walkthroughs"),
            token,
            json!({ "walkthrough_id": wt }),
        )
        .await,
    );
    assert!(
        is_instant(assigned["assigned_at"].as_str().unwrap()),
        "{assigned}"
    );

    // An end user: a ticket, calls, a walkthrough walked.
    let mut end_user = Mcp::new(app.url("/s/json-docs/t/walker-1/mcp"));
    end_user.initialize("json-client").await;
    let opened = tool(
        &end_user,
        "get_support",
        json!({ "title": "Stuck", "description": "On step two" }),
    )
    .await;
    let ticket = opened["structuredContent"]["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        is_instant(opened["structuredContent"]["created_at"].as_str().unwrap()),
        "{opened}"
    );
    answers.0.push(("get_support".into(), opened.clone()));
    eventually(
        "the walkthrough offered",
        Duration::from_secs(10),
        || async {
            let reply = end_user
                .call_tool("select_walkthrough", json!({ "walkthrough_id": wt }))
                .await;
            (reply.result()["isError"] == false).then_some(())
        },
    )
    .await;
    tool(
        &end_user,
        "next_walkthrough_step",
        json!({ "current_step_id": steps[0] }),
    )
    .await;
    answers.keep(
        "ticket status",
        app.post(
            &api(&format!("/tickets/{ticket}/status")),
            token,
            json!({ "status": "in_progress" }),
        )
        .await,
    );
    answers.keep(
        "comment",
        app.post(
            &api(&format!("/tickets/{ticket}/comments")),
            token,
            json!({ "body": "Looking" }),
        )
        .await,
    );

    // Every read, once the read models have the calls and the progress.
    eventually(
        "the calls and progress projected",
        Duration::from_secs(15),
        || async {
            let (_, calls) = app.get(&api("/tool-calls"), token).await;
            let (_, analytics) = app
                .get(&api(&format!("/walkthroughs/{wt}/analytics")), token)
                .await;
            (calls["items"].as_array()?.len() >= 3 && analytics["steps"][0]["completed"] == 1)
                .then_some(())
        },
    )
    .await;
    let (_, users) = app.get(&api("/users"), token).await;
    let end_user_id = users["items"][0]["id"].as_str().unwrap().to_owned();
    let (_, sessions) = app.get(&api("/sessions"), token).await;
    let session_id = sessions["items"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        "/api/v1/me".to_owned(),
        "/api/v1/orgs".to_owned(),
        api(""),
        api("/members"),
        api("/servers"),
        api("/servers/json-docs"),
        api("/servers/json-docs/walkthroughs"),
        api("/tickets"),
        api(&format!("/tickets/{ticket}")),
        api("/users"),
        api(&format!("/users/{end_user_id}")),
        api("/sessions"),
        api(&format!("/sessions/{session_id}")),
        api("/tool-calls"),
        api("/analytics/tools?bucket=minute"),
        api("/walkthroughs"),
        api(&format!("/walkthroughs/{wt}")),
        api(&format!("/walkthroughs/{wt}/steps")),
        api(&format!("/walkthroughs/{wt}/versions")),
        api(&format!("/walkthroughs/{wt}/analytics")),
        api(&format!("/walkthroughs/{wt}/sankey")),
        api("/dashboard"),
        api("/audit"),
        api("/events"),
    ] {
        answers.keep(&path, app.get(&path, token).await);
    }
    let users = &answers
        .0
        .iter()
        .find(|(w, _)| w.ends_with("/users"))
        .unwrap()
        .1;
    assert!(is_instant(
        users["items"][0]["first_seen_at"].as_str().unwrap()
    ));
    assert!(is_instant(
        users["items"][0]["last_seen_at"].as_str().unwrap()
    ));

    // The events page as NDJSON, and live from the first event on.
    let ndjson = app
        .http
        .get(app.url(&api("/events")))
        .bearer_auth(token)
        .header(ACCEPT, "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in ndjson.lines() {
        answers
            .0
            .push(("events ndjson".into(), serde_json::from_str(line).unwrap()));
    }
    let (_, page) = app.get(&api("/events"), token).await;
    let events = page["items"].as_array().unwrap();
    let mut stream = app
        .http
        .get(app.url(&api("/events/stream")))
        .bearer_auth(token)
        .header("Last-Event-ID", events[0]["cursor"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while text.matches("\ndata:").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("server-sent events")
            .unwrap()
            .expect("more events");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        if let Ok(event) = serde_json::from_str(data.trim()) {
            answers.0.push(("events stream".into(), event));
        }
    }

    let mut instants = 0;
    for (what, body) in &answers.0 {
        instants += check_times(what, body);
    }
    assert!(instants > 100, "only {instants} instants seen");

    // The CLI's exports, CSV included.
    let csv = app
        .env
        .cli(&["events", "export", "--org", "json", "--format", "csv"]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "recorded_at").unwrap();
    let mut exported = 0;
    for row in rows.filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
        let recorded_at = row.split(',').nth(column).unwrap();
        assert!(is_instant(recorded_at), "CSV: {recorded_at:?} in {row}");
        exported += 1;
    }
    assert!(exported >= events.len(), "{csv}");
    let export = app.env.cli(&["events", "export", "--org", "json"]);
    assert!(export.status.success());
    let all = String::from_utf8(export.stdout).unwrap();
    for line in all.lines() {
        check_times("NDJSON export", &serde_json::from_str(line).unwrap());
    }
    // The CLI reads a range as the API does: a date as --until includes that day.
    let today = &events[0]["recorded_at"].as_str().unwrap()[..10];
    let day = app.env.cli(&[
        "events", "export", "--org", "json", "--since", today, "--until", today,
    ]);
    assert!(day.status.success());
    assert_eq!(
        String::from_utf8(day.stdout).unwrap().lines().count(),
        all.lines().count(),
        "every event of today"
    );
    let bad = app
        .env
        .cli(&["events", "export", "--org", "json", "--until", "today"]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("--until")
            && said.contains("must be a date (YYYY-MM-DD) or an RFC 3339 time"),
        "{said}"
    );
}

#[tokio::test]
async fn date_ranges_take_a_date_or_a_time_everywhere_and_the_sankey_echoes_its_filters() {
    let app = spawn_app().await;
    let owner = app.signup("owner@range.test").await;
    let token = owner.token.as_str();
    let org = app.create_org(&owner, "range").await;
    let server = app.create_server(&owner, &org, "range-docs").await;
    let api = |rest: &str| format!("/api/v1/orgs/{org}{rest}");
    let (_, wt) = app
        .post(&api("/walkthroughs"), token, json!({ "title": "Tour" }))
        .await;
    let wt = wt["id"].as_str().unwrap().to_owned();
    app.post(
        &api(&format!("/walkthroughs/{wt}/steps")),
        token,
        json!({ "title": "One", "content": "Do it" }),
    )
    .await;
    app.post(
        &api(&format!("/walkthroughs/{wt}/publish")),
        token,
        json!({}),
    )
    .await;
    let mut client = Mcp::new(app.url("/s/range-docs/t/ranger/mcp"));
    client.initialize("range-client").await;
    tool(
        &client,
        "get_support",
        json!({ "title": "a", "description": "b" }),
    )
    .await;
    let call: Value = eventually("the call listed", Duration::from_secs(10), || async {
        let (_, calls) = app.get(&api("/tool-calls"), token).await;
        calls["items"].as_array()?.first().cloned()
    })
    .await;
    let called_at = call["called_at"].as_str().unwrap().to_owned();
    let today = &called_at[..10];

    // A date as `to` includes the whole day; a time as `to` is excluded, as `from` included.
    let app_ref = &app;
    let api_ref = &api;
    let listed = |query: String| async move {
        let path = api_ref(&format!("/tool-calls?{query}"));
        let (status, body) = app_ref.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        items(&body).len()
    };
    assert_eq!(listed(format!("from={today}&to={today}")).await, 1);
    assert_eq!(listed(format!("from={called_at}")).await, 1);
    assert_eq!(listed(format!("to={called_at}")).await, 0);
    assert_eq!(listed("to=2020-01-01".to_owned()).await, 0);
    let (status, analytics) = app
        .get(
            &api(&format!("/analytics/tools?from={today}&to={today}")),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{analytics}");
    assert_eq!(analytics["from"], format!("{today}T00:00:00.000000Z"));
    let next_day =
        chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").unwrap() + chrono::Duration::days(1);
    assert_eq!(analytics["to"], format!("{next_day}T00:00:00.000000Z"));
    assert_eq!(analytics["items"][0]["calls"], 1);
    let duration = analytics["items"][0]["p50_ms"].as_f64().unwrap();
    assert!(
        duration > 0.0,
        "a call takes time, in ms with decimals: {analytics}"
    );
    // A time in a window of days stands for its UTC day.
    let (_, funnel) = app
        .get(
            &api(&format!(
                "/walkthroughs/{wt}/analytics?from={called_at}&to={called_at}"
            )),
            token,
        )
        .await;
    assert_eq!(
        (funnel["from"].as_str(), funnel["to"].as_str()),
        (Some(today), Some(today))
    );

    // The sankey echoes its filters as the analytics do.
    let filters = "from=2020-01-01&to=2020-01-31&server=range-docs&version=1";
    let (status, sankey) = app
        .get(&api(&format!("/walkthroughs/{wt}/sankey?{filters}")), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{sankey}");
    let (_, funnel) = app
        .get(
            &api(&format!("/walkthroughs/{wt}/analytics?{filters}")),
            token,
        )
        .await;
    for field in ["from", "to", "server_id", "version"] {
        assert_eq!(sankey[field], funnel[field], "{field}: {sankey}");
    }
    assert_eq!(
        (
            &sankey["from"],
            &sankey["to"],
            &sankey["server_id"],
            &sankey["version"]
        ),
        (
            &json!("2020-01-01"),
            &json!("2020-01-31"),
            &server["id"],
            &json!(1)
        )
    );

    // Anything else is refused, naming the parameter, with one sentence everywhere.
    let funnel_route = format!("/walkthroughs/{wt}/analytics?from=yesterday");
    let sankey_route = format!("/walkthroughs/{wt}/sankey?to=tomorrow");
    for (route, field) in [
        ("/tool-calls?from=yesterday", "from"),
        ("/tool-calls?to=2026-13-01", "to"),
        ("/analytics/tools?from=last%20week", "from"),
        ("/analytics/tools?to=2026-11-23T10:00", "to"),
        (funnel_route.as_str(), "from"),
        (sankey_route.as_str(), "to"),
    ] {
        let got = app.get(&api(route), token).await;
        assert_invalid_field(&got, field);
        assert_eq!(
            got.1["errors"][0]["message"], "must be a date (YYYY-MM-DD) or an RFC 3339 time",
            "{route}: {}",
            got.1
        );
    }
}

/// While the read models cannot catch up (NATS away), a write answers from the write model; what
/// it created still carries its time, taken from the event log, never null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_while_the_read_models_lag_still_carries_its_time() {
    use crate::faults::{client, Proxy};
    let env = TestEnv::new();
    let mut nats = Proxy::start("127.0.0.1:4222").await;
    let nats_url = format!("nats://{}", nats.addr);
    let proc = env.start_with(&["up"], &[("NATS_URL", &nats_url)]);
    let app = TestApp {
        proc,
        env,
        http: client(),
    };
    let owner = app.signup("owner@lag.test").await;
    let colleague = app.signup("colleague@lag.test").await;
    let token = owner.token.as_str();
    let org = app.create_org(&owner, "lag").await;
    app.create_server(&owner, &org, "lag-docs").await;
    let api = |rest: &str| format!("/api/v1/orgs/{org}{rest}");
    let (_, before) = app
        .post(&api("/walkthroughs"), token, json!({ "title": "Before" }))
        .await;
    let before = before["id"].as_str().unwrap().to_owned();
    app.post(
        &api(&format!("/walkthroughs/{before}/steps")),
        token,
        json!({ "title": "One", "content": "Do it" }),
    )
    .await;
    app.post(
        &api(&format!("/walkthroughs/{before}/publish")),
        token,
        json!({}),
    )
    .await;

    nats.cut().await;
    // Until the client notices, a write may still wait for the read models; then answers at once.
    let server = eventually(
        "writes answered from the write model",
        Duration::from_secs(30),
        || async {
            let slug = format!("lag-{}", uuid_suffix());
            let (status, body) = app
                .post(
                    &api("/servers"),
                    token,
                    json!({ "name": "s", "slug": slug }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            // A server the list does not show yet was answered from the write model.
            let (_, list) = app.get(&api("/servers"), token).await;
            let listed = items(&list).iter().any(|s| s["slug"] == body["slug"]);
            (!listed).then_some(body)
        },
    )
    .await;
    let is_instant_at = |body: &Value, field: &str| {
        assert!(
            body[field].as_str().is_some_and(is_instant),
            "`{field}` of {body}"
        );
    };
    is_instant_at(&server, "created_at");
    is_instant_at(&server, "updated_at");
    let (status, walkthrough) = app
        .post(&api("/walkthroughs"), token, json!({ "title": "During" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{walkthrough}");
    is_instant_at(&walkthrough, "created_at");
    is_instant_at(&walkthrough, "updated_at");
    let wt = walkthrough["id"].as_str().unwrap();
    let (status, step) = app
        .post(
            &api(&format!("/walkthroughs/{wt}/steps")),
            token,
            json!({ "title": "One", "content": "Do it" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{step}");
    is_instant_at(&step, "created_at");
    let slug = "lag-docs";
    let (status, assigned) = app
        .post(
            &api(&format!("/servers/{slug}/walkthroughs")),
            token,
            json!({ "walkthrough_id": before }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{assigned}");
    is_instant_at(&assigned, "assigned_at");
    let (status, changed) = app
        .patch(
            &api(&format!("/servers/{slug}/walkthroughs/{before}")),
            token,
            json!({ "display_order": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["assigned_at"], assigned["assigned_at"], "{changed}");
    let (status, invited) = app
        .post(&api("/members"), token, json!({ "email": colleague.email }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");
    is_instant_at(&invited, "invited_at");
    is_instant_at(&invited, "expires_at");
    let (status, member) = app
        .accept(&colleague, invited["invitation_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    is_instant_at(&member, "joined_at");
    assert!(member.get("invited_at").is_none(), "{member}");
    let (status, invitation) = app
        .post(
            &api("/members"),
            token,
            json!({ "email": "later@lag.test" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    is_instant_at(&invitation, "invited_at");
    assert!(invitation.get("joined_at").is_none(), "{invitation}");
    nats.restore().await;
}

fn uuid_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

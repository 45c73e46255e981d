//! Invitations (issue 22, finding 2): an invitation grants nothing until accepted through its
//! own link, a single-use, expiring token shown to the inviter once and stored only as a hash.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

fn token(invited: &Value) -> &str {
    invited["invitation_token"]
        .as_str()
        .expect("invitation_token")
}

async fn emails_of(app: &TestApp, user: &User, org: &str) -> Vec<(String, String)> {
    let (status, list) = app
        .get(&format!("/api/v1/orgs/{org}/members"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    items(&list)
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Signing up with an invited email, without the invitation's token, joins nothing (it used to
/// join the org with the invited role).
#[tokio::test]
async fn signing_up_with_an_invited_email_but_without_the_token_joins_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    // (A plain POST, as before invitations had tokens: on the old code this test fails on
    // what it is about, the membership, not on the answer's new fields.)
    let (status, invited) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &alice.token,
            json!({ "email": "mallory@example.com", "role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");

    let signed_up = signup_full(&app, "mallory@example.com").await;
    assert_eq!(signed_up["joined_orgs"], json!([]), "{signed_up}");
    let mallory = signed_up["access_token"].as_str().unwrap();
    let got = app.get(&format!("/api/v1/orgs/{org}"), mallory).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (_, me) = app.get("/api/v1/me", mallory).await;
    assert_eq!(me["orgs"], json!([]), "{me}");
    // The invitation is still pending, and the org still has one owner.
    assert!(emails_of(&app, &alice, &org)
        .await
        .contains(&("mallory@example.com".into(), "invited".into())));
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 1, "invitations_pending": 1 }),
    )
    .await;
}

/// An account that existed before its email was invited as owner is not an owner, nor a
/// member, until it accepts (it used to be an active owner at once).
#[tokio::test]
async fn an_existing_account_invited_as_owner_is_not_a_member_until_it_accepts() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let (status, invited) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &alice.token,
            json!({ "email": bob.email, "role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");

    let got = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    assert_eq!(invited["status"], "invited", "{invited}");
    assert!(invited["user_id"].is_null(), "{invited}");
    // An owner could demote Alice: Bob cannot even see the org.
    let got = app
        .patch(
            &format!("/api/v1/orgs/{org}/members/{}", alice.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (_, orgs) = app.get("/api/v1/orgs", &bob.token).await;
    assert_eq!(orgs["items"], json!([]), "{orgs}");
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 1, "invitations_pending": 1 }),
    )
    .await;

    // Accepting, signed in: an owner now.
    let (status, joined) = app.accept(&bob, token(&invited)).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["role"], "owner");
    let (status, org_for_bob) = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(org_for_bob["role"], "owner");
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 2, "invitations_pending": 0 }),
    )
    .await;
}

/// A link works once, for the invited email only; used, revoked, replaced, malformed and
/// unknown tokens get the same answer, whichever org sent them.
#[tokio::test]
async fn an_invitation_is_accepted_once_by_the_invited_email_only() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let eve = app.signup("eve@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let other_org = app.create_org(&eve, "evil").await;
    let invited = app.invite(&alice, &org, &bob.email, "admin").await;

    // Another account cannot use Bob's link, and it stays usable.
    let got = app.accept(&eve, token(&invited)).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "invitation_email_mismatch");
    // Nor can anyone without signing in.
    let got = app
        .call(
            Method::POST,
            &format!("/api/v1/invitations/{}/accept", token(&invited)),
            None,
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);

    let (status, joined) = app.accept(&bob, token(&invited)).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["org_id"], org.as_str());
    assert_eq!(joined["user_id"], bob.id.as_str());
    assert_eq!(joined["role"], "admin");
    assert_eq!(joined["status"], "active");

    // Used: refused. Unknown, malformed, and another org's used link: the same answer.
    let used = app.accept(&bob, token(&invited)).await;
    assert_problem(&used, StatusCode::NOT_FOUND, "invitation_not_found");
    let other = app.invite(&eve, &other_org, &alice.email, "member").await;
    app.accept(&alice, token(&other)).await;
    for bad in [
        "mcpi_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        "not-a-token".to_owned(),
        token(&other).to_owned(),
    ] {
        let got = app.accept(&bob, &bad).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "invitation_not_found");
        assert_eq!(got.1["detail"], used.1["detail"], "{bad}: {}", got.1);
    }
    // Revoked: refused too, also at signup.
    let carol = app
        .invite(&alice, &org, "carol@example.com", "member")
        .await;
    let (status, _) = app
        .delete(
            &format!("/api/v1/orgs/{org}/members/carol@example.com"),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({
                "email": "carol@example.com", "password": PASSWORD, "name": "Carol",
                "invitation_token": token(&carol),
            })),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invitation_not_found");
    // A new account with someone else's link: refused, and not created.
    let dave = app.invite(&alice, &org, "dave@example.com", "member").await;
    let got = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({
                "email": "notdave@example.com", "password": PASSWORD, "name": "Not Dave",
                "invitation_token": token(&dave),
            })),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "invitation_email_mismatch");
    let got = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "notdave@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);
    // Dave's own signup with it joins.
    let dave_signed_up = signup_with_invitation(&app, "dave@example.com", token(&dave)).await;
    assert_eq!(dave_signed_up["joined_orgs"], json!([org]));
}

/// The token is shown once, in the invitation's answer: no event, no index row and no log line
/// holds it (the index keeps its sha256 hash), not even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_token_is_in_no_event_and_no_log() {
    let env = TestEnv::new();
    let mut child = env
        .command()
        .env("RUST_LOG", "debug")
        .arg("up")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut base = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.trim().strip_prefix("mcplatform listening on ") {
            base = Some(rest.to_owned());
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || for _ in stdout.lines() {});
    let app = TestApp {
        proc: Proc {
            child,
            base: Some(base.expect("listening")),
        },
        env,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };

    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let invited = app.invite(&alice, &org, &bob.email, "member").await;
    let bob_token = token(&invited).to_owned();
    let (status, _) = app.accept(&bob, &bob_token).await;
    assert_eq!(status, StatusCode::OK);
    let carol = app
        .invite(&alice, &org, "carol@example.com", "member")
        .await;
    let carol_token = token(&carol).to_owned();
    signup_with_invitation(&app, "carol@example.com", &carol_token).await;
    let pending = app.invite(&alice, &org, "dave@example.com", "member").await;
    let pending_token = token(&pending).to_owned();

    let pool = app.env.pool().await;
    for secret in [&bob_token, &carol_token, &pending_token] {
        let pattern = format!("%{secret}%");
        let in_events: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE payload::text LIKE $1 OR metadata::text LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(in_events, 0, "a token is in an event");
        let in_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM unique_keys WHERE key LIKE $1")
            .bind(&pattern)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(in_keys, 0, "a token is in the index");
    }
    // The pending invitation is known by its hash only.
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT key FROM unique_keys WHERE kind = 'invitation_token'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(hashes.len(), 1, "used tokens are released: {hashes:?}");
    let invited_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'MemberInvited' \
         AND payload->>'token_hash' = $1",
    )
    .bind(&hashes[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(invited_events, 1, "the event carries the hash");

    let TestApp { mut proc, env, .. } = app;
    proc.kill();
    let log = log.join().unwrap();
    drop(env);
    assert!(
        log.contains("/api/v1/invitations/{token}/accept"),
        "the accept requests are logged, at debug level, without their token:\n{log}"
    );
    for secret in [&bob_token, &carol_token, &pending_token] {
        assert!(!log.contains(secret.as_str()), "a token was logged:\n{log}");
    }
}

//! Platform authentication over HTTP: signup, login, refresh rotation and reuse detection,
//! logout, `/me`, forged tokens, login failures (recorded and rate limited) and every kind of
//! bad request body. Nothing here may answer 500.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use std::time::Instant;

const SIGNUP: &str = "/api/v1/auth/signup";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const LOGOUT: &str = "/api/v1/auth/logout";
const ME: &str = "/api/v1/me";

/// Asserts a problem+json body with the given status and code.
#[track_caller]
fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "expected {status} {code}, got {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["type"].is_string(), "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

/// Asserts a 422 whose `errors` name `field`.
#[track_caller]
fn assert_invalid_field(got: &(StatusCode, Value), field: &str) {
    assert_problem(got, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let errors = got.1["errors"].as_array().expect("errors array");
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && e["message"].is_string()),
        "expected an error on `{field}`: {}",
        got.1
    );
}

/// Sends a raw body with an optional content type; returns status, headers, and the JSON body.
async fn raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = app.http.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn anon_post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, path, None, Some(body)).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    anon_post(app, LOGIN, json!({ "email": email, "password": password })).await
}

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    anon_post(app, REFRESH, json!({ "refresh_token": token })).await
}

#[track_caller]
fn assert_token_pair(body: &Value) {
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["refresh_token_expires_in"]
            .as_i64()
            .is_some_and(|s| s > body["expires_in"].as_i64().unwrap_or(0)),
        "{body}"
    );
}

/// base64url without padding, for hand-made JWTs.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Starts `mcplatform up` on its own database with a different `MCPLATFORM_SECRET`.
fn start_with_secret(env: &TestEnv, secret: &str) -> Proc {
    env.start_with(&["up"], &[("MCPLATFORM_SECRET", secret)])
}

#[tokio::test]
async fn signup_login_me_and_refresh_rotation() {
    let app = spawn_app().await;

    // Signup answers the user and a token pair.
    let (status, body) = anon_post(
        &app,
        SIGNUP,
        json!({ "email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "alice@example.com", "{body}");
    assert_eq!(body["user"]["name"], "Alice", "{body}");
    let user_id = body["user"]["id"].as_str().expect("user id").to_owned();
    assert_eq!(body["joined_orgs"], json!([]), "{body}");
    assert_token_pair(&body);
    let signup_access = body["access_token"].as_str().expect("access").to_owned();

    // /me with the signup token.
    let (status, me) = app.get(ME, &signup_access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], user_id.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["orgs"], json!([]));

    // The same email again, in another case: taken.
    let dup = anon_post(
        &app,
        SIGNUP,
        json!({ "email": "ALICE@example.com", "password": PASSWORD, "name": "Alice 2" }),
    )
    .await;
    assert_problem(&dup, StatusCode::CONFLICT, "email_taken");

    // Login (email case and whitespace do not matter).
    let (status, pair) = login(&app, "Alice@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_token_pair(&pair);
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let (status, me) = app.get(ME, &access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], user_id.as_str());

    // Refresh rotates: a new pair whose refresh token differs, and which itself refreshes.
    let r0 = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, p1) = refresh(&app, &r0).await;
    assert_eq!(status, StatusCode::OK, "{p1}");
    assert_token_pair(&p1);
    let r1 = p1["refresh_token"].as_str().expect("refresh").to_owned();
    assert_ne!(r1, r0);
    let (status, me) = app.get(ME, p1["access_token"].as_str().expect("a")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], user_id.as_str());
    let (status, p2) = refresh(&app, &r1).await;
    assert_eq!(status, StatusCode::OK, "{p2}");
    let r2 = p2["refresh_token"].as_str().expect("refresh").to_owned();
    assert_ne!(r2, r1);
    assert_ne!(r2, r0);

    // The signup's own refresh family is independent of the login's and still works.
    let signup_refresh = body["refresh_token"].as_str().expect("refresh");
    let (status, sp) = refresh(&app, signup_refresh).await;
    assert_eq!(status, StatusCode::OK, "{sp}");

    // Logout ends the family: its current token no longer refreshes.
    let (status, _) = anon_post(&app, LOGOUT, json!({ "refresh_token": r2 })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after_logout = refresh(&app, &r2).await;
    assert_eq!(
        after_logout.0,
        StatusCode::UNAUTHORIZED,
        "{}",
        after_logout.1
    );
    assert!(
        after_logout.1["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("refresh_token_") || c == "invalid_refresh_token"),
        "{}",
        after_logout.1
    );
    // The other family (from signup) is untouched by that logout.
    let sp_refresh = sp["refresh_token"].as_str().expect("refresh");
    let (status, _) = refresh(&app, sp_refresh).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let user = app.signup("bob@example.com").await;

    let (status, p1) = refresh(&app, &user.refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{p1}");
    let r1 = p1["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, p2) = refresh(&app, &r1).await;
    assert_eq!(status, StatusCode::OK, "{p2}");
    let newest = p2["refresh_token"].as_str().expect("refresh").to_owned();

    // Replaying an already-rotated token (the very first one) is detected as reuse...
    let reused = refresh(&app, &user.refresh_token).await;
    assert_problem(&reused, StatusCode::UNAUTHORIZED, "refresh_token_reused");
    // ...and afterwards even the newest token of that family is refused.
    let newest_after = refresh(&app, &newest).await;
    assert_problem(
        &newest_after,
        StatusCode::UNAUTHORIZED,
        "refresh_token_revoked",
    );
    let middle_after = refresh(&app, &r1).await;
    assert_eq!(
        middle_after.0,
        StatusCode::UNAUTHORIZED,
        "{}",
        middle_after.1
    );

    // The reuse is recorded as an event of the family.
    let pool = app.env.pool().await;
    let revoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'RefreshTokenFamilyRevoked'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(revoked, 1);

    // Access tokens are stateless and still valid; logging in again starts a fresh family.
    let (status, _) = app.get(ME, &user.token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, pair) = login(&app, &user.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let (status, _) = refresh(&app, pair["refresh_token"].as_str().expect("r")).await;
    assert_eq!(status, StatusCode::OK);

    // Garbage and well-formed-but-unknown refresh tokens.
    for garbage in [
        "",
        "nope",
        "mcpr_nope",
        "mcpr_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        user.token.as_str(),
    ] {
        let got = refresh(&app, garbage).await;
        assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    // A token of a real family with a wrong secret part is not accepted either.
    let family_prefix = &newest[..newest.len() - 43];
    let forged = format!("{family_prefix}{}", "B".repeat(43));
    let got = refresh(&app, &forged).await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);

    // Logout with garbage is a 401, never a 204 or a 500.
    let got = anon_post(&app, LOGOUT, json!({ "refresh_token": "nope" })).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
}

#[tokio::test]
async fn failed_logins_are_recorded_and_rate_limited_per_account() {
    let app = spawn_app().await;
    let carol = app.signup("carol@example.com").await;
    let dave = app.signup("dave@example.com").await;
    let pool = app.env.pool().await;

    // Unknown email and wrong password look the same.
    let unknown = login(&app, "nobody@example.com", PASSWORD).await;
    assert_problem(&unknown, StatusCode::UNAUTHORIZED, "invalid_credentials");

    // Four wrong passwords for carol (in varying case): each 401, none limited yet.
    for email in [
        "carol@example.com",
        "CAROL@example.com",
        "Carol@Example.com",
        "carol@example.com",
    ] {
        let got = login(&app, email, "wrong password 12345").await;
        assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // The fifth attempt is still within the burst: the right password logs in.
    let (status, body) = login(&app, &carol.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The sixth rapid attempt is limited, right password or not.
    let resp = app
        .http
        .post(app.url(LOGIN))
        .json(&json!({ "email": "carol@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp
        .headers()
        .get(RETRY_AFTER)
        .expect("Retry-After header")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        resp.headers()[CONTENT_TYPE],
        "application/problem+json",
        "problem content type"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited", "{body}");
    let limited = login(&app, "carol@example.com", "wrong password 12345").await;
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    // Another account is not affected.
    let (status, body) = login(&app, &dave.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every failed (not limited) attempt is a platform-level LoginFailed event.
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'LoginFailed'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(failed, 5, "1 unknown email + 4 wrong passwords");
    let with_org: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LoginFailed' AND org_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(with_org, 0, "login failures belong to no org");
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'LoginSucceeded'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(succeeded, 2);
    // The stored failures never contain the password typed.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%wrong password%' \
         OR metadata::text LIKE '%wrong password%'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(leaked, 0);

    // Carol's existing access token keeps working while her logins are limited.
    let (status, _) = app.get(ME, &carol.token).await;
    assert_eq!(status, StatusCode::OK);
}

/// The auth scheme is case-insensitive (RFC 9110): `BEARER`, `bearer` or `bEaReR` all work.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let user = app.signup("frank@example.com").await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = app
            .http
            .get(app.url(ME))
            .header("authorization", format!("{scheme} {}", user.token))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
        assert_eq!(body["email"], "frank@example.com", "{body}");
    }
}

#[tokio::test]
async fn missing_and_forged_access_tokens_are_refused() {
    let app = spawn_app().await;
    let user = app.signup("erin@example.com").await;

    // No Authorization header at all.
    let got = app.call(Method::GET, ME, None, None).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "missing_token");
    let got = app.call(Method::GET, "/api/v1/orgs", None, None).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "missing_token");
    let got = app
        .call(
            Method::POST,
            "/api/v1/orgs",
            None,
            Some(json!({ "name": "x", "slug": "xyz" })),
        )
        .await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "missing_token");

    // A header that is not a bearer token.
    let resp = app
        .http
        .get(app.url(ME))
        .header("Authorization", format!("Basic {}", b64url(b"erin:pw")))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_token", "{body}");
    // A header that is there but not text: a malformed token, not a missing one.
    let resp = app
        .http
        .get(app.url(ME))
        .header(
            "Authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_token", "{body}");

    // Tampered variants of a real token.
    let parts: Vec<&str> = user.token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let claims = json!({
        "sub": user.id, "email": user.email, "iat": 0, "exp": 4_000_000_000_i64,
        "iss": "mcplatform", "aud": "mcplatform-platform-api", "typ": "access",
    });
    let other_sub = json!({
        "sub": "00000000-0000-0000-0000-000000000001", "email": "root@example.com",
        "iat": 0, "exp": 4_000_000_000_i64,
        "iss": "mcplatform", "aud": "mcplatform-platform-api", "typ": "access",
    });
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let mut flipped_sig = parts[2].to_owned();
    let last = flipped_sig.pop().expect("signature");
    flipped_sig.push(if last == 'A' { 'B' } else { 'A' });
    let forged = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        String::new(),
        // Signature of one payload on another payload.
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(other_sub.to_string().as_bytes()),
            parts[2]
        ),
        // A broken signature.
        format!("{}.{}.{}", parts[0], parts[1], flipped_sig),
        // Unsigned (`alg: none`), with and without a trailing signature.
        format!("{none_header}.{}.", b64url(claims.to_string().as_bytes())),
        format!(
            "{none_header}.{}.{}",
            b64url(claims.to_string().as_bytes()),
            parts[2]
        ),
        // A refresh token is not an access token.
        user.refresh_token.clone(),
    ];
    for token in &forged {
        let resp = app
            .http
            .get(app.url(ME))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "token {token:?}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "invalid_token", "token {token:?}: {body}");
    }

    // A token signed with another deployment's secret.
    let other_env = TestEnv::new();
    let other = start_with_secret(&other_env, "another-secret-fedcba9876543210");
    let other_url = format!("{}{}", other.base(), SIGNUP);
    let resp = app
        .http
        .post(other_url)
        .json(&json!({ "email": user.email, "password": PASSWORD, "name": "Erin" }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.expect("json");
    let foreign = body["access_token"].as_str().expect("token").to_owned();
    drop(other);
    let got = app.get(ME, &foreign).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_token");
    let got = app.get("/api/v1/orgs", &foreign).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_token");

    // The real token still works.
    let (status, _) = app.get(ME, &user.token).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn weak_passwords_and_invalid_fields_are_422() {
    let app = spawn_app().await;
    let signup = |email: &str, password: &str, name: &str| json!({ "email": email, "password": password, "name": name });

    for weak in [
        "short1!",         // < 10 chars
        "aaaaaaaaaaaaaaa", // 1 distinct char
        "abababababab12",  // 4 distinct chars
        "password123",     // common
        "Password123",     // common, in another case
        "1234567890",      // common
    ] {
        let got = anon_post(&app, SIGNUP, signup("weak@example.com", weak, "Weak")).await;
        assert_invalid_field(&got, "password");
    }
    for bad_email in [
        "",
        "not-an-email",
        "@example.com",
        "a@b",
        "a@.com",
        "a b@example.com",
    ] {
        let got = anon_post(&app, SIGNUP, signup(bad_email, PASSWORD, "Bad")).await;
        assert_invalid_field(&got, "email");
    }
    let got = anon_post(&app, SIGNUP, signup("noname@example.com", PASSWORD, "  ")).await;
    assert_invalid_field(&got, "name");

    // Several invalid fields are reported together.
    let got = anon_post(&app, SIGNUP, signup("nope", "weak", "ok")).await;
    assert_invalid_field(&got, "email");
    assert_invalid_field(&got, "password");

    // None of these created an account.
    let got = login(&app, "weak@example.com", "password123").await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "invalid_credentials");
    let pool = app.env.pool().await;
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserSignedUp'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn unreadable_bodies_get_400_413_415_422_and_never_500() {
    let app = spawn_app().await;
    let user = app.signup("frank@example.com").await;
    let json_ct = Some("application/json");

    // Malformed JSON, on every body-taking auth route.
    for path in [SIGNUP, LOGIN, REFRESH, LOGOUT] {
        for body in ["{", "not json", "{,}", "[", "nul", "{'email': 'x'}"] {
            let (status, headers, problem) = raw(&app, path, json_ct, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {problem}");
            assert_eq!(
                problem["code"], "malformed_json",
                "{path} {body}: {problem}"
            );
            assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
        }
        // An empty body is not JSON either.
        let (status, _, problem) = raw(&app, path, json_ct, "").await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{path} empty body: {status} {problem}"
        );
    }

    // Missing or wrong content type: 415.
    let valid = json!({ "email": "g@example.com", "password": PASSWORD, "name": "G" }).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, headers, problem) = raw(&app, SIGNUP, ct, valid.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct:?}: {problem}"
        );
        assert_eq!(problem["code"], "unsupported_media_type", "{problem}");
        assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
    }
    let (status, _, problem) = raw(&app, LOGIN, None, r#"{"email":"a@b.co","password":"x"}"#).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");

    // Oversized bodies: 413, valid JSON or not.
    let huge_name = "x".repeat(70 * 1024);
    let big =
        json!({ "email": "big@example.com", "password": PASSWORD, "name": huge_name }).to_string();
    for path in [SIGNUP, LOGIN] {
        let (status, _, problem) = raw(&app, path, json_ct, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {problem}");
        assert_eq!(problem["code"], "payload_too_large", "{problem}");
    }
    let resp = app
        .http
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(&user.token)
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"name\":\"{huge_name}\",\"slug\":\"big\"}}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Wrong types, missing fields and unknown fields: 422 naming the field.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            SIGNUP,
            json!({ "email": 5, "password": PASSWORD, "name": "N" }),
            "email",
        ),
        (
            SIGNUP,
            json!({ "email": "n@example.com", "password": ["a"], "name": "N" }),
            "password",
        ),
        (
            SIGNUP,
            json!({ "email": "n@example.com", "password": PASSWORD, "name": null }),
            "name",
        ),
        (
            SIGNUP,
            json!({ "email": "n@example.com", "password": PASSWORD }),
            "name",
        ),
        (
            SIGNUP,
            json!({ "email": "n@example.com", "password": PASSWORD, "name": "N", "admin": true }),
            "admin",
        ),
        (LOGIN, json!({ "email": "n@example.com" }), "password"),
        (
            LOGIN,
            json!({ "email": "n@example.com", "password": 123 }),
            "password",
        ),
        (REFRESH, json!({ "refresh_token": 42 }), "refresh_token"),
        (REFRESH, json!({}), "refresh_token"),
        (
            REFRESH,
            json!({ "refresh_token": "x", "extra": 1 }),
            "extra",
        ),
        (LOGOUT, json!({ "token": "x" }), "token"),
    ];
    for (path, body, field) in cases {
        let got = anon_post(&app, path, body.clone()).await;
        assert_eq!(
            got.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {}",
            got.1
        );
        assert_invalid_field(&got, field);
    }
    // A body that is JSON but not an object.
    for body in [json!([]), json!("text"), json!(null), json!(1)] {
        let got = anon_post(&app, SIGNUP, body.clone()).await;
        assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", got.1);
    }

    // Unknown routes and methods are problem+json too.
    let got = app.get("/api/v1/nope", &user.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "route_not_found");
    let got = app.call(Method::GET, "/nope", None, None).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "route_not_found");
    let got = app.call(Method::GET, SIGNUP, None, None).await;
    assert_eq!(got.0, StatusCode::METHOD_NOT_ALLOWED, "{}", got.1);
    assert_eq!(got.1["code"], "method_not_allowed");
    assert_eq!(
        got.1["status"], 405,
        "the body agrees with the status: {}",
        got.1
    );

    // After all that the server is healthy and answers normally.
    let (status, _) = app.get(ME, &user.token).await;
    assert_eq!(status, StatusCode::OK);
    let pool = app.env.pool().await;
    let signed_up: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserSignedUp'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(signed_up, 1, "no bad body created an account");
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_client_ip_across_accounts() {
    let app = spawn_app().await;
    // 30 attempts at once per ip (each for a different account, so the per-account budget
    // never binds), then 429.
    let mut limited = None;
    let started = Instant::now();
    for i in 0..80 {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": format!("nobody{i}@example.com"), "password": "not the password" })),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["code"], "rate_limited");
            limited = Some(i);
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let limited = limited.expect("the per-ip limit applied");
    // The budget refills one attempt a second while the loop runs.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (30..=30 + refilled).contains(&limited),
        "limited after {limited} attempts in {:?}",
        started.elapsed()
    );
}

/// A client whose connections come from `address` (any 127.0.0.0/8 address is loopback): the
/// server sees only the socket's peer address, so this is how a test is another client.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().expect("an address"))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn login_from(
    app: &TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> (StatusCode, HeaderMap, Value) {
    let resp = client_from(address)
        .post(app.url(LOGIN))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn limit_refusals(pool: &sqlx::PgPool, limit: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LimitRefused' AND payload->>'limit' = $1",
    )
    .bind(limit)
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn guesses_from_many_addresses_never_lock_the_owner_out() {
    let app = spawn_app().await;
    let victim = app.signup("victim@example.com").await;
    // Five wrong passwords, each from its own address (X-Forwarded-For is not trusted, so the
    // socket's address is what counts).
    for n in 2..=6 {
        let (status, _, body) = login_from(
            &app,
            &format!("127.0.0.{n}"),
            &victim.email,
            "wrong password 12345",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // A sixth guess keeps the account's per-account budget spent (the old behaviour)...
    let (status, _, _) = login_from(&app, "127.0.0.8", &victim.email, "wrong password 12345").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...and the owner, from a fresh address, still gets in.
    let (status, _, body) = login_from(&app, "127.0.0.7", &victim.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the owner is locked out: {body}");
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn repeated_guesses_from_one_address_are_refused_with_retry_after() {
    let app = spawn_app().await;
    let victim = app.signup("victim@example.com").await;
    let pool = app.env.pool().await;
    let mut refused = None;
    for attempt in 0..8 {
        let (status, headers, body) =
            login_from(&app, "127.0.0.9", &victim.email, "wrong password 12345").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["code"], "rate_limited", "{body}");
            let retry: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            refused = Some(attempt);
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert_eq!(
        refused,
        Some(5),
        "five attempts per account and address, then 429"
    );
    // The owner, elsewhere, is not affected.
    let (status, _, body) = login_from(&app, "127.0.0.10", &victim.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(
        "the refusal recorded",
        std::time::Duration::from_secs(5),
        || {
            let pool = pool.clone();
            async move {
                (limit_refusals(&pool, "logins_per_account_and_address").await == 1).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn signups_from_one_address_are_limited_and_recorded() {
    let env = TestEnv::new();
    let proc = env.start_with(
        &["up"],
        &[("MCPLATFORM_LIMIT_SIGNUPS_PER_ADDRESS_PER_HOUR", "3")],
    );
    let app = TestApp {
        proc,
        env,
        http: client_from("127.0.0.11"),
    };
    for n in 0..3 {
        app.signup(&format!("user{n}@example.com")).await;
    }
    let resp = app
        .http
        .post(app.url(SIGNUP))
        .json(&json!({ "email": "user3@example.com", "password": PASSWORD, "name": "Four" }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry >= 60,
        "an hour's budget refills slowly: Retry-After {retry}"
    );
    let body: Value = resp.json().await.expect("problem");
    assert_eq!(body["code"], "limit_reached", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("signups_per_address"),
        "{body}"
    );
    // Refused twice, recorded once (one refusal event per limit and key a minute).
    let again = app
        .http
        .post(app.url(SIGNUP))
        .json(&json!({ "email": "user4@example.com", "password": PASSWORD, "name": "Five" }))
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address signs up.
    let resp = client_from("127.0.0.12")
        .post(app.url(SIGNUP))
        .json(&json!({ "email": "user3@example.com", "password": PASSWORD, "name": "Four" }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);

    let pool = app.env.pool().await;
    let signed_up: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserSignedUp'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(signed_up, 4, "the refused signups created nobody");
    assert_eq!(limit_refusals(&pool, "signups_per_address").await, 1);
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LimitRefused' \
         AND payload::text LIKE '%127.0.0.11%'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        leaked, 0,
        "the refusal's payload does not carry the address"
    );
}

//! Inputs found by fuzzing the OpenAPI document (schemathesis): values Postgres cannot store or
//! compare, such as NUL bytes, are a 4xx and never a 500 or an endless retry.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

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

    // In filters: a clear 400, for pages and for the live stream.
    for path in [
        format!("/api/v1/orgs/{org}/events?type=Server%00Created"),
        format!("/api/v1/orgs/{org}/events/stream?type=Server%00Created"),
        format!("/api/v1/orgs/{org}/events?type=drop%20table"),
    ] {
        let (status, body) = app.get(&path, &owner.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], "invalid_type");
    }

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

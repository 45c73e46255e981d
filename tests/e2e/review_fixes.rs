//! Properties found in review: credentials never travel in events, UUID-shaped slugs cannot
//! shadow ids, a live stream ends with access, and an invitation racing a signup is never lost.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn events_carry_no_credentials() {
    let app = spawn_app().await;
    let user = app.signup("ada@example.com").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let pool = app.env.pool().await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%argon2%' OR payload::jsonb ? 'password_hash'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "a password hash is in an event payload");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn uuid_shaped_slugs_are_refused() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let uuid_slug = uuid::Uuid::new_v4().to_string();
    let (status, body) = app
        .post(
            "/api/v1/orgs",
            &owner.token,
            json!({"name": "x", "slug": uuid_slug}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "slug");
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/servers"),
            &owner.token,
            json!({"name": "x", "slug": uuid_slug}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_live_stream_ends_when_the_member_is_removed() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let member = app.signup("member@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            &owner.token,
            json!({"email": member.email, "role": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut stream = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/events/stream")))
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, _) = app
        .delete(
            &format!("/api/v1/orgs/{org}/members/{}", member.id),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Events keep happening in the org; the removed member's stream must end.
    app.create_server(&owner, &org, "after-removal").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    })
    .await;
    let seen = ended.expect("the stream of a removed member ended");
    assert!(
        !seen.contains("after-removal"),
        "a removed member saw a later event: {seen}"
    );
}

#[tokio::test]
async fn an_invitation_racing_the_signup_of_its_email_is_never_lost() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");
    for i in 0..8 {
        let email = format!("racer{i}@acme.dev");
        let invite = app.post(
            &members_path,
            &owner.token,
            json!({"email": email, "role": "admin"}),
        );
        let signup = app.call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": email, "password": PASSWORD, "name": "Racer"})),
        );
        let ((invite_status, invite_body), (signup_status, signup_body)) =
            tokio::join!(invite, signup);
        assert_eq!(invite_status, StatusCode::CREATED, "{invite_body}");
        assert_eq!(signup_status, StatusCode::CREATED, "{signup_body}");
        let token = signup_body["access_token"].as_str().unwrap().to_owned();
        // Whichever came first, the new account ends up an active admin of the org.
        eventually(
            "the racer to be a member",
            Duration::from_secs(10),
            || async {
                let (status, body) = app.get(&format!("/api/v1/orgs/{org}"), &token).await;
                (status == StatusCode::OK && body["role"] == "admin").then_some(())
            },
        )
        .await;
    }
}

//! Secrets at rest (issue 22, finding 9): what the append-only log never keeps.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A password typed in the email field of the login form is never stored: a failed login keeps
/// the attempted email only when it is an email address.
#[tokio::test]
async fn a_password_typed_as_the_email_of_a_failed_login_is_never_stored() {
    let app = spawn_app().await;
    let secret = "Tr0ub4dor&3-typed-in-the-wrong-field";
    for email in [secret, "nobody@example.com"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": "whatever it is" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let pool = app.env.pool().await;
    let failures: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE event_type = 'LoginFailed' ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0]["email"].is_null(), "{}", failures[0]);
    assert_eq!(failures[0]["not_an_email"], true, "{}", failures[0]);
    assert_eq!(
        failures[1]["email"], "nobody@example.com",
        "{}",
        failures[1]
    );
    let anywhere: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%Tr0ub4dor%' \
         OR metadata::text LIKE '%Tr0ub4dor%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(anywhere, 0);
}

//! Signed tracking ids (issue 22, finding 8): a server that requires them refuses unsigned and
//! forged ids and creates nothing for them; a signed id names the end user by its bare id, the
//! same across secret rotations; secrets are shown once and appear in no event.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use commands::tracking::sign;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

struct Tenant {
    app: TestApp,
    owner: User,
    org: String,
}

async fn tenant() -> Tenant {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    Tenant { app, owner, org }
}

impl Tenant {
    fn secrets_path(&self) -> String {
        format!(
            "/api/v1/orgs/{}/servers/acme-docs/tracking-secrets",
            self.org
        )
    }

    fn mcp(&self, tracking_id: &str) -> Mcp {
        Mcp::new(self.app.url(&format!("/s/acme-docs/t/{tracking_id}/mcp")))
    }

    /// A new secret: its id and the secret.
    async fn new_secret(&self) -> (String, String) {
        let (status, body) = self
            .app
            .post(&self.secrets_path(), &self.owner.token, json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let secret = body["secret"].as_str().unwrap().to_owned();
        assert!(
            secret.starts_with(body["prefix"].as_str().unwrap()),
            "{body}"
        );
        (body["id"].as_str().unwrap().to_owned(), secret)
    }

    async fn require_signed(&self, on: bool) -> (StatusCode, Value) {
        self.app
            .patch(
                &format!("/api/v1/orgs/{}/servers/acme-docs", self.org),
                &self.owner.token,
                json!({ "require_signed_tracking": on }),
            )
            .await
    }

    /// The tracking ids of every `EndUserIdentified` event of the org (from the event store).
    async fn identified(&self) -> Vec<String> {
        let (status, body) = self
            .app
            .get(
                &format!("/api/v1/orgs/{}/events?type=EndUserIdentified", self.org),
                &self.owner.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        items(&body)
            .iter()
            .map(|e| e["payload"]["tracking_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Initializes a session as `tracking_id`; returns the status (200 when accepted).
    async fn connect(&self, tracking_id: &str) -> (StatusCode, Value) {
        let mcp = self.mcp(tracking_id);
        let reply = mcp
            .call(
                "initialize",
                json!({
                    "protocolVersion": crate::mcp_raw::LEGACY,
                    "capabilities": {},
                    "clientInfo": { "name": "signed", "version": "1.0" },
                }),
            )
            .await;
        (reply.status, reply.message())
    }
}

fn signed(secret: &str, id: &str) -> String {
    format!("{id}.{}", sign(secret.as_bytes(), id))
}

#[tokio::test]
async fn a_server_requiring_signed_ids_refuses_others_and_names_the_bare_id() {
    let t = tenant().await;

    // Requiring signatures before any secret exists is refused.
    let refused = t.require_signed(true).await;
    assert_invalid_field(&refused, "require_signed_tracking");
    let (status, body) = t
        .app
        .get(
            &format!("/api/v1/orgs/{}/servers/acme-docs", t.org),
            &t.owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require_signed_tracking"], false, "{body}");

    let (_, secret) = t.new_secret().await;
    let (status, body) = t.require_signed(true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require_signed_tracking"], true, "{body}");

    // Unsigned, forged (another key), and signed for another id: refused, with a JSON-RPC
    // error a client can show.
    let forged = signed("mcpts_not-the-secret", "alice");
    let moved = format!("bob.{}", sign(secret.as_bytes(), "alice"));
    for refused in ["alice", forged.as_str(), moved.as_str()] {
        let (status, body) = t.connect(refused).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("signed tracking ids"), "{body}");
    }

    // A correctly signed id works, and the end user is the bare id.
    let (status, body) = t.connect(&signed(&secret, "alice")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let identified = eventually(
        "the signed end user's EndUserIdentified readable",
        Duration::from_secs(10),
        || async {
            let ids = t.identified().await;
            (!ids.is_empty()).then_some(ids)
        },
    )
    .await;
    assert_eq!(
        identified,
        vec!["alice".to_owned()],
        "refusals created someone"
    );

    // Off again: ids are taken literally, and a signed one still names the bare id.
    let (status, body) = t.require_signed(false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.connect("carol").await.0, StatusCode::OK);
    assert_eq!(t.connect(&signed(&secret, "alice")).await.0, StatusCode::OK);
    let mut ids = eventually("carol identified", Duration::from_secs(10), || async {
        let ids = t.identified().await;
        (ids.len() == 2).then_some(ids)
    })
    .await;
    ids.sort();
    assert_eq!(ids, vec!["alice".to_owned(), "carol".to_owned()]);
}

#[tokio::test]
async fn secrets_rotate_with_an_overlap_and_are_never_shown_again() {
    let t = tenant().await;
    let (first_id, first) = t.new_secret().await;
    assert_eq!(t.require_signed(true).await.0, StatusCode::OK);
    let (second_id, second) = t.new_secret().await;

    // A third is refused: two at most.
    let third = t
        .app
        .post(&t.secrets_path(), &t.owner.token, json!({}))
        .await;
    assert_problem(&third, StatusCode::CONFLICT, "too_many_tracking_secrets");

    // During the overlap, ids signed with either verify, as the same end user.
    assert_eq!(t.connect(&signed(&first, "dana")).await.0, StatusCode::OK);
    assert_eq!(t.connect(&signed(&second, "dana")).await.0, StatusCode::OK);

    // The list shows ids and prefixes, never a secret.
    let (status, listed) = t.app.get(&t.secrets_path(), &t.owner.token).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let ids: Vec<&str> = items(&listed)
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first_id.as_str(), second_id.as_str()]);
    let text = listed.to_string();
    assert!(!text.contains(&first) && !text.contains(&second), "{text}");
    assert!(items(&listed).iter().all(|s| s.get("secret").is_none()));

    // Revoking the first: its signatures stop verifying; the second's still do.
    let (status, body) = t
        .app
        .delete(&format!("{}/{first_id}", t.secrets_path()), &t.owner.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        t.connect(&signed(&first, "dana")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(t.connect(&signed(&second, "dana")).await.0, StatusCode::OK);
    let (_, listed) = t.app.get(&t.secrets_path(), &t.owner.token).await;
    assert_eq!(items(&listed).len(), 1, "{listed}");

    // The last secret of a server that requires signatures stays; an unknown one is 404.
    let last = t
        .app
        .delete(&format!("{}/{second_id}", t.secrets_path()), &t.owner.token)
        .await;
    assert_problem(&last, StatusCode::CONFLICT, "last_tracking_secret");
    let gone = t
        .app
        .delete(&format!("{}/{first_id}", t.secrets_path()), &t.owner.token)
        .await;
    assert_problem(&gone, StatusCode::NOT_FOUND, "tracking_secret_not_found");

    // One end user throughout, by the bare id.
    let ids = eventually("dana identified", Duration::from_secs(10), || async {
        let ids = t.identified().await;
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(ids, vec!["dana".to_owned()]);

    // No event, and no audit entry, carries a secret.
    for path in [
        format!("/api/v1/orgs/{}/events?limit=1000", t.org),
        format!("/api/v1/orgs/{}/audit", t.org),
    ] {
        let (status, body) = t.app.get(&path, &t.owner.token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let text = body.to_string();
        assert!(text.contains("TrackingSecretCreated") || path.ends_with("audit"));
        assert!(
            !text.contains(&first) && !text.contains(&second),
            "{path} shows a secret"
        );
    }
    // Nor is a secret stored in the clear.
    let pool = t.app.env.pool().await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM tracking_secrets")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0]
        .windows(second.len())
        .any(|w| w == second.as_bytes()));
}

#[tokio::test]
async fn only_the_servers_org_and_its_managers_touch_its_secrets() {
    let t = tenant().await;
    let (secret_id, _) = t.new_secret().await;

    // Another org's owner: the server is not found, whichever org they name.
    let stranger = t.app.signup("mallory@evil.dev").await;
    let evil = t.app.create_org(&stranger, "evil").await;
    for org in [t.org.as_str(), evil.as_str()] {
        let path = format!("/api/v1/orgs/{org}/servers/acme-docs/tracking-secrets");
        let created = t.app.post(&path, &stranger.token, json!({})).await;
        assert_eq!(created.0, StatusCode::NOT_FOUND, "{}", created.1);
        let listed = t.app.get(&path, &stranger.token).await;
        assert_eq!(listed.0, StatusCode::NOT_FOUND, "{}", listed.1);
        let revoked = t
            .app
            .delete(&format!("{path}/{secret_id}"), &stranger.token)
            .await;
        assert_eq!(revoked.0, StatusCode::NOT_FOUND, "{}", revoked.1);
    }
    let (_, listed) = t.app.get(&t.secrets_path(), &t.owner.token).await;
    assert_eq!(items(&listed).len(), 1, "{listed}");
}

//! Identity providers of an org (issue 23): an OpenID provider discovered through the outbound
//! guard (a real `oidc-provider` on loopback), a plain OAuth 2.0 one, validation, roles,
//! isolation between orgs, the binding of servers, and the client secret never answered nor
//! stored in plaintext.

use crate::helpers::*;
use crate::oidc::{OidcAccount, OidcClient, OidcProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "idp-client-secret-Zq81-first";
const NEW_SECRET: &str = "idp-client-secret-Kx22-rotated";

fn providers(org: &str) -> String {
    format!("/api/v1/orgs/{org}/identity-providers")
}

fn provider(org: &str, id: &str) -> String {
    format!("/api/v1/orgs/{org}/identity-providers/{id}")
}

/// A plain OAuth 2.0 provider on loopback addresses (nothing is fetched when it is saved).
fn github_like(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "oauth2",
        "authorization_endpoint": "http://127.0.0.1:9/login/oauth/authorize",
        "token_endpoint": "http://127.0.0.1:9/login/oauth/access_token",
        "userinfo_endpoint": "http://127.0.0.1:9/user",
        "client_id": "gh-client",
        "client_secret": SECRET,
        "scopes": ["read:user", "user:email"],
    })
}

#[track_caller]
fn no_secret(body: &Value) {
    let text = body.to_string();
    for secret in [SECRET, NEW_SECRET] {
        assert!(
            !text.contains(secret),
            "a response carries the secret: {text}"
        );
    }
    // No object carries the key (an error may name the field).
    assert!(!text.contains("\"client_secret\":"), "{text}");
}

/// Every table and every event: neither secret in plaintext (nor as hex bytes).
async fn assert_nowhere_in_plaintext(app: &TestApp, secrets: &[&str]) {
    assert_no_plaintext(app, secrets).await;
    let pool = app.env.pool().await;
    // The sealed row exists, and is not the secret.
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM identity_provider_secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(sealed >= 1);
}

#[tokio::test]
async fn an_openid_provider_is_discovered_and_its_secret_never_answered_nor_stored() {
    let idp = OidcProvider::start(
        &[OidcClient::new(
            "platform",
            SECRET,
            &["http://127.0.0.1:9/cb"],
        )],
        &[OidcAccount::verified("alice", "alice@example.com", "Alice")],
    )
    .await;
    let app = spawn_app().await;
    let alice = app.signup("alice@acme.test").await;
    let org = app.create_org(&alice, "acme").await;

    let (status, created) = app
        .post(
            &providers(&org),
            &alice.token,
            json!({
                "name": "Corp SSO",
                "kind": "oidc",
                "issuer": idp.issuer,
                "client_id": "platform",
                "client_secret": SECRET,
                "scopes": ["email", "profile"],
                "options": { "send_resource": true, "audience": null, "drop_prompt": true },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    no_secret(&created);
    let discovery: Value = reqwest::get(idp.discovery_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["kind"], "oidc");
    assert_eq!(created["issuer"], idp.issuer);
    assert_eq!(
        created["authorization_endpoint"],
        discovery["authorization_endpoint"]
    );
    assert_eq!(created["token_endpoint"], discovery["token_endpoint"]);
    assert_eq!(created["userinfo_endpoint"], discovery["userinfo_endpoint"]);
    assert_eq!(created["jwks_uri"], discovery["jwks_uri"]);
    assert_eq!(created["scopes"], json!(["openid", "email", "profile"]));
    assert_eq!(
        created["options"],
        json!({ "send_resource": true, "audience": null, "drop_prompt": true })
    );
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, listed) = app.get(&providers(&org), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&listed).len(), 1);
    no_secret(&listed);
    let (status, got) = app.get(&provider(&org, &id), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["name"], "Corp SSO");
    no_secret(&got);

    // A change rediscovers; a new secret replaces the sealed one, and is not answered either.
    let (status, patched) = app
        .patch(
            &provider(&org, &id),
            &alice.token,
            json!({ "name": "Corp SSO 2", "client_secret": NEW_SECRET,
                    "options": { "audience": "https://api.acme.test" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Corp SSO 2");
    assert_eq!(patched["options"]["audience"], "https://api.acme.test");
    assert_eq!(patched["options"]["drop_prompt"], true);
    assert_eq!(patched["jwks_uri"], discovery["jwks_uri"]);
    no_secret(&patched);

    // Discovery that does not name exactly the configured issuer is refused.
    {
        let issuer = format!("{}/", idp.issuer);
        let refused = app
            .post(
                &providers(&org),
                &alice.token,
                json!({ "name": "Mismatch", "kind": "oidc", "issuer": issuer,
                        "client_id": "platform", "client_secret": SECRET }),
            )
            .await;
        assert_problem(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "provider_discovery_failed",
        );
        assert!(
            refused.1["detail"]
                .as_str()
                .unwrap()
                .contains("unexpected issuer"),
            "{}",
            refused.1
        );
        no_secret(&refused.1);
    }
    // Nobody listening: refused the same way, not a 500.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = app
        .post(
            &providers(&org),
            &alice.token,
            json!({ "name": "Down", "kind": "oidc", "issuer": format!("http://127.0.0.1:{closed}"),
                    "client_id": "platform", "client_secret": SECRET }),
        )
        .await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "provider_discovery_failed",
    );
    // Private and metadata addresses are refused by the guard, before any request.
    for issuer in [
        "http://10.0.0.1",
        "https://169.254.169.254/latest",
        "https://[::1]:8443",
        "ftp://idp.example.com",
    ] {
        let refused = app
            .post(
                &providers(&org),
                &alice.token,
                json!({ "name": "Inside", "kind": "oidc", "issuer": issuer,
                        "client_id": "platform", "client_secret": SECRET }),
            )
            .await;
        assert_invalid_field(&refused, "issuer");
    }

    // The audit log says what happened, without the secret.
    let (status, audit) = app
        .get(&format!("/api/v1/orgs/{org}/audit"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let summaries: Vec<&str> = items(&audit)
        .iter()
        .filter_map(|entry| entry["summary"].as_str())
        .collect();
    assert!(
        summaries.contains(&"added identity provider Corp SSO (oidc)"),
        "{summaries:?}"
    );
    assert!(
        summaries.contains(&"updated identity provider Corp SSO 2, with a new client secret"),
        "{summaries:?}"
    );
    no_secret(&audit);

    assert_nowhere_in_plaintext(&app, &[SECRET, NEW_SECRET]).await;
}

#[tokio::test]
async fn fields_are_validated_for_each_kind() {
    let app = spawn_app().await;
    let alice = app.signup("alice@acme.test").await;
    let org = app.create_org(&alice, "acme").await;
    let path = providers(&org);
    let with = |change: Value| {
        let mut body = github_like("GitHub");
        for (key, value) in change.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    for (change, field) in [
        (json!({ "kind": "saml" }), "kind"),
        (json!({ "token_endpoint": null }), "token_endpoint"),
        (json!({ "userinfo_endpoint": null }), "userinfo_endpoint"),
        (
            json!({ "authorization_endpoint": "not a url" }),
            "authorization_endpoint",
        ),
        (
            json!({ "token_endpoint": "https://192.168.1.10/token" }),
            "token_endpoint",
        ),
        (
            json!({ "userinfo_endpoint": "http://api.example.com/user" }),
            "userinfo_endpoint",
        ),
        (json!({ "issuer": "https://idp.example.com" }), "issuer"),
        (json!({ "client_id": " " }), "client_id"),
        (json!({ "client_secret": "" }), "client_secret"),
        (json!({ "scopes": ["read user"] }), "scopes"),
        (json!({ "name": "" }), "name"),
        (json!({ "options": { "audience": "" } }), "options.audience"),
    ] {
        let refused = app.post(&path, &alice.token, with(change.clone())).await;
        assert_invalid_field(&refused, field);
        no_secret(&refused.1);
    }
    // An OpenID provider's endpoints come from discovery, never from the request.
    let refused = app
        .post(
            &path,
            &alice.token,
            json!({ "name": "X", "kind": "oidc", "issuer": "https://idp.example.com",
                    "token_endpoint": "https://idp.example.com/token",
                    "client_id": "c", "client_secret": SECRET }),
        )
        .await;
    assert_invalid_field(&refused, "token_endpoint");
    let refused = app
        .post(
            &path,
            &alice.token,
            json!({ "name": "X", "kind": "oidc", "client_id": "c", "client_secret": SECRET }),
        )
        .await;
    assert_invalid_field(&refused, "issuer");
    // Unknown fields and a missing secret are refused too.
    let refused = app
        .post(&path, &alice.token, with(json!({ "client_secret": null })))
        .await;
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.1);
    let refused = app
        .post(&path, &alice.token, with(json!({ "secret": "x" })))
        .await;
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.1);

    let (status, created) = app.post(&path, &alice.token, github_like("GitHub")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["kind"], "oauth2");
    assert!(created["issuer"].is_null() && created["jwks_uri"].is_null());
    assert_eq!(created["scopes"], json!(["read:user", "user:email"]));
    no_secret(&created);
    let id = created["id"].as_str().unwrap();
    let refused = app
        .patch(
            &provider(&org, id),
            &alice.token,
            json!({ "token_endpoint": "https://169.254.169.254/token" }),
        )
        .await;
    assert_invalid_field(&refused, "token_endpoint");
    assert_nowhere_in_plaintext(&app, &[SECRET]).await;
}

#[tokio::test]
async fn members_read_owners_and_admins_write_and_other_orgs_see_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice@acme.test").await;
    let bob = app.signup("bob@acme.test").await;
    let carol = app.signup("carol@acme.test").await;
    let mallory = app.signup("mallory@evil.test").await;
    let org = app.create_org(&alice, "acme").await;
    let evil = app.create_org(&mallory, "evil").await;
    app.add_member(&alice, &org, &bob, "member").await;
    app.add_member(&alice, &org, &carol, "admin").await;

    let (status, created) = app
        .post(&providers(&org), &carol.token, github_like("GitHub"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // A member reads, and cannot write.
    let (status, listed) = app.get(&providers(&org), &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&listed).len(), 1);
    no_secret(&listed);
    let (status, _) = app.get(&provider(&org, &id), &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_problem(
        &app.post(&providers(&org), &bob.token, github_like("Mine"))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(
        &app.patch(&provider(&org, &id), &bob.token, json!({ "name": "Mine" }))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(
        &app.delete(&provider(&org, &id), &bob.token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Another org's owner: the org is not theirs, and the provider is not in their org.
    for got in [
        app.get(&providers(&org), &mallory.token).await,
        app.get(&provider(&org, &id), &mallory.token).await,
        app.post(&providers(&org), &mallory.token, github_like("Evil"))
            .await,
        app.patch(
            &provider(&org, &id),
            &mallory.token,
            json!({ "name": "Evil" }),
        )
        .await,
        app.delete(&provider(&org, &id), &mallory.token).await,
    ] {
        assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    }
    for got in [
        app.get(&provider(&evil, &id), &mallory.token).await,
        app.patch(
            &provider(&evil, &id),
            &mallory.token,
            json!({ "name": "Evil" }),
        )
        .await,
        app.delete(&provider(&evil, &id), &mallory.token).await,
        app.get(&provider(&evil, "not-an-id"), &mallory.token).await,
    ] {
        assert_problem(&got, StatusCode::NOT_FOUND, "identity_provider_not_found");
    }
    let (status, theirs) = app.get(&providers(&evil), &mallory.token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&theirs).is_empty());
    // Still as it was.
    let (_, got) = app.get(&provider(&org, &id), &alice.token).await;
    assert_eq!(got["name"], "GitHub");
}

#[tokio::test]
async fn servers_bind_a_provider_of_their_own_org_and_a_used_one_is_not_deleted() {
    let app = spawn_app().await;
    let alice = app.signup("alice@acme.test").await;
    let mallory = app.signup("mallory@evil.test").await;
    let org = app.create_org(&alice, "acme").await;
    let evil = app.create_org(&mallory, "evil").await;
    let (status, created) = app
        .post(&providers(&org), &alice.token, github_like("GitHub"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let servers = format!("/api/v1/orgs/{org}/servers");

    // `oauth` needs a provider.
    let refused = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs", "slug": "docs-acme", "auth_mode": "oauth" }),
        )
        .await;
    assert_invalid_field(&refused, "identity_provider_id");
    let (status, server) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs", "slug": "docs-acme", "auth_mode": "oauth",
                    "identity_provider_id": id }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    assert_eq!(server["identity_provider_id"], id.as_str());
    assert_eq!(server["auth_mode"], "oauth");
    let server_id = server["id"].as_str().unwrap().to_owned();
    let (_, got) = app
        .get(&format!("{servers}/{server_id}"), &alice.token)
        .await;
    assert_eq!(got["identity_provider_id"], id.as_str());

    // Another org's provider, or one that does not exist, is not bound.
    let refused = app
        .post(
            &format!("/api/v1/orgs/{evil}/servers"),
            &mallory.token,
            json!({ "name": "Evil", "slug": "evil-docs", "auth_mode": "oauth",
                    "identity_provider_id": id }),
        )
        .await;
    assert_invalid_field(&refused, "identity_provider_id");
    let refused = app
        .patch(
            &format!("{servers}/{server_id}"),
            &alice.token,
            json!({ "identity_provider_id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_invalid_field(&refused, "identity_provider_id");
    // Unbinding while in `oauth` mode is refused.
    let refused = app
        .patch(
            &format!("{servers}/{server_id}"),
            &alice.token,
            json!({ "identity_provider_id": null }),
        )
        .await;
    assert_invalid_field(&refused, "identity_provider_id");

    // In use: not deleted.
    let in_use = app.delete(&provider(&org, &id), &alice.token).await;
    assert_problem(&in_use, StatusCode::CONFLICT, "identity_provider_in_use");
    assert!(
        in_use.1["detail"].as_str().unwrap().contains(&server_id),
        "{}",
        in_use.1
    );

    // Moved off it, it can go; then it can no longer be bound.
    let (status, moved) = app
        .patch(
            &format!("{servers}/{server_id}"),
            &alice.token,
            json!({ "auth_mode": "none", "identity_provider_id": null }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert!(moved["identity_provider_id"].is_null());
    let (status, _) = app.delete(&provider(&org, &id), &alice.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_problem(
        &app.get(&provider(&org, &id), &alice.token).await,
        StatusCode::NOT_FOUND,
        "identity_provider_not_found",
    );
    assert_problem(
        &app.delete(&provider(&org, &id), &alice.token).await,
        StatusCode::NOT_FOUND,
        "identity_provider_not_found",
    );
    let refused = app
        .patch(
            &format!("{servers}/{server_id}"),
            &alice.token,
            json!({ "auth_mode": "oauth", "identity_provider_id": id }),
        )
        .await;
    assert_invalid_field(&refused, "identity_provider_id");
    let pool = app.env.pool().await;
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM identity_provider_secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sealed, 0, "a deleted provider's secret is deleted");
}

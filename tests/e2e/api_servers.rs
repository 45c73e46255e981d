//! Hosted servers through the REST API: creation, slugs, updates, roles and archiving.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Alice's org "acme" with three servers (docs-acme with the defaults, api-helper and oauth-one
/// with explicit options), Bob's org "bobco", and Carol, signed up but in no org.
struct Acme {
    app: TestApp,
    alice: User,
    bob: User,
    carol: User,
    org: String,
    bob_org: String,
    docs: Value,
    docs_id: String,
    /// Acme's identity provider, which `oauth-one` signs in with.
    provider_id: String,
}

impl Acme {
    fn servers(&self) -> String {
        format!("/api/v1/orgs/{}/servers", self.org)
    }

    fn server_path(&self, server: &str) -> String {
        format!("/api/v1/orgs/{}/servers/{server}", self.org)
    }
}

async fn acme_with_servers() -> Acme {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let carol = app.signup("carol@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let bob_org = app.create_org(&bob, "bobco").await;
    let servers = format!("/api/v1/orgs/{org}/servers");

    // Defaults.
    let (status, docs) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs", "slug": "docs-acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{docs}");
    let docs_id = docs["id"].as_str().expect("id").to_owned();
    assert_eq!(docs["org_id"], org.as_str());
    assert_eq!(docs["name"], "Docs");
    assert_eq!(docs["slug"], "docs-acme");
    assert_eq!(docs["auth_mode"], "none");
    assert_eq!(docs["support_tool"], true);
    assert_eq!(docs["walkthrough_tools"], true);
    assert_eq!(docs["status"], "active");
    assert!(docs["created_at"].is_string() && docs["updated_at"].is_string());
    let urls = &docs["urls"];
    let mcp = urls["mcp"].as_str().expect("mcp url");
    assert!(
        mcp.contains("://docs-acme.") && mcp.ends_with("/mcp"),
        "{urls}"
    );
    let tracking = urls["mcp_with_tracking"].as_str().expect("tracking url");
    assert!(
        tracking.contains("://docs-acme.") && tracking.ends_with("/t/{tracking_id}/mcp"),
        "{urls}"
    );
    let path_url = urls["mcp_path"].as_str().expect("path url");
    assert!(path_url.ends_with("/s/docs-acme/mcp"), "{urls}");

    // Explicit options.
    let (status, api) = app
        .post(
            &servers,
            &alice.token,
            json!({
                "name": "API helper", "slug": "api-helper", "auth_mode": "tracking",
                "support_tool": false, "walkthrough_tools": false,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{api}");
    assert_eq!(api["auth_mode"], "tracking");
    assert_eq!(api["support_tool"], false);
    assert_eq!(api["walkthrough_tools"], false);
    let provider_id = app.create_oauth2_provider(&alice, &org).await;
    let (status, oauth) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "OAuth", "slug": "oauth-one", "auth_mode": "oauth",
                    "identity_provider_id": provider_id }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{oauth}");
    assert_eq!(oauth["auth_mode"], "oauth");
    assert_eq!(oauth["identity_provider_id"], provider_id.as_str());

    Acme {
        app,
        alice,
        bob,
        carol,
        org,
        bob_org,
        docs,
        docs_id,
        provider_id,
    }
}

/// Slugs are unique across orgs, DNS labels and not reserved; bad fields are named.
async fn refuses_taken_slugs_and_bad_fields(acme: &Acme) {
    let Acme {
        app,
        alice,
        bob,
        bob_org,
        ..
    } = acme;
    let servers = acme.servers();
    // Slugs: unique across orgs, DNS labels, not reserved.
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Again", "slug": "docs-acme" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    let got = app
        .post(
            &format!("/api/v1/orgs/{bob_org}/servers"),
            &bob.token,
            json!({ "name": "Mine", "slug": "docs-acme" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    for slug in [
        "api",
        "www",
        "admin",
        "Bad_Slug",
        "-x",
        "",
        "xn--80ak6aa92e",
        "xn--docs",
    ] {
        let got = app
            .post(
                &servers,
                &alice.token,
                json!({ "name": "Bad", "slug": slug }),
            )
            .await;
        assert_invalid_field(&got, "slug");
    }
    for mode in ["magic", "None", ""] {
        let got = app
            .post(
                &servers,
                &alice.token,
                json!({ "name": "Bad", "slug": "bad-mode", "auth_mode": mode }),
            )
            .await;
        assert_invalid_field(&got, "auth_mode");
    }
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Bad", "slug": "bad-type", "support_tool": "yes" }),
        )
        .await;
    assert_invalid_field(&got, "support_tool");
    let got = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Bad", "slug": "bad-field", "color": "red" }),
        )
        .await;
    assert_invalid_field(&got, "color");
}

/// Listed in creation order; fetched by id or slug.
async fn lists_and_gets(acme: &Acme) {
    let Acme {
        app, alice, docs, ..
    } = acme;
    let docs_id = acme.docs_id.clone();
    let servers = acme.servers();
    let server_path = |s: &str| acme.server_path(s);
    // List and get (by id and by slug).
    let (status, list) = app.get(&servers, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let slugs: Vec<&str> = items(&list)
        .iter()
        .filter_map(|s| s["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["docs-acme", "api-helper", "oauth-one"], "{list}");
    assert!(items(&list).iter().all(|s| s["urls"]["mcp"].is_string()));
    for server_ref in [docs_id.as_str(), "docs-acme"] {
        let (status, got) = app.get(&server_path(server_ref), &alice.token).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(&got, docs);
    }
    let got = app.get(&server_path("nope"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");
    let got = app
        .get(
            &server_path("00000000-0000-0000-0000-000000000000"),
            &alice.token,
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");
}

/// Partial updates; a new slug moves the server and frees the old one.
async fn updates_and_renames(acme: &Acme) {
    let Acme {
        app,
        alice,
        bob,
        bob_org,
        ..
    } = acme;
    let docs_id = acme.docs_id.clone();
    let server_path = |s: &str| acme.server_path(s);
    // Partial updates.
    let (status, updated) = app
        .patch(
            &server_path("docs-acme"),
            &alice.token,
            json!({ "name": "Docs 2" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], docs_id.as_str());
    assert_eq!(updated["name"], "Docs 2");
    assert_eq!(updated["slug"], "docs-acme");
    assert_eq!(updated["auth_mode"], "none");
    assert_eq!(updated["support_tool"], true);
    let (status, updated) = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "auth_mode": "oauth", "walkthrough_tools": false,
                    "identity_provider_id": acme.provider_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Docs 2");
    assert_eq!(updated["auth_mode"], "oauth");
    assert_eq!(updated["walkthrough_tools"], false);
    assert_eq!(updated["support_tool"], true);
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "auth_mode": "magic" }),
        )
        .await;
    assert_invalid_field(&got, "auth_mode");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "www" }),
        )
        .await;
    assert_invalid_field(&got, "slug");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "owner": "me" }),
        )
        .await;
    assert_invalid_field(&got, "owner");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "api-helper" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    let got = app
        .patch(&server_path("nope"), &alice.token, json!({ "name": "x" }))
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");

    // Renaming the slug moves the server and frees the old slug.
    let (status, renamed) = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "slug": "docs-new" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["slug"], "docs-new");
    assert!(renamed["urls"]["mcp"]
        .as_str()
        .is_some_and(|u| u.contains("://docs-new.")));
    let (status, got) = app.get(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], docs_id.as_str());
    let got = app.get(&server_path("docs-acme"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "server_not_found");
    let (status, _) = app
        .post(
            &format!("/api/v1/orgs/{bob_org}/servers"),
            &bob.token,
            json!({ "name": "Bob docs", "slug": "docs-acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the old slug is free again");
}

/// Carol joins as a member: she reads servers but cannot change them.
async fn members_cannot_change(acme: &Acme) {
    let Acme {
        app,
        alice,
        carol,
        org,
        ..
    } = acme;
    let docs_id = acme.docs_id.clone();
    let servers = acme.servers();
    let server_path = |s: &str| acme.server_path(s);
    // Members read servers but cannot change them.
    app.add_member(alice, org, carol, "member").await;
    let (status, list) = app.get(&servers, &carol.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&list).len(), 3);
    let (status, _) = app.get(&server_path(&docs_id), &carol.token).await;
    assert_eq!(status, StatusCode::OK);
    let got = app
        .post(
            &servers,
            &carol.token,
            json!({ "name": "Mine", "slug": "carols" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &server_path(&docs_id),
            &carol.token,
            json!({ "name": "Carol's" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&server_path(&docs_id), &carol.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let (_, still) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(still["name"], "Docs 2");
    assert_eq!(still["status"], "active");
    // "carols" was never claimed.
    let (status, _) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Carols", "slug": "carols" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    expect_counters(
        app,
        alice,
        org,
        json!({ "servers": 4, "servers_archived": 0 }),
    )
    .await;
}

/// Archiving keeps the server readable and frees its slug for a new one.
async fn archives(acme: &Acme) {
    let Acme {
        app, alice, org, ..
    } = acme;
    let docs_id = acme.docs_id.clone();
    let servers = acme.servers();
    let server_path = |s: &str| acme.server_path(s);
    // Archive.
    let (status, archived) = app.delete(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(archived["id"], docs_id.as_str());
    assert_eq!(archived["status"], "archived");
    let (_, list) = app.get(&servers, &alice.token).await;
    assert!(
        items(&list).iter().all(|s| s["id"] != docs_id.as_str()),
        "{list}"
    );
    assert_eq!(items(&list).len(), 3);
    let (status, list) = app
        .get(&format!("{servers}?include_archived=true"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(items(&list).len(), 4);
    let listed = items(&list)
        .iter()
        .find(|s| s["id"] == docs_id.as_str())
        .expect("archived listed");
    assert_eq!(listed["status"], "archived");
    let (status, got) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "archived");
    let got = app
        .patch(
            &server_path(&docs_id),
            &alice.token,
            json!({ "name": "Back" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "server_archived");
    let got = app.delete(&server_path(&docs_id), &alice.token).await;
    assert_problem(&got, StatusCode::CONFLICT, "server_archived");
    expect_counters(
        app,
        alice,
        org,
        json!({ "servers": 3, "servers_archived": 1 }),
    )
    .await;

    // The archived slug is free: a new server takes it, and the slug now names the new one.
    let (status, reborn) = app
        .post(
            &servers,
            &alice.token,
            json!({ "name": "Docs again", "slug": "docs-new" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reborn}");
    assert_ne!(reborn["id"], docs_id.as_str());
    let (status, got) = app.get(&server_path("docs-new"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], reborn["id"]);
    assert_eq!(got["status"], "active");
    let (status, got) = app.get(&server_path(&docs_id), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "archived");
    let (status, updated) = app
        .patch(
            &server_path("docs-new"),
            &alice.token,
            json!({ "name": "Docs 3" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], reborn["id"]);
    let (_, list) = app
        .get(&format!("{servers}?include_archived=true"), &alice.token)
        .await;
    assert_eq!(items(&list).len(), 5);
    expect_counters(
        app,
        alice,
        org,
        json!({ "servers": 4, "servers_archived": 1 }),
    )
    .await;
}

#[tokio::test]
async fn servers_are_created_with_defaults_or_explicit_options() {
    acme_with_servers().await;
}

#[tokio::test]
async fn taken_slugs_and_bad_fields_are_refused() {
    let acme = acme_with_servers().await;
    refuses_taken_slugs_and_bad_fields(&acme).await;
}

#[tokio::test]
async fn servers_are_listed_and_fetched_by_id_or_slug() {
    let acme = acme_with_servers().await;
    lists_and_gets(&acme).await;
}

#[tokio::test]
async fn servers_change_partially_and_a_new_slug_frees_the_old_one() {
    let acme = acme_with_servers().await;
    updates_and_renames(&acme).await;
}

#[tokio::test]
async fn members_read_servers_but_cannot_change_them() {
    let acme = acme_with_servers().await;
    updates_and_renames(&acme).await;
    members_cannot_change(&acme).await;
}

#[tokio::test]
async fn an_archived_server_stays_readable_and_its_slug_is_taken_anew() {
    let acme = acme_with_servers().await;
    updates_and_renames(&acme).await;
    members_cannot_change(&acme).await;
    archives(&acme).await;
}

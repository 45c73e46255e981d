//! Organizations and their members (invitations, roles, the last owner), through the REST API.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn member<'a>(list: &'a Value, email: &str) -> Option<&'a Value> {
    items(list).iter().find(|m| m["email"] == email)
}

#[tokio::test]
async fn orgs_are_created_listed_and_fetched_by_id_or_slug() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;

    let (status, org) = app
        .post(
            "/api/v1/orgs",
            &alice.token,
            json!({ "name": "Acme Inc.", "slug": "acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    assert_eq!(org["name"], "Acme Inc.");
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["role"], "owner");
    let org_id = org["id"].as_str().expect("id").to_owned();

    // Slugs are unique platform-wide, whoever asks.
    for user in [&alice, &bob] {
        let got = app
            .post(
                "/api/v1/orgs",
                &user.token,
                json!({ "name": "Other", "slug": "acme" }),
            )
            .await;
        assert_problem(&got, StatusCode::CONFLICT, "slug_taken");
    }
    // Invalid and reserved slugs, and a bad name.
    let long = "a".repeat(64);
    for slug in [
        "Bad_Slug",
        "-x",
        "x-",
        "www",
        "api",
        "admin",
        "",
        "UPPER",
        "a.b",
        "a b",
        &long,
        "xn--pple-43d",
        "ab--cd",
    ] {
        let got = app
            .post(
                "/api/v1/orgs",
                &alice.token,
                json!({ "name": "Bad", "slug": slug }),
            )
            .await;
        assert_invalid_field(&got, "slug");
    }
    // A punycode label would show in a browser as another, look-alike name: refused, saying why.
    let (_, body) = app
        .post(
            "/api/v1/orgs",
            &alice.token,
            json!({ "name": "Apple", "slug": "xn--pple-43d" }),
        )
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("punycode")),
        "{body}"
    );
    let got = app
        .post(
            "/api/v1/orgs",
            &alice.token,
            json!({ "name": "", "slug": "fine" }),
        )
        .await;
    assert_invalid_field(&got, "name");
    let got = app
        .post("/api/v1/orgs", &alice.token, json!({ "name": "No slug" }))
        .await;
    assert_invalid_field(&got, "slug");

    // Lists and fetches.
    let second = app.create_org(&alice, "acme-labs").await;
    let (status, list) = app.get("/api/v1/orgs", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = items(&list);
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list
        .iter()
        .find(|o| o["id"] == org_id.as_str())
        .expect("acme listed");
    assert_eq!(first["slug"], "acme");
    assert_eq!(first["name"], "Acme Inc.");
    assert_eq!(first["role"], "owner");
    assert!(first["created_at"].is_string());
    assert!(list.iter().any(|o| o["id"] == second.as_str()));

    for org_ref in [org_id.as_str(), "acme"] {
        let (status, got) = app
            .get(&format!("/api/v1/orgs/{org_ref}"), &alice.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["id"], org_id.as_str());
        assert_eq!(got["slug"], "acme");
        assert_eq!(got["name"], "Acme Inc.");
        assert_eq!(got["role"], "owner");
        assert!(got["created_at"].is_string());
    }
    let (status, me) = app.get("/api/v1/me", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["orgs"].as_array().map(Vec::len), Some(2), "{me}");

    // Bob sees none of them.
    let (status, list) = app.get("/api/v1/orgs", &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&list).is_empty(), "{list}");
    for org_ref in [
        org_id.as_str(),
        "acme",
        "no-such-org",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let got = app
            .get(&format!("/api/v1/orgs/{org_ref}"), &bob.token)
            .await;
        assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    }
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

/// Alice's org: Bob, signed up, invited as admin and accepting; Carol invited, invited again
/// (which replaces the first link), then signed up with the link and joined as member (each step
/// checked).
struct Acme {
    app: TestApp,
    alice: User,
    bob: User,
    carol: User,
    org: String,
}

async fn acme_with_members() -> Acme {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");

    let (status, list) = app.get(&members_path, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(items(&list).len(), 1);
    let owner = member(&list, "alice@example.com").expect("alice");
    assert_eq!(owner["user_id"], alice.id.as_str());
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["status"], "active");
    assert_eq!(owner["name"], "alice");
    assert!(owner["joined_at"].is_string());

    // Inviting a signed-up user: an invitation, and its link, shown once; nothing granted yet.
    let (status, invited) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "Bob@Example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");
    assert!(invited["user_id"].is_null(), "{invited}");
    assert_eq!(invited["email"], "bob@example.com");
    assert_eq!(invited["role"], "admin");
    assert_eq!(invited["status"], "invited");
    let bob_token = invited["invitation_token"].as_str().expect("token");
    assert!(bob_token.starts_with("mcpi_"), "{invited}");
    let accept_path = format!("/api/v1/invitations/{bob_token}/accept");
    let accept_url = invited["accept_url"].as_str().expect("accept_url");
    assert!(
        accept_url.starts_with("http") && accept_url.ends_with(&accept_path),
        "{invited}"
    );
    assert!(invited["expires_at"].is_string(), "{invited}");
    let got = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");

    // Bob accepts, signed in: the answer is his membership.
    let (status, added) = app.accept(&bob, bob_token).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["org_id"], org.as_str());
    assert_eq!(added["user_id"], bob.id.as_str());
    assert_eq!(added["email"], "bob@example.com");
    assert_eq!(added["role"], "admin");
    assert_eq!(added["status"], "active");
    assert!(added["joined_at"].is_string(), "{added}");
    // Once only.
    let got = app.accept(&bob, bob_token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invitation_not_found");
    let got = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "bob@example.com", "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "already_member");
    let (status, org_for_bob) = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(org_for_bob["role"], "admin");

    // Inviting an email without an account, then again: the second link replaces the first.
    let (status, invited) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "carol@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");
    assert_eq!(invited["status"], "invited");
    assert_eq!(invited["role"], "admin");
    assert!(invited["user_id"].is_null(), "{invited}");
    let first_carol_token = invited["invitation_token"].as_str().expect("token");
    let (status, again) = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "carol@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["role"], "member");
    let carol_token = again["invitation_token"].as_str().expect("token");
    assert_ne!(carol_token, first_carol_token);

    // Validation.
    for role in ["superuser", "", "Owner"] {
        let got = app
            .post(
                &members_path,
                &alice.token,
                json!({ "email": "x@example.com", "role": role }),
            )
            .await;
        assert_invalid_field(&got, "role");
    }
    let got = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "not-an-email", "role": "member" }),
        )
        .await;
    assert_invalid_field(&got, "email");
    let got = app
        .patch(
            &member_path(&bob.id),
            &alice.token,
            json!({ "role": "god" }),
        )
        .await;
    assert_invalid_field(&got, "role");

    let (_, list) = app.get(&members_path, &alice.token).await;
    assert_eq!(items(&list).len(), 3, "{list}");
    assert_eq!(
        member(&list, "carol@example.com").expect("carol")["status"],
        "invited"
    );
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 2, "invitations_pending": 1 }),
    )
    .await;

    // Carol signs up with the first, replaced link: refused, nothing created.
    let got = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({
                "email": "carol@example.com", "password": PASSWORD, "name": "Carol",
                "invitation_token": first_carol_token,
            })),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invitation_not_found");
    // With the current link: she joins with the invited role.
    let carol_signup = signup_with_invitation(&app, "carol@example.com", carol_token).await;
    assert_eq!(carol_signup["joined_orgs"], json!([org]), "{carol_signup}");
    let carol = User {
        id: carol_signup["user"]["id"].as_str().expect("id").to_owned(),
        email: "carol@example.com".to_owned(),
        token: carol_signup["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
        refresh_token: String::new(),
    };
    // (Polled: that this is readable at once, under concurrent writes, is the subject of
    // `new_members_can_use_the_org_right_after_joining_under_concurrent_writes`.)
    let carol_org = eventually("carol's membership", Duration::from_secs(5), || async {
        let (status, body) = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(carol_org["role"], "member");
    let (_, list) = app.get(&members_path, &carol.token).await;
    let c = member(&list, "carol@example.com").expect("carol");
    assert_eq!(c["status"], "active");
    assert_eq!(c["user_id"], carol.id.as_str());
    assert_eq!(c["role"], "member");
    expect_counters(
        &app,
        &alice,
        &org,
        json!({ "members": 3, "invitations_pending": 0 }),
    )
    .await;

    Acme {
        app,
        alice,
        bob,
        carol,
        org,
    }
}

/// A member cannot manage members.
async fn member_cannot_manage(fx: &Acme) {
    let Acme {
        app, bob, carol, ..
    } = fx;
    let org = fx.org.clone();
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // A member cannot manage members.
    let got = app
        .post(
            &members_path,
            &carol.token,
            json!({ "email": "dave@example.com", "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&bob.id),
            &carol.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&carol.id),
            &carol.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&member_path(&bob.id), &carol.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
}

/// An admin manages members, but not owners.
async fn admin_manages_members_not_owners(fx: &Acme) {
    let Acme {
        app,
        alice,
        bob,
        carol,
        ..
    } = fx;
    let org = fx.org.clone();
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // An admin manages members, but not owners.
    let got = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "dave@example.com", "role": "owner" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&alice.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app.delete(&member_path(&alice.id), &bob.token).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = app
        .patch(
            &member_path(&carol.id),
            &bob.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    let (status, changed) = app
        .patch(
            &member_path("Carol@example.com"),
            &bob.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "admin");
    assert_eq!(changed["user_id"], carol.id.as_str());
    let (status, changed) = app
        .patch(
            &member_path(&carol.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "member");
    let (_, carol_org) = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
    assert_eq!(carol_org["role"], "member");
}

/// The last owner can be neither demoted nor removed, by anyone.
async fn last_owner_stays(fx: &Acme) {
    let Acme { app, alice, .. } = fx;
    let org = fx.org.clone();
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // The last owner can be neither demoted nor removed, by anyone.
    let got = app
        .patch(
            &member_path(&alice.id),
            &alice.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let got = app.delete(&member_path(&alice.id), &alice.token).await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let got = app
        .delete(&member_path("alice@example.com"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
}

/// With a second owner, the first may step down.
async fn second_owner_lets_the_first_step_down(fx: &Acme) {
    let Acme {
        app, alice, bob, ..
    } = fx;
    let org = fx.org.clone();
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // With a second owner, the first may step down.
    let (status, changed) = app
        .patch(
            &member_path(&bob.id),
            &alice.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "owner");
    let (status, changed) = app
        .patch(
            &member_path(&alice.id),
            &alice.token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "admin");
    let got = app
        .patch(
            &member_path(&bob.id),
            &bob.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "last_owner");
    let (_, org_for_alice) = app.get(&format!("/api/v1/orgs/{org}"), &alice.token).await;
    assert_eq!(org_for_alice["role"], "admin");
}

/// Revoking an invitation: the invitee signs up later and joins nothing.
async fn revoked_invitation_joins_nothing(fx: &Acme) {
    let Acme {
        app, alice, bob, ..
    } = fx;
    let org = fx.org.clone();
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // Revoking an invitation: its link stops working, and the invitee joins nothing.
    let (status, invited) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "erin@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let erin_token = invited["invitation_token"].as_str().expect("token");
    expect_counters(app, bob, &org, json!({ "invitations_pending": 1 })).await;
    let (status, _) = app
        .delete(&member_path("erin@example.com"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.get(&members_path, &bob.token).await;
    assert!(member(&list, "erin@example.com").is_none(), "{list}");
    expect_counters(app, bob, &org, json!({ "invitations_pending": 0 })).await;
    let got = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({
                "email": "erin@example.com", "password": PASSWORD, "name": "Erin",
                "invitation_token": erin_token,
            })),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invitation_not_found");
    let erin = signup_full(app, "erin@example.com").await;
    assert_eq!(erin["joined_orgs"], json!([]), "{erin}");
    let got = app
        .get(
            &format!("/api/v1/orgs/{org}"),
            erin["access_token"].as_str().expect("token"),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
}

/// Unknown members are not found.
async fn unknown_members_not_found(fx: &Acme) {
    let Acme { app, alice, .. } = fx;
    let org = fx.org.clone();
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // Unknown members.
    let got = app
        .delete(&member_path("nobody@example.com"), &alice.token)
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "member_not_found");
    let got = app
        .patch(
            &member_path("00000000-0000-0000-0000-000000000000"),
            &alice.token,
            json!({ "role": "member" }),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "member_not_found");
}

/// Removing a member (by id) and a member leaving (by email): both lose access.
async fn removed_and_departed_lose_access(fx: &Acme) {
    let Acme {
        app,
        alice,
        bob,
        carol,
        ..
    } = fx;
    let org = fx.org.clone();
    let members_path = format!("/api/v1/orgs/{org}/members");
    let member_path = |who: &str| format!("/api/v1/orgs/{org}/members/{who}");
    // Removing a member (by id) and a member leaving (by email): both lose access.
    let (status, _) = app.delete(&member_path(&carol.id), &bob.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.get(&format!("/api/v1/orgs/{org}"), &carol.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let got = app.get(&members_path, &carol.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (status, _) = app
        .delete(&member_path("alice@example.com"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.get(&format!("/api/v1/orgs/{org}"), &alice.token).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
    let (status, list) = app.get("/api/v1/orgs", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&list).is_empty(), "{list}");

    let (_, list) = app.get(&members_path, &bob.token).await;
    let emails: Vec<&str> = items(&list)
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    assert_eq!(emails, ["bob@example.com"], "{list}");
    expect_counters(
        app,
        bob,
        &org,
        json!({ "members": 1, "invitations_pending": 0 }),
    )
    .await;
}

/// A removed member can be invited again, and join again.
async fn removed_member_added_again(fx: &Acme) {
    let Acme {
        app, bob, carol, ..
    } = fx;
    let org = fx.org.clone();
    let members_path = format!("/api/v1/orgs/{org}/members");
    let (status, again) = app
        .post(
            &members_path,
            &bob.token,
            json!({ "email": "carol@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["status"], "invited");
    let (status, joined) = app
        .accept(carol, again["invitation_token"].as_str().expect("token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["status"], "active");
}

#[tokio::test]
async fn members_are_invited_and_join_with_the_invited_role_only_through_the_link() {
    acme_with_members().await;
}

#[tokio::test]
async fn a_member_cannot_manage_members() {
    let fx = acme_with_members().await;
    member_cannot_manage(&fx).await;
}

#[tokio::test]
async fn an_admin_manages_members_but_not_owners() {
    let fx = acme_with_members().await;
    admin_manages_members_not_owners(&fx).await;
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed() {
    let fx = acme_with_members().await;
    last_owner_stays(&fx).await;
}

#[tokio::test]
async fn with_a_second_owner_the_first_may_step_down() {
    let fx = acme_with_members().await;
    second_owner_lets_the_first_step_down(&fx).await;
}

#[tokio::test]
async fn a_revoked_invitation_is_joined_by_nobody() {
    let fx = acme_with_members().await;
    revoked_invitation_joins_nothing(&fx).await;
}

#[tokio::test]
async fn unknown_members_are_not_found() {
    let fx = acme_with_members().await;
    unknown_members_not_found(&fx).await;
}

#[tokio::test]
async fn removed_and_departed_members_lose_access_and_can_be_added_again() {
    let fx = acme_with_members().await;
    second_owner_lets_the_first_step_down(&fx).await;
    removed_and_departed_lose_access(&fx).await;
    removed_member_added_again(&fx).await;
}

/// An invitation racing the signup of its email is never lost: whichever comes first, the new
/// account joins nothing by itself, and the link then makes it an admin.
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
        assert_eq!(signup_body["joined_orgs"], json!([]), "{signup_body}");
        let racer = User {
            id: signup_body["user"]["id"].as_str().unwrap().to_owned(),
            email: email.clone(),
            token: signup_body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: String::new(),
        };
        let got = app.get(&format!("/api/v1/orgs/{org}"), &racer.token).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "org_not_found");
        let (status, joined) = app
            .accept(&racer, invite_body["invitation_token"].as_str().unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!(joined["role"], "admin");
        let (status, body) = app.get(&format!("/api/v1/orgs/{org}"), &racer.token).await;
        assert_eq!(
            (status, &body["role"]),
            (StatusCode::OK, &json!("admin")),
            "{body}"
        );
    }
}

/// Opens a transaction with an xid on the cluster and commits it after `hold`, like a
/// concurrent writer of another request (transaction ids are cluster-wide).
async fn concurrent_writer(pool: &sqlx::PgPool, hold: Duration) -> tokio::task::JoinHandle<()> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("assign an xid");
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        tx.commit().await.expect("commit");
    })
}

/// Read-your-writes while another transaction is in flight: a write waits until the read
/// models include its own commit, so the next request sees it. Accepting an invitation does; a
/// signup that accepts one must as well.
#[tokio::test]
async fn new_members_can_use_the_org_right_after_joining_under_concurrent_writes() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let org = app.create_org(&alice, "acme").await;
    let members_path = format!("/api/v1/orgs/{org}/members");
    let pool = app.env.pool().await;

    // Control: an existing user accepting an invitation.
    let invited = app.invite(&alice, &org, &bob.email, "member").await;
    let writer = concurrent_writer(&pool, Duration::from_millis(1000)).await;
    let (status, added) = app
        .accept(&bob, invited["invitation_token"].as_str().expect("token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let got = app.get(&format!("/api/v1/orgs/{org}"), &bob.token).await;
    writer.await.expect("writer");
    assert_eq!(got.0, StatusCode::OK, "added member: {}", got.1);

    // An invitation accepted by signing up with its token.
    let (status, invited) = app
        .post(
            &members_path,
            &alice.token,
            json!({ "email": "carol@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let carol_token = invited["invitation_token"].as_str().expect("token");
    let writer = concurrent_writer(&pool, Duration::from_millis(1000)).await;
    let carol = signup_with_invitation(&app, "carol@example.com", carol_token).await;
    assert_eq!(carol["joined_orgs"], json!([org]));
    let token = carol["access_token"].as_str().expect("token");
    let got = app.get(&format!("/api/v1/orgs/{org}"), token).await;
    writer.await.expect("writer");
    assert_eq!(
        got.0,
        StatusCode::OK,
        "the org was not readable right after the signup that joined it: {}",
        got.1
    );
    assert_eq!(got.1["role"], "admin");
}

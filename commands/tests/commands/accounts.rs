//! accounts: signup (joining the orgs that invited the email), logins and refresh families.

use crate::given::*;
use chrono::{Duration, Utc};
use commands::services::accounts::{self, Rotation};
use commands::services::organizations;
use domain::refresh_token::RefreshTokenError;
use domain::values::Name;
use eventstore::index::{self, KeyKind};
use eventstore::ExecuteError;
use uuid::Uuid;

#[tokio::test]
async fn a_signup_claims_its_email_and_stores_its_credential() {
    let given = Given::new().await;
    let id = given.user("ada@example.com").await;
    let (found, user) = accounts::find_user_by_email(&given.store, &email("ada@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, id);
    assert!(user.signed_up);
    assert_eq!(
        accounts::password_hash(&given.store, id)
            .await
            .unwrap()
            .as_deref(),
        Some("hash-of-ada@example.com")
    );
    assert!(accounts::load_user(&given.store, id)
        .await
        .unwrap()
        .is_some());

    let again = accounts::sign_up(
        &given.store,
        Uuid::new_v4(),
        email("ada@example.com"),
        Name::parse("Impostor").unwrap(),
        "other".into(),
        refresh_family(),
        &as_user(id),
    )
    .await;
    assert!(
        matches!(
            again,
            Err(ExecuteError::KeyTaken {
                kind: KeyKind::UserEmail
            })
        ),
        "{again:?}"
    );
    assert!(
        accounts::find_user_by_email(&given.store, &email("nobody@example.com"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_signup_joins_every_org_that_invited_its_email_and_clears_the_invitations() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(owner, "owner@acme.dev", "globex").await;
    given
        .member(acme, owner, "newbie@example.com", "admin")
        .await;
    given
        .member(globex, owner, "newbie@example.com", "member")
        .await;
    let mut inviting = vec![acme, globex];
    inviting.sort();
    assert_eq!(
        index::orgs_inviting(given.store.pool(), "newbie@example.com")
            .await
            .unwrap(),
        inviting
    );

    let newbie = Uuid::new_v4();
    let signed = accounts::sign_up(
        &given.store,
        newbie,
        email("newbie@example.com"),
        Name::parse("Newbie").unwrap(),
        "hash".into(),
        refresh_family(),
        &as_user(newbie),
    )
    .await
    .unwrap();
    let mut joined = signed.joined_orgs.clone();
    joined.sort();
    assert_eq!(joined, inviting);
    assert!(signed.last_cursor.is_some());
    assert!(
        index::orgs_inviting(given.store.pool(), "newbie@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let acme_org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acme_org.role_of(newbie),
        Some(role("admin")),
        "the invited role"
    );
    let globex_org = organizations::load(&given.store, globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(globex_org.role_of(newbie), Some(role("member")));
}

async fn rotate(
    given: &Given,
    family: Uuid,
    user: Uuid,
    presented: &str,
    new: &str,
) -> Result<Rotation, ExecuteError<RefreshTokenError>> {
    let now = Utc::now();
    accounts::rotate_refresh_token(
        &given.store,
        family,
        presented,
        new,
        now,
        now + Duration::days(30),
        &as_user(user),
    )
    .await
}

#[tokio::test]
async fn a_refresh_token_rotates_once_and_its_reuse_revokes_the_family() {
    let given = Given::new().await;
    let user = given.user("ada@example.com").await;
    let family = refresh_family();
    accounts::record_login_success(
        &given.store,
        user,
        email("ada@example.com"),
        family.clone(),
        &as_user(user),
    )
    .await
    .unwrap();
    let id = family.family_id;
    let first = family.token_hash.as_str();
    assert_eq!(
        rotate(&given, id, user, first, "second").await.unwrap(),
        Rotation::Rotated { user_id: user }
    );
    assert_eq!(
        rotate(&given, id, user, first, "third").await.unwrap(),
        Rotation::ReuseDetected
    );
    // Revoked: even the token that was current is refused now.
    assert!(matches!(
        rotate(&given, id, user, "second", "fourth").await,
        Err(ExecuteError::Domain(RefreshTokenError::Revoked))
    ));
    assert!(matches!(
        rotate(&given, id, user, "never-issued", "fifth").await,
        Err(ExecuteError::Domain(RefreshTokenError::Revoked))
    ));
}

#[tokio::test]
async fn logout_revokes_only_with_the_current_token() {
    let given = Given::new().await;
    let user = given.user("ada@example.com").await;
    let family = refresh_family();
    accounts::record_login_success(
        &given.store,
        user,
        email("ada@example.com"),
        family.clone(),
        &as_user(user),
    )
    .await
    .unwrap();
    let id = family.family_id;
    assert!(matches!(
        accounts::revoke_refresh_family(&given.store, id, "not-the-token", &as_user(user)).await,
        Err(ExecuteError::Domain(RefreshTokenError::Unknown))
    ));
    accounts::revoke_refresh_family(&given.store, id, &family.token_hash, &as_user(user))
        .await
        .unwrap();
    assert!(matches!(
        rotate(&given, id, user, &family.token_hash, "next").await,
        Err(ExecuteError::Domain(RefreshTokenError::Revoked))
    ));
}

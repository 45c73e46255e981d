//! accounts: signup (joining the org whose invitation token it presents), logins and refresh
//! families.

use crate::given::*;
use chrono::{Duration, Utc};
use commands::services::accounts::{self, Rotation};
use commands::services::organizations;
use domain::organization::OrganizationError;
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
        None,
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

async fn sign_up_newbie(
    given: &Given,
    newbie: Uuid,
    address: &str,
    token_hash: Option<&str>,
) -> Result<accounts::SignedUp, ExecuteError<accounts::SignUpError>> {
    accounts::sign_up(
        &given.store,
        newbie,
        email(address),
        Name::parse("Newbie").unwrap(),
        "hash".into(),
        refresh_family(),
        token_hash.map(|h| accounts::PresentedInvitation {
            token_hash: h.to_owned(),
            now: Utc::now(),
        }),
        &as_user(newbie),
    )
    .await
}

/// Signing up with an invited email joins nothing without the invitation's token (it used to
/// join every org that invited the email); with it, exactly the org that sent it.
#[tokio::test]
async fn a_signup_joins_only_the_org_whose_invitation_token_it_presents() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(owner, "owner@acme.dev", "globex").await;
    let acme_token = given
        .invite(acme, owner, "newbie@example.com", "admin")
        .await;
    given
        .invite(globex, owner, "newbie@example.com", "member")
        .await;
    let mut inviting = vec![acme, globex];
    inviting.sort();
    assert_eq!(
        index::orgs_inviting(given.store.pool(), "newbie@example.com")
            .await
            .unwrap(),
        inviting
    );

    // The invited email alone: an account, and no membership anywhere.
    let squatter = Uuid::new_v4();
    let signed = sign_up_newbie(&given, squatter, "newbie@example.com", None)
        .await
        .unwrap();
    assert!(signed.joined_orgs.is_empty());
    for org in [acme, globex] {
        let org = organizations::load(&given.store, org)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(org.role_of(squatter), None);
        assert!(org.invitations.contains_key("newbie@example.com"));
    }

    // With the token (another email's account cannot use it; the invited one's would): an
    // account signing up with the token joins the org that sent it, with the invited role.
    let other = Uuid::new_v4();
    let refused = sign_up_newbie(&given, other, "other@example.com", Some(&acme_token)).await;
    assert!(
        matches!(
            refused,
            Err(ExecuteError::Domain(accounts::SignUpError::Invitation(
                OrganizationError::InvitationForAnotherEmail
            )))
        ),
        "{refused:?}"
    );
    assert!(accounts::load_user(&given.store, other)
        .await
        .unwrap()
        .is_none());
    let unknown = sign_up_newbie(&given, other, "other@example.com", Some("no-such-hash")).await;
    assert!(
        matches!(
            unknown,
            Err(ExecuteError::Domain(accounts::SignUpError::Invitation(
                OrganizationError::UnknownInvitation
            )))
        ),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_new_account_joins_with_the_token_and_the_invitation_is_then_used() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let token = given
        .invite(acme, owner, "newbie@example.com", "admin")
        .await;
    let newbie = Uuid::new_v4();
    let signed = sign_up_newbie(&given, newbie, "newbie@example.com", Some(&token))
        .await
        .unwrap();
    assert_eq!(signed.joined_orgs, [acme]);
    assert!(signed.last_cursor.is_some());
    let acme_org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acme_org.role_of(newbie),
        Some(role("admin")),
        "the invited role"
    );
    assert!(acme_org.invitations.is_empty());
    assert!(
        index::orgs_inviting(given.store.pool(), "newbie@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        index::owner_of(given.store.pool(), KeyKind::InvitationToken, &token)
            .await
            .unwrap(),
        None,
        "a used token is released"
    );
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

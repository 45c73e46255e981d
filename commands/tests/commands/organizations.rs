//! organizations: slugs claimed platform-wide, and who may do what to members.

use crate::given::*;
use chrono::{DateTime, Duration, Utc};
use commands::services::organizations;
use domain::organization::{OrganizationError, OrganizationEvent};
use domain::values::{Name, Slug};
use eventstore::index::{self, KeyKind};
use eventstore::{ExecuteError, Executed};
use uuid::Uuid;

#[tokio::test]
async fn an_org_slug_is_taken_platform_wide() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    assert_eq!(
        index::owner_of(given.store.pool(), KeyKind::OrgSlug, "acme")
            .await
            .unwrap(),
        Some(acme)
    );
    let other = given.user("other@example.com").await;
    let again = organizations::create(
        &given.store,
        Uuid::new_v4(),
        other,
        email("other@example.com"),
        Name::parse("Acme again").unwrap(),
        Slug::parse("acme").unwrap(),
        &as_user(other),
    )
    .await;
    assert!(
        matches!(
            again,
            Err(ExecuteError::KeyTaken {
                kind: KeyKind::OrgSlug
            })
        ),
        "{again:?}"
    );
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.role_of(owner), Some(role("owner")));
    assert!(organizations::load(&given.store, Uuid::new_v4())
        .await
        .unwrap()
        .is_none());
}

async fn invite(
    given: &Given,
    org: Uuid,
    actor: Uuid,
    address: &str,
    as_role: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<Executed<OrganizationEvent>, ExecuteError<OrganizationError>> {
    organizations::invite(
        &given.store,
        org,
        actor,
        email(address),
        role(as_role),
        organizations::NewInvitation {
            token_hash: token_hash.to_owned(),
            expires_at,
        },
        &as_user(actor),
    )
    .await
}

async fn accept(
    given: &Given,
    token_hash: &str,
    user: Uuid,
    address: &str,
    now: DateTime<Utc>,
) -> Result<(Uuid, Executed<OrganizationEvent>), ExecuteError<OrganizationError>> {
    organizations::accept_invitation(
        &given.store,
        token_hash,
        user,
        email(address),
        now,
        &as_user(user),
    )
    .await
}

fn refused<T: std::fmt::Debug>(
    got: Result<T, ExecuteError<OrganizationError>>,
) -> Option<OrganizationError> {
    match got {
        Err(ExecuteError::Domain(e)) => Some(e),
        other => panic!("expected a domain refusal, got {other:?}"),
    }
}

/// The finding: an account that existed before the invitation became an active owner at once
/// when its email was invited as owner. Now the invitation alone grants nothing.
#[tokio::test]
async fn an_existing_account_invited_as_owner_is_not_a_member_until_it_accepts() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let known = given.user("known@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let week = Utc::now() + Duration::days(7);
    let invited = invite(&given, acme, owner, "known@acme.dev", "owner", "h1", week)
        .await
        .unwrap();
    assert!(matches!(
        &invited.events[..],
        [OrganizationEvent::MemberInvited { token_hash: Some(h), .. }] if h == "h1"
    ));
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.role_of(known), None, "invited, not a member");
    assert_eq!(
        index::owner_of(given.store.pool(), KeyKind::InvitationToken, "h1")
            .await
            .unwrap(),
        Some(acme)
    );

    let (joined, _) = accept(&given, "h1", known, "known@acme.dev", Utc::now())
        .await
        .unwrap();
    assert_eq!(joined, acme);
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.role_of(known), Some(role("owner")));
    // Once only.
    assert_eq!(
        refused(accept(&given, "h1", known, "known@acme.dev", Utc::now()).await),
        Some(OrganizationError::UnknownInvitation)
    );
}

#[tokio::test]
async fn expired_replaced_unknown_and_misaddressed_tokens_are_refused() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let known = given.user("known@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex_owner = given.user("owner@globex.dev").await;
    let globex = given.org(globex_owner, "owner@globex.dev", "globex").await;
    let soon = Utc::now() + Duration::hours(1);
    invite(&given, acme, owner, "known@acme.dev", "admin", "h1", soon)
        .await
        .unwrap();

    // Expired: judged by the time given.
    let later = soon + Duration::seconds(1);
    assert_eq!(
        refused(accept(&given, "h1", known, "known@acme.dev", later).await),
        Some(OrganizationError::InvitationExpired)
    );
    // For another email.
    let stranger = given.user("stranger@example.com").await;
    assert_eq!(
        refused(accept(&given, "h1", stranger, "stranger@example.com", Utc::now()).await),
        Some(OrganizationError::InvitationForAnotherEmail)
    );
    // Unknown, and another org's (globex's invitation of someone else): the same answer as a
    // token never issued.
    invite(
        &given,
        globex,
        globex_owner,
        "g@globex.dev",
        "member",
        "g1",
        soon,
    )
    .await
    .unwrap();
    assert_eq!(
        refused(accept(&given, "nope", known, "known@acme.dev", Utc::now()).await),
        Some(OrganizationError::UnknownInvitation)
    );
    // Replaced: inviting again releases the earlier token.
    invite(&given, acme, owner, "known@acme.dev", "member", "h2", soon)
        .await
        .unwrap();
    assert_eq!(
        refused(accept(&given, "h1", known, "known@acme.dev", Utc::now()).await),
        Some(OrganizationError::UnknownInvitation)
    );
    assert_eq!(
        index::owner_of(given.store.pool(), KeyKind::InvitationToken, "h1")
            .await
            .unwrap(),
        None
    );
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.role_of(known), None);
    // Revoked: its token goes with it.
    organizations::revoke_invitation(
        &given.store,
        acme,
        owner,
        email("known@acme.dev"),
        &as_user(owner),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(accept(&given, "h2", known, "known@acme.dev", Utc::now()).await),
        Some(OrganizationError::UnknownInvitation)
    );
}

#[tokio::test]
async fn members_are_invited_and_only_managers_manage_them() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    given.member(acme, owner, "member@acme.dev", "member").await;
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.role_of(member), Some(role("member")));

    let week = Utc::now() + Duration::days(7);
    let invited = invite(&given, acme, owner, "later@acme.dev", "admin", "l1", week)
        .await
        .unwrap();
    assert!(matches!(
        &invited.events[..],
        [OrganizationEvent::MemberInvited { .. }]
    ));
    assert_eq!(
        index::orgs_inviting(given.store.pool(), "later@acme.dev")
            .await
            .unwrap(),
        [acme]
    );

    let twice = invite(&given, acme, owner, "member@acme.dev", "member", "m2", week).await;
    assert!(matches!(
        twice,
        Err(ExecuteError::Domain(OrganizationError::AlreadyMember))
    ));
    let by_member = invite(
        &given,
        acme,
        member,
        "friend@acme.dev",
        "member",
        "f1",
        week,
    )
    .await;
    assert!(matches!(
        by_member,
        Err(ExecuteError::Domain(OrganizationError::NotAllowed))
    ));
    let stranger = Uuid::new_v4();
    let by_stranger = organizations::change_role(
        &given.store,
        acme,
        stranger,
        member,
        role("admin"),
        &as_user(stranger),
    )
    .await;
    assert!(by_stranger.is_err(), "{by_stranger:?}");

    organizations::revoke_invitation(
        &given.store,
        acme,
        owner,
        email("later@acme.dev"),
        &as_user(owner),
    )
    .await
    .unwrap();
    assert!(index::orgs_inviting(given.store.pool(), "later@acme.dev")
        .await
        .unwrap()
        .is_empty());
    let again = organizations::revoke_invitation(
        &given.store,
        acme,
        owner,
        email("later@acme.dev"),
        &as_user(owner),
    )
    .await;
    assert!(matches!(
        again,
        Err(ExecuteError::Domain(OrganizationError::NoInvitation))
    ));
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed_but_members_can_leave() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    given.member(acme, owner, "member@acme.dev", "member").await;

    let demote = organizations::change_role(
        &given.store,
        acme,
        owner,
        owner,
        role("admin"),
        &as_user(owner),
    )
    .await;
    assert!(matches!(
        demote,
        Err(ExecuteError::Domain(OrganizationError::LastOwner))
    ));
    let leave =
        organizations::remove_member(&given.store, acme, owner, owner, &as_user(owner)).await;
    assert!(matches!(
        leave,
        Err(ExecuteError::Domain(OrganizationError::LastOwner))
    ));
    let unchanged = organizations::change_role(
        &given.store,
        acme,
        owner,
        member,
        role("member"),
        &as_user(owner),
    )
    .await
    .unwrap();
    assert!(unchanged.events.is_empty(), "the same role changes nothing");

    // A second owner lets the first one go.
    organizations::change_role(
        &given.store,
        acme,
        owner,
        member,
        role("owner"),
        &as_user(owner),
    )
    .await
    .unwrap();
    organizations::remove_member(&given.store, acme, owner, owner, &as_user(owner))
        .await
        .unwrap();
    let org = organizations::load(&given.store, acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (org.role_of(owner), org.role_of(member)),
        (None, Some(role("owner")))
    );
    let gone =
        organizations::remove_member(&given.store, acme, member, owner, &as_user(member)).await;
    assert!(matches!(
        gone,
        Err(ExecuteError::Domain(OrganizationError::NoSuchMember))
    ));
}

//! organizations: slugs claimed platform-wide, and who may do what to members.

use crate::given::*;
use commands::services::organizations;
use domain::organization::{OrganizationError, OrganizationEvent};
use domain::values::{Name, Slug};
use eventstore::index::{self, KeyKind};
use eventstore::ExecuteError;
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

#[tokio::test]
async fn members_are_added_or_invited_and_only_managers_manage_them() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;

    let added = organizations::add_member(
        &given.store,
        acme,
        owner,
        email("member@acme.dev"),
        role("member"),
        &as_user(owner),
    )
    .await
    .unwrap();
    assert!(
        matches!(&added.events[..], [OrganizationEvent::MemberAdded { user_id, .. }] if *user_id == member)
    );
    let invited = organizations::add_member(
        &given.store,
        acme,
        owner,
        email("later@acme.dev"),
        role("admin"),
        &as_user(owner),
    )
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

    let twice = organizations::add_member(
        &given.store,
        acme,
        owner,
        email("member@acme.dev"),
        role("member"),
        &as_user(owner),
    )
    .await;
    assert!(matches!(
        twice,
        Err(ExecuteError::Domain(OrganizationError::AlreadyMember))
    ));
    let by_member = organizations::add_member(
        &given.store,
        acme,
        member,
        email("friend@acme.dev"),
        role("member"),
        &as_user(member),
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

//! organizations: orgs, members and invitations, platform users' names.

use crate::given::*;
use domain::organization::OrganizationEvent;
use projections::models::organizations;

#[tokio::test]
async fn an_org_lists_its_owner_members_and_invitations_with_their_roles() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given
        .org_events(
            org,
            owner,
            &[
                OrganizationEvent::MemberAdded {
                    user_id: member,
                    email: email("member@acme.dev"),
                    role: role("member"),
                },
                OrganizationEvent::MemberInvited {
                    email: email("invited@acme.dev"),
                    role: role("admin"),
                    token_hash: None,
                    expires_at: None,
                },
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();

    let orgs = organizations::orgs_of(pool, owner).await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0].slug.as_str(), orgs[0].role.as_str()),
        ("acme", "owner")
    );
    assert_eq!(
        organizations::membership(pool, member, "acme")
            .await
            .unwrap(),
        Some((org, "member".to_owned())),
        "by slug"
    );
    assert_eq!(
        organizations::membership(pool, member, &org.0.to_string())
            .await
            .unwrap(),
        Some((org, "member".to_owned())),
        "by id"
    );

    let members = organizations::members(pool, org).await.unwrap();
    let seen: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m.email.as_str(),
                m.role.as_str(),
                m.status.as_str(),
                m.name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("owner@acme.dev", "owner", "active", Some("owner")),
            // Added in one commit: the same time, then by email.
            ("invited@acme.dev", "admin", "invited", None),
            ("member@acme.dev", "member", "active", Some("member")),
        ]
    );
    let invited = organizations::member(pool, org, "INVITED@acme.dev")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invited.user_id, None, "an invitation has no user yet");
}

#[tokio::test]
async fn accepting_changing_roles_removing_and_revoking_update_the_member_list() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given
        .org_events(
            org,
            owner,
            &[
                OrganizationEvent::MemberInvited {
                    email: email("joiner@acme.dev"),
                    role: role("member"),
                    token_hash: None,
                    expires_at: None,
                },
                OrganizationEvent::MemberInvited {
                    email: email("never@acme.dev"),
                    role: role("member"),
                    token_hash: None,
                    expires_at: None,
                },
            ],
        )
        .await;
    given.project().await;
    let joiner = given.user("joiner@acme.dev").await;
    given
        .org_events(
            org,
            joiner,
            &[OrganizationEvent::InvitationAccepted {
                user_id: joiner,
                email: email("joiner@acme.dev"),
                role: role("member"),
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let row = organizations::member(pool, org, &joiner.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.status.as_str(), row.user_id), ("active", Some(joiner)));

    given
        .org_events(
            org,
            owner,
            &[
                OrganizationEvent::MemberRoleChanged {
                    user_id: joiner,
                    email: email("joiner@acme.dev"),
                    from: role("member"),
                    role: role("admin"),
                },
                OrganizationEvent::InvitationRevoked {
                    email: email("never@acme.dev"),
                },
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    assert_eq!(
        organizations::membership(pool, joiner, "acme")
            .await
            .unwrap(),
        Some((org, "admin".to_owned()))
    );
    assert!(organizations::member(pool, org, "never@acme.dev")
        .await
        .unwrap()
        .is_none());

    given
        .org_events(
            org,
            owner,
            &[OrganizationEvent::MemberRemoved {
                user_id: joiner,
                email: email("joiner@acme.dev"),
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    assert_eq!(
        organizations::membership(pool, joiner, "acme")
            .await
            .unwrap(),
        None
    );
    assert!(organizations::orgs_of(pool, joiner)
        .await
        .unwrap()
        .is_empty());
    let emails: Vec<_> = organizations::members(pool, org)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.email)
        .collect();
    assert_eq!(emails, ["owner@acme.dev"]);
}

#[tokio::test]
async fn an_org_is_invisible_to_non_members_and_an_invitation_grants_nothing() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let stranger = given.user("stranger@other.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given
        .org_events(
            org,
            owner,
            &[OrganizationEvent::MemberInvited {
                email: email("stranger@other.dev"),
                role: role("admin"),
                token_hash: None,
                expires_at: None,
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    assert_eq!(
        organizations::membership(pool, stranger, "acme")
            .await
            .unwrap(),
        None
    );
    assert!(organizations::orgs_of(pool, stranger)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        organizations::membership(pool, owner, "no-such-org")
            .await
            .unwrap(),
        None
    );
}

/// A member has the time they joined, an invitation the time it was sent: never the other's,
/// and an accepted invitation becomes a member who joined when they accepted.
#[tokio::test]
async fn a_member_has_joined_at_and_an_invitation_invited_at_only() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    given
        .org_events(
            org,
            owner,
            &[OrganizationEvent::MemberInvited {
                email: email("later@acme.dev"),
                role: role("member"),
                token_hash: None,
                expires_at: None,
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let shown = |row: &organizations::MemberRow| serde_json::to_value(row).unwrap();

    let owner_row = organizations::member(pool, org, "owner@acme.dev")
        .await
        .unwrap()
        .unwrap();
    let json = shown(&owner_row);
    assert!(json["joined_at"].is_string(), "{json}");
    assert!(json.get("invited_at").is_none(), "{json}");

    let invitation = organizations::member(pool, org, "later@acme.dev")
        .await
        .unwrap()
        .unwrap();
    let json = shown(&invitation);
    assert!(json["invited_at"].is_string(), "{json}");
    assert!(
        json.get("joined_at").is_none(),
        "an invitation has no joined_at: {json}"
    );
    assert!(invitation.invited_at >= owner_row.joined_at);

    let later = given.user("later@acme.dev").await;
    given
        .org_events(
            org,
            owner,
            &[OrganizationEvent::InvitationAccepted {
                user_id: later,
                email: email("later@acme.dev"),
                role: role("member"),
            }],
        )
        .await;
    given.project().await;
    let joined = organizations::member(given.pool(), org, "later@acme.dev")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (joined.status.as_str(), joined.invited_at),
        ("active", None)
    );
    assert!(
        joined.joined_at > invitation.invited_at,
        "joined when accepted"
    );
    let listed = organizations::members(given.pool(), org).await.unwrap();
    assert!(listed
        .iter()
        .all(|m| m.joined_at.is_some() && m.invited_at.is_none()));
}
